"""IMAP4rev1 (RFC 3501): a sans-IO server session over the Maildir store.

- :mod:`.parser`: framing (literals, LITERAL+) and the command grammar
- :mod:`.fetch`, :mod:`.structure`, :mod:`.mime`, :mod:`.address`: FETCH data items
- :mod:`.search`: SEARCH keys
- :mod:`.mailbox`: the selected mailbox as the client sees it
- :mod:`.session`: :class:`IMAPSession`, the :class:`labkit.session.Session`
"""

from .session import IMAPSession

__all__ = ["IMAPSession"]
