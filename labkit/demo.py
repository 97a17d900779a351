"""`labkit demo`: the life of an e-mail, replayed from a real run of the lab world.

Albert (albert@awesome.com) writes to Betty (betty@brilliant.com). His client talks
SMTP to smtp.awesome.com; that MTA looks up brilliant.com's MX in DNS, relays to
smtp.brilliant.com, which stamps a Received header and stores the message in Betty's
Maildir; Betty reads it over IMAP. Everything really happens (sockets, DNS, disk); the
demo records the trace, then shows it step by step like the lecture's slides.
"""

from __future__ import annotations

import imaplib
import sys
from dataclasses import dataclass
from typing import Callable, IO

from .render import TerminalRenderer
from .trace import TraceEvent
from .world import World

ALBERT, BETTY = "albert@awesome.com", "betty@brilliant.com"
ALBERT_PC = "1.2.3.100"  # Albert's computer, as the lecture's network shows it

MESSAGE = (
    "From: Albert <albert@awesome.com>\r\n"
    "To: Betty <betty@brilliant.com>\r\n"
    "Subject: Lunch on Friday?\r\n"
    "\r\n"
    "Hi Betty,\r\n"
    "shall we have lunch on Friday?\r\n"
    "-- Albert\r\n"
).encode()


@dataclass
class Step:
    title: str
    explain: str
    events: list[TraceEvent]
    extra: str = ""


def run_story(world: World) -> tuple[list[Step], bytes]:
    """Send Albert's message through the world; return the steps and Betty's copy."""
    with world.tracer.record() as events:
        with world.connect("1.2.3.4", 587, source=ALBERT_PC) as sock:
            world.seams.send_mail(sock, helo="pc.awesome.com", mail_from=ALBERT, rcpt_to=[BETTY], message=MESSAGE)
        world.wait_for_delivery(BETTY, timeout=10)
        betty = world.mailbox(BETTY)
        imap = world.host("brilliant.com").services["imap"]
        with imaplib.IMAP4(imap.host, imap.port, timeout=10) as client:
            client.login(betty.address, betty.password)
            typ, detail = client.select("INBOX", readonly=True)
            if typ != "OK":
                raise RuntimeError(f"Betty's IMAP server would not open INBOX: {detail}")
            _, data = client.fetch("1", "(BODY.PEEK[])")
            client.logout()
    stored = data[0][1] if data and isinstance(data[0], tuple) else b""
    smtp = [e for e in events if e.protocol == "smtp"]
    first = smtp[0].session if smtp else ""
    steps = [
        Step("1. Albert's mail client talks SMTP to smtp.awesome.com",
             "His client connects to his own mail server (the submission service; his computer is in the\n"
             "server's trusted network) and hands over the message with the SMTP dialogue.",
             [e for e in smtp if e.session == first]),
        Step("2. smtp.awesome.com asks DNS: who receives mail for brilliant.com?",
             "The MX record names the mail exchanger (10 smtp.brilliant.com); its A record gives the address.",
             [e for e in events if e.protocol == "dns"]),
        Step("3. smtp.awesome.com relays the message to smtp.brilliant.com",
             "The same SMTP dialogue, now between two MTAs. smtp.brilliant.com adds a Received header.",
             [e for e in smtp if e.session != first]),
        Step("4. smtp.brilliant.com stores the message in Betty's Maildir",
             "The message is on disk (fsynced) before the server answered 250; now it is delivered.",
             [e for e in events if e.protocol == "mta"]),
        Step("5. Betty reads her mail over IMAP",
             "Her client logs in to smtp.brilliant.com's IMAP server, opens INBOX and fetches the message;\n"
             "it stays on the server (POP3 would download it).",
             [e for e in events if e.protocol == "imap"]),
    ]
    return steps, stored


def show(steps: list[Step], stored: bytes, *, out: IO[str], colour: bool | None, pause: Callable[[], None]) -> None:
    renderer = TerminalRenderer(out, colour=colour)
    bold = (lambda s: f"\x1b[1m{s}\x1b[0m") if renderer.colour else (lambda s: s)
    print(bold("The life of an e-mail: Albert writes to Betty"), file=out)
    for i, step in enumerate(steps):
        if i:
            pause()
        print("\n" + bold(step.title), file=out)
        print(step.explain, file=out)
        for event in step.events:
            renderer(event)
    pause()
    print("\n" + bold("6. Betty's copy, with its relay path (read the Received headers bottom-up)"), file=out)
    for line in stored.decode("utf-8", "replace").splitlines():  # as stored: folded headers and all
        print(f"  {line}", file=out)


def main(argv: list[str] | None = None, out: IO[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="labkit demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", action="store_true", help="pause for Enter between steps (live lecture)")
    parser.add_argument("--colour", "--color", dest="colour", action="store_true", default=None, help="force colour")
    parser.add_argument("--no-colour", "--no-color", dest="colour", action="store_false", help="no colour")
    args = parser.parse_args(argv)
    out = out or sys.stdout

    def pause() -> None:
        if args.step and sys.stdin.isatty():
            input("\n   -- press Enter for the next step --")

    with World() as world:
        steps, stored = run_story(world)
    show(steps, stored, out=out, colour=args.colour, pause=pause)
    return 0
