"""The SQLite gradebook (one file in the course directory) and the result records it stores.

Each submission's result is written in one transaction, so a killed `hwkit grade` loses nothing that
was already graded, and a rerun skips unchanged notebooks."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hwkit.records import Status
from hwkit_kernel.wire import valid_text

GRADEBOOK_NAME = "gradebook.sqlite"
# The submitted notebook is another student's variant (hwkit/integrity.py): scores stand, a person reviews it.
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
    needs_review INTEGER NOT NULL, answer TEXT NOT NULL DEFAULT '', fingerprint TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (assignment, student_id, problem, part));
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT, assignment TEXT NOT NULL, student_id TEXT NOT NULL, problem TEXT NOT NULL,
    part TEXT NOT NULL, score REAL NOT NULL, comment TEXT NOT NULL, grader TEXT NOT NULL, created_at TEXT NOT NULL,
    replaced_score REAL NOT NULL, nb_hash TEXT NOT NULL, fingerprint TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS overrides_by_part ON overrides (assignment, student_id, problem, part, id);
CREATE TABLE IF NOT EXISTS answers (
    assignment TEXT NOT NULL, student_id TEXT NOT NULL, problem TEXT NOT NULL, part TEXT NOT NULL,
    answer TEXT NOT NULL, PRIMARY KEY (assignment, student_id, problem, part));
"""
# Columns added after gradebooks were in use: added in place when an older gradebook is opened.
_ADDED_PART_COLUMNS = {"answer": "TEXT NOT NULL DEFAULT ''", "fingerprint": "TEXT NOT NULL DEFAULT ''"}
_ADDED_SUBMISSION_COLUMNS = {"submitted_at": "TEXT NOT NULL DEFAULT ''", "late_days": "INTEGER NOT NULL DEFAULT 0",
                             "penalty": "REAL NOT NULL DEFAULT 0", "notebook": "TEXT NOT NULL DEFAULT ''",
                             "chosen_by": "TEXT NOT NULL DEFAULT ''", "notebooks": "INTEGER NOT NULL DEFAULT 0",
                             "lang": "TEXT NOT NULL DEFAULT ''"}
_PART_COLUMNS = ("assignment, student_id, problem, part, position, title_en, title_zh, score, max_points, note, "
                 "feedback_en, feedback_zh, needs_review, answer, fingerprint")
_OVERRIDE_COLUMNS = ("assignment, student_id, problem, part, score, comment, grader, created_at, replaced_score, "
                     "nb_hash, fingerprint")


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
    answer: str = ""                # what the student gave for this part (bounded), shown to reviewers
    fingerprint: str = ""           # hash of the part's answer as submitted: an override holds while it is unchanged
    automatic_score: float | None = None    # the grader's score, when a person's override replaced it
    reviewer: str = ""              # who overrode the score ("" = the grader's score stands)
    comment: str = ""               # the reviewer's comment for the student
    stale_override: str = ""        # an override made for an earlier answer: kept, shown, no longer applied
    compared: dict = field(default_factory=dict)   # what the checks compared, for `hwkit similarity` (integrity.answer_record)
    decision_id: int = 0            # the id of the part's latest override, held or not (0: none)

    @property
    def overridden(self) -> bool:
        return bool(self.reviewer)


@dataclass(frozen=True)
class Override:
    """A person's decision on one part: kept forever (a later one supersedes it, never deletes it). It applies
    while the part's answer has the fingerprint it was made for."""
    assignment: str
    student_id: str
    problem: str
    part: str
    score: float
    comment: str
    grader: str
    created_at: str
    replaced_score: float
    nb_hash: str
    fingerprint: str
    id: int = 0                     # the gradebook's row id (0 until recorded): later decisions have larger ids


POINTS_LOWERED = "the part is now worth"      # how a decision set aside by lowered points begins (the review queue's flag)


def apply_overrides(result: "SubmissionResult", latest: dict) -> "SubmissionResult":
    """The result with its final scores: each part's latest override where the answer is unchanged. An override
    made for another answer, or worth more than the part now is (its points were lowered), is kept aside and the
    part flagged for review; a variant mismatch flags every part that no person has decided."""
    parts = []
    mismatch = result.status == Status.VARIANT_MISMATCH
    for p in result.parts:
        o = latest.get((p.problem, p.part))
        if o is None and (p.needs_review or not mismatch):
            parts.append(p)                 # most parts: nothing to change (and no copy: 12,000 parts add up)
        elif o is not None and o.fingerprint == p.fingerprint and o.score <= p.max_points + 1e-9:
            parts.append(replace(p, score=o.score, automatic_score=p.score, reviewer=o.grader, comment=o.comment,
                                 needs_review=False, decision_id=o.id))
        elif o is not None and o.fingerprint == p.fingerprint:      # the part's points were lowered since
            parts.append(replace(p, needs_review=True, decision_id=o.id, stale_override=(
                f"{POINTS_LOWERED} {p.max_points:g}, less than {o.grader}'s override ({o.score:g} on "
                f"{o.created_at}): decide again")))
        elif o is not None:
            parts.append(replace(p, needs_review=True, decision_id=o.id, stale_override=(
                f"the answer changed after {o.grader}'s override ({o.score:g} on {o.created_at}): decide again")))
        else:
            parts.append(replace(p, needs_review=p.needs_review or mismatch))
    return replace(result, parts=parts)


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
    submitted_at: str = ""      # ISO 8601, when known (hwkit/late.py)
    late_days: int = 0
    penalty: float = 0.0        # the fraction of the score lost for lateness
    notebook: str = ""          # the file graded (its name in the student's folder)
    chosen_by: str = ""         # with several notebooks in the folder: "metadata" or "name" (hwkit.grading.submissions)
    notebooks: int = 0          # how many notebooks the folder held
    lang: str = ""              # the language the notebook was released in ("" = unknown: the course's)

    @property
    def points(self) -> float:
        """The parts' scores added up, before any late penalty."""
        return round(sum(p.score for p in self.parts), 4)

    @property
    def score(self) -> float:
        """The total: the parts' final scores, less the late penalty."""
        return round(self.points * (1 - self.penalty), 4)

    @property
    def max_score(self) -> float:
        return round(sum(p.max_points for p in self.parts), 4)

    @property
    def needs_review(self) -> bool:
        decided = bool(self.parts) and all(p.overridden for p in self.parts)
        return any(p.needs_review for p in self.parts) or (self.status == Status.VARIANT_MISMATCH and not decided)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SubmissionResult":
        parts = [PartResult(**p) for p in data.get("parts", [])]
        return cls(parts=parts, **{k: v for k, v in data.items() if k != "parts"})


def _override_row(o: Override) -> tuple:
    """The values an insert writes (the id is the row's own)."""
    return tuple(getattr(o, name.strip()) for name in _OVERRIDE_COLUMNS.split(","))


class Gradebook:
    def __init__(self, course_root: Path, threads: bool = False):
        """threads=True: the connection may be used from several threads, one at a time (the caller locks)."""
        self.path = Path(course_root) / GRADEBOOK_NAME
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=not threads)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        for table, added in (("parts", _ADDED_PART_COLUMNS), ("submissions", _ADDED_SUBMISSION_COLUMNS)):
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for name, decl in added.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    def close(self) -> None:
        self.db.close()

    def data_version(self) -> int:
        """Changes whenever another connection (another process: `hwkit grade`，`hwkit override`) commits."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def stamps(self, assignment: str) -> dict[str, tuple[int, int]]:
        """{student: (the submission row's id, the latest override's id)}: a stamp changes whenever the student's
        result is recorded again or a person decides on one of its parts, so a reader re-reads only those."""
        return {sid: (row, override or 0) for sid, row, override in self.db.execute(
            "SELECT s.student_id, s.rowid, (SELECT MAX(o.id) FROM overrides o WHERE o.assignment = s.assignment "
            "AND o.student_id = s.student_id) FROM submissions s WHERE s.assignment=?", (assignment,))}

    def seconds_taken(self, assignment: str) -> dict[str, float]:
        """{student: the seconds their last grading took (its recorded stage timings)}: a regrade starts with
        the longest, so that no long notebook is left running alone at the end of the batch."""
        taken = {}
        for sid, timings in self.db.execute("SELECT student_id, timings FROM submissions WHERE assignment=?",
                                            (assignment,)):
            try:
                stages = json.loads(timings)
            except (TypeError, ValueError):
                continue
            if isinstance(stages, dict):
                taken[sid] = sum(v for v in stages.values() if isinstance(v, (int, float)) and v >= 0)
        return taken

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
            cur.execute("INSERT OR REPLACE INTO submissions (assignment, student_id, nb_hash, status, reason, score, "
                        "max_score, needs_review, graded_at, timings, peak_memory_mb, cpu_seconds, submitted_at, "
                        "late_days, penalty, notebook, chosen_by, notebooks, lang) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (
                result.assignment, result.student_id, result.nb_hash, result.status, bounded(result.reason), result.score,
                result.max_score, int(result.needs_review), result.graded_at, json.dumps(result.timings),
                result.peak_memory_mb, result.cpu_seconds, result.submitted_at, result.late_days, result.penalty,
                valid_text(result.notebook), result.chosen_by, result.notebooks, result.lang))
            cur.executemany(f"INSERT INTO parts ({_PART_COLUMNS}) VALUES ({','.join('?' * 15)})", [
                (result.assignment, result.student_id, p.problem, p.part, i, p.title.get("en", ""), p.title.get("zh", ""),
                 p.score, p.max_points, valid_text(p.note), valid_text(p.feedback.get("en", "")),
                 valid_text(p.feedback.get("zh", "")), int(p.needs_review), valid_text(p.answer), p.fingerprint)
                for i, p in enumerate(result.parts)])
            cur.executemany("INSERT INTO answers VALUES (?,?,?,?,?)", [
                (result.assignment, result.student_id, p.problem, p.part, json.dumps(p.compared, ensure_ascii=False))
                for p in result.parts if p.compared])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def set_lateness(self, result: SubmissionResult) -> None:
        """A graded submission's lateness and total changed (a new deadline, penalty or extension); nothing else."""
        with self.db:
            self.db.execute("UPDATE submissions SET late_days=?, penalty=?, score=? WHERE assignment=? AND student_id=?",
                            (result.late_days, result.penalty, result.score, result.assignment, result.student_id))

    def results(self, assignment: str, students: list[str] | None = None, final: bool = True) -> list[SubmissionResult]:
        """Every graded submission of the assignment (or of `students`), with final scores unless final=False."""
        where, args = "assignment=?", [assignment]
        if students is not None:
            where += f" AND student_id IN ({','.join('?' * len(students))})"
            args += list(students)
        parts: dict[str, list[PartResult]] = {}
        for (sid, problem, part, t_en, t_zh, score, max_points, note, f_en, f_zh, review, answer,
             fingerprint) in self.db.execute(
                "SELECT student_id, problem, part, title_en, title_zh, score, max_points, note, feedback_en, "
                f"feedback_zh, needs_review, answer, fingerprint FROM parts WHERE {where} ORDER BY student_id, position",
                args):
            parts.setdefault(sid, []).append(PartResult(problem, part, {"en": t_en, "zh": t_zh}, score, max_points,
                                                        note, {"en": f_en, "zh": f_zh}, bool(review), answer,
                                                        fingerprint))
        out = []
        rows = self.db.execute("SELECT student_id, nb_hash, status, reason, graded_at, timings, peak_memory_mb, "
                               "cpu_seconds, submitted_at, late_days, penalty, notebook, chosen_by, notebooks, lang "
                               f"FROM submissions WHERE {where} ORDER BY student_id", args)
        for (sid, nb_hash, status, reason, graded_at, timings, peak, cpu, submitted, days, penalty, notebook, chosen_by,
             notebooks, lang) in rows.fetchall():
            out.append(SubmissionResult(assignment, sid, status, bounded(reason), nb_hash, parts.get(sid, []),
                                        json.loads(timings), peak, cpu, graded_at, submitted, days, penalty,
                                        notebook, chosen_by, notebooks, lang))
        if not final:
            return out
        latest = self.latest_overrides(assignment, students)
        return [apply_overrides(r, latest.get(r.student_id, {})) for r in out]

    def final(self, result: SubmissionResult) -> SubmissionResult:
        """One freshly graded result with the overrides recorded for its student applied."""
        return apply_overrides(result, self.latest_overrides(result.assignment, [result.student_id])
                               .get(result.student_id, {}))

    def _overrides(self, sql: str, args: list) -> list[Override]:
        return [Override(*row) for row in self.db.execute(f"SELECT {_OVERRIDE_COLUMNS}, id FROM overrides {sql}",
                                                           args)]

    def latest_overrides(self, assignment: str, students: list[str] | None = None) -> dict[str, dict]:
        """{student: {(problem, part): the latest Override}}."""
        where, args = "assignment=?", [assignment]
        if students is not None:
            where += f" AND student_id IN ({','.join('?' * len(students))})"
            args += list(students)
        latest: dict[str, dict] = {}
        for o in self._overrides(f"WHERE id IN (SELECT MAX(id) FROM overrides WHERE {where} "
                                 "GROUP BY student_id, problem, part)", args):
            latest.setdefault(o.student_id, {})[(o.problem, o.part)] = o
        return latest

    def override_history(self, assignment: str, student_id: str) -> list[Override]:
        """Every override ever made for the student, oldest first."""
        return self._overrides("WHERE assignment=? AND student_id=? ORDER BY id", [assignment, student_id])

    def add_overrides(self, overrides: list[Override]) -> None:
        """Record decisions in one transaction: all of them or none."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(f"INSERT INTO overrides ({_OVERRIDE_COLUMNS}) VALUES ({','.join('?' * 11)})",
                            [_override_row(o) for o in overrides])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def answers(self, assignment: str) -> dict[str, dict[tuple[str, str], dict]]:
        """student id -> (problem, part) -> the answer record kept at grading."""
        out: dict[str, dict[tuple[str, str], dict]] = {}
        for sid, problem, part, answer in self.db.execute(
                "SELECT student_id, problem, part, answer FROM answers WHERE assignment=?", (assignment,)):
            out.setdefault(sid, {})[(problem, part)] = json.loads(answer)
        return out
