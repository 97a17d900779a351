"""The fault boundary: student parts that are wrong in every way, in a running world.

Each test plugs in a broken part the way a student would (``world.use``), and checks
the world's promises: nothing is lost (fix it, ``retry_now``, and every message arrives
exactly once), the world keeps answering while a part hangs, the failure is in the trace
with the student's own traceback, nothing reaches stderr, and stopping is prompt.
"""

from __future__ import annotations

import poplib
import smtplib
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dns.resolver
import pytest

from checking import Greets, with_receive
from conftest import lecture_config
from labkit.dns.mx import resolve_mx as labkit_resolve_mx
from labkit.lab import (Local, NextHop, PermanentMXError, Refuse, Relay, Reply, SendResult, Session,
                        SMTPTransientError)
from labkit.world import World

HELLO = b"From: albert@awesome.com\r\nSubject: hello\r\n\r\nhello\r\n"
ALBERT, BETTY, CAROL = "albert@awesome.com", "betty@brilliant.com", "carol@careful.com"
DEADLINE = 0.5


@pytest.fixture
def world(tmp_path: Path):
    with World(lecture_config(), state_dir=tmp_path / "state", deadline=DEADLINE) as w:
        yield w


@pytest.fixture(autouse=True)
def no_stderr(request, capfd):
    """Nothing a world does may reach stderr (nbgrader scores that as a failure). Tests
    marked ``foreign_stderr`` check their own stderr: a Jupyter kernel's start-up
    warning on its process's stderr is not a cell's."""
    yield
    if request.node.get_closest_marker("foreign_stderr") is None:
        assert capfd.readouterr().err == ""


def seam_error(world, seam: str, since: float = 0.0):
    return world.wait_for(lambda e: e.kind == "seam-error" and e.data["seam"] == seam, since=since)


def deferred(world, since: float = 0.0):
    return world.wait_for(lambda e: e.kind == "deferred", since=since)


def fixed_then_once(world, seam: str, recipient: str = BETTY) -> None:
    """Take the student's part out, flush the queue: the message arrives exactly once."""
    world.use(**{seam: None})
    world.retry_now()
    world.wait_for_delivery(recipient)
    time.sleep(0.3)  # a second copy, if any, would arrive by now: the queue retries every 0.1-0.4 s
    assert len(world.messages(recipient)) == 1


def greets_quickly(world, host: str = "1.2.3.11", port: int = 25) -> float:
    started = time.monotonic()
    with world.connect(host, port, timeout=2) as sock:
        assert sock.recv(100).startswith(b"220")
    return time.monotonic() - started


# -- resolve_mx ---------------------------------------------------------------------------
@pytest.mark.parametrize("answer, says", [
    (None, "got None (did you forget the return statement?)"),
    (["smtp.brilliant.com"], "is the string 'smtp.brilliant.com'"),
    ([], "raise PermanentMXError"),
    ([NextHop("smtp.brilliant.com", 10, ())], "has no addresses"),
])
def test_a_resolver_returning_the_wrong_thing_defers_and_loses_nothing(world, answer, says):
    world.use(resolve_mx=lambda domain, resolver: answer)
    world.send(ALBERT, [BETTY], HELLO)
    error = seam_error(world, "resolve_mx")
    assert error.data["failure"] == "contract" and says in error.data["detail"]
    assert "brilliant.com" in error.data["input"]
    assert says in deferred(world).data["detail"]
    fixed_then_once(world, "resolve_mx")


def test_a_crashing_resolver_shows_the_students_traceback(world):
    def resolve_mx(domain, resolver):
        return [hop for hop in 1 / 0]

    world.use(resolve_mx=resolve_mx)
    world.send(ALBERT, [BETTY], HELLO)
    error = seam_error(world, "resolve_mx")
    assert error.data["failure"] == "raised" and "ZeroDivisionError" in error.data["detail"]
    traceback = error.data["traceback"]
    assert "in resolve_mx" in traceback and "1 / 0" in traceback
    assert "labkit/boundary.py" not in traceback  # labkit's frames are trimmed
    fixed_then_once(world, "resolve_mx")


def test_a_hanging_resolver_freezes_nothing_and_stops_promptly(tmp_path):
    world = World(lecture_config(), state_dir=tmp_path / "state", deadline=DEADLINE).start()
    try:
        world.use(resolve_mx=lambda domain, resolver: time.sleep(60))
        world.send(ALBERT, [BETTY], HELLO)
        world.wait_for(lambda e: e.kind == "lookup")
        assert greets_quickly(world) < 0.1  # another host answers at once
        assert world.resolver().resolve("brilliant.com", "MX")  # so does DNS
        assert seam_error(world, "resolve_mx").data["failure"] == "deadline"
        assert "abandoned" in deferred(world).data["detail"]
        fixed_then_once(world, "resolve_mx")
    finally:
        started = time.monotonic()
        world.stop()
        assert time.monotonic() - started < 2


def test_calling_labkits_own_resolver_earns_nothing(world):
    def resolve_mx(domain, resolver):
        try:
            return labkit_resolve_mx(domain, resolver)
        except Exception:  # hiding the fence does not help
            return [NextHop("smtp.brilliant.com", 10, ("1.2.3.5",))]

    world.use(resolve_mx=resolve_mx)
    world.send(ALBERT, [BETTY], HELLO)
    error = seam_error(world, "resolve_mx")
    assert error.data["failure"] == "fenced" and "labkit.dns.mx.resolve_mx" in error.data["detail"]
    fixed_then_once(world, "resolve_mx")


def test_a_students_resolver_routes_the_mail_and_the_trace_says_so(world):
    def resolve_mx(domain, resolver):
        try:
            answer = resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise PermanentMXError(domain, f"{domain} does not exist") from None
        hops = []
        for mx in sorted(answer, key=lambda r: r.preference):
            host = mx.exchange.to_text(omit_final_dot=True)
            hops.append(NextHop(host, mx.preference, tuple(a.address for a in resolver.resolve(host, "A"))))
        return hops

    world.use(resolve_mx=resolve_mx)
    world.send(ALBERT, [CAROL, "nobody@typo.brilliant.com"], HELLO)
    world.wait_for_delivery(CAROL)  # through the backup MX
    call = world.wait_for(lambda e: e.kind == "seam-call" and "careful.com" in e.data["input"])
    assert call.seam == "resolve_mx" and "mx2.careful.com" in call.data["output"]
    assert world.wait_for(lambda e: e.kind == "failed").seam == "resolve_mx"  # its PermanentMXError bounced
    world.wait_for_delivery(ALBERT)


# -- send_mail ----------------------------------------------------------------------------
def test_a_client_returning_nothing_defers(world):
    world.use(send_mail=lambda sock, **kw: None)
    world.send(ALBERT, [BETTY], HELLO)
    assert "got None" in seam_error(world, "send_mail").data["detail"]
    deferred(world)
    fixed_then_once(world, "send_mail")


def test_a_client_that_lies_about_delivery_is_not_believed(world):
    def send_mail(sock, *, rcpt_to, **kw):
        ok = Reply(250, ("OK",))
        return SendResult({r: ok for r in rcpt_to}, {}, ok)

    world.use(send_mail=send_mail)
    world.send(ALBERT, [BETTY], HELLO)
    event = deferred(world)
    assert "never accepted it" in event.data["detail"] and event.seam == "send_mail"
    assert world.messages(BETTY) == []
    fixed_then_once(world, "send_mail")


def raw_send(sock, helo, mail_from, rcpt_to, message) -> None:
    """A student's client that works, then forgets its result (reads every reply)."""
    reader = sock.makefile("rb")
    reader.readline()
    for line in [f"HELO {helo}", f"MAIL FROM:<{mail_from}>", *(f"RCPT TO:<{r}>" for r in rcpt_to), "DATA"]:
        sock.sendall(line.encode() + b"\r\n")
        reader.readline()
    sock.sendall(message.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    reader.readline()


def test_a_client_that_delivers_then_crashes_is_not_repeated(world):
    def send_mail(sock, *, helo, mail_from, rcpt_to, message, **kw):
        raw_send(sock, helo, mail_from, rcpt_to, message)
        raise RuntimeError("oops, after the 250")

    world.use(send_mail=send_mail)
    world.send(ALBERT, [BETTY], HELLO)
    assert world.wait_for_delivery(BETTY)
    relayed = world.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com")
    assert "accepted it: 250 queued as" in relayed.data["detail"] and "RuntimeError" in relayed.data["detail"]
    world.retry_now()
    time.sleep(0.3)
    assert len(world.messages(BETTY)) == 1


def test_a_hanging_client_loses_nothing(world):
    world.use(send_mail=lambda sock, **kw: time.sleep(60))
    world.send(ALBERT, [BETTY], HELLO)
    assert seam_error(world, "send_mail").data["failure"] == "deadline"
    assert greets_quickly(world) < 0.1
    deferred(world)
    fixed_then_once(world, "send_mail")


def test_world_send_is_albert_with_labkits_own_client(world):
    world.use(send_mail=lambda sock, **kw: None)  # a broken relay client...
    result = world.send(ALBERT, [ALBERT], HELLO)  # ... does not break Albert's own client
    assert result.data_reply.code == 250
    world.wait_for_delivery(ALBERT)


# -- received_header ----------------------------------------------------------------------
@pytest.mark.parametrize("stamp, says", [
    (b"Received: from x", "must return a str"),
    ("Received: from x\r\nX-Injected: yes\r\n\r\nevil body", "header injection"),
    ("X-Not-Received: 1", "must start with 'Received:'"),
])
def test_a_bad_received_header_gets_451_and_stores_nothing(world, stamp, says):
    world.use(received_header=lambda hop: stamp)
    with pytest.raises(SMTPTransientError) as refused:
        world.send(ALBERT, [ALBERT], HELLO)
    assert refused.value.reply.code == 451 and "received_header failed" in refused.value.reply.text
    assert says in seam_error(world, "received_header").data["detail"]
    assert world.messages(ALBERT) == []


def test_a_slow_received_header_does_not_freeze_the_world(world):
    world.use(host="smtp.awesome.com", received_header=lambda hop: time.sleep(60))
    started = time.time()
    with socket.create_connection(("127.0.0.1", world.host("awesome.com").services["submission"].port)) as sock:
        client = smtplib.SMTP()
        client.sock, client.file = sock, sock.makefile("rb")
        client.getreply()
        client.ehlo("pc.awesome.com")
        client.mail(ALBERT)
        client.rcpt(ALBERT)
        client.putcmd("data")
        client.getreply()
        client.send(HELLO + b".\r\n")
        assert greets_quickly(world) < 0.1  # while the stamp hangs, another host answers
        assert world.resolver().resolve("brilliant.com", "MX")
        code, text = client.getreply()
    assert code == 451 and time.time() - started < 3


def test_a_received_header_with_a_final_crlf_is_fine(world):
    world.use(received_header=lambda hop: f"Received: by {hop.by} id {hop.queue_id}\r\n")
    world.send(ALBERT, [ALBERT], HELLO)
    world.wait_for_delivery(ALBERT)
    stored = world.messages(ALBERT)[0]
    assert b"Received: by smtp.awesome.com id " in stored and b"\r\n\r\nhello" in stored


# -- sessions -----------------------------------------------------------------------------
class FirstPOP3(Session):
    """What a student writes first: start, receive, closed; nothing else."""

    def __init__(self, peer, accounts, *, hostname):
        self.accounts = accounts

    def start(self):
        return b"+OK hello\r\n"

    def receive(self, data):
        if data.upper().startswith(b"QUIT"):
            self.closed = True
            return b"+OK bye\r\n"
        return b"-ERR not yet\r\n"


def pop3(world, host: str = "brilliant.com") -> poplib.POP3:
    return poplib.POP3("127.0.0.1", world.host(host).services["pop3"].port, timeout=5)


def test_a_minimal_session_class_just_works(world):
    world.use(pop3_session=FirstPOP3)
    client = pop3(world)
    assert client.getwelcome() == b"+OK hello"
    with pytest.raises(poplib.error_proto, match="not yet"):
        client.user("betty")
    assert client.quit() == b"+OK bye"


def test_a_session_that_ends_well_is_no_seam_error(world):
    ended = threading.Event()

    class Ending(FirstPOP3):
        def connection_lost(self):  # returns None, as Session.connection_lost does
            super().connection_lost()
            ended.set()

    world.use(pop3_session=Ending)
    pop3(world).quit()
    assert ended.wait(5)
    assert [e for e in world.tracer.events() if e.kind == "seam-error"] == []


def test_a_session_without_the_base_class_and_optional_methods_works(world):
    class Bare:
        def __init__(self, peer, accounts, *, hostname):
            self.closed = False

        def start(self):
            return b"+OK bare\r\n"

        def receive(self, data):
            self.closed = True
            return b"+OK bye\r\n"

    world.use(pop3_session=Bare)
    client = pop3(world)
    assert client.getwelcome() == b"+OK bare" and client.quit() == b"+OK bye"


def test_the_end_of_a_students_session_is_no_error(world):
    class Quits(Greets):  # connection_lost() returns None, as Session says
        def receive(self, data):
            self.closed = True
            return b"221 2.0.0 bye\r\n"

    world.use(host="smtp.brilliant.com", smtp_session=Quits)
    with socket.create_connection(("127.0.0.1", world.host("brilliant.com").services["smtp"].port), timeout=5) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"221")
        client = sock.getsockname()
    world.context.receipts.wait(client, timeout=5)  # until the server has finished with the connection
    assert [e.line for e in world.tracer.events() if e.kind == "seam-error"] == []


@pytest.mark.parametrize("receive, says", [
    (lambda self, data: "+OK a str", "must return bytes, got str"),
    (lambda self, data: None, "got None"),
    (lambda self, data: 1 / 0, "ZeroDivisionError"),
])
def test_a_broken_pop3_session_gets_err_and_others_go_on(world, receive, says):
    world.use(host="smtp.brilliant.com", pop3_session=with_receive(FirstPOP3, receive))
    client = pop3(world)
    with pytest.raises(poplib.error_proto, match=r"SYS/TEMP.*" + says.split(",")[0].replace("(", r"\(")):
        client.user("betty")
    assert says in seam_error(world, "pop3_session").data["detail"]
    labkits = pop3(world, "careful.com")  # another host still runs labkit's own POP3
    assert labkits.user("carol").startswith(b"+OK") and labkits.pass_("carol-password").startswith(b"+OK")
    labkits.quit()


def test_a_session_may_send_its_reply_in_chunks(world):
    """receive() may return an iterator of bytes chunks (a reply sent as it is made);
    each chunk is held to the contract when the adapter takes it."""
    class Streams(FirstPOP3):
        def receive(self, data):
            return iter([b"+OK one, ", b"two\r\n"] if data.startswith(b"USER") else ["a str"])

    world.use(host="smtp.brilliant.com", pop3_session=Streams)
    client = pop3(world)
    assert client.user("betty") == b"+OK one, two"
    with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
        client.pass_("betty-password")
    assert "returned an iterator that gave a str" in seam_error(world, "pop3_session").data["detail"]


def test_a_sleeping_session_freezes_nobody(world):
    world.use(host="smtp.brilliant.com", pop3_session=type("Sleepy", (FirstPOP3,), {
        "receive": lambda self, data: time.sleep(60)}))
    client = pop3(world)
    client.sock.sendall(b"USER betty\r\n")
    assert greets_quickly(world) < 0.1
    assert client.file.readline().startswith(b"-ERR [SYS/TEMP]")
    assert seam_error(world, "pop3_session").data["failure"] == "deadline"


def test_a_broken_imap_session_says_bye(world):
    class Broken(Session):
        def __init__(self, peer, accounts, *, hostname):
            pass

        def start(self):
            return b"* OK ready\r\n"

        def receive(self, data):
            raise KeyError("tag")

    world.use(imap_session=Broken)
    port = world.host("brilliant.com").services["imap"].port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline() == b"* OK ready\r\n"
        sock.sendall(b"a LOGIN betty x\r\n")
        assert reader.readline().startswith(b"* BYE [SERVERBUG]")
        assert reader.readline() == b""  # and the connection is closed


def test_a_broken_smtp_session_gets_451_and_the_mail_waits(world):
    class Broken(Greets):
        def receive(self, data):
            raise RuntimeError("my state machine")

    world.use(host="smtp.brilliant.com", smtp_session=Broken)
    world.send(ALBERT, [BETTY], HELLO)
    assert "451 4.3.0" in deferred(world).data["detail"]
    assert seam_error(world, "smtp_session").data["failure"] == "raised"
    fixed_then_once(world, "smtp_session")


# -- plugging in ----------------------------------------------------------------------------
def test_use_checks_the_implementation_in_the_students_cell(world):
    with pytest.raises(TypeError, match=r"resolve_mx must be callable as resolve_mx\(domain, resolver\)"):
        world.use(resolve_mx=lambda domain: [])
    with pytest.raises(TypeError, match="no seam named 'resolve'"):
        world.use(resolve=print)
    with pytest.raises(TypeError, match=r"not a session: it has no receive\(\)"):
        world.use(pop3_session=type("NoReceive", (), {"__init__": lambda s, p, a, *, hostname: None,
                                                       "start": lambda s: b""}))
    with pytest.raises(TypeError, match="must be callable as pop3_session"):
        world.use(pop3_session=type("NoArgs", (Session,), {"__init__": lambda self: None}))
    with pytest.raises(KeyError, match="no mail host named"):
        world.use(host="smtp.nowhere.com", route=lambda request: Relay())


def test_a_part_on_one_host_only(world):
    world.use(host="smtp.brilliant.com", route=lambda request: Refuse("550 5.7.1 closed for the day"))
    assert world.seams.students() == {"route": ["smtp.brilliant.com"]}
    world.send(ALBERT, [BETTY, CAROL], HELLO)
    world.wait_for_delivery(CAROL)  # mx2.careful.com still runs labkit's own route
    failed = world.wait_for(lambda e: e.kind == "failed")
    assert "closed for the day" in failed.data["detail"]
    world.wait_for_delivery(ALBERT)  # the bounce
    world.use(route=None)
    assert world.seams.students() == {}


def test_a_route_answering_nonsense_gets_451(world):
    world.use(route=lambda request: "local")
    result = world.send(ALBERT, [ALBERT], HELLO)
    assert result.refused[ALBERT].code == 451 and not result.accepted
    assert "Local(mailbox), Relay() or Refuse(reply)" in seam_error(world, "route").data["detail"]


def test_a_route_to_a_mailbox_that_does_not_exist_is_refused(world):
    world.use(route=lambda request: Local("nobody@awesome.com"))
    assert world.send(ALBERT, [ALBERT], HELLO).refused[ALBERT].code == 451
    assert "not a mailbox of this host" in seam_error(world, "route").data["detail"]


# -- deliver, next_retry, make_bounce --------------------------------------------------------
def qmail_deliver(maildir_path: Path, message: bytes) -> str:
    import os

    name = f"{time.time_ns()}.student"
    tmp, new = maildir_path / "tmp" / name, maildir_path / "new" / name
    with open(tmp, "wb") as f:
        f.write(message)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, new)
    fd = os.open(maildir_path / "new", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return name


def test_a_students_deliver_fills_the_maildir(world):
    world.use(deliver=qmail_deliver)
    world.send(ALBERT, [BETTY], HELLO)
    event = world.wait_for_delivery(BETTY)
    assert event.seam == "deliver" and event.data["detail"].endswith(".student")
    with world.reader(BETTY) as inbox:  # IMAP sees it like any other
        assert "hello" in inbox.show(1)


def test_a_deliver_that_claims_a_file_it_never_wrote_defers(world):
    world.use(deliver=lambda maildir, message: "1234.made-up")
    world.send(ALBERT, [BETTY], HELLO)
    assert "does not exist" in seam_error(world, "deliver").data["detail"]
    deferred(world)
    fixed_then_once(world, "deliver")


def test_a_broken_retry_policy_keeps_the_mail(world):
    world.set_behaviour("smtp.chaos.com", "greylist")  # the first try is always deferred
    world.use(next_retry=lambda attempts, queued_for, **kw: "soon")
    world.send(ALBERT, ["chuck@chaos.com"], HELLO)
    assert "seconds (a number) or None" in seam_error(world, "next_retry").data["detail"]
    world.wait_for_delivery("chuck@chaos.com")  # retried on the schedule's first delay anyway


def test_a_retry_policy_that_gives_up_bounces(world):
    world.set_behaviour("smtp.chaos.com", "greylist")
    world.use(next_retry=lambda attempts, queued_for, **kw: None)
    world.send(ALBERT, ["chuck@chaos.com"], HELLO)
    world.wait_for_delivery(ALBERT)  # the bounce, at the first deferral
    assert world.messages("chuck@chaos.com") == []


def test_a_bounce_that_cannot_be_made_is_owed_not_lost(world):
    world.use(make_bounce=lambda **kw: "Subject: sorry")
    world.send(ALBERT, ["nobody@typo.brilliant.com"], HELLO)
    assert "as bytes" in seam_error(world, "make_bounce").data["detail"]
    fixed_then_once(world, "make_bounce", recipient=ALBERT)
    assert b"multipart/report" in world.messages(ALBERT)[0]


# -- the world as a whole ---------------------------------------------------------------------
def test_async_world_offers_the_same_methods():
    def public(world) -> set[str]:
        return {n for n in dir(world) if not n.startswith("_")}

    both = World(lecture_config())
    try:
        missing = public(both) - public(both.aworld)
    finally:
        both._loop.close()
    assert missing == {"run", "call", "aworld"}


HANGING_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import lecture_config
from labkit.world import World
world = World(lecture_config(), deadline=0.5).start()
world.use(send_mail=lambda sock, **kw: time.sleep(600), resolve_mx=lambda d, r: time.sleep(600))
world.send("albert@awesome.com", ["betty@brilliant.com"], b"Subject: x\\r\\n\\r\\nhi\\r\\n")
world.wait_for(lambda e: e.kind == "seam-error")
world.stop()
print("stopped")
"""


def test_a_process_with_hung_student_threads_exits_promptly(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANGING_SCRIPT.format(tests=str(Path(__file__).parent)))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=30)
    assert done.returncode == 0 and done.stdout == b"stopped\n"
    assert done.stderr == b""
    assert time.monotonic() - started < 10


@pytest.mark.foreign_stderr  # the cells' stderr is checked below, the kernel's is not ours
def test_broken_seams_in_a_notebook_write_nothing_to_stderr(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r})",
        "from conftest import lecture_config\nfrom labkit.world import World\n"
        "world = World(lecture_config(), deadline=0.5).start()",
        "world.use(resolve_mx=lambda d, r: None, received_header=lambda hop: 1/0)",
        "try:\n    world.send('albert@awesome.com', ['betty@brilliant.com'], b'Subject: x\\r\\n\\r\\nhi\\r\\n')\n"
        "except Exception as error:\n    print('refused:', error)",
        "world.use(received_header=None)\n"
        "world.send('albert@awesome.com', ['betty@brilliant.com'], b'Subject: x\\r\\n\\r\\nhi\\r\\n')\n"
        "print(world.wait_for(lambda e: e.kind == 'seam-error' and e.data['seam'] == 'resolve_mx').line)",
        "time.sleep(0.5)  # the world's threads keep failing while this cell runs",
        "world.use(resolve_mx=None); world.retry_now(); world.wait_for_delivery('betty@brilliant.com')\n"
        "world.stop(); print('done')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells])
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    streams = [(o.get("name"), o.get("text", "")) for cell in notebook.cells for o in cell.outputs]
    assert [text for name, text in streams if name == "stderr"] == []
    assert any("refused: DATA" in text for _, text in streams)
    assert streams[-1] == ("stdout", "done\n")


def test_the_dns_queries_a_students_resolver_makes_are_drawn_as_its_own(world):
    from labkit.notebook import sequence

    def resolve_mx(domain, resolver):
        return [NextHop(r.exchange.to_text(omit_final_dot=True), r.preference,
                        tuple(a.address for a in resolver.resolve(r.exchange, "A")))
                for r in resolver.resolve(domain, "MX")]

    world.send(ALBERT, [BETTY], HELLO)
    world.wait_for_delivery(BETTY)
    theirs = [line for line in sequence(world.tracer.events()).text.splitlines()
              if "-> ns.lab" in line or "ns.lab ->" in line]
    assert theirs and not any("(your code)" in line for line in theirs)  # labkit's own resolver asked
    since = time.time()
    world.use(resolve_mx=resolve_mx)
    world.send(ALBERT, [BETTY], HELLO)
    world.wait_for_delivery(BETTY, since=since)
    mine = [line for line in sequence([e for e in world.tracer.events() if e.time >= since]).text.splitlines()
            if "-> ns.lab" in line or "ns.lab ->" in line]
    assert mine and all("(your code)" in line for line in mine)
