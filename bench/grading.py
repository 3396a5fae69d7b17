"""Grading throughput: N generated submissions (a mix of correct, partly wrong, failing, starter and one
endless loop) graded by `hwkit grade --jobs J` in sandboxed kernels.

Prints submissions per minute, and the median per-submission seconds for kernel start, execution, probes and
checks. Usage: bench/grading.py [N=40] [--assignment hw1-conv] [--jobs 2]"""
from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import HWKIT, append_cell, make_course, release_notebook, solution_notebook, submit  # noqa: E402

BANK_ASSIGNMENTS = {"hw1-conv": ["receptive-field", "conv-cost", "depthwise-separable"]}


def make_submissions(root: Path, ids: list[str]) -> None:
    for i, sid in enumerate(ids):
        kind = i % 5
        if i == len(ids) - 1:
            nb = append_cell(solution_notebook(root, sid), "while True:\n    pass")       # one endless loop
        elif kind in (0, 1):
            nb = solution_notebook(root, sid)                                           # correct
        elif kind == 2:
            nb = append_cell(solution_notebook(root, sid), "rf_final = 1\nconv_flops = conv_macs\n")  # partly wrong
        elif kind == 3:
            nb = append_cell(release_notebook(root, sid), "1 / 0")                     # starter that fails
        else:
            nb = solution_notebook(root, sid)
            nb.cells[3].source = "def (:"                                               # a syntax error
        submit(root, sid, nb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=40)
    ap.add_argument("--assignment", default="hw1-conv", choices=sorted(BANK_ASSIGNMENTS))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        ids = [f"b{i:03d}" for i in range(args.n)]
        root = make_course(Path(td), BANK_ASSIGNMENTS[args.assignment], ids)
        config = root / "hwkit.toml"
        config.write_text(config.read_text().replace("cell_timeout = 60", "cell_timeout = 10"))
        make_submissions(root, ids)
        t0 = time.perf_counter()
        subprocess.run([HWKIT, "grade", "t", "--course", str(root), "--jobs", str(args.jobs)], check=True,
                       capture_output=True)
        wall = time.perf_counter() - t0
        rows = sqlite3.connect(root / "gradebook.sqlite").execute("SELECT status, timings FROM submissions").fetchall()
    timings = [json.loads(t) for _, t in rows]
    print(f"submissions={len(rows)} jobs={args.jobs} assignment={args.assignment} wall={wall:.1f}s "
          f"rate={len(rows) / wall * 60:.1f}/min")
    for key in ("kernel_start", "execute", "probes", "checks"):
        values = [t.get(key, 0.0) for t in timings]
        print(f"  median {key:<12} {statistics.median(values):.3f}s")
    statuses = {}
    for status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    print("  statuses:", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))


if __name__ == "__main__":
    main()
