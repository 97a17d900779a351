"""Checks for ``sendmail``, the student's ``/usr/sbin/sendmail``: a program, not a function.

Each rule runs the program as mutt, cron or a script would: the message on standard
input, options and recipients as arguments (``-oi -f sender rcpt ...``, ``-t``, or
mutt's own ``-oem -oi -- rcpt ...``), ``LABKIT_STATE_DIR`` naming the running lab world,
and judges what arrives (the envelope sender is the stored copy's Return-Path) and the
exit status (sysexits.h). The program runs in its own process under the probe's
deadline; a Python traceback on its stderr counts as a crash.

The reference fence reaches into that process too: a ``sitecustomize`` put on its
``PYTHONPATH`` adds an audit hook that refuses (and records) any import of
:mod:`labkit.sendmail`, so a script that runs labkit-sendmail, directly or through a
shell, earns nothing. ::

    from labkit import checks
    checks.sendmail.run("/home/me/bin/my-sendmail")
"""

from __future__ import annotations

import email.utils
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..programs import run_program
from ..state import STATE_FILE
from ..trace import delivered_to
from .harness import ALBERT, BETTY, CAROL, Broken, Probe, Rule, entry_points
from .received_header import clause

PAT, TOM = "pat@plain.com", "tom@twins.com"
TRACE = ("return-path", "delivered-to", "received")  # fields the mail system adds on the way (RFC 5321 §4.4)
NOBODY = "nobody@awesome.com"  # refused by smtp.awesome.com at RCPT: 550 5.1.1
SUBMISSION = "smtp.awesome.com"
FENCE_VARIABLE = "LABKIT_CHECK_FENCE"  # where the fence records a use of labkit's own sendmail
# mutt hands sendmail the message with Unix line endings
MESSAGE = b"From: Albert <albert@awesome.com>\nTo: Betty <betty@brilliant.com>\nSubject: via your sendmail\n\nHi!\n"
LIST_FROM = "Albert's party list <party@awesome.com>"  # not a mailbox: -f says who sends it
LIST_MESSAGE = f"From: {LIST_FROM}\nTo: Betty <betty@brilliant.com>\nSubject: Friday\n\nParty!\n".encode()
T_MESSAGE = (b"From: Albert <albert@awesome.com>\nTo: Betty <betty@brilliant.com>\nCc: carol@careful.com\n"
             b"Bcc: pat@plain.com,\n\ttom@twins.com\nSubject: party\n\nFriday!\n")
FENCE = '''\
"""labkit.checks: labkit's own sendmail is fenced off while a student's sendmail runs."""
import importlib.machinery, importlib.util, os, sys

def _fence(event, args):
    if event == "import" and args and args[0] == "labkit.sendmail":
        with open(os.environ["{variable}"], "a") as record:
            record.write(" ".join(sys.argv) + "\\n")
        raise ImportError("labkit.sendmail is labkit's own sendmail: this part is yours to write")

sys.addaudithook(_fence)
_here = os.path.dirname(os.path.abspath(__file__))
_next = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _next is not None and _next.loader is not None:  # the sitecustomize this one stands in front of
    _next.loader.exec_module(importlib.util.module_from_spec(_next))
'''.replace("{variable}", FENCE_VARIABLE)


@dataclass(frozen=True)
class Ran:
    """How the program ended."""

    step: str
    status: int
    stderr: str

    def text(self) -> str:
        return f"exit status {self.status}" + (f", stderr: {self.stderr.strip()}" if self.stderr.strip() else "")


def _scratch(probe: Probe) -> Path:
    """A folder the program may read and write (when graded it runs in the notebook's
    kernel, as another user than the checks), removed when the rule ends."""
    path = Path(probe.enter(tempfile.TemporaryDirectory(prefix="labkit-check-sendmail-")))
    path.chmod(0o1777)  # like /tmp: everyone may add files, only their owner removes them
    return path


def _run(probe: Probe, args: list[str], message: bytes = MESSAGE, *, world: Any = None) -> Ran:
    """Run the student's program with ``args``, ``$LABKIT_STATE_DIR`` holding ``world``'s
    world.json (None: no world runs); a crash, a hang or labkit's own sendmail is a
    :class:`Broken` in the boundary's words."""
    scratch = _scratch(probe)
    (scratch / "sitecustomize.py").write_text(FENCE)
    if world is not None:  # the world's own state dir is the checks' alone
        (scratch / STATE_FILE).write_text(json.dumps(world.info()))
    fenced = scratch / "fenced"
    python_path = os.pathsep.join(filter(None, [str(scratch), os.environ.get("PYTHONPATH")]))
    env = {"LABKIT_STATE_DIR": str(scratch), "PYTHONPATH": python_path, FENCE_VARIABLE: str(fenced)}
    step = f"echo <message> | sendmail {' '.join(args)}"
    program = probe.impl
    if hasattr(program, "run"):  # a graded notebook's program: its kernel runs it
        ended = program.run(list(args), message, env, probe.boundary.deadline)
    else:
        ended = run_program([str(program), *args], message, {**os.environ, **env}, probe.boundary.deadline)
    if ended.status is None:
        raise probe.broken("deadline", f"still running after {probe.boundary.deadline:g}s; killed", step=step)
    if fenced.exists():
        raise probe.broken("fenced", "it ran labkit.sendmail (labkit-sendmail)", step=step)
    if ended.status != 0 and "Traceback (most recent call last)" in ended.stderr:
        stderr = ended.stderr
        raise probe.broken("raised", stderr.strip().splitlines()[-1], stderr[stderr.index("Traceback"):], step=step)
    return Ran(step, ended.status, ended.stderr)


def _expect_status(ran: Ran, status: int, name: str, hint: str) -> None:
    if ran.status != status:
        raise Broken(ran.step, f"exit status {status} ({name})", ran.text(), hint=hint)


def _world(probe: Probe) -> Any:
    return probe.world(plug=False, servers=[SUBMISSION])


# -- the rules ---------------------------------------------------------------------------
EVERY_ARGUMENT = "every recipient named gets the message: all the arguments after the options"


def _delivered(probe: Probe, world: Any, ran: Ran, recipients: tuple[str, ...], what: str = "",
               hint: str = EVERY_ARGUMENT, sender: str = ALBERT) -> list:
    """Each recipient's copy (in order): the sender's host took the message for each
    (when the program ended, it had: it waits for the 250), then it arrived."""
    host = world.host(sender.rpartition("@")[2]).name
    taken = [r.lower() for e in world.tracer.events() if e.kind == "queued" and e.server == host
             for r in e.data.get("recipients", ())]
    missing = [r for r in recipients if r not in taken]
    if missing:
        raise Broken(f"{ran.step}{what}", f"{host} given the message for {', '.join(recipients)}",
                     f"{'for ' + ', '.join(taken) if taken else 'no message'}, so not for {', '.join(missing)} "
                     f"({ran.text()})", hint=hint)
    copies = []
    for rcpt in recipients:
        probe.delivered(world, rcpt, step=f"{ran.step}{what}, then the world delivers it to {rcpt}", hint=hint)
        copies.append(probe.stored(world, rcpt))
    return copies


def _envelope_sender(copy: Any, rcpt: str, sender: str, ran: Ran, hint: str) -> None:
    got = email.utils.parseaddr(str(copy.get("Return-Path", "")))[1]
    if got.lower() != sender:
        raise Broken(f"{ran.step}: {rcpt}'s copy", f"Return-Path: <{sender}> (the envelope sender, MAIL FROM)",
                     f"Return-Path: {copy.get('Return-Path')}", hint=hint)


def delivers(probe: Probe, sender: str = ALBERT, recipients: tuple[str, ...] = (BETTY, CAROL)) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", sender, *recipients], world=world)
    _expect_status(ran, 0, "EX_OK", hint="exit 0 only once the server has accepted the message (250 after DATA)")
    host = world.host(sender.rpartition("@")[2]).name
    for rcpt, stored in zip(recipients, _delivered(probe, world, ran, recipients, sender=sender)):
        if stored["Subject"] != "via your sendmail" or stored.get_content().strip() != "Hi!":
            raise Broken(f"{rcpt}'s copy", "the message given on standard input", repr(stored.as_string()[:300]))
        stamps = [str(r) for r in stored.get_all("Received", [])]
        submitted = [s for s in stamps if (clause(f"Received: {s}", "by") or "").lower() == host]
        if not submitted or (clause(f"Received: {submitted[0]}", "with") or "").upper() not in ("ESMTPA",
                                                                                                "ESMTPSA"):
            raise Broken(f"the Received headers of {rcpt}'s copy", f"a hop 'by {host} ... with ESMTPA'",
                         " / ".join(stamps), hint="submit to the sender's own host (the mailbox's 'host' in "
                         "world.json), its submission port, and log in with AUTH as the sender: smtplib's "
                         "login(user, password) (RFC 6409)")


def as_mutt(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oem", "-oi", "--", BETTY, PAT], world=world)
    _expect_status(ran, 0, "EX_OK", hint="mutt runs 'sendmail -oem -oi -- rcpt ...': -oX options you do not need "
                   "(-oem: how to report errors) are ignored, '--' ends the options, and without -f the sender is "
                   "the From: header's address")
    for rcpt, copy in zip((BETTY, PAT), _delivered(probe, world, ran, (BETTY, PAT), " (as mutt runs it)")):
        _envelope_sender(copy, rcpt, ALBERT, ran, hint="no -f: the envelope sender (and the account to log in "
                         "as) is the From: header's address")


def envelope_sender(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY], LIST_MESSAGE, world=world)
    _expect_status(ran, 0, "EX_OK", hint="-f names the envelope sender: log in and say MAIL FROM as that address")
    (copy,) = _delivered(probe, world, ran, (BETTY,), " (From: the party list, -f Albert)")
    _envelope_sender(copy, BETTY, ALBERT, ran, hint="-f sets the envelope sender (MAIL FROM, where bounces go), "
                     "not the From: header: mailing lists and cron send this way (sendmail(8))")
    if str(copy.get("From")) != LIST_FROM:
        raise Broken(f"{ran.step}: Betty's copy", f"From: {LIST_FROM} (the header as it was given)",
                     f"From: {copy.get('From')}", hint="-f changes the envelope only: the From: header is the "
                     "author's, and stays as written (RFC 5321 §3.3, RFC 5322 §3.6.2)")


def t_option(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT, "-t"], T_MESSAGE, world=world)
    _expect_status(ran, 0, "EX_OK", hint="-t: the recipients are the addresses in To:, Cc: and Bcc:")
    recipients = (BETTY, CAROL, PAT, TOM)
    copies = _delivered(probe, world, ran, recipients, ": To: Betty, Cc: Carol, Bcc: Pat and (folded) Tom",
                        hint="-t: every address in To:, Cc: and Bcc:, a folded field's next lines (they start with "
                             "a space or tab) too: let the email package parse the header (RFC 5322 §2.2.3)")
    for rcpt in recipients:
        _no_blind(world, rcpt, hint="remove the whole Bcc: field before sending, its folded lines (starting with a "
                  "space or tab) too: blind copies must stay blind (RFC 5322 §3.6.3, §2.2.3)")


def _no_blind(world: Any, rcpt: str, hint: str) -> None:
    """``rcpt``'s copy names no blind recipient: no Bcc: field, and no Bcc address left
    anywhere in its header as it was stored (a folded Bcc:'s next line, left behind,
    continues the field above it; the email parser's address fields would drop it)."""
    stored = email.message_from_bytes(world.messages(rcpt)[-1])  # compat32: every field as written
    header = "\n".join(f"{name}: {value}" for name, value in stored.items() if name.lower() not in TRACE)
    blind = [b for b in (PAT, TOM) if b in header]
    if stored["Bcc"] is not None or blind:
        raise Broken(f"{rcpt}'s copy", "no Bcc: field, and no blind recipient anywhere in the header",
                     f"Bcc: {stored['Bcc']}" if stored["Bcc"] is not None else f"{', '.join(blind)} in {header!r}",
                     hint=hint)


def bcc_removed(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY], T_MESSAGE, world=world)
    _expect_status(ran, 0, "EX_OK", hint="the recipients are the arguments; the message's Bcc: field names others")
    _delivered(probe, world, ran, (BETTY,), " (no -t), the message with a Bcc: field folded on two lines")
    _no_blind(world, BETTY, hint="remove the Bcc: field with or without -t: without -t the recipients come from the "
              "arguments, but the field is still in the message, and Betty would read who got a blind copy "
              "(RFC 5322 §3.6.3); its folded lines (starting with a space or tab) go too (§2.2.3)")


def lone_dot(probe: Probe) -> None:
    world = _world(probe)
    message = MESSAGE + b".\nthe line after a lone dot\n"
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY], message, world=world)
    _expect_status(ran, 0, "EX_OK", hint="")
    (copy,) = _delivered(probe, world, ran, (BETTY,), ", with a line holding only '.'")
    body = copy.get_content()
    if "the line after a lone dot" not in body or "\n.\n" not in body.replace("\r\n", "\n"):
        raise Broken(f"{ran.step}, with a line holding only '.'", "the whole message, the '.' line too",
                     repr(body), hint="with -oi (or -i) only the end of the input ends the message. Over SMTP the "
                     "lines end in CRLF: smtplib sends bytes as they are, and after a bare LF a '.' is not at the "
                     "start of a line, so it is not unstuffed (RFC 5321 §2.3.8, §4.5.2)")
    ran = _run(probe, ["-f", ALBERT, BETTY], message, world=world)
    _expect_status(ran, 0, "EX_OK", hint="")
    probe.wait(world, lambda e: delivered_to(BETTY)(e) and len(world.messages(BETTY)) == 2,
               step=f"{ran.step}, without -i", expected="Betty has the second message")
    body = probe.stored(world, BETTY).get_content()
    if "lone dot" in body:
        raise Broken(f"{ran.step} (without -i), with a line holding only '.'",
                     "the message up to the '.' line: there it ends", repr(body),
                     hint="without -i (or -oi) a line holding only '.' ends the input, as it ends DATA: "
                          "sendmail(8)")


def no_recipient(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT], world=world)
    _expect_status(ran, 64, "EX_USAGE", hint="no recipient on the command line and no -t: a usage error, as "
                   "Postfix's sendmail says; sysexits.h numbers tell mutt what went wrong")


def unknown_recipient(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT, NOBODY], world=world)
    _expect_status(ran, 67, "EX_NOUSER", hint="the server refused the recipient at RCPT with 550: say so on stderr "
                   "and exit 67, so mutt tells the user the address is wrong (smtplib raises SMTPRecipientsRefused)")


def some_refused(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY, NOBODY, CAROL], world=world)
    _delivered(probe, world, ran, (BETTY, CAROL), f" ({NOBODY} refused at RCPT, the others accepted)",
               hint="one refused recipient must not stop the others: after a refused RCPT go on, and send the "
                    "message (DATA) to the ones accepted, as smtplib's sendmail() does")
    _expect_status(ran, 67, "EX_NOUSER", hint=f"one recipient ({NOBODY}) was refused (550) and the others got it: "
                   "exit 67 and name the refused one on stderr; smtplib's sendmail() returns the refused ones "
                   "in a dict when some were accepted (it raises only when all were refused)")
    if NOBODY not in ran.stderr:
        raise Broken(ran.step, f"{NOBODY} named on stderr (the one that was refused)", ran.text(),
                     hint="the user must learn which address failed; the others got the message")


def tempfail(probe: Probe) -> None:
    world = _world(probe)
    world.set_behaviour(SUBMISSION, "greylist")  # 451 4.7.1 at RCPT, the first time for each triplet
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY], world=world)
    _expect_status(ran, 75, "EX_TEMPFAIL", hint=f"{SUBMISSION} answered 451 (4xx: try again later, RFC 5321 §4.2.1) "
                   "at RCPT: that is a temporary failure, so exit 75 and mutt or the queue tries again; 67 "
                   "(EX_NOUSER) says the address is wrong for good, only for a 5xx. smtplib's refused dict holds "
                   "each reply's code")


def no_world(probe: Probe) -> None:
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY])
    _expect_status(ran, 75, "EX_TEMPFAIL", hint="no world.json in $LABKIT_STATE_DIR: nothing runs there now, try "
                   "again later; a temporary failure")


RULES: list[Rule] = [
    Rule("delivers", "'sendmail -oi -f albert betty carol' submits with AUTH, exits 0; every recipient gets it",
         "RFC 6409 §4.3, sendmail(8)", delivers),
    Rule("as-mutt", "as mutt runs it: 'sendmail -oem -oi -- betty pat', the sender from From:",
         "sendmail(8), mutt(1)", as_mutt),
    Rule("envelope-sender", "-f sets the envelope sender (Return-Path), From: stays as written",
         "RFC 5321 §3.3, sendmail(8) -f", envelope_sender),
    Rule("t-option", "-t: recipients from To:, Cc: and Bcc: (folded too), and the Bcc: field removed",
         "RFC 5322 §3.6.3, sendmail(8) -t", t_option),
    Rule("bcc-removed", "without -t too: the Bcc: field (folded lines and all) is removed before sending",
         "RFC 5322 §3.6.3, §2.2.3", bcc_removed),
    Rule("lone-dot", "with -oi a line with only '.' does not end the message; without -i it does",
         "sendmail(8) -i, RFC 5321 §4.5.2", lone_dot),
    Rule("no-recipient", "no recipient: exit 64 (EX_USAGE)", "sysexits(3)", no_recipient),
    Rule("unknown-recipient", "a recipient refused at RCPT: exit 67 (EX_NOUSER)", "sysexits(3), RFC 5321 §4.2.2",
         unknown_recipient),
    Rule("some-refused", "one bad recipient among good ones: the others get it, exit 67, the bad one named",
         "sysexits(3), RFC 5321 §3.3", some_refused),
    Rule("tempfail", "a 4xx at RCPT (greylisted): exit 75 (EX_TEMPFAIL), not 67", "sysexits(3), RFC 5321 §4.2.1",
         tempfail),
    Rule("no-world", "no world running: exit 75 (EX_TEMPFAIL)", "sysexits(3)", no_world),
    Rule("delivers-elsewhere", "another sender, on her own host: 'sendmail -oi -f carol tom pat'",
         "RFC 6409 §4.3, sendmail(8)", lambda probe: delivers(probe, CAROL, (TOM, PAT)), variant_of="delivers"),
]

run, check = entry_points("sendmail", RULES)
