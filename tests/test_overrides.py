"""A TA decides scores from the command line: `hwkit override` reaches grades.csv, the feedback page, the summary
and the LMS exports; bad input is refused with a clear message and nothing written; a regrade keeps every decision
whose answer is unchanged and asks again where the answer changed; export waits until nothing needs review."""
import csv
import sqlite3
from dataclasses import replace

import pytest

from hwkit.gradebook import Gradebook
from tests.review_support import ASSIGNMENT, course_state, synthetic_course
from tests.support import hwkit, read_grades


@pytest.fixture
def course(tmp_path):
    return synthetic_course(tmp_path, students=3)


def _grades(root):
    return read_grades(root / "graded" / ASSIGNMENT / "grades.csv")


def test_override_reaches_every_output_and_is_recorded(course):
    root, ids = course
    proc = hwkit("override", ASSIGNMENT, ids[0], "ds_principle", "1.75", "--course", root,
                 "--comment", "Right idea; the cost argument is missing.", "--grader", "ta-ben")
    assert "1 -> 1.75 (by ta-ben)" in proc.stdout
    row = _grades(root)[ids[0]]
    assert row["total"] == "2.75" and row["overridden"] == "ds_principle=1.75" and row["score_kind"] == "final"
    page = (root / "graded" / ASSIGNMENT / ids[0] / "feedback.html").read_text()
    assert "Right idea; the cost argument is missing." in page and "1.75 / 2" in page and "final score" in page
    assert "1 part(s) set by a person" in (root / "graded" / ASSIGNMENT / "summary.html").read_text()
    db = sqlite3.connect(root / "gradebook.sqlite")
    [stored] = db.execute("SELECT student_id, part, score, comment, grader, replaced_score, nb_hash, fingerprint, "
                          "created_at FROM overrides").fetchall()
    assert stored[:8] == (ids[0], "ds_principle", 1.75, "Right idea; the cost argument is missing.", "ta-ben", 1.0,
                          f"hash-{ids[0]}", stored[7]) and stored[7] and stored[8]
    # the automatic score stays in the gradebook; the override is a record of its own
    assert db.execute("SELECT score FROM parts WHERE student_id=? AND part='ds_principle'", (ids[0],)).fetchone() == (1.0,)


def test_the_os_user_is_the_grader_by_default(course):
    root, ids = course
    import getpass

    hwkit("override", ASSIGNMENT, ids[1], "depthwise-separable/ds_standard_formula", "0", "--course", root)
    book = Gradebook(root)
    [o] = book.override_history(ASSIGNMENT, ids[1])
    book.close()
    assert o.grader == getpass.getuser() and o.problem == "depthwise-separable" and o.score == 0


@pytest.mark.parametrize("args, says", [
    (["s0000", "ds_principle", "-1"], "out of range"), (["s0000", "ds_principle", "1e9"], "out of range"),
    (["s0000", "ds_principle", "abc"], "not a number"), (["s0000", "ds_principle", "nan"], "out of range"),
    (["s0000", "ds_principle", "inf"], "out of range"), (["s0000", "ds_principle", "2.5"], "from 0 to 2"),
    (["s0000", "no_such_part", "1"], "has no part 'no_such_part'"),
    (["nobody", "ds_principle", "1"], "'nobody' has no graded submission"),
])
def test_bad_input_is_refused_clearly_and_nothing_is_written(course, args, says):
    root, _ = course
    before = course_state(root)
    proc = hwkit("override", ASSIGNMENT, *args, "--course", root, "--comment", "must not be saved", check=False)
    assert proc.returncode != 0 and says in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert course_state(root) == before


def test_review_list_names_what_needs_a_person(course):
    root, ids = course
    hwkit("override", ASSIGNMENT, ids[2], "ds_principle", "2", "--course", root)
    lines = hwkit("review", ASSIGNMENT, "--course", root, "--list").stdout.splitlines()
    assert lines[:-1] == [f"{sid}\tds_principle\tdepthwise-separable\twritten answer\t1/2" for sid in ids[:2]]
    assert lines[-1] == "# 2 part(s) of 2 submission(s) need review"


def test_export_waits_for_every_decision(course, tmp_path):
    root, ids = course
    out = tmp_path / "moodle.csv"
    proc = hwkit("export", ASSIGNMENT, "--course", root, "--format", "moodle", "--output", out, check=False)
    assert proc.returncode != 0 and "3 part(s) of 3 submission(s)" in proc.stderr and not out.exists()
    proc = hwkit("export", ASSIGNMENT, "--course", root, "--format", "moodle", "--output", out, "--allow-provisional")
    assert "warning" in proc.stderr and "provisional" in out.read_text()
    for sid in ids:
        hwkit("override", ASSIGNMENT, sid, "ds_principle", "2", "--course", root, "--comment", f"ok {sid}")
    proc = hwkit("export", ASSIGNMENT, "--course", root, "--format", "moodle", "--output", out)
    assert "warning" not in proc.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["ID number"], r[ASSIGNMENT], r["Feedback"]) for r in rows] == [
        (sid, "3", f"ds_principle: ok {sid}") for sid in ids]


def test_a_regrade_keeps_decisions_on_unchanged_answers_and_flags_changed_ones(course):
    root, ids = course
    for sid in ids[:2]:
        hwkit("override", ASSIGNMENT, sid, "ds_principle", "1.5", "--course", root, "--comment", "kept?")
    book = Gradebook(root)
    raw = {r.student_id: r for r in book.results(ASSIGNMENT, final=False)}
    # the grader runs again: the same answer for ids[0], a new answer for ids[1] (another fingerprint)
    book.record(replace(raw[ids[0]], graded_at="later"))
    changed = raw[ids[1]]
    changed.parts[0] = replace(changed.parts[0], answer="A new answer.", fingerprint="fp-new")
    book.record(replace(changed, graded_at="later"))
    final = {r.student_id: r for r in book.results(ASSIGNMENT)}
    history = book.override_history(ASSIGNMENT, ids[1])
    book.close()
    kept = final[ids[0]].parts[0]
    assert kept.score == 1.5 and kept.comment == "kept?" and not kept.needs_review and kept.automatic_score == 1.0
    asked = final[ids[1]].parts[0]
    assert asked.score == 1.0 and asked.needs_review and "answer changed" in asked.stale_override
    assert [o.score for o in history] == [1.5]                           # the decision itself is never lost
    lines = hwkit("review", ASSIGNMENT, "--course", root, "--list").stdout
    assert f"{ids[1]}\tds_principle\tdepthwise-separable\tanswer changed after an override" in lines


def test_a_variant_mismatch_awaits_a_decision_on_every_part(course, tmp_path):
    root, ids = course
    book = Gradebook(root)
    [raw] = book.results(ASSIGNMENT, [ids[0]], final=False)
    book.record(replace(raw, status="variant mismatch", reason="parameter cells match s0001's variant"))
    book.close()
    hwkit("override", ASSIGNMENT, ids[0], "ds_principle", "1", "--course", root)
    listed = hwkit("review", ASSIGNMENT, "--course", root, "--list").stdout
    assert f"{ids[0]}\tds_standard_formula\tdepthwise-separable\tvariant mismatch\t1/1" in listed
    hwkit("override", ASSIGNMENT, ids[0], "ds_standard_formula", "0", "--course", root, "--comment", "Not your own.")
    assert ids[0] not in hwkit("review", ASSIGNMENT, "--course", root, "--list").stdout
    row = _grades(root)[ids[0]]
    assert row["status"] == "variant mismatch" and row["needs_review"] == "" and row["total"] == "1"


def test_a_decision_worth_more_than_the_part_now_is_asked_again_not_applied(course):
    """The instructor lowers a problem's points after a TA's override: the override (more than the part is now
    worth) is kept on record and the part asks for a new decision; the total never exceeds the maximum."""
    root, ids = course
    hwkit("override", ASSIGNMENT, ids[0], "ds_principle", "2", "--course", root)
    book = Gradebook(root)
    raw = {r.student_id: r for r in book.results(ASSIGNMENT, final=False)}[ids[0]]
    raw.parts[0] = replace(raw.parts[0], max_points=0.5, score=0.5)     # regraded with the problem's new points
    book.record(replace(raw, graded_at="later"))
    final = {r.student_id: r for r in book.results(ASSIGNMENT)}[ids[0]]
    history = book.override_history(ASSIGNMENT, ids[0])
    book.close()
    part = final.parts[0]
    assert part.score == 0.5 and part.needs_review and "worth" in part.stale_override, part
    assert final.score <= final.max_score and [o.score for o in history] == [2.0]
    lines = hwkit("review", ASSIGNMENT, "--course", root, "--list").stdout
    assert f"{ids[0]}\tds_principle\tdepthwise-separable\tpoints lowered after an override" in lines


def test_export_waits_for_submissions_not_graded_yet(course, tmp_path):
    """Every decision is made, but a student resubmitted after grading and another's notebook arrived after the
    run: the export refuses (or, with --allow-provisional, warns) instead of sending old or missing grades."""
    root, ids = course
    for sid in ids:
        hwkit("override", ASSIGNMENT, sid, "ds_principle", "2", "--course", root)
    out = tmp_path / "canvas.csv"
    hwkit("export", ASSIGNMENT, "--course", root, "--format", "canvas", "--output", out)
    (root / "roster.csv").write_text((root / "roster.csv").read_text(encoding="utf-8") + "late1,Late Student\n",
                                     encoding="utf-8")
    for sid in (ids[0], "late1"):                     # a resubmission, and a notebook never graded
        folder = root / "submitted" / ASSIGNMENT / sid
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_text('{"cells": []}', encoding="utf-8")
    out.unlink()
    proc = hwkit("export", ASSIGNMENT, "--course", root, "--format", "canvas", "--output", out, check=False)
    message = " ".join(proc.stderr.split())
    assert proc.returncode != 0 and not out.exists(), proc.stderr
    assert "2 submission(s)" in message and "hwkit grade" in message and ids[0] in message and "late1" in message
    proc = hwkit("export", ASSIGNMENT, "--course", root, "--format", "canvas", "--output", out, "--allow-provisional")
    assert "not graded" in " ".join(proc.stderr.split()) and out.exists()


def test_a_student_taken_off_the_roster_leaves_the_grades_and_exports(course, tmp_path):
    """A student who dropped the course is removed from the roster: their old result stays in the gradebook,
    but grades.csv, the summary's statistics and the LMS export are the roster's students only."""
    from hwkit.course import load_course
    from hwkit.report import write_reports

    root, ids = course
    for sid in ids:
        hwkit("override", ASSIGNMENT, sid, "ds_principle", "2", "--course", root)
    roster = root / "roster.csv"
    roster.write_text("".join(line for line in roster.read_text(encoding="utf-8").splitlines(keepends=True)
                              if not line.startswith(ids[2])), encoding="utf-8")
    out = tmp_path / "moodle.csv"
    hwkit("export", ASSIGNMENT, "--course", root, "--format", "moodle", "--output", out)
    assert [r["ID number"] for r in csv.DictReader(out.open(encoding="utf-8"))] == ids[:2]
    book = Gradebook(root)
    write_reports(load_course(root), ASSIGNMENT, book.results(ASSIGNMENT), histogram=False)
    assert len(book.results(ASSIGNMENT)) == 3
    book.close()
    assert sorted(_grades(root)) == ids[:2]
    assert ids[2] not in (root / "graded" / ASSIGNMENT / "summary.html").read_text(encoding="utf-8")
