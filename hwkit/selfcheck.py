"""The student's self-check: a bundle of public checks embedded in the notebook, and the code that runs it.

The bundle (stored packed, see pack_bundle) holds, per part, the probe with public inputs, the check's kind, and salted hashes of the
reference reply's fingerprints (salt per student, digests spelled in letters only). It never holds an
answer, a hidden input or reference code. Its digest makes accidental or casual edits detectable; the
grader never reads the bundle, so editing it gains nothing."""
from __future__ import annotations

import json
from dataclasses import dataclass

from hwkit.checks import Reply, cases_unanswered, check_from_spec, check_spec, unanswered
from hwkit.probes import pack_letters, pack_probe, unpack_letters
from hwkit.variants import keyed_letters, letters_digest

BUNDLE_VERSION = 2


def _hash(salt: str, problem: str, part: str, key: str, fingerprint: str) -> str:
    return letters_digest(f"{salt}|{problem}|{part}|{key}|{fingerprint}".encode("utf-8"))


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


def build_bundle(course, assignment, variant) -> dict:
    from hwkit.generate import public_rng  # shared seed derivation with the pre-release verification

    sid = variant.student.student_id
    salt = keyed_letters(course.secret, "salt", assignment.assignment_id, sid)
    exact = assignment.selfcheck == "exact"
    parts, modules = [], {}
    for pv in variant.problems:
        for part in pv.parts:
            probe = part.self_check_probe(public_rng(course.secret, assignment.assignment_id, pv.problem.id, part.id, sid))
            if probe.module is not None:
                modules[probe.module.name] = probe.module.source
            check = part.self_check_check()
            entry = {"problem": pv.problem.id, "part": part.id, "title": part.title, "points": part.points,
                     "kind": part.kind, "hidden_tests": part.hidden_inputs, "probe": pack_probe(probe),
                     "check": check_spec(check), "hashes": []}
            if exact:
                for reply in part.self_check_replies(probe):
                    canonical = check.canonical(reply)
                    if canonical:
                        entry["hashes"].append({key: _hash(salt, pv.problem.id, part.id, key, fp)
                                                for key, fp in canonical.items()})
            parts.append(entry)
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
    status: str      # pass | fail | not answered | could not run | answered (review)
    hint: str
    hidden_tests: bool


def judge_part(entry: dict, reply: Reply, salt: str, mode: str, lang: str) -> PublicResult:
    check = check_from_spec(entry["check"])

    def result(status: str, en: str, zh: str) -> PublicResult:
        return PublicResult(entry["problem"], entry["part"], entry["title"], entry["points"], status,
                            zh if lang == "zh" else en, bool(entry.get("hidden_tests")))

    if not reply.ok:
        if unanswered(reply.error_type):
            return result("not answered", reply.error_message or f"the code still raises {reply.error_type}",
                          reply.error_message or f"代码仍抛出 {reply.error_type}")
        return result("could not run", f"{reply.error_type}: {reply.error_message}", f"{reply.error_type}:{reply.error_message}")
    if reply.value is None:
        return result("not answered", "the answer is still None", "答案仍为 None")
    if cases_unanswered(reply.value):
        return result("not answered", "the code still raises NotImplementedError", "代码仍抛出 NotImplementedError")
    if not check.well_formed(reply.value):
        return result("fail", "the answer does not have the expected form", "答案形式不符合要求")
    if mode != "exact":
        return result("pass", "answered and well-formed (this assignment does not confirm answers offline)",
                      "已作答且格式正确（本作业的自检不核对答案）")
    alternatives = entry.get("hashes") or []
    if not alternatives:
        if entry.get("kind") == "written":
            return result("answered", "answered; written answers are reviewed by an instructor", "已作答；书面回答由教师复核")
        return result("answered", "answered; this part is checked only at grading", "已作答；该部分仅在评分时检查")
    candidates = check.candidates(reply.value)
    failing = min(([key for key, digest in hashes.items()
                    if not any(_hash(salt, entry["problem"], entry["part"], key, c) == digest
                               for c in candidates.get(key, []))] for hashes in alternatives), key=len)
    if not failing:
        return result("pass", "matches the reference on the public check", "与公开检查的参考结果一致")
    where = ", ".join(k for k in failing if k) or "value"
    return result("fail", f"does not match the reference ({where})", f"与参考结果不一致({where})")
