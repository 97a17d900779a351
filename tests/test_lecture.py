"""Lecture mode in a real browser: Debian's Chromium driven by Playwright (never a browser
download), against a lab world serving its page (`labkit world --web`), as a lecturer
and a room see it at 1280x720."""

from __future__ import annotations

import email.utils
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labkit.checks.harness import ALBERT, BETTY
from labkit.world import World

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright for Python (the test extra) not installed")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
WAIT = 10_000  # ms: how long the browser may take to show what the world did (it takes a few dozen)
CHUCK = "chuck@chaos.com"


def message(subject: str, to: str = BETTY) -> bytes:
    return (f"From: Albert <{ALBERT}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {email.utils.formatdate()}\r\n"
            f"\r\nSee you there.\r\n").encode()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt: chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def lecture(browser, tmp_path):
    """A fresh world serving its page, and the page open in a 1280x720 window."""
    with World(state_dir=tmp_path / "state") as world:
        url = world.serve_web()
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(url)
        playwright.expect(page.locator("#status")).to_contain_text("events", timeout=WAIT)
        yield world, page
        context.close()
        assert errors == []  # nothing failed in the page


def rows(page) -> list[str]:
    return page.locator("#rows .row").all_inner_texts()


def drawn(page) -> list[dict]:
    """The rows on the page, as the page holds them (from, to, text, label, ...)."""
    return page.evaluate("[...document.querySelectorAll('#rows .row')].map((row) => row.data)")


def keep_screenshot(page, tmp_path: Path, name: str, centre=None) -> Path:
    """The page as the room sees it, a test artifact (and, with LABKIT_ARTIFACTS set, a
    copy there for people to look at); ``centre``: a row to scroll to the middle first."""
    if centre is not None:
        centre.evaluate("row => row.scrollIntoView({block: 'center'})")
    shot = tmp_path / f"lecture-{name}.png"
    page.screenshot(path=str(shot))
    if os.environ.get("LABKIT_ARTIFACTS"):
        shutil.copy(shot, Path(os.environ["LABKIT_ARTIFACTS"]) / shot.name)
    return shot


def test_a_message_sent_through_the_world_shows_in_the_diagram_and_in_bettys_inbox(lecture, tmp_path):
    world, page = lecture
    world.send(ALBERT, [BETTY], message("Dinner at eight?"))
    diagram = page.locator("#rows")
    playwright.expect(diagram).to_contain_text("RCPT TO:<betty@brilliant.com>", timeout=WAIT)
    playwright.expect(diagram).to_contain_text("delivered to <betty@brilliant.com> (Maildir)", timeout=WAIT)
    # one lane per host, in the order they took part; DNS asked by smtp.awesome.com, not 127.0.0.1
    assert page.locator("#lanes .lane").all_inner_texts() == ["127.0.0.1", "smtp.awesome.com", "ns.lab",
                                                               "smtp.brilliant.com"]
    labels = page.locator("#rows .row .label").all_inner_texts()
    for label in ("server greeting", "sender command", "recipient command", "end of message",
                  "which hosts receive its mail? (MX)"):
        assert label in labels
    queued = page.locator("#rows .row.note", has_text="queued ")  # smtp.awesome.com queues it for the relay
    playwright.expect(queued).to_have_count(1, timeout=WAIT)
    assert len([t for t in rows(page) if "250 2.0.0 OK queued as" in t]) == 2  # each host's queue id
    inbox = page.locator("#inbox")
    playwright.expect(inbox).to_contain_text("Dinner at eight?", timeout=WAIT)
    # the Received chain, read bottom-up: hop 1 is Albert's submission, hop 2 the relay
    hops = page.locator(".hops li")
    playwright.expect(hops).to_have_count(2, timeout=WAIT)
    assert hops.nth(1).inner_text().startswith("hop 1: Received: from client.lab")
    assert hops.nth(0).inner_text().startswith("hop 2: Received: from smtp.awesome.com")
    assert "smtp.brilliant.com" in hops.nth(0).locator("mark").all_inner_texts()
    assert page.locator(".path").inner_text().endswith("smtp.awesome.com → smtp.brilliant.com → "
                                                      "betty@brilliant.com's INBOX")
    page.get_by_role("button", name="Show the raw source").click()
    playwright.expect(page.locator("pre.raw")).to_contain_text("See you there.", timeout=WAIT)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no horizontal scrolling
    keep_screenshot(page, tmp_path, "story")


def test_greylisting_chaos_com_from_the_page_shows_the_451_and_the_retry(lecture, tmp_path):
    world, page = lecture
    page.get_by_role("tab", name="Hosts & DNS").click()
    page.get_by_label("behaviour of smtp.chaos.com").select_option("greylist")
    playwright.expect(page.locator("#toast")).to_contain_text("smtp.chaos.com now behaves: greylist", timeout=WAIT)
    assert world.hosts["smtp.chaos.com"].behaviour == "greylist"
    world.send(ALBERT, [CHUCK], message("Greylisted?", CHUCK))
    diagram = page.locator("#rows")
    refused = page.locator("#rows .row.failure", has_text="451")
    playwright.expect(refused.first).to_be_visible(timeout=WAIT)
    playwright.expect(diagram).to_contain_text("deferred <chuck@chaos.com>, retry in", timeout=WAIT)
    playwright.expect(diagram).to_contain_text("delivered to <chuck@chaos.com> (Maildir)", timeout=WAIT)
    relay = [(d["from"], d["text"]) for d in drawn(page) if "smtp.chaos.com" in (d["from"], d["to"])]
    replies = [relay[i + 1] for i, (_, text) in enumerate(relay) if text == "RCPT TO:<chuck@chaos.com>"]
    assert [(who, text[:4]) for who, text in replies] == [("smtp.chaos.com", "451 "), ("smtp.chaos.com", "250 ")]
    playwright.expect(page.locator("#rows")).to_contain_text("smtp.chaos.com now behaves: greylist")
    keep_screenshot(page, tmp_path, "greylist", centre=refused.first)


def test_the_queue_says_what_waits_why_and_when(lecture):
    world, page = lecture
    page.get_by_role("tab", name="Hosts & DNS").click()
    page.get_by_label("behaviour of smtp.chaos.com").select_option("down")
    playwright.expect(page.get_by_label("behaviour of smtp.chaos.com")).to_have_value("down")
    world.send(ALBERT, [CHUCK], message("Anyone home?", CHUCK))
    page.get_by_role("tab", name="Queue").click()
    waiting = page.locator("#queue .waiting")
    playwright.expect(waiting).to_contain_text("to <chuck@chaos.com>: 451 4.4.1 smtp.chaos.com [1.2.3.13]",
                                              timeout=WAIT)
    playwright.expect(waiting.locator(".when")).to_contain_text("next try in", timeout=WAIT)
    playwright.expect(page.locator("#queue-count")).to_have_text("(1)")


def test_pause_holds_new_events_back_until_resumed_and_step_draws_one(lecture):
    world, page = lecture
    page.get_by_role("button", name="Pause").click()
    before = len(rows(page))
    world.send(ALBERT, [BETTY], message("While you were paused"))
    world.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com")
    waiting = re.compile(r"paused: ([2-9]\d|\d{3,}) waiting")  # it came (dozens of rows), and waits
    playwright.expect(page.locator("#status")).to_have_text(waiting, timeout=WAIT)
    assert len(rows(page)) == before
    page.get_by_role("button", name="Step").click()
    assert len(rows(page)) == before + 1
    page.get_by_role("button", name="Resume").click()
    playwright.expect(page.locator("#rows")).to_contain_text("delivered to <betty@brilliant.com>", timeout=WAIT)
    assert page.evaluate("window.lecture.held") == 0


def test_controls_send_the_dinner_mail_break_dns_and_clear_the_view(lecture, tmp_path):
    world, page = lecture
    page.get_by_role("button", name="Send Albert's dinner mail").click()
    diagram = page.locator("#rows")
    playwright.expect(diagram).to_contain_text("EHLO pc.awesome.com", timeout=WAIT)
    playwright.expect(page.locator("#lanes .lane").first).to_have_text("Albert's PC 1.2.3.100")
    playwright.expect(diagram).to_contain_text("delivered to <betty@brilliant.com> (Maildir)", timeout=WAIT)
    page.get_by_role("tab", name="Hosts & DNS").click()
    page.locator("#fault-name").fill("brilliant.com")
    page.get_by_role("button", name="SERVFAIL").click()
    playwright.expect(page.locator("#faults")).to_have_text("brilliant.com: servfail", timeout=WAIT)
    playwright.expect(diagram).to_contain_text("brilliant.com now gets servfail", timeout=WAIT)  # the feed's row too
    page.get_by_role("button", name="Clear", exact=True).click()
    assert rows(page) == [] and page.locator("#lanes .lane").count() == 0
    page.get_by_role("tab", name="Write").click()
    page.locator("#compose-to").fill(BETTY)
    page.locator("#compose-subject").fill("DNS is down")
    page.locator("#compose button[type=submit]").click()
    servfail = page.locator("#rows .row.failure", has_text="SERVFAIL").first
    playwright.expect(servfail).to_be_visible(timeout=WAIT)
    playwright.expect(diagram).to_contain_text("deferred <betty@brilliant.com>", timeout=WAIT)
    page.get_by_role("tab", name="Hosts & DNS").click()
    page.get_by_role("button", name="heal").click()
    playwright.expect(page.locator("#faults")).to_have_text("", timeout=WAIT)
    playwright.expect(diagram).to_contain_text("delivered to <betty@brilliant.com> (Maildir)", timeout=WAIT)
    keep_screenshot(page, tmp_path, "dns-fault", centre=servfail)


def test_a_students_part_is_drawn_in_orange(lecture):
    world, page = lecture

    def received_header(hop) -> str:  # a student's, plugged in on smtp.brilliant.com
        when = email.utils.format_datetime(email.utils.localtime())
        return f"Received: from {hop.helo} ([{hop.peer_address}]) by {hop.by} id {hop.queue_id}; {when}"

    world.use(host="smtp.brilliant.com", received_header=received_header)
    world.send(ALBERT, [BETTY], message("Through your code"))
    student = page.locator("#rows .row.student")
    playwright.expect(student.first).to_contain_text("your received_header ran", timeout=WAIT)
    colour = student.first.locator(".box").evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(180, 83, 9)"  # the page's orange


# -- who may use the page ------------------------------------------------------------------
def fetch(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_page_answers_its_own_address_and_origin_only(tmp_path):
    with World(state_dir=tmp_path / "state") as world:
        url = world.serve_web()
        assert url.startswith("http://127.0.0.1:")
        assert fetch(url + "api/state")[0] == 200
        status, body = fetch(url + "api/state", headers={"Host": "attacker.example"})  # DNS rebinding
        assert status == 403 and "answers to 127.0.0.1:" in body
        dinner = json.dumps({"story": "dinner"}).encode()
        status, body = fetch(url + "api/send", data=dinner, headers={"Content-Type": "text/plain"})  # a form's post
        assert status == 415
        status, body = fetch(url + "api/send", data=dinner, headers={"Content-Type": "application/json",
                                                                    "Origin": "http://attacker.example"})
        assert status == 403 and "attacker.example are not taken" in body
        assert world.messages(BETTY) == []  # none of it sent anything
        status, body = fetch(url + "api/send", data=json.dumps({"from": "mallory@evil.example", "to": BETTY}).encode(),
                             headers={"Content-Type": "application/json"})
        assert status == 400 and "'mallory@evil.example' is not a user of this world" in body
        status, body = fetch(url + "api/behave", data=json.dumps({"host": "chaos.com", "behaviour": "sulk"}).encode(),
                             headers={"Content-Type": "application/json"})
        assert status == 400 and "behaviour 'sulk' is not one of normal, refuse" in body
        status, _ = fetch(url + "api/message?address=betty@brilliant.com&name=../../world.json")
        assert status == 404


def test_with_a_token_the_page_needs_it_and_keeps_it_in_a_cookie(browser, tmp_path):
    with World(state_dir=tmp_path / "state") as world:
        url = world.serve_web(token="lecture-hall-7")
        assert url.endswith("/?token=lecture-hall-7")
        base = url.split("?")[0]
        status, body = fetch(base + "api/state")
        assert status == 403 and "needs its token" in body
        assert fetch(base + "api/state?token=wrong")[0] == 403
        assert fetch(base + "api/state", headers={"X-Labkit-Token": "lecture-hall-7"})[0] == 200
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        page = context.new_page()
        page.goto(url)
        playwright.expect(page.locator("#status")).to_contain_text("events", timeout=WAIT)
        page.get_by_role("button", name="Send Albert's dinner mail").click()  # the cookie carries the token
        playwright.expect(page.locator("#rows")).to_contain_text("EHLO pc.awesome.com", timeout=WAIT)
        context.close()


def test_labkit_world_json_names_the_page(tmp_path):
    args = [sys.executable, "-m", "labkit.cli", "world", "--json", "--web", "0", "--state-dir", str(tmp_path / "s")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        url = info["web"]["url"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert json.loads((tmp_path / "s" / "world.json").read_text())["web"] == {"url": url}
        status, body = fetch(url)
        assert status == 200 and "<title>labkit · the mail internet, live</title>" in body
        started = time.monotonic()
        proc.terminate()  # a page's open stream must not hold the world up
        assert proc.wait(timeout=20) == 0 and time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "labkit.cli", "world", "--web", str(port), "--state-dir",
                              str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"the lecture page cannot listen on 127.0.0.1:{port}" in run.stderr and "--web PORT" in run.stderr
    assert not (tmp_path / "s" / "world.json").exists()  # the world did not stay up without its page
