"""The submission rules (port 587, RFC 6409), where it is offered: a stranger may not
relay without AUTH (§4.3), and the user's own password works (RFC 4954)."""

from __future__ import annotations

from ..checks.result import Result
from ..dns.mx import NextHop
from .probe import SMTPProbe, helo_name
from .rows import excerpt, said, skipped
from .smtp_rules import RELAY_DOMAIN, probe_address
from .steps import Step, Stop, run_steps
from .target import ConnectFailed, Line, Target

SUBMISSION_PORT = 587
RULE_NEEDS_AUTH = "submission (587): relaying needs AUTH"
RULE_AUTH = "submission (587): AUTH with the user's password"


def check_submission(host: NextHop, target: Target) -> list[Result]:
    transcript: list[Line] = []
    try:
        sock = target.connector().connect(host.host, host.addresses, SUBMISSION_PORT, transcript)
    except ConnectFailed as error:
        because = f"no submission service on {host.host} port {SUBMISSION_PORT} ({error})"
        return [skipped(RULE_NEEDS_AUTH, because), skipped(RULE_AUTH, because)]
    probe = SMTPProbe(sock, timeout=target.timeout, transcript=transcript)

    def hello_and_relay() -> Result:
        mark = len(transcript)
        greeting = probe.reply()
        ehlo = probe.ehlo(helo_name(sock)) if greeting.code == 220 else greeting
        if ehlo.code != 250:
            row = Result(RULE_NEEDS_AUTH, "fail", step="greeting and EHLO", expected="220, then 250",
                         got=ehlo.one_line(), rfc="RFC 6409 §3.1", transcript=excerpt(transcript, mark))
            raise Stop(row, "the submission service did not take a session")
        mail, rcpt = probe.ask(target.mail_from, probe_address(RELAY_DOMAIN))
        if rcpt is None or not rcpt.positive:
            return Result(RULE_NEEDS_AUTH, "pass", info=f"refused before AUTH: {said(rcpt or mail)}")
        return Result(RULE_NEEDS_AUTH, "fail", step="RCPT TO without AUTH", expected="530 5.7.0 Authentication "
                      "required (or a relay refusal)", got=f"{rcpt.one_line()} — it relays for anyone",
                      rfc="RFC 6409 §4.3, RFC 4954 §6", transcript=excerpt(transcript, mark),
                      hint="Postfix: in master.cf's submission service, smtpd_relay_restrictions = "
                      "permit_sasl_authenticated,reject")

    def auth() -> Result:
        if not (target.user and target.password):
            return skipped(RULE_AUTH, "no --user/--password given")
        mark = len(transcript)
        reply = probe.auth(target.login_name, target.password)
        shown = excerpt(transcript, mark)
        if reply is None:
            offered = " ".join(probe.extensions) or "nothing"
            if "STARTTLS" in probe.extensions:
                return Result(RULE_AUTH, "warn", step="EHLO", expected="AUTH PLAIN or LOGIN in the EHLO reply",
                              got=f"AUTH only after STARTTLS (offered: {offered}); labkit check does not do TLS",
                              rfc="RFC 4954 §4", transcript=excerpt(transcript))
            return Result(RULE_AUTH, "fail", step="EHLO", expected="AUTH PLAIN or LOGIN in the EHLO reply",
                          got=f"offered: {offered}", rfc="RFC 4954 §3", transcript=excerpt(transcript),
                          hint="Postfix: smtpd_sasl_auth_enable=yes on the submission service")
        if reply.code == 235:
            return Result(RULE_AUTH, "pass", info=reply.one_line())
        return Result(RULE_AUTH, "fail", step="AUTH", expected="235 Authentication successful",
                      got=reply.one_line(), rfc="RFC 4954 §4", transcript=shown,
                      hint="does the MTA ask the same user database as IMAP (Postfix: smtpd_sasl_type = dovecot)?")

    try:
        return run_steps([Step(RULE_NEEDS_AUTH, "RFC 6409 §4.3", hello_and_relay),
                          Step(RULE_AUTH, "RFC 4954 §4", auth)], transcript)
    finally:
        probe.quit()
