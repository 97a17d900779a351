"""`labkit check` against a real Postfix + Dovecot on loopback, well configured and
deliberately not: an open relay, a catch-all, no postmaster, no MX record, an MX at
a CNAME, Dovecot down. DNS is labkit's server with zone files written per test."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from labkit.audit import Target, check
from labkit.checks import Report
from labkit.dns.server import DNSServer, serve_in_background
from labkit.net import AddressMap, Endpoint
from real_servers import DOMAIN, PASSWORD, USER, Servers

GOOD_ZONE = "@ IN MX 10 mx\nmx IN A 127.0.0.1\n"


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    running = Servers()
    try:
        yield running
    finally:
        running.close()


@contextmanager
def student_dns(directory: Path, records: str) -> Iterator[Endpoint]:
    """The student's DNS: a zone file for student.test with ``records``, served on loopback."""
    directory.mkdir(exist_ok=True)
    (directory / f"{DOMAIN}.zone").write_text(
        f"$ORIGIN {DOMAIN}.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\n"
        f"ns IN A 127.0.0.1\n{records}")
    with serve_in_background(DNSServer.from_directory(directory, name="ns.student.test")) as endpoint:
        yield endpoint


def audit(servers: Servers, dns: Endpoint, smtpd: str = "good", **kw) -> Report:
    """Check student.test; DNS says 127.0.0.1, the routes pick the Postfix listener."""
    routes = AddressMap()
    for port, real in ((25, servers.smtp[smtpd]), (587, servers.submission), (143, servers.imap),
                       (110, servers.pop3)):
        routes.add("127.0.0.1", port, Endpoint("127.0.0.1", real))
    return check(Target(DOMAIN, dns=dns, routes=routes, direct=False, timeout=5, wait=10, **kw))


def test_a_good_postfix_and_dovecot_pass_every_rule(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, user=USER, password=PASSWORD)
    assert report.passed, str(report)
    assert {r.status for r in report if r.points} == {"pass"}, str(report)
    assert report.result("mx.student.test: 220 greeting names the host").info == "220 mx.student.test ESMTP Postfix"
    assert "(Postfix)" in report.result("the receiving host added a Received line").info
    assert report.result("POP3: the test message is in the maildrop").status == "pass"
    assert report.result("submission (587): AUTH with the user's password").info.startswith("235 2.7.0")
    assert report.result("submission (587): relaying needs AUTH").status == "pass"


def queued(servers: Servers) -> list[Path]:
    queue = servers.root / "queue"
    return [p for d in ("maildrop", "incoming", "active", "deferred", "hold") for p in (queue / d).rglob("*")
            if p.is_file()]


def test_an_open_relay_is_found_and_nothing_is_relayed(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, "open relay")
    row = report.result("mx.student.test: not an open relay")
    assert row.status == "fail" and row.got.startswith("250 2.1.5 Ok — an open relay"), row.text()
    assert "RFC 2505 §2.1" in row.rfc and "mynetworks" in row.hint
    sent = [line for d, line in row.transcript if d == "C"]
    assert sent[-2].endswith("@relay-test.invalid>") and sent[-1] == "RSET" and "DATA" not in sent
    assert queued(servers) == []  # the check stopped at RCPT: Postfix queued nothing


def test_a_catch_all_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, "catch-all")
    row = report.result("mx.student.test: refuses an unknown user with 550")
    assert row.status == "fail" and row.got == "250 2.1.5 Ok" and "catch-all" in row.hint
    assert row.rfc == "RFC 5321 §3.3"


def test_a_missing_postmaster_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, "no postmaster")
    row = report.result(f"mx.student.test: accepts mail for postmaster@{DOMAIN}")
    assert row.status == "fail" and row.rfc == "RFC 5321 §4.5.1"
    assert row.got.startswith("550 5.1.1") and "User unknown" in row.got
    assert report.result("mx.student.test: refuses an unknown user with 550").status == "pass"


def test_no_mx_record_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", "@ IN A 127.0.0.1\nmx IN A 127.0.0.1\n") as dns:
        report = audit(servers, dns)
    row = report.result("MX records name the mail hosts")
    assert row.status == "warn" and "no MX records" in row.got and "implicit MX" in row.got
    assert row.rfc == "RFC 5321 §5.1"
    greeting = report.result(f"{DOMAIN}: 220 greeting names the host")  # the implicit MX is still probed
    assert greeting.status == "warn" and greeting.got.startswith("220 mx.student.test")


def test_an_mx_pointing_at_a_cname_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", "@ IN MX 10 mail\nmail IN CNAME mx\nmx IN A 127.0.0.1\n") as dns:
        report = audit(servers, dns)
    row = report.result("no MX host is a CNAME")
    assert row.status == "fail" and row.rfc == "RFC 2181 §10.3"
    assert row.got == "mail.student.test is a CNAME for mx.student.test"
    assert ("S", "mail.student.test. 300 IN CNAME mx.student.test.") in row.transcript


def test_dovecot_down_is_found(servers, tmp_path):
    # Last in the module: without Dovecot, Postfix's submission smtpd (SASL) may die and be throttled.
    servers.stop_dovecot()
    try:
        with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
            report = audit(servers, dns, user=USER, password=PASSWORD)
    finally:
        servers.start_dovecot()
    assert report.result("the test message is accepted for the user").status == "pass"  # Postfix still takes it
    row = report.result("IMAP: the test message is in INBOX")
    assert row.status == "fail" and row.step == "connect" and "connection refused" in row.got
    assert report.result("IMAP: a wrong password is refused").status == "fail"
    assert report.result("POP3: the test message is in the maildrop").status == "skip"  # POP3 is optional
    assert not report.passed
