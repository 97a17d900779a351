"""`labkit check`: audit a real mail setup the way the labs taught it.

Real DNS queries, real SMTP, IMAP and POP3 sessions (over TLS where the server offers
it), and a report on a fixed rubric that names each rule, its RFC section and the
transcript around a failure::

    from labkit.audit import Target, check
    report = check(Target("student.example", user="sam@student.example", password="…"))
    print(report)

Modules: :mod:`.target` (what to check, where connections go, the time limit),
:mod:`.rubric` (the rules and their points, the report), :mod:`.visit` (what one check
learns on the way), :mod:`.tls` (STARTTLS, implicit TLS, certificates),
:mod:`.dns_rules`, :mod:`.probe` (an SMTP session that never sends DATA),
:mod:`.smtp_rules`, :mod:`.reading` (IMAP, POP3), :mod:`.submission`, :mod:`.steps`,
:mod:`.run` (the order of it all), :mod:`.render` (terminal, JSON, HTML),
:mod:`.batch` (a class's setups into a CSV).
"""

from .run import check
from .target import Target

__all__ = ["Target", "check"]
