"""How long `hwkit similarity` takes on a large class: N students of an assignment (default 1,000 of
nn-homework), stored as grading stores them (the gradebook's answer records and the executed notebooks),
with a few planted copies. Prints the setup time (not measured against the target), the time of the report
itself split into its stages, and where the planted pairs ranked. Figures only; no assertions.

    python bench/similarity.py [N] [--assignment nn-homework]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwkit import similarity  # noqa: E402
from hwkit.checks import Reply  # noqa: E402
from hwkit.course import load_course  # noqa: E402
from hwkit.generate import build_variant, generate, write_generated  # noqa: E402
from hwkit.gradebook import Gradebook, PartResult, SubmissionResult  # noqa: E402
from hwkit.integrity import answer_record  # noqa: E402
from hwkit.scaffold import init_course  # noqa: E402


def make_class(folder: Path, n: int, assignment: str, notebooks: int = 20) -> Path:
    """Every student's answer records come from their own variant; the executed notebooks are the solution
    notebooks of the first `notebooks` students, handed round (generating 1,000 notebooks would take longer
    than the report), each made the student's own by _make_own."""
    root = init_course(folder / "course", lang="en")
    ids = [f"s{i:04d}" for i in range(n)]
    (root / "roster.csv").write_text("student_id,name\n" + "".join(f"{s},S {s}\n" for s in ids), encoding="utf-8")
    course = load_course(root)
    spec = course.assignment(assignment)
    write_generated(course, spec, generate(course, spec, "en", course.students()[:notebooks]))
    book = Gradebook(root)
    rng = random.Random(1)
    copies = {ids[1]: ids[0], ids[3]: ids[2]}        # s0001 hands in s0000's notebook, s0003 s0002's
    for student in course.roster:
        sid = student.student_id
        source = copies.get(sid, sid)
        owner = next(s for s in course.roster if s.student_id == source)
        written = source if int(source[1:]) < notebooks else ids[int(source[1:]) % notebooks]
        result = SubmissionResult(assignment, sid, "ok", "", f"h{sid}", graded_at="2026-12-02T00:00:00+00:00")
        for pv in build_variant(course, spec, owner).problems:
            for part in pv.parts:
                if part.hidden_inputs or part.kind == "code":
                    continue
                value = part.reference(part.probe(random.Random(0)))
                if rng.random() < 0.1 and isinstance(value, int) and not isinstance(value, bool):
                    value += rng.randint(1, 50)          # an honest mistake now and then
                result.parts.append(PartResult(pv.problem.id, part.id, part.title, 0.0, part.points, "",
                                               {"en": "", "zh": ""}, compared=answer_record(part, Reply(True, value))))
        book.record(result)
        nb = nbformat.read(str(root / "source" / assignment / written / f"{assignment}-solution.ipynb"), as_version=4)
        _make_own(nb, random.Random(source))
        folder_out = root / "graded" / assignment / sid
        folder_out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(folder_out / f"{assignment}.ipynb"))
    book.close()
    return root


def _make_own(nb, rng: random.Random) -> None:
    """Each student's own hand in the answer cells: a line of their own before every line (the same line for a
    notebook handed on to a friend, whose rng is seeded by the original's id), so that only copies share code
    beyond the task's common idioms."""
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.get("metadata", {}).get("hwkit", {}).get("parts"):
            continue
        lines = []
        for line in cell.source.split("\n"):
            indent = line[:len(line) - len(line.lstrip())]
            lines += [f"{indent}note_{rng.randrange(10**6)} = {rng.randrange(10**6)}", line]
        cell.source = "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=1000)
    parser.add_argument("--assignment", default="nn-homework")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as td:
        t = time.perf_counter()
        root = make_class(Path(td), args.n, args.assignment)
        print(f"setup: {args.n} students of {args.assignment} generated and stored in {time.perf_counter() - t:.1f}s")
        course = load_course(root)
        stages = {}
        t0 = time.perf_counter()
        works = similarity.load_works(course, args.assignment)
        stages["read gradebook and notebooks"] = time.perf_counter() - t0
        t = time.perf_counter()
        pairs = similarity.find_pairs(course, args.assignment, works)
        stages["reference index, evidence and ranking"] = time.perf_counter() - t
        t = time.perf_counter()
        folder = root / "graded" / args.assignment
        similarity.write_csv(folder / "similarity.csv", pairs)
        similarity.write_html(folder / "similarity.html", course, args.assignment, pairs, works)
        stages["csv and page"] = time.perf_counter() - t
        total = time.perf_counter() - t0
        for name, seconds in stages.items():
            print(f"  {name:<50} {seconds:7.2f}s")
        print(f"similarity report for {len(works)} students: {total:.1f}s (target: under 60 s)")
        ranks = {frozenset((p.a, p.b)): i for i, p in enumerate(pairs, 1)}
        for pair in ({"s0000", "s0001"}, {"s0002", "s0003"}):
            print(f"  planted pair {sorted(pair)}: rank {ranks.get(frozenset(pair), 'not found')} of {len(pairs)}")


if __name__ == "__main__":
    main()
