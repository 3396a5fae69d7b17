"""A Chinese course reads Chinese punctuation: no ASCII , ; : ( ) between two Chinese characters in a zh
statement, a title, a feedback sentence or anything else hwkit says in Chinese (ASCII stays inside code,
formulas and numbers)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hwkit import pysyntax
from hwkit.course import load_course
from hwkit.generate import generate
from tests.support import make_course

ROOT = Path(__file__).resolve().parents[1]
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# a Chinese character, then (past emphasis markers and a space) an ASCII mark, then a Chinese character
ASCII_BETWEEN = re.compile(rf"[{CJK}][*_]*\s?[,;:()!?]\s?[*_]*[{CJK}]")
CODE = re.compile(r"```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$", re.S)


def offenders(text: str) -> list[str]:
    text = CODE.sub(" ", text)
    return [text[max(0, m.start() - 12):m.end() + 12] for m in ASCII_BETWEEN.finditer(text)]


def _strings(path: Path):
    for node in ast.walk(pysyntax.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(f"[{CJK}]", node.value):
            yield node.value


@pytest.mark.parametrize("folder", ["hwkit", "hwkit_kernel", "templates", "solutions"])
def test_every_chinese_string_in_the_code_uses_chinese_punctuation(folder):
    bad = [(str(p.relative_to(ROOT)), o) for p in sorted((ROOT / folder).rglob("*.py")) for s in _strings(p)
           for o in offenders(s)]
    assert not bad, bad[:10]


def test_the_chinese_templates_use_chinese_punctuation():
    bad = [(str(p.relative_to(ROOT)), o) for p in sorted((ROOT / "templates").rglob("*.j2"))
           for o in offenders(p.read_text(encoding="utf-8"))]
    assert not bad, bad[:10]


def _markdown(tmp_path, assignment: str, lang: str) -> list[str]:
    import nbformat

    root = make_course(tmp_path, [], ["s001"], lang=lang, generate_now=False)
    (root / "assignments" / "t.toml").unlink()
    course = load_course(root)
    student = generate(course, course.assignment(assignment), lang, course.students())[0]
    return [c.source for c in nbformat.reads(student.release_nb, as_version=4).cells if c.cell_type == "markdown"]


@pytest.mark.parametrize("assignment", ["nn-homework", "quiz-review"])
def test_generated_chinese_notebooks_use_chinese_punctuation(tmp_path, assignment):
    bad = [o for source in _markdown(tmp_path, assignment, "zh") for o in offenders(source)]
    assert not bad, bad[:10]


# a subscript or superscript written as LaTeX (R_{l-1}, x^{2}) that Jupyter would show as typed
RAW_MATH = re.compile(r"[A-Za-z0-9)][_^]\{[^}]*\}")


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("assignment", ["nn-homework", "quiz-review"])
def test_math_in_statements_is_written_for_jupyter_to_render(tmp_path, assignment, lang):
    bad = [m.group(0) for source in _markdown(tmp_path, assignment, lang)
           for m in RAW_MATH.finditer(CODE.sub(" ", source))]
    assert not bad, bad[:10]


def test_the_summary_and_a_not_answered_part_speak_chinese():
    from hwkit.checks import Exact, Reply, grade_reply
    from hwkit.gradebook import PartResult, SubmissionResult
    from hwkit.problem import Part
    from hwkit.report import summary_html

    result = SubmissionResult("t", "s001", "ok", "", parts=[
        PartResult("p", "x", {"en": "X", "zh": "X"}, 0.0, 2.0, "NOT_ANSWERED", {"en": "", "zh": ""}, True)])
    page = summary_html("t", [result], lang="zh")
    assert "1 名学生" in page and "待复核" in page and "students; mean score" not in page and not offenders(page)
    part = Part("x", 1, {"en": "X", "zh": "X"}, probe=lambda rng: None, reference=lambda probe: 1, check=Exact())
    outcome = grade_reply(part, Reply(False, error_type="NotAnswered", error_message="'x' is not defined"), None)
    assert outcome.feedback["zh"] == "未作答：未定义 'x'。" and "is not defined" in outcome.feedback["en"]
