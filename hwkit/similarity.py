"""Copying evidence for a person to weigh, from what grading stored: `hwkit similarity ASSIGNMENT`.

Every student answered different numbers, so two kinds of evidence exist here that no text-similarity tool can
produce, beside the usual code and text comparison:

- cross-variant answers: a wrong answer that equals another student's *rare* reference (integrity.AnswerIndex:
  a reference of a part whose background variants seldom repeat one, held by at most two students) names
  whose variant it was solved for;
- shared wrong answers: two students with the same wrong value where their references differ, weighted by how
  rarely the class gave that value (the estimate is stated with the evidence);
- code: the student's own code (answer cells and cells they added, not the statement's or the starter's),
  fingerprinted by copydetect's winnowing over tokens with names normalised (renaming and reformatting do not
  hide a copy); fingerprints that many students share (the starter, the idioms of the task) are dropped, and
  only pairs that share enough of the rest (found through an index of fingerprints, not by comparing all pairs)
  are compared in full;
- written answers: normalised text (case, full/half width, spacing), fingerprinted and compared the same way.

A pair's score is the sum of its evidence's weights. It is evidence for a person, never a penalty."""
from __future__ import annotations

import builtins
import copy
import csv
import io
import json
import keyword
import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import get_token_coverage, highlight_overlap

from hwkit.course import Course, HwkitError, load_course
from hwkit.generate import released_cells
from hwkit.gradebook import GRADEBOOK_NAME, Gradebook
from hwkit.integrity import index_from_records
from hwkit.lms import spreadsheet_text
from hwkit.notebooks import MAX_NOTEBOOK_BYTES, cell_digest, tagged_parts

CODE_K, CODE_WINDOW = 25, 6        # copydetect's defaults: matches of 25+ characters of normalised code are kept
TEXT_K, TEXT_WINDOW = 12, 4        # written answers: shorter grams (a Chinese character carries a word)
COMMON_SHARE = 0.05                # a fingerprint more than this share of the class holds is the task's, not a copy's
COMMON_MIN = 3                     # ... but two or three holders are never "common", however small the class
MIN_SHARED = 4                     # fingerprints a pair must share to be compared in full
PREFILTER = 0.5                    # ... and at least this times the reportable similarity of the smaller side's
MIN_OWN_CHARS = 40                 # normalised characters of one's own (uncommon) work, below which nothing is compared
MIN_CODE_SIMILARITY = 0.25         # copydetect similarity (copied tokens / own tokens) worth reporting
MIN_TEXT_SIMILARITY = 0.5
MIN_TEXT_CHARS = 20
RARE_WRONG = 3                     # a wrong value more students gave is a common mistake, not shared work
CROSS_VARIANT_WEIGHT = 3.0         # per part: an answer that is another student's reference
CODE_WEIGHT, TEXT_WEIGHT = 10.0, 3.0
CELL_JOINER = "\n\n"
SHOWN_PAIRS = 100                  # pairs shown in detail on the page


@dataclass
class Work:
    """One graded student, as the similarity report reads them."""
    student_id: str
    answers: dict[tuple[str, str], dict]      # (problem, part) -> integrity.answer_record
    full_marks: set[tuple[str, str]]
    cells: list[str] = field(default_factory=list)    # the student's own code cells

    @property
    def code(self) -> str:
        return CELL_JOINER.join(self.cells)


@dataclass
class Evidence:
    kind: str            # cross-variant | shared-wrong | code | text
    part: str
    weight: float
    en: str
    zh: str


@dataclass
class Match:
    """Two documents compared in full: copydetect's similarity and the copied character ranges of each."""
    similarity: float
    slices: tuple


@dataclass
class Pair:
    a: str
    b: str
    evidence: list[Evidence] = field(default_factory=list)
    code: Match | None = None

    @property
    def score(self) -> float:
        return round(sum(e.weight for e in self.evidence), 2)

    def weight_of(self, kind: str) -> float:
        return round(sum(e.weight for e in self.evidence if e.kind == kind), 2)


# ---- reading what grading stored ----------------------------------------------------------------------

def load_works(course: Course, assignment_id: str) -> list[Work]:
    book = Gradebook(course.root)
    try:
        results = book.results(assignment_id)
        answers = book.answers(assignment_id)
    finally:
        book.close()
    released = released_cells(course.root / "source" / assignment_id)
    works = []
    for r in results:
        full = {(p.problem, p.part) for p in r.parts if p.score >= p.max_points > 0}
        executed = course.root / "graded" / assignment_id / r.student_id / f"{assignment_id}.ipynb"
        cells = own_code(executed, released) if executed.is_file() else []
        works.append(Work(r.student_id, answers.get(r.student_id, {}), full, cells))
    return works


def own_code(path: Path, released: set[str]) -> list[str]:
    """The code a student wrote: the answer cells, and code cells they added (not a statement or given cell)."""
    kept = []
    for cell in _code_cells(path):
        if tagged_parts(cell) or cell_digest(cell) not in released:
            kept.append(_source(cell))
    return kept


def _code_cells(path: Path) -> list[dict]:
    """The code cells of a notebook grading wrote (plain JSON: nbformat's validation costs more than the
    whole comparison); anything unreadable has none."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return []
        cells = json.loads(path.read_bytes().decode("utf-8", errors="replace")).get("cells")
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    return [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"] if isinstance(cells, list) else []


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(map(str, source)) if isinstance(source, list) else str(source)


def release_answer_code(course: Course, assignment_id: str, samples: int = 3) -> list[str]:
    """The starter's answer cells, from a few release notebooks: what every student was given to fill in."""
    folder = course.root / "release" / assignment_id
    texts = []
    for path in sorted(folder.glob("*/*.ipynb"))[:samples]:
        texts += [_source(c) for c in _code_cells(path) if tagged_parts(c)]
    return texts


# ---- documents, fingerprints and the candidate pairs ---------------------------------------------------

def normalised_text(text: str) -> str:
    """Case, full/half width, spacing and punctuation (Chinese or ASCII) do not make two written answers
    different: what is left are the letters, digits and symbols, in order."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


_KEPT_NAMES = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
# One pass of one compiled pattern over a cell (strings first, so that '#' or a name inside a string is text).
_PYTHON_TOKEN = re.compile(r"""
    (?P<string>(?:[rRbBuUfF]{1,2})?(?:'\'\'[\s\S]*？'\'\'|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<comment>\#[^\n]*)
  | (?P<name>[^\W\d]\w*)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE)


def normalised_code(cells: list[str]) -> tuple[str, np.ndarray]:
    """Code as copydetect compares it (names V, strings S, no comments or layout; keywords, builtins, numbers
    and operators kept), with copydetect's offsets back to the raw text (cells joined by CELL_JOINER). One
    regular expression over each cell: about twenty times faster than copydetect's pygments filter, and it
    never fails on a magic or a syntax error."""
    texts: list[str] = []
    starts: list[int] = []
    base = 0
    for cell in cells:
        for m in _PYTHON_TOKEN.finditer(cell):
            kind = m.lastgroup
            if kind in ("space", "comment"):
                continue
            text = m.group()
            if kind == "name" and text not in _KEPT_NAMES:
                text = "V"
            elif kind == "string":
                text = "S"
            texts.append(text)
            starts.append(base + m.start())
        base += len(cell) + len(CELL_JOINER)
    if not texts:
        return "", np.array([])
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    firsts = np.cumsum(lengths) - lengths                        # where each piece starts in the normalised text
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - firsts, lengths)
    positions = np.arange(int(lengths.sum()))
    return "".join(texts), np.column_stack([positions, shift])


def code_fingerprint(cells: list[str], boilerplate=None) -> CodeFingerprint | None:
    if not any(c.strip() for c in cells):
        return None
    filtered, offsets = normalised_code(cells)
    if len(filtered) < CODE_K:
        return None
    fp = CodeFingerprint("answer.py", CODE_K, CODE_WINDOW, boilerplate=boilerplate, filter=False,
                         fp=io.StringIO(filtered))
    fp.raw_code, fp.offsets = CELL_JOINER.join(cells), offsets
    return fp


def text_fingerprint(text: str, k: int = TEXT_K, window: int = TEXT_WINDOW) -> CodeFingerprint | None:
    if len(text) < max(k, MIN_TEXT_CHARS):
        return None
    return CodeFingerprint("answer.txt", k, window, filter=False, fp=io.StringIO(text))


def _without(fp: CodeFingerprint, common: set) -> CodeFingerprint:
    """The fingerprint without what many students share; its coverage (the denominator of copydetect's
    similarity) counts only what is left, so a copy is measured against the student's own work."""
    kept = copy.copy(fp)
    kept.hashes = fp.hashes - common
    kept.hash_idx = {h: i for h, i in fp.hash_idx.items() if h not in common}
    kept.token_coverage = get_token_coverage(kept.hash_idx, fp.k, len(fp.filtered_code))
    return kept


def matched_pairs(docs: dict[str, CodeFingerprint], min_similarity: float) -> dict[tuple[str, str], Match]:
    """Pairs of documents that share enough uncommon fingerprints, compared in full by copydetect."""
    holders: dict[int, list[str]] = defaultdict(list)
    for sid, fp in docs.items():
        for h in fp.hashes:
            holders[h].append(sid)
    cap = max(COMMON_MIN, int(COMMON_SHARE * len(docs)))
    common = {h for h, who in holders.items() if len(who) > cap}
    shared: Counter = Counter()
    own: Counter = Counter()                 # each document's uncommon fingerprints
    for h, who in holders.items():
        if h not in common:
            own.update(who)
            if len(who) > 1:
                shared.update(combinations(sorted(who), 2))
    filtered = {}
    matches = {}
    for (a, b), n in shared.items():
        # sharing a fraction f of the smaller side's fingerprints bounds the similarity near f: a cheap prefilter
        if n < max(MIN_SHARED, PREFILTER * min_similarity * min(own[a], own[b])):
            continue
        for sid in (a, b):
            if sid not in filtered:
                filtered[sid] = _without(docs[sid], common)
        if min(filtered[a].token_coverage, filtered[b].token_coverage) < MIN_OWN_CHARS:
            continue
        _, sims, slices = compare_files(filtered[a], filtered[b])
        similarity = float(max(sims))
        if similarity >= min_similarity:
            matches[(a, b)] = Match(round(similarity, 3), slices)
    return matches


# ---- the evidence --------------------------------------------------------------------------------------

def cross_variant(works: list[Work], index) -> list[tuple[str, str, Evidence]]:
    """(whose answer, whose reference it is, evidence) for wrong answers equal to another student's reference."""
    found = []
    for w in works:
        for key, record in sorted(w.answers.items()):
            if key in w.full_marks or "prints" not in record:
                continue
            for other in sorted(index.rare_holders_of(key, record["prints"]) - {w.student_id}):
                part = key[1]
                found.append((w.student_id, other, Evidence(
                    "cross-variant", part, CROSS_VARIANT_WEIGHT,
                    f"{part}: {w.student_id}'s answer {record.get('shown', '')} is {other}'s reference, "
                    f"not {w.student_id}'s own",
                    f"{part}:{w.student_id} 的答案 {record.get('shown', '')} 是 {other} 的参考答案，"
                    f"而不是其本人的")))
    return found


def shared_wrong(works: list[Work], index) -> list[tuple[str, str, Evidence]]:
    """Pairs giving the same rare wrong value (at most RARE_WRONG holders) on a part where their references
    differ, weighted by -log10 of the chance that a student of this class gives that value (k of n answers
    gave it: about (k-1)/(n-1))."""
    found = []
    answers_of = {w.student_id: w.answers for w in works}
    by_part: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    answered: Counter = Counter()
    for w in works:
        for key, record in w.answers.items():
            if "prints" not in record:
                continue
            answered[key] += 1
            if key not in w.full_marks:
                by_part[key][json.dumps(sorted(record["prints"].items()))].append(w.student_id)
    for key, values in by_part.items():
        n = answered[key]
        if n < 3 or not index.varies(key):
            continue
        for value, holders in values.items():
            k = len(holders)
            if not 2 <= k <= RARE_WRONG:
                continue
            chance = (k - 1) / (n - 1)
            weight = round(-math.log10(chance), 2)
            for a, b in combinations(sorted(holders), 2):
                if index.same_reference(key, a, b):
                    continue
                shown = answers_of[a][key].get("shown", "")
                found.append((a, b, Evidence(
                    "shared-wrong", key[1], weight,
                    f"{key[1]}: both gave the same wrong answer {shown} for different variants "
                    f"({k} of {n} students gave it: chance about 1 in {round(1 / chance)})",
                    f"{key[1]}：两人的题目版本不同，却给出相同的错误答案 {shown}"
                    f"({n} 名学生中有 {k} 名给出该答案：偶然相同的概率约为 1/{round(1 / chance)})")))
    return found


def written_matches(works: list[Work]) -> list[tuple[str, str, Evidence]]:
    found = []
    parts = sorted({key for w in works for key, r in w.answers.items() if "text" in r})
    for key in parts:
        docs = {}
        for w in works:
            record = w.answers.get(key, {})
            fp = text_fingerprint(normalised_text(record.get("text", "")))
            if fp is not None:
                docs[w.student_id] = fp
        for (a, b), match in matched_pairs(docs, MIN_TEXT_SIMILARITY).items():
            pct = round(100 * match.similarity)
            found.append((a, b, Evidence("text", key[1], round(TEXT_WEIGHT * match.similarity, 2),
                                         f"{key[1]}: written answers {pct}% the same (after normalising)",
                                         f"{key[1]}：书面回答在规范化后有 {pct}% 相同")))
    return found


def code_matches(works: list[Work], starter: list[str]) -> dict[tuple[str, str], Match]:
    boilerplate = None
    starter_fp = code_fingerprint(starter)
    if starter_fp is not None:
        boilerplate = np.array(sorted(starter_fp.hashes), dtype=np.int64)
    docs = {w.student_id: fp for w in works if (fp := code_fingerprint(w.cells, boilerplate)) is not None}
    return matched_pairs(docs, MIN_CODE_SIMILARITY)


def find_pairs(course: Course, assignment_id: str, works: list[Work]) -> list[Pair]:
    references = {w.student_id: refs for w in works
                  if (refs := {key: r["reference"] for key, r in w.answers.items() if "reference" in r})}
    index = index_from_records(course, course.assignment(assignment_id), references)
    pairs: dict[tuple[str, str], Pair] = {}

    def pair(a: str, b: str) -> Pair:
        key = tuple(sorted((a, b)))
        return pairs.setdefault(key, Pair(*key))

    for a, b, evidence in cross_variant(works, index) + shared_wrong(works, index) + written_matches(works):
        pair(a, b).evidence.append(evidence)
    for (a, b), match in code_matches(works, release_answer_code(course, assignment_id)).items():
        p = pair(a, b)
        p.code = match
        pct = round(100 * match.similarity)
        p.evidence.append(Evidence("code", "", round(CODE_WEIGHT * match.similarity, 2),
                                   f"code: {pct}% of the own code matches (names and layout ignored, starter excluded)",
                                   f"代码：自己编写的代码有 {pct}% 相同（忽略命名与排版，不含初始代码）"))
    return sorted(pairs.values(), key=lambda p: (-p.score, p.a, p.b))


# ---- the report ----------------------------------------------------------------------------------------

CSV_COLUMNS = ["rank", "student_a", "student_b", "score", "cross_variant", "shared_wrong", "code", "text",
               "evidence_en", "evidence_zh"]


def write_csv(path: Path, pairs: list[Pair]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        for rank, p in enumerate(pairs, 1):
            out.writerow([rank, spreadsheet_text(p.a), spreadsheet_text(p.b), p.score, p.weight_of("cross-variant"), p.weight_of("shared-wrong"),
                          p.weight_of("code"), p.weight_of("text"),
                          "; ".join(e.en for e in p.evidence), "；".join(e.zh for e in p.evidence)])


def _highlighted(code: str, slices) -> str:
    if slices is None or len(slices) == 0 or np.asarray(slices).size == 0:
        from markupsafe import escape
        return str(escape(code))
    text, _ = highlight_overlap(code, np.asarray(slices), '<mark>', '</mark>', escape_html=True)
    return text


def write_html(path: Path, course: Course, assignment_id: str, pairs: list[Pair], works: list[Work]) -> None:
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("hwkit", "pages"), autoescape=select_autoescape(["html"]))
    code_of = {w.student_id: w.code for w in works}
    shown = []
    for p in pairs[:SHOWN_PAIRS]:
        sides = None
        if p.code is not None:
            sides = [Markup(_highlighted(code_of[p.a], p.code.slices[0])),
                     Markup(_highlighted(code_of[p.b], p.code.slices[1]))]
        shown.append({"pair": p, "sides": sides})
    page = env.get_template("similarity.html").render(
        lang=course.lang, assignment=assignment_id, pairs=pairs, shown=shown, students=len(works))
    path.write_text(page, encoding="utf-8")


def main(*, course_dir: Path, assignment_id: str) -> str:
    course = load_course(course_dir)
    course.assignment(assignment_id)
    if not (course.root / GRADEBOOK_NAME).is_file():
        raise HwkitError(f"{course.root}: nothing graded yet; run `hwkit grade {assignment_id}` first")
    works = load_works(course, assignment_id)
    if not works:
        raise HwkitError(f"no graded submissions of {assignment_id}; run `hwkit grade {assignment_id}` first")
    pairs = find_pairs(course, assignment_id, works)
    folder = course.root / "graded" / assignment_id
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "similarity.csv", pairs)
    write_html(folder / "similarity.html", course, assignment_id, pairs, works)
    flagged = sum(p.score > 0 for p in pairs)
    return (f"{flagged} pair(s) with evidence among {len(works)} students of {assignment_id}. "
            f"Report: {folder / 'similarity.html'}  CSV: {folder / 'similarity.csv'}")
