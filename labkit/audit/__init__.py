"""`labkit check`: audit a real mail setup the way the labs taught it.

Real DNS queries, real SMTP, IMAP and POP3 sessions, and a
:class:`~labkit.checks.Report` that names each rule, its RFC section and the
transcript around a failure::

    from labkit.audit import Target, check
    report = check(Target("student.example", user="sam@student.example", password="…"))
    print(report)

Modules: :mod:`.target` (what to check, where connections go), :mod:`.dns_rules`,
:mod:`.probe` (an SMTP session that never sends DATA), :mod:`.smtp_rules`,
:mod:`.reading` (IMAP, POP3), :mod:`.submission`, :mod:`.run` (the order of it all),
:mod:`.render` (terminal, JSON, HTML), :mod:`.batch` (a class's setups into a CSV).
"""

from .run import check
from .target import Target

__all__ = ["Target", "check"]
