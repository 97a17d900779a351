"""IMAP4rev1 (RFC 3501): a sans-IO server session over the Maildir store.

- :mod:`.parser`: framing (literals, LITERAL+) and the command grammar
- :mod:`.fetch`, :mod:`.structure`, :mod:`.mime`, :mod:`.address`: FETCH data items
- :mod:`.search`: SEARCH keys
- :mod:`.mailbox`: the selected mailbox as the client sees it
- :mod:`.session`: :class:`IMAPSession`, the :class:`labkit.session.Session`
"""

__all__ = ["IMAPSession"]


def __getattr__(name: str):  # the session on first use: the parser alone stays light (the IMAP lab's helper)
    if name == "IMAPSession":
        from .session import IMAPSession

        return IMAPSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
