"""What people read: per-student feedback pages, grades.csv, the assignment summary, LMS exports."""
from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

from hwkit.course import Course, HwkitError
from hwkit.figures import PartFigures, part_figures
from hwkit.fsutil import atomic_write_text
from hwkit.gradebook import Gradebook, SubmissionResult, bounded
from hwkit.records import Status
from hwkit.wording import in_language, status_in

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.35em .6em;text-align:left;"
          "vertical-align:top}th{background:#f3f3f3}.full{color:#176b2c}.part{color:#9a6700}.zero{color:#b42318}"
          ".review{font-size:.85em;color:#555}.figure img{max-width:100%;margin-top:.4em}")

_LABELS = {
    "en": {"title": "Feedback", "student": "Student", "status": "Status", "total": "Total", "part": "Part",
           "score": "Score", "feedback": "Feedback", "review": "provisional, reviewed by an instructor",
           "problem": "Problem", "reviewed": "set by {who} (the grader gave {auto})", "comment": "Comment",
           "automatic": "automatic score", "final": "final score", "provisional": "provisional score",
           "mismatch": "this notebook does not look like your own variant; an instructor will review it",
           "figure": "a figure your notebook drew", "left_out": "{n} figure(s) of your notebook are too large or "
           "too many to show here; they are in the executed notebook.",
           "graded": "Graded notebook", "metadata": "of the {n} notebooks in your folder, the one whose hwkit "
           "metadata names this assignment", "name": "of the {n} notebooks in your folder, the one named after "
           "this assignment"},
    "zh": {"title": "评分反馈", "student": "学号", "status": "状态", "total": "总分", "part": "小题",
           "score": "得分", "feedback": "反馈", "review": "暂定分数，将由教师复核", "problem": "题目",
           "reviewed": "由 {who} 评定（自动评分为 {auto}）", "comment": "评语", "automatic": "自动评分",
           "final": "最终分数", "provisional": "暂定分数",
           "mismatch": "该笔记本似乎不是你本人的题目版本，将由教师复核",
           "figure": "你的笔记本绘制的图", "left_out": "你的笔记本中有 {n} 幅图过大或过多，未在此显示；可在执行后的笔记本中查看。",
           "graded": "评分的笔记本", "metadata": "你的文件夹中有 {n} 个笔记本，评分的是 hwkit 元数据写明本次作业的那一个",
           "name": "你的文件夹中有 {n} 个笔记本，评分的是以本次作业命名的那一个"},
}


def _css_class(score: float, max_points: float) -> str:
    return "full" if score >= max_points else ("zero" if score <= 0 else "part")


@lru_cache(maxsize=1)
def _pages():
    """hwkit's page templates (hwkit/pages), autoescaped; one environment per process, so each template is
    compiled once, not once per feedback page (a tenth of a CPU-second each)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("hwkit", "pages"), autoescape=select_autoescape(["html"]))


def feedback_html(result: SubmissionResult, lang: str, figures: PartFigures | None = None) -> str:
    """The student's page: score per part, the feedback sentences, and the figures the student's notebook drew
    beside the part they belong to (hwkit/figures.py); no hidden inputs, no reference values."""
    t = _LABELS[lang]
    # A mismatch's reason names another student: it is for the instructor (grades.csv, summary), not this page.
    reason = t["mismatch"] if result.status == Status.VARIANT_MISMATCH else in_language(bounded(result.reason), lang)
    return _pages().get_template("feedback.html").render(
        lang=lang, t=t, r=result, style=_STYLE, css=_css_class, kind=t[score_kind(result)],
        status=status_in(result.status, lang) + (f" — {reason}" if reason else ""), late=late_text(result, lang),
        chosen=t[result.chosen_by].format(n=result.notebooks) if result.chosen_by in ("metadata", "name") else "",
        figures=figures or PartFigures())


def late_text(result: SubmissionResult, lang: str) -> str:
    """The late penalty as its own line ('' when on time)."""
    if not result.late_days:
        return ""
    lost = result.points - result.score
    if lang == "zh":
        return f"迟交 {result.late_days} 天：扣除 {lost:g} 分（{result.penalty:.0%}），扣分前为 {result.points:g} 分"
    return (f"Late by {result.late_days} day(s): {lost:g} point(s) deducted ({result.penalty:.0%}); "
            f"{result.points:g} before the deduction")


def score_kind(result: SubmissionResult) -> str:
    """Which score a total is: "provisional" (a part awaits a person), "final" (a person changed or confirmed a
    part, none awaits) or "automatic" (the grader's alone)."""
    if result.needs_review:
        return "provisional"
    return "final" if any(p.overridden for p in result.parts) else "automatic"


def review_count(results: list[SubmissionResult]) -> tuple[int, int]:
    """(parts that need review, submissions they belong to), of final results."""
    return sum(p.needs_review for r in results for p in r.parts), sum(r.needs_review for r in results)


def _problems(results: list[SubmissionResult]) -> list[str]:
    seen = {}
    for r in results:
        for p in r.parts:
            seen.setdefault(p.problem, None)
    return list(seen)


def grades_rows(results: list[SubmissionResult]) -> tuple[list[str], list[dict]]:
    problems = _problems(results)
    header = ["student_id", *problems, "total", "max", "status", "needs_review", "reason", "score_kind",
              "overridden", "late_days", "late_penalty"]
    rows = []
    for r in results:
        per = defaultdict(float)
        for p in r.parts:
            per[p.problem] += p.score
        rows.append({"student_id": r.student_id, **{k: f"{per[k]:g}" if k in per else "" for k in problems},
                     "total": f"{r.score:g}", "max": f"{r.max_score:g}", "status": r.status,
                     "needs_review": "yes" if r.needs_review else "", "reason": bounded(r.reason),
                     "score_kind": score_kind(r),
                     "overridden": " ".join(f"{p.part}={p.score:g}" for p in r.parts if p.overridden),
                     "late_days": str(r.late_days) if r.late_days else "",
                     "late_penalty": f"{r.points - r.score:g}" if r.penalty else ""})
    return header, rows


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> Path:
    from hwkit.lms import spreadsheet_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({key: spreadsheet_text(value) for key, value in row.items()} for row in rows)
    return atomic_write_text(path, buf.getvalue())


def write_feedback(course: Course, result: SubmissionResult, executed: str | None = ...) -> Path:
    """graded/<assignment>/<student>/feedback.html, replaced atomically, with the figures of the executed
    notebook (given, or as grading kept it; None: there is none)."""
    folder = course.root / "graded" / result.assignment / result.student_id
    folder.mkdir(parents=True, exist_ok=True)
    if executed is ...:
        kept = folder / f"{result.assignment}.ipynb"
        executed = kept.read_text(encoding="utf-8", errors="replace") if kept.is_file() else None
    lang = result.lang or course.lang     # a mixed course: each student reads the language of their notebook
    return atomic_write_text(folder / "feedback.html", feedback_html(result, lang, part_figures(executed)))


_BINS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.01]


def _histogram(results: list[SubmissionResult], path: Path) -> None:
    """The class's scores in ten bins. Drawn again only when a bin changed: a rerun that graded nothing (or
    graded a few without moving a bin) does not pay matplotlib's import, about a CPU-second."""
    scores = [100 * r.score / r.max_score for r in results if r.max_score]
    counts = [sum(low <= s < high for s in scores) for low, high in zip(_BINS, _BINS[1:])]
    drawn = path.with_name(f".{path.name}.bins")
    key = f"{len(scores)} {counts}"
    if path.is_file() and drawn.is_file() and drawn.read_text(encoding="utf-8") == key:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(scores, bins=_BINS, color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("score (%)")
    ax.set_ylabel("students")
    ax.set_title(f"{len(scores)} submissions")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    atomic_write_text(drawn, key)


def mismatch_count(results: list[SubmissionResult]) -> str:
    """'2 variant mismatches', for the summary page and the last line of `hwkit grade`."""
    n = sum(r.status == Status.VARIANT_MISMATCH for r in results)
    return f"{n} variant mismatch{'' if n == 1 else 'es'}"


def summary_html(assignment: str, results: list[SubmissionResult], top: int = 5, lang: str = "en") -> str:
    """The instructor's page for the assignment, in the course's language (jinja2, autoescaped)."""
    notes = defaultdict(Counter)
    for r in results:
        for p in r.parts:
            if p.note != "CORRECT":
                notes[(p.problem, p.part)][p.note] += 1
    waiting, waiting_students = review_count(results)
    return _pages().get_template("summary.html").render(
        lang=lang, assignment=assignment, style=_STYLE, students=len(results),
        mean=sum(r.score for r in results) / len(results) if results else 0,
        statuses=[(status_in(s, lang), n) for s, n in Counter(r.status for r in results).most_common()],
        late=sum(bool(r.late_days) for r in results),
        overridden=sum(p.overridden for r in results for p in r.parts), waiting=waiting,
        waiting_students=waiting_students, mismatches=mismatch_count(results),
        flagged=[r for r in results if r.status == Status.VARIANT_MISMATCH],
        evidence=lambda r: in_language(bounded(r.reason), lang),
        notes=[(key, counter.most_common(top)) for key, counter in notes.items()]) + "\n"


def on_roster(course: Course, results: list[SubmissionResult]) -> list[SubmissionResult]:
    """The results of students on the roster now (one taken off keeps their record in the gradebook only)."""
    enrolled = {s.student_id for s in course.roster}
    return [r for r in results if r.student_id in enrolled]


def write_reports(course: Course, assignment: str, results: list[SubmissionResult],
                  histogram: bool = True) -> dict[str, Path]:
    results = on_roster(course, results)
    folder = course.root / "graded" / assignment
    folder.mkdir(parents=True, exist_ok=True)
    header, rows = grades_rows(results)
    grades = _write_csv(folder / "grades.csv", header, rows)
    if histogram:
        write_histogram(course, assignment, results)
    summary = atomic_write_text(folder / "summary.html", summary_html(assignment, results, lang=course.lang))
    return {"grades": grades, "summary": summary}


def write_histogram(course: Course, assignment: str, results: list[SubmissionResult]) -> None:
    _histogram(results, course.root / "graded" / assignment / "histogram.png")


def export_grades(course: Course, assignment: str, fmt: str, output: Path | None = None,
                  allow_provisional: bool = False, template: Path | None = None,
                  column: str | None = None) -> tuple[Path, str]:
    """Write the export; returns its path and a warning ("" when every score is final). With a template (the
    LMS's own gradebook export or grading worksheet), that file's layout is kept and filled (hwkit/lms.py)."""
    from hwkit import lms

    from hwkit.grading.submissions import not_graded

    book = Gradebook(course.root)
    results = on_roster(course, book.results(assignment))
    behind = not_graded(course, assignment, book)
    book.close()
    if not results:
        raise HwkitError(f"{course.root / 'gradebook.sqlite'}: no grades for {assignment}; run `hwkit grade {assignment}` first")
    waiting, students = review_count(results)
    warnings = [f"{waiting} part(s) of {students} submission(s) of {assignment} still need review "
                f"(`hwkit review {assignment}`, or `--list`)"] if waiting else []
    if behind:
        shown = ", ".join(behind[:5]) + (" ..." if len(behind) > 5 else "")
        warnings.append(f"{len(behind)} submission(s) not graded as they are now, new or resubmitted since grading "
                        f"({shown}; run `hwkit grade {assignment}`)")
    warning = "; ".join(warnings)
    if warning and not allow_provisional:
        raise HwkitError(f"{warning}; nothing exported. Settle them first, or pass --allow-provisional to export "
                         "provisional scores")
    if warning:
        warning += "; the export holds provisional scores"
    names = {s.student_id: s.name for s in course.roster}
    folder = course.root / "graded" / assignment
    folder.mkdir(parents=True, exist_ok=True)
    spec = course.assignment(assignment)
    path = output or folder / f"grades-{fmt}.csv"
    if template is not None:
        text, missing = lms.export_with_template(course, spec, fmt, template, results, column, _moodle_feedback)
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            warning = "; ".join(w for w in (warning, f"{len(missing)} graded student(s) have no row in the "
                                                     f"template ({shown})") if w)
        return atomic_write_text(path, text), warning
    if fmt == "csv":
        header, rows = grades_rows(results)
    elif fmt == "canvas":
        return atomic_write_text(path, lms.write_rows(lms.canvas_minimal(spec, course.roster, results), "\r\n", False)), \
            warning
    elif fmt == "moodle":
        # Moodle "Import grades from CSV": map "ID number" to the user field of the same name.
        header = ["ID number", "Full name", assignment, "Feedback"]
        rows = [{"ID number": r.student_id, "Full name": names.get(r.student_id, ""), assignment: f"{r.score:g}",
                 "Feedback": _moodle_feedback(r)} for r in results]
    else:
        raise HwkitError(f"--format {fmt!r}: use csv, canvas or moodle")
    return _write_csv(path, header, rows), warning


def _moodle_feedback(result: SubmissionResult) -> str:
    """The status when not ok, whether the total is provisional, and the reviewers' comments per part."""
    said = [result.status] if result.status != Status.OK else []
    if result.late_days:
        said.append(f"late {result.late_days} day(s): -{result.points - result.score:g} ({result.penalty:.0%})")
    if result.needs_review:
        said.append("provisional")
    said += [f"{p.part}: {p.comment}" for p in result.parts if p.overridden and p.comment]
    return bounded("; ".join(said), 2000)
