"""``labkit grade`` on a course of submissions made the way students make them (the
generated release, answers typed in): the exact grades.csv, the gradebook, feedback
without hidden tests, resuming, a dask cluster, every lab, determinism, nothing left
behind, and ``labkit selfcheck``."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from labkit.grade.gradebook import open_gradebook
from submissions import (LAB1, LAB1_EXPECTED, LABS, OTHER_LABS, Course, after_solution, answered, jupyterlab_save, lab1_corpus, meta,
                         source, text)

pytest.importorskip("nbgrader")
LIMITS = ["--time-limit", "60", "--cell-time-limit", "8"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Lab 1's corpus, graded once (the tests below read the result)."""
    course = Course(tmp_path_factory.mktemp("course"))
    for student, notebook in lab1_corpus(course).items():
        course.hand_in(student, LAB1, notebook)
    course.add_student("oli")  # in the gradebook, handed nothing in
    download = course.root / "moodle-download.zip"
    with zipfile.ZipFile(download, "w") as archive:  # Moodle: a folder per submission
        archive.writestr("Pat Doe_4242_assignsubmission_file_/smtp-by-hand.ipynb", jupyterlab_save(
            answered(course, LAB1)))
    (course.root / "roster.csv").write_text("student,lms_id,lms_name\npat,4242,Pat Doe\n")
    done = course.grade(LAB1, "--submissions", str(download), "--roster", str(course.root / "roster.csv"), *LIMITS)
    assert done.returncode == 0, done.stderr[-3000:]
    return course, done


def test_grades_csv_is_exactly_what_each_submission_deserves(graded):
    course, _ = graded
    got = {student: row for (lab, student), row in course.rows().items()}
    assert sorted(got) == sorted(LAB1_EXPECTED)
    for student, (score, status, reason) in LAB1_EXPECTED.items():
        row = got[student]
        assert (row["score"], row["max_score"], row["status"]) == (score, "14", status), (student, row)
        assert reason in row["reason"], (student, row["reason"])
        if not reason:
            assert row["reason"] == "", (student, row["reason"])


def test_the_gradebook_has_the_scores_cell_by_cell(graded):
    course, _ = graded
    with open_gradebook(course.path) as gradebook:
        assert gradebook.find_grade("test-data", "smtp-by-hand", LAB1, "bob").auto_score == 1  # 1 of its 2 rules
        assert gradebook.find_grade("test-delivers", "smtp-by-hand", LAB1, "bob").auto_score == 3
        assert gradebook.find_submission(LAB1, "ada").score == 14
        assert gradebook.find_submission(LAB1, "ada").needs_manual_grade  # the question, for formgrader
    assert (course.path / "autograded" / "bob" / LAB1 / "smtp-by-hand.ipynb").exists()


def test_feedback_shows_the_failed_check_and_never_a_hidden_test(graded):
    course, _ = graded
    page = (course.path / "feedback" / "bob" / LAB1 / "smtp-by-hand.html").read_text()
    assert "lines starting with &#x27;.&#x27; are dot-stuffed" in page and "RFC 5321 §4.5.2" in page
    assert "transcript" in page and "C: DATA" in page
    for cell in source(LAB1)["cells"]:
        if meta(cell).get("grade"):
            for line in text(cell).splitlines():
                if "check(" in line:
                    assert line.strip() not in page


def test_after_a_fork_bomb_the_checks_are_not_run_into_their_time_limits(graded):
    """gus's forks hit the sandbox's pids limit and live on: no check after could start
    the world's threads, so none is run (each would wait out its time limit); his
    feedback says why."""
    course, _ = graded
    page = (course.path / "feedback" / "gus" / LAB1 / "smtp-by-hand.html").read_text()
    assert page.count("the sandbox&#x27;s limit of processes and threads before this cell") >= 3


THREADS_TO_THE_LIMIT = """import threading
stop = threading.Event()
started = []
try:
    for _ in range(100000):
        thread = threading.Thread(target=stop.wait)
        thread.start()
        started.append(thread)
except RuntimeError:
    pass
stop.set()
for thread in started:
    thread.join()
"""


def test_a_notebook_that_hit_the_pids_limit_and_let_go_is_still_judged(tmp_path):
    """Threads started until refused, then ended: the run is marked crashed (it hit the
    limit), but the checks after it are run, as its threads left room for theirs."""
    course = Course(tmp_path)
    course.hand_in("ron", LAB1, answered(course, LAB1, {"send-mail": after_solution(THREADS_TO_THE_LIMIT)}))
    done = course.grade(LAB1, *LIMITS)
    assert done.returncode == 0, done.stderr[-2000:]
    row = course.rows()[(LAB1, "ron")]
    assert (row["status"], row["score"]) == ("crashed", "14"), row
    assert "limit of 256 processes and threads" in row["reason"]


def test_no_hidden_test_ever_reaches_the_kernel(graded):
    """A test cell is judged beside the notebook, never run in it: the autograded
    notebook's outputs are the judge's, and the hidden rules' names are nowhere in what
    the kernel printed (max printed everything it could read)."""
    course, _ = graded

    executed = nbformat.read(course.path / "autograded" / "max" / LAB1 / "smtp-by-hand.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", [])
                      if o.get("output_type") == "stream")
    assert "no " in printed and "BEGIN HIDDEN TESTS" not in printed and "root:" not in printed
    solution = next(c for c in executed.cells if meta(c).get("grade_id") == "send-mail")
    assert any("No such file or directory" in o.get("text", "") for o in solution["outputs"])
    assert any("Permission denied" in o.get("text", "") for o in solution["outputs"])  # /etc/shadow


def test_the_summary_lists_who_needs_a_human_look(graded):
    _, done = graded
    assert "17 students:" in done.stdout and "needs a human look:" in done.stdout
    for student in ("dee", "eve", "gus", "ivy", "jon", "kim", "lee"):
        assert f"  {student} " in done.stdout


def test_the_ta_sees_progress_and_no_library_warnings(graded):
    """stderr is the progress lines and labkit's own words: no warning from nbgrader's
    SQLAlchemy (a TA would take it for a fault)."""
    _, done = graded
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]


def test_nothing_is_left_behind(graded):
    """No scratch directory, control group or process of the run outlives it."""
    course, _ = graded
    assert course.leftovers() == []


def test_a_second_run_skips_what_it_graded_and_force_regrades(graded):
    course, _ = graded
    first = course.rows()
    again = course.grade(LAB1, *LIMITS)
    assert again.returncode == 0 and course.rows() == first
    assert "/" not in again.stderr.replace(str(course.path), "")  # no progress lines: nothing was graded
    bob = course.grade(LAB1, "--student", "bob", "--force", *LIMITS)
    assert bob.returncode == 0 and f"1/1 bob: graded {LAB1_EXPECTED['bob'][0]}/14" in bob.stderr
    assert course.rows() == first


@pytest.mark.timeout(480)  # 8 releases generated, 31 submissions graded: about 100 s on 2 quiet cores
def test_every_lab_honest_gets_full_marks_and_a_mistake_costs_its_cell(tmp_path):
    """The release of every lab with the model answers typed in (once as text, once as
    JupyterLab saves it) gets full marks, unflagged; the untouched release gets 0,
    unflagged; one classic mistake costs exactly its cell."""
    course = Course(tmp_path)
    for lab in LABS:
        course.hand_in("ada", lab, answered(course, lab))
        course.hand_in("amy", lab, jupyterlab_save(answered(course, lab)))
        course.hand_in("una", lab, course.release(lab))
        if lab in OTHER_LABS:
            grade_id, mistake, _ = OTHER_LABS[lab]
            course.hand_in("bob", lab, answered(course, lab, {grade_id: mistake}))
    done = course.grade(*LABS, *LIMITS)
    assert done.returncode == 0, done.stderr[-2000:]
    got = course.rows()
    for lab in LABS:
        for student in ("ada", "amy"):
            row = got[(lab, student)]
            assert (row["status"], row["score"], row["reason"]) == ("graded", row["max_score"], ""), row
        assert troubles(course, "ada", lab) == []  # graded, it runs as in the student's own kernel
        untouched = got[(lab, "una")]
        assert (untouched["status"], untouched["score"]) == ("graded", "0"), untouched
        assert "edited" not in untouched["reason"] and "flag" not in untouched["reason"], untouched
        if lab in OTHER_LABS:
            bob = got[(lab, "bob")]
            assert bob["status"] == "graded" and float(bob["score"]) < float(bob["max_score"]), bob
            assert bob["reason"] == OTHER_LABS[lab][2], bob


def troubles(course: Course, student: str, lab: str) -> list[str]:
    """The errors and stderr output of a student's autograded notebook (beside the
    test cells, which the judge runs outside it), cell by cell."""
    [path] = (course.path / "autograded" / student / lab).glob("*.ipynb")
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" or output.get("name") == "stderr":
                found.append(f"{cell.source[:80]!r}: {output.get('ename', '')} {output.get('evalue', '')}"
                             f"{output.get('text', '')}"[:400])
    return found


def test_the_same_submissions_graded_three_times_get_the_same_rows(tmp_path):
    course = Course(tmp_path)
    corpus = lab1_corpus(course)
    for student in ("ada", "bob", "cid", "kim"):
        course.hand_in(student, LAB1, corpus[student])
    seen = []
    for _ in range(3):
        done = course.grade(LAB1, "--force", *LIMITS)
        assert done.returncode == 0, done.stderr[-2000:]
        seen.append({k: (r["score"], r["status"], r["reason"]) for k, r in course.rows().items()})
    assert seen[0] == seen[1] == seen[2]


def test_a_dask_cluster_grades_the_same(tmp_path):
    """The same rows on a dask cluster. Each dask worker thread grades in a process of its
    own, kept for its next jobs (three jobs on two threads: two processes at most, not one
    a job), and every one of them ends with the run, leaving nothing behind."""
    distributed = pytest.importorskip("distributed")
    from labkit.grade import run

    course = Course(tmp_path)
    corpus = lab1_corpus(course)
    for student in ("ada", "bob", "cid"):
        course.hand_in(student, LAB1, corpus[student])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        done = course.grade(LAB1, "--dask", cluster.scheduler_address, *LIMITS)
        with distributed.Client(cluster) as client:
            [(started, live)] = client.run(lambda: (run._Apart.started, len(run._Apart.live))).values()
    assert done.returncode == 0, done.stderr[-2000:]
    got = course.rows()
    assert {s: (got[(LAB1, s)]["score"], got[(LAB1, s)]["status"], got[(LAB1, s)]["reason"])
            for s in ("ada", "bob", "cid")} == {s: LAB1_EXPECTED[s] for s in ("ada", "bob", "cid")}
    assert 1 <= started <= 2 and live == 0
    assert course.leftovers() == []


def test_more_submissions_than_a_worker_grades_before_renewal(tmp_path):
    """Worker pools are renewed every few submissions; grading goes on across renewals
    (Python 3.11's max_tasks_per_child stopped for good there: CPython gh-115634)."""
    import subprocess
    import sys

    from submissions import python_env

    lab = "0-life-of-an-email"
    course = Course(tmp_path)
    students = [f"s{i}" for i in range(5)]
    for student in students:
        course.hand_in(student, lab, answered(course, lab))
    code = "import sys, labkit.grade.run as run; run.WORKER_TASKS = 2; sys.exit(run.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, lab, "--course", "grading", "--workers", "1", *LIMITS],
                          cwd=course.root, env=python_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = course.rows()
    assert sorted(s for _, s in got) == students
    assert {(r["status"], r["score"] == r["max_score"]) for r in got.values()} == {("graded", True)}


def test_every_autograded_cell_of_every_lab_can_be_judged_outside():
    """Each lab's test cells are in the forms the judge runs (labkit.grade.verdict)."""
    from labkit.grade import verdict

    for lab in LABS:
        for cell in source(lab)["cells"]:
            if meta(cell).get("grade") and not meta(cell).get("solution") and cell["cell_type"] == "code":
                assert verdict.parse(text(cell)), (lab, meta(cell)["grade_id"])


def test_selfcheck_fails_a_stub_and_passes_a_solution_and_says_what_is_unfinished(tmp_path):
    import subprocess
    import sys

    from submissions import python_env

    course = Course(tmp_path / "course")
    (tmp_path / "stub.ipynb").write_text(json.dumps(course.release(LAB1)))
    (tmp_path / "done.ipynb").write_text(json.dumps(answered(course, LAB1)))
    (tmp_path / "leftover.ipynb").write_text(json.dumps(answered(course, LAB1, {  # the stub's raise left in
        "send-mail": lambda t: t + "\nraise NotImplementedError()"})))

    def selfcheck(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labkit.cli", "selfcheck", name], cwd=tmp_path, env=python_env(),
                              capture_output=True, text=True, timeout=180)

    failing = selfcheck("stub.ipynb")
    assert failing.returncode == 1 and "[FAIL] test-delivers" in failing.stdout
    assert "NotImplementedError" in failing.stdout and "0 of 7 visible checks pass" in failing.stdout
    assert "[TODO] question-4xx: not answered yet" in failing.stdout
    passing = selfcheck("done.ipynb")
    assert passing.returncode == 0 and "7 of 7 visible checks pass" in passing.stdout
    assert "[TODO]" not in passing.stdout and "(1 point)" in passing.stdout
    unfinished = selfcheck("leftover.ipynb")
    assert unfinished.returncode == 1 and "[TODO] send-mail: your answer cell raised NotImplementedError" in \
        unfinished.stdout and "7 of 7 visible checks pass; 1 answer cell raised" in unfinished.stdout


def test_the_default_is_two_workers_a_core_as_memory_allows():
    """A submission waits about half its time: two a core keep the cores busy, never more
    pods than the memory available holds, never none."""
    from labkit.grade.run import WORKER_MEMORY, default_workers

    assert default_workers(cores=2, available=100 * WORKER_MEMORY) == 4
    assert default_workers(cores=2, available=3 * WORKER_MEMORY) == 3
    assert default_workers(cores=8, available=WORKER_MEMORY // 2) == 1
    assert 1 <= default_workers() <= 2 * len(os.sched_getaffinity(0))


def test_a_run_starts_no_more_workers_than_there_are_hand_ins(tmp_path):
    """Each worker warms a pod as it starts: regrading one student (``--student bob``)
    starts one, not two a core."""
    from labkit.grade.run import _handed_in

    course = Course(tmp_path)
    for who, lab in (("ada", LAB1), ("bob", LAB1), ("bob", LABS[0]), ("cy", LABS[0])):
        course.hand_in(who, lab, b"{}")
    assert _handed_in(course.path, [LAB1], None) == 2
    assert _handed_in(course.path, [LAB1], "bob") == 1
    assert _handed_in(course.path, [LAB1, LABS[0]], None) == 4
    assert _handed_in(course.path, [LAB1], "nobody") == 0
    assert _handed_in(tmp_path / "no-course", [LAB1], None) == 0


def test_a_run_leaves_labkit_compiled_for_the_judges_which_cannot_write_it(tmp_path):
    """A judge imports labkit read-only, as the pod's user: the bytecode it compiles is
    lost with it. So a run writes labkit's bytecode first, where it is missing or stale,
    and the judges read it (a module only the judge imports stands for all of them)."""
    import importlib.util

    import labkit

    module = Path(labkit.__file__).parent / "mta" / "server.py"
    cached = Path(importlib.util.cache_from_source(str(module)))
    cached.unlink(missing_ok=True)
    course = Course(tmp_path)
    course.hand_in("ada", LABS[0], answered(course, LABS[0]))
    done = course.grade(LABS[0], *LIMITS)
    assert done.returncode == 0, done.stderr[-3000:]
    header, source = cached.read_bytes()[:16], module.stat()  # what Python checks before it uses it
    assert header[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(header[4:8], "little") == 0  # checked by the source's time and size
    assert int.from_bytes(header[8:12], "little") == int(source.st_mtime) & 0xFFFFFFFF
    assert int.from_bytes(header[12:16], "little") == source.st_size & 0xFFFFFFFF


def test_a_labkit_under_tmp_is_bound_over_the_sandboxs_empty_tmp(monkeypatch):
    """bubblewrap mounts in order: a clone under /tmp (labkit, its venv, the run's
    scratch) must be bound after the empty /tmp is mounted, or the sandbox hides it and
    every submission comes back unjudged."""
    import sys

    import labkit
    from labkit.grade import pod

    monkeypatch.setattr(sys, "prefix", "/tmp/clone/.venv")  # a clone in /tmp, its venv inside
    monkeypatch.setattr(labkit, "__file__", "/tmp/clone/labkit/__init__.py")

    def mounted_before_tmp(args: list[str]) -> list[str]:
        tmp = next(i for i in range(len(args) - 1) if args[i] == "--tmpfs" and args[i + 1] == "/tmp")
        return [args[i + 2] for i in range(len(args) - 2) if args[i] in ("--ro-bind", "--bind")
                and args[i + 2].startswith("/tmp/") and i < tmp]

    limits = pod.Limits()
    kernel = pod.kernel_command(["python3", "-m", "ipykernel"], uid=60000, shared="/tmp/run/s", common="/tmp/run/c",
                                student="/tmp/clone/student", limits=limits)
    judge = pod.judge_command(uid=60000, common="/tmp/run/c", limits=limits)
    assert "/tmp/clone/.venv" in kernel and "/tmp/clone/labkit" in judge  # the test sees what it means to
    assert mounted_before_tmp(kernel) == [] and mounted_before_tmp(judge) == []


# A pod whose starting thread ends while its kernel runs (a busy worker: that thread ends
# after its kernel's bubblewrap has started): the kernel must still answer.
POD_STARTED_BY_A_SLOW_THREAD = """
import sys, time
from pathlib import Path
from jupyter_core.utils import run_sync
from labkit.grade import pod, worker

worker.prepare(sys.argv[1], True)
make = pod.kernel_manager

def slow(spec, **kwargs):
    km = make(spec, **kwargs)
    post_start = km._async_post_start_kernel

    async def slowly(**kw):
        await post_start(**kw)
        time.sleep(3)  # the thread that started the kernel ends after bubblewrap set its parent-death signal

    km._async_post_start_kernel = slowly
    return km

pod.kernel_manager = slow
package = pod.student_package(Path(sys.argv[1]) / "student")
one = pod.Pod(worker.scratch(), str(package), pod.Limits(), sandboxed=True, run=pod.run_id())
try:
    one.wait()
    time.sleep(6)
    client = one.km.client()
    client.start_channels()
    run_sync(client.wait_for_ready)(timeout=60)  # raises if the kernel died
    print("ready")
finally:
    one.kill()
    one.remove()
"""


def test_a_pod_outlives_the_thread_that_started_it(tmp_path):
    """bubblewrap's --die-with-parent kills the kernel when the thread that started it
    ends (PR_SET_PDEATHSIG is a thread's): under load that thread ended after the kernel's
    bubblewrap had started, and the kernel died silently before its first reply."""
    import subprocess
    import sys

    from labkit.grade.pod import missing_isolation
    from submissions import python_env

    if missing_isolation():
        pytest.skip(f"{missing_isolation()} (.ci/run runs the suite as root with bubblewrap)")
    done = subprocess.run([sys.executable, "-c", POD_STARTED_BY_A_SLOW_THREAD, str(tmp_path)], env=python_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ready" in done.stdout, done.stderr[-2000:]


def test_an_unjudged_submission_is_graded_again_without_force(tmp_path):
    """unjudged is the grader's failure, not the student's: the next run tries again."""
    from labkit.grade.gradebook import RESULT_FILE

    course = Course(tmp_path)
    course.hand_in("ada", LAB1, answered(course, LAB1))
    assert course.grade(LAB1, *LIMITS).returncode == 0
    saved = course.path / "autograded" / "ada" / LAB1 / RESULT_FILE
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "status": "unjudged"}))
    again = course.grade(LAB1, *LIMITS)
    assert again.returncode == 0 and "1/1 ada: graded 14/14" in again.stderr, again.stderr[-2000:]


@pytest.mark.parametrize("stop, sandbox", [("SIGTERM", "sandboxed"), ("SIGTERM", "unsandboxed"),
                                           ("Ctrl-C", "sandboxed")])
def test_a_stopped_run_ends_at_once_keeps_what_was_graded_and_leaves_nothing(tmp_path, stop, sandbox):
    """``kill`` (SIGTERM, to the grader alone) or Ctrl-C (SIGINT, to its terminal's whole
    process group) while a submission's cell sleeps: the run ends within seconds, not when
    the cell's time is up; what was graded before stays in the gradebook; no worker, pod,
    scratch file or control group is left."""
    import signal
    import threading
    import time

    from labkit.grade.gradebook import RESULT_FILE
    from labkit.grade.pod import missing_isolation

    if sandbox == "sandboxed" and missing_isolation():
        pytest.skip(f"{missing_isolation()} (.ci/run runs the suite as root with bubblewrap)")
    course = Course(tmp_path)
    course.hand_in("ada", LAB1, answered(course, LAB1))
    for who in ("bob", "cid"):
        course.hand_in(who, LAB1, answered(course, LAB1, {"send-mail": after_solution("import time\ntime.sleep(600)")}))
    process = course.start_grading(LAB1, "--workers", "1", "--time-limit", "900", "--cell-time-limit", "600",
                                   *(["--unsafe-no-sandbox"] if sandbox == "unsandboxed" else []), session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        for _ in range(1200):  # ada graded (bob's cell starts next): at most 120 s
            if any(line.startswith("1/3 ada: graded") for line in lines) or process.poll() is not None:
                break
            time.sleep(0.1)
        assert any(line.startswith("1/3 ada: graded") for line in lines), "".join(lines)[-3000:]
        time.sleep(3)  # bob's notebook runs, into the sleep
        if stop == "SIGTERM":
            os.kill(process.pid, signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)  # the sleeping cell has 600 s
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    reader.join(10)
    said = "".join(lines)
    assert code == 128 + (signal.SIGTERM if stop == "SIGTERM" else signal.SIGINT), said[-3000:]
    assert "labkit grade: stopped; what was graded is in the gradebook" in said and "Traceback" not in said, said
    graded = course.path / "autograded"
    assert json.loads((graded / "ada" / LAB1 / RESULT_FILE).read_text())["status"] == "graded"
    assert not (graded / "bob").exists() and not (graded / "cid").exists()
    assert course.leftovers() == []


def test_the_names_a_student_may_import_are_kept_until_labkits_sources_change(tmp_path, monkeypatch):
    """Finding them imports all of labkit (0.4 s of each run's start): they are kept in
    ~/.labkit/cache, and found again when a source (or Python) is not the same."""
    import sys

    from labkit.grade import verdict

    monkeypatch.setenv("HOME", str(tmp_path))
    found = verdict.allowed_names.__wrapped__()
    assert ("labkit.smtp.client", "Reply") in found and found == verdict._allowed_names()
    [kept] = (tmp_path / ".labkit" / "cache").glob("allowed-names-*.json")
    kept.write_text(json.dumps(sorted(found | {("labkit.smtp.client", "Planted")})))
    assert ("labkit.smtp.client", "Planted") in verdict.allowed_names.__wrapped__()  # read, not found again
    monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    assert verdict.allowed_names.__wrapped__() == found
    assert not kept.exists() and len(list(kept.parent.iterdir())) == 1  # the old one is gone


@pytest.mark.parametrize("lab", [LAB1, LABS[-1]])
def test_the_cells_given_are_read_from_the_release_as_nbgrader_made_it(tmp_path, lab):
    """A submission's test and read-only cells are compared with what the release handed
    out: read from the course's release (no nbconvert import at a run's start), or, where
    the release lacks one, made again as nbgrader makes it; both give the same text."""
    from labkit.grade.gradebook import course_nbgrader_config
    from labkit.grade.worker import given_cells
    from submissions import notebook_name

    course = Course(tmp_path)
    course.release(lab)
    authored = nbformat.reads(json.dumps(source(lab)), as_version=4)
    config = course_nbgrader_config(course.path)
    released = course.path / "release" / lab / notebook_name(lab)
    made = given_cells(authored, config)
    assert made and all("HIDDEN TESTS" not in text for text in made.values())
    assert given_cells(authored, config, released) == made
    stale = json.loads(released.read_text())
    stale["cells"] = [c for c in stale["cells"] if meta(c).get("grade_id") != next(iter(made))]
    released.write_text(json.dumps(stale))
    assert given_cells(authored, config, released) == made


def test_a_run_sweeps_the_groups_of_dead_runs_of_its_own_pid_namespace_only(tmp_path):
    """At its start a run removes the control groups a killed run left; a group named by
    a grader in another PID namespace (its pid is no process here) is that grader's."""
    from labkit.grade.pod import Cgroup, _pid_namespace

    if not Cgroup.available() or os.geteuid() != 0:
        pytest.skip("control groups need root (.ci/run runs the suite as root)")
    dead = str(2 ** 22 + 1)  # over pid_max's largest value: no process has it
    ours = Cgroup(Cgroup.name(dead, "t0ken", "kernel"), processes=10, memory=1 << 26)
    theirs = Cgroup(f"{Cgroup.PREFIX}{dead}-n{_pid_namespace() + 1}-t0ken-kernel", processes=10, memory=1 << 26)
    try:
        assert ours.paths and theirs.paths
        Cgroup.sweep()
        assert not any(os.path.exists(p) for p in ours.paths)
        assert all(os.path.exists(p) for p in theirs.paths)
        assert Cgroup.sweep(dead) == 0  # the end of a run of that pid here: still not theirs
        assert all(os.path.exists(p) for p in theirs.paths)
    finally:
        ours.remove()
        theirs.remove()


UNRETRIEVED = """
import asyncio, gc, queue
from labkit.grade import worker
worker.quiet()

async def _async_poll_output_msg():  # as nbclient's output poller ends after a cell's time-out
    raise queue.Empty

async def other():
    raise ValueError("a fault of ours")

async def main():
    for coro in (_async_poll_output_msg, other):
        task = asyncio.ensure_future(coro())
        await asyncio.sleep(0.01)
        del task
        gc.collect()

asyncio.run(main())
"""


def test_a_workers_stderr_shows_no_traceback_of_nbclients_ended_poller():
    """After a cell's time-out nbclient's output poller can end with an exception nobody
    retrieves, which asyncio printed on the TA's terminal; any other one is still shown."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", UNRETRIEVED], capture_output=True, text=True, timeout=60)
    assert "_async_poll_output_msg" not in done.stderr and "a fault of ours" in done.stderr, done.stderr
