"""Grading throughput in three modes, on the same N generated submissions, in one run.

Submissions (deterministic, for any assignment in templates/assignments/; default: the full homework set
nn-homework): correct (the generated solution notebook), partly wrong (the solution with three answer cells put
back to the release notebook's starter cell for the same part), failing (the starter plus a cell `1 / 0`; the
solution with a syntax error in one answer cell), and exactly one endless loop (`while True: pass` at the end of
a solution). The course's cell time limit is 10 s.

Modes (`--modes cold,warm,nbgrader`, default all):
- hwkit cold: `hwkit grade --cold`, a fresh sandboxed interpreter per submission.
- hwkit warm: `hwkit grade --warm`, sandboxed kernels forked from a per-worker zygote that imported torch.
  Both run with hwkit's default --jobs unless --jobs is given.
- nbgrader autograde: nbgrader 0.9.x, installed by this script into a throwaway venv outside the repository
  (~/.cache/hwkit-bench/nbgrader-venv, reused while it works; --fresh-nbgrader rebuilds it). The venv sees
  the hwkit venv's torch/numpy/... through a .pth line appended after its own site-packages (pip is never
  allowed to install torch there). One course, `nbgrader autograde` serial as nbgrader does it, no sandbox,
  Execute.timeout = 10 s per cell with interrupt-and-continue, kernels with the same thread and matplotlib
  settings as hwkit's jail (OMP_NUM_THREADS=1; matplotlib's backend is Jupyter's inline one, as in hwkit's
  kernels and in a default Jupyter kernel: the figures a notebook shows are drawn to PNG in both graders' output).
  Equivalent notebooks: every student submits the notebook hwkit grades, followed by K autograder test cells
  (grade=true, solution=false, locked, grade_id probe_01..K). autograde overwrites locked/grade cells with the
  source notebook's version by grade_id, so per-student test code cannot live in the cells themselves; instead
  the source notebook's test cell i is `exec(open("hwkit_probes/i.py").read())`, and each student's
  submission folder carries hwkit_probes/i.py = the i-th probe hwkit asks for that student's variant
  (hwkit.generate.build_variant -> part.probe(rng) -> hwkit.probes.request), answered in the kernel by
  hwkit_kernel's runtime exactly as hwkit's kernels answer a probe request, and displayed as an output; one
  cell per part, each under its own cell limit as in hwkit. nbgrader copies the non-notebook files of a
  submission into the autograded folder, and the source folder's data/ over it, so the cells run next to
  ./data as in the jail.
  nbgrader only executes these cells (a grade cell passes when it raises nothing); hwkit also compares the
  replies with references outside the kernel. After the timed run the script reads the replies from the
  autograded notebooks with hwkit's reader and scores them with hwkit's checks, so the points printed for
  nbgrader can be compared with hwkit's (hidden inputs differ per run).

Per mode it prints total seconds, submissions per minute, CPU-seconds per submission (the command and all its
descendants, from a cpuacct/cpu cgroup when one is writable, else getrusage of reaped children) and the ratio of
that CPU to the lower bound: the sum over submissions of the CPU time of the student code itself, measured in the
same run by executing each notebook's code cells in a fork of one plain Python process that already imported
torch (cwd: a fresh folder with `data` linked to the assignment's data, as ./data in the jail; same cell limit).
The bound is measured before and after the graders and their mean is used (a shared machine's speed drifts
within a run: the ratio of the two is printed). It also prints the status counts (for nbgrader read from the
cells' errors), the points, and for hwkit modes the median stage times. Figures only; no assertions.

Usage: bench/grading.py [N=40] [--assignment nn-homework] [--modes cold,warm,nbgrader] [--jobs J]
                        [--fresh-nbgrader]"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import nbformat  # noqa: E402

from hwkit.checks import Reply, grade_reply  # noqa: E402
from hwkit.course import load_course  # noqa: E402
from hwkit.generate import build_variant, generate, write_generated  # noqa: E402
from hwkit.probes import new_nonce, read_reply, request  # noqa: E402
from hwkit.sandbox.spec import KERNEL_MPLBACKEND  # noqa: E402
from tests.support import HWKIT, append_cell, make_course, release_notebook, solution_notebook, submit  # noqa: E402

CELL_TIMEOUT = 10
ASSIGNMENTS = REPO / "templates" / "assignments"
NBGRADER_VENV = Path.home() / ".cache" / "hwkit-bench" / "nbgrader-venv"
NBGRADER_SPECS = ("nbgrader==0.9.6", "nbgrader>=0.9,<0.10")
KERNEL_ENV = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# ---- the course and its submissions -----------------------------------------------------------------

def make_bench_course(folder: Path, assignment: str, ids: list[str]) -> Path:
    """A course whose assignment "t" is the bundled assignment file (problems, points, draw) as it is."""
    text = (ASSIGNMENTS / f"{assignment}.toml").read_text(encoding="utf-8")
    problems = [p["id"] for p in tomllib.loads(text)["problems"]]
    root = make_course(folder, problems, ids, generate_now=False)
    (root / "assignments" / "t.toml").write_text(text, encoding="utf-8")
    config = root / "hwkit.toml"
    config_text, found = re.subn(r"(?m)^cell_timeout\s*=\s*\d+", f"cell_timeout = {CELL_TIMEOUT}", config.read_text())
    if not found:
        raise SystemExit(f"{config}: no cell_timeout line to set")
    config.write_text(config_text)
    course = load_course(root)
    spec = course.assignment("t")
    write_generated(course, spec, generate(course, spec, "en", course.students()))
    return root


def answer_cells(nb) -> dict[tuple, int]:
    return {tuple(c.metadata["hwkit"]["parts"]): i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and c.get("metadata", {}).get("hwkit", {}).get("parts")}


def partly_wrong(root: Path, sid: str, how_many: int = 3):
    """The solution with a few answer cells put back to the starter cell of the same parts."""
    nb, starter = solution_notebook(root, sid), release_notebook(root, sid)
    mine, theirs = answer_cells(nb), answer_cells(starter)
    for parts in random.Random(f"wrong/{sid}").sample(sorted(mine), min(how_many, len(mine))):
        nb.cells[mine[parts]].source = starter.cells[theirs[parts]].source
    return nb


def make_submissions(root: Path, ids: list[str]) -> None:
    for i, sid in enumerate(ids):
        kind = i % 5
        if i == len(ids) - 1:
            nb = append_cell(solution_notebook(root, sid), "while True:\n    pass")      # the one endless loop
        elif kind in (0, 1):
            nb = solution_notebook(root, sid)                                          # correct
        elif kind == 2:
            nb = partly_wrong(root, sid)
        elif kind == 3:
            nb = append_cell(release_notebook(root, sid), "1 / 0")                    # the starter, failing
        else:
            nb = solution_notebook(root, sid)                                          # a syntax error
            nb.cells[min(answer_cells(nb).values())].source = "def (:"
        submit(root, sid, nb)


# ---- the lower bound: the student code's own CPU --------------------------------------------------------

# Runs each notebook's code cells, then (timed apart) the probes hwkit would ask for that student, answered by
# hwkit_kernel's runtime on what the cells left, in a fork of one warm process; prints [cells CPU seconds,
# probes CPU seconds] per notebook. The probe snippets are the nbgrader test cells' (below); get_ipython()
# and display() are stubbed so that they run without a kernel.
_STUDENT_CPU = r"""
import json, os, resource, signal, sys, types
import numpy, torch, sympy, PIL.Image, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import IPython, IPython.display
from hwkit.warm.zygote import warm_up
warm_up()                       # the first-use costs a warm hwkit kernel does not pay either
torch.set_num_threads(1)
timeout, data, scratch = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class CellTimeout(BaseException):
    pass

def on_alarm(*_):
    raise CellTimeout()

def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime

def run(sources, ns):
    for src in sources:
        src = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
        signal.alarm(timeout)
        try:
            exec(compile(src, "<cell>", "exec"), ns)
        except BaseException:
            pass
        finally:
            signal.alarm(0)

out = []
for k, job in enumerate(sys.argv[4:]):
    path, _, probe_file = job.partition("::")
    cells = [c for c in json.load(open(path))["cells"] if c.get("cell_type") == "code"]
    probes = json.load(open(probe_file)) if probe_file else []
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.signal(signal.SIGALRM, on_alarm)
        cwd = os.path.join(scratch, str(k))
        os.mkdir(cwd)
        if data:
            os.symlink(data, os.path.join(cwd, "data"))
        os.chdir(cwd)
        ns = {"__name__": "__main__"}
        start = cpu()
        run(["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells], ns)
        middle = cpu()
        IPython.get_ipython = lambda: types.SimpleNamespace(user_ns=ns)
        IPython.display.display = lambda *a, **k: None
        run(probes, {"__name__": "__main__"})
        os.write(w, json.dumps([middle - start, cpu() - middle]).encode())
        os._exit(0)
    os.close(w)
    data_read = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    out.append(json.loads(data_read or b"[0, 0]"))
print(json.dumps(out))
"""


def student_cpu_seconds(notebooks: list[Path], data_dir: Path, probe_cells: dict[Path, list[str]]
                        ) -> list[tuple[float, float]]:
    """Per notebook: CPU seconds of its cells, and of the hidden-check probes answered on what they left."""
    data = str(data_dir) if data_dir.is_dir() else ""
    with tempfile.TemporaryDirectory(prefix="hwkbench-lb-") as scratch:
        jobs = []
        for i, nb in enumerate(notebooks):
            probe_file = Path(scratch) / f"probes-{i}.json"
            probe_file.write_text(json.dumps(probe_cells.get(nb, [])))
            jobs.append(f"{nb}::{probe_file}")
        done = subprocess.run([sys.executable, "-c", _STUDENT_CPU, str(CELL_TIMEOUT), data, scratch, *jobs],
                              capture_output=True, text=True, check=True, env={**os.environ, **KERNEL_ENV})
    return [tuple(x) for x in json.loads(done.stdout.strip().splitlines()[-1])]


# ---- measuring a command ------------------------------------------------------------------------------

class CpuMeter:
    """CPU of a command and all its descendants: a cpuacct cgroup (v1) or cpu.stat (v2) if writable."""

    def __init__(self, name: str):
        from hwkit import sandbox

        self.dir: Path | None = None
        layout = sandbox.cgroup_layout()
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


def metered(name: str, command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, float, str]:
    """Run a command under a CpuMeter: (process, wall seconds, CPU seconds, how CPU was measured)."""
    meter = CpuMeter(name)
    try:
        t0 = time.perf_counter()
        done = subprocess.run(meter.argv(command), capture_output=True, text=True, **kwargs)
        wall = time.perf_counter() - t0
        cpu, how = meter.seconds()
    finally:
        meter.close()
    return done, wall, cpu, how


def counts(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


# ---- hwkit modes ----------------------------------------------------------------------------------------

def hwkit_mode(template: Path, work: Path, mode: str, jobs: int | None) -> dict:
    root = work / mode
    shutil.copytree(template, root, symlinks=True)
    command = [HWKIT, "grade", "t", "--course", str(root), f"--{mode}"] + (["--jobs", str(jobs)] if jobs else [])
    done, wall, cpu, how = metered(mode, command)
    if done.returncode != 0:
        raise SystemExit(f"hwkit grade --{mode} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    db = sqlite3.connect(root / "gradebook.sqlite")
    rows = db.execute("SELECT status, cpu_seconds, timings FROM submissions").fetchall()
    points = db.execute("SELECT SUM(score), SUM(max_score) FROM submissions").fetchone()
    db.close()
    timings = [json.loads(t or "{}") for _, _, t in rows]
    return {"mode": f"hwkit {mode}", "n": len(rows), "wall": wall, "cpu": cpu, "how": how,
            "kernel_cpu": sum(c or 0.0 for _, c, _ in rows), "statuses": counts(s for s, _, _ in rows),
            "points": points, "note": f"figures drawn {figures_in(root.glob('graded/t/*/t.ipynb'))}",
            "stages": {k: statistics.median(t.get(k, 0.0) for t in timings)
                       for k in ("kernel_start", "execute", "probes", "checks")}}


def figures_in(notebooks) -> int:
    """PNG outputs in executed notebooks (both graders draw the figures a notebook shows)."""
    return sum(1 for path in notebooks for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"
               for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


# ---- nbgrader mode --------------------------------------------------------------------------------------

class Skip(Exception):
    pass


NO_REPLY = Reply(False, error_type="NoReply", error_message="the probe cell gave no reply")
BENCH_MIME = "application/x-hwkit-bench+json"


def _venv_purelib(python: Path) -> Path:
    return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())


def _nbgrader_works(python: Path) -> bool:
    probe = ("import sys, nbgrader, torch, numpy, sympy, matplotlib, ipykernel; "
             "assert nbgrader.__version__.startswith('0.9.'), nbgrader.__version__; "
             "assert not torch.__file__.startswith(sys.prefix), 'torch inside the nbgrader venv'")
    return python.is_file() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def nbgrader_python(fresh: bool) -> Path:
    """The throwaway venv's python with nbgrader 0.9.x, and torch & co. seen from the hwkit venv."""
    python = NBGRADER_VENV / "bin" / "python"
    if not fresh and _nbgrader_works(python):
        return python
    shutil.rmtree(NBGRADER_VENV, ignore_errors=True)
    NBGRADER_VENV.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(NBGRADER_VENV)], check=True, capture_output=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    why = "no nbgrader 0.9.x could be installed"
    for spec in NBGRADER_SPECS:
        report = NBGRADER_VENV / "pip-report.json"
        plan = subprocess.run([*pip, "install", "--dry-run", "--report", str(report), spec],
                              capture_output=True, text=True)
        if plan.returncode != 0:
            why = f"pip cannot resolve {spec}: {(plan.stderr.strip().splitlines() or [''])[-1][:300]}"
            continue
        names = [i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]]
        heavy = [n for n in names if n.startswith(("torch", "nvidia-", "triton"))]
        if heavy:
            raise Skip(f"pip would install {', '.join(heavy)} into the nbgrader venv; refusing")
        done = subprocess.run([*pip, "install", spec], capture_output=True, text=True)
        if done.returncode == 0:
            break
        why = f"pip install {spec} failed: {done.stderr.strip()[-300:]}"
    else:
        raise Skip(why)
    # appended after the venv's own site-packages: nbgrader's dependencies win, torch & co. come from hwkit's venv
    purelib = sysconfig.get_paths()["purelib"]
    lines = dict.fromkeys([purelib, sysconfig.get_paths()["platlib"], str(REPO)])   # REPO: hwkit_kernel (editable)
    (_venv_purelib(python) / "zz-hwkit-venv.pth").write_text("".join(f"{p}\n" for p in lines))
    if not _nbgrader_works(python):
        raise Skip("the nbgrader venv was built but cannot import nbgrader 0.9.x together with torch")
    return python


def _test_cell(i: int):
    return nbformat.v4.new_code_cell(
        f'exec(open("hwkit_probes/{i:02d}.py").read())   # this student\'s hwkit probe cell {i}',
        metadata={"deletable": False, "editable": False,
                  "nbgrader": {"grade": True, "solution": False, "locked": True, "task": False,
                               "grade_id": f"probe_{i:02d}", "points": 1, "schema_version": 3}})


def probe_snippet(probe, nonce: str) -> str:
    """A cell that answers one probe in the kernel it runs in, as hwkit's kernels answer a probe request, and
    displays the reply (JSON, buffers as base64) for the script to read afterwards."""
    content, buffers = request(probe, nonce)
    payload = json.dumps({"content": content, "buffers": [base64.b64encode(b).decode("ascii") for b in buffers]})
    return ("import base64 as _b64, json as _json\nfrom IPython import get_ipython as _ip\n"
            "from IPython.display import display as _show\nfrom hwkit_kernel.runtime import Runtime as _Runtime\n"
            f"_p = _json.loads({payload!r})\n"
            "_r, _out = _Runtime(None, _ip().user_ns).answer(_p['content'], [_b64.b64decode(b) for b in _p['buffers']])\n"
            f"_show({{{BENCH_MIME!r}: {{'reply': _r, 'buffers': [_b64.b64encode(b).decode() for b in _out]}}}}, raw=True)\n")


def _probe_cells(course, spec, student) -> list[tuple[str, tuple]]:
    """The probes hwkit asks for this student's variant, in hwkit's order: per part its snippet and
    (part, probe, nonce)."""
    rng = random.Random(f"probes/{student.student_id}")
    cells = []
    for pv in build_variant(course, spec, student).problems:
        for part in pv.parts:
            probe, nonce = part.probe(rng), new_nonce()
            cells.append((probe_snippet(probe, nonce), (part, probe, nonce)))
    return cells


def _bench_reply(outputs: list, nonce: str) -> Reply | None:
    for out in outputs:
        found = out.get("data", {}).get(BENCH_MIME) if isinstance(out, dict) else None
        if isinstance(found, dict):
            try:
                buffers = [base64.b64decode(b) for b in found.get("buffers", [])]
            except (TypeError, ValueError):
                continue
            reply = read_reply(found.get("reply"), buffers, nonce)
            if reply is not None:
                return reply
    return None


def nbgrader_mode(template: Path, work: Path, fresh: bool) -> dict:
    python = nbgrader_python(fresh)
    nbgrader = [str(python), "-m", "nbgrader"]
    root = work / "nbgrader"
    (root / "source" / "t").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'hwkit-bench'\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(root / 'gradebook.db')!r}\n"
        f"c.Execute.timeout = {CELL_TIMEOUT}                 # per cell, as hwkit's cell_timeout\n"
        f"c.ExecutePreprocessor.timeout = {CELL_TIMEOUT}\n"
        "c.Execute.interrupt_on_timeout = True    # as hwkit: interrupt the cell, go on with the next\n")
    env = {**os.environ, **KERNEL_ENV, "MPLBACKEND": KERNEL_MPLBACKEND,   # figures drawn as hwkit's kernels draw them
           "JUPYTER_PLATFORM_DIRS": "1",   # nbgrader calls `alembic` from PATH
           "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_DATA_DIR": str(root / ".jupyter-data")}

    def run(*args):
        done = subprocess.run([*nbgrader, *args], cwd=root, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise Skip(f"nbgrader {args[0]} {args[1] if len(args) > 1 else ''} failed: "
                       f"{(done.stdout + done.stderr).strip()[-400:]}")

    course = load_course(template)
    spec = course.assignment("t")
    probes = {s.student_id: _probe_cells(course, spec, s) for s in course.students()}
    k = max(len(p) for p in probes.values())
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# hwkit bench: autograder tests")]
                                      + [_test_cell(i) for i in range(1, k + 1)])
    source.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(source, str(root / "source" / "t" / "t.ipynb"))
    data = template / "source" / "t" / "data"
    if data.is_dir():
        shutil.copytree(data, root / "source" / "t" / "data")
    (root / "students.csv").write_text("id\n" + "".join(f"{sid}\n" for sid in probes))
    run("db", "student", "import", "students.csv")
    run("generate_assignment", "t", "--force")
    released = nbformat.read(str(root / "release" / "t" / "t.ipynb"), as_version=4)
    tests = [c for c in released.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    for sid, cells in probes.items():
        nb = nbformat.read(str(template / "submitted" / "t" / sid / "t.ipynb"), as_version=4)
        nb.cells.extend(nbformat.from_dict(json.loads(json.dumps(c))) for c in tests)
        folder = root / "submitted" / sid / "t"
        (folder / "hwkit_probes").mkdir(parents=True)
        nbformat.write(nb, str(folder / "t.ipynb"))
        for i in range(1, k + 1):
            (folder / "hwkit_probes" / f"{i:02d}.py").write_text(cells[i - 1][0] if i <= len(cells) else "")
    done, wall, cpu, how = metered("nbgrader", [*nbgrader, "autograde", "t", "--force"], cwd=root, env=env)
    graded = {sid: root / "autograded" / sid / "t" / "t.ipynb" for sid in probes}
    graded = {sid: p for sid, p in graded.items() if p.is_file()}
    if not graded:
        raise Skip(f"nbgrader autograde graded nothing (exit {done.returncode}): "
                   f"{(done.stdout + done.stderr).strip()[-400:]}")
    replied = total = 0
    points, statuses = [0.0, 0.0], []
    for sid, path in graded.items():        # after the timed run: did the probes run, and what do they score?
        nb = nbformat.read(str(path), as_version=4)
        by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        for i, (_, (part, probe, nonce)) in enumerate(probes[sid], start=1):
            cell = by_id.get(f"probe_{i:02d}")
            reply = _bench_reply(cell.get("outputs", []) if cell is not None else [], nonce)
            total += 1
            replied += reply is not None
            points[0] += grade_reply(part, reply or NO_REPLY, probe).fraction * part.points
            points[1] += part.points
        errors = [o.get("ename") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        statuses.append("timeout" if "CellTimeoutError" in errors else "cell errors" if errors else "ok")
    return {"mode": "nbgrader", "n": len(graded), "wall": wall, "cpu": cpu, "how": how, "kernel_cpu": None,
            "statuses": counts(statuses), "points": points,
            "note": f"{k} probe cells per notebook; probes that replied {replied}/{total}; "
                    f"figures drawn {figures_in(graded.values())}; autograde exit {done.returncode}"}


# ---- main -----------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=40)
    ap.add_argument("--assignment", default="nn-homework", choices=sorted(p.stem for p in ASSIGNMENTS.glob("*.toml")))
    ap.add_argument("--modes", default="cold,warm,nbgrader")
    ap.add_argument("--jobs", type=int, default=None, help="passed to hwkit grade (default: hwkit's own choice)")
    ap.add_argument("--fresh-nbgrader", action="store_true", help="rebuild the throwaway nbgrader venv")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"cold", "warm", "nbgrader"}
    if unknown:
        raise SystemExit(f"unknown modes: {', '.join(sorted(unknown))}")
    results, skipped = [], ""
    with tempfile.TemporaryDirectory(prefix="hwkbench-") as td:
        ids = [f"b{i:03d}" for i in range(args.n)]
        template = make_bench_course(Path(td) / "template", args.assignment, ids)
        make_submissions(template, ids)
        notebooks = sorted((template / "submitted" / "t").glob("*/t.ipynb"))
        course = load_course(template)
        spec = course.assignment("t")
        students = {st.student_id: st for st in course.roster}
        probe_cells = {nb: [code for code, _ in _probe_cells(course, spec, students[nb.parent.name])] for nb in notebooks}
        data = template / "source" / "t" / "data"
        before = student_cpu_seconds(notebooks, data, probe_cells)
        for mode in ("cold", "warm"):
            if mode in modes:
                results.append(hwkit_mode(template, Path(td), mode, args.jobs))
        if "nbgrader" in modes:
            try:
                results.append(nbgrader_mode(template, Path(td), args.fresh_nbgrader))
            except Exception as exc:  # whatever fails here (install, config, nbgrader itself) skips this mode only
                skipped = f"nbgrader autograde: skipped ({exc if isinstance(exc, Skip) else repr(exc)})"
        after = student_cpu_seconds(notebooks, data, probe_cells)
        lower = (sum(c for c, _ in before) + sum(c for c, _ in after)) / 2
        checks = (sum(p for _, p in before) + sum(p for _, p in after)) / 2
        drift = sum(map(sum, after)) / max(sum(map(sum, before)), 1e-9)
    print(f"submissions={args.n} assignment={args.assignment} jobs={args.jobs or 'hwkit default'} "
          f"cores={os.cpu_count()} cell_timeout={CELL_TIMEOUT}s")
    print(f"lower bound: student code's own CPU = {lower:.1f} s in all, {lower / args.n:.2f} s per submission")
    print(f"  (the hidden checks run more student code on fresh inputs: {checks / args.n:.2f} CPU-s per submission "
          f"in the same process; cells + checks = {(lower + checks) / args.n:.2f} s; mean of a measurement before and "
          f"after the graders, the one after at {drift:.2f}x the one before)")
    print(f"{'mode':<12} {'total s':>8} {'subs/min':>9} {'CPU-s/sub':>10} {'kernel CPU-s/sub':>17} {'CPU/lower':>10} "
          f"{'vs cells+checks':>16}")
    for r in results:
        kernel = f"{r['kernel_cpu'] / r['n']:>17.2f}" if r["kernel_cpu"] is not None else f"{'-':>17}"
        print(f"{r['mode']:<12} {r['wall']:>8.1f} {r['n'] / r['wall'] * 60:>9.1f} {r['cpu'] / r['n']:>10.2f} "
              f"{kernel} {r['cpu'] / max(lower, 1e-9):>10.2f} {r['cpu'] / max(lower + checks, 1e-9):>16.2f}")
        print(f"{'':<12} graded {r['n']}; CPU by {r['how']}; points {r['points'][0]:.1f}/{r['points'][1]:.0f}; "
              "statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items())))
        if "stages" in r:
            print(f"{'':<12} median s: " + ", ".join(f"{k} {v:.3f}" for k, v in r["stages"].items()))
        if "note" in r:
            print(f"{'':<12} {r['note']}")
    if skipped:
        print(skipped)
    rate = {r["mode"]: r["n"] / r["wall"] for r in results}
    for a, b in (("hwkit warm", "hwkit cold"), ("hwkit warm", "nbgrader")):
        if a in rate and b in rate:
            print(f"{a} vs {b}: {rate[a] / rate[b]:.2f}x submissions/min")
    warm = next((r for r in results if r["mode"] == "hwkit warm"), None)
    if warm is not None and {"hwkit cold", "nbgrader"} <= set(rate):
        print(f"issue 15's one-machine targets: warm CPU vs cells+checks {warm['cpu'] / max(lower + checks, 1e-9):.2f} "
              f"(target <= 1.35), warm vs nbgrader {rate['hwkit warm'] / rate['nbgrader']:.2f}x (>= 6), "
              f"warm vs cold {rate['hwkit warm'] / rate['hwkit cold']:.2f}x (>= 2.5)")


if __name__ == "__main__":
    main()
