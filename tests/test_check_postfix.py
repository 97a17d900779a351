"""`labkit check` against a real Postfix + Dovecot on loopback, well configured and
deliberately not: an open relay, a catch-all, no postmaster, no MX record, an MX at a
CNAME, a relative name in the zone, a dead primary MX, an MX at a loopback address,
Dovecot down, a roster with a wrong password, a time limit; and with TLS as real setups
have it (Dovecot ``ssl = required``, Postfix ``smtpd_tls_auth_only``, implicit TLS on a
465 service), on a certificate from a test CA (trustme) and on a self-signed one. DNS is
labkit's authoritative server with zone files written per test, and dnsmasq as a
forwarder and as a caching resolver.

The zone gives public-looking addresses (the lecture's 1.2.3.x); every port of them is
mapped to loopback, so nothing here dials anything but loopback."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.dovecot import stop
from labkit import cli
from labkit.audit import Target, check, rubric
from labkit.checks import Report
from labkit.dns.server import DNSServer, serve_in_background
from labkit.net import AddressMap, Endpoint
from real_servers import DOMAIN, PASSWORD, USER, Servers, TLSFiles

MX_ADDRESS, BACKUP_ADDRESS, NS_ADDRESS = "1.2.3.25", "1.2.3.24", "1.2.3.53"
NS_RECORDS = f"@ IN NS ns\nns IN A {NS_ADDRESS}\n"
GOOD_ZONE = f"@ IN MX 10 mx\nmx IN A {MX_ADDRESS}\n"
FULL = len(rubric.RULES)  # every check below has this maximum, whatever the setup


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    running = Servers()
    try:
        yield running
    finally:
        running.close()


@contextmanager
def student_dns(directory: Path, records: str, ns: str = NS_RECORDS) -> Iterator[Endpoint]:
    """The student's DNS: a zone file for student.test with ``records``, served on loopback."""
    directory.mkdir(exist_ok=True)
    (directory / f"{DOMAIN}.zone").write_text(
        f"$ORIGIN {DOMAIN}.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n{ns}{records}")
    with serve_in_background(DNSServer.from_directory(directory, name="ns.student.test")) as endpoint:
        yield endpoint


def routes(servers: Servers, dns: Endpoint, smtpd: str = "good", address: str = MX_ADDRESS) -> list[tuple]:
    """Every port of the MX address, mapped to its Postfix or Dovecot listener (or to
    the port where nothing listens), and the name server's address to the zone's DNS
    server (``dns``)."""
    nowhere = Endpoint("127.0.0.1", servers.nowhere)
    tls = servers.tls is not None
    mail = servers.mail_address
    ports = {25: Endpoint("127.0.0.1", servers.smtp[smtpd]), 587: Endpoint("127.0.0.1", servers.submission),
             465: Endpoint("127.0.0.1", servers.submissions) if tls else nowhere,
             143: Endpoint(mail, servers.imap), 993: Endpoint(mail, servers.imaps) if tls else nowhere,
             110: Endpoint(mail, servers.pop3), 995: Endpoint(mail, servers.pop3s) if tls else nowhere}
    return [(address, port, endpoint) for port, endpoint in ports.items()] + [(NS_ADDRESS, 53, dns)]


def connect_args(mapped: list[tuple]) -> list[str]:
    return [arg for name, port, endpoint in mapped for arg in ("--connect", f"{name}:{port}={endpoint}")]


def audit(servers: Servers, dns: Endpoint, smtpd: str = "good", extra: list[tuple] = (),
          ask: Endpoint | None = None, **kw) -> Report:
    """Check student.test through the routes (only them: direct=False), asking ``ask``
    (default: the zone's own server ``dns``) as --dns."""
    mapped = AddressMap()
    for name, port, endpoint in [*routes(servers, dns, smtpd), *extra]:
        mapped.add(name, port, endpoint)
    report = check(Target(DOMAIN, dns=ask or dns, routes=mapped, direct=False, **{"timeout": 5, "wait": 10, **kw}))
    assert report.max_score == FULL, str(report)
    return report


def test_a_good_postfix_and_dovecot_pass_every_rule(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, user=USER, password=PASSWORD)
    assert report.passed, str(report)
    assert {r.status for r in report if r.points} == {"pass"}, str(report)
    assert report.score == FULL
    assert report.result(rubric.GREETING.title).info == "220 mx.student.test ESMTP Postfix"
    assert "(Postfix)" in report.result(rubric.RECEIVED.title).info
    assert report.result(rubric.POP3_FOUND.title).status == "pass"
    assert report.result(rubric.SUBMISSION_AUTH.title).info.startswith("port 587: 235 2.7.0")
    assert report.result(rubric.SUBMISSION_RELAY.title).info.startswith("port 587: refused before AUTH: 554 5.7.1")
    assert report.result(rubric.AUTHORITY.title).info.startswith(f"{dns} is ns.student.test (NS of student.test)")
    assert report.result(rubric.TLS).status == "warn"  # this Postfix and Dovecot speak no TLS


def queued(servers: Servers) -> list[Path]:
    queue = servers.root / "queue"
    return [p for d in ("maildrop", "incoming", "active", "deferred", "hold") for p in (queue / d).rglob("*")
            if p.is_file()]


def test_an_open_relay_is_found_and_nothing_is_relayed(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, "open relay")
    row = report.result(rubric.RELAY.title)
    assert row.status == "fail" and row.got.startswith("250 2.1.5 Ok — an open relay"), row.text()
    assert "RFC 2505 §2.1" in row.rfc and "mynetworks" in row.hint and row.step.startswith("mx.student.test: ")
    sent = [line for d, line in row.transcript if d == "C"]
    assert sent[-2].endswith("@relay-test.invalid>") and sent[-1] == "RSET" and "DATA" not in sent
    assert queued(servers) == []  # the check stopped at RCPT: Postfix queued nothing


def test_a_catch_all_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, "catch-all")
    row = report.result(rubric.UNKNOWN.title)
    assert row.status == "fail" and row.got == "250 2.1.5 Ok" and "catch-all" in row.hint
    assert row.rfc == "RFC 5321 §3.3"


def test_a_missing_postmaster_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, "no postmaster")
    row = report.result(rubric.POSTMASTER.title)
    assert row.status == "fail" and row.rfc == "RFC 5321 §4.5.1"
    assert row.got.startswith("550 5.1.1") and "User unknown" in row.got
    assert report.result(rubric.UNKNOWN.title).status == "pass"


def test_no_mx_record_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", f"@ IN A {MX_ADDRESS}\nmx IN A {MX_ADDRESS}\n") as dns:
        report = audit(servers, dns)
    row = report.result(rubric.MX.title)
    assert row.status == "warn" and "no MX records" in row.got and "implicit MX" in row.got
    assert row.rfc == "RFC 5321 §5.1"
    greeting = report.result(rubric.GREETING.title)  # the implicit MX is still probed
    assert greeting.status == "warn" and greeting.got.startswith("220 mx.student.test")
    # nothing to check is not a pass
    assert report.result(rubric.CNAME.title).info == "not checked (no MX records: nothing to check)"


def test_an_mx_pointing_at_a_cname_is_found(servers, tmp_path):
    with student_dns(tmp_path / "zones", f"@ IN MX 10 mail\nmail IN CNAME mx\nmx IN A {MX_ADDRESS}\n") as dns:
        report = audit(servers, dns)
    row = report.result(rubric.CNAME.title)
    assert row.status == "fail" and row.rfc == "RFC 2181 §10.3"
    assert row.got == "mail.student.test is a CNAME for mx.student.test"
    assert ("S", "mail.student.test. 300 IN CNAME mx.student.test.") in row.transcript


def test_only_an_address_literal_mx_checks_nothing_else(servers, tmp_path):
    with student_dns(tmp_path / "zones", f"@ IN MX 10 {MX_ADDRESS}.\n") as dns:
        report = audit(servers, dns)
    assert report.result(rubric.LITERAL.title).got == f"MX names an address: {MX_ADDRESS}"
    for rule in (rubric.ADDRESS, rubric.CNAME):  # nothing to check: not a pass
        assert report.result(rule.title).info == f'not checked (because "{rubric.LITERAL.title}" failed)'


def test_a_relative_name_in_the_zone_gets_the_final_dot_hint(servers, tmp_path):
    with student_dns(tmp_path / "zones", f"@ IN MX 10 mx.student.test\nmx IN A {MX_ADDRESS}\n") as dns:
        report = audit(servers, dns)
    row = report.result(rubric.ADDRESS.title)
    assert row.status == "fail" and row.got == "no address for mx.student.test.student.test"
    assert "without the final dot is relative" in row.hint and "write mx.student.test. (with the final dot)" in row.hint
    assert "add an A record" not in row.hint
    assert report.result(rubric.GREETING.title).info == f'not checked (because "{rubric.ADDRESS.title}" failed)'


def test_a_dead_primary_with_a_working_backup_passes_with_a_warning(servers, tmp_path):
    zone = f"@ IN MX 10 mx1\n@ IN MX 20 mx\nmx1 IN A {BACKUP_ADDRESS}\nmx IN A {MX_ADDRESS}\n"
    dead = [(BACKUP_ADDRESS, 25, Endpoint("127.0.0.1", servers.nowhere))]
    with student_dns(tmp_path / "zones", zone) as dns:
        report = audit(servers, dns, extra=dead, user=USER, password=PASSWORD)
    row = report.result(rubric.GREETING.title)
    assert row.status == "warn" and row.rfc.startswith("RFC 5321 §5.1")
    assert row.got.startswith("mx1.student.test (preference 10) did not answer: ") and "connection refused" in row.got
    assert "mail goes to mx.student.test (preference 20) instead" in row.got and "mx1.student.test" in row.hint
    assert report.result(rubric.MESSAGE.title).info.startswith("via mx.student.test: 250")
    assert report.passed and report.score == FULL, str(report)


@pytest.fixture
def loopback_listener() -> Iterator[tuple[str, list[socket.socket]]]:
    """The test's own SMTP, submission and IMAP ports on a 127.0.0.x address, as a mail
    server on the checker's machine would be."""
    for last in range(100, 110):  # bounded: another test may hold an address
        address, socks = f"127.0.0.{last}", []
        try:
            for port in (25, 587, 143):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((address, port))
                sock.listen()
                sock.setblocking(False)
            break
        except OSError:
            for sock in socks:
                sock.close()
    else:
        pytest.skip("no 127.0.0.x address with ports 25, 587 and 143 free")
    try:
        yield address, socks
    finally:
        for sock in socks:
            sock.close()


def test_an_mx_at_a_loopback_address_is_refused_not_graded(servers, tmp_path, loopback_listener):
    address, socks = loopback_listener
    with student_dns(tmp_path / "zones", f"@ IN MX 10 mx\nmx IN A {address}\n") as dns:
        report = audit(servers, dns, user=USER, password=PASSWORD)
    for sock in socks:  # nothing of the check came to the checker's own machine
        with pytest.raises(BlockingIOError):
            sock.accept()
    row = report.result(rubric.ADDRESS.title)
    assert row.status == "fail" and row.got.startswith(f"mx.student.test has {address}, a loopback address")
    assert "not dialled" in row.got and "not graded" in row.got and "RFC 6890" in row.rfc
    assert "firewall" not in row.hint and "loopback" in row.hint
    for rule in (rubric.GREETING, rubric.MESSAGE, rubric.IMAP_FOUND, rubric.SUBMISSION_AUTH):
        assert report.result(rule.title).info == f'not checked (because "{rubric.ADDRESS.title}" failed)'
    assert report.failures == [row]


def test_a_message_that_never_arrives_is_waited_for_once(servers, tmp_path):
    """Postfix says 250 and drops it: IMAP and POP3 look in turn through one wait (the
    POP3 logins come while the IMAP session still waits), then both fail."""
    log = servers.root / "dovecot/dovecot.log"
    start = log.stat().st_size
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, "discards", user=USER, password=PASSWORD, wait=3)
    assert report.result(rubric.MESSAGE.title).status == "pass"
    imap, pop3 = report.result(rubric.IMAP_FOUND.title), report.result(rubric.POP3_FOUND.title)
    assert imap.status == pop3.status == "fail" and imap.got == pop3.got and imap.got.startswith("not there after 3")
    assert "mail_location" in imap.hint
    lines = log.read_text()[start:].splitlines()
    imap_login = next(i for i, line in enumerate(lines) if "imap-login: Info: Login: " in line)
    imap_out = next(i for i, line in enumerate(lines) if "imap(" in line and "Logged out" in line)
    pop3_logins = [i for i, line in enumerate(lines) if "pop3-login: Info: Login: " in line]
    assert len([i for i in pop3_logins if imap_login < i < imap_out]) >= 2, lines


def test_a_private_address_is_checked_only_where_connect_sends_it(servers, tmp_path):
    """A setup on a lab network (10.x): the TA's --connect says where it is; the zone's
    address is still wrong for mail from elsewhere (a warning), the rest is graded."""
    mapped = AddressMap()
    for name, port, endpoint in routes(servers, Endpoint("127.0.0.1", 1), address="10.1.2.25"):
        mapped.add(name, port, endpoint)
    with student_dns(tmp_path / "zones", "@ IN MX 10 mx\nmx IN A 10.1.2.25\n") as dns:
        mapped.add(NS_ADDRESS, 53, dns)
        report = check(Target(DOMAIN, dns=dns, routes=mapped, direct=False, timeout=5, wait=10, user=USER,
                              password=PASSWORD))
    row = report.result(rubric.ADDRESS.title)
    assert row.status == "warn" and row.got == ("mx.student.test has 10.1.2.25, a private address (RFC 1918): "
                                                "checked where --connect sends it")
    assert "NAT" in row.hint
    assert report.passed and report.score == FULL, str(report)


def test_dovecot_down_is_found(servers, tmp_path):
    # Late in the module: without Dovecot, Postfix's submission smtpd (SASL) may die and be throttled.
    servers.stop_dovecot()
    try:
        with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
            report = audit(servers, dns, user=USER, password=PASSWORD)
    finally:
        servers.start_dovecot()
    assert report.result(rubric.MESSAGE.title).status == "pass"  # Postfix still takes it
    row = report.result(rubric.IMAP_FOUND.title)
    assert row.status == "fail" and row.step == "connect" and "connection refused" in row.got
    assert "port 143" in row.got and "port 993" in row.got
    wrong = report.result(rubric.IMAP_WRONG.title)  # the service is down: one failure, not two
    assert wrong.info == f'not checked (because "{rubric.IMAP_FOUND.title}" failed)'
    assert report.result(rubric.POP3_FOUND.title).status == "fail"
    assert not report.passed


# -- name servers that are not the zone's: dnsmasq as a forwarder and as a cache --------------
@contextmanager
def dnsmasq(upstream: Endpoint, cache: int, log: Path) -> Iterator[Endpoint]:
    """dnsmasq on a loopback port, forwarding to ``upstream`` (its cache as given)."""
    command = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(command).exists():
        pytest.skip("dnsmasq is not installed (apt: dnsmasq-base; .ci/run installs it)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([command, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                             "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}", "--pid-file=",
                             f"--server=127.0.0.1#{upstream.port}", f"--cache-size={cache}",
                             f"--log-facility={log}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        endpoint = Endpoint("127.0.0.1", port)
        _wait_for_dns(proc, endpoint, log)
        yield endpoint
    finally:
        stop(proc)


def _wait_for_dns(proc: subprocess.Popen, endpoint: Endpoint, log: Path) -> None:
    import dns.exception
    import dns.message
    import dns.query

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            dns.query.udp(dns.message.make_query(DOMAIN, "SOA"), endpoint.host, port=endpoint.port, timeout=0.5)
            return
        except (dns.exception.Timeout, OSError):
            continue
    raise RuntimeError(f"dnsmasq did not answer on {endpoint} within 15 s")


@pytest.mark.parametrize("cache", [0, 1000], ids=["forwarder", "caching resolver"])
def test_a_forwarder_or_a_cache_is_not_the_zones_authority_on_any_run(servers, tmp_path, cache):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as authority:
        assert audit(servers, authority).result(rubric.AUTHORITY.title).status == "pass"
        with dnsmasq(authority, cache, tmp_path / "dnsmasq.log") as relay:
            rows = [audit(servers, authority, ask=relay).result(rubric.AUTHORITY.title) for _ in range(2)]
    for row in rows:
        assert row.status == "fail", row.text()
        assert f"{relay} answers for student.test with AA but is not one of its name servers" in row.got
        assert f"ns.student.test {NS_ADDRESS}" in row.got and "forwarder" in row.hint
    assert rows[0].got == rows[1].got  # the same verdict every time (a cache answered the second)


# -- the command line: a roster, a time limit --------------------------------------------------
def test_a_wrong_password_in_the_roster_is_the_rosters_mistake(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        connect = " ".join(f"{name}:{port}={endpoint}" for name, port, endpoint in routes(servers, dns))
        students = tmp_path / "students.csv"
        with students.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["student", "domain", "dns", "user", "password", "connect"])
            writer.writerow(["sam", DOMAIN, str(dns), USER, "what-the-ta-typed", connect])
            writer.writerow(["sam-again", DOMAIN, str(dns), USER, PASSWORD, connect])
        grades = tmp_path / "grades.csv"
        status = cli.main(["check", "--batch", str(students), "--output", str(grades), "--timeout", "5",
                           "--wait", "10", "--jobs", "2"])
    assert status == 0
    wrong, right = csv.DictReader(grades.open())
    assert right["status"] == "graded" and right["score"] == right["max_score"] == str(FULL), right
    assert wrong["status"] == "check roster" and wrong["max_score"] == str(FULL)
    assert wrong["reason"].startswith("roster: could not log in with the roster's password (IMAP: "
                                      "[AUTHENTICATIONFAILED]"), wrong
    assert wrong["reason"].endswith(": check the roster") and "setup:" not in wrong["reason"]
    assert wrong["score"] == str(FULL - 4)  # the message read back over IMAP, POP3, its header, AUTH: unchecked


def silent_server() -> socket.socket:
    """Takes connections (the backlog does) and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_the_time_limit_holds_during_network_waits(servers, tmp_path, capsys):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns, silent_server() as silent:
        mapped = [(n, p, e) for n, p, e in routes(servers, dns) if p != 25]
        args = ["check", DOMAIN, "--dns", str(dns), *connect_args(mapped), "--connect",
                f"{MX_ADDRESS}:25=127.0.0.1:{silent.getsockname()[1]}", "--user", USER, "--password", PASSWORD,
                "--timeout", "30", "--time-limit", "2", "--json"]
        started = time.monotonic()
        status = cli.main(args)
        elapsed = time.monotonic() - started
    assert elapsed < 20, elapsed  # the greeting wait (30 s) was cut to the time limit (2 s)
    data = json.loads(capsys.readouterr().out)
    assert status == 1 and data["timed_out"] and data["max_score"] == FULL
    rows = {r["rule"]: r for r in data["results"]}
    assert rows[rubric.GREETING.title]["info"] == "not checked (the time limit ran out)"
    assert rows[rubric.SUBMISSION_AUTH.title]["status"] == "unchecked"
    assert rows[rubric.MX.title]["status"] == "pass"  # what was checked in time stays


def test_a_check_that_finishes_within_its_limit_is_graded(servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        connect = " ".join(f"{name}:{port}={endpoint}" for name, port, endpoint in routes(servers, dns))
        (tmp_path / "students.csv").write_text(f"student,domain,dns,user,password,connect\n"
                                               f"sam,{DOMAIN},{dns},{USER},{PASSWORD},{connect}\n")
        status = cli.main(["check", "--batch", str(tmp_path / "students.csv"), "--output",
                           str(tmp_path / "grades.csv"), "--time-limit", "120", "--wait", "10"])
    (row,) = csv.DictReader((tmp_path / "grades.csv").open())
    assert status == 0 and row["status"] == "graded" and row["score"] == str(FULL), row


# -- TLS ----------------------------------------------------------------------------------------
def self_signed(directory: Path, name: str) -> TLSFiles:
    """A certificate for ``name`` that signs itself, as `openssl req -x509` makes one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    files = TLSFiles(directory / "self-signed.pem", directory / "self-signed.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@pytest.fixture(scope="module")
def test_ca():
    import trustme  # the test extra

    return trustme.CA(organization_name="labkit course CA")


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory, test_ca) -> Iterator[tuple[Servers, Path]]:
    """Postfix and Dovecot with TLS required for logins, on a certificate from the course's CA."""
    directory = tmp_path_factory.mktemp("tls")
    issued = test_ca.issue_cert("mx.student.test")
    files = TLSFiles(directory / "cert.pem", directory / "key.pem")
    issued.private_key_pem.write_to_path(str(files.key))
    issued.cert_chain_pems[0].write_to_path(str(files.cert))
    test_ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    running = Servers(tls=files)
    try:
        yield running, directory / "ca.pem"
    finally:
        running.close()


def test_tls_required_by_postfix_and_dovecot_passes_every_rule(tls_servers, tmp_path):
    servers, ca = tls_servers
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, user=USER, password=PASSWORD, ca_file=str(ca))
    assert report.passed and report.score == FULL, str(report)
    tls = report.result(rubric.TLS)
    assert tls.status == "pass" and tls.info.startswith("certificates verified, valid until "), tls.text()
    for use in ("SMTP 25 STARTTLS", "submission 465", "submission 587 STARTTLS", "IMAP 143 STARTTLS",
                "POP3 110 STARTTLS"):
        assert f"mx.student.test {use}" in tls.info
    # Dovecot refuses any login in clear (LOGINDISABLED), Postfix offers AUTH only inside TLS:
    assert report.result(rubric.IMAP_FOUND.title).status == "pass"
    auth = report.result(rubric.SUBMISSION_AUTH.title).info
    assert auth.startswith("port 465: 235 2.7.0") and "; port 587: 235 2.7.0" in auth  # both ports, in TLS
    logins = [line for line in (servers.root / "dovecot/dovecot.log").read_text().splitlines() if "Login: " in line]
    assert logins and all(line.rstrip().split(", ")[-2] == "TLS" for line in logins), logins


def test_implicit_tls_where_only_993_and_995_are_open(tls_servers, tmp_path):
    servers, ca = tls_servers
    closed = Endpoint("127.0.0.1", servers.nowhere)
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, extra=[(MX_ADDRESS, 143, closed), (MX_ADDRESS, 110, closed)], user=USER,
                       password=PASSWORD, ca_file=str(ca))
    assert report.passed and report.score == FULL, str(report)
    info = report.result(rubric.TLS).info
    assert "mx.student.test IMAP 993" in info and "mx.student.test POP3 995" in info


def test_an_untrusted_issuer_warns_and_fails_no_mail_rule(tls_servers, tmp_path):
    servers, _ = tls_servers
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(servers, dns, user=USER, password=PASSWORD)  # no --ca-file
    assert report.passed and report.score == FULL, str(report)
    tls = report.result(rubric.TLS)
    assert tls.status == "warn" and "unable to get local issuer certificate" in tls.got and "--ca-file" in tls.hint


@pytest.fixture(scope="module")
def self_signed_servers(tmp_path_factory) -> Iterator[Servers]:
    running = Servers(tls=self_signed(tmp_path_factory.mktemp("self-signed"), "mx.student.test"))
    try:
        yield running
    finally:
        running.close()


def test_a_self_signed_certificate_warns_with_the_fix(self_signed_servers, tmp_path):
    with student_dns(tmp_path / "zones", GOOD_ZONE) as dns:
        report = audit(self_signed_servers, dns, user=USER, password=PASSWORD)
    assert report.passed and report.score == FULL, str(report)
    tls = report.result(rubric.TLS)
    assert tls.status == "warn" and tls.points == 0
    assert tls.got == ("mx.student.test (SMTP 25 STARTTLS, IMAP 143 STARTTLS, POP3 110 STARTTLS, submission 465, "
                       "submission 587 STARTTLS): self-signed certificate"), tls.got
    assert "certbot" in tls.hint and "--ca-file" in tls.hint
