"""``route`` as a student writes it from the notebook's rules, and its one-mistake variants."""

from __future__ import annotations

from labkit.lab import Local, Refuse, Relay


def make(*, trusted_anywhere=False, local_part_kept=False, unknown_relayed_for_users=False, substring_domain=False,
         refuse_relay_550_unknown=False, relay_before_local=False, stranger_submission_relays=False,
         no_postmaster=False):
    def route(request):
        user, _, domain = request.recipient.rpartition("@")
        domain = domain.rstrip(".").lower()
        if substring_domain:  # "is one of our domains in the address?"
            ours = any(d in request.recipient.lower() for d in request.local_domains)
        else:
            ours = domain in request.local_domains
        address = f"{user if local_part_kept else user.lower()}@{domain}"
        if trusted_anywhere:  # mynetworks may relay, whatever the port
            our_user = bool(request.authenticated) or request.trusted
        elif stranger_submission_relays:  # port 587 is for our users, so anyone there is one
            our_user = request.role == "submission"
        else:
            our_user = request.role == "submission" and (request.authenticated != "" or request.trusted)
        if relay_before_local and our_user:
            return Relay()
        if ours:
            if address in request.mailboxes and not (no_postmaster and user.lower() == "postmaster"):
                return Local(address)
            if unknown_relayed_for_users and our_user:
                return Relay()
            if refuse_relay_550_unknown:
                return Refuse(f"454 4.7.1 <{request.recipient}>: Relay access denied")
            return Refuse(f"550 5.1.1 <{request.recipient}>: Recipient address rejected: User unknown")
        if our_user:
            return Relay()
        if request.role == "submission":  # RFC 4954 §6: a legal answer on the submission port
            return Refuse("530 5.7.0 Authentication required")
        return Refuse(f"554 5.7.1 <{request.recipient}>: Relay access denied")

    return route


good = make()

# mistake -> (the student's route, the visible rule that must catch it, a word its message must contain)
MISTAKES = {
    "relays for the trusted networks on port 25 too": (make(trusted_anywhere=True), "no-open-relay", "port 25"),
    "keeps the local part's case": (make(local_part_kept=True), "postmaster", "case"),
    "relays mail for unknown local users of logged-in clients": (make(unknown_relayed_for_users=True), "unknown-user",
                                                                 "550"),
    "relays for anyone on the submission port": (make(stranger_submission_relays=True), "no-open-relay",
                                                 "spammers"),
    "an unknown local user is refused as a relay": (make(refuse_relay_550_unknown=True), "unknown-user", "550"),
    "relays everything a user sends, local mail too": (make(relay_before_local=True), "local-user", "Relay()"),
    "no postmaster": (make(no_postmaster=True), "postmaster", "postmaster"),
    "finds our domain anywhere in the address": (make(substring_domain=True), "relays-for-users",
                                                 "another domain"),
}
