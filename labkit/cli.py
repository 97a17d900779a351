"""The `labkit` command: run the lab world, replay the lecture, help real clients."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import functools
import gc
import json
import signal
import sys
from typing import TYPE_CHECKING

from .state import default_state_dir

if TYPE_CHECKING:
    from .world import AsyncWorld

RUNNING_STATE_DIR = "the running world's state dir (default: $LABKIT_STATE_DIR or ~/.labkit/world)"
WEB_PORT = 8025  # the lecture page's port unless told (Mailpit's web port too: one or the other)


def _world_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("world", help="start the lab world and run until Ctrl-C",
                       description="Start a complete mail internet on 127.0.0.1 and run until SIGINT/SIGTERM.")
    p.add_argument("--config", help="topology file (TOML); default: the lecture's world")
    p.add_argument("--state-dir", help="where mail, queues and world.json live "
                   "(default: $LABKIT_STATE_DIR or ~/.labkit/world)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON line (the world's addresses) once ready, and nothing else on stdout")
    p.add_argument("--base-port", type=int, help="fixed ports: DNS on N, host i's smtp/submission/pop3/imap "
                   "on N+10(i+1)+0..3 (default: any free ports)")
    p.add_argument("--quiet", action="store_true", help="do not print the live trace")
    p.add_argument("--web", nargs="?", type=int, const=WEB_PORT, metavar="PORT",
                   help=f"serve the lecture page, live, on PORT (default {WEB_PORT}; 0: any free port)")
    p.add_argument("--web-host", default="127.0.0.1", metavar="ADDRESS",
                   help="the address the page listens on (default 127.0.0.1, this machine only); any other "
                   "address gets a secret token in the page's URL")
    p.add_argument("--web-token", metavar="TOKEN", help="the token the page's URL carries (default: a random one, "
                   "when --web-host is not loopback)")


def _control_parsers(sub: argparse._SubParsersAction) -> None:
    from .config import BEHAVIOURS
    from .dns.server import FAULTS

    state_dir = RUNNING_STATE_DIR
    b = sub.add_parser("behave", help="make a host of the running world misbehave (or behave)",
                       description="Switch a mail host of the running world: refuse (550 at RCPT), greylist (451 "
                       "on a first try), tarpit (slow replies), drop (hang up after DATA), down (connection "
                       "refused), or normal.")
    b.add_argument("host", help="a mail host's name or a domain it serves (smtp.chaos.com, chaos.com)")
    b.add_argument("behaviour", choices=BEHAVIOURS)
    b.add_argument("--state-dir", help=state_dir)
    d = sub.add_parser("dns-fault", help="break (or heal) DNS for one name in the running world",
                       description="Answer the running world's DNS queries for NAME with SERVFAIL, or not at all "
                       "(timeout); clear heals it.")
    d.add_argument("name", help="a DNS name (brilliant.com, smtp.chaos.com)")
    d.add_argument("fault", choices=(*FAULTS, "clear"))
    d.add_argument("--state-dir", help=state_dir)


def run_control(args: argparse.Namespace) -> int:
    """`labkit behave` and `labkit dns-fault`: one request over the world's control channel."""
    from .control import ControlError, request
    from .state import load_world_info

    if args.command == "behave":
        message = {"op": "behave", "host": args.host, "behaviour": args.behaviour}
    else:
        message = {"op": "dns-fault", "name": args.name, "fault": args.fault}
    where = args.state_dir or default_state_dir()
    try:
        info = load_world_info(args.state_dir)
    except FileNotFoundError as error:
        print(f"labkit: {error.args[0]}", file=sys.stderr)
        return 1
    try:
        reply = request(info, message)
    except ControlError as error:
        print(f"labkit: {error}", file=sys.stderr)
        return 1
    except (ConnectionRefusedError, FileNotFoundError):
        print(f"labkit: no lab world running in {where} (its world.json is left from one that was killed): "
              "start one with `labkit world`", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"labkit: no answer from the world in {where}: {error}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"labkit: {reply.get('error')}", file=sys.stderr)
        return 1
    print(reply["said"])
    return 0


async def run_world(args: argparse.Namespace) -> int:
    from .render import TerminalRenderer
    from .world import AsyncWorld

    world = AsyncWorld(args.config, state_dir=args.state_dir or default_state_dir(), base_port=args.base_port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await world.start()
    try:
        if args.web is not None:
            try:
                await world.serve_web(args.web_host, args.web, args.web_token)
            except OSError as error:
                raise OSError(f"the lecture page cannot listen on {args.web_host}:{args.web} ({error.strerror or error}):"
                              " choose another port with --web PORT (0: any free port)") from None
        if args.json:
            print(json.dumps(world.info()), flush=True)
        else:
            _print_summary(world)
            if not args.quiet:
                world.tracer.subscribe(TerminalRenderer(sys.stdout))
        await stop.wait()
    finally:
        await world.stop()
    return 0


def _print_summary(world: AsyncWorld) -> None:
    info = world.info()
    print(f"lab world running; state in {info['state_dir']} (Ctrl-C stops it)")
    if "web" in info:
        print(f"  lecture page: {info['web']['url']}")
    print(f"  DNS  ns.lab  {info['dns']['host']}:{info['dns']['port']}   (dig @{info['dns']['host']} "
          f"-p {info['dns']['port']} brilliant.com MX)")
    for name, host in info["hosts"].items():
        services = "  ".join(f"{s} {e['port']}" for s, e in host["services"].items())
        print(f"  {name:20} {host['address']:10} {services}")
    for address, box in info["mailboxes"].items():
        print(f"  mailbox {address:24} password {box['password']:18} {box['maildir']}")
    print("  (trace follows)", flush=True)


def run_muttrc(args: argparse.Namespace) -> int:
    from .muttrc import muttrc
    from .state import load_world_info

    try:
        print(muttrc(load_world_info(args.state_dir), args.address, maildir=args.maildir, sendmail=args.sendmail),
              end="")
    except (FileNotFoundError, KeyError) as error:
        print(f"labkit: {error.args[0]}", file=sys.stderr)
        return 1
    return 0


def _delegated(command: str, rest: list[str]) -> int:
    """The commands with parsers of their own, loaded only when used: ``labkit grade``
    starts without the world's modules."""
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    if command == "grade":
        from .grade.run import main as grade_main

        return grade_main(rest)
    if command == "selfcheck":
        from .grade.selfcheck import main as selfcheck_main

        return selfcheck_main(rest)
    from .grade.course_cli import main as course_main

    return course_main(command, rest)


DELEGATED = ("demo", "grade", "selfcheck", "feedback", "report", "export")


@functools.cache
def _exit_without_collecting() -> None:
    """When the process ends, the interpreter's teardown collects its objects again and
    again as it clears the modules: 0.2 s of CPU after ``labkit grade`` has printed its
    summary (nbgrader, SQLAlchemy and nbformat loaded), 3% of grading ten hand-ins.
    Frozen (out of the collector's reach) at exit, they go with the process; what needs
    closing is closed by the commands themselves, and atexit handlers still run."""
    atexit.register(gc.freeze)


def main(argv: list[str] | None = None) -> int:
    _exit_without_collecting()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in DELEGATED:
        return _delegated(argv[0], argv[1:])
    from .audit import cli as check_cli
    from .config import ConfigError
    from .world import WorldBusy

    parser = argparse.ArgumentParser(prog="labkit", description="A lab kit that teaches how e-mail works.")
    sub = parser.add_subparsers(dest="command", required=True)
    _world_parser(sub)
    _control_parsers(sub)
    check_cli.add_parser(sub)
    sub.add_parser("demo", help="replay the lecture: Albert writes to Betty", add_help=False)
    sub.add_parser("grade", help="grade every submission of an assignment (TAs)", add_help=False)
    sub.add_parser("selfcheck", help="run a lab notebook and its visible checks (students)", add_help=False)
    for name, about in (("feedback", "the final feedback of an assignment, after hand grading (TAs)"),
                        ("report", "an assignment at a glance: pass rates, histograms, who needs a look (TAs)"),
                        ("export", "every student's grades for a spreadsheet or an LMS import (TAs)")):
        sub.add_parser(name, help=about, add_help=False)
    m = sub.add_parser("muttrc", help="print a muttrc for a user of the running world",
                       description="Print a muttrc that reads ADDRESS's mail over IMAP (or its Maildir) and "
                       "sends with labkit-sendmail: labkit muttrc betty@brilliant.com > ~/.muttrc-betty")
    m.add_argument("address")
    m.add_argument("--state-dir", help=RUNNING_STATE_DIR)
    m.add_argument("--maildir", action="store_true", help="read the Maildir directly instead of IMAP")
    m.add_argument("--sendmail", metavar="PROGRAM", help="send with this program (yours) instead of labkit-sendmail; "
                   "it finds the world through $LABKIT_STATE_DIR")
    args, rest = parser.parse_known_args(argv)
    if args.command in DELEGATED:
        return _delegated(args.command, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "muttrc":
        return run_muttrc(args)
    if args.command == "check":
        return check_cli.run(args)
    if args.command in ("behave", "dns-fault"):
        return run_control(args)
    try:
        return asyncio.run(run_world(args))
    except (ConfigError, WorldBusy) as error:
        print(f"labkit: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"labkit: cannot start the world: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
