"""What people read: per-student feedback pages, grades.csv, the assignment summary, LMS exports."""
from __future__ import annotations

import csv
import html
import io
from collections import Counter, defaultdict
from pathlib import Path

from hwkit.course import Course, HwkitError
from hwkit.figures import PartFigures
from hwkit.gradebook import VARIANT_MISMATCH, Gradebook, SubmissionResult, bounded

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.35em .6em;text-align:left;"
          "vertical-align:top}th{background:#f3f3f3}.full{color:#176b2c}.part{color:#9a6700}.zero{color:#b42318}"
          ".review{font-size:.85em;color:#555}.figure img{max-width:100%;margin-top:.4em}")

_LABELS = {
    "en": {"title": "Feedback", "student": "Student", "status": "Status", "total": "Total", "part": "Part",
           "score": "Score", "feedback": "Feedback", "review": "provisional, reviewed by an instructor",
           "problem": "Problem",
           "mismatch": "this notebook does not look like your own variant; an instructor will review it",
           "figure": "a figure your notebook drew", "left_out": "{n} figure(s) of your notebook are too large or "
           "too many to show here; they are in the executed notebook."},
    "zh": {"title": "评分反馈", "student": "学号", "status": "状态", "total": "总分", "part": "小题",
           "score": "得分", "feedback": "反馈", "review": "暂定分数,将由教师复核", "problem": "题目",
           "mismatch": "该笔记本似乎不是你本人的题目版本,将由教师复核",
           "figure": "你的笔记本绘制的图", "left_out": "你的笔记本中有 {n} 幅图过大或过多，未在此显示；可在执行后的笔记本中查看。"},
}


def _css_class(score: float, max_points: float) -> str:
    return "full" if score >= max_points else ("zero" if score <= 0 else "part")


_FEEDBACK_PAGE = """<!doctype html><html lang="{{ lang }}"><head><meta charset="utf-8">
<title>{{ t.title }} {{ r.assignment }} {{ r.student_id }}</title><style>{{ style }}</style></head><body>
<h1>{{ t.title }}: {{ r.assignment }}</h1>
<p>{{ t.student }}: <b>{{ r.student_id }}</b><br>{{ t.status }}: {{ status }}<br>
{{ t.total }}: <b>{{ "%g"|format(r.score) }} / {{ "%g"|format(r.max_score) }}</b></p>
<table><tr><th>{{ t.problem }}</th><th>{{ t.part }}</th><th>{{ t.score }}</th><th>{{ t.feedback }}</th></tr>
{% for p in r.parts %}<tr><td>{{ p.problem }}</td><td>{{ p.title.get(lang) or p.part }}</td>
<td class="{{ css(p.score, p.max_points) }}">{{ "%g"|format(p.score) }} / {{ "%g"|format(p.max_points) }}</td>
<td>{{ p.feedback.get(lang, "") }}{% if p.needs_review %}<div class="review">{{ t.review }}</div>{% endif %}
{% for uri in figures.by_part.get(p.part, []) %}<div class="figure"><img src="{{ uri }}" alt="{{ t.figure }}"></div>{% endfor %}
</td></tr>
{% endfor %}</table>
{% if figures.left_out %}<p class="review">{{ t.left_out.format(n=figures.left_out) }}</p>{% endif %}
</body></html>
"""


def _page(source: str):
    import jinja2

    return jinja2.Environment(autoescape=True).from_string(source)


def feedback_html(result: SubmissionResult, lang: str, figures: PartFigures | None = None) -> str:
    """The student's page: score per part, the feedback sentences, and the figures the student's notebook drew
    beside the part they belong to (hwkit/figures.py); no hidden inputs, no reference values."""
    t = _LABELS[lang]
    # A mismatch's reason names another student: it is for the instructor (grades.csv, summary), not this page.
    reason = t["mismatch"] if result.status == VARIANT_MISMATCH else bounded(result.reason)
    return _page(_FEEDBACK_PAGE).render(lang=lang, t=t, r=result, style=_STYLE, css=_css_class,
                                        status=result.status + (f" — {reason}" if reason else ""),
                                        figures=figures or PartFigures())


def _problems(results: list[SubmissionResult]) -> list[str]:
    seen = {}
    for r in results:
        for p in r.parts:
            seen.setdefault(p.problem, None)
    return list(seen)


def grades_rows(results: list[SubmissionResult]) -> tuple[list[str], list[dict]]:
    problems = _problems(results)
    header = ["student_id", *problems, "total", "max", "status", "needs_review", "reason"]
    rows = []
    for r in results:
        per = defaultdict(float)
        for p in r.parts:
            per[p.problem] += p.score
        rows.append({"student_id": r.student_id, **{k: f"{per[k]:g}" if k in per else "" for k in problems},
                     "total": f"{r.score:g}", "max": f"{r.max_score:g}", "status": r.status,
                     "needs_review": "yes" if r.needs_review else "", "reason": bounded(r.reason)})
    return header, rows


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return path


def _histogram(results: list[SubmissionResult], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    scores = [100 * r.score / r.max_score for r in results if r.max_score]
    ax.hist(scores, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.01], color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("score (%)")
    ax.set_ylabel("students")
    ax.set_title(f"{len(scores)} submissions")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def mismatch_count(results: list[SubmissionResult]) -> str:
    """'2 variant mismatches', for the summary page and the last line of `hwkit grade`."""
    n = sum(r.status == VARIANT_MISMATCH for r in results)
    return f"{n} variant mismatch{'' if n == 1 else 'es'}"


def summary_html(assignment: str, results: list[SubmissionResult], top: int = 5) -> str:
    notes = defaultdict(Counter)
    for r in results:
        for p in r.parts:
            if p.note != "CORRECT":
                notes[(p.problem, p.part)][p.note] += 1
    statuses = Counter(r.status for r in results)
    mean = sum(r.score for r in results) / len(results) if results else 0
    flagged = [r for r in results if r.status == VARIANT_MISMATCH]
    mismatches = (f"<h2>{mismatch_count(results)} to review</h2><p>The notebook is another student's variant; "
                  "the scores stand until an instructor decides.</p><table><tr><th>student</th><th>score</th>"
                  "<th>evidence</th></tr>"
                  + "".join(f"<tr><td>{html.escape(r.student_id)}</td><td>{r.score:g} / {r.max_score:g}</td>"
                            f"<td>{html.escape(bounded(r.reason))}</td></tr>" for r in flagged)
                  + "</table>") if flagged else ""
    rows = "".join(f"<tr><td>{html.escape(pr)}</td><td>{html.escape(pa)}</td><td>"
                   + ", ".join(f"{html.escape(n)} ({c})" for n, c in counter.most_common(top)) + "</td></tr>"
                   for (pr, pa), counter in notes.items())
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Summary {html.escape(assignment)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(assignment)}: summary</h1>"
            f"<p>{len(results)} students; mean score {mean:.2f}; statuses: "
            + ", ".join(f"{html.escape(s)} {c}" for s, c in statuses.most_common()) + "</p>"
            + mismatches +
            '<img src="histogram.png" alt="score histogram">'
            "<h2>Most frequent answer notes per part</h2><table><tr><th>problem</th><th>part</th><th>notes (count)</th></tr>"
            + rows + "</table></body></html>\n")


def write_reports(course: Course, assignment: str, results: list[SubmissionResult]) -> dict[str, Path]:
    folder = course.root / "graded" / assignment
    folder.mkdir(parents=True, exist_ok=True)
    header, rows = grades_rows(results)
    grades = _write_csv(folder / "grades.csv", header, rows)
    _histogram(results, folder / "histogram.png")
    summary = folder / "summary.html"
    summary.write_text(summary_html(assignment, results), encoding="utf-8")
    return {"grades": grades, "summary": summary}


def export_grades(course: Course, assignment: str, fmt: str, output: Path | None = None) -> Path:
    book = Gradebook(course.root)
    results = book.results(assignment)
    book.close()
    if not results:
        raise HwkitError(f"{course.root / 'gradebook.sqlite'}: no grades for {assignment}; run `hwkit grade {assignment}` first")
    names = {s.student_id: s.name for s in course.roster}
    folder = course.root / "graded" / assignment
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        header, rows = grades_rows(results)
    elif fmt == "canvas":
        # Canvas gradebook import: identity columns, then one column per assignment with its points possible.
        column = f"{assignment} ({results[0].max_score:g})"
        header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column]
        rows = [{"Student": names.get(r.student_id, ""), "ID": "", "SIS User ID": r.student_id, "SIS Login ID": "",
                 "Section": "", column: f"{r.score:g}"} for r in results]
    elif fmt == "moodle":
        # Moodle "Import grades from CSV": map "ID number" to the user field of the same name.
        header = ["ID number", "Full name", assignment, "Feedback"]
        rows = [{"ID number": r.student_id, "Full name": names.get(r.student_id, ""), assignment: f"{r.score:g}",
                 "Feedback": r.status if r.status != "ok" else ""} for r in results]
    else:
        raise HwkitError(f"--format {fmt!r}: use csv, canvas or moodle")
    return _write_csv(output or folder / f"grades-{fmt}.csv", header, rows)
