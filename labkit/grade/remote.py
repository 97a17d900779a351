"""The grader's side of the outside verdict: the student's parts, reached in their kernel.

:class:`AgentClient` talks to the :mod:`labkit.grade.agent` in the student's sandboxed
kernel. :func:`remote_part` gives a stand-in with the seam's own signature, which
``labkit.checks`` runs exactly as it runs a local function: the checks, their scripted
peers and worlds are here, in the grader's process; only the student's code is there.

Each supported seam has a :class:`Codec`: how its arguments cross over (a socket as a
file descriptor, a DNS resolver as a callback for each question, an SMTP session's
policy questions as callbacks to this side's real MTA) and how its answer comes back
(JSON, turned into labkit's own types again, so the contracts judge it as usual).
"""

from __future__ import annotations

import base64
import socket
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

from ..boundary import check_fence
from .agent import Channel, decode_bytes, encode

CALL_TIMEOUT = 60.0  # the boundary's deadline is shorter; this only frees a wedged channel
LOOKUP_TIMEOUT = 10.0  # an expression of a test cell: a name, a list of events


class StudentRaised(Exception):
    """An exception raised by the student's code in the kernel, with its traceback."""

    def __init__(self, raised: dict) -> None:
        super().__init__(raised.get("message", ""))
        self.remote_type = raised.get("type", "Exception")
        self.remote_traceback = raised.get("traceback", "")


def _foreign(value: Any) -> Any:
    """Something that is not one of labkit's types: an object whose type name is the
    student's, so a contract says "got list" rather than "got dict"."""
    if isinstance(value, dict) and "repr" in value:
        kind = type(value.get("type", "object"), (), {"__repr__": lambda self, r=value["repr"]: r})
        return kind()
    return value


def _dataclasses() -> dict[str, type]:
    from ..dns.mx import NextHop
    from ..mta.received import HopInfo
    from ..mta.routing import Local, Refuse, Relay, RouteRequest
    from ..smtp.client import Reply, SendResult
    from ..trace import TraceEvent

    return {cls.__name__: cls for cls in (NextHop, HopInfo, Local, Refuse, Relay, RouteRequest, Reply, SendResult,
                                          TraceEvent)}


def decode(value: Any, known: dict[str, type] | None = None) -> Any:
    """labkit's types back from :func:`~labkit.grade.agent.encode`d JSON."""
    known = known if known is not None else _dataclasses()
    if isinstance(value, list):
        return [decode(v, known) for v in value]
    if isinstance(value, dict):
        if "bytes" in value:
            return decode_bytes(value)
        if "dataclass" in value:
            cls = known.get(value["dataclass"])
            values = {k: decode(v, known) for k, v in value["fields"].items()}
            if cls is None:
                return _foreign({"repr": f"{value['dataclass']}(...)", "type": value["dataclass"]})
            if cls.__name__ == "Reply":
                values["lines"] = tuple(values["lines"])
            if cls.__name__ == "NextHop":
                values["addresses"] = tuple(values["addresses"]) if isinstance(values["addresses"], list) \
                    else values["addresses"]
            if cls.__name__ == "SendResult":
                values["transcript"] = [tuple(x) for x in values.get("transcript", [])]
            return cls(**values)
        if "repr" in value and "type" in value:
            return _foreign(value)
        return {k: decode(v, known) for k, v in value.items()}
    return value


class AgentClient:
    """The grader's connection to the agent in one student's kernel."""

    def __init__(self, path: str) -> None:
        self.path = path

    def connect(self, timeout: float = CALL_TIMEOUT) -> Channel:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.path)
        return Channel(sock)

    def eval(self, expr: str) -> Any:
        """The value of ``expr`` in the student's namespace (labkit's types decoded)."""
        return decode(self._eval(expr, handle=False)["ok"])

    def handle(self, expr: str) -> int:
        """A handle on the object ``expr`` names, which stays in the kernel."""
        return self._eval(expr, handle=True)["handle"]

    def _eval(self, expr: str, *, handle: bool) -> dict:
        channel = self.connect(LOOKUP_TIMEOUT)
        with channel.sock:
            channel.send({"op": "eval", "expr": expr, "handle": handle})
            answer = channel.receive()
        if "raised" in answer:
            raise StudentRaised(answer["raised"])
        return answer


def outcome(seam: str, answer: dict, decode_ok: Callable[[Any], Any]) -> Any:
    """The student's call as this side must see it: its value, its exception, or the
    reference fence tripped (raised here, so this side's boundary records it)."""
    if "fenced" in answer:
        check_fence(seam, answer["fenced"])
        raise RuntimeError(f"fenced: {answer['fenced']}")  # not reached inside a student call
    if "raised" in answer:
        raise _exception(answer["raised"])
    return decode_ok(answer["ok"])


def _exception(raised: dict) -> Exception:
    """The seam's own exceptions come back as themselves; anything else is the student's."""
    from ..dns.mx import NullMXError, PermanentMXError, TemporaryMXError
    from ..smtp.client import Reply, SMTPError, SMTPPermanentError, SMTPTransientError

    kind, smtp = raised.get("type"), raised.get("smtp") or {}
    smtp_errors = {"SMTPError": SMTPError, "SMTPTransientError": SMTPTransientError,
                   "SMTPPermanentError": SMTPPermanentError}
    if kind in smtp_errors:
        reply = Reply(smtp["code"], tuple(smtp["lines"])) if "code" in smtp else None
        return smtp_errors[kind](smtp.get("problem", raised.get("message", "")), stage=smtp.get("stage", ""),
                                 reply=reply)
    mx_errors = {"TemporaryMXError": TemporaryMXError, "PermanentMXError": PermanentMXError,
                 "NullMXError": NullMXError}
    if kind in mx_errors and raised.get("domain") is not None:
        return mx_errors[kind](raised["domain"], raised.get("message", ""))
    return StudentRaised(raised)


# -- the codecs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Codec:
    """How one seam's call crosses over: ``arguments`` (in the kernel) builds the real
    arguments from what this side sent; ``result`` (in the kernel) encodes the answer."""

    arguments: Callable[[dict, Channel], tuple[tuple, dict]]
    result: Callable[[Any], Any] = encode


def _send_mail_arguments(payload: dict, channel: Channel) -> tuple[tuple, dict]:
    sock = socket.socket(fileno=channel.fds.pop(0))
    kwargs = dict(payload)
    kwargs["message"] = decode_bytes(kwargs["message"])
    kwargs["auth"] = tuple(kwargs["auth"]) if kwargs.get("auth") else None
    return (sock,), kwargs


def _resolve_mx_arguments(payload: dict, channel: Channel) -> tuple[tuple, dict]:
    return (payload["domain"], ProxyResolver(channel, payload["nameservers"], payload["port"],
                                             payload["lifetime"])), {}


SEAM_CODECS: dict[str, Codec] = {
    "send_mail": Codec(_send_mail_arguments),
    "resolve_mx": Codec(_resolve_mx_arguments),
}


class ProxyResolver:
    """In the kernel: a dnspython resolver whose every question is asked by the grader
    (the sandbox has no network but its own loopback)."""

    def __init__(self, channel: Channel, nameservers: list[str], port: int, lifetime: float) -> None:
        self._channel = channel
        self.nameservers, self.port = nameservers, port
        self.timeout = self.lifetime = lifetime
        self.search: list = []

    def resolve(self, qname: Any, rdtype: Any = "A", rdclass: Any = "IN", tcp: bool = False, source: Any = None,
                raise_on_no_answer: bool = True, source_port: int = 0, lifetime: float | None = None,
                search: bool | None = None) -> Any:
        import dns.exception
        import dns.message
        import dns.name
        import dns.rdataclass
        import dns.rdatatype
        import dns.resolver

        name = qname if isinstance(qname, dns.name.Name) else dns.name.from_text(str(qname))
        kind = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else rdtype
        self._channel.send({"callback": "resolve", "qname": name.to_text(), "rdtype": dns.rdatatype.to_text(kind)})
        answer = self._channel.receive()
        errors = {"NXDOMAIN": dns.resolver.NXDOMAIN, "NoAnswer": dns.resolver.NoAnswer,
                  "NoNameservers": dns.resolver.NoNameservers, "Timeout": dns.exception.Timeout}
        if "error" in answer:
            raise errors.get(answer["error"], dns.exception.DNSException)()
        response = dns.message.from_wire(base64.b64decode(answer["wire"]))
        return dns.resolver.Answer(name, kind, dns.rdataclass.IN, response)


def answer_dns(resolver: Any, callback: dict) -> dict:
    """On this side: ask the real lab DNS the kernel's question."""
    import dns.exception
    import dns.resolver

    try:
        found = resolver.resolve(callback["qname"], callback["rdtype"], search=False)
    except dns.resolver.NXDOMAIN:
        return {"error": "NXDOMAIN"}
    except dns.resolver.NoAnswer:
        return {"error": "NoAnswer"}
    except dns.resolver.NoNameservers:
        return {"error": "NoNameservers"}
    except dns.exception.Timeout:
        return {"error": "Timeout"}
    # as it came, in the server's order (dnspython would shuffle it again)
    return {"wire": base64.b64encode(found.response.to_wire(want_shuffle=False)).decode()}


# -- the stand-ins the checks call ------------------------------------------------------------
def remote_part(seam: str, agent: AgentClient, handle: int) -> Callable[..., Any]:
    """A callable with ``seam``'s signature that runs the student's object ``handle``."""
    if seam == "send_mail":
        def send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
            payload = {"helo": helo, "mail_from": mail_from, "rcpt_to": list(rcpt_to),
                       "message": {"bytes": base64.b64encode(message).decode()},
                       "auth": list(auth) if auth else None, "timeout": timeout}
            return _call(agent, seam, handle, payload, [sock.fileno()])

        return send_mail
    if seam == "resolve_mx":
        def resolve_mx(domain, resolver):
            payload = {"domain": domain, "nameservers": list(resolver.nameservers), "port": resolver.port,
                       "lifetime": resolver.lifetime}
            return _call(agent, seam, handle, payload, [], resolver=resolver)

        return resolve_mx
    if seam == "smtp_session":
        def smtp_session(peer, mta, *, hostname):
            return RemoteSession(agent, seam, handle, peer, mta, hostname)

        return smtp_session
    raise KeyError(f"the grader cannot run a student's {seam} outside the notebook yet")


REMOTE_SEAMS = ("send_mail", "resolve_mx", "smtp_session")


def _call(agent: AgentClient, seam: str, handle: int, payload: dict, fds: list[int], *, resolver: Any = None) -> Any:
    channel = agent.connect()
    with channel.sock:
        channel.send({"op": "call", "seam": seam, "handle": handle, "args": payload}, fds)
        while True:
            answer = channel.receive()
            if answer.get("callback") == "resolve":
                channel.send(answer_dns(resolver, answer))
                continue
            return outcome(seam, answer, decode)


def peer_from(data: dict) -> Any:
    from ..session import PeerInfo

    return PeerInfo(data["address"], data["port"], data["server_name"], tuple(data["socket_address"]))


class RemoteMTA:
    """In the kernel: the host's policy, asked on the grader's side over the channel.
    A Transaction is plain data: it goes over with each question and comes back changed."""

    def __init__(self, channel: Channel, facts: dict) -> None:
        self._channel = channel
        self.hostname, self.role = facts.get("hostname", ""), facts.get("role", "smtp")

    def _ask(self, name: str, *args: Any, txn: Any = None) -> Any:
        self._channel.send({"callback": "mta", "name": name, "args": [encode(a) for a in args],
                            "txn": asdict(txn) if txn is not None else None})
        answer = self._channel.receive()
        if txn is not None and answer.get("txn"):
            for key, value in answer["txn"].items():
                setattr(txn, key, tuple(value) if key == "client" else value)
        return answer.get("answer")

    def transaction(self, peer: Any) -> Any:
        from ..mta.core import Transaction

        data = self._ask("transaction", {"socket_address": list(peer.socket_address)})
        data["client"] = tuple(data["client"])
        return Transaction(**data)

    def greeting(self) -> str:
        return self._ask("greeting")

    def extensions(self) -> list[str]:
        return self._ask("extensions")

    def mail(self, txn: Any, address: str, params: list[str]) -> str:
        return self._ask("mail", address, list(params), txn=txn)

    def rcpt(self, txn: Any, address: str) -> str:
        return self._ask("rcpt", address, txn=txn)

    def data(self, txn: Any, message: bytes) -> str:
        return self._ask("data", message, txn=txn)

    def vrfy(self, address: str) -> str:
        return self._ask("vrfy", address)

    def authenticate(self, login: str, password: str) -> str | None:
        return self._ask("authenticate", login, password)


class RemoteSession:
    """On this side: a session object whose every method runs the student's in the kernel;
    the policy questions it asks are answered here by the host's real ``mta``."""

    def __init__(self, agent: AgentClient, seam: str, handle: int, peer: Any, mta: Any, hostname: str) -> None:
        self.seam, self.mta = seam, mta
        self.closed = False
        self.timeout = 300.0
        self._channel = agent.connect()
        self._channel.sock.settimeout(None)  # a session lives as long as its connection
        self._channel.send({"op": "session", "seam": seam, "handle": handle, "hostname": hostname,
                            "mta": {"hostname": mta.hostname, "role": mta.role},
                            "peer": {"address": peer.address, "port": peer.port, "server_name": peer.server_name,
                                     "socket_address": list(peer.socket_address)}})
        self._answer()

    def _answer(self) -> Any:
        while True:
            answer = self._channel.receive()
            if answer.get("callback") == "mta":
                self._channel.send(self._policy(answer))
                continue
            self.closed = bool(answer.get("closed", self.closed))
            return outcome(self.seam, answer, decode)

    def _policy(self, question: dict) -> dict:
        from ..mta.core import Transaction
        from ..session import PeerInfo

        args = [decode(a) for a in question["args"]]
        name = question["name"]
        if name == "transaction":
            txn = self.mta.transaction(PeerInfo("", 0, "", tuple(args[0]["socket_address"])))
            return {"answer": asdict(txn)}
        txn = None
        if question.get("txn"):
            data = dict(question["txn"])
            data["client"] = tuple(data["client"])
            txn = Transaction(**{f.name: data[f.name] for f in fields(Transaction) if f.name in data})
            args.insert(0, txn)
        answer = getattr(self.mta, name)(*args)
        return {"answer": answer, "txn": asdict(txn) if txn is not None else None}

    def _step(self, method: str, *args: Any) -> Any:
        self._channel.send({"method": method, "args": [encode(a) for a in args]})
        return self._answer()

    def start(self) -> Any:
        return self._step("start")

    def receive(self, data: bytes) -> Any:
        return self._step("receive", data)

    def mailbox_changed(self) -> Any:
        return self._step("mailbox_changed")

    def timed_out(self) -> Any:
        return self._step("timed_out")

    def connection_lost(self) -> None:
        try:
            self._step("connection_lost")
        finally:
            self._channel.sock.close()
