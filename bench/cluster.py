"""The cluster path's overhead: the same N submissions graded by `hwkit grade` on this machine and by
`hwkit grade --cluster` on a Dask cluster of W local workers (`dask scheduler` and `dask worker --nthreads 1`
on 127.0.0.1), in one run.

Submissions: bench/grading.py's (correct, partly wrong, failing, a syntax error, one endless loop), for any
assignment in templates/assignments/ (default nn-homework). Lanes: the same in all at once, W x L (--lanes L per
worker, default 2, the default of a worker with one Dask thread); the local run gets --jobs W*L.

Runs, each on its own copy of the course:
- local: `hwkit grade --jobs W*L` (its worker processes start, import torch, start their zygotes);
- cluster, fresh workers: the first batch on workers that just started (each imports torch, loads the bank,
  starts its zygote: what the local run's workers pay too);
- cluster, warm workers: the same batch again on the same workers (`--force`), what a course pays from its
  second batch on.
Per run: wall seconds, CPU-seconds (the grading command and, for the cluster, the scheduler's and workers'
processes, from a cpuacct/cpu cgroup when one is writable, else getrusage of reaped children: bench/grading.py's
CpuMeter; the cluster's CPU while idle before the batch is left out), the kernels' own CPU from the gradebook,
and the points, which must be the same in the three runs (hidden inputs differ; the outcomes do not); the
kernels' and the cluster's processes' peak memory; what the idle cluster costs per second (Dask's heartbeats).
The overhead of the cluster path per submission is each cluster run minus the local run, divided by N.

Usage: bench/cluster.py [N=40] [--assignment nn-homework] [--workers 2] [--lanes 2]"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.grading import ASSIGNMENTS, CpuMeter, make_bench_course, make_submissions  # noqa: E402
from tests.support import HWKIT, dask_scheduler_address, dask_scheduler_argv  # noqa: E402

BIN = Path(sys.executable).parent


class LocalCluster:
    """A scheduler and W workers started with Dask's commands, all inside one CpuMeter."""

    def __init__(self, workers: int, work: Path):
        self.meter = CpuMeter("cluster")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.logs = open(work / "cluster.log", "w")
        start = lambda argv: subprocess.Popen(self.meter.argv(argv), stdout=self.logs, stderr=subprocess.STDOUT,  # noqa: E731
                                              env=env, start_new_session=True)
        info = work / "scheduler.json"
        self.procs = [start(dask_scheduler_argv(info))]
        self.address = dask_scheduler_address(info, self.procs[0], work / "cluster.log")
        self.procs += [start([str(BIN / "dask"), "worker", self.address, "--nworkers", "1", "--nthreads", "1"])
                       for _ in range(workers)]
        from distributed import Client

        with Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
        time.sleep(2)   # the workers' start-up CPU settles before the first reading
        before, t0 = self.cpu(), time.perf_counter()
        time.sleep(10)
        self.idle = (self.cpu() - before) / (time.perf_counter() - t0)     # CPU-s per second, doing nothing

    def cpu(self) -> float:
        return self.meter.seconds()[0]

    def peak_memory(self) -> dict[str, float]:
        """The largest peak resident size (MB) of each kind of process in the cluster: the scheduler, a worker's
        nanny, a worker (grader side: torch, the bank, the lanes' references and replies), its warm zygote."""
        found: dict[str, float] = {}
        if self.meter.dir is None:
            return found
        for pid in (self.meter.dir / "cgroup.procs").read_text().split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0.0)
            kind = ("zygote" if "hwkit.warm" in cmd else "scheduler" if "scheduler" in cmd else
                    "worker" if "spawn_main" in cmd else "nanny" if "dask worker" in cmd or "worker" in cmd else "")
            if kind:
                found[kind] = max(found.get(kind, 0.0), hwm)
        return found

    def close(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.wait()
        self.meter.close()
        self.logs.close()


def grade(root: Path, args: list[str], cluster: LocalCluster | None = None) -> dict:
    meter = CpuMeter(f"grade-{root.name}")
    before = cluster.cpu() if cluster else 0.0
    try:
        t0 = time.perf_counter()
        done = subprocess.run(meter.argv([HWKIT, "grade", "t", "--course", str(root), *args]), capture_output=True,
                              text=True, env={**os.environ, "COLUMNS": "200"})
        wall = time.perf_counter() - t0
        cpu, how = meter.seconds()
    finally:
        meter.close()
    if done.returncode != 0:
        raise SystemExit(f"hwkit grade {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    remote = (cluster.cpu() - before) if cluster else 0.0
    db = sqlite3.connect(root / "gradebook.sqlite")
    n, kernel, points = db.execute("SELECT COUNT(*), SUM(COALESCE(cpu_seconds, 0)), SUM(score) FROM submissions").fetchone()
    peaks = sorted(m for (m,) in db.execute("SELECT peak_memory_mb FROM submissions WHERE peak_memory_mb > 0"))
    db.close()
    return {"wall": wall, "cpu": cpu + remote, "parent_cpu": cpu, "how": how, "n": n, "kernel": kernel,
            "points": points, "kernel_mb": (peaks[len(peaks) // 2], peaks[-1]) if peaks else (0.0, 0.0),
            "processes_mb": cluster.peak_memory() if cluster else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=40)
    ap.add_argument("--assignment", default="nn-homework", choices=sorted(p.stem for p in ASSIGNMENTS.glob("*.toml")))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lanes", type=int, default=2, help="lanes per worker (hwkit grade --cluster --jobs)")
    args = ap.parse_args()
    lanes = args.workers * args.lanes
    with tempfile.TemporaryDirectory(prefix="hwkbench-cluster-") as td:
        work = Path(td)
        ids = [f"b{i:03d}" for i in range(args.n)]
        template = make_bench_course(work / "template", args.assignment, ids)
        make_submissions(template, ids)
        copies = {}
        for name in ("local", "cluster"):
            copies[name] = work / name
            shutil.copytree(template, copies[name], symlinks=True)
        runs = {"local": grade(copies["local"], ["--jobs", str(lanes)])}
        cluster = LocalCluster(args.workers, work)
        try:
            flags = ["--cluster", cluster.address, "--jobs", str(args.lanes)]
            runs["cluster, fresh workers"] = grade(copies["cluster"], flags, cluster)
            runs["cluster, warm workers"] = grade(copies["cluster"], flags + ["--force"], cluster)
            idle = cluster.idle
        finally:
            cluster.close()
    n, local = args.n, runs["local"]
    print(f"submissions={n} assignment={args.assignment} cores={os.cpu_count()} lanes={lanes} "
          f"(local --jobs {lanes}; cluster {args.workers} workers x {args.lanes}); CPU by {local['how']}")
    print(f"{'run':<24} {'total s':>8} {'subs/min':>9} {'CPU-s/sub':>10} {'of it here':>11} {'kernel CPU-s/sub':>17} "
          f"{'points':>8}")
    for name, r in runs.items():
        print(f"{name:<24} {r['wall']:>8.1f} {r['n'] / r['wall'] * 60:>9.1f} {r['cpu'] / r['n']:>10.2f} "
              f"{r['parent_cpu'] / r['n']:>11.2f} {r['kernel'] / r['n']:>17.2f} {r['points']:>8.1f}")
    for name, r in runs.items():
        print(f"{name:<24} kernel peak memory MB: median {r['kernel_mb'][0]:.0f}, max {r['kernel_mb'][1]:.0f}"
              + ("; peak resident MB per process: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                             sorted(r["processes_mb"].items()))
                 if r["processes_mb"] else ""))
    print(f"the idle cluster (scheduler, {args.workers} nannies and workers): {idle:.3f} CPU-s per second")
    for name in ("cluster, fresh workers", "cluster, warm workers"):
        r = runs[name]
        print(f"overhead of the cluster path ({name.split(', ')[1]}): {(r['wall'] - local['wall']) / n:+.2f} s wall and "
              f"{(r['cpu'] - local['cpu']) / n:+.2f} CPU-s per submission ({(r['cpu'] - idle * r['wall'] - local['cpu']) / n:+.2f} "
              "without the idle cluster's background)"
              + (", points differ!" if abs(r["points"] - local["points"]) > 1e-6 else ", same points"))


if __name__ == "__main__":
    main()
