"""Generate an assignment: per student, a release notebook, a solution notebook, reference answers and
the digests of the release's parameter cells.

Everything is built and verified in memory first (every variant is solved by its reference and passes
its own checks), then written to a temporary folder beside the target and moved into place, so a failure
leaves nothing half-written. Same secret, roster and assignment give byte-identical files."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from hwkit import selfcheck
from hwkit.bank import get_problem
from hwkit.course import Assignment, Course, HwkitError, Student
from hwkit.notebooks import cell_digest
from hwkit.records import Part, Problem
from hwkit.probes import as_reply
from hwkit.render import render_problem_cells
from hwkit.variants import keyed_letters, public_rng, variant_rng

FORMAT_VERSION = 1
# source/<assignment>/release-cells.json: per student, the digests of the release notebook's parameter cells
# (instructor side, like answers.json); grading uses it to recognise another student's notebook.
CELLS_INDEX = "release-cells.json"


@dataclass
class ProblemVariant:
    problem: Problem
    number: int
    points: float
    params: dict
    parts: list[Part]

    @property
    def note(self) -> str:
        return self.problem.note(self.params)


@dataclass
class StudentVariant:
    student: Student
    problems: list[ProblemVariant] = field(default_factory=list)


def chosen_problems(course: Course, assignment: Assignment, student_id: str) -> list:
    """The assignment's problems for one student; a quiz with `draw = N` gives each student N of them,
    drawn from the student's own seed so a roster change never moves anyone else's draw."""
    entries = list(assignment.problems)
    if assignment.quiz_draw:
        rng = variant_rng(course.secret, assignment.assignment_id, "__draw__", student_id)
        picked = set(rng.sample(range(len(entries)), assignment.quiz_draw))
        entries = [e for i, e in enumerate(entries) if i in picked]
    return entries


def scaled_parts(problem: Problem, params: dict, points: float | None) -> tuple[float, list[Part]]:
    parts = problem.parts(params)
    if points is None or points == problem.points:
        return problem.points, parts
    factor = points / sum(p.points for p in parts)
    for part in parts:
        part.points = round(part.points * factor, 4)
    parts[-1].points = round(points - sum(p.points for p in parts[:-1]), 4)   # the rounding's remainder: they add up
    return points, parts


def build_variant(course: Course, assignment: Assignment, student: Student) -> StudentVariant:
    variant = StudentVariant(student)
    for number, entry in enumerate(chosen_problems(course, assignment, student.student_id), start=1):
        problem = get_problem(entry.problem_id)
        rng = variant_rng(course.secret, assignment.assignment_id, problem.id, student.student_id)
        params = None
        try:
            params = problem.sample(rng)
            points, parts = scaled_parts(problem, params, entry.points)
        except Exception as exc:  # a bug in a problem must name the problem and the variant, not crash
            raise HwkitError(f"problem {problem.id}: building the variant of student {student.student_id} failed "
                             f"({type(exc).__name__}: {exc}; parameters {params}); fix templates/"
                             f"{problem.template.parent.name}/problem.py") from exc
        variant.problems.append(ProblemVariant(problem, number, points, params, parts))
    return variant


def verify_variant(course: Course, assignment: Assignment, variant: StudentVariant) -> None:
    """Solve every part with the reference and grade that reply with the part's own check."""
    for pv in variant.problems:
        for part in pv.parts:
            probe = part.probe(public_rng(course.secret, assignment.assignment_id, pv.problem.id, part.id,
                                          variant.student.student_id))
            try:
                want = part.reference(probe)
                outcome = part.check.grade(as_reply(want), want)
                if outcome.fraction >= 1.0 and getattr(part.check, "compares_verdicts", False):
                    outcome = _judged_right(part, part.self_check_probe(public_rng(
                        course.secret, assignment.assignment_id, pv.problem.id, part.id, variant.student.student_id)))
            except Exception as exc:
                raise HwkitError(f"problem {pv.problem.id} part {part.id}: the reference failed for variant [{pv.note}] "
                                 f"of student {variant.student.student_id} ({type(exc).__name__}: {exc})") from exc
            if outcome.fraction < 1.0:
                raise HwkitError(f"problem {pv.problem.id} part {part.id}: the reference fails its own check for "
                                 f"variant [{pv.note}] of student {variant.student.student_id} ({outcome.note}); "
                                 f"fix templates/{pv.problem.template.parent.name}/problem.py")


def _judged_right(part: Part, probe):
    """A part whose grading compares verdicts (a module part, hwkit/behaviour.py): the reference's own replies on
    the public probe, read back through `interpret`, must be judged right; the worst outcome of its alternatives."""
    want = part.reference(probe)
    return min((part.check.grade(part.interpret(as_reply(reply), probe), want)
                for reply in part.self_check_replies(probe)), key=lambda o: o.fraction)


def variant_id(course: Course, assignment: Assignment, student_id: str) -> str:
    """The id in a release notebook's metadata: keyed by the secret, so it names its student to the grader
    and to nobody else."""
    return keyed_letters(course.secret, "variant", assignment.assignment_id, student_id, length=16)


def is_answer_cell(cell) -> bool:
    tag = cell.get("metadata", {}).get("hwkit")
    return isinstance(tag, dict) and bool(tag.get("parts"))


def parameter_cells(nb: nbformat.NotebookNode) -> list[str]:
    """Digests of a release notebook's statement and given code (every cell but the answer cells): they
    carry the variant's numbers, so grading can tell whose release a submitted notebook was."""
    return sorted({cell_digest(cell) for cell in nb.cells if not is_answer_cell(cell)})


def released_cells(source: Path) -> set[str]:
    """The digests of every student's statement and given cells (parameter_cells), from an assignment's source
    folder's CELLS_INDEX; empty if there is none or it cannot be read."""
    try:
        students = json.loads((source / CELLS_INDEX).read_text(encoding="utf-8")).get("students", {})
        return {digest for digests in students.values() for digest in digests}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()


def _notebook(course: Course, assignment: Assignment, variant: StudentVariant, lang: str, solution: bool,
              bundle: dict | None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    sid = variant.student.student_id
    total = sum(pv.points for pv in variant.problems)
    if lang == "zh":
        intro = (f"# {assignment.title_zh or assignment.title}\n\n学号：`{sid}`　总分：{total:g}\n\n"
                 "每位同学的题目参数不同，请按本笔记本中的参数作答。在标有 `YOUR CODE HERE` 或 `None` 的单元格中填写答案，"
                 "不要修改变量名和函数名。提交前可运行最后一个单元格自检（或在终端运行 `hwkit check 本文件.ipynb`）。")
    else:
        intro = (f"# {assignment.title}\n\nStudent: `{sid}`　Total points: {total:g}\n\n"
                 "Every student has different parameters: answer for the ones in this notebook. Fill in the cells "
                 "marked `YOUR CODE HERE` or `None`, keeping the variable and function names. Before submitting, "
                 "run the last cell to self-check (or `hwkit check THIS.ipynb` in a terminal).")
    cells = [nbformat.v4.new_markdown_cell(intro),
             nbformat.v4.new_code_cell("import numpy as np\nimport torch\nfrom torch import nn\n"
                                       "import matplotlib.pyplot as plt")]
    for pv in variant.problems:
        variables = {"lang": lang, "solution": solution, "number": pv.number, "points": f"{pv.points:g}",
                     "params": pv.params, **pv.problem.context(pv.params)}
        cells.extend(render_problem_cells(pv.problem.template, pv.problem.id, variables))
    if not solution:
        cells.extend(self_check_footer(lang, variant.problems[0].parts[0].id if variant.problems else "part"))
    for i, cell in enumerate(cells):
        cell.id = f"c{i:03d}"
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    # A release notebook's metadata identifies it and carries the self-check bundle, nothing else: a
    # variant note can end with a quiz's shuffled answer letters (tests/test_selfcheck.py holds the
    # allow-list). The solution notebook stays in source/ and keeps the notes for the instructor.
    meta = {"format": FORMAT_VERSION, "assignment": assignment.assignment_id, "student": sid, "lang": lang,
            "variant_id": variant_id(course, assignment, sid)}
    if solution:
        meta["variant"] = {pv.problem.id: pv.note for pv in variant.problems}
    if bundle is not None:
        meta["selfcheck"] = selfcheck.pack_bundle(bundle)
    nb.metadata["hwkit"] = meta
    return nb


def self_check_footer(lang: str, example_part: str) -> list:
    """The release notebook's last cells: the self-check from inside the notebook (hwkit/student.py)."""
    if lang == "zh":
        text = ("## 自检\n\n运行下面的单元格，用公开检查核对你的答案（与终端中的 `hwkit check` 相同）。它在另一个内核中运行"
                f"本笔记本**最后保存的版本**，所以请先保存（Ctrl+S）。`hw.check(\"{example_part}\")` 这样写只检查一个小题。"
                "通过公开检查并不保证满分：评分时还会用隐藏输入调用你的函数。")
    else:
        text = ("## Self-check\n\nRun the cell below to check your answers with the public checks (the same as "
                "`hwkit check` in a terminal). It runs **the last saved version** of this notebook in a separate kernel, "
                f"so save first (Ctrl+S). `hw.check(\"{example_part}\")` checks one part only. Passing the public checks "
                "does not guarantee full marks: grading also calls your functions on hidden inputs.")
    return [nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell("import hwkit.student as hw\nhw.check()")]


def _answers_entry(variant: StudentVariant) -> dict:
    return {pv.problem.id: {"number": pv.number, "points": pv.points, "params": pv.params, "note": pv.note,
                            "answers": pv.problem.answers(pv.params),
                            "parts": {p.id: p.points for p in pv.parts}} for pv in variant.problems}


@dataclass
class GeneratedStudent:
    student_id: str
    release_nb: str
    solution_nb: str
    answers: dict
    cells: list[str] = field(default_factory=list)   # parameter_cells of the release notebook


def generate(course: Course, assignment: Assignment, lang: str, students: list[Student]) -> list[GeneratedStudent]:
    out = []
    for student in students:
        variant = build_variant(course, assignment, student)
        verify_variant(course, assignment, variant)
        bundle = selfcheck.build_bundle(course, assignment, variant)
        release = _notebook(course, assignment, variant, lang, solution=False, bundle=bundle)
        solution = _notebook(course, assignment, variant, lang, solution=True, bundle=bundle)
        out.append(GeneratedStudent(student.student_id, nbformat.writes(release), nbformat.writes(solution),
                                    _answers_entry(variant), parameter_cells(release)))
    return out


def _write_data(assignment: Assignment, course: Course, target: Path) -> None:
    for entry in assignment.problems:
        problem = get_problem(entry.problem_id)
        if problem.data is not None:
            problem.data(target)


def released_languages(course: Course, assignment_id: str, students: list[Student]) -> set[str]:
    """The languages these students' release notebooks are already in (read from their metadata)."""
    found = set()
    for student in students:
        path = course.root / "release" / assignment_id / student.student_id / f"{assignment_id}.ipynb"
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("hwkit", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("lang"), str):
            found.add(meta["lang"])
    return found


def write_generated(course: Course, assignment: Assignment, generated: list[GeneratedStudent]) -> None:
    aid = assignment.assignment_id
    release_root, source_root = course.root / "release" / aid, course.root / "source" / aid
    staging = Path(tempfile.mkdtemp(prefix=".hwkit-gen-", dir=course.root))
    try:
        data_dir = staging / "data"
        data_dir.mkdir()
        _write_data(assignment, course, data_dir)
        has_data = any(data_dir.iterdir())
        for g in generated:
            rel = staging / "release" / g.student_id
            rel.mkdir(parents=True)
            (rel / f"{aid}.ipynb").write_text(g.release_nb, encoding="utf-8")
            if has_data:
                shutil.copytree(data_dir, rel / "data")
            src = staging / "source" / g.student_id
            src.mkdir(parents=True)
            (src / f"{aid}-solution.ipynb").write_text(g.solution_nb, encoding="utf-8")
            if has_data:
                shutil.copytree(data_dir, src / "data")
        answers_path = source_root / "answers.json"
        answers = json.loads(answers_path.read_text(encoding="utf-8")) if answers_path.is_file() else {}
        answers.setdefault("students", {})
        answers.update({"assignment": aid, "format": FORMAT_VERSION})
        answers["students"].update({g.student_id: g.answers for g in generated})
        answers["students"] = dict(sorted(answers["students"].items()))
        (staging / "answers.json").write_text(json.dumps(answers, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
        cells_path = source_root / CELLS_INDEX
        cells = json.loads(cells_path.read_text(encoding="utf-8")) if cells_path.is_file() else {}
        cells = {"assignment": aid, "format": FORMAT_VERSION,
                 "students": {**cells.get("students", {}), **{g.student_id: g.cells for g in generated}}}
        (staging / CELLS_INDEX).write_text(json.dumps(cells, indent=0, sort_keys=True) + "\n", encoding="utf-8")
        release_root.mkdir(parents=True, exist_ok=True)
        source_root.mkdir(parents=True, exist_ok=True)
        if has_data:
            _replace(data_dir, source_root / "data")
        for g in generated:
            _replace(staging / "release" / g.student_id, release_root / g.student_id)
            _replace(staging / "source" / g.student_id, source_root / g.student_id)
        os.replace(staging / CELLS_INDEX, cells_path)
        os.replace(staging / "answers.json", answers_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
