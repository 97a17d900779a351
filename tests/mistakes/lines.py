"""What a student writes once for both the POP3 and the IMAP lab: a session that
collects what arrives into lines and answers each one with ``command(line)``."""

from __future__ import annotations

from labkit.lab import Session


class LineSession(Session):
    one_command_per_receive = False  # the classic mistake: one receive() taken as one whole command
    pending = b""  # what came after the last complete line

    def receive(self, data):
        if self.one_command_per_receive:
            return self.command(data.decode("utf-8", "replace").strip())
        self.pending += data
        replies = b""
        while b"\r\n" in self.pending and not self.closed:
            line, self.pending = self.pending.split(b"\r\n", 1)
            replies += self.command(line.decode("utf-8", "replace"))
        return replies

    def command(self, line):
        raise NotImplementedError
