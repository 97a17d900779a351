"""A student's ``resolve_mx``, right, and wrong in each of the usual ways (see send_mail.py)."""

from __future__ import annotations

import random

import dns.exception
import dns.resolver

from labkit.lab import NextHop, NullMXError, PermanentMXError, TemporaryMXError


def make(*, unsorted=False, no_shuffle=False, only_a=False, raw_names=False, no_implicit=False,
         implicit_always=False, keep_dead=False, nxdomain_temporary=False, no_null_mx=False,
         servfail_permanent=False, timeout_uncaught=False, own_when_dead=False):
    def name_of(rdata_name) -> str:
        return rdata_name.to_text() if raw_names else rdata_name.to_text(omit_final_dot=True).lower()

    def lookup(resolver, name, rdtype):
        try:
            return list(resolver.resolve(name, rdtype))
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.NXDOMAIN:
            raise
        except dns.exception.Timeout:
            if timeout_uncaught:
                raise
            raise TemporaryMXError(name, f"{name}: DNS timed out") from None
        except dns.resolver.NoNameservers:
            if servfail_permanent:
                raise PermanentMXError(name, f"{name}: SERVFAIL") from None
            raise TemporaryMXError(name, f"{name}: SERVFAIL, try later") from None

    def addresses_of(resolver, host) -> tuple[str, ...]:
        try:
            kinds = ["A"] if only_a else ["A", "AAAA"]
            return tuple(r.address for kind in kinds for r in lookup(resolver, host, kind))
        except dns.resolver.NXDOMAIN:
            return ()

    def resolve_mx(domain, resolver):
        shown = domain.rstrip(".").lower()
        try:
            records = lookup(resolver, domain, "MX")
        except dns.resolver.NXDOMAIN:
            if nxdomain_temporary:
                raise TemporaryMXError(shown, f"{shown}: no such domain (yet?)") from None
            raise PermanentMXError(shown, f"{shown} does not exist") from None
        except (TemporaryMXError, PermanentMXError) as error:
            raise type(error)(shown, str(error)) from None
        if not no_null_mx and len(records) == 1 and records[0].preference == 0 and records[0].exchange.to_text() == ".":
            raise NullMXError(shown, f"{shown} accepts no mail (null MX)")
        if not records or implicit_always:
            own = addresses_of(resolver, domain)
            if own and not no_implicit:
                return [NextHop(shown, 0, own, True)]
            if not records:
                raise PermanentMXError(shown, f"{shown} has neither MX nor address")
        by_preference = {}
        for record in records:
            by_preference.setdefault(record.preference, []).append(record)
        hops, failure = [], None
        for preference in (list(by_preference) if unsorted else sorted(by_preference)):
            group = by_preference[preference]
            if not no_shuffle:
                random.shuffle(group)
            for record in group:
                try:
                    found = addresses_of(resolver, record.exchange)
                except TemporaryMXError as error:
                    failure = error
                    continue
                if found or keep_dead:
                    hops.append(NextHop(name_of(record.exchange), preference, found))
        if hops:
            return hops
        if own_when_dead and addresses_of(resolver, domain):  # "at least it has an address"
            return [NextHop(shown, 0, addresses_of(resolver, domain), True)]
        if failure is not None:
            raise TemporaryMXError(shown, f"{shown}: {failure}")
        raise PermanentMXError(shown, f"no MX host of {shown} has an address")

    return resolve_mx


good = make()

MISTAKES = {
    "takes DNS's order": (make(unsorted=True), "preference-order", "lowest preference first"),
    "never shuffles ties": (make(no_shuffle=True), "ties-shuffled", "random order"),
    "A records only": (make(only_a=True), "addresses", "AAAA"),
    "host names with the final dot": (make(raw_names=True), "host-names", "the order is right, the names are not"),
    "no implicit MX": (make(no_implicit=True), "implicit-mx", "preference 0"),
    "implicit MX beside real ones": (make(implicit_always=True), "no-implicit-with-mx", "no MX records at all"),
    "keeps hosts without addresses": (make(keep_dead=True), "backup-mx", "has no addresses"),
    "NXDOMAIN as temporary": (make(nxdomain_temporary=True), "no-such-domain", "PermanentMXError"),
    "no null MX": (make(no_null_mx=True), "null-mx", "NullMXError"),
    "SERVFAIL as permanent": (make(servfail_permanent=True), "servfail", "TemporaryMXError"),
    "a timeout escapes": (make(timeout_uncaught=True), "timeout", "Timeout"),
    "the domain's own address when no MX host has one": (make(own_when_dead=True), "no-mail-host",
                                                          "must not be used instead"),
}
