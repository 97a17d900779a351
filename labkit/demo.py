"""`labkit demo`: the life of an e-mail, replayed from a real run of the lab world.

Albert (albert@awesome.com) writes to Betty (betty@brilliant.com). His client talks
SMTP to smtp.awesome.com; that MTA looks up brilliant.com's MX in DNS, relays to
smtp.brilliant.com, which stamps a Received header and stores the message in Betty's
Maildir; Betty reads it over IMAP. Everything really happens (sockets, DNS, disk); the
demo records the trace, then shows it step by step like the lecture's slides.
"""

from __future__ import annotations

import imaplib
import math
import os
import select
import signal
import sys
import textwrap
from dataclasses import dataclass
from typing import Callable, IO

from .render import TerminalRenderer, cut, terminal_size
from .trace import TraceEvent
from .smtp.reply import SendResult
from .world import AsyncWorld, World

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


TITLE = "The life of an e-mail: Albert writes to Betty"
COPY_TITLE = "6. Betty's copy, with its relay path (read the Received headers bottom-up)"


@dataclass
class Step:
    title: str
    explain: str
    events: list[TraceEvent]
    extra: str = ""


def send_from_alberts_pc(world: World | AsyncWorld, rcpt_to: list[str], message: bytes) -> SendResult:
    """Albert's mail client at work, as the lecture draws it: from his computer (in
    smtp.awesome.com's trusted network) to its submission port. Blocking."""
    with world.connect("1.2.3.4", 587, source=ALBERT_PC) as sock:
        return world.seams.send_mail(sock, helo="pc.awesome.com", mail_from=ALBERT, rcpt_to=rcpt_to, message=message)


def run_story(world: World) -> tuple[list[Step], bytes]:
    """Send Albert's message through the world; return the steps and Betty's copy."""
    with world.tracer.record() as events:
        send_from_alberts_pc(world, [BETTY], MESSAGE)
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


Page = list[str]  # the terminal lines shown between two pauses


def _pages(heading: list[str], body: list[str], rows: int | None) -> list[Page]:
    """One step's lines in pages that each fit ``rows`` lines with the pause prompt (a
    blank line and the prompt) below, every page under the step's heading, so the
    heading is on the screen whenever the demo waits. None: one page, no paging."""
    if rows is None:
        return [["", *heading, *body]]
    room = max(rows - 2 - len(heading), 3)
    pages = max(math.ceil(len(body) / room), 1)
    size = math.ceil(len(body) / pages)  # even pages: no lone last line
    more = [f"{heading[0]} (continued)"] if heading else []
    return [[*(heading if i == 0 else more + heading[1:]), *body[i * size:(i + 1) * size]] for i in range(pages)]


def show(steps: list[Step], stored: bytes, *, out: IO[str], colour: bool | None,
         pause: Callable[[str], None], width: int | None = None, rows: int | None = None) -> None:
    """Print the story; ``pause(why)`` runs between pages. With ``rows``, a step longer
    than the screen is paged; every line fits ``width`` columns (default: the terminal's)."""
    renderer = TerminalRenderer(out, colour=colour, width=width, dialogue=True)
    width = renderer.width
    bold = (lambda s: f"\x1b[1m{s}\x1b[0m") if renderer.colour else (lambda s: s)
    prose = (lambda text, indent="": textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent)
             if width else [indent + text])
    blocks: list[tuple[list[str], list[str]]] = []
    for step in steps:
        heading = [bold(line) for line in prose(step.title)] + prose(" ".join(step.explain.split()), "   ")
        renderer.fit(step.events)
        blocks.append((heading, [line for event in step.events for line in renderer.lines(event)]))
    copy = stored.decode("utf-8", "replace").splitlines()  # as stored: folded headers and all
    blocks.append(([bold(line) for line in prose(COPY_TITLE)],
                   [piece for line in copy for piece in cut("  " + line.expandtabs(4), width, 6)]))
    print(bold(TITLE), file=out)
    for i, (heading, body) in enumerate(blocks):
        for j, page in enumerate(_pages(heading, body, rows)):
            if i or j:
                pause("for more of this step" if j else "for the next step")
            print("\n".join(page), file=out, flush=True)


def wait_for_enter(prompt: str) -> None:
    """input(), without its race: a Ctrl-C that lands after the prompt but before the
    read blocks would otherwise wait for Enter. A signal writes to the wakeup pipe, so
    the select returns and Python raises KeyboardInterrupt at once. EOFError on end of input."""
    if os.name == "nt":  # select() takes no console handle there
        input(prompt)
        return
    woken, wake = os.pipe()
    os.set_blocking(woken, False)
    os.set_blocking(wake, False)
    previous = signal.set_wakeup_fd(wake)
    try:
        print(prompt, end="", flush=True)
        stdin = sys.stdin.fileno()
        while True:
            ready, _, _ = select.select([stdin, woken], [], [])
            if stdin in ready:
                if not os.read(stdin, 4096):  # a terminal in canonical mode: one line
                    raise EOFError
                return
            os.read(woken, 512)  # another signal (a resized window): keep waiting
    finally:
        signal.set_wakeup_fd(previous)
        os.close(woken)
        os.close(wake)


def main(argv: list[str] | None = None, out: IO[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="labkit demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", action="store_true", help="pause for Enter between steps (live lecture); "
                        "a step longer than the terminal is shown a screenful at a time")
    parser.add_argument("--colour", "--color", dest="colour", action="store_true", default=None, help="force colour")
    parser.add_argument("--no-colour", "--no-color", dest="colour", action="store_false", help="no colour")
    parser.add_argument("--width", type=int, help="wrap lines at this many columns (default: the terminal's)")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    stepping = args.step and sys.stdin.isatty()
    size = terminal_size(out)

    def pause(why: str) -> None:
        if stepping:
            wait_for_enter(f"\n   -- press Enter {why} (Ctrl-C ends) --")

    if stepping:  # Ctrl-C ends it, even started by a parent that ignores or blocks SIGINT (which
        # children inherit: nohup, some launchers), where Python would install no handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if hasattr(signal, "pthread_sigmask"):  # POSIX
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    try:
        with World() as world:
            steps, stored = run_story(world)
        show(steps, stored, out=out, colour=args.colour, pause=pause, width=args.width,
             rows=size.lines if stepping and size else None)
    except KeyboardInterrupt:  # the lecturer is done: one line, no traceback
        print("\nlabkit demo: interrupted", file=sys.stderr, flush=True)
        return 130
    except EOFError:  # stdin closed at a pause
        print(file=out)
    return 0
