"""ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2), written from a :class:`~.mime.Part`."""

from __future__ import annotations

from functools import lru_cache

from .address import parse_address_list
from .mime import Part, count_lines
from .wire import NIL, nstring, paren, string

def _address(a) -> bytes:
    return b"(%s %s %s %s)" % (nstring(a.name), nstring(a.route), nstring(a.mailbox), nstring(a.host))


@lru_cache(maxsize=4096)  # mailboxes repeat their correspondents: parse each list once
def _address_list(value: str | None) -> bytes:
    addresses = parse_address_list(value) if value else []
    if not addresses:
        return NIL
    # RFC 3501 §9: env-to = "(" 1*address ")": addresses follow each other without spaces
    return b"(" + b"".join(map(_address, addresses)) + b")"


def envelope(message: Part) -> bytes:
    """``(date subject from sender reply-to to cc bcc in-reply-to message-id)``.

    RFC 3501 §7.4.2: absent or empty Sender and Reply-To take the value of From.
    Texts are sent raw: RFC 2047 encoded-words are the client's to decode.
    """
    get = message.get
    from_ = _address_list(get("from"))
    sender = _address_list(get("sender"))
    reply_to = _address_list(get("reply-to"))
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        nstring(get("date")),
        nstring(get("subject")),
        from_,
        from_ if sender == NIL else sender,
        from_ if reply_to == NIL else reply_to,
        _address_list(get("to")),
        _address_list(get("cc")),
        _address_list(get("bcc")),
        nstring(get("in-reply-to")),
        nstring(get("message-id")),
    )


def _params(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return NIL
    return paren(b"%s %s" % (string(key.upper()), string(value)) for key, value in params)


def _extension(part: Part) -> list[bytes]:
    """body-fld-dsp, body-fld-lang, body-fld-loc: shared by single and multiparts."""
    disposition = part.disposition
    dsp = NIL if disposition is None else paren([string(disposition[0].upper()), _params(disposition[1])])
    languages = [x.strip() for x in (part.get("content-language") or "").split(",") if x.strip()]
    if not languages:
        lang = NIL
    elif len(languages) == 1:
        lang = string(languages[0])
    else:
        lang = paren(string(x) for x in languages)
    return [dsp, lang, nstring(part.get("content-location"))]


def body_structure(part: Part, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (``extensible``) or BODY: types upper-case as in RFC 3501's
    examples, sizes in octets of the encoded body, lines for text and message parts."""
    if part.is_multipart:
        out = b"(" + b"".join(body_structure(c, extensible) for c in part.children) + b" " + string(part.subtype.upper())
        if extensible:
            out += b" " + b" ".join([_params(part.params)] + _extension(part))
        return out + b")"
    fields = [
        string(part.maintype.upper()),
        string(part.subtype.upper()),
        _params(part.params),
        nstring(part.get("content-id")),
        nstring(part.get("content-description")),
        string((part.get("content-transfer-encoding") or "7bit").upper()),
        b"%d" % len(part.body),
    ]
    if part.message is not None:  # message/rfc822: envelope, body, lines
        fields += [envelope(part.message), body_structure(part.message, extensible), b"%d" % count_lines(part.body)]
    elif part.maintype == "text":
        fields.append(b"%d" % count_lines(part.body))
    if extensible:
        fields += [nstring(part.get("content-md5"))] + _extension(part)
    return paren(fields)
