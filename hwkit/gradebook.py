"""The SQLite gradebook (one file in the course directory) and the result records it stores.

Each submission's result is written in one transaction, so a killed `hwkit grade` loses nothing that
was already graded, and a rerun skips unchanged notebooks."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hwkit_kernel.wire import valid_text

GRADEBOOK_NAME = "gradebook.sqlite"
# The submitted notebook is another student's variant (hwkit/integrity.py): scores stand, a person reviews it.
VARIANT_MISMATCH = "variant mismatch"
REASON_CHARS = 500      # a reason is built from what a notebook says; bounded where it is built, stored and shown


def bounded(text: str, limit: int = REASON_CHARS) -> str:
    text = valid_text(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    assignment TEXT NOT NULL, student_id TEXT NOT NULL, nb_hash TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT NOT NULL, score REAL NOT NULL, max_score REAL NOT NULL, needs_review INTEGER NOT NULL,
    graded_at TEXT NOT NULL, timings TEXT NOT NULL, peak_memory_mb REAL, cpu_seconds REAL,
    PRIMARY KEY (assignment, student_id));
CREATE TABLE IF NOT EXISTS parts (
    assignment TEXT NOT NULL, student_id TEXT NOT NULL, problem TEXT NOT NULL, part TEXT NOT NULL,
    position INTEGER NOT NULL, title_en TEXT NOT NULL, title_zh TEXT NOT NULL, score REAL NOT NULL,
    max_points REAL NOT NULL, note TEXT NOT NULL, feedback_en TEXT NOT NULL, feedback_zh TEXT NOT NULL,
    needs_review INTEGER NOT NULL, PRIMARY KEY (assignment, student_id, problem, part));
CREATE TABLE IF NOT EXISTS answers (
    assignment TEXT NOT NULL, student_id TEXT NOT NULL, problem TEXT NOT NULL, part TEXT NOT NULL,
    answer TEXT NOT NULL, PRIMARY KEY (assignment, student_id, problem, part));
"""


@dataclass
class PartResult:
    problem: str
    part: str
    title: dict
    score: float
    max_points: float
    note: str
    feedback: dict
    needs_review: bool = False
    answer: dict = field(default_factory=dict)   # what was compared, kept for `hwkit similarity` (integrity.answer_record)


@dataclass
class SubmissionResult:
    assignment: str
    student_id: str
    status: str
    reason: str
    nb_hash: str = ""
    parts: list[PartResult] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    peak_memory_mb: float | None = None
    cpu_seconds: float | None = None
    graded_at: str = ""

    @property
    def score(self) -> float:
        return round(sum(p.score for p in self.parts), 4)

    @property
    def max_score(self) -> float:
        return round(sum(p.max_points for p in self.parts), 4)

    @property
    def needs_review(self) -> bool:
        return self.status == VARIANT_MISMATCH or any(p.needs_review for p in self.parts)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SubmissionResult":
        parts = [PartResult(**p) for p in data.pop("parts", [])]
        return cls(parts=parts, **data)


class Gradebook:
    def __init__(self, course_root: Path):
        self.path = Path(course_root) / GRADEBOOK_NAME
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def graded_hash(self, assignment: str, student_id: str) -> str | None:
        row = self.db.execute("SELECT nb_hash FROM submissions WHERE assignment=? AND student_id=?",
                              (assignment, student_id)).fetchone()
        return row[0] if row else None

    def record(self, result: SubmissionResult) -> None:
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("DELETE FROM parts WHERE assignment=? AND student_id=?", (result.assignment, result.student_id))
            cur.execute("DELETE FROM answers WHERE assignment=? AND student_id=?", (result.assignment, result.student_id))
            cur.execute("INSERT OR REPLACE INTO submissions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
                result.assignment, result.student_id, result.nb_hash, result.status, bounded(result.reason), result.score,
                result.max_score, int(result.needs_review), result.graded_at, json.dumps(result.timings),
                result.peak_memory_mb, result.cpu_seconds))
            cur.executemany("INSERT INTO parts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", [
                (result.assignment, result.student_id, p.problem, p.part, i, p.title.get("en", ""), p.title.get("zh", ""),
                 p.score, p.max_points, valid_text(p.note), valid_text(p.feedback.get("en", "")),
                 valid_text(p.feedback.get("zh", "")), int(p.needs_review))
                for i, p in enumerate(result.parts)])
            cur.executemany("INSERT INTO answers VALUES (?,?,?,?,?)", [
                (result.assignment, result.student_id, p.problem, p.part, json.dumps(p.answer, ensure_ascii=False))
                for p in result.parts if p.answer])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def results(self, assignment: str) -> list[SubmissionResult]:
        out = []
        rows = self.db.execute("SELECT student_id, nb_hash, status, reason, graded_at, timings, peak_memory_mb, "
                               "cpu_seconds FROM submissions WHERE assignment=? ORDER BY student_id", (assignment,))
        for sid, nb_hash, status, reason, graded_at, timings, peak, cpu in rows.fetchall():
            parts = [PartResult(problem, part, {"en": t_en, "zh": t_zh}, score, max_points, note,
                                {"en": f_en, "zh": f_zh}, bool(review))
                     for problem, part, t_en, t_zh, score, max_points, note, f_en, f_zh, review in self.db.execute(
                         "SELECT problem, part, title_en, title_zh, score, max_points, note, feedback_en, feedback_zh, "
                         "needs_review FROM parts WHERE assignment=? AND student_id=? ORDER BY position",
                         (assignment, sid)).fetchall()]
            out.append(SubmissionResult(assignment, sid, status, bounded(reason), nb_hash, parts, json.loads(timings),
                                        peak, cpu, graded_at))
        return out

    def answers(self, assignment: str) -> dict[str, dict[tuple[str, str], dict]]:
        """student id -> (problem, part) -> the answer record kept at grading."""
        out: dict[str, dict[tuple[str, str], dict]] = {}
        for sid, problem, part, answer in self.db.execute(
                "SELECT student_id, problem, part, answer FROM answers WHERE assignment=?", (assignment,)):
            out.setdefault(sid, {})[(problem, part)] = json.loads(answer)
        return out
