"""`labkit check` against the lab world: brilliant.com passes every rule, and the
world's misbehaving parts are caught. Real DNS, SMTP, IMAP and POP3 sessions; the
world's address map sends its virtual addresses to loopback ports."""

from __future__ import annotations

import csv
import io
import json
import socket
import sys
import time

import pytest

from conftest import lecture_config
from labkit import cli
from labkit.audit import Target, check, render
from labkit.audit.batch import COLUMNS, Progress, read_students, run_batch
from labkit.audit.target import parse_connect, parse_endpoint
from labkit.net import AddressMap, Endpoint
from labkit.world import World

BETTY = ("betty@brilliant.com", "betty-password")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with World(lecture_config(), state_dir=tmp_path_factory.mktemp("check") / "state") as world:
        yield world


def target(world: World, domain: str, **kw) -> Target:
    """A check of ``domain`` inside the world: its DNS, and only its address map."""
    dns = world.info()["dns"]
    kw = {"routes": world.context.addresses, "timeout": 3.0, "wait": 5.0, **kw}
    return Target(domain, dns=Endpoint(dns["host"], dns["port"]), direct=False, **kw)


def statuses(report) -> dict[str, str]:
    return {r.rule: r.status for r in report}


def test_brilliant_com_passes_every_rule(lab):
    report = check(target(lab, "brilliant.com", user=BETTY[0], password=BETTY[1]))
    assert report.passed, str(report)
    scored = [r for r in report if r.points]
    assert {r.status for r in scored} == {"pass"}, str(report)
    assert len(scored) == 18 and report.score == report.max_score == 18
    assert report.result("MX records name the mail hosts").info == "10 smtp.brilliant.com"
    assert "8BITMIME" in report.result("smtp.brilliant.com: EHLO accepted").info
    assert "by smtp.brilliant.com" in report.result("the receiving host added a Received line").info
    assert report.result("submission (587): relaying needs AUTH").info.startswith("refused before AUTH: 530")
    # information only: reported, never scored
    assert report.result("SPF record (information)").points == 0


def test_the_test_message_is_really_delivered(lab):
    before = len(lab.messages("betty@brilliant.com"))
    check(target(lab, "brilliant.com", user=BETTY[0], password=BETTY[1]))
    messages = lab.messages("betty@brilliant.com")
    assert len(messages) == before + 1
    assert b"Message-ID: <labkit-check." in messages[-1] and b"Subject: labkit check of brilliant.com" in messages[-1]


def test_probes_never_get_past_rcpt(lab):
    """Without --user no message is sent: no session of the check reaches DATA."""
    since = time.time()
    report = check(target(lab, "brilliant.com"))
    smtp = [e for e in lab.tracer.events() if e.time >= since and e.protocol == "smtp" and e.direction == "C"]
    commands = {e.line.split(" ")[0].split(":")[0].upper() for e in smtp}
    assert {"EHLO", "MAIL", "RCPT", "RSET", "QUIT"} <= commands and "DATA" not in commands
    assert report.result("the test message is accepted for the user").status == "skip"
    assert report.passed


def test_awesome_com_submission_relays_for_its_trusted_network(lab):
    """smtp.awesome.com trusts 127.0.0.0/8 (like Postfix's mynetworks) on port 587:
    the checker, on loopback, is let through without AUTH."""
    report = check(target(lab, "awesome.com"))
    row = report.result("submission (587): relaying needs AUTH")
    assert row.status == "fail" and row.rfc.startswith("RFC 6409 §4.3")
    assert "it relays for anyone" in row.got and ("C", "RSET") in row.transcript
    assert report.result("smtp.awesome.com: not an open relay").status == "pass"  # port 25 is fine
    assert report.result("SPF record (information)").info == "v=spf1 mx -all"


def test_null_mx_is_reported(lab):
    report = check(target(lab, "nomail.com"))
    row = report.result("MX records name the mail hosts")
    assert row.status == "fail" and row.rfc == "RFC 7505 §3" and "null MX" in row.got
    assert ("S", "nomail.com. 300 IN MX 0 .") in row.transcript
    assert not [r for r in report if r.rule.startswith("nomail.com:")]  # no host to probe
    assert not report.passed


def test_no_such_domain(lab):
    report = check(target(lab, "typo.brilliant.com", user="x@typo.brilliant.com", password="x"))
    row = report.result("MX records name the mail hosts")
    assert row.status == "fail" and "NXDOMAIN" in row.got and row.rfc == "RFC 5321 §5.1"
    assert report.result("a mail host to check").got.startswith("not checked")


def test_refusing_host_gives_a_fail_row_with_the_550(lab):
    lab.set_behaviour("smtp.chaos.com", "refuse")
    try:
        report = check(target(lab, "chaos.com", user="chuck@chaos.com", password="chuck-password"))
    finally:
        lab.set_behaviour("smtp.chaos.com", "normal")
    row = report.result("smtp.chaos.com: accepts mail for postmaster@chaos.com")
    assert row.status == "fail" and row.got.startswith("550 ") and row.rfc == "RFC 5321 §4.5.1"
    assert ("C", "RCPT TO:<postmaster@chaos.com>") in row.transcript
    message = report.result("the test message is accepted for the user")
    assert message.status == "fail" and message.got.startswith("550 ")
    assert report.result("IMAP: the test message is in INBOX").got == "not checked: the test message was not accepted"
    assert report.result("IMAP: a wrong password is refused").status == "pass"  # independent of the message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_host_that_is_down_is_a_fail_row(lab):
    routes = AddressMap()
    for (address, port), endpoint in lab.context.addresses.routes().items():
        routes.add(address, port, endpoint)
    routes.add("smtp.brilliant.com", 25, Endpoint("127.0.0.1", free_port()))  # the name wins; nothing is there
    report = check(target(lab, "brilliant.com", user=BETTY[0], password=BETTY[1], routes=routes))
    row = report.result("smtp.brilliant.com: 220 greeting names the host")
    assert row.status == "fail" and "connection refused" in row.got
    assert report.result("smtp.brilliant.com: EHLO accepted").got.startswith("not checked: no SMTP session")
    assert report.result("the test message is accepted for the user").status == "fail"
    assert report.result("IMAP: a wrong password is refused").status == "pass"


def test_a_silent_server_is_bounded_by_the_timeout(lab):
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        routes = AddressMap()
        routes.add("smtp.brilliant.com", 25, Endpoint("127.0.0.1", silent.getsockname()[1]))
        started = time.monotonic()
        report = check(target(lab, "brilliant.com", timeout=0.5, routes=routes))
    assert time.monotonic() - started < 5
    row = report.result("smtp.brilliant.com: 220 greeting names the host")
    assert row.status == "fail" and row.got == "no reply within 0.5s"


# -- the command line ---------------------------------------------------------------------
def world_args(world: World) -> list[str]:
    """--dns and --connect for brilliant.com, as a TA would type them."""
    info = world.info()
    host = info["hosts"]["smtp.brilliant.com"]
    ports = {"smtp": 25, "submission": 587, "pop3": 110, "imap": 143}
    args = ["--dns", f"{info['dns']['host']}:{info['dns']['port']}"]
    for service, endpoint in host["services"].items():
        args += ["--connect", f"smtp.brilliant.com:{ports[service]}={endpoint['host']}:{endpoint['port']}"]
    return args


def test_cli_plain_text_and_exit_status(lab, capsys):
    status = cli.main(["check", "brilliant.com", *world_args(lab), "--user", BETTY[0], "--password", BETTY[1],
                       "--timeout", "3", "--wait", "5"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("mail setup of brilliant.com: 18 pass, 2 skip (score 18/18)")
    assert "\x1b[" not in out  # piped: plain
    assert "[PASS] smtp.brilliant.com: not an open relay" in out
    assert cli.main(["check", "nomail.com", *world_args(lab)]) == 1
    assert "[FAIL] MX records name the mail hosts" in capsys.readouterr().out


def test_cli_json_and_html(lab, capsys, tmp_path):
    page = tmp_path / "report.html"
    status = cli.main(["check", "brilliant.com", "--world", "--state-dir", str(lab.state_dir), "--json",
                       "--html", str(page)])
    data = json.loads(capsys.readouterr().out)
    assert status == 0 and data["passed"] and data["title"] == "mail setup of brilliant.com"
    assert {"rule", "status", "rfc", "transcript", "info"} <= set(data["results"][0])
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "labkit check: mail setup of brilliant.com" in html
    assert "smtp.brilliant.com: refuses an unknown user with 550" in html


def test_colour_only_when_asked_or_on_a_terminal(lab):
    report = check(target(lab, "nomail.com"))
    coloured = render.text(report, colour=True)
    assert "\x1b[1;31m[FAIL]\x1b[0m MX records name the mail hosts" in coloured
    assert render.text(report) == str(report)
    assert render.wants_colour(io.StringIO()) is False


def test_bad_arguments(capsys):
    assert cli.main(["check", "x.test", "--connect", "nonsense"]) == 2
    assert "NAME:PORT=HOST:PORT" in capsys.readouterr().err
    assert cli.main(["check"]) == 2


def test_parsing_endpoints():
    assert parse_endpoint("127.0.0.1", 53) == Endpoint("127.0.0.1", 53)
    assert parse_endpoint("[::1]:5353") == Endpoint("::1", 5353)
    assert parse_connect("SMTP.Brilliant.com.:25=127.0.0.1:2526") == ("smtp.brilliant.com", 25,
                                                                      Endpoint("127.0.0.1", 2526))
    with pytest.raises(ValueError):
        parse_endpoint("host:99999")


# -- batch ----------------------------------------------------------------------------------
STUDENTS = """student,domain,dns,user,password
ada,brilliant.com,,betty@brilliant.com,betty-password
bob,nomail.com,,,
cy,,,,
"""


def test_batch_writes_the_graders_csv(lab, tmp_path):
    (tmp_path / "students.csv").write_text(STUDENTS)
    out = tmp_path / "grades.csv"
    args = ["check", "--batch", str(tmp_path / "students.csv"), "--output", str(out), "--world", "--state-dir",
            str(lab.state_dir), "--timeout", "3", "--wait", "5", "--jobs", "2"]
    status = cli.main(args)
    assert status == 0
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == COLUMNS
    by = {r["student"]: r for r in rows}
    assert [r["student"] for r in rows] == ["ada", "bob", "cy"]  # input order
    assert by["ada"] == {"student": "ada", "assignment": "mail-setup", "score": "18", "max_score": "18",
                             "status": "graded", "reason": ""}
    assert by["bob"]["status"] == "graded" and by["bob"]["reason"].startswith("MX records name the mail hosts")
    assert by["cy"]["status"] == "missing"


def test_batch_progress_and_time_limit(lab):
    rows = read_students(io.StringIO(STUDENTS))[:2]
    progress_out, csv_out = io.StringIO(), io.StringIO()

    def expired_target(row):
        return target(lab, row["domain"], deadline=time.monotonic())  # no time left at all

    graded = run_batch(rows, expired_target, csv_out, jobs=2, progress=Progress(2, progress_out))
    assert [g["status"] for g in graded] == ["timed out", "timed out"]
    assert graded[0]["reason"].startswith("time limit reached")
    lines = progress_out.getvalue().splitlines()  # not a terminal: one plain line each
    assert len(lines) == 2 and lines[-1].startswith("checked 2/2: ")
    assert csv_out.getvalue().startswith(",".join(COLUMNS) + "\n")


def test_batch_row_that_crashes(lab):
    def broken(row):
        raise ValueError("bad dns column")

    graded = run_batch([{"student": "dee", "domain": "x.test"}], broken, io.StringIO(),
                       progress=Progress(1, io.StringIO()))
    assert graded[0]["status"] == "crashed" and "bad dns column" in graded[0]["reason"]



def test_colour_and_progress_bar_on_a_terminal(lab, tmp_path):
    from conftest import run_in_pty

    base = [sys.executable, "-m", "labkit.cli", "check", "--world", "--state-dir", str(lab.state_dir)]
    status, screen = run_in_pty(base + ["nomail.com"])
    assert status == 1 and b"\x1b[1;31m[FAIL]\x1b[0m MX records name the mail hosts" in screen
    (tmp_path / "students.csv").write_text(STUDENTS)
    status, screen = run_in_pty(base + ["--batch", str(tmp_path / "students.csv"), "--output",
                                        str(tmp_path / "grades.csv")])
    assert status == 0 and b"\r[" + b"#" * 30 + b"] 3/3 " in screen  # a bar, redrawn in place
    assert len((tmp_path / "grades.csv").read_text().splitlines()) == 4


def test_a_dns_server_that_does_not_answer_is_bounded(lab):
    started = time.monotonic()
    with lab.dns.fault("brilliant.com", "timeout"):
        report = check(target(lab, "brilliant.com", timeout=0.5))
    assert time.monotonic() - started < 3
    row = report.result("MX records name the mail hosts")
    assert row.status == "fail" and row.got == "no answer within 0.5s"
    assert report.result("SPF record (information)").status == "skip"
    assert report.result("a mail host to check").status == "fail"


@pytest.fixture
def plain_dns():
    """A bare UDP name server on loopback answering from a fixed record set, its AA and
    RA bits as the test sets them: a lame server, or a recursive resolver."""
    import threading

    import dns.flags
    import dns.message
    import dns.rdatatype
    import dns.rrset

    records = {"MX": "10 mx.lame.test."}  # and no address: the check dials nothing
    flags = {"aa": False, "ra": False}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            rdtype = dns.rdatatype.to_text(question.rdtype)
            if rdtype in records:
                response.answer.append(dns.rrset.from_text(question.name, 300, "IN", rdtype, records[rdtype]))
            response.flags &= ~(dns.flags.AA | dns.flags.RA)
            response.flags |= (dns.flags.AA if flags["aa"] else 0) | (dns.flags.RA if flags["ra"] else 0)
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield Endpoint("127.0.0.1", sock.getsockname()[1]), flags
    stopping.set()
    thread.join(timeout=5)
    sock.close()


def test_authority_of_the_answers(plain_dns):
    endpoint, flags = plain_dns
    lame = check(Target("lame.test", dns=endpoint, direct=False, timeout=0.5)).result(
        "the DNS answers are authoritative")
    assert lame.status == "fail" and "without AA and without RA" in lame.got and lame.rfc == "RFC 1035 §4.1.1"
    flags["ra"] = True
    resolver = check(Target("lame.test", dns=endpoint, direct=False, timeout=0.5)).result(
        "the DNS answers are authoritative")
    assert resolver.status == "skip" and "recursive resolver" in resolver.got
    flags["aa"] = True
    assert check(Target("lame.test", dns=endpoint, direct=False, timeout=0.5)).result(
        "the DNS answers are authoritative").status == "pass"


def test_a_wrong_password_fails_at_login_and_is_never_shown(lab):
    report = check(target(lab, "brilliant.com", user=BETTY[0], password="not-bettys-secret"))
    row = report.result("IMAP: the test message is in INBOX")
    assert row.status == "fail" and row.step == "LOGIN" and "--password" in row.hint
    assert any(d == "C" and line.endswith("LOGIN betty@brilliant.com ********") for d, line in row.transcript)
    assert report.result("submission (587): AUTH with the user's password").got.startswith("535")
    assert "not-bettys-secret" not in report.dumps()


def test_host_names_where_imap_pop3_and_submission_are(lab):
    """brilliant.com's zone has imap CNAME smtp.brilliant.com: --host follows it."""
    report = check(target(lab, "brilliant.com", user=BETTY[0], password=BETTY[1], host="imap.brilliant.com"))
    assert report.passed, str(report)
    assert report.result("IMAP: the test message is in INBOX").status == "pass"
    nowhere = check(target(lab, "brilliant.com", user=BETTY[0], password=BETTY[1], host="pop.brilliant.com"))
    row = nowhere.result("IMAP: the test message is in INBOX")
    assert row.status == "fail" and "nothing listens on pop.brilliant.com" in row.got
