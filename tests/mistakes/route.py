"""A student's ``route``, right, and wrong in each of the usual ways.

:func:`make` builds the routing a careful student writes; each keyword turns on one
classic mistake, so every wrong one differs from the right one in one place.
"""

from __future__ import annotations

from labkit.lab import Local, Refuse, Relay


def make(*, open_relay=False, submission_relays=False, verbatim_address=False, keeps_local_case=False,
         relays_unknown=False, tempfail_unknown=False, login_first=False, relay_first=False, never_relays=False,
         ignores_trusted=False, suffix_domain=False, login_relays_anywhere=False, recipient_as_mailbox=False):
    def route(request):
        local, _, domain = request.recipient.rpartition("@")
        if verbatim_address:
            address = request.recipient
        elif keeps_local_case:
            address = f"{local}@{domain.lower()}"
        else:
            address = request.recipient.lower()
        ours = request.role == "submission" and (request.authenticated or (request.trusted and not ignores_trusted))
        if login_first and not ours:
            return Refuse("530 5.7.0 log in first")
        if relay_first and ours:
            return Relay()
        if login_relays_anywhere and request.authenticated:  # "a logged-in user is one of ours, on any port"
            ours = True
        if any(domain.lower().endswith(d) for d in request.local_domains) if suffix_domain else \
                domain.lower() in request.local_domains:
            if address in request.mailboxes:
                return Local(request.recipient if recipient_as_mailbox else address)
            if relays_unknown:
                return Relay()
            return Refuse(f"{'450 4' if tempfail_unknown else '550 5'}.1.1 <{request.recipient}>: no such user here")
        if open_relay or (submission_relays and request.role == "submission") or (ours and not never_relays):
            return Relay()
        return Refuse(f"454 4.7.1 <{request.recipient}>: Relay access denied")

    return route


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "relays for anyone": (make(open_relay=True), "no-open-relay", "spammers"),
    "relays for anyone on the submission port": (make(submission_relays=True), "no-open-relay", "Relay()"),
    "compares the address as written": (make(verbatim_address=True), "case-insensitive", "case-insensitive"),
    "keeps the local part's case": (make(keeps_local_case=True), "postmaster", "RFC 5321 §4.5.1"),
    "relays unknown local users": (make(relays_unknown=True), "unknown-user", "550"),
    "a temporary 450 for an unknown user": (make(tempfail_unknown=True), "unknown-user", "450"),
    "asks strangers to log in, even for local mail": (make(login_first=True), "local-user", "whoever sends it"),
    "relays everything for logged-in users": (make(relay_first=True), "local-user", "Relay()"),
    "never relays": (make(never_relays=True), "relays-for-users", "Relay()"),
    "ignores the trusted networks": (make(ignores_trusted=True), "relays-for-users", "trusted networks"),
    "matches our domain with endswith": (make(suffix_domain=True), "relays-for-users", "endswith"),
    "relays for logged-in users on port 25 too": (make(login_relays_anywhere=True), "no-open-relay",
                                                   "a logged-in user"),
    "Local(the recipient as written)": (make(recipient_as_mailbox=True), "case-insensitive", "request.mailboxes"),
}
