"""What the self-check's digests cost: one guess (one scrypt with the bundle's parameters) and one whole `hwkit check`
of nn-homework (one student, zh), on this machine.

    .venv/bin/python bench/selfcheck.py [--guesses 20] [--runs 3]

"per guess" is the median time of one digest: what recovering a graded answer from the bundle costs per value
tried. "whole check" is the wall time of `hwkit check NOTEBOOK` (a subprocess, as a student runs it) for the
untouched starter and for the reference solution in the student's notebook (every public check passes); "judging"
is the part of that spent on digests, measured in-process. Prints figures only; asserts nothing."""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbformat  # noqa: E402

from hwkit.checkcmd import load_bundle  # noqa: E402
from hwkit.course import load_course  # noqa: E402
from hwkit.generate import generate, write_generated  # noqa: E402
from hwkit.scaffold import init_course  # noqa: E402
from hwkit.selfcheck import ANSWER_KDF, PUBLIC_OUTPUT_KDF, digest  # noqa: E402

ASSIGNMENT = "nn-homework"
HWKIT = str(Path(sys.executable).with_name("hwkit"))


def per_guess(kdf: dict, guesses: int) -> float:
    times = []
    for i in range(guesses):
        start = time.perf_counter()
        digest(kdf, "abcdefghijklmnopabcdefgh", "conv-cost", "conv_flops", "", f"i:{1000 + i}")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_student(folder: Path) -> tuple[Path, Path]:
    """The student's folder with the starter and the reference solution carrying the starter's metadata."""
    root = init_course(folder / "course", lang="zh", example=True)
    (root / "roster.csv").write_text("student_id,name\ns001,Student\n", encoding="utf-8")
    course = load_course(root)
    spec = course.assignment(ASSIGNMENT)
    write_generated(course, spec, generate(course, spec, "zh", course.students()))
    work = folder / "student"
    shutil.copytree(root / "release" / ASSIGNMENT / "s001", work)
    starter = work / f"{ASSIGNMENT}.ipynb"
    solved = nbformat.read(str(root / "source" / ASSIGNMENT / "s001" / f"{ASSIGNMENT}-solution.ipynb"), as_version=4)
    solved.metadata = nbformat.read(str(starter), as_version=4).metadata
    filled = work / "filled.ipynb"
    nbformat.write(solved, str(filled))
    return starter, filled


def whole_check(notebook: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([HWKIT, "check", str(notebook), "--json"], capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def judging(notebook: Path) -> tuple[float, int]:
    """Seconds spent on digests when every public check passes, and how many digests that took."""
    import hwkit.selfcheck as sc
    from hwkit.checkcmd import run_check

    calls = 0
    original = sc.digest

    def counted(*args):
        nonlocal calls
        calls += 1
        return original(*args)

    nb = nbformat.read(str(notebook), as_version=4)
    load_bundle(nb)
    sc.digest = counted
    spent = [0.0]
    judge = sc.judge_part

    def timed(*args):
        start = time.perf_counter()
        try:
            return judge(*args)
        finally:
            spent[0] += time.perf_counter() - start

    import hwkit.checkcmd as cc
    cc.judge_part = timed
    try:
        run_check(notebook, [], None)
    finally:
        sc.digest, cc.judge_part = original, judge
    return spent[0], calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guesses", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"per guess, a graded answer's digest (scrypt n={ANSWER_KDF['n']} r={ANSWER_KDF['r']} p={ANSWER_KDF['p']}): "
          f"{per_guess(ANSWER_KDF, args.guesses) * 1000:.1f} ms")
    print(f"per guess, a function's public output (scrypt n={PUBLIC_OUTPUT_KDF['n']} r={PUBLIC_OUTPUT_KDF['r']} "
          f"p={PUBLIC_OUTPUT_KDF['p']}): {per_guess(PUBLIC_OUTPUT_KDF, args.guesses) * 1000:.1f} ms")
    with tempfile.TemporaryDirectory() as td:
        starter, filled = make_student(Path(td))
        print(f"whole `hwkit check` of {ASSIGNMENT}, untouched starter: {whole_check(starter, args.runs):.1f} s "
              f"(median of {args.runs})")
        print(f"whole `hwkit check` of {ASSIGNMENT}, every public check passing: {whole_check(filled, args.runs):.1f} s "
              f"(median of {args.runs})")
        seconds, calls = judging(filled)
        print(f"  of which judging (digests): {seconds:.1f} s for {calls} digests")


if __name__ == "__main__":
    main()
