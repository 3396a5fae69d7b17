"""Copying evidence: an instructor runs `hwkit similarity` after grading and reads, pair by pair, why two
students' work looks shared. Copies rank on top with the right evidence; independent work and students who
only share the starter are not named.

The class is made here as grading would have stored it (the gradebook's answer records and the executed
notebooks), so the evidence rules are tested without running kernels; one test at the end goes through
`hwkit grade --similarity` in the sandbox."""
from __future__ import annotations

import csv
import random
import shutil

import nbformat
import pytest

from hwkit.checks import Reply
from hwkit.course import load_course
from hwkit.generate import build_variant
from hwkit.gradebook import Gradebook, PartResult, SubmissionResult
from hwkit.integrity import answer_record, forget
from hwkit.sandbox import sandbox_available
from hwkit.similarity import code_fingerprint, matched_pairs
from tests.support import hwkit, make_course, read_grades, release_notebook, set_answer_cell, solution_notebook, submit

PROBLEMS = ["receptive-field", "conv-cost", "depthwise-separable"]
INDEPENDENT = ["ind1", "ind2", "ind3", "ind4"]
STUDENTS = INDEPENDENT + ["copier", "retyper", "rare1", "rare2", "writer1", "writer2", "starter1", "starter2"]
# Everyone explains depthwise-separable convolution in their own words, except writer2, who took writer1's
# text and changed only its spacing, punctuation width and letter case.
PRINCIPLES = {
    "ind1": "深度卷积对每个通道单独做空间滤波，逐点卷积再用 1×1 卷积混合通道，所以参数少很多。",
    "ind2": "It splits a convolution into a per-channel spatial filter and a 1x1 channel mixer, saving parameters.",
    "ind3": "先按通道分别卷积（depthwise），再做 1×1 的 pointwise 卷积融合通道信息；计算量约为原来的 1/C_out + 1/K²。",
    "ind4": "Spatial filtering and channel mixing are decoupled: each input channel gets its own K×K kernel, then a "
            "pointwise convolution combines them.",
    "copier": "把标准卷积拆成两步：逐通道的空间卷积和跨通道的 1×1 卷积。",
    "retyper": "Depthwise then pointwise: fewer multiplications than a full convolution.",
    "rare1": "每个通道先独立卷积，然后 1×1 卷积负责组合通道，节省参数与计算。",
    "rare2": "A depthwise layer filters every channel on its own and a 1x1 layer mixes them.",
    "writer1": "MobileNet 的做法：第一步 depthwise，每个输入通道配一个 3×3 核只管空间；第二步 pointwise，"
               "用 1×1 核把通道线性组合起来。这样空间和通道两件事分开做，参数量大约降到原来的九分之一。",
}
PRINCIPLES["writer2"] = ("mobilenet的做法: 第一步Depthwise,每个输入通道配一个 3×3 核只管空间; 第二步 POINTWISE,"
                         "用1×1核把通道线性组合起来.  这样空间和通道两件事分开做,参数量大约降到原来的九分之一.")

RF_STYLES = {
    "ind1": '''
def receptive_field(layers):
    """Walk the layers from the input, keeping the field size and the jump between neighbouring outputs."""
    field_size = 1
    jump = 1
    index = 0
    while index < len(layers):
        kernel, stride, padding, dilation = layers[index]
        effective = dilation * (kernel - 1) + 1
        field_size = field_size + (effective - 1) * jump
        jump = jump * stride
        index += 1
    return field_size, jump
''',
    "ind2": '''
from functools import reduce

def receptive_field(layers):
    return reduce(lambda acc, l: (acc[0] + l[3] * (l[0] - 1) * acc[1], acc[1] * l[1]), layers, (1, 1))
''',
    "ind3": '''
def receptive_field(layers):
    if not layers:
        return 1, 1
    r, j = receptive_field(layers[:-1])
    k, s, _, d = layers[-1]
    return r + d * (k - 1) * j, j * s
''',
    "ind4": '''
import numpy as np

def receptive_field(layers):
    ks, ss, ds = (np.array([l[i] for l in layers]) for i in (0, 1, 3))
    jumps = np.concatenate([[1], np.cumprod(ss)[:-1]])
    return int(1 + np.sum(ds * (ks - 1) * jumps)), int(np.prod(ss))
''',
}
# ind1's function, names changed and laid out differently, comments added: the same work.
RF_STYLES["copier"] = '''
def receptive_field(lst):
    # my own solution
    rf = 1; step = 1; i = 0
    while i < len(lst):
        k_, s_, p_, d_ = lst[i]
        eff = d_ * (k_ - 1) + 1
        rf = rf + (eff - 1) * step
        step = step * s_
        i += 1
    return rf, step
'''
SHARED_WRONG = ("conv_params", 123457)
SECRET = "similarity-test-2"   # variants under which each planted premise holds (see the report fixture)


def _reference(part):
    return part.reference(part.probe(random.Random(0)))


def _record(root, course, sid: str, values: dict, notebook) -> None:
    """Store a student's graded result as `hwkit grade` does: the gradebook row with its answer records,
    and the executed notebook."""
    spec = course.assignment("t")
    student = next(s for s in course.roster if s.student_id == sid)
    result = SubmissionResult("t", sid, "ok", "", f"hash-{sid}", graded_at="2026-12-02T00:00:00+00:00")
    for pv in build_variant(course, spec, student).problems:
        for part in pv.parts:
            if part.id not in values:
                result.parts.append(PartResult(pv.problem.id, part.id, part.title, 0.0, part.points, "NOT_ANSWERED",
                                               {"en": "", "zh": ""}))
                continue
            value = values[part.id]
            right = part.check.matches(value, _reference(part)) if part.kind != "written" else True
            result.parts.append(PartResult(pv.problem.id, part.id, part.title, part.points if right else 0.0,
                                           part.points, "CORRECT" if right else "WRONG_VALUE", {"en": "", "zh": ""},
                                           compared=answer_record(part, Reply(True, value))))
    book = Gradebook(root)
    book.record(result)
    book.close()
    folder = root / "graded" / "t" / sid
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(folder / "t.ipynb"))


def _own_values(course, sid: str) -> dict:
    student = next(s for s in course.roster if s.student_id == sid)
    values = {}
    for pv in build_variant(course, course.assignment("t"), student).problems:
        for part in pv.parts:
            if part.kind in ("value", "formula", "choice") and not part.hidden_inputs:
                values[part.id] = _reference(part)
    return values


def _typed(values: dict) -> str:
    return "\n".join(f"{name} = {value!r}" for name, value in values.items() if not isinstance(value, str))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    forget()
    # A fixed secret: with some secrets two of the 100 background variants share a conv_params reference, and
    # the part then counts as too common to be evidence (hwkit/integrity.py), so the planted pair would vanish.
    root = make_course(tmp_path_factory.mktemp("similarity"), PROBLEMS, STUDENTS, secret=SECRET)
    course = load_course(root)
    for sid in STUDENTS:
        values = _own_values(course, sid)
        nb = solution_notebook(root, sid)
        if sid in RF_STYLES:
            set_answer_cell(nb, "receptive_field", RF_STYLES[sid])
        if sid == "retyper":            # ind2's finished notebook, re-typed into the retyper's own release
            values = {k: v for k, v in _own_values(course, "ind2").items()}
            nb = release_notebook(root, sid)
            set_answer_cell(nb, "rf_final", _typed({k: values[k] for k in ("rf_final", "rf_jump", "rf_out_size")}))
            set_answer_cell(nb, "conv_params", _typed({k: values[k] for k in
                                                       ("conv_out_hw", "conv_params", "conv_macs", "conv_flops")}))
        if sid in ("rare1", "rare2"):
            values[SHARED_WRONG[0]] = SHARED_WRONG[1]
        if sid in PRINCIPLES:
            values["ds_principle"] = PRINCIPLES[sid]
        if sid.startswith("starter"):
            values, nb = {}, release_notebook(root, sid)
        _record(root, course, sid, values, nb)
    hwkit("similarity", "t", "--course", root)
    with open(root / "graded" / "t" / "similarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return root, rows


def _pair(row) -> frozenset:
    return frozenset((row["student_a"], row["student_b"]))


PLANTED = {frozenset({"copier", "ind1"}), frozenset({"retyper", "ind2"}), frozenset({"rare1", "rare2"}),
           frozenset({"writer1", "writer2"})}


def test_planted_copies_rank_on_top(report):
    _, rows = report
    assert {_pair(r) for r in rows[:4]} == PLANTED, rows


def test_each_pair_says_what_its_evidence_is(report):
    _, rows = report
    by_pair = {_pair(r): r for r in rows}
    copied = by_pair[frozenset({"copier", "ind1"})]
    assert float(copied["code"]) >= 5 and "code:" in copied["evidence_en"] and "代码" in copied["evidence_zh"]
    retyped = by_pair[frozenset({"retyper", "ind2"})]
    assert float(retyped["cross_variant"]) >= 9           # at least three parts answered with ind2's numbers
    assert "is ind2's reference, not retyper's own" in retyped["evidence_en"]
    assert "是 ind2 的参考答案" in retyped["evidence_zh"]
    rare = by_pair[frozenset({"rare1", "rare2"})]
    assert float(rare["shared_wrong"]) > 0 and "chance about 1 in" in rare["evidence_en"]
    assert "conv_params" in rare["evidence_en"] and "123457" in rare["evidence_en"]
    written = by_pair[frozenset({"writer1", "writer2"})]
    assert float(written["text"]) >= 2 and "ds_principle: written answers" in written["evidence_en"]
    assert "书面回答" in written["evidence_zh"]


def test_independent_work_and_the_starter_name_nobody(report):
    _, rows = report
    for row in rows:
        if _pair(row) not in PLANTED:
            assert float(row["score"]) == 0, row
    assert not any(pair & {"starter1", "starter2"} for pair in map(_pair, rows))


def test_the_page_shows_a_pair_side_by_side_and_no_third_student(report):
    root, rows = report
    page = (root / "graded" / "t" / "similarity.html").read_text(encoding="utf-8")
    rank = next(i for i, r in enumerate(rows, 1) if _pair(r) == {"copier", "ind1"})
    section = page.split(f'<section id="pair-{rank}">')[1].split("</section>")[0]
    assert "<mark>" in section and "receptive_field" in section
    others = set(STUDENTS) - {"copier", "ind1"}
    assert not any(f">{sid}<" in section or f" {sid} " in section or f"{sid}'s" in section for sid in others)
    assert "<script>alert" not in page


def test_renaming_and_reformatting_do_not_hide_a_copy():
    docs = {"a": code_fingerprint([RF_STYLES["ind1"]] * 3), "b": code_fingerprint([RF_STYLES["copier"]] * 3),
            "c": code_fingerprint([RF_STYLES["ind3"]] * 3)}
    matches = matched_pairs(docs, 0.0)
    assert matches[("a", "b")].similarity >= 0.6
    assert ("a", "c") not in matches or matches[("a", "c")].similarity < 0.2


def test_a_hostile_answer_is_shown_escaped(tmp_path):
    """Whatever a notebook holds reaches the page as text, never as markup."""
    forget()
    root = make_course(tmp_path, ["receptive-field"], ["x1", "x2", "x3"])
    course = load_course(root)
    hostile = "<script>alert(1)</script>"
    for sid in ("x1", "x2", "x3"):
        nb = solution_notebook(root, sid)
        set_answer_cell(nb, "receptive_field", RF_STYLES["ind1"] + f"\n# {hostile}\n" * 20 if sid != "x3"
                        else RF_STYLES["ind3"])
        _record(root, course, sid, _own_values(course, sid), nb)
    hwkit("similarity", "t", "--course", root)
    page = (root / "graded" / "t" / "similarity.html").read_text(encoding="utf-8")
    assert hostile not in page and "&lt;script&gt;" in page


def test_nothing_graded_is_a_clear_error(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], ["x1"])
    proc = hwkit("similarity", "t", "--course", root, check=False)
    assert proc.returncode == 2 and "hwkit grade t" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.sandbox
@pytest.mark.skipif(not sandbox_available()[0], reason="needs the bubblewrap sandbox")
def test_grade_with_similarity_names_a_friends_notebook(tmp_path):
    """The TA's run: a student hands in a friend's finished notebook; grading flags it and the report names
    the friend, with the answers that are the friend's references as evidence."""
    forget()
    root = make_course(tmp_path, ["receptive-field", "conv-cost"], ["f1", "f2", "f3", "f4"], secret=SECRET)
    for sid in ("f1", "f2", "f3"):
        submit(root, sid, solution_notebook(root, sid))
    shutil.copy(root / "submitted" / "t" / "f1" / "t.ipynb", (root / "submitted" / "t" / "f4").mkdir() or
                root / "submitted" / "t" / "f4" / "t.ipynb")
    hwkit("grade", "t", "--course", root, "--similarity")
    with open(root / "graded" / "t" / "similarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows, (root / "graded" / "t" / "grades.csv").read_text(encoding="utf-8")
    assert _pair(rows[0]) == {"f1", "f4"} and float(rows[0]["cross_variant"]) > 0, rows
    assert all(float(r["score"]) == 0 for r in rows[1:] if "f4" not in _pair(r)), rows
    assert read_grades(root / "graded" / "t" / "grades.csv")["f4"]["status"] == "variant mismatch"
