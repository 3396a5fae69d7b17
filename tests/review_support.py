"""A course whose gradebook is filled with synthetic results (no kernel): what the review page and `hwkit override`
read. Written answers of one part come in families of near-identical texts, as a class's answers do."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from hwkit.course import load_course
from hwkit.gradebook import Gradebook, PartResult, SubmissionResult
from hwkit.report import write_feedback, write_reports
from hwkit.scaffold import init_course

ASSIGNMENT = "t"
WRITTEN_ANSWERS = [
    "A depthwise conv filters each channel on its own, then a 1x1 pointwise conv mixes channels: far fewer parameters.",
    "Depthwise convolution filters every channel on its own and a 1x1 conv mixes them, so it needs fewer parameters.",
    "It splits a convolution into two steps which is cheaper.",
    "I do not know, something about channels being processed.",
]


def written_part(text: str, score: float = 1.0) -> PartResult:
    return PartResult("depthwise-separable", "ds_principle", {"en": "Principle", "zh": "原理"}, score, 2.0,
                      "WRITTEN_MISSING_COST", {"en": "Provisional.", "zh": "暂定。"}, True, text, f"fp-{text}")


def code_part(score: float = 1.0) -> PartResult:
    return PartResult("depthwise-separable", "ds_standard_formula", {"en": "Standard formula", "zh": "公式"}, score,
                      1.0, "CORRECT" if score else "WRONG", {"en": "Checked.", "zh": "已检查。"}, False,
                      "ds_standard_formula = 'K**2*C_in*C_out'", "fp-code")


def synthetic_course(tmp_path: Path, students: int = 8) -> tuple[Path, list[str]]:
    """A course with `students` graded submissions of assignment "t"; returns its root and the student ids."""
    root = init_course(Path(tmp_path) / "course", lang="en")
    ids = [f"s{i:04d}" for i in range(students)]
    (root / "roster.csv").write_text("student_id,name\n" + "".join(f"{s},Student {s}\n" for s in ids),
                                     encoding="utf-8")
    (root / "assignments" / f"{ASSIGNMENT}.toml").write_text(
        'title = "Test"\n\n[[problems]]\nid = "depthwise-separable"\n', encoding="utf-8")
    book = Gradebook(root)
    results = []
    for i, sid in enumerate(ids):
        text = WRITTEN_ANSWERS[i % len(WRITTEN_ANSWERS)] + ("" if i < len(WRITTEN_ANSWERS) else f" ({i % 3})")
        result = SubmissionResult(ASSIGNMENT, sid, "ok", "", f"hash-{sid}", [written_part(text), code_part()],
                                  graded_at="2026-01-01T00:00:00+00:00")
        book.record(result)
        results.append(result)
    course = load_course(root)
    for result in book.results(ASSIGNMENT):
        write_feedback(course, result)
    write_reports(course, ASSIGNMENT, book.results(ASSIGNMENT), histogram=False)
    book.close()
    return root, ids


def course_state(root: Path):
    """The gradebook's contents and the bytes of every output a decision could change."""
    db = sqlite3.connect(root / "gradebook.sqlite")
    dump = "\n".join(db.iterdump())
    db.close()
    files = sorted(p for p in (root / "graded").rglob("*") if p.is_file())
    return hashlib.sha256(dump.encode()).hexdigest(), {p.name + str(p.parent): p.read_bytes() for p in files}
