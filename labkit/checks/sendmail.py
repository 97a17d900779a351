"""Checks for ``sendmail``, the student's ``/usr/sbin/sendmail``: a program, not a function.

Each rule runs the program as mutt would: the message on standard input, ``-oi -f
sender recipient`` (or ``-t``), ``LABKIT_STATE_DIR`` naming the running lab world,
and judges what arrives and the exit status (sysexits.h). The program runs in its own
process under the probe's deadline; a Python traceback on its stderr counts as a crash.

The reference fence reaches into that process too: a ``sitecustomize`` put on its
``PYTHONPATH`` adds an audit hook that refuses (and records) any import of
:mod:`labkit.sendmail`, so a script that runs labkit-sendmail, directly or through a
shell, earns nothing. ::

    from labkit import checks
    checks.sendmail.run("/home/me/bin/my-sendmail")
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..programs import run_program
from .harness import ALBERT, BETTY, CAROL, Broken, Probe, Rule, entry_points
from .received_header import clause

PAT = "pat@plain.com"
SUBMISSION = "smtp.awesome.com"
FENCE_VARIABLE = "LABKIT_CHECK_FENCE"  # where the fence records a use of labkit's own sendmail
# mutt hands sendmail the message with Unix line endings
MESSAGE = b"From: Albert <albert@awesome.com>\nTo: Betty <betty@brilliant.com>\nSubject: via your sendmail\n\nHi!\n"
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
    return Path(probe.enter(tempfile.TemporaryDirectory(prefix="labkit-check-sendmail-")))


def _run(probe: Probe, args: list[str], message: bytes = MESSAGE, *, state_dir: Path) -> Ran:
    """Run the student's program with ``args``; a crash, a hang or labkit's own
    sendmail is a :class:`Broken` in the boundary's words."""
    scratch = _scratch(probe)
    (scratch / "sitecustomize.py").write_text(FENCE)
    fenced = scratch / "fenced"
    python_path = os.pathsep.join(filter(None, [str(scratch), os.environ.get("PYTHONPATH")]))
    env = {"LABKIT_STATE_DIR": str(state_dir), "PYTHONPATH": python_path, FENCE_VARIABLE: str(fenced)}
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
def delivers(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY], state_dir=world.state_dir)
    _expect_status(ran, 0, "EX_OK", hint="exit 0 only once the server has accepted the message (250 after DATA)")
    probe.delivered(world, BETTY, step=f"{ran.step}, then the world relays it")
    stored = probe.stored(world, BETTY)
    if stored["Subject"] != "via your sendmail" or stored.get_content().strip() != "Hi!":
        raise Broken("Betty's copy", "the message given on standard input", repr(stored.as_string()[:300]))
    stamps = [str(r) for r in stored.get_all("Received", [])]
    submitted = [s for s in stamps if (clause(f"Received: {s}", "by") or "").lower() == SUBMISSION]
    if not submitted or (clause(f"Received: {submitted[0]}", "with") or "").upper() not in ("ESMTPA", "ESMTPSA"):
        raise Broken("the Received headers of Betty's copy", f"a hop 'by {SUBMISSION} ... with ESMTPA'",
                     " / ".join(stamps), hint="submit to the sender's own host, its submission port (587 in the "
                     "world.json's services), and log in with AUTH: smtplib's login(user, password) (RFC 6409)")


def t_option(probe: Probe) -> None:
    world = _world(probe)
    message = (b"From: Albert <albert@awesome.com>\nTo: Betty <betty@brilliant.com>\nCc: carol@careful.com\n"
               b"Bcc: pat@plain.com\nSubject: party\n\nFriday!\n")
    ran = _run(probe, ["-oi", "-f", ALBERT, "-t"], message, state_dir=world.state_dir)
    _expect_status(ran, 0, "EX_OK", hint="-t: the recipients are the addresses in To:, Cc: and Bcc:")
    for rcpt in (BETTY, CAROL, PAT):
        probe.delivered(world, rcpt, step=f"{ran.step}: To: Betty, Cc: Carol, Bcc: Pat")
        bcc = probe.stored(world, rcpt)["Bcc"]
        if bcc is not None:
            raise Broken(f"{rcpt}'s copy", "no Bcc: header", f"Bcc: {bcc}",
                         hint="remove the Bcc: field before sending: blind copies must stay blind (RFC 5322 "
                              "§3.6.3)")


def lone_dot(probe: Probe) -> None:
    world = _world(probe)
    message = MESSAGE + b".\nthe line after a lone dot\n"
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY], message, state_dir=world.state_dir)
    _expect_status(ran, 0, "EX_OK", hint="")
    probe.delivered(world, BETTY, step=ran.step)
    body = probe.stored(world, BETTY).get_content()
    if "the line after a lone dot" not in body or "\n.\n" not in body.replace("\r\n", "\n"):
        raise Broken(f"{ran.step}, with a line holding only '.'", "the whole message, the '.' line too",
                     repr(body), hint="with -oi (or -i) only the end of the input ends the message. Over SMTP the "
                     "lines end in CRLF: smtplib sends bytes as they are, and after a bare LF a '.' is not at the "
                     "start of a line, so it is not unstuffed (RFC 5321 §2.3.8, §4.5.2)")


def no_recipient(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT], state_dir=world.state_dir)
    _expect_status(ran, 64, "EX_USAGE", hint="no recipient on the command line and no -t: a usage error, as "
                   "Postfix's sendmail says; sysexits.h numbers tell mutt what went wrong")


def unknown_recipient(probe: Probe) -> None:
    world = _world(probe)
    ran = _run(probe, ["-oi", "-f", ALBERT, "nobody@awesome.com"], state_dir=world.state_dir)
    _expect_status(ran, 67, "EX_NOUSER", hint="the server refused the recipient at RCPT with 550: say so on stderr "
                   "and exit 67, so mutt tells the user the address is wrong (smtplib raises SMTPRecipientsRefused)")


def no_world(probe: Probe) -> None:
    ran = _run(probe, ["-oi", "-f", ALBERT, BETTY], state_dir=_scratch(probe))
    _expect_status(ran, 75, "EX_TEMPFAIL", hint="no world.json in $LABKIT_STATE_DIR: nothing runs there now, try "
                   "again later; a temporary failure")


RULES: list[Rule] = [
    Rule("delivers", "'sendmail -oi -f albert betty' submits with AUTH, exits 0, and Betty gets it",
         "RFC 6409 §4.3, sendmail(8)", delivers),
    Rule("t-option", "-t: recipients from To:, Cc: and Bcc:, and Bcc: removed", "RFC 5322 §3.6.3, sendmail(8) -t",
         t_option),
    Rule("lone-dot", "with -oi a line with only '.' does not end the message", "sendmail(8) -i, RFC 5321 §4.5.2",
         lone_dot),
    Rule("no-recipient", "no recipient: exit 64 (EX_USAGE)", "sysexits(3)", no_recipient),
    Rule("unknown-recipient", "a recipient refused at RCPT: exit 67 (EX_NOUSER)", "sysexits(3), RFC 5321 §4.2.2",
         unknown_recipient),
    Rule("no-world", "no world running: exit 75 (EX_TEMPFAIL)", "sysexits(3)", no_world),
]

run, check = entry_points("sendmail", RULES)
