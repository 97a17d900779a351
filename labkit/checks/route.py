"""Checks for ``route``, the MTA's decision at RCPT time: deliver here, relay, or refuse.

Each rule asks the student's function about recipients as smtp.brilliant.com would see
them (its domains brilliant.com and staff.brilliant.com, Betty's mailbox, postmaster),
from strangers on port 25 and from users on the submission port; the rules ending in
``-awesome`` ask the same as smtp.awesome.com (another host, other names). The rule
that matters most is the open-relay one (RFC 5321 §3.6.2): spammers find an open relay
in hours. The last rule plugs the function into the world and tries to relay through it. ::

    from labkit import checks
    checks.route.run(route)
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from typing import Any

from ..mta.core import domain_of
from ..mta.types import Local, Refuse, Relay, RouteRequest
from .harness import ALBERT, BETTY, DINNER, Broken, Probe, Rule, entry_points

RELAY_REFUSALS = ("454", "550", "554")  # Postfix: 454 4.7.1 (defer_unauth_destination) or 554 5.7.1
LOGIN_FIRST = ("530",)  # on the submission port: 530 5.7.0 Authentication required (RFC 4954 §6)


@dataclass(frozen=True)
class Host:
    """A mail host as its route sees it: its domains, its users, a stranger's domain."""

    name: str
    domains: frozenset[str]
    users: tuple[str, ...]
    elsewhere: str  # a recipient at another domain, that only our users may send to
    lookalikes: tuple[str, ...]  # recipients at other domains whose names contain ours (around it, or at the end)

    @property
    def mailboxes(self) -> frozenset[str]:
        return frozenset(f"{u}@{d}" for d in self.domains for u in (*self.users, "postmaster"))

    @property
    def user(self) -> str:
        return f"{self.users[0]}@{sorted(self.domains)[0]}"


BRILLIANT = Host("smtp.brilliant.com", frozenset({"brilliant.com", "staff.brilliant.com"}), ("betty",),
                 "carol@careful.com", ("friend@brilliant.com.au", "someone@notbrilliant.com"))
AWESOME = Host("smtp.awesome.com", frozenset({"awesome.com"}), ("albert",), BETTY, ("someone@notawesome.com",))
HOST = BRILLIANT.name


def request(recipient: str, role: str = "smtp", authenticated: str = "", trusted: bool = False,
            host: Host = BRILLIANT) -> RouteRequest:
    """What ``host`` knows at ``RCPT TO:<recipient>``."""
    return RouteRequest(recipient, domain_of(recipient), host.domains, host.mailboxes, role, authenticated, trusted)


def _about(asked: RouteRequest) -> str:
    who = (f"logged in as {asked.authenticated}" if asked.authenticated else
           "from a trusted network" if asked.trusted else "from a stranger")
    port = 25 if asked.role == "smtp" else 587
    where = "" if asked.local_domains == BRILLIANT.domains else f" at {', '.join(sorted(asked.local_domains))}"
    return f"route(RCPT TO:<{asked.recipient}> on port {port}{where}, {who})"


def _route(probe: Probe, asked: RouteRequest) -> Any:
    return probe(asked, step=_about(asked))


def _local(probe: Probe, asked: RouteRequest, user: str, hint: str = "") -> None:
    decision = _route(probe, asked)
    expected = f"Local('{user}@{asked.domain}')"
    if not isinstance(decision, Local) or decision.mailbox.lower().partition("@")[0] != user:
        raise Broken(_about(asked), expected, repr(decision), hint=hint)
    if decision.mailbox not in asked.mailboxes:
        raise Broken(_about(asked), f"{expected}: the mailbox as request.mailboxes spells it", repr(decision),
                     hint="Local(mailbox) names the mailbox the message is stored in, one of request.mailboxes (in "
                          "lower case), not the recipient as the client wrote it (RFC 5321 §2.4: the domain is "
                          "case-insensitive, and this host treats its local parts so too)")


def _refused(probe: Probe, asked: RouteRequest, codes: tuple[str, ...], hint: str) -> None:
    decision = _route(probe, asked)
    if not isinstance(decision, Refuse) or decision.reply[:3] not in codes:
        others = f" (or {', '.join(codes[1:])})" if codes[1:] else ""
        raise Broken(_about(asked), f"Refuse('{codes[0]} ...'){others}", repr(decision), hint=hint)


# -- the rules ---------------------------------------------------------------------------
def local_user(probe: Probe, host: Host = BRILLIANT) -> None:
    hint = ("mail for this host's own domains is delivered here, whoever sends it; relaying is the question only "
            "for other domains")
    user = host.users[0]
    for domain in sorted(host.domains):
        _local(probe, request(f"{user}@{domain}", host=host), user, hint)
    _local(probe, request(host.user, "submission", authenticated=host.user, host=host), user, hint)


def case_insensitive(probe: Probe) -> None:
    hint = "domain names are case-insensitive (RFC 5321 §2.4): compare them in lower case"
    _local(probe, request("betty@BRILLIANT.COM"), "betty", hint)
    _local(probe, request("betty@Staff.Brilliant.Com", "submission", authenticated=BETTY), "betty", hint)


def postmaster(probe: Probe) -> None:
    hint = "every domain has a postmaster, and that name is case-insensitive (RFC 5321 §4.5.1)"
    for address in ("postmaster@brilliant.com", "Postmaster@staff.brilliant.com", "POSTMASTER@brilliant.com"):
        _local(probe, request(address), "postmaster", hint)


def unknown_user(probe: Probe) -> None:
    hint = ("refuse an unknown user at RCPT with 550 5.1.1 (RFC 5321 §3.3): then the sending server tells its "
            "user, and no bounce is needed")
    _refused(probe, request("nobody@brilliant.com"), ("550",), hint)
    _refused(probe, request("Nobody@staff.brilliant.com", "submission", authenticated=BETTY), ("550",), hint)


def no_open_relay(probe: Probe, host: Host = BRILLIANT) -> None:
    hint = ("mail for other domains is relayed only for our own users on the submission port; anyone else gets "
            "454 4.7.1 Relay access denied, or spammers use this host")
    mine = sorted(host.domains)[0]
    for recipient in ("someone@relay-test.invalid", host.elsewhere, f"x@{mine}.relay-test.invalid"):
        _refused(probe, request(recipient, host=host), RELAY_REFUSALS, hint)
    _refused(probe, request(host.elsewhere, "submission", host=host), RELAY_REFUSALS + LOGIN_FIRST,
             f"{hint} (on port 587, 530 5.7.0 Authentication required says the same)")
    port_25 = ("port 25 takes mail for this host's own domains only, from anyone, even {who}: relaying out is the "
               "submission port's job (RFC 6409 §3.1, §4.3), so check request.role as well as {field}")
    _refused(probe, request(host.elsewhere, trusted=True, host=host), RELAY_REFUSALS,
             port_25.format(who="a trusted network", field="trusted"))
    _refused(probe, request(host.elsewhere, authenticated=host.user, host=host), RELAY_REFUSALS,
             port_25.format(who="a logged-in user", field="authenticated"))


def relays_for_users(probe: Probe, host: Host = BRILLIANT) -> None:
    hint = ("users who logged in (AUTH), and clients in the host's trusted networks, send their mail out through "
            "the submission port")
    shouting = host.elsewhere.partition("@")[0].title() + "@" + domain_of(host.elsewhere).upper()
    asks = [(request(host.elsewhere, "submission", authenticated=host.user, host=host), hint),
            (request(shouting, "submission", trusted=True, host=host), hint)]
    for lookalike in host.lookalikes:  # brilliant.com.au, notbrilliant.com: a part or the end of the name is ours
        asks.append((request(lookalike, "submission", authenticated=host.user, host=host),
                     f"{domain_of(lookalike)} is another domain, not one of ours: compare the recipient's whole "
                     "domain with request.local_domains (is it in the set?), not a part of the address or the end "
                     "of its name (endswith)"))
    for asked, why in asks:
        decision = _route(probe, asked)
        if not isinstance(decision, Relay):
            raise Broken(_about(asked), "Relay()", repr(decision), hint=why)


def in_the_world(probe: Probe) -> None:
    world = probe.world(host=HOST, servers=[HOST])
    smtp = world.host(HOST).services["smtp"]
    step = f"a stranger on {HOST} port 25: RCPT TO:<victim@relay-test.invalid>"
    with probe.watching(world, step, "454 or 550: relaying refused"):
        with smtplib.SMTP(smtp.host, smtp.port, local_hostname="stranger.example",
                          timeout=probe.boundary.deadline + 5) as client:
            client.ehlo()
            client.mail("spammer@relay-test.invalid")
            code, text = client.rcpt("victim@relay-test.invalid")
    if not 400 <= code < 600:
        raise Broken(step, "454 or 550: relaying refused", f"{code} {text.decode(errors='replace')}",
                     hint="this host just agreed to relay a stranger's mail: an open relay")
    world.send(ALBERT, [BETTY], DINNER)
    probe.delivered(world, BETTY, step=f"Albert -> smtp.awesome.com -> {HOST} (your route) -> Betty")


RULES: list[Rule] = [
    Rule("local-user", "a local user's mail goes to their mailbox, whoever sends it", "RFC 5321 §4.1.1.3",
         local_user),
    Rule("case-insensitive", "BRILLIANT.COM is brilliant.com", "RFC 5321 §2.4", case_insensitive),
    Rule("postmaster", "postmaster exists at every local domain, in any case", "RFC 5321 §4.5.1", postmaster),
    Rule("unknown-user", "an unknown local user is refused at once: 550", "RFC 5321 §3.3", unknown_user),
    Rule("no-open-relay", "other domains: refused (454/550/554) for strangers on port 25 and 587, and for everyone "
         "on port 25 (logged in or trusted)", "RFC 5321 §3.6.2, RFC 6409 §3.1, §4.3", no_open_relay),
    Rule("relays-for-users", "relays on submission for logged-in users and trusted networks (other domains only, "
         "whole names: notbrilliant.com is not ours)", "RFC 6409 §4.3", relays_for_users),
    Rule("in-the-world", f"on {HOST}: a stranger cannot relay, Betty still gets her mail", "RFC 5321 §3.6.2",
         in_the_world),
    Rule("local-user-awesome", "on smtp.awesome.com too: its users' mail is delivered there", "RFC 5321 §4.1.1.3",
         lambda probe: local_user(probe, AWESOME), variant_of="local-user"),
    Rule("no-open-relay-awesome", "on smtp.awesome.com too: no relaying for strangers, none on port 25",
         "RFC 5321 §3.6.2, RFC 6409 §4.3", lambda probe: no_open_relay(probe, AWESOME), variant_of="no-open-relay"),
    Rule("relays-for-users-awesome", "on smtp.awesome.com too: Albert's mail out is relayed", "RFC 6409 §4.3",
         lambda probe: relays_for_users(probe, AWESOME), variant_of="relays-for-users"),
]


run, check = entry_points("route", RULES)
