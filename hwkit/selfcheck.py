"""The student's self-check: a bundle of public checks embedded in the notebook, and the code that judges a
reply against it.

The bundle (stored packed, see pack_bundle) holds, per part, the probe with public inputs, the check's kind,
and salted scrypt digests of the fingerprints of the reference reply and of each known mistake's reply on those
inputs (salt per student, digests spelled in letters only), with the known mistakes' notes and feedback. It never
holds an answer, a hidden input or reference code. What a digest still gives away is whatever can be guessed by
trying values; scrypt makes each try slow (bench/selfcheck.py). Its digest makes accidental or casual edits
detectable; the grader never reads the bundle, so editing it gains nothing."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from hwkit.checks import cases_unanswered, check_from_spec, check_spec, unanswered
from hwkit.probes import pack_letters, pack_probe, unpack_letters
from hwkit.records import Reply
from hwkit.variants import keyed_letters, letters_digest, letters_of, public_rng

BUNDLE_VERSION = 3
# scrypt's cost per digest (hence per guess). A part graded on a fixed answer: a guess that matches is that answer,
# so each costs ~20 ms on a 2024 laptop core and 8 MB. A function's outputs on the public inputs: grading calls it
# on other inputs, so recovering them earns nothing; cheap enough that a whole check stays quick.
ANSWER_KDF = {"n": 2**13, "r": 8, "p": 1}
PUBLIC_OUTPUT_KDF = {"n": 2**10, "r": 8, "p": 1}
_MAX_KDF = {"n": 2**16, "r": 16, "p": 4}     # what a bundle may ask for (an edited bundle must not hang a check)

PASS, FAIL, NOT_ANSWERED, COULD_NOT_RUN = "pass", "fail", "not answered", "could not run"
AT_GRADING = "answered (checked at grading)"
# Parts the self-check cannot confirm: their answers are judged by the grader (a choice) or a person (writing).
GRADED_ONLY_KINDS = ("choice", "written")


def digest(kdf: dict, salt: str, problem: str, part: str, key: str, fingerprint: str) -> str:
    raw = hashlib.scrypt(f"{problem}|{part}|{key}|{fingerprint}".encode("utf-8"), salt=salt.encode("ascii"),
                         n=kdf["n"], r=kdf["r"], p=kdf["p"], maxmem=160 * kdf["n"] * kdf["r"] * kdf["p"] + 2**20,
                         dklen=16)
    return letters_of(raw)


def valid_kdf(kdf) -> bool:
    return (isinstance(kdf, dict) and set(kdf) == {"n", "r", "p"} and all(type(v) is int and 1 <= v for v in kdf.values())
            and kdf["n"] >= 2 and kdf["n"] & (kdf["n"] - 1) == 0 and all(kdf[k] <= _MAX_KDF[k] for k in kdf))


def bundle_digest(bundle: dict) -> str:
    body = {k: v for k, v in bundle.items() if k != "digest"}
    return letters_digest(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def pack_bundle(bundle: dict) -> str:
    """The bundle as stored in the notebook: one letters-only blob, so neither its probe inputs nor its
    check settings put a digit run into the student's files."""
    return pack_letters(bundle)


def unpack_bundle(blob) -> dict:
    bundle = unpack_letters(blob)
    if not isinstance(bundle, dict) or not isinstance(bundle.get("parts"), list):
        raise ValueError("not a self-check bundle")
    return bundle


def _public_mistakes(part, probe) -> list:
    """Known mistakes whose replies compare like the reference's on the public probe. Parts whose self-check
    compares something else than grading does (their own public reply or check, or replies that grading reads
    through `interpret`) name no mistake offline."""
    if part.public_reference or part.public_check or part.interpret:
        return []
    return list(part.mistakes(probe))


def _literals(value) -> set[str]:
    """An answer as the texts a sentence could state it in, without spaces."""
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, (int, float)):
        return {str(value), repr(value), f"{value:.4g}", f"{value:.6g}"}
    if isinstance(value, str):
        return {"".join(value.split())}
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return set().union(set(), *(_literals(v) for v in items))


def _states_an_answer(feedback: dict, answers: set[str]) -> bool:
    """Grading's sentence for a mistake may state the right answer (it is read after submission); the bundle,
    which a student can unpack before, must not carry such a sentence."""
    text = "".join("".join(str(v).split()) for v in feedback.values())
    return any(len(a) >= 3 and a in text for a in answers)


def _entry(salt: str, problem_id: str, part, probe, exact: bool, answers: set[str]) -> dict:
    check = part.self_check_check()
    kdf = PUBLIC_OUTPUT_KDF if part.hidden_inputs else ANSWER_KDF
    memo: dict[tuple[str, str], str] = {}

    def digests(canonical: dict) -> dict:
        for key, fp in canonical.items():
            if (key, fp) not in memo:
                memo[key, fp] = digest(kdf, salt, problem_id, part.id, key, fp)
        return {key: memo[key, fp] for key, fp in canonical.items()}

    entry = {"problem": problem_id, "part": part.id, "title": part.title, "points": part.points, "kind": part.kind,
             "hidden_tests": part.hidden_inputs, "probe": pack_probe(probe), "check": check_spec(check), "kdf": kdf,
             "hashes": [], "mistakes": []}
    if not exact:
        return entry
    references = [c for c in map(check.canonical, part.self_check_replies(probe)) if c]
    entry["hashes"] = [digests(c) for c in references]
    for mistake in _public_mistakes(part, probe):
        canonical = check.canonical(mistake.value)
        if canonical and canonical not in references and not _states_an_answer(mistake.feedback, answers):
            entry["mistakes"].append({"note": mistake.note, "feedback": mistake.feedback, "hashes": digests(canonical)})
    return entry


def build_bundle(course, assignment, variant) -> dict:
    sid = variant.student.student_id
    salt = keyed_letters(course.secret, "salt", assignment.assignment_id, sid)
    exact = assignment.selfcheck == "exact"
    parts, modules = [], {}
    for pv in variant.problems:
        answers = _literals(pv.problem.answers(pv.params)) if exact else set()
        for part in pv.parts:
            probe = part.self_check_probe(public_rng(course.secret, assignment.assignment_id, pv.problem.id, part.id, sid))
            if probe.module is not None:
                modules[probe.module.name] = probe.module.source
            parts.append(_entry(salt, pv.problem.id, part, probe, exact, answers))
    bundle = {"version": BUNDLE_VERSION, "mode": assignment.selfcheck, "salt": salt, "parts": parts,
              "modules": modules}
    bundle["digest"] = bundle_digest(bundle)
    return bundle


@dataclass(frozen=True)
class PublicResult:
    problem: str
    part: str
    title: dict
    points: float
    status: str      # pass | fail | not answered | could not run | answered (checked at grading)
    hint: str        # a sentence for the student
    hidden_tests: bool
    note: str = ""   # a known mistake's answer note, as grading records it
    counted: bool = True   # among the public checks (not a part only grading can judge)


class _Digests:
    """The digests a reply's fingerprints give, computed lazily (each costs a scrypt) and at most once."""

    def __init__(self, entry: dict, salt: str, candidates: dict[str, list[str]]):
        self._entry, self._salt, self._candidates = entry, salt, candidates
        self._done: dict[str, list[str]] = {}

    def has(self, key: str, wanted: str) -> bool:
        done = self._done.setdefault(key, [])
        if wanted in done:
            return True
        candidates = self._candidates.get(key, [])
        while len(done) < len(candidates):
            done.append(digest(self._entry["kdf"], self._salt, self._entry["problem"], self._entry["part"], key,
                               candidates[len(done)]))
            if done[-1] == wanted:
                return True
        return False

    def all(self, hashes: dict) -> bool:
        return all(self.has(key, wanted) for key, wanted in hashes.items())


def _text(lang: str, en: str, zh: str) -> str:
    return zh if lang == "zh" else en


def _differs(check_type: str, failing: list[str], keys: list[str], lang: str) -> str:
    """Where the reply differs, said for a student: cases by number, never the fingerprint's field names."""
    if check_type == "Cases" and failing:
        total = len({k.split(".")[0] for k in keys})
        bad = sorted({int(k.split(".")[0]) + 1 for k in failing})
        return _text(lang, f"On {len(bad)} of {total} public test cases (case {', '.join(map(str, bad))}) your "
                           "function's result differs from the reference's.",
                     f"在 {total} 个公开测试用例中，有 {len(bad)} 个（第 {'、'.join(map(str, bad))} 个）的结果与参考结果不同。")
    if check_type == "Array" and "shape" in failing:
        return _text(lang, "The shape of your answer differs from the expected one.", "答案的形状与预期不同。")
    return _text(lang, "Your answer does not match the reference on the public check.",
                 "答案与公开检查的参考结果不一致。")


def judge_part(entry: dict, reply: Reply, salt: str, mode: str, lang: str) -> PublicResult:
    check = check_from_spec(entry["check"])
    graded_only = entry.get("kind") in GRADED_ONLY_KINDS or (mode == "exact" and not entry.get("hashes"))

    def result(status: str, en: str, zh: str, note: str = "") -> PublicResult:
        return PublicResult(entry["problem"], entry["part"], entry["title"], entry["points"], status,
                            _text(lang, en, zh), bool(entry.get("hidden_tests")), note, not graded_only)

    if not reply.ok:
        if unanswered(reply.error_type):
            return result(NOT_ANSWERED, reply.error_message or f"The code still raises {reply.error_type}.",
                          reply.error_message or f"代码仍抛出 {reply.error_type}。")
        return result(COULD_NOT_RUN, f"{reply.error_type}: {reply.error_message}",
                      f"{reply.error_type}：{reply.error_message}")
    if reply.value is None:
        return result(NOT_ANSWERED, "The answer is still None.", "答案仍为 None。")
    if cases_unanswered(reply.value):
        return result(NOT_ANSWERED, "The code still raises NotImplementedError.", "代码仍抛出 NotImplementedError。")
    if not check.well_formed(reply.value):
        return result(FAIL, "The answer does not have the expected form.", "答案形式不符合要求。")
    if graded_only:
        return result(AT_GRADING, "Answered; this part is checked at grading"
                      + (" and reviewed by an instructor." if entry.get("kind") == "written" else "."),
                      "已作答；该部分在评分时检查" + ("，并由教师复核。" if entry.get("kind") == "written" else "。"))
    if mode != "exact":
        return result(PASS, "Answered and well-formed (this assignment does not confirm answers offline).",
                      "已作答且格式正确（本作业的自检不核对答案）。")
    return _compare(entry, check, reply.value, salt, lang, result)


def _compare(entry: dict, check, value, salt: str, lang: str, result) -> PublicResult:
    found = _Digests(entry, salt, check.candidates(value))
    if any(found.all(hashes) for hashes in entry["hashes"]):
        return result(PASS, "Matches the reference on the public check.", "与公开检查的参考结果一致。")
    for mistake in entry.get("mistakes") or []:
        if found.all(mistake["hashes"]):
            feedback = mistake.get("feedback") or {}
            return result(FAIL, feedback.get("en", ""), feedback.get("zh", ""), mistake.get("note", ""))
    if len(entry["hashes"]) > 1:    # several right replies: which of them the student meant is unknown
        hint = _differs("", [], [], lang)
    else:
        keys = list(entry["hashes"][0])
        hint = _differs(entry["check"].get("type", ""), [k for k in keys if not found.has(k, entry["hashes"][0][k])],
                        keys, lang)
    return result(FAIL, hint, hint)
