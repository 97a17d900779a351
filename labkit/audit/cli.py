"""`labkit check`: the command line of the audit."""

from __future__ import annotations

import argparse
import ssl
import sys
from pathlib import Path

from ..net import SERVICE_PORTS, AddressMap, Endpoint
from .target import SERVICES, Target, nameserver, routes_from

BATCH_TIME_LIMIT = 300.0
EPILOG = """examples:
  labkit check student.example --user sam@student.example --password secret
  labkit check brilliant.com --dns 127.0.0.1:40001 --connect 1.2.3.5:25=127.0.0.1:40002
  labkit check brilliant.com --world --user betty@brilliant.com --password betty-password
  labkit check --batch students.csv --output grades.csv
exit status: 0 when every rule passes (warnings allowed), 1 when one fails or could not be
checked, 2 for bad arguments"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="audit a real mail setup: DNS, SMTP, IMAP, POP3, submission",
                       description="Check the mail setup of DOMAIN end to end with real DNS queries and "
                       "SMTP, IMAP and POP3 sessions (over TLS where offered); one row per rule of a fixed "
                       "rubric, failures with their transcript.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("domain", nargs="?", help="the mail domain to check")
    p.add_argument("--dns", metavar="SERVER[:PORT]", help="the zone's name server to ask (default: the system's "
                   "resolver, and the zone's NS servers for the authority rule)")
    p.add_argument("--connect", metavar="NAME:PORT=HOST:PORT", action="append", default=[],
                   help="reach NAME (a host name or address) on PORT at HOST:PORT instead (repeatable); the only "
                   "way a check goes to a loopback, private or documentation address")
    p.add_argument("--world", action="store_true", help="check inside the running lab world: its DNS and "
                   "address map (see --state-dir); --dns naming the world's DNS server does the same")
    p.add_argument("--state-dir", help="the lab world's state dir, for --world")
    p.add_argument("--user", metavar="ADDRESS", help="a mailbox of the domain: gets the test message")
    p.add_argument("--password", help="that mailbox's password (IMAP, POP3, submission AUTH)")
    p.add_argument("--login", help="the login name, if not the address")
    p.add_argument("--host", help="where IMAP, POP3 and submission are (default: the MX that took the message)")
    p.add_argument("--from", dest="mail_from", default="", metavar="ADDRESS",
                   help="reverse-path of the probes (default: <>, the null path)")
    p.add_argument("--ca-file", metavar="FILE", help="also trust this CA (PEM) for the servers' certificates")
    p.add_argument("--services", default=",".join(SERVICES), metavar="LIST",
                   help=f"what the rubric grades besides DNS and SMTP, for every student alike (default: "
                   f"{','.join(SERVICES)})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each network wait (default 10)")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the test message (default 20)")
    p.add_argument("--time-limit", type=float, help="seconds for a whole setup, network waits included "
                   f"(default: none; {BATCH_TIME_LIMIT:g} in --batch)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write the report as an HTML page")
    p.add_argument("--colour", "--color", dest="colour", action="store_true", default=None, help="force colour")
    p.add_argument("--no-colour", "--no-color", dest="colour", action="store_false", help="no colour")
    p.add_argument("--batch", metavar="CSV", help="check every row of a students CSV (student, domain, dns, "
                   "user, password, login, host, connect) and write grades as CSV")
    p.add_argument("--output", metavar="FILE", help="where --batch writes its CSV (default: stdout)")
    p.add_argument("--jobs", type=int, default=4, help="checks at once in --batch (default 4)")


def world_routes(state_dir: str | None, info: dict | None = None) -> tuple[Endpoint, AddressMap]:
    """A running lab world's DNS server and address map, from its world.json; the
    virtual addresses its zones give their name servers lead to its DNS server."""
    from ..state import load_world_info

    info = info or load_world_info(state_dir)
    routes = AddressMap()
    for host in info["hosts"].values():
        for service, endpoint in host["services"].items():
            for address in host["addresses"]:
                routes.add(address, SERVICE_PORTS[service], Endpoint(endpoint["host"], endpoint["port"]))
    dns = Endpoint(info["dns"]["host"], info["dns"]["port"])
    domains = {domain for host in info["hosts"].values() for domain in host["domains"]}
    for address in _name_server_addresses(dns, domains):
        routes.add(address, SERVICE_PORTS["dns"], dns)
    return dns, routes


def _name_server_addresses(server: Endpoint, domains: set[str]) -> set[str]:
    """The addresses of the NS servers the world's zones name (all served by its DNS)."""
    import dns.exception

    from ..dns.mx import lab_resolver

    resolver, found = lab_resolver(server, timeout=2.0), set()
    try:
        names = {r.target for domain in sorted(domains) for r in resolver.resolve(domain, "NS", search=False,
                                                                                   raise_on_no_answer=False)}
        for name in names:
            found |= {r.address for r in resolver.resolve(name, "A", search=False, raise_on_no_answer=False)}
    except dns.exception.DNSException:
        pass
    return found


def _running_world(server: Endpoint, state_dir: str | None) -> AddressMap | None:
    """The address map of the lab world whose DNS server ``server`` is, if one runs
    there: a check against it must use that map for every port, never the lecture's
    addresses as they are."""
    from ..state import load_world_info

    try:
        info = load_world_info(state_dir)
        if Endpoint(info["dns"]["host"], info["dns"]["port"]) != server:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return world_routes(state_dir, info)[1]


def make_target(args: argparse.Namespace, row: dict[str, str] | None = None) -> Target:
    """A Target from the options, with a batch row's own fields taking precedence."""
    from .batch import deadline

    row = row or {}
    dns, routes, direct = None, AddressMap(), True
    if args.world:
        dns, routes = world_routes(args.state_dir)
        direct = False
    if row.get("dns") or args.dns:
        dns = nameserver(row.get("dns") or args.dns)
        world = None if args.world else _running_world(dns, args.state_dir)
        if world is not None:
            routes, direct = world, False
    routes_from(args.connect + row.get("connect", "").split(), routes)
    if args.ca_file:
        ssl.create_default_context().load_verify_locations(cafile=args.ca_file)  # a bad file: an error now
    limit = args.time_limit if args.time_limit is not None else (BATCH_TIME_LIMIT if row else None)
    return Target(row.get("domain") or args.domain, dns=dns, routes=routes, direct=direct,
                  user=row.get("user") or args.user, password=row.get("password") or args.password,
                  login=row.get("login") or args.login, host=row.get("host") or args.host,
                  mail_from=row.get("from") or args.mail_from, timeout=args.timeout, wait=args.wait,
                  deadline=deadline(limit), ca_file=args.ca_file, roster=bool(row),
                  services=tuple(s.strip().lower() for s in args.services.split(",") if s.strip()))


def run(args: argparse.Namespace) -> int:
    from . import render
    from .batch import Progress, read_students, run_batch
    from .run import check

    if args.batch:
        try:
            with open(args.batch, newline="", encoding="utf-8") as stream:
                rows = read_students(stream)
            make_target(args, {"domain": "check.invalid"})  # the shared options are fine
        except (OSError, ValueError, ssl.SSLError) as error:
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
    except (ValueError, OSError, ssl.SSLError) as error:
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
