"""The submission rules (RFC 6409) on every submission port that answers: 465 with
implicit TLS (RFC 8314 §3.3) and 587 with STARTTLS where offered (RFC 3207). A stranger
may not relay without AUTH (RFC 6409 §4.3), and the user's own password works (RFC
4954). The password is never sent in clear where TLS was offered: on 587 after STARTTLS,
and not at all on a 587 without STARTTLS when 465 speaks TLS."""

from __future__ import annotations

import ssl

from ..checks.result import Result
from ..dns.mx import NextHop
from .probe import ProbeError, SMTPProbe
from .rows import excerpt, said
from .rubric import BECAUSE_INPUT, SUBMISSION_AUTH, SUBMISSION_RELAY, after, not_checked, time_up
from .smtp_rules import RELAY_DOMAIN, probe_address, smtp_session
from .steps import Step, Stop, run_steps
from .target import ConnectFailed, Line, TimeUp
from .tls import HandshakeFailed
from .visit import Visit

SUBMISSIONS_PORT, SUBMISSION_PORT = 465, 587
PORTS = ((SUBMISSIONS_PORT, True), (SUBMISSION_PORT, False))  # (port, implicit TLS); 465 first: see above
_ORDER = {"fail": 0, "warn": 1, "pass": 2}


def check_submission(host: NextHop, visit: Visit) -> list[Result]:
    rows: dict[int, list[Result]] = {}
    unreachable: list[str] = []
    tls_port = False  # a port where AUTH goes inside TLS
    for port, implicit in PORTS:
        transcript: list[Line] = []
        try:
            probe = _open(host, visit, port, implicit, transcript)
        except ConnectFailed as error:
            unreachable.append(f"port {port}: {error}")
            continue
        except (Stop, ProbeError, HandshakeFailed, TimeUp) as error:
            rows[port] = _broken(port, error, visit, transcript)
            continue
        in_tls = isinstance(probe.sock, ssl.SSLSocket)
        if not in_tls:
            visit.tls.clear.append(f"{host.host} submission {port}")
        session = _Session(probe, host, visit, port, transcript, clear_only=not in_tls and tls_port)
        tls_port = tls_port or in_tls
        try:
            rows[port] = run_steps([Step(SUBMISSION_RELAY, session.relay, step=f"port {port}: RCPT TO without AUTH"),
                                    Step(SUBMISSION_AUTH, session.auth, step=f"port {port}: AUTH")],
                                   transcript, visit.target)
        finally:
            probe.quit()
    if not rows:
        return [Result(SUBMISSION_RELAY.title, "fail", step=f"connect to {host.host}",
                       expected="a submission service on port 465 (implicit TLS) or 587",
                       got="; ".join(unreachable), rfc="RFC 6409 §3.1, RFC 8314 §3.3",
                       hint="Postfix: enable the submission (587) and/or submissions (465) services in master.cf; "
                       "are they open in the firewall?"), after(SUBMISSION_AUTH, SUBMISSION_RELAY)]
    return [_worst([port_rows[i] for port_rows in rows.values()]) for i in range(2)]


def _open(host: NextHop, visit: Visit, port: int, implicit: bool, transcript: list[Line]) -> SMTPProbe:
    use = f"submission {port}" + ("" if implicit else " STARTTLS")
    return visit.tls.attempt(host.host, use, lambda context: smtp_session(
        host, visit, port, transcript, implicit=(use, context) if implicit else None,
        starttls=None if implicit else (use, context)))


def _broken(port: int, error: BaseException, visit: Visit, transcript: list[Line]) -> list[Result]:
    """The rows of a port whose session did not get as far as the questions."""
    if isinstance(error, TimeUp) or visit.target.expired():
        return [time_up(SUBMISSION_RELAY), time_up(SUBMISSION_AUTH)]
    if isinstance(error, Stop):
        row = Result(SUBMISSION_RELAY.title, "fail", step=error.row.step, expected=error.row.expected,
                     got=error.row.got, rfc="RFC 6409 §3.1", transcript=error.row.transcript)
    else:
        row = Result(SUBMISSION_RELAY.title, "fail", step=f"port {port}: greeting, EHLO, TLS",
                     expected="a submission session", got=str(error), rfc=SUBMISSION_RELAY.rfc,
                     transcript=excerpt(transcript),
                     hint="is the certificate and key readable by the MTA (Postfix: smtpd_tls_cert_file, "
                     "smtpd_tls_key_file)? the mail log says why" if isinstance(error, HandshakeFailed) else "")
    return [row, after(SUBMISSION_AUTH, SUBMISSION_RELAY)]


def _worst(rows: list[Result]) -> Result:
    """One row over every port: the worst that was checked (a port not asked is skipped)."""
    checked = [r for r in rows if r.status in _ORDER]
    if not checked:
        return next((r for r in rows if r.status != "skip"), rows[0])
    worst = min(checked, key=lambda r: _ORDER[r.status])
    if worst.status != "pass" or len(checked) == 1:
        return worst
    return Result(worst.rule, "pass", info="; ".join(r.info for r in checked))


class _Session:
    def __init__(self, probe: SMTPProbe, host: NextHop, visit: Visit, port: int, transcript: list[Line], *,
                 clear_only: bool) -> None:
        self.probe, self.host, self.visit, self.port, self.transcript = probe, host, visit, port, transcript
        self.clear_only = clear_only  # no TLS here, but on another port: no password here

    def relay(self) -> Result:
        mark = len(self.transcript)
        mail, rcpt = self.probe.ask(self.visit.target.mail_from, probe_address(RELAY_DOMAIN))
        if rcpt is None or not rcpt.positive:
            return Result(SUBMISSION_RELAY.title, "pass", info=f"port {self.port}: refused before AUTH: "
                          f"{said(rcpt or mail)}")
        return Result(SUBMISSION_RELAY.title, "fail", step=f"port {self.port}: RCPT TO without AUTH",
                      expected="530 5.7.0 Authentication required (or a relay refusal)",
                      got=f"{rcpt.one_line()} — it relays for anyone", rfc="RFC 6409 §4.3, RFC 4954 §6",
                      transcript=excerpt(self.transcript, mark), hint="Postfix: in master.cf's submission service, "
                      "smtpd_relay_restrictions = permit_sasl_authenticated,reject")

    def auth(self) -> Result:
        target = self.visit.target
        if not self.visit.credentials:
            return not_checked(SUBMISSION_AUTH, self.visit.no_credentials(), BECAUSE_INPUT)
        if self.clear_only:
            return Result(SUBMISSION_AUTH.title, "skip", got=f"port {self.port} offers no STARTTLS: the password "
                          "goes only where TLS is")
        mark = len(self.transcript)
        reply = self.probe.auth(target.login_name, target.password or "")
        shown = excerpt(self.transcript, mark)
        if reply is None:
            offered = " ".join(self.probe.extensions) or "nothing"
            return Result(SUBMISSION_AUTH.title, "fail", step=f"port {self.port}: EHLO",
                          expected="AUTH PLAIN or LOGIN in the EHLO reply", got=f"offered: {offered}",
                          rfc="RFC 4954 §3", transcript=excerpt(self.transcript),
                          hint="Postfix: smtpd_sasl_auth_enable=yes on the submission service")
        service = f"submission {self.port}"
        if reply.code == 235:
            self.visit.accepted(service, SUBMISSION_AUTH.title)
            return Result(SUBMISSION_AUTH.title, "pass", info=f"port {self.port}: {reply.one_line()}")
        if reply.code == 535:  # RFC 4954 §6: authentication credentials invalid
            self.visit.refused(service, SUBMISSION_AUTH.title, reply.one_line())
        return Result(SUBMISSION_AUTH.title, "fail", step=f"port {self.port}: AUTH",
                      expected="235 Authentication successful", got=reply.one_line(), rfc="RFC 4954 §4",
                      transcript=shown, hint="does the MTA ask the same user database as IMAP (Postfix: "
                      "smtpd_sasl_type = dovecot)?")
