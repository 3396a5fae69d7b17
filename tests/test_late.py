"""Deadlines: the instructor sets `due` and a late penalty; a notebook collected after the deadline loses its
share, shown as its own line, and a student's extension is honoured."""
from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from hwkit.course import HwkitError, Student, load_assignment, load_course
from hwkit.late import Submitted, days_late, penalty, submission_time
from tests.support import hwkit, make_course, read_grades, solution_notebook, submit

TZ = timezone(timedelta(hours=8))
DUE = datetime(2026, 12, 10, 23, 59, tzinfo=TZ)


def write_assignment(root, extra: str) -> None:
    (root / "assignments" / "t.toml").write_text(
        f'title = "T"\n{extra}\n[[problems]]\nid = "receptive-field"\n', encoding="utf-8")


def test_days_late_count_started_days_after_the_due_time_and_the_extension(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], generate_now=False)
    write_assignment(root, 'due = "2026-12-10T23:59:00+08:00"\nlate_penalty_per_day = 0.1\nlate_penalty_max = 0.25')
    a = load_course(root).assignment("t")
    plain, extended = Student("a"), Student("b", "", (("extension_hours", "48"),))
    assert days_late(a, plain, Submitted(DUE)) == 0
    assert days_late(a, plain, Submitted(DUE + timedelta(minutes=1))) == 1
    assert days_late(a, plain, Submitted(DUE + timedelta(days=2, hours=1))) == 3
    assert days_late(a, extended, Submitted(DUE + timedelta(days=1, hours=23))) == 0
    assert days_late(a, plain, Submitted(None, marked_late=True)) == 1       # Canvas said LATE, no time known
    assert [penalty(a, d) for d in (0, 1, 2, 3, 9)] == [0, 0.1, 0.2, 0.25, 0.25]


def test_a_time_without_an_offset_is_the_courses_local_time(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "t.ipynb").write_text("{}")
    (folder / ".collected.json").write_text(json.dumps({"submitted_at": "2026-12-11T01:00:00", "late": True}))
    got = submission_time(folder / "t.ipynb", DUE)
    assert got.at == datetime(2026, 12, 11, 1, 0, tzinfo=TZ) and got.marked_late


@pytest.mark.parametrize("extra, message", [
    ('due = "2026-12-10T23:59:00"', "UTC offset"),
    ('due = "next friday"', "ISO 8601"),
    ("late_penalty_per_day = 10", "fraction"),
    ("late_penalty_max = -0.5", "fraction"),
])
def test_bad_deadline_settings_are_clear_errors(tmp_path, extra, message):
    root = make_course(tmp_path, ["receptive-field"], generate_now=False)
    write_assignment(root, extra)
    with pytest.raises(HwkitError, match=message):
        load_assignment(root / "assignments" / "t.toml")


def test_a_late_submission_loses_its_share_in_every_output(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], ["ontime", "late", "excused"], generate_now=False)
    (root / "roster.csv").write_text("student_id,name,canvas_id,extension_hours\nontime,A,11,\nlate,B,12,\n"
                                     "excused,C,13,72\n", encoding="utf-8")
    write_assignment(root, 'due = "2026-12-10T23:59:00+08:00"\nlate_penalty_per_day = 0.1')
    hwkit("generate", "t", "--course", root)
    download = tmp_path / "canvas.zip"
    with zipfile.ZipFile(download, "w") as zf:
        for sid, cid, when in (("ontime", 11, (2026, 12, 10, 20, 0, 0)), ("late", 12, (2026, 12, 12, 9, 0, 0)),
                               ("excused", 13, (2026, 12, 12, 9, 0, 0))):
            marker = "_LATE" if sid != "ontime" else ""
            info = zipfile.ZipInfo(f"student{marker}_{cid}_9{cid}_t.ipynb", date_time=when)
            zf.writestr(info, json.dumps(solution_notebook(root, sid)))
    hwkit("collect", "t", download, "--course", root)
    hwkit("grade", "t", "--course", root)
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    full = float(grades["ontime"]["max"])
    assert float(grades["ontime"]["total"]) == full and grades["ontime"]["late_days"] == ""
    assert grades["late"]["late_days"] == "2" and float(grades["late"]["total"]) == pytest.approx(0.8 * full)
    assert float(grades["late"]["late_penalty"]) == pytest.approx(0.2 * full)
    assert grades["excused"]["late_days"] == "" and float(grades["excused"]["total"]) == full
    page = (root / "graded" / "t" / "late" / "feedback.html").read_text(encoding="utf-8")
    assert "迟交 2 天" in page or "Late by 2 day(s)" in page
    hwkit("export", "t", "--course", root, "--format", "canvas", "--allow-provisional", "--output", tmp_path / "c.csv")
    exported = {row[1]: row[5] for row in (line.split(",") for line in
                                           (tmp_path / "c.csv").read_text(encoding="utf-8").splitlines()[2:])}
    assert float(exported["12"]) == pytest.approx(0.8 * full)
    # after grading, the TA grants "late" a 48-hour extension and the instructor softens the penalty: the next
    # `hwkit grade` applies both without regrading anything, in every output
    (root / "roster.csv").write_text("student_id,name,canvas_id,extension_hours\nontime,A,11,\nlate,B,12,24\n"
                                     "excused,C,13,72\n", encoding="utf-8")
    write_assignment(root, 'due = "2026-12-10T23:59:00+08:00"\nlate_penalty_per_day = 0.05')
    out = hwkit("grade", "t", "--course", root).stdout
    assert "Graded 0 submission" in out and "1 late penalty" in " ".join(out.split()), out
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    assert grades["late"]["late_days"] == "1" and float(grades["late"]["total"]) == pytest.approx(0.95 * full)
    assert float(grades["ontime"]["total"]) == float(grades["excused"]["total"]) == full
    page = (root / "graded" / "t" / "late" / "feedback.html").read_text(encoding="utf-8")
    assert "迟交 1 天" in page or "Late by 1 day(s)" in page


def test_lateness_known_only_from_a_files_time_is_pointed_out(tmp_path):
    """A TA copies the class's notebooks into submitted/ with plain `cp` (not `cp -a`, not `hwkit collect`): each
    file's time is the copy's, and everyone is late. Grading says how many were found late by the file's time
    alone, so the TA checks before exporting; a notebook `hwkit collect` filed, late or not, is not among them."""
    root = make_course(tmp_path, ["receptive-field"], ["copied", "collected"], generate_now=False)
    write_assignment(root, 'due = "2026-11-01T23:59:00+08:00"\nlate_penalty_per_day = 0.1')
    hwkit("generate", "t", "--course", root)
    submit(root, "copied", solution_notebook(root, "copied"))
    submit(root, "collected", solution_notebook(root, "collected"))
    (root / "submitted" / "t" / "collected" / ".collected.json").write_text(
        json.dumps({"submitted_at": "2026-11-03T10:00:00+08:00"}), encoding="utf-8")
    out = " ".join(hwkit("grade", "t", "--course", root).stdout.split())
    assert "1 late by the file's modification time alone" in out and "cp -a" in out, out
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    assert int(grades["copied"]["late_days"]) > 0 and grades["collected"]["late_days"] == "2"


@pytest.mark.parametrize("value", ["48h", "inf", "nan", "-24", "2 days", "1e9"])
def test_an_extension_that_is_not_a_number_of_hours_is_a_clear_error(tmp_path, value):
    """A TA types `48h` or `2 days` in the roster: hwkit says which line is wrong instead of charging the student
    as if there were no extension (or failing that student's grading on `inf`)."""
    from hwkit.course import load_roster

    path = tmp_path / "roster.csv"
    path.write_text(f"student_id,name,extension_hours\ns1,A,24\ns2,B,{value}\ns3,C,\n", encoding="utf-8")
    with pytest.raises(HwkitError, match=r"roster.csv:3: extension_hours"):
        load_roster(path)
    path.write_text("student_id,name,extension_hours\ns1,A,24\ns2,B,36.5\ns3,C,\n", encoding="utf-8")
    assert [s.column("extension_hours") for s in load_roster(path)] == ["24", "36.5", ""]
