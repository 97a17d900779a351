"""Routing by MX, retries, bounces and seams, end to end through the lab world."""

from __future__ import annotations

import email
import os


from conftest import lecture_config
from labkit import commit
from labkit.dns.mx import TemporaryMXError
from labkit.mta.spool import QueueEntry, Spool
from labkit.world import World

HELLO = b"From: albert@awesome.com\r\nSubject: hello\r\n\r\nhello\r\n"


def delivered_to(world, recipient: str, timeout: float = 10.0):
    return world.wait_for_delivery(recipient, timeout=timeout)


def bounce_for(world, sender: str = "albert@awesome.com", timeout: float = 10.0) -> email.message.Message:
    world.wait_for_delivery(sender, timeout=timeout)
    dsn = email.message_from_bytes(world.messages(sender)[-1])
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Auto-Submitted"] == "auto-replied"
    return dsn


def status_part(dsn: email.message.Message) -> str:
    for part in dsn.walk():
        if part.get_content_type() == "message/delivery-status":
            return "\n".join(str(p) for p in part.get_payload())
    raise AssertionError("no message/delivery-status part")


def test_backup_mx_takes_over_when_the_primary_is_dead(world):
    world.send("albert@awesome.com", ["carol@careful.com"], HELLO)
    event = delivered_to(world, "carol@careful.com")
    assert event.server == "mx2.careful.com"
    relayed = world.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com")
    assert relayed.data["remote"] == "mx2.careful.com"


def test_equal_preference_mail_exchangers_both_work(world):
    world.send("albert@awesome.com", ["tom@twins.com"], HELLO)
    delivered_to(world, "tom@twins.com")


def test_implicit_mx_from_the_a_record(world):
    world.send("albert@awesome.com", ["pat@plain.com"], HELLO)
    assert delivered_to(world, "pat@plain.com").server == "plain.com"


def test_cname_domain_follows_to_the_target_mx(world):
    world.send("albert@awesome.com", ["betty@staff.brilliant.com"], HELLO)
    assert delivered_to(world, "betty@staff.brilliant.com").server == "smtp.brilliant.com"


def test_null_mx_bounces_at_once(world):
    world.send("albert@awesome.com", ["anyone@nomail.com"], HELLO)
    dsn = bounce_for(world)
    report = status_part(dsn)
    assert "Final-Recipient: rfc822; anyone@nomail.com" in report
    assert "Status: 5.1.10" in report  # RFC 7505 §4.2
    assert "does not accept mail" in dsn.as_string()


def test_nxdomain_bounces(world):
    world.send("albert@awesome.com", ["betty@typo.brilliant.com"], HELLO)
    report = status_part(bounce_for(world))
    assert "Action: failed" in report and "Status: 5.1.2" in report


def test_remote_unknown_user_bounces_with_the_remote_reply(world):
    world.send("albert@awesome.com", ["nobody@brilliant.com", "betty@brilliant.com"], HELLO)
    delivered_to(world, "betty@brilliant.com")  # the good recipient still gets it
    dsn = bounce_for(world)
    report = status_part(dsn)
    assert "Final-Recipient: rfc822; nobody@brilliant.com" in report
    assert "Remote-MTA: dns; smtp.brilliant.com" in report
    assert "Diagnostic-Code: smtp; 550 5.1.1" in report
    assert "betty@brilliant.com" not in report
    assert dsn["To"] == "<albert@awesome.com>"
    assert "Subject: hello" in dsn.as_string()  # the original headers come back


def test_greylisting_is_retried_then_delivered(world):
    world.set_behaviour("smtp.chaos.com", "greylist")
    world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
    deferred = world.wait_for(lambda e: e.kind == "deferred" and e.data["recipient"] == "chuck@chaos.com")
    assert deferred.data["detail"].startswith("451 4.7.1")
    delivered_to(world, "chuck@chaos.com")


def test_refusing_host_causes_a_bounce(world):
    world.set_behaviour("smtp.chaos.com", "refuse")
    world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
    assert "Diagnostic-Code: smtp; 550 5.7.1" in status_part(bounce_for(world))


def test_tarpit_is_slow_but_delivers(world):
    world.set_behaviour("smtp.chaos.com", "tarpit")
    world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
    delivered_to(world, "chuck@chaos.com")


def test_dropped_connection_is_retried(world):
    world.set_behaviour("smtp.chaos.com", "drop")
    world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
    world.wait_for(lambda e: e.kind == "deferred" and e.data["recipient"] == "chuck@chaos.com")
    world.set_behaviour("smtp.chaos.com", "normal")
    delivered_to(world, "chuck@chaos.com")


def test_down_host_is_retried_until_it_is_back(world):
    world.set_behaviour("smtp.chaos.com", "down")
    world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
    deferred = world.wait_for(lambda e: e.kind == "deferred" and e.data["recipient"] == "chuck@chaos.com")
    assert "refused" in deferred.data["detail"]
    world.set_behaviour("smtp.chaos.com", "normal")
    world.retry_now()
    delivered_to(world, "chuck@chaos.com")
    assert len(world.messages("chuck@chaos.com")) == 1


def test_dns_servfail_defers_not_bounces(world):
    world.dns.inject_fault("chaos.com", "servfail")
    world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
    deferred = world.wait_for(lambda e: e.kind == "deferred" and e.data["recipient"] == "chuck@chaos.com")
    assert deferred.data["detail"].startswith("451 4.4.3")
    world.dns.inject_fault("chaos.com", None)
    delivered_to(world, "chuck@chaos.com")


def test_expired_mail_bounces_with_the_last_error(tmp_path):
    with World(lecture_config(max_queue_time=0.5), state_dir=tmp_path / "s") as world:
        world.set_behaviour("smtp.chaos.com", "down")
        world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
        report = status_part(bounce_for(world))
        assert "Final-Recipient: rfc822; chuck@chaos.com" in report
        assert "gave up" in report and "refused" in report


def test_a_bounce_is_never_bounced(world):
    """A bounce (from <>) that cannot be delivered is dropped, not bounced again."""
    with world.connect("1.2.3.4", 587) as sock:
        result = world.seams.send_mail(sock, helo="x", mail_from="", rcpt_to=["nobody@brilliant.com"], message=HELLO)
    assert result.data_reply.code == 250
    world.wait_for(lambda e: e.kind == "discarded")
    queued = [e for e in world.tracer.events() if e.kind == "queued"]
    assert len(queued) == 1  # only the original: no new bounce was queued anywhere
    assert world.messages("albert@awesome.com") == []


def test_queue_survives_a_restart_in_process(tmp_path):
    state = tmp_path / "state"
    with World(lecture_config(), state_dir=state) as world:
        world.set_behaviour("smtp.chaos.com", "down")
        for i in range(3):
            world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO.replace(b"hello", b"hello %d" % i))
        world.wait_for(lambda e: e.kind == "deferred", count=3)
    spool = state / "spool" / "smtp.awesome.com"
    assert len([p for p in spool.iterdir() if not p.name.endswith(".state")]) == 3
    with World(lecture_config(), state_dir=state) as world:
        world.wait_for_delivery("chuck@chaos.com", count=3)
        bodies = sorted(m.split(b"\r\n\r\n", 1)[1] for m in world.messages("chuck@chaos.com"))
        assert bodies == [b"hello %d\r\n" % i for i in range(3)]


def test_a_destination_that_is_down_is_not_tried_for_each_message(tmp_path):
    """As Postfix's queue manager marks a dead destination: once no MX of chaos.com can
    be reached, the rest of its mail is deferred without a DNS query or a connection
    each, until the first retry delay has passed; retry_now() tries again at once."""
    with World(lecture_config(retry_schedule=(60.0,), max_queue_time=600.0), state_dir=tmp_path / "s") as world:
        world.set_behaviour("smtp.chaos.com", "down")
        with world.tracer.record() as seen:
            world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO)
            first = world.wait_for(lambda e: e.kind == "deferred" and e.data["recipient"] == "chuck@chaos.com")
            for i in range(3):
                world.send("albert@awesome.com", ["chuck@chaos.com"], HELLO.replace(b"hello", b"hello %d" % i))
            world.wait_for(lambda e: e.kind == "deferred", count=4)
        lookups = [e for e in seen if e.kind == "lookup" and e.data.get("domain") == "chaos.com"]
        later = [e for e in seen if e.kind == "deferred" and e is not first]
        assert len(lookups) == 1 and "refused" in first.data["detail"]
        assert len(later) == 3 and all("not tried again yet" in e.data["detail"] for e in later)
        world.set_behaviour("smtp.chaos.com", "normal")
        world.retry_now()
        world.wait_for_delivery("chuck@chaos.com", count=4)
        assert len(world.messages("chuck@chaos.com")) == 4


def test_a_local_copy_made_before_a_crash_is_not_made_again(tmp_path):
    """What a kill between a Maildir copy and the removal of its spool file leaves:
    both (made here as the MTA makes them). The restart finds the copy by the name the
    envelope gave it, though a reader moved it to cur/, and makes none again."""
    state = tmp_path / "state"
    with World(lecture_config(), state_dir=state) as world:
        world.send("albert@awesome.com", ["betty@brilliant.com"], HELLO)
        event = world.wait_for_delivery("betty@brilliant.com")
        maildir = world.mailbox("betty@brilliant.com").maildir
        host = world.host("brilliant.com")
        stored = (maildir / "new" / event.data["detail"].rsplit("/", 1)[1])
        entry = QueueEntry("DEADBEEF", "albert@awesome.com", ["betty@brilliant.com"],
                           local={"betty@brilliant.com": "betty@brilliant.com"},
                           names={"betty@brilliant.com": stored.name})
        commit.run_now(lambda: (None, host.spool.stage(entry, stored.read_bytes())))
    stored.rename(maildir / "cur" / f"{stored.name}:2,S")
    with World(lecture_config(), state_dir=state) as world:
        world.wait_for(lambda e: e.kind == "delivered" and e.data.get("queue_id") == "DEADBEEF")
        assert len(world.messages("betty@brilliant.com")) == 1
        assert not (state / "spool" / "smtp.brilliant.com" / "DEADBEEF").exists()


def test_a_spool_file_a_crash_cut_short_is_removed_and_the_whole_ones_delivered(tmp_path):
    """The spool file is written under its final name and flushed once before the 250
    (labkit.commit): a crash while it is written leaves a prefix of it, for a message
    never acknowledged. A restart delivers every whole file and removes the cut ones
    (their clients got no 250 and send again), never a truncated message."""
    state = tmp_path / "state"
    betty = "betty@brilliant.com"
    with World(lecture_config(), state_dir=state) as world:
        host = world.host("brilliant.com")
        spool = host.spool.directory
        entry = QueueEntry("0000000A", "albert@awesome.com", [betty], local={betty: betty})
        commit.run_now(lambda: (None, host.spool.stage(entry, HELLO)))  # as the MTA writes it before its 250
    whole = (spool / "0000000A").read_bytes()
    envelope = whole.index(b"\n") + 1
    cuts = {"0000000B": 0, "0000000C": envelope // 2, "0000000D": envelope, "0000000E": len(whole) - 1}
    for queue_id, length in cuts.items():
        (spool / queue_id).write_bytes(whole[:length])
    with World(lecture_config(), state_dir=state) as world:
        assert not any((spool / queue_id).exists() for queue_id in cuts)  # gone before anything is delivered
        world.wait_for(lambda e: e.kind == "delivered" and e.data.get("queue_id") == "0000000A")
        assert [m.split(b"\r\n\r\n", 1)[1] for m in world.messages(betty)] == [b"hello\r\n"]
        assert not any(e.data.get("queue_id") in cuts for e in world.tracer.events())
    assert list(spool.iterdir()) == []


def test_a_recycled_spool_file_a_crash_left_with_another_messages_bytes_is_removed(tmp_path):
    """A delivered message's spool file is recycled as a later one's (a rename, then written
    over). A crash before that message's flush may leave, under its name, the old bytes
    whole, or its own envelope over old message bytes: neither was acknowledged, and the
    envelope's id and CRC-32 tell them from a whole file. A restart delivers only the whole."""
    state = tmp_path / "state"
    betty = "betty@brilliant.com"
    messages = {"0000000A": b"Subject: a\r\n\r\nhello\r\n", "0000000B": b"Subject: b\r\n\r\nhowdy\r\n",
                "0000000D": b"Subject: d\r\n\r\nhiya!\r\n"}  # all of one length
    with World(lecture_config(), state_dir=state) as world:
        host = world.host("brilliant.com")
        spool = host.spool.directory
        for queue_id, message in messages.items():
            entry = QueueEntry(queue_id, "albert@awesome.com", [betty], local={betty: betty})
            commit.run_now(lambda: (None, host.spool.stage(entry, message)))  # as the MTA writes it before its 250
    old = (spool / "0000000A").read_bytes()
    (spool / "0000000C").write_bytes(old)  # linked to its new name, not yet written over
    new = (spool / "0000000D").read_bytes()
    envelope = new.index(b"\n") + 1
    (spool / "0000000D").write_bytes(new[:envelope] + old[old.index(b"\n") + 1:])  # its envelope, old bytes
    assert len((spool / "0000000D").read_bytes()) == len(new)  # the size alone cannot tell
    with World(lecture_config(), state_dir=state) as world:
        assert not (spool / "0000000C").exists() and not (spool / "0000000D").exists()
        for queue_id in ("0000000A", "0000000B"):
            world.wait_for(lambda e: e.kind == "delivered" and e.data.get("queue_id") == queue_id)
        bodies = sorted(m.split(b"\r\n\r\n", 1)[1] for m in world.messages(betty))
        assert bodies == [b"hello\r\n", b"howdy\r\n"]


def test_only_a_file_this_run_wrote_and_no_progress_was_saved_for_is_recycled(tmp_path):
    """A restart trusts a message with a state file without reading it, and after a power
    loss that state file could outlive the recycling of its message's file (another
    message's bytes under its name): such files are deleted, never recycled, as is a file
    from an earlier run (which may have no id or CRC to tell it by)."""
    def spares() -> list[str]:
        return [n for n in os.listdir(tmp_path) if n.startswith(".spare.")]

    def queue(spool: Spool, queue_id: str) -> None:
        entry = QueueEntry(queue_id, "albert@awesome.com", ["betty@brilliant.com"])
        commit.run_now(lambda: (None, spool.stage(entry, b"Subject: x\r\n\r\nbody\r\n")))

    try:
        queue(Spool(tmp_path), "0000EA01")  # an earlier run's
        spool = Spool(tmp_path)
        queue(spool, "0000000F")
        queue(spool, "0000000E")
        (tmp_path / "0000000E.state").write_text("{}")  # progress saved for it
        spool.remove("0000000E", state=True)
        spool.remove("0000EA01", state=False, size=22)
        assert sorted(os.listdir(tmp_path)) == ["0000000F"]  # both deleted, neither recycled
        spool.remove("0000000F", state=False, size=22)
        assert os.listdir(tmp_path) == spares()  # this run's, with no state: recycled
        assert len(spares()) == 1
    finally:
        commit.SPARES.discard()


def test_a_restart_loads_only_what_the_run_before_left(tmp_path):
    """The world serves SMTP before its queue has loaded the spool: a message this run
    queues meanwhile, and the spare files it uses, are its own, not leftovers to load or
    remove."""
    entry = QueueEntry("0000EA02", "albert@awesome.com", ["betty@brilliant.com"])
    commit.run_now(lambda: (None, Spool(tmp_path).stage(entry, b"Subject: left\r\n\r\nbody\r\n")))
    (tmp_path / ".0000EA03.state.1.tmp").write_bytes(b"{")  # a temporary file the crash left
    spool = Spool(tmp_path)
    mine = QueueEntry("00000010", "albert@awesome.com", ["betty@brilliant.com"])
    commit.run_now(lambda: (None, spool.stage(mine, b"Subject: mine\r\n\r\nbody\r\n")))
    (tmp_path / ".spare.1.2.3").write_bytes(b"")  # as this run's committer makes one
    assert [e.queue_id for e in spool.load()] == ["0000EA02"]
    assert sorted(os.listdir(tmp_path)) == [".spare.1.2.3", "00000010", "0000EA02"]
    commit.SPARES.discard()


# -- seams (the fault boundary has its own tests: test_seams.py) -------------------------

def test_temporary_mx_error_from_a_seam_defers(world):
    def flaky(domain, resolver):
        raise TemporaryMXError(domain, "lab says: try later")

    world.use(resolve_mx=flaky)
    world.send("albert@awesome.com", ["betty@brilliant.com"], HELLO)
    assert "try later" in world.wait_for(lambda e: e.kind == "deferred").data["detail"]
