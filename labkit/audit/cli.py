"""`labkit check`: the command line of the audit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..net import SERVICE_PORTS, AddressMap, Endpoint
from .target import Target, nameserver, routes_from

EPILOG = """examples:
  labkit check student.example --user sam@student.example --password secret
  labkit check brilliant.com --dns 127.0.0.1:40001 --connect 1.2.3.5:25=127.0.0.1:40002
  labkit check brilliant.com --world --user betty@brilliant.com --password betty-password
  labkit check --batch students.csv --output grades.csv
exit status: 0 when no rule fails, 1 when one does, 2 for bad arguments"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="audit a real mail setup: DNS, SMTP, IMAP, POP3, submission",
                       description="Check the mail setup of DOMAIN end to end with real DNS queries and "
                       "SMTP, IMAP and POP3 sessions; one line per rule, failures with their transcript.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("domain", nargs="?", help="the mail domain to check")
    p.add_argument("--dns", metavar="SERVER[:PORT]", help="the DNS server to ask (default: the system's resolver)")
    p.add_argument("--connect", metavar="NAME:PORT=HOST:PORT", action="append", default=[],
                   help="reach NAME (a host name or address) on PORT at HOST:PORT instead (repeatable)")
    p.add_argument("--world", action="store_true", help="check inside the running lab world: its DNS and "
                   "address map (see --state-dir)")
    p.add_argument("--state-dir", help="the lab world's state dir, for --world")
    p.add_argument("--user", metavar="ADDRESS", help="a mailbox of the domain: gets the test message")
    p.add_argument("--password", help="that mailbox's password (IMAP, POP3, submission AUTH)")
    p.add_argument("--login", help="the login name, if not the address")
    p.add_argument("--host", help="where IMAP, POP3 and submission are (default: the MX that took the message)")
    p.add_argument("--from", dest="mail_from", default="", metavar="ADDRESS",
                   help="reverse-path of the probes (default: <>, the null path)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each network wait (default 10)")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the test message (default 20)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write the report as an HTML page")
    p.add_argument("--colour", "--color", dest="colour", action="store_true", default=None, help="force colour")
    p.add_argument("--no-colour", "--no-color", dest="colour", action="store_false", help="no colour")
    p.add_argument("--batch", metavar="CSV", help="check every row of a students CSV (student, domain, dns, "
                   "user, password, login, host, connect) and write grades as CSV")
    p.add_argument("--output", metavar="FILE", help="where --batch writes its CSV (default: stdout)")
    p.add_argument("--jobs", type=int, default=4, help="checks at once in --batch (default 4)")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per setup in --batch (default 300)")


def world_routes(state_dir: str | None) -> tuple[Endpoint, AddressMap]:
    """A running lab world's DNS server and address map, from its world.json."""
    from ..state import load_world_info

    info = load_world_info(state_dir)
    routes = AddressMap()
    for host in info["hosts"].values():
        for service, endpoint in host["services"].items():
            for address in host["addresses"]:
                routes.add(address, SERVICE_PORTS[service], Endpoint(endpoint["host"], endpoint["port"]))
    return Endpoint(info["dns"]["host"], info["dns"]["port"]), routes


def make_target(args: argparse.Namespace, row: dict[str, str] | None = None) -> Target:
    """A Target from the options, with a batch row's own fields taking precedence."""
    from .batch import deadline

    row = row or {}
    dns, routes, direct = None, AddressMap(), True
    if args.world:
        dns, routes = world_routes(args.state_dir)
        direct = False
    routes_from(args.connect + row.get("connect", "").split(), routes)
    if row.get("dns") or args.dns:
        dns = nameserver(row.get("dns") or args.dns)
    return Target(row.get("domain") or args.domain, dns=dns, routes=routes, direct=direct,
                  user=row.get("user") or args.user, password=row.get("password") or args.password,
                  login=row.get("login") or args.login, host=row.get("host") or args.host,
                  mail_from=row.get("from") or args.mail_from, timeout=args.timeout, wait=args.wait,
                  deadline=deadline(args.time_limit) if row else None)


def run(args: argparse.Namespace) -> int:
    from . import render
    from .batch import Progress, read_students, run_batch
    from .run import check

    if args.batch:
        try:
            with open(args.batch, newline="", encoding="utf-8") as stream:
                rows = read_students(stream)
        except OSError as error:
            print(f"labkit check: {error}", file=sys.stderr)
            return 2
        out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
        try:
            run_batch(rows, lambda row: make_target(args, row), out, jobs=args.jobs, progress=Progress(len(rows)))
        finally:
            if out is not sys.stdout:
                out.close()
        return 0
    if not args.domain:
        print("labkit check: a DOMAIN (or --batch CSV) is needed", file=sys.stderr)
        return 2
    try:
        target = make_target(args)
    except (ValueError, OSError) as error:
        print(f"labkit check: {error}", file=sys.stderr)
        return 2
    report = check(target)
    if args.json:
        print(render.to_json(report))
    else:
        print(render.text(report, colour=render.wants_colour(sys.stdout, args.colour)))
    if args.html:
        Path(args.html).write_text(render.html_page(report), encoding="utf-8")
    return 0 if report.passed else 1
