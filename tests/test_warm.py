"""The attack suites (tests/test_sandbox.py, tests/test_jail_*.py), unchanged, against warm kernels: every jail
test of those files is collected here again with the harness's `Jail` replaced by hwkit.warm.WarmJail (kernels
forked from one zygote). Then the warm path's own tests: the LaunchSpec is carried out whole or refused, the
zygote holds no course code, and what one student does to their kernel (monkeypatched torch functions, module
globals, background threads, processes, files) never reaches the next student's kernel in the same slot."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwkit import warm
from hwkit.sandbox import SLOT_UID_BASE, pid_alive, pids_of_uid, reap_stale_runs
from hwkit.sandbox.spec import MOUNT_KINDS, LaunchSpec, Mount, mount_args
from hwkit.warm.view import HANDLERS
from tests import jail_support as harness
from tests import test_jail_exposure, test_jail_ipc, test_sandbox
from tests.jail_support import LIMITS, SLOT, UID, assert_host_clean, course, host_secret_in_env, jail_ok  # noqa: F401
from tests.test_jail_exposure import ZYGOTE_SIDE, harness_spec
from tests.test_jail_ipc import host_listener  # noqa: F401

# Tests that need no jail, or start their own grader process, are not repeated here.
_NOT_REPEATED = {"test_seccomp_program_is_whole_instructions", "test_unavailable_says_what_to_install",
                 "test_jail_refuses_to_run_unsandboxed", "test_local_kernel_reports_a_crash",
                 "test_local_kernel_runs_in_workdir", "test_grader_killed_leaves_no_kernel",
                 "test_doctor_passes_here", "test_nothing_left_behind",
                 "test_grader_and_bank_packages_under_a_bound_root_are_masked", "test_kernel_package_is_bound_alone",
                 "test_endpoint_checks_refuse_anything_the_jail_did_not_create"}
for _suite in (test_sandbox, test_jail_exposure, test_jail_ipc):
    for _name, _test in list(vars(_suite).items()):
        if _name.startswith("test_") and callable(_test) and _name not in _NOT_REPEATED:
            globals()[_name] = _test


@pytest.fixture(autouse=True)
def warm_jails(monkeypatch):
    """Every Jail the attack suites make is a WarmJail forked from this process's zygote."""
    monkeypatch.setattr(harness, "Jail", warm.WarmJail)


def _zygote_pid() -> int:
    return warm.process_zygote().pid


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def _assert_zygote_pristine() -> None:
    pid = _zygote_pid()
    assert len(os.listdir(f"/proc/{pid}/task")) == 1          # no thread, ever: torch's pools start after fork
    deadline = time.monotonic() + 2
    while _children(pid) and time.monotonic() < deadline:     # every kernel's C reaped
        time.sleep(0.02)
    assert _children(pid) == []


# ----------------------------------------------------------------------------------------------------------
# The spec is carried out whole or refused

def test_launch_spec_is_read_whole_or_refused(tmp_path):
    spec = harness_spec(tmp_path, roots=[])
    wire = spec.to_wire()
    assert LaunchSpec.from_wire(wire).check() == spec
    python = sys.executable
    bad = [
        {**wire, "share_net": True},                                          # a field the warm path lacks
        {k: v for k, v in wire.items() if k != "rlimits"},
        {**wire, "mounts": wire["mounts"] + [{"kind": "overlay", "dst": "/x", "src": "/y", "mode": 0o755}]},
        {**wire, "mounts": wire["mounts"] + [{"kind": "bind", "dst": "/x", "src": "/y", "mode": 0o755,
                                              "options": "rw"}]},
        {**wire, "namespaces": wire["namespaces"] + ["user"]},
        {**wire, "rlimits": wire["rlimits"] + [["memlock", 1, 1]]},
        {**wire, "uid": 0},
        {**wire, "kernel_cmd": [python, "-m", "ipykernel_launcher", "-f", spec.connection_file]},
        {**wire, "kernel_cmd": ["/bin/sh", "-c", "id"]},
        {**wire, "kernel_cmd": list(spec.kernel_cmd) + ["--IPKernelApp.code_to_run"]},
    ]
    for data in bad:
        with pytest.raises(ValueError):
            LaunchSpec.from_wire(data).check()


def test_both_paths_handle_every_mount_kind():
    assert set(HANDLERS) == set(MOUNT_KINDS)
    for kind in MOUNT_KINDS:
        assert mount_args([Mount(kind, "/x", "/y")])                          # the cold renderer too
    assert {f.name for f in dataclasses.fields(Mount)} == {"kind", "dst", "src", "mode"}


@pytest.mark.sandbox
def test_zygote_holds_no_course_code(jail_ok):
    modules = warm.process_zygote().modules()
    ours = {m for m in modules if m.split(".")[0] in ("hwkit", "solutions", "templates")}
    assert ours <= ZYGOTE_SIDE, sorted(ours - ZYGOTE_SIDE)
    assert {"hwkit_kernel", "hwkit_kernel.launch", "hwkit_kernel.runtime", "torch"} <= set(modules)


# ----------------------------------------------------------------------------------------------------------
# Cross-student isolation in one slot

STUDENT_A_PATCHES = r"""
import builtins, json, sys, torch, torch.nn.functional as F, numpy as np
F.relu = lambda x, inplace=False: torch.full_like(x, 42.0)
torch.relu = F.relu
torch.nn.functional.gelu = F.relu
torch.Tensor.relu = lambda self: torch.full_like(self, 42.0)
torch.nn.ReLU.forward = lambda self, x: torch.full_like(x, 42.0)
torch.allclose = lambda *a, **k: True
np.mean = lambda *a, **k: 42.0
torch.STUDENT_A_WAS_HERE = True
builtins.STUDENT_A_WAS_HERE = True
sys.modules['student_a_module'] = type(sys)('student_a_module')
torch.manual_seed(1234)
x = torch.tensor([-1.0, 2.0])
print(json.dumps({'relu': F.relu(x).tolist(), 'module': torch.nn.ReLU()(x).tolist()}))
"""

STUDENT_B_CHECKS = r"""
import builtins, json, os, sys, threading, torch, torch.nn.functional as F, numpy as np
x = torch.tensor([-1.0, 2.0])
print(json.dumps({
    'relu': F.relu(x).tolist(), 'torch_relu': torch.relu(x).tolist(), 'method': x.relu().tolist(),
    'module': torch.nn.ReLU()(x).tolist(), 'gelu_is_relu': torch.nn.functional.gelu is F.relu,
    'allclose': torch.allclose(torch.zeros(1), torch.ones(1)), 'mean': float(np.mean([1.0, 3.0])),
    'marks': [hasattr(torch, 'STUDENT_A_WAS_HERE'), hasattr(builtins, 'STUDENT_A_WAS_HERE'),
              'student_a_module' in sys.modules],
    'threads': sorted(t.name for t in threading.enumerate()),
    'torch_threads': torch.get_num_threads(),
    'tmp': sorted(os.listdir('/tmp')), 'shm': sorted(os.listdir('/dev/shm')), 'cwd': sorted(os.listdir('.')),
    'cmdlines': [open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace')
                 for p in os.listdir('/proc') if p.isdigit()],
    'uid': os.getuid(), 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
}))
"""


def _student_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def _check_student_b(run) -> dict:
    seen = run.json(0)
    assert seen["relu"] == seen["torch_relu"] == seen["method"] == seen["module"] == [0.0, 2.0]
    assert seen["gelu_is_relu"] is False and seen["allclose"] is False and seen["mean"] == 2.0
    assert seen["marks"] == [False, False, False]
    assert seen["uid"] == UID and seen["torch_threads"] == LIMITS.torch_threads
    assert seen["cwd"] == ["submission.ipynb"]
    assert max(seen["pids"]) < 20
    return seen


@pytest.mark.sandbox
def test_monkeypatched_torch_does_not_reach_the_next_student(tmp_path, jail_ok):
    first = harness.run_notebook(_student_dir(tmp_path, "a"), [STUDENT_A_PATCHES])
    assert first.outcomes == ["ok"] and first.json(0) == {"relu": [42.0, 42.0], "module": [42.0, 42.0]}
    second = harness.run_notebook(_student_dir(tmp_path, "b"), [STUDENT_B_CHECKS])
    assert second.outcomes == ["ok"]
    _check_student_b(second)
    _assert_zygote_pristine()
    assert_host_clean(SLOT)


STUDENT_A_LINGERS = r"""
import os, subprocess, threading, time, torch, torch.nn.functional as F
def haunt():
    while True:                         # keeps re-patching, and keeps writing everywhere it can
        F.relu = lambda x, inplace=False: torch.full_like(x, 42.0)
        for where in ('/tmp', '/dev/shm', '.'):
            try:
                open(f'{where}/haunted-a', 'w').write('a')
            except OSError:
                pass
        time.sleep(0.01)
threading.Thread(target=haunt, name='student-a-haunt', daemon=False).start()
threading.Thread(target=haunt, name='student-a-daemon', daemon=True).start()
subprocess.Popen(['sleep', '600'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    while True:
        try:
            open('/tmp/haunted-a-child', 'w').write('a')
        except OSError:
            pass
        time.sleep(0.01)
time.sleep(0.3)
print('haunting', sorted(t.name for t in threading.enumerate()))
"""


@pytest.mark.sandbox
@pytest.mark.parametrize("client_shuts_down", [True, False], ids=["nbclient-shutdown", "jail-teardown"])
def test_background_threads_and_processes_do_not_reach_the_next_student(tmp_path, jail_ok, client_shuts_down):
    first = harness.run_notebook(_student_dir(tmp_path, "a"), [STUDENT_A_LINGERS],
                                 client_shuts_down=client_shuts_down)
    assert first.outcomes == ["ok"] and "student-a-haunt" in first.texts[0]
    assert pids_of_uid(UID, include_zombies=True) == []          # all of student A is gone before B starts
    second = harness.run_notebook(_student_dir(tmp_path, "b"),
                                  [STUDENT_B_CHECKS, "import time\ntime.sleep(0.5)", STUDENT_B_CHECKS])
    assert second.outcomes == ["ok", "ok", "ok"]
    for cell in (0, 2):
        seen = _check_student_b(type(second)(second.outcomes, second.texts[cell:], second.report))
        assert not any(name.startswith("student-a") for name in seen["threads"])
        assert not any(name.startswith("haunted") for name in seen["tmp"] + seen["shm"] + seen["cwd"])
        assert not any("sleep" in c for c in seen["cmdlines"])
    _assert_zygote_pristine()
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_kernels_are_forked_warm(tmp_path, jail_ok):
    """The point of it all: torch is already imported, a kernel starts fast and uses little CPU."""
    cell = "import sys, time, os\nt = time.process_time()\nimport torch\nprint(time.process_time() - t)"
    run = harness.run_notebook(tmp_path, [cell])
    assert run.outcomes == ["ok"] and float(run.texts[0]) < 0.05
    assert run.report.cpu_seconds < 0.6
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_grader_killed_leaves_no_warm_kernel(tmp_path, jail_ok):
    """SIGKILL the grader mid-notebook: its zygote, the kernel's C, I and K all die with it."""
    slot = harness.SLOT_KILLED
    script = tmp_path / "grader.py"
    script.write_text(
        "import sys, time\nfrom pathlib import Path\nfrom jupyter_core.utils import run_sync\n"
        "from hwkit.sandbox import run_code\nfrom hwkit.warm import WarmJail, process_zygote\n"
        "from hwkit.course import SandboxLimits\n"
        f"jail = WarmJail(Path(sys.argv[1]), SandboxLimits(), slot={slot}).__enter__()\n"
        "run_sync(run_code)(jail.km, '1+1')\n"
        "print('ready', process_zygote().pid, jail.process.pid, flush=True)\ntime.sleep(600)\n")
    (tmp_path / "w").mkdir()
    grader = subprocess.Popen([sys.executable, str(script), str(tmp_path / "w")], stdout=subprocess.PIPE,
                              cwd=str(Path(__file__).resolve().parents[1]), text=True)
    try:
        words = grader.stdout.readline().split()
        assert words[:1] == ["ready"]
        zygote, c_pid = int(words[1]), int(words[2])
        assert pids_of_uid(SLOT_UID_BASE + slot)
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 3
    while (pids_of_uid(SLOT_UID_BASE + slot) or pid_alive(zygote) or pid_alive(c_pid)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids_of_uid(SLOT_UID_BASE + slot) == []
    assert not pid_alive(zygote) and not pid_alive(c_pid)
    reap_stale_runs()
    assert harness.run_dirs() == [] and harness.our_mounts() == []


@pytest.mark.sandbox
def test_warm_nothing_left_behind(jail_ok):
    """Runs last: no processes of the slot uids, no cgroups, mounts or run dirs of ours; the zygote clean."""
    for slot in (SLOT, harness.SLOT_B, harness.SLOT_KILLED):
        assert pids_of_uid(SLOT_UID_BASE + slot, include_zombies=True) == []
    assert harness.our_cgroups() == [] and harness.our_mounts() == [] and harness.run_dirs() == []
    _assert_zygote_pristine()
