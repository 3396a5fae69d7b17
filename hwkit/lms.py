"""Grades out in the layouts Canvas and Moodle import.

- Canvas, with the instructor's own gradebook export as template (`--template`): the assignment's column is
  filled (matched by the Canvas assignment id when the assignment TOML sets `canvas_assignment_id`, else by its
  name: the assignment id or title followed by Canvas's ` (id)`), students matched by Canvas user id, then SIS
  user id; every other cell, the `Points Possible` row, the BOM and the line endings are kept, so the file
  re-imports untouched. Without a template, the minimal import layout: `Student, ID, SIS User ID, SIS Login ID,
  Section`, then a column named `Title (canvas id)` when the id is configured, else just the title (a number
  in brackets would be read as an assignment id), and a `Points Possible` row.
- Moodle, with the assignment's offline grading worksheet as template: `Grade` and `Feedback comments` filled,
  students matched by `Identifier` (`Participant N` = the roster's moodle_participant), then email, then a
  unique full name. Without a template, the plain `ID number` layout for "Import grades from CSV"."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from hwkit.course import Assignment, Course, HwkitError, Student
from hwkit.gradebook import SubmissionResult

MAX_TEMPLATE_BYTES = 50 * 2**20


def read_template(path: Path) -> tuple[list[list[str]], str, bool]:
    """The rows of an LMS's CSV, its line ending and whether it started with a BOM."""
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise HwkitError(f"{path}: larger than {MAX_TEMPLATE_BYTES // 2**20} MB; not a gradebook export")
        raw = path.read_bytes()
    except OSError as exc:
        raise HwkitError(f"{path}: cannot be read ({exc.strerror})") from None
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HwkitError(f"{path}: not UTF-8 text; export the gradebook as UTF-8 CSV") from None
    ending = "\r\n" if "\r\n" in text else "\n"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise HwkitError(f"{path}: empty")
    return rows, ending, bom


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value):
    """A cell as a spreadsheet will show it, never run it: text that would start a formula (=, +, -, @, a tab or
    a carriage return first; roster names often come from profiles students edit) gets a leading apostrophe.
    Numbers, negative ones too, are left alone."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def write_rows(rows: list[list[str]], ending: str, bom: bool) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=ending).writerows(rows)
    return ("\ufeff" if bom else "") + buf.getvalue()


def _score(result: SubmissionResult) -> str:
    return f"{result.score:g}"


# ---- Canvas -------------------------------------------------------------------------------------------

def canvas_column(header: list[str], assignment: Assignment, column: str | None) -> int:
    if column is not None:
        if column not in header:
            raise HwkitError(f"--column {column!r}: not a column of the template; it has {', '.join(header[5:][:10])}")
        return header.index(column)
    if assignment.canvas_assignment_id:
        found = [i for i, h in enumerate(header) if h.strip().endswith(f"({assignment.canvas_assignment_id})")]
        if len(found) == 1:
            return found[0]
    names = {assignment.assignment_id.casefold(), assignment.title.casefold()}
    found = [i for i, h in enumerate(header)
             if re.sub(r"\s*\(\d+\)\s*$", "", h).strip().casefold() in names]
    if len(found) == 1:
        return found[0]
    raise HwkitError(f"the template has {'several columns' if found else 'no column'} for {assignment.assignment_id} "
                     f"(looked for {assignment.assignment_id!r} or {assignment.title!r}, with Canvas's ' (id)'); "
                     "name it with --column, or set canvas_assignment_id in the assignment's TOML")


def canvas_from_template(rows: list[list[str]], assignment: Assignment, roster: list[Student],
                         results: list[SubmissionResult], column: str | None = None) -> tuple[list[list[str]], list[str]]:
    """The template's rows with the assignment's column filled; and the roster students it has no row for."""
    header = rows[0]
    col = canvas_column(header, assignment, column)
    at = {name: header.index(name) for name in ("ID", "SIS User ID") if name in header}
    if not at:
        raise HwkitError("the template has neither an 'ID' nor an 'SIS User ID' column: not a Canvas gradebook export")
    by_result = {r.student_id: r for r in results}
    by_canvas = {s.column("canvas_id"): s for s in roster if s.column("canvas_id")}
    by_sis = {s.column("sis_id") or s.student_id: s for s in roster}
    out, seen = [list(header)], set()
    for row in rows[1:]:
        row = list(row)
        student = None
        if "ID" in at and at["ID"] < len(row):
            student = by_canvas.get(row[at["ID"]].strip())
        if student is None and "SIS User ID" in at and at["SIS User ID"] < len(row):
            student = by_sis.get(row[at["SIS User ID"]].strip())
        if student is not None and student.student_id in by_result and col < len(row):
            row[col] = _score(by_result[student.student_id])
            seen.add(student.student_id)
        out.append(row)
    missing = sorted(set(by_result) - seen)
    return out, missing


def canvas_minimal(assignment: Assignment, roster: list[Student], results: list[SubmissionResult]) -> list[list[str]]:
    title = assignment.title or assignment.assignment_id
    column = f"{title} ({assignment.canvas_assignment_id})" if assignment.canvas_assignment_id \
        else re.sub(r"\s*\(\d+\)\s*$", "", title)
    students = {s.student_id: s for s in roster}
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column],
            ["    Points Possible", "", "", "", "", f"{results[0].max_score:g}" if results else ""]]
    for r in results:
        s = students.get(r.student_id, Student(r.student_id))
        rows.append([spreadsheet_text(s.name), s.column("canvas_id"), s.column("sis_id") or s.student_id, "", "",
                     _score(r)])
    return rows


# ---- Moodle -------------------------------------------------------------------------------------------

def moodle_from_template(rows: list[list[str]], roster: list[Student], results: list[SubmissionResult],
                         feedback) -> tuple[list[list[str]], list[str]]:
    header = rows[0]
    for needed in ("Identifier", "Grade"):
        if needed not in header:
            raise HwkitError(f"the template has no {needed!r} column: not a Moodle grading worksheet")
    ident, grade = header.index("Identifier"), header.index("Grade")
    email = header.index("Email address") if "Email address" in header else None
    name = header.index("Full name") if "Full name" in header else None
    comments = header.index("Feedback comments") if "Feedback comments" in header else None
    maximum = header.index("Maximum Grade") if "Maximum Grade" in header else None
    by_result = {r.student_id: r for r in results}
    by_pid = {s.column("moodle_participant"): s for s in roster if s.column("moodle_participant")}
    by_email = {s.column("email").casefold(): s for s in roster if s.column("email")}
    names: dict[str, list[Student]] = {}
    for s in roster:
        names.setdefault(s.name.casefold(), []).append(s)
    out, seen = [list(header)], set()
    for row in rows[1:]:
        row = list(row) + [""] * (len(header) - len(row))
        pid = re.sub(r"^\D*", "", row[ident])
        student = by_pid.get(pid)
        if student is None and email is not None:
            student = by_email.get(row[email].strip().casefold())
        if student is None and name is not None and len(names.get(row[name].strip().casefold(), [])) == 1:
            student = names[row[name].strip().casefold()][0]
        result = by_result.get(student.student_id) if student else None
        if result is not None:
            if maximum is not None and row[maximum].strip():
                try:
                    scale = float(row[maximum]) / result.max_score if result.max_score else 1.0
                except ValueError:
                    scale = 1.0
                row[grade] = f"{round(result.score * scale, 2):g}"
            else:
                row[grade] = _score(result)
            if comments is not None:
                row[comments] = feedback(result)
            seen.add(result.student_id)
        out.append(row)
    return out, sorted(set(by_result) - seen)


def export_with_template(course: Course, assignment: Assignment, fmt: str, template: Path,
                         results: list[SubmissionResult], column: str | None, feedback) -> tuple[str, list[str]]:
    rows, ending, bom = read_template(template)
    if fmt == "canvas":
        filled, missing = canvas_from_template(rows, assignment, course.roster, results, column)
    elif fmt == "moodle":
        filled, missing = moodle_from_template(rows, course.roster, results, feedback)
    else:
        raise HwkitError("--template works with --format canvas or moodle")
    return write_rows(filled, ending, bom), missing
