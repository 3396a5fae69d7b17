"""Is a submitted notebook the graded student's own variant?

Grading re-derives every parameter from the roster and the secret, never from the notebook, so a friend's
notebook handed in as one's own is graded against one's own variant. Whatever still scores (functions on
hidden inputs, formulas every variant shares, written answers) must not pass silently. Three kinds of
evidence say whose variant a notebook is:

- metadata: the variant id (keyed by the secret: it cannot be guessed, only copied) and the student field;
- parameter cells: the statement and given-code cells carry the variant's numbers; their digests per
  student are written at generation (source/<assignment>/release-cells.json, instructor side);
- answers: a wrong answer that is another student's reference, for parts whose reference depends on the
  variant only (value, formula and choice parts without hidden inputs), compared by the checks' own
  fingerprints (`canonical` / `candidates`, as the self-check does).

A student is named only on strong evidence: their variant id; at least MIN_CELLS of their own release cells
and more of theirs than of the graded student's; or at least MIN_ANSWERS wrong answers equal to their
references, each a *rare* reference of a part with many possible answers: a part counts only if the
references of BACKGROUND synthetic students (fresh variants under the course secret) repeat at most
BACKGROUND_PAIRS times (pairs of background students with one reference: with N equally likely answers about
4950/N are expected, so two or fewer means some thousands of answers, while "never" would drop a part with tens
of thousands of answers in one course of ten), and a reference only if at most RARE_HOLDERS of the roster and
the background hold it. A small integer, an output
size or a choice letter that many variants share is never evidence, whatever the roster's size. Weak evidence
(the student field, one or two matching answers or cells) is only quoted beside strong evidence for the same
student. A variant id that matches nobody, or a student field that names another student, is noted in the
reason without a name and without changing the status.

Nothing copied from a notebook leaves this module longer than SHOWN_CHARS, and a reason never exceeds
REASON_CHARS."""
from __future__ import annotations

import io
import json
import re
import reprlib
import tokenize
import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from hwkit.checks import Choice
from hwkit.course import Assignment, Course, Student
from hwkit.generate import CELLS_INDEX, build_variant, released_cells, variant_id
from hwkit.gradebook import bounded
from hwkit.notebooks import answer_cells, cell_digest
from hwkit.reach import reached
from hwkit.records import Status

SHOWN_CHARS = 64        # any value taken from a notebook, as shown in a reason
MIN_CELLS = 2           # parameter cells of another student's release that name them
MIN_ANSWERS = 3         # rare wrong answers equal to another student's references that name them
RARE_HOLDERS = 2        # a reference held by more (roster + background) is not evidence
BACKGROUND = 100        # synthetic students whose references tell how common a reference is
BACKGROUND_PAIRS = 2    # a part whose background references repeat more often has too few possible answers
MAX_CELLS = 5000        # cells of a submission looked at
_COMPARABLE_KINDS = ("value", "formula", "choice")


def shown(value) -> str:
    """A value from a notebook, fit for a reason: a string cut to SHOWN_CHARS, control characters
    replaced; anything else only named by its type."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    text = "".join(ch if ch.isprintable() else " " for ch in value[:SHOWN_CHARS + 1])
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


@dataclass
class Finding:
    suspects: list[str] = field(default_factory=list)   # whose variant this notebook is, on strong evidence
    evidence: str = ""                                  # "parameter cells match s003's variant; 4 answers ..."
    notes: list[str] = field(default_factory=list)      # worth a look, naming nobody

    @property
    def mismatch(self) -> bool:
        return bool(self.suspects)


def review(course: Course, assignment: Assignment, student_id: str, nb, wrong: list, status: str,
           reason: str) -> tuple[str, str]:
    """The submission's status and reason once the evidence is in. A mismatch takes precedence over how
    the notebook ran (which the reason keeps); scores are not touched. Never raises."""
    try:
        finding = examine(course, assignment, student_id, nb, wrong)
    except Exception as exc:  # the check must never cost a grading
        finding = Finding(notes=[f"the variant check could not run ({type(exc).__name__})"])
    notes = "; ".join(finding.notes)
    if finding.mismatch:
        ran = f"{status}: {reason}" if reason else status
        text = "; ".join(t for t in (finding.evidence, notes, "" if ran == "ok" else "also " + ran) if t)
        return Status.VARIANT_MISMATCH, bounded(text)
    return status, bounded("; ".join(t for t in (reason, notes) if t))


def examine(course: Course, assignment: Assignment, student_id: str, nb, wrong: list) -> Finding:
    """`wrong`: (problem id, part, reply) for every part the student did not get fully right."""
    roster = {s.student_id for s in course.roster}
    tally: dict[str, Counter] = defaultdict(Counter)
    notes = []
    meta = nb.metadata.get("hwkit") if isinstance(nb.metadata, dict) else None
    meta = meta if isinstance(meta, dict) else {}

    owner = None
    if "variant_id" in meta:
        owner = _variant_ids(course, assignment).get(meta["variant_id"]) if isinstance(meta["variant_id"], str) else None
        if owner is None:
            notes.append("the notebook's variant id matches no student of the roster")
        elif owner != student_id:
            tally[owner]["id"] = 1
    named = meta.get("student")
    if named is not None and named != student_id:
        if isinstance(named, str) and named in roster:
            tally[named]["named"] = 1
        else:
            notes.append(f"the notebook's metadata names {shown(named)!r}, who is not on the roster")

    own_cells = 0
    owners = _cell_owners(course, assignment)
    if owners:
        seen = {cell_digest(c) for c in nb.cells[:MAX_CELLS] if isinstance(c, dict)}
        for digest in seen:
            if digest in owners:
                if owners[digest] == student_id:
                    own_cells += 1
                else:
                    tally[owners[digest]]["cells"] += 1

    comparable = [(pid, part, reply) for pid, part, reply in wrong if _comparable(part) and _answered(reply)]
    if comparable:
        index = answer_index(course, assignment)
        for pid, part, reply in comparable:
            for other in index.rare_holders(pid, part, reply.value) - {student_id}:
                tally[other]["answers"] += 1

    strong = [o for o, t in tally.items()
              if t["id"] or (t["cells"] >= MIN_CELLS and t["cells"] > own_cells) or t["answers"] >= MIN_ANSWERS]
    strong.sort(key=lambda o: (-tally[o]["id"], -tally[o]["cells"], -tally[o]["answers"], o))
    if any(t["named"] and o not in strong[:2] for o, t in tally.items()):
        notes.append("the notebook's metadata names another student (not confirmed by its cells or answers)")
    return Finding(strong[:2], "; ".join(_evidence(o, tally[o], own_cells) for o in strong[:2]), notes)


def _evidence(other: str, t: Counter, own_cells: int) -> str:
    said = []
    if t["id"]:
        said.append(f"metadata variant id is {other}'s")
    elif t["named"]:
        said.append(f"metadata names {other}")
    if t["cells"] >= MIN_CELLS and not own_cells:
        said.append(f"parameter cells match {other}'s variant")
    elif t["cells"] > own_cells:
        said.append(f"{t['cells']} parameter cell{'s match' if t['cells'] > 1 else ' matches'} {other}'s variant"
                    + (f", {own_cells} this student's" if own_cells else ""))
    if t["answers"]:
        said.append(f"{t['answers']} answer{'s equal' if t['answers'] > 1 else ' equals'} {other}'s reference"
                    + ("s" if t["answers"] > 1 else ""))
    return "; ".join(said)


# ---- indexes, built once per process (a grading worker) and shared by its lanes -------------------------

_LOCK = threading.Lock()
_CACHE: dict = {}
_BUILDING: dict = {}


def forget() -> None:
    """Drop the cached indexes (tests; a worker never needs to)."""
    with _LOCK:
        _CACHE.clear()


def _cached(key, build):
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        lock = _BUILDING.setdefault(key, threading.Lock())
    with lock:                      # one lane builds, the others wait for it
        with _LOCK:
            if key in _CACHE:
                return _CACHE[key]
        value = build()
        with _LOCK:
            if len(_CACHE) >= 16:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = value
            _BUILDING.pop(key, None)
        return value


def _course_key(course: Course, assignment: Assignment) -> tuple:
    return (str(course.root), course.secret, assignment.assignment_id, tuple(s.student_id for s in course.roster))


def _variant_ids(course: Course, assignment: Assignment) -> dict[str, str]:
    return _cached(("ids", *_course_key(course, assignment)),
                   lambda: {variant_id(course, assignment, s.student_id): s.student_id for s in course.roster})


def _cell_owners(course: Course, assignment: Assignment) -> dict[str, str]:
    """digest -> the one student whose release holds that cell (cells several students share are no evidence)."""
    path = course.root / "source" / assignment.assignment_id / CELLS_INDEX
    try:
        stat = path.stat()
    except OSError:
        return {}

    def build() -> dict[str, str]:
        students = json.loads(path.read_text(encoding="utf-8")).get("students", {})
        holders = defaultdict(set)
        for sid, digests in students.items():
            for digest in digests:
                holders[digest].add(sid)
        return {d: next(iter(h)) for d, h in holders.items() if len(h) == 1}

    return _cached(("cells", str(path), stat.st_mtime_ns, stat.st_size), build)


def _comparable(part) -> bool:
    return part.kind in _COMPARABLE_KINDS and not part.hidden_inputs and part.interpret is None


def _answered(reply) -> bool:
    return bool(getattr(reply, "ok", False)) and reply.value is not None


def _reference_prints(part) -> dict[str, str]:
    want = part.reference(part.probe(random.Random(0)))
    if isinstance(part.check, Choice):
        letter = Choice.letter(want)
        return {"": f"c:{letter}"} if letter else {}
    return part.check.canonical(want)


def _reply_prints(part, value) -> dict[str, list[str]]:
    if isinstance(part.check, Choice):
        letter = Choice.letter(value)
        return {"": [f"c:{letter}"]} if letter else {}
    return part.check.candidates(value)


PRINT_CHARS = 200       # one fingerprint, as kept for the similarity report
TEXT_CHARS = 4000       # a written answer, as kept for the similarity report


def answer_record(part, reply) -> dict:
    """What `hwkit similarity` needs of an answer without running anything again: the fingerprints the checks
    compare (value, formula and choice parts whose reference depends on the variant only) and the text of a
    written answer; bounded, and empty when there is nothing to compare."""
    if not _answered(reply):
        return {}
    if part.kind == "written" and isinstance(reply.value, str):
        return {"text": bounded(reply.value, TEXT_CHARS)}
    if not _comparable(part):
        return {}
    try:
        prints = _reply_prints(part, reply.value)
    except Exception:   # a reply the checks cannot fingerprint is simply not compared
        return {}
    prints = {bounded(str(k), PRINT_CHARS): [bounded(str(v), PRINT_CHARS) for v in values[:8]]
              for k, values in list(prints.items())[:8]}
    value = reply.value if isinstance(reply.value, str) else reprlib.repr(reply.value)   # reprlib: bounded work
    record = {"prints": prints, "shown": shown(value)}
    try:                    # the student's own reference, so that the report needs no variant built again
        record["reference"] = _reference_prints(part)
    except Exception:
        pass
    return record


class AnswerIndex:
    """Per part, every reference fingerprint of the roster (and of the background) and who holds it."""

    def __init__(self) -> None:
        self._refs: dict[tuple, dict[str, tuple[int, set, list]]] = defaultdict(dict)   # print -> (keys, roster, [bg])
        self._pieces: dict[tuple, dict[tuple, list[str]]] = defaultdict(lambda: defaultdict(list))
        self._pairs: Counter = Counter()     # part -> pairs of background students that share a reference
        self._reference_of: dict[tuple, dict[str, str]] = defaultdict(dict)   # part -> roster student -> print

    def add(self, key: tuple, prints: dict[str, str], holder: str | None) -> None:
        name = json.dumps(sorted(prints.items()))
        if name not in self._refs[key]:
            self._refs[key][name] = (len(prints), set(), [0])
            for piece in prints.items():
                self._pieces[key][piece].append(name)
        size, roster, background = self._refs[key][name]
        if holder is None:
            self._pairs[key] += background[0]
            background[0] += 1
        else:
            roster.add(holder)
            self._reference_of[key][holder] = name

    def rare_holders(self, problem_id: str, part, value) -> set[str]:
        """Roster students whose reference the reply matches, if that reference is rare."""
        try:
            candidates = _reply_prints(part, value)
        except Exception:
            return set()
        return self.rare_holders_of((problem_id, part.id), candidates)

    def rare_holders_of(self, key: tuple, candidates: dict[str, list[str]]) -> set[str]:
        """The same, for a reply's fingerprints (as `answer_record` keeps them)."""
        if not self.varies(key):
            return set()
        hits = Counter()
        for k, values in candidates.items():
            for v in set(values):
                hits.update(self._pieces[key].get((k, v), ()))
        matched = [self._refs[key][name] for name, n in hits.items() if n == self._refs[key][name][0]]
        holders = set().union(*(roster for _, roster, _ in matched)) if matched else set()
        if len(holders) + sum(bg[0] for _, _, bg in matched) > RARE_HOLDERS:
            return set()
        return holders


    def same_reference(self, key: tuple, a: str, b: str) -> bool:
        """Do two roster students have the same reference for this part (so the same answer is no coincidence)?"""
        refs = self._reference_of.get(key, {})
        return a in refs and refs.get(a) == refs.get(b)

    def varies(self, key: tuple) -> bool:
        """Is this part's reference drawn from many possible answers (background variants seldom share one)?"""
        return key in self._refs and self._pairs[key] <= BACKGROUND_PAIRS


def answer_index(course: Course, assignment: Assignment) -> AnswerIndex:
    return _cached(("answers", *_course_key(course, assignment)), lambda: _build_answer_index(course, assignment))


def index_from_records(course: Course, assignment: Assignment, references: dict[str, dict[tuple, dict]]) -> AnswerIndex:
    """The index from the references grading kept (student -> part -> reference prints), and the background:
    students whose references were not kept are built from their variants."""
    index = _build_answer_index(course, assignment, [s for s in course.roster if s.student_id not in references])
    for sid, parts in references.items():
        for key, prints in parts.items():
            index.add(key, prints, sid)
    return index


def _build_answer_index(course: Course, assignment: Assignment, roster: list[Student] | None = None) -> AnswerIndex:
    index = AnswerIndex()
    population = [(s, s.student_id) for s in (course.roster if roster is None else roster)]
    population += [(Student(f"~background-{i:03d}"), None) for i in range(BACKGROUND)]
    for student, holder in population:
        try:
            variant = build_variant(course, assignment, student)
        except Exception:
            continue
        for pv in variant.problems:
            for part in pv.parts:
                if not _comparable(part):
                    continue
                try:
                    prints = _reference_prints(part)
                except Exception:
                    continue
                if prints:
                    index.add((pv.problem.id, part.id), prints, holder)
    return index


# ---- shortcuts the statement forbids -----------------------------------------------------------------

FORBIDDEN = "FORBIDDEN_SHORTCUT"
# comments and literal text; from Python 3.12 on an f-string's text is its own token type (its {code} is not)
_TEXT_TOKENS = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


REQUIRED_MISSING = "REQUIRED_METHOD_NOT_USED"


def missing_requirement(part, nb, given: set[str] | None = None) -> dict | None:
    """The feedback for the first method the statement requires that the student's code for the part does not
    use (the code read as for forbidden_shortcut). A static scan, so it only ever sends the part to a person."""
    if not part.required:
        return None
    code = answer_code(nb, part.id, given)
    for pattern, feedback in part.required:
        if not re.search(pattern, code):
            return feedback
    return None


def code_tokens(source: str) -> str:
    """A cell's code without its comments and string literals (so that naming a function in a comment or a
    message is not using it); a cell that does not tokenize is kept as it is."""
    try:
        kept = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type not in _TEXT_TOKENS]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source
    return " ".join(kept)


def answer_code(nb, part_id: str, given: set[str] | None = None) -> str:
    """The code of the cells tagged as the part's answer, in the submitted notebook (or its AnswerCells). With
    `given` (the release's cells, given_cells), also the code of the cells the student added that the answer
    reaches (hwkit.reach); when no cell is tagged as the part's any more, every cell the student added."""
    cells = answer_cells(nb)
    sources = cells.sources(part_id)
    if given is not None:
        added = cells.added(given)
        sources = sources + (reached(sources, added) if sources else added)
    return "\n".join(code_tokens(source) for source in sources)


def given_cells(course: Course, assignment: Assignment) -> set[str] | None:
    """The digests of the statement and given cells of every release of the assignment; None when the course has
    no index of them (then only the tagged answer cells can be read: a given cell may use what a part forbids)."""
    path = course.root / "source" / assignment.assignment_id / CELLS_INDEX
    try:
        stat = path.stat()
    except OSError:
        return None
    return _cached(("given", str(path), stat.st_mtime_ns, stat.st_size), lambda: released_cells(path.parent)) or None


def forbidden_shortcut(part, nb, given: set[str] | None = None) -> dict | None:
    """The feedback for the first forbidden pattern the student's code for the part uses, if any (`nb`: the
    submitted notebook or its hwkit.notebooks.AnswerCells; `given`: see answer_code). What a part's probe
    reads can be defined in any cell, so the student's own cells that the answer reaches count as well as the
    tagged ones; other parts' answer cells do not (they may rightly use what this part forbids). A static scan:
    a name made at run time escapes it, which is why it only ever takes points away for a person to review."""
    if not part.forbidden:
        return None
    code = answer_code(nb, part.id, given)
    for pattern, feedback in part.forbidden:
        if re.search(pattern, code):
            return feedback
    return None
