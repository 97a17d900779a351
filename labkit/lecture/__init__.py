"""Lecture mode: the lab world live in a browser (``labkit world --web``, ``make lecture``).

The page draws the trace as it happens, as a sequence diagram with one lane per host
and the slides' labels (:mod:`labkit.sequence`), beside the mailboxes (each message's
Received chain read bottom-up), the queue (what waits, why, when it retries) and the
controls (send a message, make a host misbehave, break DNS, pause and step).

- :mod:`.feed`: trace events -> batches of diagram rows, old ones folded, for any number of pages
- :mod:`.views`: the mailboxes and the queue as data
- :mod:`.server`: the aiohttp application on the world's loop; ``static/`` is the page itself
"""
