"""Comparisons between a student's reply (data from the kernel) and the reference reply, in the grader.

Each check returns an Outcome (score fraction, feedback for the student, a stable answer note for the
instructor). Each can also fingerprint a value for the offline self-check: `canonical(want)` gives the
strings whose salted hashes the bundle stores, `candidates(got)` the strings a reply could match."""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from decimal import Decimal

import numpy as np
import sympy

from hwkit.formula import (FormulaError, compile_formula, decide, fingerprint_value, parse_formula,
                           reference_formula)
from hwkit.records import Outcome, Part, Probe, Reply, say
from hwkit.wording import in_language

CORRECT = "CORRECT"
CORRECT_TEXT = say("Correct.", "正确。")
NOT_ANSWERED = "NOT_ANSWERED"
# What a reply's error says when the student has not answered yet: a name still undefined, or the starter's
# `raise NotImplementedError`. The one rule for grading and the self-check.
UNANSWERED_ERRORS = ("NotAnswered", "NameError", "NotImplementedError")


def unanswered(error_type: str) -> bool:
    return error_type in UNANSWERED_ERRORS


def cases_unanswered(value) -> bool:
    """A reply of per-case records that all say the function is not written yet."""
    return (isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and unanswered(str(v.get("__error__", "")).split(":")[0]) for v in value))


def correct() -> Outcome:
    return Outcome(1.0, CORRECT, CORRECT_TEXT)


def wrong(note: str, en: str, zh: str, fraction: float = 0.0) -> Outcome:
    return Outcome(fraction, note, say(en, zh))


def _as_number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
            return float(value.reshape(()))
        if isinstance(value, str):
            return float(value.replace(",", "").replace("_", "").strip())
    except (ValueError, OverflowError):    # not a number, or an integer too large for a float
        return None
    return None


def _as_int(value) -> int | None:
    number = _as_number(value)
    if number is None or not math.isfinite(number) or number != int(number):
        return None
    if isinstance(value, (float, str)) and abs(number) > 2**53:
        return None
    return int(value) if isinstance(value, int) else int(number)


def _sig_candidates(x: float, digits: int) -> list[str]:
    """Fingerprints of x at `digits` significant figures, rounded down and up, at neighbouring exponents,
    so a correct value on the other side of a rounding boundary still matches the reference's."""
    if not math.isfinite(x):
        return []
    if x == 0:
        return ["0"]
    out = []
    e0 = math.floor(math.log10(abs(x)))
    for e in (e0 - 1, e0, e0 + 1):
        scale = Decimal(10) ** (e - digits + 1)
        q = Decimal(repr(x)) / scale
        for m in {int(q.to_integral_value(rounding="ROUND_FLOOR")), int(q.to_integral_value(rounding="ROUND_CEILING"))}:
            if 10 ** (digits - 1) <= abs(m) < 10 ** digits:
                out.append(f"{m}e{e}")
    return out


def _sig_canonical(x: float, digits: int) -> str:
    if x == 0:
        return "0"
    e = math.floor(math.log10(abs(x)))
    m = int((Decimal(repr(x)) / (Decimal(10) ** (e - digits + 1))).to_integral_value(rounding="ROUND_HALF_EVEN"))
    if abs(m) >= 10 ** digits:
        m, e = m // 10 if m > 0 else -((-m) // 10), e + 1
    return f"{m}e{e}"


class Check:
    """Base: subclasses implement grade(); fingerprints default to 'nothing to confirm offline'."""

    def grade(self, got, want) -> Outcome:
        raise NotImplementedError

    def matches(self, got, want) -> bool:
        return self.grade(got, want).fraction >= 1.0

    def canonical(self, want) -> dict[str, str]:
        return {}

    def candidates(self, got) -> dict[str, list[str]]:
        return {}

    def well_formed(self, got) -> bool:
        return got is not None


@dataclass(frozen=True)
class Exact(Check):
    """Integers (any integral number type) or strings, compared exactly."""

    def grade(self, got, want) -> Outcome:
        if isinstance(want, str):
            if isinstance(got, str) and got.strip() == want:
                return correct()
            return wrong("WRONG_VALUE", "The answer is not correct.", "答案不正确。")
        value = _as_int(got)
        if value is None:
            return wrong("NOT_AN_INTEGER", f"Expected an integer, got {type(got).__name__}.",
                         f"应为整数，实际为 {type(got).__name__}。")
        if value == int(want):
            return correct()
        return wrong("WRONG_VALUE", "The number is not correct.", "数值不正确。")

    def canonical(self, want) -> dict[str, str]:
        return {"": f"s:{want}" if isinstance(want, str) else f"i:{int(want)}"}

    def candidates(self, got) -> dict[str, list[str]]:
        if isinstance(got, str):
            return {"": [f"s:{got.strip()}"]}
        value = _as_int(got)
        return {"": [] if value is None else [f"i:{value}"]}

    def well_formed(self, got) -> bool:
        return isinstance(got, str) or _as_int(got) is not None


@dataclass(frozen=True)
class Number(Check):
    """A real number within a relative (and absolute) tolerance. The self-check fingerprint uses 4
    significant figures, which is no stricter than rel=2e-3."""
    rel: float = 2e-3
    abs: float = 1e-9
    digits: int = 4

    def grade(self, got, want) -> Outcome:
        value = _as_number(got)
        if value is None or not math.isfinite(value):
            return wrong("NOT_A_NUMBER", f"Expected a number, got {type(got).__name__}.",
                         f"应为数值，实际为 {type(got).__name__}。")
        if math.isclose(value, float(want), rel_tol=self.rel, abs_tol=self.abs):
            return correct()
        return wrong("WRONG_VALUE", f"The number is not within {self.rel:g} (relative) of the expected value.",
                     f"数值与正确结果的相对误差超过 {self.rel:g}。")

    def canonical(self, want) -> dict[str, str]:
        return {"": _sig_canonical(float(want), self.digits)}

    def candidates(self, got) -> dict[str, list[str]]:
        value = _as_number(got)
        return {"": [] if value is None else _sig_candidates(value, self.digits)}

    def well_formed(self, got) -> bool:
        return _as_number(got) is not None


def _projection(shape: tuple) -> np.ndarray:
    """Fixed positive weights per shape: the weighted sum stands for the whole array in a fingerprint."""
    return np.random.default_rng([7919, len(shape), *shape]).uniform(0.5, 1.5, size=shape)


@dataclass(frozen=True)
class Array(Check):
    """Arrays: type, shape, numeric dtype, then allclose (integers and floats compare by value)."""
    rtol: float = 1e-4
    atol: float = 1e-5

    def _coerce(self, got):
        if isinstance(got, np.ndarray):
            return got
        if isinstance(got, (list, tuple)):
            try:
                arr = np.asarray(got)
            except (ValueError, TypeError):
                return None
            return arr if arr.dtype.kind in "biuf" else None
        return None

    def grade(self, got, want) -> Outcome:
        want = np.asarray(want)
        arr = self._coerce(got)
        if arr is None:
            return wrong("NOT_AN_ARRAY", f"Expected an array or tensor, got {type(got).__name__}.",
                         f"应为数组或张量，实际为 {type(got).__name__}。")
        if arr.shape != want.shape:
            return wrong("WRONG_SHAPE", f"Shape {tuple(arr.shape)} where {tuple(want.shape)} was expected.",
                         f"形状为 {tuple(arr.shape)}，应为 {tuple(want.shape)}。")
        if arr.dtype.kind not in "biuf":
            return wrong("WRONG_DTYPE", f"Values have dtype {arr.dtype}, expected numbers.",
                         f"数据类型为 {arr.dtype}，应为数值。")
        if not np.all(np.isfinite(arr)) and np.all(np.isfinite(want)):
            return wrong("NOT_FINITE", "The values contain NaN or infinity.", "结果中含有 NaN 或无穷大。")
        if np.allclose(arr.astype(np.float64), want.astype(np.float64), rtol=self.rtol, atol=self.atol):
            return correct()
        return wrong("WRONG_VALUES", "Shape is right but the values differ from the expected ones.",
                     "形状正确，但数值与正确结果不同。")

    def canonical(self, want) -> dict[str, str]:
        want = np.asarray(want, dtype=np.float64)
        return {"shape": str(tuple(want.shape)), "sum": _sig_canonical(float((want * _projection(want.shape)).sum()), 3)}

    def candidates(self, got) -> dict[str, list[str]]:
        arr = self._coerce(got)
        if arr is None or arr.dtype.kind not in "biuf":
            return {"shape": [], "sum": []}
        value = float((arr.astype(np.float64) * _projection(arr.shape)).sum())
        return {"shape": [str(tuple(arr.shape))], "sum": _sig_candidates(value, 3)}

    def well_formed(self, got) -> bool:
        return self._coerce(got) is not None


@dataclass(frozen=True)
class Formula(Check):
    """A formula string in declared symbols, compared with the reference formula by evaluation at fixed
    points (hwkit.formula), within time_limit seconds of CPU. Each distinct text is read and evaluated
    once, however many known mistakes it is then compared with."""
    symbols: tuple[str, ...]
    functions: tuple[str, ...] = ()
    time_limit: float = 5.0

    def _symbols(self) -> dict[str, sympy.Symbol]:
        return {name: sympy.Symbol(name, positive=True) for name in self.symbols}

    def parse(self, text) -> sympy.Expr:
        return parse_formula(text, self._symbols(), self.functions)

    def _compiled(self, text):
        return compile_formula(text, tuple(self.symbols), tuple(self.functions))

    def grade(self, got, want) -> Outcome:
        try:
            student = self._compiled(got)
        except FormulaError as exc:
            return wrong("FORMULA_UNPARSEABLE", f"The formula could not be read: {exc}.", f"无法解析公式：{exc}。")
        verdict = decide(student, reference_formula(want, tuple(self.symbols)), tuple(self.symbols), self.time_limit)
        if verdict == "equal":
            return correct()
        if verdict == "undecided":
            return Outcome(0.0, "FORMULA_UNDECIDED",
                           say("The checker could not decide this formula within its time and size limits; "
                               "the instructor will review it.",
                               "检查器未能在时间和规模限制内判定该公式，将由教师复核。"), needs_review=True, undecided=True)
        if verdict == "undefined":
            return wrong("FORMULA_UNDEFINED",
                         "The formula is undefined or not a finite real number for some values of its symbols "
                         "(for example a division by zero, the logarithm of a number ≤ 0 or the square root of a "
                         "negative number).",
                         "该公式在某些取值下无定义或不是有限实数（例如除以零、对非正数取对数、对负数开平方）。")
        return wrong("FORMULA_NOT_EQUIVALENT", "The formula is not equivalent to the expected one.",
                     "公式与正确公式不等价。")

    def _fingerprint(self, tree, exact_only: bool) -> list[str]:
        value = fingerprint_value(tree, tuple(self.symbols), self.time_limit)
        if value is None:
            return []
        if not isinstance(value, float):
            return [f"q:{value}"]   # exact: the same text for every equivalent formula
        return [_sig_canonical(value, 8)] if exact_only else _sig_candidates(value, 8)

    def canonical(self, want) -> dict[str, str]:
        fp = self._fingerprint(reference_formula(want, tuple(self.symbols)), exact_only=True)
        return {"": fp[0]} if fp else {}

    def candidates(self, got) -> dict[str, list[str]]:
        try:
            return {"": self._fingerprint(self._compiled(got), exact_only=False)}
        except FormulaError:
            return {"": []}

    def well_formed(self, got) -> bool:
        try:
            self._compiled(got)
            return True
        except FormulaError:
            return False


@dataclass(frozen=True)
class Fields(Check):
    """A dict reply whose keys are checked separately, with weights for partial credit. `work` names the keys
    that are the work asked for: when none of them earns anything, neither do the others (a float32 tensor of
    the wrong image is not a fifth of a dataset)."""
    fields: dict  # key -> (weight, Check)
    work: tuple = ()

    def grade(self, got, want) -> Outcome:
        if not isinstance(got, dict):
            return wrong("WRONG_TYPE", "The reply has the wrong form.", "答案形式不正确。")
        total = sum(w for w, _ in self.fields.values())
        earned, failures = {}, []
        for key, (weight, check) in self.fields.items():
            if key not in want:
                total -= weight
                continue
            outcome = check.grade(got.get(key), want[key]) if key in got else wrong("MISSING", "", "")
            earned[key] = weight * outcome.fraction
            if outcome.fraction < 1:
                failures.append((key, outcome))
        if not failures:
            return correct()
        score = sum(earned.values())
        if self.work and not any(earned.get(key, 0.0) > 0 for key in self.work):
            score = 0.0
        key, first = failures[0]
        return Outcome(score / total if total else 0.0, f"{key.upper()}_{first.note}",
                       say(f"{key}: {first.feedback['en']}", f"{key}:{first.feedback['zh']}"))

    def matches(self, got, want) -> bool:
        if not isinstance(got, dict):
            return False
        return all(key in got and self.fields[key][1].matches(got[key], value) for key, value in want.items())

    def canonical(self, want) -> dict[str, str]:
        out = {}
        for key, (_, check) in self.fields.items():
            if key in want:
                out.update({f"{key}.{k}".rstrip("."): v for k, v in check.canonical(want[key]).items()})
        return out

    def candidates(self, got) -> dict[str, list[str]]:
        out = {}
        for key, (_, check) in self.fields.items():
            sub = check.candidates(got.get(key)) if isinstance(got, dict) and key in got else {}
            out.update({f"{key}.{k}".rstrip("."): v for k, v in sub.items()})
        return out

    def well_formed(self, got) -> bool:
        return isinstance(got, dict)


@dataclass(frozen=True)
class Cases(Check):
    """A list of replies, one per test case; the score is the share of cases that pass."""
    check: Check

    def grade(self, got, want) -> Outcome:
        got = _rows(got)
        if not isinstance(got, list) or len(got) != len(want):
            return wrong("WRONG_TYPE", "The answer does not have one entry per test case (or per table row).",
                         "答案没有为每个测试用例（或表格的每一行）各给出一项。")
        if cases_unanswered(got):
            return wrong(NOT_ANSWERED, "Not answered: the function still raises NotImplementedError.",
                         "未作答：函数仍抛出 NotImplementedError。")
        outcomes = [self._one(g, w) for g, w in zip(got, want)]
        passed = sum(o.fraction >= 1 for o in outcomes)
        if passed == len(outcomes):
            return correct()
        failing = Counter(o.note for o in outcomes if o.fraction < 1).most_common(1)[0][0]
        first = next(o for o in outcomes if o.note == failing)
        return Outcome(sum(o.fraction for o in outcomes) / len(outcomes), failing,
                       say(f"{passed} of {len(outcomes)} test cases pass. {first.feedback['en']}",
                           f"{len(outcomes)} 个测试用例中通过 {passed} 个。{first.feedback['zh']}"))

    def _one(self, got, want) -> Outcome:
        if isinstance(got, dict) and "__error__" in got:
            return wrong("RAISED", f"The call raised {got['__error__']}.", f"调用时抛出异常 {got['__error__']}。")
        return self.check.grade(got, want)

    def matches(self, got, want) -> bool:
        got = _rows(got)
        return isinstance(got, list) and len(got) == len(want) and all(
            not (isinstance(g, dict) and "__error__" in g) and self.check.matches(g, w) for g, w in zip(got, want))

    def canonical(self, want) -> dict[str, str]:
        return {f"{i}.{k}".rstrip("."): v for i, w in enumerate(want) for k, v in self.check.canonical(w).items()}

    def candidates(self, got) -> dict[str, list[str]]:
        got = _rows(got)
        if not isinstance(got, list):
            return {}
        return {f"{i}.{k}".rstrip("."): v for i, g in enumerate(got) for k, v in self.check.candidates(g).items()}

    def well_formed(self, got) -> bool:
        return isinstance(_rows(got), list)


def _rows(got):
    """A table written as an array (numpy or a tensor, which arrive as arrays) is the list of its rows."""
    return list(got) if isinstance(got, np.ndarray) and got.ndim >= 1 else got


# Punctuation that NFKC leaves in its Chinese or typographic form, mapped to the plain ASCII one.
_PLAIN_PUNCTUATION = str.maketrans({"。": ".", "、": ",", "“": '"', "”": '"', "„": '"', "‘": "'", "’": "'",
                                    "–": "-", "—": "-", "―": "-", "‐": "-", "‑": "-", "・": " ", "·": " ",
                                    "「": '"', "」": '"', "『": '"', "』": '"', "《": '"', "》": '"'})


def normalise_text(text: str) -> str:
    """Text as a rubric compares it: full-width forms folded to half width (NFKC), case folded, typographic
    punctuation made plain, runs of white space one space."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PLAIN_PUNCTUATION)
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=256)
def _plain_concepts(concepts: tuple) -> tuple:
    """((name, ((synonym, its normalised form), ...)), ...): each rubric's synonyms normalised once."""
    return tuple((name, tuple((w, normalise_text(w)) for w in words)) for name, words in concepts)


@dataclass(frozen=True)
class Rubric(Check):
    """A short written answer scored provisionally by key concepts (each a list of synonyms in Chinese
    and English). Always marked for review: never silently full marks."""
    concepts: tuple  # ((name, (synonym, ...)), ...)
    min_chars: int = 15

    def grade(self, got, want=None) -> Outcome:
        if not isinstance(got, str) or len(got.strip()) < self.min_chars:
            return Outcome(0.0, "WRITTEN_TOO_SHORT", say("The written answer is missing or too short.",
                                                          "书面回答缺失或过短。"), needs_review=True)
        hits = self.concept_hits(got)
        found = [name for name, _ in self.concepts if hits[name]]
        missing = [name for name, _ in self.concepts if not hits[name]]
        fraction = len(found) / len(self.concepts)
        note = "WRITTEN_ALL_CONCEPTS" if not missing else f"WRITTEN_MISSING_{missing[0].upper()}"
        return Outcome(fraction, note, say(
            f"Provisional: mentions {len(found)} of {len(self.concepts)} key ideas"
            + (f"; not found: {', '.join(missing)}" if missing else "") + ". An instructor reviews written answers.",
            f"暂定：涉及 {len(found)}/{len(self.concepts)} 个要点" + (f"；未提到：{'、'.join(missing)}" if missing else "")
            + "。书面回答将由教师复核。"), needs_review=True)

    def concept_hits(self, text: str) -> dict[str, list[str]]:
        """{concept: the synonyms found in the normalised text (empty: missing)}, in the rubric's order."""
        text = normalise_text(text)
        return {name: [w for w, plain in words if plain in text] for name, words in _plain_concepts(self.concepts)}

    def well_formed(self, got) -> bool:
        return isinstance(got, str) and len(got.strip()) >= self.min_chars


@dataclass(frozen=True)
class Choice(Check):
    """A multiple-choice letter; '(b)', 'B.' and ' b ' all read as 'B'."""

    @staticmethod
    def letter(got) -> str | None:
        if not isinstance(got, str):
            return None
        match = re.fullmatch(r"\s*\(?([A-Za-z])[).]?\s*", got)
        return match.group(1).upper() if match else None

    def grade(self, got, want) -> Outcome:
        letter = self.letter(got)
        if letter is None:
            return wrong("NOT_A_CHOICE", "Answer with one option letter, e.g. \"B\".", "请只填写一个选项字母，例如 \"B\"。")
        return correct() if letter == want else wrong("WRONG_CHOICE", "That option is not correct.", "所选选项不正确。")

    # No self-check fingerprint: with four options an offline oracle would give the answer away.

    def well_formed(self, got) -> bool:
        return self.letter(got) is not None


def grade_reply(part: Part, reply: Reply, probe: Probe) -> Outcome:
    """Score one part: missing and crashing answers first, then the reference, then known mistakes. Whatever
    raises on the way (interpreting the reply, the reference, the check, a known mistake) costs this part
    only: GRADER_ERROR, scored 0 and flagged so that a person looks at it."""
    try:
        return _grade_reply(part, reply, probe)
    except Exception as exc:  # the grader's own fault or a reply it cannot handle: never the whole submission
        name = type(exc).__name__
        return Outcome(0.0, "GRADER_ERROR", say(f"The grader failed on this part ({name}); an instructor will review it.",
                                                f"评分程序在此部分出错（{name}），将由教师复核。"), needs_review=True)


def _grade_reply(part: Part, reply: Reply, probe: Probe) -> Outcome:
    if not reply.ok:
        if unanswered(reply.error_type):
            if reply.error_message:
                return wrong(NOT_ANSWERED, "Not answered: " + reply.error_message,
                             "未作答：" + in_language(reply.error_message, "zh") + "。")
            return wrong(NOT_ANSWERED, f"Not answered: the code still raises {reply.error_type}.",
                         f"未作答：代码仍抛出 {reply.error_type}。")
        return wrong("RAISED", f"Your code raised {reply.error_type}: {reply.error_message}",
                     f"代码抛出异常 {reply.error_type}：{in_language(reply.error_message, 'zh')}")
    if reply.value is None:
        return wrong(NOT_ANSWERED, "Not answered (the answer is still None).", "未作答（答案仍为 None）。")
    value = reply.value
    if part.interpret is not None:
        value = part.interpret(value, probe)
    want = part.reference(probe)
    outcome = part.check.grade(value, want)
    if outcome.fraction >= 1.0 or outcome.undecided:   # undecided: a person decides, not a mistake list
        return outcome
    for mistake in part.mistakes(probe):
        if part.check.matches(value, mistake.value):
            fraction = outcome.fraction if mistake.fraction is None else mistake.fraction
            return Outcome(fraction, mistake.note, mistake.feedback, outcome.needs_review, outcome.undecided)
    return outcome


_CHECK_TYPES = {cls.__name__: cls for cls in (Exact, Number, Array, Formula, Fields, Cases, Rubric, Choice)}


def check_spec(check: Check) -> dict:
    """A check as plain JSON, for the self-check bundle."""
    name = type(check).__name__
    if isinstance(check, Fields):
        return {"type": name, "fields": {k: [w, check_spec(c)] for k, (w, c) in check.fields.items()},
                "work": list(check.work)}
    if isinstance(check, Cases):
        return {"type": name, "check": check_spec(check.check)}
    if isinstance(check, Rubric):   # checked at grading: its concepts are the grader's, and can name an answer
        return {"type": name, "concepts": [], "min_chars": check.min_chars}
    spec = {"type": name}
    for key, value in vars(check).items():
        spec[key] = [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, tuple) else value
    return spec


def check_from_spec(spec: dict) -> Check:
    if not isinstance(spec, dict) or spec.get("type") not in _CHECK_TYPES:
        raise ValueError("unknown check in the self-check bundle")
    cls = _CHECK_TYPES[spec["type"]]
    if cls is Fields:
        return Fields({k: (float(w), check_from_spec(c)) for k, (w, c) in spec["fields"].items()},
                      tuple(str(k) for k in spec.get("work", ())))
    if cls is Cases:
        return Cases(check_from_spec(spec["check"]))
    args = {k: v for k, v in spec.items() if k != "type"}
    if cls is Formula:
        args = {"symbols": tuple(args["symbols"]), "functions": tuple(args.get("functions", ())),
                "time_limit": float(args.get("time_limit", 5.0))}
    if cls is Rubric:
        args = {"concepts": tuple((c[0], tuple(c[1])) for c in args["concepts"]), "min_chars": int(args["min_chars"])}
    return cls(**args)
