"""A TA grades a folder of submissions: good, wrong, broken, hostile and missing notebooks each get a
recorded result with a reason, in sandboxed kernels, and the batch survives being killed."""
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from hwkit.course import load_course
from hwkit.grading.one import grader_error
from hwkit.records import Status
from hwkit.review.queue import review_items
from hwkit.sandbox import sandbox_available
from solutions.receptive_field import receptive_field
from tests.support import (HWKIT, append_cell, grade_result, hwkit, make_course, read_grades, release_notebook,
                           solution_notebook, submit)

pytestmark = pytest.mark.skipif(not sandbox_available()[0], reason="needs the bubblewrap sandbox")

STUDENTS = ["s01", "s02", "s03", "s04", "s05", "s06", "s07", "s08", "s09", "s10", "s11", "s12", "s13", "s14"]


def _fast_limits(root: Path) -> None:
    config = root / "hwkit.toml"
    text = config.read_text().replace("cell_timeout = 60", "cell_timeout = 8").replace("notebook_timeout = 300", "notebook_timeout = 60")
    config.write_text(text)


def _write_raw(root: Path, sid: str, data: bytes, name: str = "t.ipynb") -> None:
    folder = root / "submitted" / "t" / sid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("grade"), ["receptive-field"], STUDENTS)
    _fast_limits(root)
    submit(root, "s01", solution_notebook(root, "s01"))                       # all correct
    nb = solution_notebook(root, "s02")                                        # each part a different mistake
    append_cell(nb, "rf_final = receptive_field([(k, 1, p, d) for k, s, p, d in rf_layers])[0]\n"
                    "rf_jump = sum(l[1] for l in rf_layers)\n"
                    "def receptive_field(layers):\n    r = 1\n    for k, s, p, d in layers:\n        r += d * (k - 1)\n    return r, 1\n")
    submit(root, "s02", nb)
    nb = solution_notebook(root, "s03")                                        # a syntax error and an exception
    nb.cells.insert(3, nbformat.v4.new_code_cell("def broken(:\n    pass"))
    append_cell(nb, "rf_jump = 1 / 0")
    submit(root, "s03", nb)
    submit(root, "s04", release_notebook(root, "s04"))                         # the starter, untouched
    # s05: no folder at all
    _write_raw(root, "s06", b"{ this is not json")                              # invalid JSON
    v3 = {"metadata": {}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": [
        {"cell_type": "code", "input": "rf_out_size = 7", "language": "python", "outputs": []}]}]}
    _write_raw(root, "s07", json.dumps(v3).encode())                            # nbformat v3
    _write_raw(root, "s08", b"\xff\xfe not utf-8 \x80\x81")                     # not UTF-8
    nb = solution_notebook(root, "s09")                                        # cells reordered, answer cell deleted
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = [code[0], code[1], code[2]] + [c for c in nb.cells if c.cell_type == "markdown"]
    submit(root, "s09", nb)
    nb = solution_notebook(root, "s10")                                        # the kernel dies midway
    append_cell(nb, "import os; os._exit(3)")
    submit(root, "s10", nb)
    nb = solution_notebook(root, "s11")                                        # a cell that never ends, then output flood
    nb.cells.insert(3, nbformat.v4.new_code_cell("while True:\n    pass"))
    append_cell(nb, "for _ in range(200):\n    print('x' * 100_000)")
    submit(root, "s11", nb)
    folder = root / "submitted" / "t" / "s12"                                  # two notebooks, one identifiable by metadata
    folder.mkdir(parents=True)
    nbformat.write(solution_notebook(root, "s12"), str(folder / "my-work.ipynb"))
    (folder / "scratch.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    folder = root / "submitted" / "t" / "s13"                                  # two notebooks, neither identifiable
    folder.mkdir(parents=True)
    for name in ("a.ipynb", "b.ipynb"):
        (folder / name).write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    _write_raw(root, "s14", b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "pad": "'
               + b"x" * (21 * 2**20) + b'"}')                                  # over the size limit
    (root / "submitted" / "t" / "stranger").mkdir()                            # not on the roster
    proc = hwkit("grade", "t", "--course", root, "--jobs", "2")
    return root, proc


def _parts(root: Path, sid: str) -> dict:
    db = sqlite3.connect(root / "gradebook.sqlite")
    rows = db.execute("SELECT part, score, max_points, note FROM parts WHERE assignment='t' AND student_id=?", (sid,))
    return {part: (score, max_points, note) for part, score, max_points, note in rows}


def test_grades_csv_has_every_roster_student(graded):
    root, proc = graded
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    assert sorted(grades) == STUDENTS
    assert "stranger" in proc.stdout and "not on the roster" in proc.stdout
    assert grades["s01"]["total"] == grades["s01"]["max"] == "19"
    assert grades["s01"]["status"] == "ok"


def test_correct_work_scores_full(graded):
    root, _ = graded
    right = {p: "CORRECT" for p in ("rf_final", "rf_jump", "rf_out_size", "receptive_field", "rf_table")}
    right["rf_concept"] = "WRITTEN_ALL_CONCEPTS"
    assert {k: v[2] for k, v in _parts(root, "s01").items()} == right
    assert {k: v[2] for k, v in _parts(root, "s12").items()} == right


def test_each_mistake_is_named(graded):
    root, _ = graded
    parts = _parts(root, "s02")
    layers = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s02"]["receptive-field"]["params"]["layers"]
    strides = [layer[1] for layer in layers]
    # A mistake that gives the right number for this variant is simply right (e.g. the only stride > 1 comes
    # before 1x1 kernels, or sum = product).
    ignoring_strides_is_right = receptive_field(layers, use_stride=False)[0] == receptive_field(layers)[0]
    assert parts["rf_final"][2] == ("CORRECT" if ignoring_strides_is_right else "RF_IGNORED_STRIDE")
    assert parts["rf_jump"][2] == ("CORRECT" if sum(strides) == math.prod(strides) else "JUMP_SUMMED_STRIDES")
    assert parts["rf_out_size"] == (2.0, 2.0, "CORRECT")
    assert parts["receptive_field"][2] == "RF_IGNORED_STRIDE"  # hidden stacks always include strides > 1


def test_broken_cells_cost_only_what_depends_on_them(graded):
    root, _ = graded
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    parts = _parts(root, "s03")
    assert grades["s03"]["status"] == "cell errors"
    assert parts["rf_jump"][2] == "RAISED" or parts["rf_jump"][0] == 2.0  # the 1/0 cell left the earlier value intact
    assert parts["rf_final"][2] == "CORRECT" and parts["receptive_field"][2] == "CORRECT"


def test_starter_scores_zero_as_not_answered(graded):
    root, _ = graded
    assert {v[2] for v in _parts(root, "s04").values()} == {"NOT_ANSWERED"}
    assert sum(v[0] for v in _parts(root, "s04").values()) == 0


@pytest.mark.parametrize("sid, status, words", [
    ("s05", "no submission", "no folder"),
    ("s06", "invalid notebook", "not valid notebook JSON"),
    ("s08", "invalid notebook", "not UTF-8"),
    ("s13", "ambiguous submission", "several notebooks"),
    ("s14", "invalid notebook", "over the 20 MB limit"),
])
def test_unreadable_submissions_are_recorded_with_a_reason(graded, sid, status, words):
    root, _ = graded
    row = read_grades(root / "graded" / "t" / "grades.csv")[sid]
    assert row["status"] == status and words in row["reason"] and row["total"] == "0" and row["max"] == "19"
    assert (root / "graded" / "t" / sid / "feedback.html").is_file()


def test_old_format_and_reordered_notebooks_are_graded(graded):
    root, _ = graded
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    assert grades["s07"]["status"] in ("ok", "cell errors")
    assert _parts(root, "s09")["receptive_field"][2] == "CORRECT"
    assert _parts(root, "s09")["rf_final"][2] == "NOT_ANSWERED"


def test_dying_and_endless_kernels_are_contained(graded):
    root, _ = graded
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    assert grades["s10"]["status"] in ("kernel died", "killed")
    assert grades["s11"]["status"] == "timeout"
    assert _parts(root, "s11")["receptive_field"][2] == "CORRECT"  # the loop was interrupted; later cells ran
    executed = (root / "graded" / "t" / "s11" / "t.ipynb").read_text()
    assert len(executed) < 3_000_000 and "output truncated" in executed


def test_feedback_page_names_mistakes_but_not_answers(graded):
    root, _ = graded
    page = (root / "graded" / "t" / "s02" / "feedback.html").read_text()
    answers = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s02"]["receptive-field"]["answers"]
    assert "stride" in page
    assert f">{answers['rf_final']}<" not in page and "rf_layers" not in page


def test_summary_and_exports(graded):
    root, _ = graded
    folder = root / "graded" / "t"
    assert (folder / "histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert "RF_IGNORED_STRIDE" in (folder / "summary.html").read_text()
    for fmt, column in (("csv", "student_id"), ("canvas", "SIS User ID"), ("moodle", "ID number")):
        # the written part (rf_concept) is provisional until reviewed: gating exports on review is review's story
        hwkit("export", "t", "--course", root, "--format", fmt, "--allow-provisional")
        assert (folder / f"grades-{fmt}.csv").read_text().startswith(column) or column in (folder / f"grades-{fmt}.csv").read_text().splitlines()[0]


def test_rerun_skips_unchanged_and_force_regrades(graded):
    root, _ = graded
    before = {r[0]: r[1] for r in sqlite3.connect(root / "gradebook.sqlite").execute("SELECT student_id, graded_at FROM submissions")}
    proc = hwkit("grade", "t", "--course", root)
    assert "Graded 0 submission" in proc.stdout
    proc = hwkit("grade", "t", "--course", root, "--students", "s01", "--force")
    assert "Graded 1 submission" in proc.stdout
    after = {r[0]: r[1] for r in sqlite3.connect(root / "gradebook.sqlite").execute("SELECT student_id, graded_at FROM submissions")}
    assert {k for k in before if before[k] != after[k]} <= {"s01"}


def test_a_rerun_with_nothing_to_grade_loads_neither_the_bank_nor_matplotlib(graded):
    """A TA reruns `hwkit grade` to pick up late submissions and none came: the answer comes back at once, the
    reports are rewritten, and neither the bank (which imports torch) nor matplotlib (the histogram, unchanged)
    is loaded."""
    root, _ = graded
    (root / "graded" / "t" / "grades.csv").unlink()
    run = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom hwkit.cli import main\n"
        f"sys.argv = ['hwkit', 'grade', 't', '--course', {str(root)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('loaded:', sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n")],
        capture_output=True, text=True, timeout=300)
    assert "Graded 0 submission" in run.stdout, run.stdout + run.stderr
    assert "loaded: []" in run.stdout
    assert (root / "graded" / "t" / "grades.csv").is_file() and (root / "graded" / "t" / "histogram.png").is_file()


def test_tampered_helpers_do_not_earn_points(tmp_path):
    """The student has read hwkit's source: they replace the probe runtime's answer, the kernel's handler for
    probe requests and every comparison helper with ones that report success. The kernel's replies are data
    compared outside the kernel with references for inputs drawn at grading time, so forged replies earn
    nothing the work would not."""
    root = make_course(tmp_path, ["receptive-field"], ["s01"])
    _fast_limits(root)
    nb = release_notebook(root, "s01")
    append_cell(nb, """
import numpy, torch, IPython
import hwkit_kernel.runtime as runtime
torch.allclose = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
def forged(self, content, buffers):
    inputs = content.get("inputs") or {}
    cases = inputs.get("cases") if isinstance(inputs, dict) else None
    value = [[1, 1]] * len(cases) if isinstance(cases, list) else 1
    return {"nonce": content.get("nonce"), "ok": True, "value": value}, []
runtime.Runtime.answer = forged
kernel = IPython.get_ipython().kernel
handler = kernel.shell_handlers["hwkit_probe_request"]
def forge_everything(stream, idents, msg):
    reply = {"nonce": msg["content"].get("nonce"), "ok": True, "value": -7}
    kernel.session.send(stream, "hwkit_probe_reply", reply, parent=msg, ident=idents)
kernel.shell_handlers["hwkit_probe_request"] = forge_everything
rf_out_size = rf_input_size
for k, s, p, d in rf_layers:
    rf_out_size = (rf_out_size + 2 * p - d * (k - 1) - 1) // s + 1
""")
    submit(root, "s01", nb)
    hwkit("grade", "t", "--course", root)
    parts = _parts(root, "s01")
    for part in ("rf_final", "rf_jump", "receptive_field", "rf_out_size"):
        assert parts[part][0] == 0, (part, parts[part])  # rf_out_size too: its own report was forged as -7


def test_killed_batch_resumes_without_losing_or_repeating(tmp_path):
    ids = [f"k{i}" for i in range(6)]
    root, proc, db_path = _batch_under_way(tmp_path, ids)
    done = _wait_until_graded(db_path, 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < len(ids), "the batch finished before it could be killed"
    first = {r[0]: r[1] for r in sqlite3.connect(db_path).execute("SELECT student_id, graded_at FROM submissions")}
    out = hwkit("grade", "t", "--course", root, "--jobs", "1").stdout
    assert f"Graded {len(ids) - len(first)} submission" in out
    rows = list(sqlite3.connect(db_path).execute("SELECT student_id, graded_at, score, max_score FROM submissions"))
    assert sorted(r[0] for r in rows) == ids
    assert all(r[2] == r[3] == 19 for r in rows)
    assert all(first[sid] == at for sid, at, _, _ in rows if sid in first)


def _batch_under_way(tmp_path: Path, ids: list[str]):
    """`hwkit grade` started in its own process group on correct notebooks of `ids`, one lane."""
    root = make_course(tmp_path, ["receptive-field"], ids)
    for sid in ids:
        submit(root, sid, solution_notebook(root, sid))
    proc = subprocess.Popen([HWKIT, "grade", "t", "--course", str(root), "--jobs", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return root, proc, root / "gradebook.sqlite"


def _wait_until_graded(db_path: Path, count: int, seconds: float = 240) -> int:
    """How many submissions the gradebook holds once it holds `count` (or the time is up)."""
    deadline, done = time.time() + seconds, 0
    while time.time() < deadline and done < count:
        time.sleep(0.3)
        if db_path.exists():
            try:
                done = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    return done


def test_ctrl_c_mid_batch_keeps_what_was_graded_in_the_reports(tmp_path):
    """A TA presses Ctrl-C while a batch runs: the submissions graded so far are in grades.csv, and nothing of
    the stopped lanes (kernels, scratch folders) outlives the command once the next run has started."""
    ids = [f"c{i}" for i in range(5)]
    root, proc, db_path = _batch_under_way(tmp_path, ids)
    _wait_until_graded(db_path, 2)
    os.killpg(proc.pid, signal.SIGINT)          # what a terminal sends to the command's process group
    proc.wait(timeout=120)
    graded = {r[0] for r in sqlite3.connect(db_path).execute("SELECT student_id FROM submissions")}
    assert 2 <= len(graded) < len(ids), "the batch finished before Ctrl-C"
    assert set(read_grades(root / "graded" / "t" / "grades.csv")) == graded
    scratch = [p for p in Path(tempfile.gettempdir()).glob(f"hwk-{proc.pid}-*")]
    hwkit("grade", "t", "--course", root, "--jobs", "1")
    assert not [p for p in scratch if p.exists()]


def test_a_hanging_part_costs_only_its_own_points(tmp_path):
    """Each part is asked on its own with its own time limit: a part whose answer never finishes reading, or
    whose reading raises KeyboardInterrupt, costs that part only; the parts after it keep their points."""
    root = make_course(tmp_path, ["receptive-field"], ["s01", "s02"])
    config = root / "hwkit.toml"
    config.write_text(config.read_text().replace("cell_timeout = 60", "cell_timeout = 3"))
    nb = solution_notebook(root, "s01")          # reading rf_final (the first probe) never ends
    append_cell(nb, "class Forever(list):\n    def __iter__(self):\n        while True:\n            pass\n"
                    "rf_final = Forever()")
    submit(root, "s01", nb)
    nb = solution_notebook(root, "s02")          # reading rf_final raises KeyboardInterrupt
    append_cell(nb, "class Stop(list):\n    def __iter__(self):\n        raise KeyboardInterrupt\n"
                    "rf_final = Stop()")
    submit(root, "s02", nb)
    hwkit("grade", "t", "--course", root, "--jobs", "2")
    for sid in ("s01", "s02"):
        parts = _parts(root, sid)
        assert parts["rf_final"][0] == 0, (sid, parts["rf_final"])
        for part in ("rf_jump", "rf_out_size", "receptive_field"):
            assert parts[part][2] == "CORRECT", (sid, part, parts[part])
    feedback = {sid: sqlite3.connect(root / "gradebook.sqlite").execute(
        "SELECT feedback_en FROM parts WHERE student_id=? AND part='rf_final'", (sid,)).fetchone()[0] for sid in ("s01", "s02")}
    assert "Timeout" in feedback["s01"] and "KeyboardInterrupt" in feedback["s02"], feedback


ODD_TAGS = ["oops", ["rf_final"], 7, None, {"parts": "rf_final"}, {"parts": [1, None, {"x": 1}]}, {"parts": {}}]


def test_cell_tags_a_tool_mangled_do_not_cost_correct_work(tmp_path):
    """A careless student (or an editor extension) leaves the cells' `hwkit` metadata as strings, lists or
    numbers: the notebook is graded like one whose tags were deleted, and correct work keeps full marks."""
    root = make_course(tmp_path, ["receptive-field"], ["s01"])
    nb = solution_notebook(root, "s01")
    for i, cell in enumerate(nb.cells):
        cell.metadata["hwkit"] = ODD_TAGS[i % len(ODD_TAGS)]
    nb.metadata["hwkit"]["lang"] = ["en"]
    result = grade_result(root, "s01", nb)
    assert result.status == Status.OK, (result.status, result.reason)
    assert result.score == result.max_score, [(p.part, p.score, p.note) for p in result.parts]


def test_a_submission_the_grader_fails_on_awaits_a_person(tmp_path):
    """A grader error scores 0 for now and is retried by the next run; until then a person sees it in the review
    queue, and exports count it as awaiting review, so a 0 the student did not earn is never sent silently."""
    root = make_course(tmp_path, ["receptive-field"], ["s01"])
    path = submit(root, "s01", solution_notebook(root, "s01"))
    course = load_course(root)
    result = grader_error(course, course.assignment("t"), course.roster[0], path, "AttributeError: boom")
    assert result.status == Status.GRADER_ERROR and result.needs_review
    assert {item.flag for item in review_items([result])} == {"grader error"}
