"""A Chinese course reads Chinese: every reason hwkit itself writes (why a notebook could not be read, why a
part was not graded, what the kernel reported) reaches a Chinese page in Chinese, a student's own exception
message stays as it was written, and in a course that mixes languages each student reads the language of the
notebook they were given. A student whose folder holds several notebooks is told which one was graded, and why."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from hwkit import pysyntax
from hwkit.wording import in_language, status_in
from tests.support import hwkit, make_course, release_notebook, solution_notebook

ROOT = Path(__file__).resolve().parents[1]
ENGLISH_PHRASE = re.compile(r"\b[a-z]{2,}\s+[a-z]{2,}\b")

# Where hwkit writes the reasons and messages a person reads (the kernel's, the grader's, the notebook reader's).
MESSAGE_SOURCES = ["hwkit/execute.py", "hwkit/notebooks.py", *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "hwkit/grading").glob("*.py"))),
                   "hwkit/probes.py",
                   "hwkit/integrity.py", *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "hwkit_kernel").glob("*.py"))),
                   *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "templates").glob("*/kernel.py")))]


def _sample(node) -> str | None:
    """A message as the code would write it, with 7 in place of each value it formats in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "7" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _sample(node.left), _sample(node.right)
        return None if left is None or right is None else left + right
    return None


def _messages(tree) -> set[str]:
    """Reasons and messages: exceptions raised, Reply(error_message=...), `status, reason = ...`, `return None,
    reason`, Submission(..., reason), notes.append(...). Not the instructor's command-line errors (HwkitError
    raised by `hwkit grade`): hwkit's command line for instructors is in English."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            if getattr(node.exc.func, "id", "") != "HwkitError":
                found.append(node.exc.args[0])
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            found += [k.value for k in node.keywords if k.arg in ("error_message", "reason", "problem")]
            if name == "Submission" and len(node.args) >= 3:
                found.append(node.args[2])
            if name == "append" and getattr(node.func.value, "id", "") == "notes":
                found += node.args
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else []
            found += [v for t, v in zip(targets, node.value.elts) if getattr(t, "attr", getattr(t, "id", "")) == "reason"]
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
            first = node.value.elts[0]
            if isinstance(first, ast.Constant) and first.value is None:
                found.append(node.value.elts[1])
    samples = {_sample(n) for n in found}
    return {s for s in samples if s and " " in s.strip()}     # sentences, not error type names


def test_every_reason_hwkit_writes_reads_in_chinese():
    messages = {(path, m) for path in MESSAGE_SOURCES
                for m in _messages(pysyntax.parse((ROOT / path).read_text(encoding="utf-8")))}
    assert len(messages) > 40, "the scan must find hwkit's messages"
    untranslated = [(path, m, in_language(m, "zh")) for path, m in sorted(messages)
                    if ENGLISH_PHRASE.search(in_language(m, "zh"))]
    assert not untranslated, untranslated


def test_messages_joined_with_semicolons_and_the_students_own_words():
    said = in_language("cell 3 ran past its 60s limit and was interrupted; "
                       "output beyond the notebook's 50 MB limit was dropped", "zh")
    assert said == "第 3 个单元格运行超过 60 秒的上限，已被中断；超出笔记本 50 MB 上限的输出已被丢弃"
    assert in_language("not graded: the kernel died", "zh") == "未评分：内核崩溃"
    assert in_language("too many values to unpack (expected 2)", "zh") == "too many values to unpack (expected 2)"
    assert in_language("the kernel died", "en") == "the kernel died"
    assert status_in("cell errors", "zh") == "单元格出错" and status_in("cell errors", "en") == "cell errors"


def _page(root: Path, sid: str) -> str:
    return (root / "graded" / "t" / sid / "feedback.html").read_text(encoding="utf-8")


def _visible(page: str) -> str:
    """What a reader sees: tags, code and the student's id removed."""
    page = re.sub(r"<style>.*?</style>|<code>.*?</code>|<title>.*?</title>", " ", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A Chinese course in which s03 and s05 were given English notebooks."""
    root = make_course(tmp_path_factory.mktemp("zhw"), ["receptive-field"], [f"s0{i}" for i in range(1, 6)], lang="zh")
    hwkit("generate", "t", "--course", root, "--lang", "en", "--students", "s03,s05", "--force")
    sub = root / "submitted" / "t"
    for sid in ("s01", "s02", "s03", "s05"):
        (sub / sid).mkdir(parents=True)
    (sub / "s01" / "t.ipynb").write_bytes(b"\xff\xfe not a notebook")
    nbformat.write(solution_notebook(root, "s02"), str(sub / "s02" / "mine.ipynb"))
    draft = release_notebook(root, "s02")
    draft.metadata["hwkit"]["assignment"] = "another-assignment"
    nbformat.write(draft, str(sub / "s02" / "draft.ipynb"))
    nbformat.write(release_notebook(root, "s03"), str(sub / "s03" / "t.ipynb"))
    (sub / "s05" / "t.ipynb").write_text("{}", encoding="utf-8")
    hwkit("grade", "t", "--course", root, "--no-sandbox")
    return root


def test_a_chinese_student_reads_why_the_notebook_was_not_graded_in_chinese(mixed):
    seen = _visible(_page(mixed, "s01"))
    assert "无效的笔记本" in seen and "文件不是 UTF-8 文本" in seen and not ENGLISH_PHRASE.search(seen), seen
    missing = _visible(_page(mixed, "s04"))
    assert "未提交" in missing and "提交中没有该学生的文件夹" in missing and not ENGLISH_PHRASE.search(missing), missing


def test_a_student_given_an_english_notebook_reads_english_feedback(mixed):
    page = _page(mixed, "s03")
    assert 'lang="en"' in page and "Not answered" in page and "评分反馈" not in page and "未作答" not in page
    unreadable = _page(mixed, "s05")      # the file says nothing: the language it was released in
    assert 'lang="en"' in unreadable and "invalid notebook" in unreadable and "not a Jupyter notebook" in unreadable


def test_the_feedback_names_the_notebook_graded_among_several_and_why(mixed):
    page = _page(mixed, "s02")
    assert "<code>mine.ipynb</code>" in page and "你的文件夹中有 2 个笔记本" in page and "hwkit 元数据" in page
