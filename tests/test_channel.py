"""The channel between a graded kernel and its judge, and the judge's stand-ins for every
seam: over a real socket pair, with the kernel's side (labkit.graded) serving labkit's
own parts as if they were a student's, each seam's answer is the same as calling it
directly; what the kernel may send is refused when it is not what the operation takes."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from labkit import graded, maildir
from labkit.channel import BadRequest, Channel, ChannelClosed, Decoder, Encoder, Foreign, RemoteError
from labkit.grade.pod import kernel_modules
from labkit.grade.stand_ins import Policies, StudentRaised, exception_from, stand_in
from labkit.seams import SEAMS, fenced_names
from labkit.smtp.reply import Reply, SendResult, SMTPTransientError


@pytest.fixture
def pair():
    """A kernel's side (serving its parts) and a judge's side, over a socket pair."""
    one, two = socket.socketpair()
    kernel = Channel(one, name="test-kernel")
    parts = graded._Parts(kernel)
    judge = Channel(two, name="test-judge")
    policies = Policies(judge)
    kernel.start()
    judge.start()
    yield parts, judge, policies
    kernel.close()
    judge.close()


def test_requests_both_ways_nested_and_concurrent():
    one, two = socket.socketpair()
    left = Channel(one, {"double": lambda a, f: a["n"] * 2})
    right = Channel(two, {"ask-back": lambda a, f: left_answer(a["n"])})

    def left_answer(n: int) -> int:  # right, serving a request, asks left: a nested call
        return right.request("double", {"n": n}) + 1

    left.start(), right.start()
    results = {}

    def ask(n: int) -> None:
        results[n] = left.request("ask-back", {"n": n})

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert results == {n: 2 * n + 1 for n in range(20)}
    with pytest.raises(RemoteError, match="no operation 'nope'"):
        left.request("nope")
    left.close(), right.close()


def test_descriptors_ride_with_their_frame():
    one, two = socket.socketpair()
    seen = {}

    def take(args: dict, fds: list[int]) -> str:
        with socket.socket(fileno=fds[0]) as sock:
            sock.sendall(args["say"].encode())
        return "sent"

    receiver = Channel(two, {"take": take}).start()
    sender = Channel(one).start()
    a, b = socket.socketpair()
    assert sender.request("take", {"say": "hello"}, fds=[b.fileno()]) == "sent"
    b.close()
    seen["got"] = a.recv(10)
    assert seen["got"] == b"hello"
    sender.close(), receiver.close()


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xff", struct.pack(">I", 5) + b"nope!",
                                     struct.pack(">I", 2) + b"[]", struct.pack(">I", 9) + b'{"fds":3}'])
def test_a_peer_breaking_the_protocol_closes_the_channel_and_fails_what_waits(garbage):
    one, two = socket.socketpair()
    judge = Channel(one, name="judge")
    waited = {}
    judge.start()

    def wait() -> None:
        try:
            judge.request("lookup", {"name": "x"}, timeout=10)
        except ChannelClosed as error:
            waited["why"] = str(error)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.1)
    two.sendall(garbage)
    thread.join(10)
    assert "broke the protocol" in waited["why"] or "closed" in waited["why"]
    assert judge.closed.is_set()


def test_values_cross_as_labkits_own_types_and_nothing_else():
    reply = Reply(250, ("OK",))
    data = Encoder()({"a": (1, b"\x00", frozenset({"x"})), "r": SendResult({"b@y": reply}, {}, reply)})
    back = Decoder()(json.loads(json.dumps(data)))
    assert back["a"] == (1, b"\x00", frozenset({"x"})) and back["r"].accepted["b@y"] == reply

    class Widget:
        pass

    assert isinstance(Decoder()(Encoder()(Widget())), Foreign) and repr(Decoder()(Encoder()(Widget()))) == \
        "<Widget object>"
    with pytest.raises(BadRequest):
        Decoder()({"$": "pickle", "v": "gASV"})
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(BadRequest):
        Decoder()(deep)
    forged = Decoder()({"$": "dc", "t": "Reply", "f": {"code": 250}})  # a field missing
    assert isinstance(forged, Foreign)


def test_a_seams_own_errors_come_back_as_themselves():
    error = exception_from({"type": "MyError", "bases": ["SMTPTransientError", "SMTPError", "Exception"],
                            "message": "later", "facts": {"stage": "RCPT", "problem": "busy",
                                                          "reply": Encoder()(Reply(451, ("busy",)))}})
    assert isinstance(error, SMTPTransientError) and error.stage == "RCPT" and error.reply.code == 451
    other = exception_from({"type": "ValueError", "bases": ["Exception"], "message": "no", "traceback": "Trace"})
    assert isinstance(other, StudentRaised) and other.remote_type == "ValueError" and other.remote_traceback == "Trace"


def _ref(parts: graded._Parts, impl) -> int:
    return parts.handles.add(impl)


def test_function_seams_answer_through_the_channel_as_directly(pair, tmp_path):
    """Each function seam's stand-in, running labkit's own answer on the kernel's side,
    gives what calling it here gives (the registry's kinds, a test per seam)."""
    from labkit.dns.hops import NextHop  # noqa: F401 - the types must round-trip
    from labkit.mta.types import Failure, HopInfo, RouteRequest

    parts, judge, policies = pair
    calls = {
        "received_header": ((HopInfo("pc", "1.2.3.4", "", "smtp.brilliant.com", "ESMTP", "ABCD1234",
                                     ("betty@brilliant.com",), 1.7e9),), {}),
        "route": ((RouteRequest("betty@brilliant.com", "brilliant.com", frozenset({"brilliant.com"}),
                                frozenset({"betty@brilliant.com"}), "smtp"),), {}),
        "next_retry": ((3, 100.0), {"schedule": (1.0, 5.0, 30.0), "max_queue_time": 600.0}),
        "make_bounce": ((), {"reporting_mta": "smtp.awesome.com", "queue_id": "ABCD1234", "sender": "a@x",
                             "failures": [Failure("b@y", "550 5.1.1 no")], "original": b"Subject: x\r\n\r\nhi\r\n",
                             "arrived": 1.7e9}),
    }
    tested = set()
    for name, spec in SEAMS.items():
        if name not in calls:
            continue
        args, kwargs = calls[name]
        reference = spec.load_reference()
        remote = stand_in(spec, judge, policies, _ref(parts, reference))
        here, there = reference(*args, **kwargs), remote(*args, **kwargs)
        if name == "make_bounce":  # a fresh boundary and Message-ID each time: compare the shape
            here, there = here.split(b"\r\n")[0], there.split(b"\r\n")[0]
        assert there == here, name
        tested.add(name)
    folder = tmp_path / "Maildir"
    maildir.create(folder)
    deliver = stand_in(SEAMS["deliver"], judge, policies, _ref(parts, SEAMS["deliver"].load_reference()))
    name = deliver(folder, b"Subject: hi\r\n\r\nhello\r\n")
    assert (folder / "new" / name).read_bytes() == b"Subject: hi\r\n\r\nhello\r\n"
    tested.add("deliver")
    functions = {n for n, s in SEAMS.items() if s.kind == "function"}
    assert functions - tested == {"resolve_mx", "send_mail"}  # with a socket or a DNS server: below


def test_a_socket_and_a_resolver_cross_and_work_on_the_other_side(pair, world):
    parts, judge, policies = pair
    resolve = stand_in(SEAMS["resolve_mx"], judge, policies, _ref(parts, SEAMS["resolve_mx"].load_reference()))
    hops = resolve("brilliant.com", world.resolver())
    assert [(h.host, h.addresses) for h in hops] == [("smtp.brilliant.com", ("1.2.3.5",))]
    send = stand_in(SEAMS["send_mail"], judge, policies, _ref(parts, SEAMS["send_mail"].load_reference()))
    with world.connect("1.2.3.5", 25) as sock:
        result = send(sock, helo="smtp.awesome.com", mail_from="albert@awesome.com", rcpt_to=["betty@brilliant.com"],
                      message=b"Subject: hi\r\n\r\nthrough a stand-in\r\n")
    assert isinstance(result, SendResult) and result.data_reply.code == 250


def test_a_session_runs_in_the_kernel_and_asks_the_judges_mta(pair, world):
    """labkit's own SMTP session on the kernel's side, served on a port by the judge's
    world: its MTA questions come back here (MTAPolicy only)."""
    import smtplib

    parts, judge, policies = pair
    factory = stand_in(SEAMS["smtp_session"], judge, policies, _ref(parts, SEAMS["smtp_session"].load_reference()))
    world.use(host="smtp.brilliant.com", smtp_session=factory)
    smtp = world.host("smtp.brilliant.com").services["smtp"]
    since = time.time()
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=10) as client:
            client.sendmail("albert@awesome.com", ["betty@brilliant.com"],
                            b"Subject: hi\r\n\r\nvia a remote session\r\n")
    finally:
        world.use(host="smtp.brilliant.com", smtp_session=None)
    world.wait_for_delivery("betty@brilliant.com", since=since)
    assert any(b"via a remote session" in m for m in world.messages("betty@brilliant.com"))


@pytest.mark.parametrize("asked", [
    {"mta": 1, "method": "__class__", "args": []},
    {"mta": 1, "method": "host", "args": []},
    {"mta": 1, "method": "rcpt", "args": [5]},
    {"mta": 1, "method": "data", "args": ["not bytes"]},
    {"mta": 99, "method": "greeting", "args": []},
    {"mta": 1, "method": "mail", "args": ["a@x", [1]], "txn": {"id": 1}},
])
def test_the_mta_stand_in_answers_only_mtapolicy(pair, world, asked):
    from labkit.mta.core import MTA

    parts, judge, policies = pair
    assert policies.ref(MTA(world.host("smtp.brilliant.com"), "smtp"))["id"] == 1
    with pytest.raises(BadRequest):
        policies.serve(asked, [])


def test_a_graded_kernel_holds_no_answer():
    """The kernel's labkit (what a graded notebook's file system holds) imports no module
    of labkit's answers, nor the world, the checks' rules or the grader."""
    held = set(kernel_modules())
    answers = set(fenced_names())
    assert not held & answers, held & answers
    assert not {m for m in held if m.startswith(("labkit.world", "labkit.mta.core", "labkit.grade.", "labkit.checks."))
                and m != "labkit.checks.result"}
    assert {"labkit.lab", "labkit.notebook", "labkit.graded", "labkit.imap.parser"} <= held


def test_the_storing_and_imap_labs_kernels_hold_their_helpers_and_no_answer():
    """Lab 5 grades deliver and the POP3 session: its kernel holds neither labkit's Maildir
    code nor its store; lab 6 grades the IMAP session and hands out the store (UIDs, flags):
    its kernel holds the store, and no IMAP server."""
    from labkit.grade.pod import lab_kernel
    from submissions import source

    five, six = lab_kernel(source("5-storing-and-pop3")), lab_kernel(source("6-imap"))
    assert five == ((), ("deliver", "pop3_session")) and six == (("labkit.store",), ("imap_session",))
    held = set(kernel_modules(five[0]))
    assert not held & {"labkit.maildir", "labkit.store", "labkit.pop3", "labkit.commit"}
    assert {"labkit.diskspy", "labkit.statechart"} <= held  # the notebook's power cut and state diagram
    held = set(kernel_modules(six[0]))
    assert {"labkit.store", "labkit.maildir", "labkit.imap.parser"} <= held
    assert not held & {"labkit.imap.session", "labkit.imap.fetch", "labkit.pop3"}


def test_the_student_package_gives_the_types_under_every_name(tmp_path):
    import subprocess
    import sys

    from labkit.grade.pod import student_package

    package = student_package(tmp_path / "student")
    code = ("from labkit.smtp.client import Reply; import labkit.lab as lab; assert Reply is lab.Reply\n"
            "from labkit.world import World\n"
            "try:\n    from labkit.smtp.client import ClientTransaction\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(package)!r})\n" + code],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "part of labkit's own answer" in done.stdout
    assert not (Path(package) / "labkit" / "smtp" / "send.py").read_text().count("def send_mail")


@pytest.fixture(scope="module")
def world():
    from conftest import lecture_config
    from labkit.world import World

    with World(lecture_config()) as running:
        yield running


def test_a_deliver_is_watched_where_it_runs(pair, tmp_path):
    """The judge asks the kernel to record a part's fsync and rename calls; they come
    back as labkit's own records, and the deliver check reads them as from a local spy."""
    from labkit.diskspy import DiskSpy

    parts, judge, policies = pair
    remote = stand_in(SEAMS["deliver"], judge, policies, _ref(parts, SEAMS["deliver"].load_reference()))
    folder = tmp_path / "Maildir"
    maildir.create(folder)
    with DiskSpy.watching(remote) as spy:
        name = remote(folder, b"Subject: x\r\n\r\nwatched\r\n")
    assert [c.name for c in spy.calls][:1] == ["fsync"] and any(c.name == "rename" for c in spy.calls)
    assert (folder / "new" / name).exists()
    seen = len(spy.calls)
    remote(folder, b"Subject: y\r\n\r\nnot watched\r\n")  # outside the block: nothing more recorded
    assert len(spy.calls) == seen


def test_a_program_runs_where_it_is(pair, tmp_path):
    from labkit.programs import run_program

    parts, judge, policies = pair
    program = tmp_path / "my-sendmail"
    program.write_text("#!/bin/sh\ncat > \"$OUT\"\necho \"args: $*\" >&2\nexit 75\n")
    program.chmod(0o755)
    remote = stand_in(SEAMS["sendmail"], judge, policies, str(program))
    ended = remote.run(["-oi", "betty@brilliant.com"], b"Subject: hi\n\nhello\n", {"OUT": str(tmp_path / "got")}, 5)
    assert (ended.status, ended.stderr) == (75, "args: -oi betty@brilliant.com\n")
    assert (tmp_path / "got").read_bytes() == b"Subject: hi\n\nhello\n" and str(remote) == str(program)
    assert run_program(["sleep", "30"], b"", {}, 0.5).status is None  # killed at the deadline


def test_a_pop3_session_in_the_kernel_asks_the_judge_for_its_users(pair, world):
    """labkit's own POP3 session on the kernel's side, served by the judge's world: it
    finds Betty through the users' stand-in and reads her Maildir (the same path on both
    sides); a question outside the users' protocol is refused."""
    import poplib

    parts, judge, policies = pair
    factory = stand_in(SEAMS["pop3_session"], judge, policies, _ref(parts, SEAMS["pop3_session"].load_reference()))
    since = time.time()
    world.send("albert@awesome.com", ["betty@brilliant.com"], b"Subject: pop\r\n\r\nfor the remote POP3\r\n")
    world.wait_for_delivery("betty@brilliant.com", since=since)
    world.use(host="smtp.brilliant.com", pop3_session=factory)
    try:
        endpoint = world.host("smtp.brilliant.com").services["pop3"]
        client = poplib.POP3(endpoint.host, endpoint.port, timeout=10)
        client.user("betty")
        client.pass_("betty-password")
        count, _ = client.stat()
        bodies = [b"\n".join(client.retr(n)[1]) for n in range(1, count + 1)]
        assert any(b"for the remote POP3" in body for body in bodies)
        client.quit()
    finally:
        world.use(host="smtp.brilliant.com", pop3_session=None)
    from labkit.accounts import Accounts

    policies.ref_accounts(Accounts())
    with pytest.raises(BadRequest):
        policies.serve_accounts({"accounts": 99, "method": "_by_login", "args": []}, [])
    with pytest.raises(BadRequest):
        policies.serve_accounts({"accounts": 1, "method": "authenticate", "args": ["betty"]}, [])


def test_a_hosts_own_resolver_crosses_as_a_resolver(pair, world):
    """The resolver a world's host hands resolve_mx (one that tells the lab's server who
    asks) reaches the kernel as a resolver asking the same server."""
    parts, judge, policies = pair
    seen = {}

    def record(domain, resolver):
        seen["resolver"] = resolver
        return SEAMS["resolve_mx"].load_reference()(domain, resolver)

    remote = stand_in(SEAMS["resolve_mx"], judge, policies, _ref(parts, record))
    hosts_own = world.context.resolver(source="1.2.3.4")
    assert [h.host for h in remote("brilliant.com", hosts_own)] == ["smtp.brilliant.com"]
    assert (seen["resolver"].nameservers, seen["resolver"].port) == (hosts_own.nameservers, hosts_own.port)
