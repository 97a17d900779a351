"""`labkit check` against the lab world: brilliant.com passes every rule, and the
world's misbehaving parts are caught. Real DNS, SMTP, IMAP and POP3 sessions; the
world's address map sends its virtual addresses to loopback ports (and nothing else is
ever dialled: every check here has ``direct=False`` or finds the world's map itself)."""

from __future__ import annotations

import csv
import io
import json
import socket
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import chromium_page, lecture_config
from labkit import cli
from labkit.audit import Target, check, render, rubric
from labkit.audit.batch import COLUMNS, Progress, grade_of, read_students, run_batch
from labkit.audit.target import parse_connect, parse_endpoint
from labkit.net import AddressMap, Endpoint
from labkit.world import World

BETTY = ("betty@brilliant.com", "betty-password")
FULL = len(rubric.RULES)  # one point a rule: the same maximum for every setup


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with World(lecture_config(), state_dir=tmp_path_factory.mktemp("check") / "state") as world:
        yield world


def target(world: World, domain: str, **kw) -> Target:
    """A check of ``domain`` inside the world: its DNS, and only its address map."""
    dns = world.info()["dns"]
    kw = {"routes": world.context.addresses, "timeout": 3.0, "wait": 5.0, **kw}
    return Target(domain, dns=Endpoint(dns["host"], dns["port"]), direct=False, **kw)


def audit(world: World, domain: str, **kw):
    report = check(target(world, domain, **kw))
    assert report.max_score == FULL, str(report)  # whatever the setup
    assert [r.rule for r in report if r.points] == [rule.title for rule in rubric.RULES]
    return report


def test_brilliant_com_passes_every_rule(lab):
    report = audit(lab, "brilliant.com", user=BETTY[0], password=BETTY[1])
    assert report.passed, str(report)
    scored = [r for r in report if r.points]
    assert {r.status for r in scored} == {"pass"}, str(report)
    assert report.score == report.max_score == FULL == 18
    assert report.result(rubric.MX.title).info == "10 smtp.brilliant.com"
    assert "8BITMIME" in report.result(rubric.EHLO.title).info
    assert "by smtp.brilliant.com" in report.result(rubric.RECEIVED.title).info
    assert report.result(rubric.SUBMISSION_RELAY.title).info.startswith("port 587: refused before AUTH: 530")
    assert "is ns.lab (NS of brilliant.com), answers with AA" in report.result(rubric.AUTHORITY.title).info
    # information only: reported, never scored; the lab's servers speak no TLS
    assert report.result(rubric.SPF).points == 0
    tls = report.result(rubric.TLS)
    assert tls.status == "warn" and tls.points == 0 and "no service offered TLS" in tls.got


def test_the_test_message_is_really_delivered(lab):
    before = len(lab.messages("betty@brilliant.com"))
    audit(lab, "brilliant.com", user=BETTY[0], password=BETTY[1])
    messages = lab.messages("betty@brilliant.com")
    assert len(messages) == before + 1
    assert b"Message-ID: <labkit-check." in messages[-1] and b"Subject: labkit check of brilliant.com" in messages[-1]


def test_probes_never_get_past_rcpt(lab):
    """Without --user no message is sent: no session of the check reaches DATA."""
    since = time.time()
    report = audit(lab, "brilliant.com")
    smtp = [e for e in lab.tracer.events() if e.time >= since and e.protocol == "smtp" and e.direction == "C"]
    commands = {e.line.split(" ")[0].split(":")[0].upper() for e in smtp}
    assert {"EHLO", "MAIL", "RCPT", "RSET", "QUIT"} <= commands and "DATA" not in commands
    row = report.result(rubric.MESSAGE.title)
    assert row.status == "unchecked" and row.info == "not checked (no --user given)"
    assert report.failures == [] and report.score == FULL - 7  # the 7 rules that need a user are not earned


def test_awesome_com_submission_relays_for_its_trusted_network(lab):
    """smtp.awesome.com trusts 127.0.0.0/8 (like Postfix's mynetworks) on port 587:
    the checker, on loopback, is let through without AUTH."""
    report = audit(lab, "awesome.com")
    row = report.result(rubric.SUBMISSION_RELAY.title)
    assert row.status == "fail" and row.rfc.startswith("RFC 6409 §4.3")
    assert "it relays for anyone" in row.got and ("C", "RSET") in row.transcript
    assert report.result(rubric.RELAY.title).status == "pass"  # port 25 is fine
    assert report.result(rubric.SPF).info == "v=spf1 mx -all"


def test_null_mx_is_reported_and_nothing_else_counts_twice(lab):
    report = audit(lab, "nomail.com")
    row = report.result(rubric.MX.title)
    assert row.status == "fail" and row.rfc == "RFC 7505 §3" and "null MX" in row.got
    assert ("S", "nomail.com. 300 IN MX 0 .") in row.transcript
    assert report.failures == [row]  # the rules it stopped are shown, not failed again
    greeting = report.result(rubric.GREETING.title)
    assert greeting.status == "unchecked" and greeting.info == f'not checked (because "{rubric.MX.title}" failed)'
    assert not report.passed


def test_no_such_domain(lab):
    report = audit(lab, "typo.brilliant.com", user="x@typo.brilliant.com", password="x")
    row = report.result(rubric.MX.title)
    assert row.status == "fail" and "NXDOMAIN" in row.got and row.rfc == "RFC 5321 §5.1"
    assert report.result(rubric.GREETING.title).status == "unchecked"


def test_a_dead_primary_with_a_working_backup_passes_with_a_warning(lab):
    """careful.com: MX 10 mx1 (nothing listens), MX 20 mx2: RFC 5321 §5.1's backup."""
    report = audit(lab, "careful.com", user="carol@careful.com", password="carol-password")
    row = report.result(rubric.GREETING.title)
    assert row.status == "warn" and "mx1.careful.com (preference 10) did not answer" in row.got
    assert "mail goes to mx2.careful.com" in row.got and "RFC 5321 §5.1" in row.rfc
    assert report.result(rubric.MESSAGE.title).info.startswith("via mx2.careful.com")
    assert report.passed and report.score == FULL, str(report)


def test_refusing_host_gives_a_fail_row_with_the_550(lab):
    lab.set_behaviour("smtp.chaos.com", "refuse")
    try:
        report = audit(lab, "chaos.com", user="chuck@chaos.com", password="chuck-password")
    finally:
        lab.set_behaviour("smtp.chaos.com", "normal")
    row = report.result(rubric.POSTMASTER.title)
    assert row.status == "fail" and row.got.startswith("550 ") and row.rfc == "RFC 5321 §4.5.1"
    assert ("C", "RCPT TO:<postmaster@chaos.com>") in row.transcript
    message = report.result(rubric.MESSAGE.title)
    assert message.status == "fail" and message.got.startswith("550 ")
    found = report.result(rubric.IMAP_FOUND.title)
    assert found.info == f'not checked (because "{rubric.MESSAGE.title}" failed)'
    assert report.result(rubric.IMAP_WRONG.title).status == "pass"  # independent of the message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_map(world: World) -> AddressMap:
    routes = AddressMap()
    for (address, port), endpoint in world.context.addresses.routes().items():
        routes.add(address, port, endpoint)
    return routes


def test_a_host_that_is_down_is_a_fail_row(lab):
    routes = world_map(lab)
    routes.add("smtp.brilliant.com", 25, Endpoint("127.0.0.1", free_port()))  # the name wins; nothing is there
    report = audit(lab, "brilliant.com", user=BETTY[0], password=BETTY[1], routes=routes)
    row = report.result(rubric.GREETING.title)
    assert row.status == "fail" and "connection refused" in row.got
    assert report.result(rubric.EHLO.title).info == f'not checked (because "{rubric.GREETING.title}" failed)'
    assert report.result(rubric.MESSAGE.title).status == "unchecked"
    assert report.result(rubric.IMAP_WRONG.title).status == "pass"
    assert [r.rule for r in report.failures] == [rubric.GREETING.title]


def test_a_server_that_never_greets_is_bounded_and_named(lab):
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        routes = AddressMap()
        routes.add("smtp.brilliant.com", 25, Endpoint("127.0.0.1", silent.getsockname()[1]))
        started = time.monotonic()
        report = audit(lab, "brilliant.com", timeout=0.5, routes=routes)
    assert time.monotonic() - started < 5
    row = report.result(rubric.GREETING.title)
    assert row.status == "fail" and row.got == "no reply within 0.5s"
    assert row.expected == "a 220 greeting from smtp.brilliant.com" and "never greeted" in row.hint


# -- the command line ---------------------------------------------------------------------
def dns_args(world: World) -> list[str]:
    info = world.info()
    return ["--dns", f"{info['dns']['host']}:{info['dns']['port']}"]


def test_cli_plain_text_and_exit_status(lab, capsys):
    state = ["--state-dir", str(lab.state_dir)]
    status = cli.main(["check", "brilliant.com", "--world", *state, "--user", BETTY[0], "--password", BETTY[1],
                       "--timeout", "3", "--wait", "5"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith(f"mail setup of brilliant.com: 18 pass, 1 warn, 2 skip (score {FULL}/{FULL})")
    assert "\x1b[" not in out  # piped: plain
    assert "[PASS] relaying for strangers is refused" in out
    assert cli.main(["check", "nomail.com", "--world", *state]) == 1
    assert "[FAIL] MX records name the mail hosts" in capsys.readouterr().out


def test_dns_of_the_lab_world_means_its_address_map_for_every_port(lab, capsys):
    """--dns naming the running world's DNS, --connect only for port 25: submission
    (587), IMAP and POP3 still go through the world's map, never to 1.2.3.5 itself."""
    smtp = lab.info()["hosts"]["smtp.brilliant.com"]["services"]["smtp"]
    status = cli.main(["check", "brilliant.com", *dns_args(lab), "--state-dir", str(lab.state_dir),
                       "--connect", f"smtp.brilliant.com:25={smtp['host']}:{smtp['port']}", "--user", BETTY[0],
                       "--password", BETTY[1], "--timeout", "3", "--wait", "5", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert status == 0, data
    assert data["settings"]["dialling"] == "only the overrides (a lab world)"
    rows = {r["rule"]: r for r in data["results"]}
    assert rows[rubric.SUBMISSION_AUTH.title]["info"] == "port 587: 235 2.7.0 Authentication successful"
    assert rows[rubric.POP3_FOUND.title]["status"] == "pass"


def test_cli_json_and_html(lab, capsys, tmp_path):
    page = tmp_path / "report.html"
    status = cli.main(["check", "nomail.com", "--world", "--state-dir", str(lab.state_dir), "--json",
                       "--html", str(page), "--user", "nobody@nomail.com"])
    data = json.loads(capsys.readouterr().out)
    assert status == 1 and not data["passed"] and data["title"] == "mail setup of nomail.com"
    checked_at = datetime.fromisoformat(data["checked_at"])
    assert timedelta(0) <= datetime.now(timezone.utc) - checked_at < timedelta(minutes=5)
    assert data["settings"]["user"] == "nobody@nomail.com" and data["settings"]["labkit"]
    rows = {r["rule"]: r for r in data["results"]}
    failed, unchecked = rows[rubric.MX.title], rows[rubric.GREETING.title]
    assert (failed["status"], failed["points"], failed["max_points"]) == ("fail", 0, 1)  # nothing earned
    assert (unchecked["points"], unchecked["max_points"]) == (0, 1)
    assert rows[rubric.AUTHORITY.title]["points"] == 1 and data["score"] == 1 and data["max_score"] == FULL
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "labkit check: mail setup of nomail.com" in html
    for shown in ("DNS server", lab.info()["dns"]["host"], "nobody@nomail.com", "labkit", "checked at",
                  "a null MX is right for a domain that never receives mail"):
        assert shown in html


def test_colour_only_when_asked_or_on_a_terminal(lab):
    report = audit(lab, "nomail.com")
    coloured = render.text(report, colour=True)
    assert "\x1b[1;31m[FAIL]\x1b[0m MX records name the mail hosts" in coloured
    assert f"\x1b[2m[----]\x1b[0m {rubric.GREETING.title}: not checked" in coloured
    assert render.text(report) == str(report)
    assert render.wants_colour(io.StringIO()) is False


def test_bad_arguments(capsys, tmp_path):
    assert cli.main(["check", "x.test", "--connect", "nonsense"]) == 2
    assert "NAME:PORT=HOST:PORT" in capsys.readouterr().err
    assert cli.main(["check"]) == 2
    assert cli.main(["check", "x.test", "--services", "imap,smtps"]) == 2
    assert "unknown service smtps" in capsys.readouterr().err
    assert cli.main(["check", "x.test", "--ca-file", str(tmp_path / "none.pem")]) == 2
    assert "No such file" in capsys.readouterr().err


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
bob,nomail.com,,nobody@nomail.com,x
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
    assert {r["max_score"] for r in rows} == {str(FULL)}  # one rubric for the class
    assert by["ada"] == {"student": "ada", "assignment": "mail-setup", "score": str(FULL), "max_score": str(FULL),
                         "status": "graded", "reason": ""}
    assert by["bob"]["status"] == "graded"
    assert by["bob"]["reason"] == ("setup: MX records name the mail hosts — 0 . — a null MX: the domain says it "
                                   "accepts no mail")  # one failure; what it stopped is not listed again
    assert by["cy"]["status"] == "missing"


def test_batch_time_limit_cuts_only_what_it_stops(lab):
    rows = read_students(io.StringIO(STUDENTS))[:2]
    progress_out, csv_out = io.StringIO(), io.StringIO()

    def expired_target(row):
        return target(lab, row["domain"], deadline=time.monotonic())  # no time left at all

    graded = run_batch(rows, expired_target, csv_out, jobs=2, progress=Progress(2, progress_out))
    assert [g["status"] for g in graded] == ["timed out", "timed out"]
    assert graded[0]["reason"] == f"time limit reached: {FULL} rules not checked"
    lines = progress_out.getvalue().splitlines()  # not a terminal: one plain line each
    assert len(lines) == 2 and lines[-1].startswith("checked 2/2: ")
    assert csv_out.getvalue().startswith(",".join(COLUMNS) + "\n")
    # a check that finished every rule is graded, even when its limit passes just after
    finished = check(target(lab, "nomail.com", deadline=time.monotonic() + 10))
    assert not finished.timed_out
    assert grade_of(finished)["status"] == "graded"


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
        report = audit(lab, "brilliant.com", timeout=0.5)
    assert time.monotonic() - started < 3
    row = report.result(rubric.MX.title)
    assert row.status == "fail" and row.got == "no answer within 0.5s"
    assert report.result(rubric.SPF).status == "skip"
    assert report.result(rubric.AUTHORITY.title).status == "unchecked"
    assert report.failures == [row]


@pytest.fixture
def plain_dns():
    """A bare UDP name server on loopback answering from a fixed record set, its AA and
    RA bits as the test sets them: a lame server, a resolver, or one that claims AA."""
    import threading

    import dns.flags
    import dns.message
    import dns.rdatatype
    import dns.rrset

    records = {"MX": "10 mx.lame.test.", "SOA": "ns.lame.test. hostmaster.lame.test. 7 3600 600 86400 300"}
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


def test_authority_needs_aa_and_a_server_the_zone_names(plain_dns):
    endpoint, flags = plain_dns

    def authority():
        report = check(Target("lame.test", dns=endpoint, direct=False, timeout=0.5))
        assert report.max_score == FULL
        return report.result(rubric.AUTHORITY.title)

    lame = authority()
    assert lame.status == "fail" and "answered without AA" in lame.got and lame.rfc == rubric.AUTHORITY.rfc
    assert ("C", f"lame.test. IN SOA (to {endpoint}, no recursion: RD clear)") in lame.transcript
    flags["ra"] = True
    assert authority().status == "fail"  # a resolver answers for others
    flags["aa"] = True  # AA, but the zone names no server: nothing says this one is its authority
    claims = authority()
    assert claims.status == "fail" and "is not one of its name servers" in claims.got


def test_a_wrong_password_is_the_command_lines_mistake_and_is_never_shown(lab):
    report = audit(lab, "brilliant.com", user=BETTY[0], password="not-bettys-secret")
    assert report.roster.startswith("could not log in with the given password (IMAP: [AUTHENTICATIONFAILED]")
    assert report.roster.endswith("check the --user, --login and --password")
    for rule in (rubric.IMAP_FOUND, rubric.POP3_FOUND, rubric.SUBMISSION_AUTH, rubric.RECEIVED):
        row = report.result(rule.title)
        assert row.status == "unchecked" and row.info == f"not checked ({report.roster})", row.text()
    assert report.failures == []  # the setup did nothing wrong
    assert report.result(rubric.IMAP_WRONG.title).status == "pass"
    assert "not-bettys-secret" not in report.dumps() and "not-bettys-secret" not in render.to_json(report)


def test_host_names_where_imap_pop3_and_submission_are(lab):
    """brilliant.com's zone has imap CNAME smtp.brilliant.com: --host follows it."""
    report = audit(lab, "brilliant.com", user=BETTY[0], password=BETTY[1], host="imap.brilliant.com")
    assert report.passed, str(report)
    assert report.result(rubric.IMAP_FOUND.title).status == "pass"
    nowhere = audit(lab, "brilliant.com", user=BETTY[0], password=BETTY[1], host="pop.brilliant.com")
    row = nowhere.result(rubric.IMAP_FOUND.title)
    assert row.status == "fail" and "nothing listens on pop.brilliant.com port 143" in row.got
    assert "port 993" in row.got  # where implicit TLS would have been
    assert nowhere.result(rubric.IMAP_WRONG.title).status == "unchecked"  # one failure for a service that is not there
    mine = audit(lab, "brilliant.com", user=BETTY[0], password=BETTY[1], host="127.0.0.1")  # the checker's own
    row = mine.result(rubric.IMAP_FOUND.title)
    assert row.status == "fail" and "127.0.0.1 is a loopback address (RFC 6890): not dialled" in row.got


def test_the_html_report_wraps_in_a_browser(lab, tmp_path):
    """Printed or on a narrow screen, nothing hides behind a horizontal scroll bar: the
    long hints, transcripts and infos wrap (Debian's chromium, driven by Playwright)."""
    page_file = tmp_path / "report.html"
    report = audit(lab, "awesome.com", user="albert@awesome.com", password="wrong")
    page_file.write_text(render.html_page(report))
    with chromium_page({"width": 360, "height": 800}) as page:
        page.goto(page_file.as_uri())
        clipped = page.evaluate("""() => [...document.querySelectorAll('pre, dd, td, body')]
            .filter(e => e.scrollWidth > e.clientWidth + 1)
            .map(e => e.tagName + ': ' + e.textContent.slice(0, 60))""")
        text = page.inner_text("body")
    assert clipped == []
    assert "submission: relaying needs AUTH" in text and "it relays for anyone" in text
    assert "DNS server" in text and "labkit" in text and "albert@awesome.com" in text
