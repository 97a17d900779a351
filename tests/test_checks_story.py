"""Lab 0's answers, judged against the run's own record (trace, Betty's Maildir); a
seeded world repeats its IDs."""

from __future__ import annotations

import pytest

from conftest import lecture_config
from labkit import checks
from labkit.world import World

BETTY = "betty@brilliant.com"


def story(state_dir, seed: str | None = "lab 0") -> World:
    """A world that ran the story and stopped: its record stays (its own state dir)."""
    with World(lecture_config(), seed=seed, state_dir=state_dir) as world:
        world.send("albert@awesome.com", [BETTY], b"Subject: Dinner\r\n\r\nHey\r\n", source="1.2.3.100")
        world.wait_for_delivery(BETTY)
        world.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com")  # the relay's own note
    return world


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return story(tmp_path_factory.mktemp("story"))


def queue_ids(events) -> list[str]:
    return [e.data["queue_id"] for e in events if e.kind in ("queued", "delivered") and e.data.get("queue_id")]


def test_right_answers_pass(run):
    events = run.tracer.events()
    awesome = next(e.data["queue_id"] for e in events if e.kind == "queued" and e.server == "smtp.awesome.com")
    brilliant = next(e.data["queue_id"] for e in events if e.kind == "delivered" and e.server == "smtp.brilliant.com")
    report = checks.story.run(run, awesome_queue_id=awesome, brilliant_queue_id=brilliant.lower(),
                              mx_host="smtp.brilliant.com", mx_address="1.2.3.5", hops=2)
    assert report.passed and len(report) == 5, str(report)


# Lab 0's mistakes: each answer wrong in a way students get it wrong, and what the row says.
MISTAKES = {
    "the lecture's queue ID": ({"brilliant_queue_id": "FFDC3387"}, "on the lecture's slides"),
    "no answer": ({"awesome_queue_id": None}, "no answer yet"),
    "the name server as the MX": ({"mx_host": "ns.lab"}, "the name server that answered"),
    "the domain as the MX": ({"mx_host": "brilliant.com"}, "that is the domain"),
    "the relay's address": ({"mx_address": "1.2.3.4"}, "smtp.awesome.com's address"),
    "some other address": ({"mx_address": "1.2.3.53"}, "not of ns.lab"),
    "one Received field": ({"hops": 1}, "the bottom one too"),
    "Return-Path counted": ({"hops": 3}, "Return-Path"),
    "hops as a str": ({"hops": "2"}, "a number"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_wrong_answers_fail_naming_the_mistake_without_giving_the_answer(run, mistake):
    answers, says = MISTAKES[mistake]
    result = checks.story.run(run, **answers).results[0]
    assert result.status == "fail" and says in result.text(), result.text()
    assert not any(qid in result.text() for qid in queue_ids(run.tracer.events()))


def test_a_queue_id_from_the_other_hop_says_whose_it_is(run):
    awesome, brilliant = (next(e.data["queue_id"] for e in run.tracer.events() if e.server == host and e.kind == kind)
                          for host, kind in (("smtp.awesome.com", "queued"), ("smtp.brilliant.com", "delivered")))
    swapped = checks.story.run(run, awesome_queue_id=brilliant, brilliant_queue_id=awesome)
    assert [r.status for r in swapped] == ["fail", "fail"]
    assert "the queue ID smtp.brilliant.com gave it" in swapped.results[0].got
    assert "the queue ID smtp.awesome.com gave it" in swapped.results[1].got


def test_a_host_name_with_its_final_dot_is_the_same_name(run):
    assert checks.story.run(run, mx_host="smtp.brilliant.com.").passed


def test_an_unknown_question_is_a_clear_error(run):
    with pytest.raises(KeyError, match="no question 'queue'"):
        checks.story.run(run, queue="x")


def test_a_seeded_world_gives_the_same_queue_ids_every_run(run, tmp_path):
    ids = queue_ids(run.tracer.events())
    assert queue_ids(story(tmp_path / "again").tracer.events()) == ids
    assert queue_ids(story(tmp_path / "unseeded", seed=None).tracer.events()) != ids
