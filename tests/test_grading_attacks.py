"""``labkit grade`` against a cheating or malicious student (issue 14's attack classes).

Every submission here is made the way students make theirs: nbgrader generates the
release, the student types into it (an answer, a note, a cell of their own), and hands
it in; the course is graded by ``labkit grade`` as a TA types it. One grading run holds
the whole corpus (run A: lab 1, with an LMS download and bad notebooks), a second one
runs beside it (run B: a second course, lab 1 and lab 3), a third holds the one attack
that stops a whole run (run C). Each attack is asserted blocked from the grader's own
data (``grades.csv`` and each submission's ``.labkit-result.json``: scores, statuses,
why), and what the attacking kernel saw from what it printed (the autograded notebook),
while honest copies graded beside them keep full marks, unflagged.

The attacks print what they found as one line, ``MARK {json}``; no attack relies on a
timing: each tries its routes until one works or all are refused.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from submissions import (DISK, FORKS, LAB1, NOTEBOOKS, ROOT, Course, after_solution, answered, jupyterlab_save,
                         notebook_name, released, source, text, with_cell)

pytest.importorskip("nbgrader")
LAB3 = "3-receiving-mail"
LIMITS = ["--time-limit", "150", "--cell-time-limit", "15"]
TOKEN = uuid.uuid4().hex[:12]  # names this session's own leftovers (a daemon's argv, files it tries to write)
pytestmark = pytest.mark.timeout(900)


def _sandbox_missing() -> str:
    from labkit.grade.pod import missing_isolation

    return missing_isolation()


if _sandbox_missing():
    pytest.skip(f"{_sandbox_missing()} (.ci/run runs the suite as root with bubblewrap)", allow_module_level=True)


# -- the attacks ------------------------------------------------------------------------------------------
# (1) labkit's own send_mail, by any route; send_mail delegates to it if one works.
REFERENCE_ROUTES = r'''
import glob, importlib, importlib.util, inspect, json, os, re, sys, threading

def send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
    """labkit's own answer, if any route reaches it."""
    own = reference()
    if own is None:
        raise NotImplementedError("labkit's send_mail was not reachable")
    return own(sock, helo=helo, mail_from=mail_from, rcpt_to=rcpt_to, message=message, auth=auth, timeout=timeout)

def by_computed_name():
    return importlib.import_module("labkit.smtp." + "".join(["se", "nd"])).send_mail

def by_dunder_import():
    return __import__("labkit.smtp.send", fromlist=["send_mail"]).send_mail

def by_the_registry():
    from labkit.seams import SEAMS
    return SEAMS["send_mail"].load_reference()

def by_unwrapping():
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            try:
                inner = inspect.unwrap(value) if callable(value) else None
            except Exception:
                continue
            if getattr(inner, "__module__", "") == "labkit.smtp.send" and getattr(inner, "__name__", "") == "send_mail":
                return inner
    raise LookupError("no loaded function unwraps to labkit's send_mail")

def from_another_thread():
    box = {}
    def look():
        try:
            box["found"] = by_computed_name()
        except BaseException as error:
            box["error"] = error
    thread = threading.Thread(target=look)
    thread.start()
    thread.join(10)
    if "found" in box:
        return box["found"]
    raise box.get("error") or LookupError("the thread found nothing")

def source_trees():
    """Folders that might hold labkit's source: sys.path, the install's own records
    (an editable install's finder, direct_url.json), /proc."""
    trees = set(sys.path) | {"/opt/labkit", "/proc/1/root/opt/labkit", "/proc/1/cwd", "/proc/1/root/work"}
    for site in glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages")):
        for path in glob.glob(os.path.join(site, "*labkit*")) + glob.glob(os.path.join(site, "*labkit*", "*")):
            try:
                record = open(path).read() if os.path.isfile(path) else ""
            except (OSError, UnicodeDecodeError):
                continue
            trees.update(os.path.dirname(p) for p in re.findall(r"(/[\w./-]+/labkit)\b", record))
            trees.update(u[len("file://"):] for u in re.findall(r"file://[\w./-]+", record))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                trees.update(p for p in open(f"/proc/{pid}/cmdline").read().split("\0") if p.startswith("/"))
            except OSError:
                pass
    return sorted(t for t in trees if t.startswith("/"))

seen_sources = []

def from_source_on_disk():
    for tree in source_trees():
        send = os.path.join(tree, "labkit", "smtp", "send.py")
        try:
            code = open(send).read()
        except OSError:
            continue
        if "def send_mail" not in code or "Client" + "Transaction(" not in code:
            continue
        seen_sources.append(send)
        init = os.path.join(tree, "labkit", "__init__.py")
        spec = importlib.util.spec_from_file_location("their_labkit", init,
                                                      submodule_search_locations=[os.path.dirname(init)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["their_labkit"] = package
        spec.loader.exec_module(package)
        return importlib.import_module("their_labkit.smtp.send").send_mail
    raise LookupError("no labkit/smtp/send.py with labkit's send_mail on any visible path")

ROUTES = {"computed name": by_computed_name, "__import__": by_dunder_import, "the seam registry": by_the_registry,
          "inspect.unwrap": by_unwrapping, "another thread": from_another_thread, "source on disk": from_source_on_disk}
tried = {}

def reference():
    for name, route in ROUTES.items():
        try:
            found = route()
        except BaseException as error:
            tried[name] = f"{type(error).__name__}: {error}"[:300]
            continue
        tried[name] = "FOUND"
        return found
    return None

reference()
print("REF " + json.dumps({"tried": tried, "sources": seen_sources}))
'''

# (1, 5) The kernel's whole visible file system, searched for labkit's answer and the
# hidden tests (needles built at run time: the notebook's own history holds its code).
# Every file is read but the system's binaries: under /usr and the Python runtime, the
# files that can hold Python, text or archives. find and grep do the reading, in the
# background while the notebook goes on; cells at the end wait for them.
FS_WALK = r"""
import json, os, subprocess, sys, threading
NEEDLES = ["class Client" + "Transaction", "connection to the server " + "failed: ",
           "changes the code of a multi-" + "line", "greeting-" + "multiline"]
CONTROL = "class Remote" + "World"  # labkit.graded's, which the kernel does hold
TEXT = (".py", ".pyc", ".pyi", ".pth", ".txt", ".json", ".ipynb", ".md", ".rst", ".html", ".cfg", ".toml", ".ini",
        ".yaml", ".yml", ".zone", ".csv", ".log", ".db", ".sqlite", ".zip", ".whl", ".egg", ".tar", ".gz")
RUNTIME = tuple(sorted({"/usr/", sys.base_prefix + "/", sys.prefix + "/"}))
walked = {"files": 0, "read": 0, "hits": [], "control": [], "labkit_named": [], "done": False}
finished = threading.Event()

def walk():
    try:
        prune = ["(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", ")", "-prune", "-o"]
        listing = subprocess.run(["find", "/", *prune, "-type", "f", "-print0"], capture_output=True).stdout
        listing += subprocess.run(["find", "/dev/shm", "-type", "f", "-print0"], capture_output=True).stdout
        files = [p for p in listing.decode(errors="replace").split("\0") if p]
        walked["files"] = len(files)
        walked["labkit_named"] = [p for p in files if "labkit" in p and not p.startswith("/opt/labkit/")]
        read = [p for p in files if not p.startswith(RUNTIME) or p.endswith(TEXT) or "labkit" in p]
        walked["read"] = len(read)
        needles = [a for n in NEEDLES + [CONTROL] for a in ("-e", n)]
        matched = subprocess.run(["xargs", "-0", "grep", "-lsaF", *needles, "--"], input="\0".join(read).encode(),
                                 capture_output=True).stdout.decode(errors="replace").splitlines()
        for path in matched:
            with open(path, "rb") as f:
                data = f.read()
            walked["hits"] += [[path, n] for n in NEEDLES if n.encode() in data]
            if CONTROL.encode() in data:
                walked["control"].append(path)
        walked["done"] = True
    finally:
        finished.set()

threading.Thread(target=walk, daemon=True).start()
"""
FS_WALK_WAIT = "finished.wait(12)"
FS_WALK_SAY = 'print("FSWALK " + json.dumps(walked))'

# (2) Other kernels: their files, processes, sockets, ports; a classmate's answer to copy;
# a file left where a classmate might be framed with it; the grader's machine's own
# loopback port and abstract Unix socket (the test's). Run while the world is up.
OTHER_KERNELS = r'''
import json, os, re, socket, sys
own = os.path.dirname(sys.argv[sys.argv.index("-f") + 1])
seen = {"argv": sys.argv, "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
seen["processes"] = {}
for pid in seen["pids"]:
    try:
        seen["processes"][pid] = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    except OSError as error:
        seen["processes"][pid] = error.strerror
files = []
for top in ("/tmp", "/dev/shm", "/home", "/var", "/run", "/opt", "/work", "/root", "/mnt", "/srv", "/media"):
    for folder, dirs, names in os.walk(top):
        if "site-packages" in folder or "/lib/python3" in folder:
            dirs[:] = []
        files += [os.path.join(folder, n) for n in names]
def connection_file(path):
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and "key" in found and "transport" in found

seen["kernel_files"] = [f for f in files if f.endswith(".json") and not f.startswith(own + "/") and connection_file(f)]
seen["pods"] = sorted({m.group(1) for f in files for m in [re.search(r"/p([0-9a-f]{12})/", f)] if m})
seen["notebooks"] = [f for f in files if f.endswith(".ipynb")]
unix = [line.split()[7] for line in open("/proc/net/unix").read().splitlines()[1:] if len(line.split()) > 7]
seen["foreign_unix"] = [p for p in unix if not p.startswith(own + "/")]
reached = {}
for path in seen["foreign_unix"]:
    probe = socket.socket(socket.AF_UNIX)
    probe.settimeout(2)
    try:
        probe.connect("\0" + path[1:] if path.startswith("@") else path)
        reached[path] = "CONNECTED"
    except OSError as error:
        reached[path] = str(error)
    finally:
        probe.close()
seen["unix_reached"] = reached
listening = {}
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":
            uid = int(fields[7])
            listening[int(fields[1].rsplit(":", 1)[1], 16)] = {"uid": uid, "mine": uid == os.getuid()}
for port, about in listening.items():
    probe = socket.socket()
    probe.settimeout(1)
    try:
        probe.connect(("127.0.0.1", port))
        about["says"] = probe.recv(200).decode(errors="replace")
    except OSError as error:
        about["says"] = str(error)
    finally:
        probe.close()
seen["listening"] = listening
seen["world_ports"] = sorted({e.port for h in world.hosts.values() for e in h.services.values()}
                             | {world.info()["dns"]["port"]})
signals = {}
for pid in seen["pids"]:
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
            signals[pid] = "MAY SIGNAL"
        except OSError as error:
            signals[pid] = error.strerror
seen["signals"] = signals
host = {}
for name, family, address in (("tcp", socket.AF_INET, ("127.0.0.1", HOST_PORT)),
                              ("abstract", socket.AF_UNIX, "\0" + HOST_ABSTRACT)):
    probe = socket.socket(family)
    probe.settimeout(2)
    try:
        probe.connect(address)
        host[name] = "CONNECTED"
    except OSError as error:
        host[name] = error.strerror or str(error)
    finally:
        probe.close()
seen["host"] = host
writes = {}
for place in ("/", "/opt/labkit", "/opt/labkit/labkit", sys.prefix, "/etc", "/usr", "/work"):
    target = os.path.join(place, "framed-TOKEN")
    try:
        with open(target, "w") as f:
            f.write("framed")
        writes[place] = "WROTE"
    except OSError as error:
        writes[place] = error.strerror
seen["writes"] = writes
copied = None
for path in files:
    try:
        if path.startswith("/opt/labkit") or os.stat(path).st_uid == os.getuid():
            continue  # labkit's student modules, or this kernel's own files (its IPython history holds this cell)
    except OSError:
        continue
    try:
        with open(path, errors="replace") as f:
            found = f.read(1 << 20)
    except OSError:
        continue
    if "def send_mail(" in found:
        copied = path
seen["copied_from"] = copied
print("KAI " + json.dumps(seen))
'''

# (3) The verdict forged on a socket this kernel holds that its own namespace does not
# know (one handed down from outside the sandbox).
FOREIGN_SOCKETS = r'''
import json, os, socket, struct, threading, time

def foreign_sockets():
    """This kernel's Unix stream sockets that its own network namespace does not list
    (made outside the sandbox) and that have no name (one end of a socket pair)."""
    here = {line.split()[6] for line in open("/proc/net/unix").read().splitlines()[1:]}
    found = []
    for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not link.startswith("socket:[") or link[len("socket:["):-1] in here:
            continue
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM and not sock.getsockname():
                    found.append(fd)
        except OSError:
            continue
    return found

FOREIGN = foreign_sockets()
print("FOREIGN " + json.dumps(FOREIGN))

def frame(message):
    data = json.dumps(message).encode()
    return struct.pack(">I", len(data)) + data

PASSED = {"passed": True, "reports": [], "unjudged": ""}
'''
FORGE = FOREIGN_SOCKETS + r'''
def send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
    """Not written. While the judge waits for it, whatever it is judging is answered "passed"."""
    answers = b"".join(frame({"re": ident, "ok": PASSED}) for ident in range(1, 100))
    for fd in FOREIGN:
        os.write(fd, answers)
    raise NotImplementedError()
'''
# ... and the judge's requests read off it (the hidden tests), each answered "passed";
# after two, the rest are left to the judge, whose checks then show what was read.
SPY = FOREIGN_SOCKETS + r'''
import select
stolen = []

def steal(fd):
    buffer = b""
    while len(stolen) < 2:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        data = os.read(fd, 1 << 20)
        if not data:
            return
        buffer += data
        while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">I", buffer[:4])[0]:
            size = struct.unpack(">I", buffer[:4])[0]
            message, buffer = buffer[4:4 + size], buffer[4 + size:]
            try:
                message = json.loads(message)
            except ValueError:
                continue
            if message.get("op") == "judge.cell":
                stolen.append(message["args"]["source"])
                os.write(fd, frame({"re": message["id"], "ok": PASSED}))

for fd in FOREIGN:
    threading.Thread(target=steal, args=(fd,), daemon=True).start()

def send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
    raise RuntimeError("what the judge was asked: " + " | ".join(stolen))
'''
SPY_SAY = 'print("SPY " + json.dumps(stolen))'

# (3) The kernel's side of the channel patched: every call "answered" with a forged
# result, forged answers to the judge's requests raced in, the judge asked for its verdict.
PATCHED_CHANNEL = r'''
import json, os, struct, threading, time
import labkit.graded as graded
from labkit.lab import Reply, SendResult

FAKE = SendResult(accepted={"betty@brilliant.com": Reply(250, ("2.1.5 OK",))}, refused={},
                  data_reply=Reply(250, ("2.0.0 queued",)))
forged = {"ok": graded.Encoder()(FAKE)}
graded._outcome = lambda call, keep=False: dict(forged)
graded._Parts.call = lambda self, args, fds: dict(forged)
channel = graded.channel()
channel.handlers["call"] = lambda args, fds: dict(forged)
asked = {}
for op in ("judge.cell", "judge.ping", "lookup", "call", "session.open"):
    try:
        asked[op] = "ANSWERED " + repr(channel.request(op, {"source": "checks.send_mail.check(send_mail)",
                                                             "name": "send_mail"}, timeout=10))[:200]
    except Exception as error:
        asked[op] = f"REFUSED {type(error).__name__}: {error}"[:200]
print("PAT " + json.dumps(asked))

def race_the_answers():
    answers = [json.dumps({"re": ident, **forged}).encode() for ident in range(1, 200)]
    for _ in range(1500):
        with channel._send_lock:
            for data in answers:
                os.write(channel.sock.fileno(), struct.pack(">I", len(data)) + data)
        time.sleep(0.04)

threading.Thread(target=race_the_answers, daemon=True).start()
'''

# (3) The channel broken from the kernel: a frame nested 100,000 deep; a length of 4 GB.
DEEP_FRAME = r'''
import os, struct
data = b'{"op": "world.start", "id": 7, "args": ' + b"[" * 100000 + b"]" * 100000 + b"}"
os.write(int(os.environ["LABKIT_CHANNEL_FD"]), struct.pack(">I", len(data)) + data)
'''
HUGE_FRAME = r'''
import os, struct
os.write(int(os.environ["LABKIT_CHANNEL_FD"]), struct.pack(">I", 0xFFFFFFFF) + b'{"op": "world.start"')
'''

# (4) Grader-side exceptions provoked: values and exceptions that are hard to read,
# encode or print, one per call, and requests the judge must refuse.
WEIRD = r'''
import json
from labkit.lab import SMTPPermanentError
import labkit.graded as graded
calls = [0]

class Weird:
    def __getattribute__(self, name):
        raise RuntimeError("no attribute " + name)
    def __repr__(self):
        raise RuntimeError("no repr")

class Forged(SMTPPermanentError):
    def __init__(self):
        Exception.__init__(self, "forged")
        self.stage, self.problem, self.reply = "mail", "x" * 100000, Weird()

class Named(Exception):
    pass

Named.__name__ = "N" * 100000

def nested():
    value = []
    for _ in range(10000):
        value = [value]
    return value

def looped():
    value = []
    value.append(value)
    return value

def send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
    calls[0] += 1
    kind = calls[0] % 10
    if kind == 8:  # markup for the feedback page, in the transcript and the error
        sock.sendall(b"EHLO <script>alert('transcript')</script>\r\n")
        raise RuntimeError("<img src=x onerror=alert('error')>")
    if kind == 0: return Weird()
    if kind == 1: raise Forged()
    if kind == 2: raise Named("long")
    if kind == 3: return nested()
    if kind == 4: return looped()
    if kind == 5: return 10 ** 100000
    if kind == 6: return float("nan")
    if kind == 7: return send_mail(sock, helo=helo, mail_from=mail_from, rcpt_to=rcpt_to, message=message)
    raise SystemExit(0)

asked = {}
channel = graded.channel()
deep = []
for _ in range(500):
    deep = [deep]
program = {"$": "map", "v": [["sendmail", {"$": "program", "v": "/bin/sh"}]]}
for name, (op, args) in {
        "deep message": ("world.send", {"world": 1, "message": deep, "rcpt_to": [], "mail_from": ""}),
        "bad tag": ("world.use", {"world": 1, "parts": {"$": "eval", "v": "__import__('os')"}}),
        "a program seam": ("world.use", {"world": 1, "parts": program}),
        "no such world": ("world.messages", {"world": 10 ** 9, "address": "betty@brilliant.com"}),
        "wrong types": ("world.dns_fault", {"world": 1, "name": ["x"], "fault": "explode"})}.items():
    try:
        asked[name] = "ANSWERED " + repr(channel.request(op, args, timeout=20))[:200]
    except Exception as error:
        asked[name] = f"REFUSED {type(error).__name__}: {error}"[:200]
print("WEIRD " + json.dumps(asked))
'''

# (4) Text no UTF-8 encoder takes (lone surrogates), printed and raised.
SURROGATES = r'''
import sys
print("a lone surrogate: \ud800 end")
sys.stdout.write("another: \udfff\n")

def send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
    raise RuntimeError("bad \ud800 text \udcff")
'''

# (5) Host files, the course, the repository: each path tried, what came back printed.
HOST_FILES = r'''
import json, os
tried = {}
for path in PATHS:
    try:
        if os.path.isdir(path):
            tried[path] = sorted(os.listdir(path))
        else:
            with open(path, "rb") as f:
                tried[path] = f.read(600).decode("utf-8", "replace")
    except OSError as error:
        tried[path] = "ERR " + (error.strerror or str(error))
print("HOST " + json.dumps(tried))
'''

# (9) Limits: each hits one, lets go and carries on.
THREADS = r'''
import threading
threading.stack_size(64 << 10)  # small stacks: the process limit, not the memory limit, is what stops it
threads, stop = [], threading.Event()
while len(threads) < 100000:
    try:
        thread = threading.Thread(target=stop.wait, daemon=True)
        thread.start()
    except RuntimeError:
        break
    threads.append(thread)
stop.set()
for thread in threads:
    thread.join(5)
print("THREADS started", len(threads))
'''
MEMORY = r'''
hog = []
try:
    while len(hog) < 1000:
        block = bytearray(64 << 20)
        block[::4096] = b"x" * len(block[::4096])  # every page touched
        hog.append(block)
except MemoryError:
    pass
print("MEMORY held", 64 * len(hog), "MB")
hog.clear()
'''
LOG_FILES = r'''
import os
for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    if target.startswith("/") and not target.startswith(("/home", "/tmp/labkit-world", "/dev")):
        written = 0
        try:
            while written < (200 << 20):
                written += os.write(fd, b"x" * (1 << 20))
            print("LOG", target, written >> 20, "MB, no limit")
        except OSError as error:
            print("LOG", target, written >> 20, "MB, then:", error.strerror)
'''
DAEMON = r'''
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(900)", "daemon-TOKEN"],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("DAEMON started")
'''

# (10) The MTA a lab 3 session is given, asked what MTAPolicy does not offer, over the channel.
MTA_PROBES = r'''
import json
probes = {}

def probe(mta):
    channel, ident, empty = mta._channel, mta._ident, {"$": "map", "v": []}
    asks = {
        "a method outside MTAPolicy (deliver)": {"method": "deliver", "args": []},
        "a dunder (__init__)": {"method": "__init__", "args": []},
        "an attribute (hostname)": {"method": "hostname", "args": []},
        "the queue": {"method": "queue", "args": []},
        "the store": {"method": "store", "args": []},
        "hello with a number": {"method": "hello", "args": [42]},
        "mail with three arguments": {"method": "mail", "args": ["albert@awesome.com", [], "more"]},
        "mail with params that are not strings": {"method": "mail", "args": ["albert@awesome.com", [1]]},
        "rcpt with an unknown keyword": {"method": "rcpt", "args": ["betty@brilliant.com"],
                                         "kwargs": {"$": "map", "v": [["via", "x"]]}},
        "data as text": {"method": "data", "args": ["not bytes"]},
        "greeting with an argument": {"method": "greeting", "args": [1]},
        "extended that is not a bool": {"method": "extensions", "args": [],
                                        "kwargs": {"$": "map", "v": [["extended", "yes"]]}},
        "another MTA": {"mta": ident + 1000, "method": "greeting", "args": []},
        "a transaction nobody opened": {"method": "rcpt", "args": ["betty@brilliant.com"], "txn": {"id": 10 ** 6}},
        "a peer that is not an address": {"method": "transaction",
                                          "args": [{"$": "map", "v": [["socket_address", ["x", "no port"]]]}]},
    }
    for name, ask in asks.items():
        try:
            probes[name] = "ANSWERED " + repr(channel.request("mta", {"mta": ident, "kwargs": empty, **ask},
                                                              timeout=20))[:200]
        except Exception as error:
            probes[name] = f"REFUSED {getattr(error, 'kind', type(error).__name__)}: {error}"[:300]
    for name in ("deliver", "queue", "store", "spool", "relay", "config"):
        probes[f"mta.{name}"] = "ANSWERED" if hasattr(mta, name) else "REFUSED: not on the stand-in"

Model = SMTPSession

class SMTPSession(Model):
    def __init__(self, peer, mta, *, hostname):
        if not probes:
            probe(mta)
        super().__init__(peer, mta, hostname=hostname)
'''
MTA_SAY = 'print("MTA " + json.dumps(probes))'
ENV_SAY = """import json, os, sys
print("ENV " + json.dumps({"NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION"), "argv": sys.argv}))"""


def replaced(code: str):
    return lambda _text: code


# -- the courses -------------------------------------------------------------------------------------
def hidden_lines(lab: str) -> list[str]:
    """The hidden tests' lines of ``lab`` (only the course has them)."""
    lines = []
    for cell in source(lab)["cells"]:
        hidden = re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", text(cell), re.S)
        lines += [line.strip() for block in hidden for line in block.splitlines() if line.strip()]
    return lines


def host_secrets(course: Course) -> dict[str, str]:
    """What no file the run writes may hold: host files only root reads, the course's
    own files, labkit's answer (read here, as the grader's user)."""
    secrets = {"canary": (course.path / "canary.txt").read_text(), "gradebook": "SQLite format 3",
               "labkit's answer": "class ClientTransaction"}
    try:
        secrets.update({f"shadow {i}": line for i, line in enumerate(Path("/etc/shadow").read_text().splitlines())
                        if len(line) > 20 and ":" in line})
    except OSError:
        pass
    git = ROOT / ".git"
    if git.is_file():  # a worktree: .git names the repository's git folder
        secrets["git link"] = git.read_text().strip()
        git = Path(git.read_text().split("gitdir:", 1)[1].strip()).parent.parent
    if (git / "config").is_file():
        secrets["git config"] = (git / "config").read_text().strip()
    return secrets


def host_paths(course: Course) -> list[str]:
    git = ROOT / ".git"
    common = Path(git.read_text().split("gitdir:", 1)[1].strip()).parent.parent if git.is_file() else git
    return ["/etc/shadow", "/etc/gshadow", "/root", "/root/.bash_history", str(Path.home()), str(git), str(common),
            str(common / "config"), str(common / "HEAD"), str(course.path / "gradebook.db"),
            str(course.path / "canary.txt"), str(course.path / "nbgrader_config.py"), str(course.path / "release"),
            str(NOTEBOOKS / LAB1 / notebook_name(LAB1)), str(course.root / "notebooks" / LAB1 / notebook_name(LAB1)),
            str(ROOT / "labkit" / "smtp" / "send.py"), "/proc/1/environ", "/proc/1/root/etc/shadow", "/proc/1/cwd",
            "/proc/1/root", "/tmp", "/home"]


def outputs_of(course: Course, student: str, lab: str = LAB1) -> str:
    """Everything the student's kernel printed (the autograded notebook's streams and errors)."""
    path = course.path / "autograded" / student / lab / notebook_name(lab)
    if not path.exists():
        return ""
    out = ""
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":  # one print may come in several chunks
                out += "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
            elif output.get("output_type") == "error":
                out += f"\n{output['ename']}: {output['evalue']}\n"
    return out


def said(course: Course, student: str, mark: str, lab: str = LAB1):
    """The JSON an attack printed after ``MARK``."""
    lines = [line for line in outputs_of(course, student, lab).splitlines() if line.startswith(mark + " ")]
    assert lines, f"{student} printed no {mark} line: {outputs_of(course, student, lab)[-3000:]}"
    return json.loads(lines[-1][len(mark) + 1:])


def verdict(course: Course, student: str, lab: str = LAB1) -> dict:
    """The grader's own record of the submission (scores per cell, status, flags)."""
    return json.loads((course.path / "autograded" / student / lab / ".labkit-result.json").read_text())


def rows(course: Course) -> dict[tuple[str, str], dict]:
    """grades.csv by (assignment, student id as it was before the CSV neutralised it)."""
    from labkit.grade.collect import plain

    return {(lab, plain(student)): got for (lab, student), got in course.rows().items()}


def row(course: Course, student: str, lab: str = LAB1) -> dict:
    return rows(course)[(lab, student)]


def written_files(course: Course, *, leave_out: tuple[str, ...] = ()) -> list[Path]:
    """Every file the run wrote for the TA and the students (but those of ``leave_out``)."""
    found = [course.path / "labkit-grades.csv"]
    for folder in ("autograded", "feedback"):
        found += [p for p in (course.path / folder).rglob("*")
                  if p.is_file() and p.relative_to(course.path / folder).parts[0] not in leave_out]
    return found


def a_zip(path: Path, entries: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 12, 0, 0)), data)
    return path


def bad_notebooks(course: Course) -> dict[str, bytes]:
    saved = jupyterlab_save(answered(course, LAB1))
    return {
        "truncated": saved[: len(saved) // 2].encode(),
        "not-nbformat": json.dumps({"cells": [{"cell_type": "code", "source": 1}], "metadata": {}, "nbformat": 4,
                                    "nbformat_minor": 5}).encode(),
        "not-utf8": b'{"cells": [], "metadata": {"author": "Jos\xe9"}, "nbformat": 4, "nbformat_minor": 5}',
        "too-large": json.dumps(with_cell(answered(course, LAB1), "# my notes\n" + "x" * (21 << 20))).encode(),
        "too-deep": b"[" * 100_000 + b"]" * 100_000,
    }


BAD_REASONS = {"truncated": "it is not JSON", "not-nbformat": "it is not a Jupyter notebook",
               "not-utf8": "it is not UTF-8", "too-large": "over the limit of 20 MB",
               "too-deep": "nested over 64 deep"}
FORMULA_IDS = {'=HYPERLINK("x")': None, "@SUM(1)": "truncated", "+SUM(1)": "not-nbformat", "-2+3": "not-utf8"}
NUMBER_LIKE_FORMULA_ID = "-inf"


def fs_walk(course: Course) -> dict:
    notebook = with_cell(released(course, LAB1), FS_WALK, after="start")
    for _ in range(8):  # up to 96 s more for the walk, after the notebook's own cells
        notebook = with_cell(notebook, FS_WALK_WAIT)
    return with_cell(notebook, FS_WALK_SAY)


def divider(course: Course) -> str:
    """An honest answer, saved after a cell of the student's printed a divider of 70 '['."""
    notebook = with_cell(answered(course, LAB1), "print('my divider: ' + '[' * 70)")
    saved = json.loads(jupyterlab_save(notebook))
    mine = next(c for c in saved["cells"] if "my divider" in "".join(c["source"]))
    mine["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["my divider: " + "[" * 70 + "\n"]}]
    return json.dumps(saved, indent=1)


def snoop(host: "HostListeners") -> str:
    """The other-kernels attack, told where the test listens on the host."""
    return (f"HOST_PORT, HOST_ABSTRACT = {host.port!r}, {host.abstract!r}\n"
            + OTHER_KERNELS.replace("TOKEN", TOKEN))


class HostListeners:
    """A TCP port on the host's loopback and an abstract Unix socket in the host's
    network namespace, that no sandboxed kernel may reach; what reached them."""

    def __init__(self) -> None:
        import socket

        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.abstract = f"labkit-attacks-{TOKEN}"
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind("\0" + self.abstract)
        self.unix.listen()

    def reached(self) -> list[str]:
        found = []
        for name, sock in (("tcp", self.tcp), ("abstract", self.unix)):
            sock.setblocking(False)
            try:
                sock.accept()[0].close()
                found.append(name)
            except BlockingIOError:
                pass
        return found

    def close(self) -> None:
        self.tcp.close()
        self.unix.close()


def run_a(course: Course, host: HostListeners) -> tuple[dict, Path, Path]:
    """Lab 1: honest copies, the attacks, bad notebooks, formula ids; an LMS download."""
    lab, secret_paths = LAB1, host_paths(course)
    corpus = {
        "ada": answered(course, lab),
        "amy": jupyterlab_save(answered(course, lab)),
        "ivo": with_cell(answered(course, lab), ENV_SAY),
        "rex": released(course, lab, {"send-mail": replaced(REFERENCE_ROUTES)}),
        "fsw": fs_walk(course),
        "kai": with_cell(released(course, lab), snoop(host), after="start"),
        "hfx": with_cell(answered(course, lab), f"PATHS = {secret_paths!r}\n" + HOST_FILES),
        "fox": released(course, lab, {"send-mail": replaced(FORGE)}),
        "spy": with_cell(released(course, lab, {"send-mail": replaced(SPY)}), SPY_SAY),
        "pat": released(course, lab, {"send-mail": after_solution(PATCHED_CHANNEL)}),
        "gar": answered(course, lab, {"send-mail": after_solution(DEEP_FRAME)}),
        "hug": answered(course, lab, {"send-mail": after_solution(HUGE_FRAME)}),
        "exc": released(course, lab, {"send-mail": replaced(WEIRD)}),
        "gus": with_cell(answered(course, lab), DAEMON.replace("TOKEN", TOKEN) + "\n" + FORKS),
        "tim": with_cell(answered(course, lab), THREADS),
        "mem": with_cell(answered(course, lab), MEMORY),
        "hal": with_cell(answered(course, lab), DISK + "\n" + LOG_FILES),
        "nia": divider(course),
        '=HYPERLINK("x")': answered(course, lab),
    }
    bad = bad_notebooks(course)
    corpus.update(bad)
    corpus.update({student: bad[kind] for student, kind in FORMULA_IDS.items() if kind})
    corpus[NUMBER_LIKE_FORMULA_ID] = bad["too-deep"]
    for student, notebook in corpus.items():
        course.hand_in(student, lab, notebook)
    moodle = "_assignsubmission_file_"
    honest, untouched = jupyterlab_save(answered(course, lab)), json.dumps(released(course, lab))
    download = a_zip(course.root / "moodle.zip", {
        f"Ann Lee_1001{moodle}/bob_1002_9_{notebook_name(lab)}": untouched,  # a file named after Bob, in Ann's folder
        f"Bob Roe_1002{moodle}/{notebook_name(lab)}": honest,
        f"Dan One_1005{moodle}/{notebook_name(lab)}": honest,  # the roster gives both ids to dan
        f"Dan Two_1006{moodle}/{notebook_name(lab)}": honest,
        f"Cal Moe_1003{moodle}/{notebook_name(lab)}": honest,  # two people named Cal Moe, not in the roster
        f"Cal Moe_1004{moodle}/{notebook_name(lab)}": honest,
        f"Cyd Poe_1012{moodle}/{notebook_name(lab)}": honest,
        f"Cyd Poe_1013{moodle}/{notebook_name(lab)}": untouched,  # not in the roster, under Cyd's name
        f"Eve\x1b]0;pwned\x07 Doe_1009{moodle}/{notebook_name(lab)}": honest,
        f"Mal\nLory_1010{moodle}/{notebook_name(lab)}": honest,
        f"../escape-{TOKEN}/{notebook_name(lab)}": untouched,
        f"/abs-{TOKEN}/{notebook_name(lab)}": untouched,
    })
    roster = course.root / "roster.csv"
    roster.write_text("student,lms_id,lms_name\nann,1001,Ann Lee\nbob,1002,Bob Roe\ndan,1005,Dan One\n"
                      "dan,1006,Dan Two\ncyd,1012,Cyd Poe\n")
    return corpus, download, roster


def run_b(course: Course, host: HostListeners) -> None:
    """A second course graded at the same time: lab 1 (another snoop and its classmate)
    and lab 3 (the MTA stand-in probed, an honest copy)."""
    course.hand_in("kai2", LAB1, with_cell(released(course, LAB1), snoop(host), after="start"))
    course.hand_in("vic2", LAB1, answered(course, LAB1))
    course.hand_in("mta", LAB3, with_cell(answered(course, LAB3, {"smtp-session": after_solution(MTA_PROBES)}),
                                          MTA_SAY))
    course.hand_in("hon3", LAB3, answered(course, LAB3))


def run_c(course: Course) -> None:
    """A third: the text no encoder takes, and a classmate."""
    course.hand_in("sur", LAB1, released(course, LAB1, {"send-mail": after_solution(SURROGATES)}))
    course.hand_in("vic3", LAB1, answered(course, LAB1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three runs, graded at the same time: the courses, each run's process, stdout
    and stderr, and what reached the host's own listeners."""
    courses = {name: Course(tmp_path_factory.mktemp(f"course-{name}")) for name in "ABC"}
    for course in courses.values():
        (course.path / "canary.txt").write_text(f"canary-{uuid.uuid4().hex}")
    host = HostListeners()
    _, download, roster = run_a(courses["A"], host)
    run_b(courses["B"], host)
    run_c(courses["C"])
    started = {
        "A": courses["A"].start_grading(LAB1, "--submissions", str(download), "--roster", str(roster), *LIMITS),
        "B": courses["B"].start_grading(LAB1, LAB3, "--workers", "1", *LIMITS),
        "C": courses["C"].start_grading(LAB1, "--workers", "1", *LIMITS),
    }
    done = {}
    try:
        for name, process in started.items():
            out, err = process.communicate(timeout=800)
            done[name] = (process, out, err)
        reached = host.reached()
    finally:
        host.close()
    return courses, done, reached


# -- honest work --------------------------------------------------------------------------------------
HONEST_A = ("ada", "amy", "ivo", "bob", '=HYPERLINK("x")')


def test_honest_copies_graded_beside_the_attacks_keep_full_marks(runs):
    courses, done, _ = runs
    for name in "AB":
        assert done[name][0].returncode == 0, done[name][2][-3000:]
    for course, lab, student in [*((courses["A"], LAB1, s) for s in HONEST_A), (courses["B"], LAB1, "vic2"),
                                 (courses["B"], LAB3, "hon3")]:
        got = row(course, student, lab)
        assert (got["status"], got["score"], got["reason"]) == ("graded", got["max_score"], ""), (student, got)
        assert not verdict(course, student, lab)["flags"], student


def test_the_graded_kernel_runs_as_nbgrader_runs_it(runs):
    courses, _, _ = runs
    assert said(courses["A"], "ivo", "ENV")["NBGRADER_EXECUTION"] == "autograde"


# -- (1) the reference ---------------------------------------------------------------------------------
def test_labkits_own_answer_is_reachable_by_no_route(runs):
    """Computed import names, __import__, the seam registry, inspect.unwrap over every
    loaded module, another thread, labkit's source on any path the install or /proc
    names: every route fails, and the stub behind them earns nothing."""
    course = runs[0]["A"]
    found = said(course, "rex", "REF")
    assert found["sources"] == []
    assert len(found["tried"]) == 6 and not [r for r, what in found["tried"].items() if what == "FOUND"], found
    assert "not in your notebook while it is graded" in found["tried"]["computed name"], found  # the shim says why
    graded = verdict(course, "rex")
    assert graded["score"] == 0 and all(c["passed"] is False for c in graded["cells"].values()), graded["cells"]


def test_no_file_the_kernel_can_see_holds_labkits_answer_or_the_hidden_tests(runs):
    """The kernel's whole file system, walked: labkit's send_mail and ClientTransaction
    and the hidden tests are in no file it can read; what it does hold of labkit is found
    (the walk works)."""
    walked = said(runs[0]["A"], "fsw", "FSWALK")
    assert walked["done"], walked
    assert walked["hits"] == [], walked["hits"]
    assert walked["files"] > 10_000 and walked["read"] > 1_000, walked
    assert "/opt/labkit/labkit/graded.py" in walked["control"]


def pod_of(path: str) -> str:
    """The pod's token in a path of its (``.../p<token>/s/kernel.json``)."""
    found = re.search(r"/p([0-9a-f]{12})/", path)
    assert found, path
    return found.group(1)


# -- (2) other kernels ---------------------------------------------------------------------------------
def test_no_other_kernel_is_visible_or_reachable_in_a_run_or_across_runs(runs):
    """From inside one kernel (kai in run A, kai2 in run B, graded at the same time):
    its own processes only, no other kernel's files or sockets, only its own world
    listening, not the grader's machine's loopback port or abstract socket (the test's
    own), nothing it can write outside its own tmpfs, no classmate's answer to copy;
    the classmates keep their marks."""
    courses, _, _ = runs
    for course, student in ((courses["A"], "kai"), (courses["B"], "kai2")):
        seen = said(course, student, "KAI")
        own_pod = pod_of(seen["argv"][-1])
        assert all(f"/p{own_pod}/" in cmdline for cmdline in seen["processes"].values()), seen["processes"]
        assert seen["kernel_files"] == [] and seen["notebooks"] == [] and seen["pods"] == [own_pod], seen
        assert "CONNECTED" not in seen["unix_reached"].values(), seen["unix_reached"]
        theirs = {int(port) for port, about in seen["listening"].items() if not about["mine"]}  # not its own ZMQ
        assert theirs <= set(seen["world_ports"]), (seen["listening"], seen["world_ports"])
        assert "MAY SIGNAL" not in seen["signals"].values(), seen["signals"]
        assert "WROTE" not in seen["writes"].values(), seen["writes"]
        assert seen["copied_from"] is None
        assert "CONNECTED" not in seen["host"].values(), seen["host"]
        assert verdict(course, student)["score"] == 0
    assert runs[2] == []  # nothing reached the test's own port and abstract socket
    assert row(courses["A"], "ada")["score"] == "14" and row(courses["B"], "vic2")["score"] == "14"


# -- (3) the verdict and the channel -------------------------------------------------------------------------
def test_verdicts_forged_on_any_socket_the_kernel_holds_earn_nothing(runs):
    """A stub whose send_mail, while the judge waits for it, answers "passed" on every
    socket the kernel holds from outside its sandbox: nothing earned, no such socket."""
    course = runs[0]["A"]
    graded = verdict(course, "fox")
    assert graded["score"] == 0 and not any(c["passed"] for c in graded["cells"].values()), graded
    assert said(course, "fox", "FOREIGN") == []


def test_the_judges_requests_never_reach_the_kernel(runs):
    """A stub that reads the worker's requests to the judge off a socket from outside
    its sandbox (racing the judge), answers two "passed" and puts what it read in the
    feedback of the cells the judge does get."""
    course = runs[0]["A"]
    stolen = said(course, "spy", "SPY")
    assert stolen == [] and said(course, "spy", "FOREIGN") == []
    feedback = (course.path / "feedback" / "spy" / LAB1 / "smtp-by-hand.html").read_text()
    assert not [line for line in hidden_lines(LAB1) if line in feedback or line in outputs_of(course, "spy")]


def test_the_kernels_side_of_the_channel_patched_earns_nothing(runs):
    """labkit.graded's handlers replaced (every call "answered" with a perfect
    SendResult), forged answers raced in on the channel, the judge's operations asked
    for from the kernel: refused, and the stub earns nothing."""
    course = runs[0]["A"]
    asked = said(course, "pat", "PAT")
    assert all(what.startswith("REFUSED") for what in asked.values()), asked
    graded = verdict(course, "pat")
    assert graded["score"] == 0 and not any(c["passed"] for c in graded["cells"].values()), graded["cells"]


def test_a_broken_channel_earns_nothing(runs):
    """A model answer that then breaks its channel (a frame nested 100,000 deep, a 4 GB
    length): no cell is judged by anything but the judge, so nothing is earned."""
    course = runs[0]["A"]
    for student in ("gar", "hug"):
        graded = verdict(course, student)
        assert graded["score"] == 0 and not any(c["passed"] for c in graded["cells"].values()), (student, graded)


def test_a_broken_channel_says_it_could_not_be_judged(runs):
    course = runs[0]["A"]
    for student in ("gar", "hug"):
        got = row(course, student)
        assert got["status"] == "unjudged" or "could not be judged" in got["reason"], (student, got)
        assert "timed out" not in got["status"], (student, got)


# -- (4) grader-side exceptions ----------------------------------------------------------------------------
def test_values_and_exceptions_the_grader_cannot_read_earn_nothing(runs):
    """Objects whose every attribute raises, names 100,000 long, recursion, 100,000-digit
    ints, NaN, SystemExit, nested lists, markup; requests with unknown tags or a program
    seam: refused, the run goes on, nothing is earned, and the feedback page shows the
    markup as text."""
    course = runs[0]["A"]
    asked = said(course, "exc", "WEIRD")
    asked.pop("a program seam")  # plugged in, as a program path in the kernel: a part like another
    assert all(what.startswith("REFUSED") for what in asked.values()), asked
    graded = verdict(course, "exc")
    assert graded["score"] == 0 and not any(c["passed"] for c in graded["cells"].values()), graded["cells"]
    page = (course.path / "feedback" / "exc" / LAB1 / "smtp-by-hand.html").read_text()
    assert "onerror=alert" in page.replace("&#x27;", "'") or "alert(&#x27;" in page  # it was shown ...
    assert "<script" not in page and "<img" not in page  # ... as text


def test_text_no_encoder_takes_does_not_stop_the_run(runs):
    courses, done, _ = runs
    process, _, err = done["C"]
    assert process.returncode == 0, err[-2000:]
    assert row(courses["C"], "vic3")["score"] == "14" and row(courses["C"], "sur")["score"] == "0"


# -- (5) host files -----------------------------------------------------------------------------------------
def test_host_files_the_course_and_the_repository_are_out_of_reach(runs):
    """/etc/shadow, /root, the grader's home, the repository's .git, the course's
    gradebook, a canary beside it and the authored notebooks: unreadable or not there;
    none of it, nor labkit's answer, is in any file the runs wrote."""
    courses, _, _ = runs
    course = courses["A"]
    tried = said(course, "hfx", "HOST")
    runtime = {Path(p).relative_to("/root").parts[0] for p in (sys.base_prefix, sys.prefix) if p.startswith("/root/")}
    for path, what in tried.items():
        if path == "/root":
            assert set(what) <= runtime, what  # only the folders the Python runtime is mounted under
        elif path == "/tmp":
            own = str(course.root / "tmp")  # the run's TMPDIR, where its pod's connection-file folder is
            venv = {Path(p).relative_to("/tmp").parts[0] for p in (sys.base_prefix, sys.prefix)
                    if p.startswith("/tmp/")}  # a clone under /tmp: the way to its venv (the runtime)
            assert all(own.startswith(f"/tmp/{name}/") or name in venv for name in what), what
        elif path == "/home":
            assert what == ["student"], what
        elif path == str(Path.home()) and Path.home() == Path("/root"):
            assert set(what) <= runtime, what
        else:
            assert isinstance(what, str) and what.startswith("ERR "), (path, what)
    secrets = host_secrets(course)
    for name, run in (("A", courses["A"]), ("B", courses["B"])):
        for path in written_files(run, leave_out=("spy",)):
            data = path.read_text(errors="replace")
            leaked = [what for what, secret in secrets.items() if secret in data]
            assert not leaked, (name, path, leaked)
    for path in (course.path / "feedback").rglob("*.html"):
        if "spy" not in path.parts:
            page = path.read_text()
            assert not [line for line in hidden_lines(LAB1) if line in page], path


# -- (6) bad notebooks ----------------------------------------------------------------------------------------
def test_each_bad_notebook_is_its_own_invalid_row(runs):
    course = runs[0]["A"]
    for student, why in BAD_REASONS.items():
        got = row(course, student)
        assert (got["status"], got["score"]) == ("invalid", "0"), (student, got)
        assert got["reason"].startswith("invalid submission: ") and why in got["reason"], (student, got)
    assert row(course, "ada")["status"] == "graded"


def test_a_note_full_of_brackets_is_not_a_bad_notebook(runs):
    got = row(runs[0]["A"], "nia")
    assert (got["status"], got["score"]) == ("graded", "14"), got


# -- (7) LMS identity and paths -----------------------------------------------------------------------------
def test_the_lms_folder_says_who_handed_it_in_never_the_file_name(runs):
    course = runs[0]["A"]
    assert (row(course, "ann")["status"], row(course, "ann")["score"]) == ("graded", "0")  # the file named after Bob
    assert (row(course, "bob")["status"], row(course, "bob")["score"]) == ("graded", "14")


def test_two_uploads_claiming_one_student_are_both_reported(runs):
    """Two LMS ids the roster gives one student: both reported, neither graded. Two
    people of one name the roster does not have: each reported, as not in the roster."""
    course = runs[0]["A"]
    got = row(course, "dan")
    assert got["status"] == "invalid" and all(f in got["reason"] for f in ("Dan One_1005", "Dan Two_1006")), got
    for folder in ("Cal Moe_1003", "Cal Moe_1004"):
        (reported,) = [r for r in course.rows().values() if folder in r["reason"]]
        assert reported["status"] == "invalid" and "not in the roster" in reported["reason"], reported


def test_an_unknown_lms_id_cannot_claim_a_rostered_student_by_name(runs):
    got = row(runs[0]["A"], "cyd")
    assert (got["status"], got["score"]) == ("graded", "14"), got


def test_control_characters_in_lms_names_are_refused(runs):
    course = runs[0]["A"]
    refused = [r for r in course.rows().values() if "Doe_1009" in r["reason"] or "Lory_1010" in r["reason"]]
    assert len(refused) == 2 and all(r["status"] == "invalid" and r["score"] == "0" for r in refused), refused
    assert all("\\x1b" in r["reason"] or "\\n" in r["reason"] for r in refused), refused  # shown escaped
    assert not [student for _, student in course.rows() if "\x1b" in student or "\n" in student]


def test_no_control_character_of_a_name_reaches_grades_csv_or_the_terminal(runs):
    courses, done, _ = runs
    grades = (courses["A"].path / "labkit-grades.csv").read_text()
    assert not [c for c in grades if ord(c) < 32 and c not in "\r\n"], "a control character in labkit-grades.csv"
    assert "\x1b" not in done["A"][1] and "\x07" not in done["A"][1], "a control character in the summary"


def test_dot_dot_and_absolute_paths_in_a_zip_write_nothing_outside_submitted(runs):
    course = runs[0]["A"]
    for name in (f"escape-{TOKEN}", f"abs-{TOKEN}"):
        assert not (course.root / name).exists() and not (course.path / name).exists()
        assert not Path("/", name).exists() and not (course.path / "submitted" / ".." / ".." / name).exists()


def test_dot_dot_and_absolute_paths_in_a_zip_are_refused(runs):
    course = runs[0]["A"]
    for name in (f"escape-{TOKEN}", f"abs-{TOKEN}"):
        got = course.rows().get((LAB1, name))
        assert got is None or got["status"] == "invalid", got


# -- (8) formula ids ------------------------------------------------------------------------------------------
def test_formula_ids_are_neutralised_in_grades_csv(runs):
    """Each id a spreadsheet would run (=, +, -, @) is in grades.csv with a ' in front
    (OWASP); the row read back is the same student's (the honest one has full marks)."""
    course = runs[0]["A"]
    ids = {student for _, student in course.rows()}
    for student in FORMULA_IDS:
        assert student not in ids and "'" + student in ids, (student, sorted(ids))
    assert row(course, '=HYPERLINK("x")')["score"] == "14"


def test_an_id_python_reads_as_a_number_is_neutralised_too(runs):
    ids = {student for _, student in runs[0]["A"].rows()}
    assert NUMBER_LIKE_FORMULA_ID not in ids and "'" + NUMBER_LIKE_FORMULA_ID in ids, sorted(ids)


# -- (9) limits --------------------------------------------------------------------------------------------------
def test_disk_and_process_limits_hold_and_the_run_goes_on(runs):
    """A fork bomb, a thread bomb, a memory hog, every writable place filled (its home,
    /tmp, /dev/shm, the connection file's folder, the log it writes to): each stopped by
    the sandbox, the run finishes, the others keep their marks."""
    course = runs[0]["A"]
    for student in ("gus", "tim"):
        got = row(course, student)
        assert got["status"] == "crashed" and "limit of 256 processes and threads" in got["reason"], got
    assert (row(course, "mem")["status"], row(course, "mem")["score"]) == ("graded", "14"), row(course, "mem")
    held = re.search(r"MEMORY held (\d+) MB", outputs_of(course, "mem"))
    assert held and int(held.group(1)) <= 3 << 10, outputs_of(course, "mem")[-2000:]
    disk = outputs_of(course, "hal")
    filled = re.findall(r"^(\S+) said: (.+)$", disk, re.M)
    assert len(filled) == 4 and {why for _, why in filled} <= {"No space left on device", "File too large"}, filled
    logged = re.findall(r"^LOG (\S+) (\d+) MB, (.+)$", disk, re.M)
    assert logged and all(int(mb) <= 64 and "no limit" not in how for _, mb, how in logged), logged
    assert row(course, "hal")["score"] == "14", row(course, "hal")


# -- (10) the MTA stand-in -------------------------------------------------------------------------------------
def test_the_mta_stand_in_answers_mtapolicy_only(runs):
    course = runs[0]["B"]
    probes = said(course, "mta", "MTA", LAB3)
    assert len(probes) == 21 and all(what.startswith("REFUSED") for what in probes.values()), probes
    got = row(course, "mta", LAB3)
    assert got["score"] == got["max_score"], got  # the session itself is the model answer: it earned them


# -- nothing left behind -------------------------------------------------------------------------------------------
def _processes_with(needle: bytes, file: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/{file}", "rb") as f:
                    if needle in f.read():
                        found.append(int(pid))
            except OSError:
                continue
    return found


def test_nothing_is_left_behind(runs):
    """After the three runs: none of their scratch folders, control groups, pod
    processes (by the pods' markers and paths) or the daemon a kernel started."""
    courses, done, _ = runs
    pids = [str(process.pid) for process, _, _ in done.values()]
    assert not [p for pid in pids for p in Path("/tmp").glob(f"labkit-grade-{pid}-*")]
    for tree in ("/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"):
        if os.path.isdir(tree):
            assert not [n for n in os.listdir(tree) for pid in pids if n.startswith(f"labkit-grade-{pid}-")], tree
    tokens = [pod_of(said(courses["A"], s, m)["argv"][-1])
              for s, m in (("ivo", "ENV"), ("kai", "KAI"))]
    tokens.append(pod_of(said(courses["B"], "kai2", "KAI")["argv"][-1]))
    for token in tokens:
        assert not _processes_with(f"LABKIT_GRADE_POD={token}".encode(), "environ"), token
    for pid in pids:
        assert not _processes_with(f"/labkit-grade-{pid}-".encode(), "cmdline"), pid
    assert not _processes_with(f"daemon-{TOKEN}".encode(), "cmdline")
    assert "DAEMON started" in outputs_of(courses["A"], "gus")
