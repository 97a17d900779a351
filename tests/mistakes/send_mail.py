"""A student's ``send_mail``, right, and wrong in each of the usual ways.

:func:`make` builds the client a careful student writes; each keyword turns on one
classic mistake, so every wrong client differs from the right one in one place.
"""

from __future__ import annotations


from labkit.lab import Reply, SendResult, SMTPPermanentError, SMTPTransientError


def make(*, one_line_replies=False, one_recv=False, no_helo_fallback=False, data_anyway=False,
         no_dot_stuffing=False, keep_lf=False, no_quit=False, all_transient=False, stop_at_refusal=False,
         no_timeout=False, ignore_eof=False, no_end_dot=False, extra_blank_line=False, str_lines=False,
         timeout_escapes=False):
    def send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
        if not no_timeout:
            sock.settimeout(timeout)
        pending = b""

        def reply(stage):
            nonlocal pending
            lines = []
            while True:
                while b"\n" not in pending:
                    try:
                        chunk = sock.recv(4096)
                    except OSError as error:
                        if timeout_escapes:
                            raise
                        raise SMTPTransientError(f"no reply: {error}", stage=stage) from None
                    if not chunk:
                        if ignore_eof:
                            return Reply(250, ("(nothing)",))
                        raise SMTPTransientError("the server closed the connection", stage=stage)
                    pending += chunk
                    if one_recv:
                        break
                raw, _, pending = pending.partition(b"\n")
                line = raw.rstrip(b"\r").decode()
                lines.append(line[4:])
                if one_line_replies or line[3:4] != "-":
                    return Reply(int(line[:3]), " ".join(lines) if str_lines else tuple(lines))

        def command(text, stage):
            sock.sendall(text.encode() + b"\r\n")
            return reply(stage)

        def fail(problem, stage, answer):
            if not no_quit:
                try:
                    command("QUIT", "QUIT")
                except SMTPTransientError:
                    pass
            permanent = 500 <= answer.code < 600 and not all_transient
            raise (SMTPPermanentError if permanent else SMTPTransientError)(problem, stage=stage, reply=answer)

        greeting = reply("greeting")
        if greeting.code != 220:
            fail("no service", "greeting", greeting)
        hello = command(f"EHLO {helo}", "EHLO")
        if hello.code in (500, 502) and not no_helo_fallback:
            hello = command(f"HELO {helo}", "EHLO")
        if hello.code != 250:
            fail("hello refused", "EHLO", hello)
        sender = command(f"MAIL FROM:<{mail_from}>", "MAIL")
        if sender.code != 250:
            fail("sender refused", "MAIL", sender)
        accepted, refused = {}, {}
        for rcpt in rcpt_to:
            answer = command(f"RCPT TO:<{rcpt}>", "RCPT")
            if 200 <= answer.code < 300:
                accepted[rcpt] = answer
            else:
                refused[rcpt] = answer
                if stop_at_refusal:
                    fail("recipient refused", "RCPT", answer)
        data_reply = None
        if accepted or data_anyway:
            go = command("DATA", "DATA")
            if go.code != 354:
                fail("DATA refused", "DATA", go)
            body = message if keep_lf else message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            if not no_dot_stuffing:
                body = (b"." + body if body.startswith(b".") else body).replace(b"\r\n.", b"\r\n..")
            sock.sendall(body + (b"" if no_end_dot else b"\r\n.\r\n" if extra_blank_line else b".\r\n"))
            data_reply = reply("DATA")
            if data_reply.code >= 400:
                fail("message refused", "DATA", data_reply)
        if not no_quit:
            command("QUIT", "QUIT")
        return SendResult(accepted, refused, data_reply if accepted else None)

    return send_mail


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "reads one line per reply": (make(one_line_replies=True), "greeting-multiline", "multi-line"),
    "one recv is one reply": (make(one_recv=True), "split-replies", "TCP delivers bytes"),
    "one recv per reply, no timeout (the naive client)": (make(one_recv=True, no_timeout=True), "split-replies",
                                                           "TCP delivers bytes"),
    "an extra empty line before the final dot": (make(extra_blank_line=True), "delivers", "extra empty line"),
    "Reply lines as one str": (make(str_lines=True), "delivers", "tuple of str"),
    "TimeoutError escapes": (make(timeout_escapes=True), "timeout", "raise SMTPTransientError"),
    "no HELO fallback": (make(no_helo_fallback=True), "helo-fallback", "say HELO"),
    "DATA with nobody accepted": (make(data_anyway=True), "nobody-accepted", "no DATA"),
    "no dot-stuffing": (make(no_dot_stuffing=True), "dot-stuffing", "dot-stuffing"),
    "bare LF line endings": (make(keep_lf=True), "line-endings", "CRLF"),
    "never says QUIT": (make(no_quit=True), "delivers", "QUIT"),
    "every failure is temporary": (make(all_transient=True), "sender-refused", "raise SMTPPermanentError"),
    "gives up at the first refused recipient": (make(stop_at_refusal=True), "per-recipient",
                                                "one refused recipient does not end the transaction"),
    "no timeout": (make(no_timeout=True), "timeout", "sock.settimeout(timeout)"),
    "ignores a closed connection": (make(ignore_eof=True), "connection-lost", "SMTPTransientError"),
    "forgets the final dot": (make(no_end_dot=True), "delivers", "a line with a single '.'"),
}
