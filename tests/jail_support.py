"""The harness of the sandbox attack suites (tests/test_sandbox.py, tests/test_jail_*.py): run notebook cells
through a real Jail and nbclient the way the executor (hwkit/execute.py) does, and check the host afterwards.

tests/test_warm.py runs the same suites against warm kernels by replacing `Jail` in this module.

Destructive cells (kill(-1), bombs, disk filling) first check they are inside the jail and otherwise only
print NOT-IN-JAIL, so a broken jail fails the test instead of harming this machine."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from hwkit.course import SandboxLimits
from hwkit.outputs import CappedClient
from hwkit.sandbox import CGROUP_PREFIX, SLOT_UID_BASE, Jail, RunReport, cgroup_layout, pids_of_uid, run_base
from hwkit.sandbox import sandbox_available

AVAILABLE, WHY = sandbox_available()

LIMITS = SandboxLimits(memory_mb=768, cpu_seconds=60, processes=48, open_files=128, file_size_mb=8, disk_mb=32,
                       tmp_mb=16, cell_timeout=6, notebook_timeout=120, output_bytes=100_000, torch_threads=1)
HOST_MARKER = "hwkit-host-env-marker-7f3a"      # in the grader's environment: must never reach a jail

IN_JAIL = "os.getuid() >= %d and os.getpid() < 100" % SLOT_UID_BASE
SLOT = 50               # slots the tests use: away from 0.., which a grader on this machine may be using
SLOT_B, SLOT_KILLED = 51, 52
UID = SLOT_UID_BASE + SLOT


def guarded(attack: str) -> str:
    """Wrap a destructive attack so that it runs only inside a jail."""
    body = "\n".join("    " + line for line in attack.strip().splitlines())
    return f"import os\nif not ({IN_JAIL}):\n    print('NOT-IN-JAIL')\nelse:\n{body}\n"


@dataclass
class Run:
    outcomes: list[str]            # per executed cell: "ok", an exception name, "timeout" or "dead"
    texts: list[str]               # per cell: all stream text and text/plain results
    report: RunReport
    files: dict[str, bytes | None] = field(default_factory=dict)
    seen_during: dict = field(default_factory=dict)
    reconnects: list[str] = field(default_factory=list)   # per timed-out cell: "ok" or why the grader refused

    def json(self, cell: int) -> dict:
        return json.loads(self.texts[cell].strip().splitlines()[-1])


def cell_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _cell_outcome(cell) -> str:
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return errors[0]["ename"] if errors else "ok"


def _reconnect(client) -> str:
    """What hwkit/execute.py does after a cell timed out: a fresh kernel client (nbclient's old iopub reader
    was cancelled), then one empty cell that absorbs the interrupted cell's leftovers. Returns "ok", or the
    error that made the grader refuse."""
    try:
        client.kc.stop_channels()
        client.kc = None
        client.start_new_kernel_client()
    except Exception as e:  # noqa: BLE001 (reported to the test)
        return f"{type(e).__name__}: {e}"
    client.nb.cells.append(nbformat.v4.new_code_cell("pass"))
    try:
        client.execute_cell(client.nb.cells[-1], len(client.nb.cells) - 1)
    except (CellTimeoutError, DeadKernelError):
        pass
    finally:
        del client.nb.cells[-1]
    return "ok"


def run_notebook(tmp_path: Path, cells: list[str], *, limits: SandboxLimits = LIMITS, slot: int = SLOT,
                 data_dir: Path | None = None, read: tuple[str, ...] = (), during=None, read_max: int = 1 << 20,
                 client_shuts_down: bool = True, reconnect_after_timeout: bool = False) -> Run:
    """Run cells as the executor does. client_shuts_down: nbclient kills the kernel on leaving setup_kernel
    (cleanup_kc=True, shutdown_kernel="immediate", the recommended use); False: the Jail's exit does it.
    reconnect_after_timeout: after a cell timed out, reconnect (as the executor does) and go on."""
    workdir = tmp_path / f"work-{slot}"
    workdir.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(nb, workdir / "submission.ipynb")
    outcomes: list[str] = []
    seen: dict = {}
    reconnects: list[str] = []
    with Jail(workdir, limits, slot=slot, data_dir=data_dir) as jail:
        client = CappedClient(nb, km=jail.km, timeout=limits.cell_timeout, allow_errors=True,
                              kernel_name="python3", resources={"metadata": {"path": str(workdir)}},
                              shutdown_kernel="immediate")
        client.cell_bytes = limits.output_bytes
        with client.setup_kernel(cleanup_kc=client_shuts_down):
            seal = getattr(jail, "seal_ipc", None)            # as the executor does, before any student cell
            if seal is not None:
                seal()
            for i, cell in enumerate(nb.cells):
                try:
                    client.execute_cell(cell, i)
                    outcomes.append(_cell_outcome(cell))
                except CellTimeoutError:
                    outcomes.append("timeout")
                except DeadKernelError:
                    outcomes.append("dead")
                if during is not None:
                    during(i, jail, seen)
                if outcomes[-1] == "timeout" and reconnect_after_timeout:
                    run_sync(jail.km.interrupt_kernel)()
                    reconnects.append(_reconnect(client))
                    if reconnects[-1] == "ok":
                        continue
                if outcomes[-1] in ("dead", "timeout"):
                    break
        files = {name: jail.read_file(name, read_max) for name in read}
    return Run(outcomes, [cell_text(c) for c in nb.cells], jail.report, files, seen, reconnects)


def assert_host_clean(*slots: int) -> None:
    for slot in slots:
        assert pids_of_uid(SLOT_UID_BASE + slot, include_zombies=True) == [], f"slot {slot} left processes"
    assert our_cgroups() == []
    assert our_mounts() == []
    assert run_dirs() == []


def our_cgroups() -> list[str]:
    layout = cgroup_layout()
    if layout is None:
        return []
    prefix = f"{CGROUP_PREFIX}{os.getpid()}-"
    return [str(p) for parent in set(layout.parents.values()) for p in parent.glob(prefix + "*")]


def our_mounts() -> list[str]:
    mine = f"{run_base()}/"
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if mine in line and f"-{os.getpid()}-" in line]


def run_dirs() -> list[str]:
    """Run dirs of this test process (other graders on the machine may have their own)."""
    base = run_base()
    mine = f"-{os.getpid()}-"
    return [p.name for p in base.iterdir() if p.is_dir() and mine in p.name] if base.is_dir() else []


def rss_peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def reset_rss_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


@pytest.fixture(autouse=True)
def host_secret_in_env(monkeypatch):
    monkeypatch.setenv("HWKIT_TEST_HOST_SECRET", HOST_MARKER)


@pytest.fixture
def jail_ok():
    if not AVAILABLE:
        pytest.skip(f"the bubblewrap sandbox cannot run here: {WHY}")


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A fake course dir beside the work dirs: its secret, solutions and another student's submission."""
    root = tmp_path / "course"
    (root / "solutions").mkdir(parents=True)
    (root / "submissions" / "bob").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "hwkit.toml").write_text('[course]\nsecret = "COURSE-SECRET-d41d8cd98f"\n')
    (root / "solutions" / "hw1.py").write_text("ANSWER = 'SOLUTION-SECRET-42'\n")
    (root / "submissions" / "bob" / "hw1.ipynb").write_text("BOB-SUBMISSION-SECRET")
    (root / "data" / "points.csv").write_text("x,y\n1,2\n")
    return root
