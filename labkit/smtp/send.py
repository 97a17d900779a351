"""The blocking socket driver for the SMTP client core (:mod:`labkit.smtp.client`).

:func:`send_mail` is a *seam*: the lab's MTA relays with it, and a student's own
``send_mail`` with the same signature replaces it in one line.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from .client import ClientTransaction, SendResult, SMTPTransientError

RECV_SIZE = 65536


def drive(sock: socket.socket, transaction: ClientTransaction, timeout: float = 30.0) -> SendResult:
    """Run ``transaction`` over a connected socket until it has finished; return its
    result or raise its :class:`~labkit.smtp.client.SMTPError`. ``timeout`` bounds
    each wait for the server (each send, each reply)."""
    sock.settimeout(timeout)
    while True:
        out = transaction.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError as exc:
                transaction.connection_lost(f"cannot send to the server: {exc}")
        if transaction.finished:
            return transaction.result()
        try:
            data = sock.recv(RECV_SIZE)
        except TimeoutError:
            transaction.timed_out(timeout)
        except OSError as exc:
            transaction.connection_lost(f"connection to the server failed: {exc}")
        else:
            transaction.receive_data(data)


def send_mail(
    sock: socket.socket,
    *,
    helo: str,
    mail_from: str,
    rcpt_to: Sequence[str],
    message: bytes,
    auth: tuple[str, str] | None = None,
    timeout: float = 30.0,
) -> SendResult:
    """One SMTP transaction over an already connected socket, then QUIT."""
    transaction = ClientTransaction(helo=helo, mail_from=mail_from, rcpt_to=rcpt_to, message=message, auth=auth)
    return drive(sock, transaction, timeout)


def connect(host: str, port: int, timeout: float = 30.0) -> socket.socket:
    """Open a TCP connection to an SMTP server; failure is an
    :class:`~labkit.smtp.client.SMTPTransientError` at stage ``connect``."""
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SMTPTransientError(f"cannot connect to {host}:{port}: {reason}", stage="connect") from exc
