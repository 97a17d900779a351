"""The pictures a lab shows: sequence diagrams of a real world's trace and the SMTP state
diagrams, as JupyterLab shows them trusted (SVG) and untrusted (PNG), and in a browser."""

from __future__ import annotations

import base64
import re
import time

import pytest

from conftest import chromium_page
from labkit.notebook import follow, sequence, state_diagram

PNG = b"\x89PNG\r\n\x1a\n"
ALBERT, BETTY, CAROL = "albert@awesome.com", "betty@brilliant.com", "carol@careful.com"


def story(world) -> list:
    """Albert writes to Betty; then someone asks DNS from the notebook itself."""
    since = time.time()
    world.send(ALBERT, [BETTY], b"Subject: Dinner\r\n\r\nTonight?\r\n", source="1.2.3.100")
    follow(world, BETTY, since=since)
    list(world.resolver().resolve("brilliant.com", "MX"))
    world.wait_for(lambda e: e.protocol == "dns" and e.direction == "S" and e.time > since, count=3, since=since)
    return [e for e in world.tracer.events() if e.time >= since]


def test_a_diagram_is_svg_and_png_never_html(world):
    """JupyterLab renders SVG only when the notebook is trusted and sanitises HTML; a PNG
    it shows always. So no text/html (it would win and be sanitised), and a real PNG."""
    bundle = sequence(story(world))._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/svg+xml", "image/png"}
    assert bundle["image/png"].startswith(PNG) and bundle["image/svg+xml"].startswith("<svg")


def test_a_graded_kernel_draws_the_png_at_one_pixel_a_unit(world, monkeypatch):
    """Students' PNGs are sharp on high-density screens (two pixels a unit); in a kernel the
    autograder runs (nbgrader and labkit grade set NBGRADER_EXECUTION) the TA's copy is
    drawn at one, a quarter of the pixels and of the time, with the same SVG and text."""
    picture = sequence(story(world))
    students = picture._repr_mimebundle_()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    graded = picture._repr_mimebundle_()
    width = {name: int.from_bytes(bundle["image/png"][16:20], "big") for name, bundle in
             (("students", students), ("graded", graded))}  # the IHDR chunk's width
    assert width == {"students": 2 * picture.width, "graded": picture.width}
    assert graded["text/plain"] == students["text/plain"]
    ids = re.compile(r"(?<=#|')[\w-]*arrow[\w-]*")  # each SVG's own arrowhead id
    assert ids.sub("", graded["image/svg+xml"]) == ids.sub("", students["image/svg+xml"])


def test_every_diagram_has_its_own_arrowheads(world):
    events = story(world)
    first, second = sequence(events).svg(), sequence(events).svg()
    ids = [re.search(r"<marker id='([^']+)'", svg).group(1) for svg in (first, second)]
    assert ids[0] != ids[1]
    assert f"url(#{ids[0]})" in first and f"url(#{ids[1]})" not in first


def test_dns_queries_are_the_asker_s_and_the_relay_ends_with_quit(world):
    text = str(sequence(story(world), names={"1.2.3.100": "Albert's PC"}))
    lines = text.splitlines()
    mta = lines.index(next(line for line in lines if "smtp.awesome.com -> ns.lab" in line and "brilliant.com. IN MX" in line))
    own = lines.index(next(line for line in lines if "resolver at 127.0.0.1 -> ns.lab" in line))
    relay = lines.index(next(line for line in lines if "smtp.awesome.com -> smtp.brilliant.com" in line))
    assert mta < relay < own  # the relay's lookup before it relays; the notebook's own query after
    assert any("smtp.awesome.com -> smtp.brilliant.com" in line and line.split()[-1] == "QUIT" for line in lines)
    assert any("smtp.brilliant.com -> smtp.awesome.com" in line and "221" in line for line in lines)


def test_a_dead_mx_is_drawn_before_the_backup_takes_the_mail(world):
    since = time.time()
    world.send(ALBERT, [CAROL], b"Subject: party\r\n\r\nSaturday\r\n", source="1.2.3.100")
    follow(world, CAROL, since=since)
    text = str(sequence([e for e in world.tracer.events() if e.time >= since]))
    assert "smtp.awesome.com -> mx1.careful.com" in text and "connect: no answer" in text
    assert text.index("connect: no answer") < text.index("smtp.awesome.com -> mx2.careful.com")


def test_the_state_diagrams_are_the_tables_the_code_runs():
    from labkit.smtp.client import TRANSITIONS
    from labkit.smtp.server import COMMANDS, State

    server = str(state_diagram("smtp-server"))
    for name, command in COMMANDS.items():
        if command.then not in (None, State.CLOSED):
            assert any(f"--{name}" in line or f", {name}" in line for line in server.splitlines()
                       if line.strip().endswith(command.then.value)), name
    client = str(state_diagram("smtp-client"))
    labels = {label for step in TRANSITIONS.values() for _, label in step.leads_to if label != "else"}
    assert all(f"--{label}-->" in client for label in labels)
    with pytest.raises(ValueError, match="smtp-client, smtp-server, pop3, imap"):
        state_diagram("smtp-relay")


def test_an_untrusted_notebook_shows_the_diagrams_in_a_browser(world, tmp_path):
    """Rendered as JupyterLab renders an untrusted notebook (the safe types only: PNG and
    text), the diagrams are pictures, not loose text (Debian's chromium, via Playwright)."""
    nbformat = pytest.importorskip("nbformat")
    nbconvert = pytest.importorskip("nbconvert")

    notebook = nbformat.v4.new_notebook()
    for picture in (sequence(story(world)), state_diagram("smtp-server")):
        data = picture._repr_mimebundle_()
        cell = nbformat.v4.new_code_cell("picture")
        cell.outputs = [nbformat.v4.new_output("display_data", data={
            "text/plain": data["text/plain"], "image/svg+xml": data["image/svg+xml"],
            "image/png": base64.b64encode(data["image/png"]).decode()})]
        notebook.cells.append(cell)
    exporter = nbconvert.HTMLExporter(config={"NbConvertBase": {"display_data_priority": [
        "image/png", "text/plain"]}})  # what an untrusted notebook may show
    page_file = tmp_path / "untrusted.html"
    page_file.write_text(exporter.from_notebook_node(notebook)[0])
    with chromium_page({"width": 1400, "height": 900}) as page:
        page.goto(page_file.as_uri())
        images = page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea img')]"
                               ".map(i => [i.naturalWidth, i.naturalHeight])")
        page.screenshot(path=str(tmp_path / "untrusted.png"), full_page=True)
    assert len(images) == 2 and all(w > 400 and h > 300 for w, h in images), images


def test_a_graded_kernel_draws_no_state_diagram_and_says_why(tmp_path):
    """The tables are labkit's own answer, which a graded kernel does not hold: the cell
    still runs, and the picture says why it is empty."""
    import subprocess
    import sys

    from labkit.grade.pod import student_package

    package = student_package(tmp_path / "student")
    code = (f"import sys; sys.path.insert(0, {str(package)!r})\nfrom labkit.notebook import state_diagram\n"
            "for machine in ('smtp-client', 'smtp-server', 'pop3', 'imap'): print(state_diagram(machine, ['QUIT']))")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.count("a graded notebook does not hold") == 4
