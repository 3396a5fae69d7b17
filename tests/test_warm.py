"""The attack suite (tests/test_sandbox.py), unchanged, against warm kernels: every jail test of that file is
collected here again with its `Jail` replaced by hwkit.warm.WarmJail (kernels forked from one zygote). Then
the warm path's own tests: what one student does to their kernel (monkeypatched torch functions, module
globals, background threads, processes, files) never reaches the next student's kernel in the same slot."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwkit import sandbox, warm
from hwkit.sandbox import SLOT_UID_BASE, pids_of_uid
from tests import test_sandbox as attack
from tests.test_sandbox import LIMITS, SLOT, UID, assert_host_clean, course, host_secret_in_env, jail_ok  # noqa: F401

# Tests of test_sandbox.py that need no jail, or start their own grader process, are not repeated here.
_NOT_REPEATED = {"test_seccomp_program_is_whole_instructions", "test_unavailable_says_what_to_install",
                 "test_cap_outputs_trims_and_notes", "test_local_kernel_reports_a_crash",
                 "test_local_kernel_runs_in_workdir", "test_grader_killed_leaves_no_kernel",
                 "test_doctor_passes_here", "test_nothing_left_behind"}
for _name, _test in list(vars(attack).items()):
    if _name.startswith("test_") and callable(_test) and _name not in _NOT_REPEATED:
        globals()[_name] = _test


@pytest.fixture(autouse=True)
def warm_jails(monkeypatch):
    """Every Jail the attack suite makes is a WarmJail forked from this process's zygote."""
    monkeypatch.setattr(attack, "Jail", warm.WarmJail)


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
# No jail needed

def test_launch_argv_is_read_whole_or_refused():
    base = ["prlimit", "--cpu=1:2", "--", "bwrap", "--unshare-pid", "--chdir", "/home/student", "--",
            "/usr/bin/setpriv", "--reuid=61000", "--regid=61000", "--clear-groups", "--inh-caps=-all",
            "--no-new-privs", "--", sys.executable, "-m", "ipykernel_launcher", "-f", "/tmp/x/k/c.json"]
    plan = warm.parse_launch_argv(base)
    assert plan.uid == 61000 and plan.chdir == "/home/student" and plan.rlimits
    for bad in (base[:4] + ["--share-net"] + base[4:],                       # an option the warm path lacks
                base[:-5] + ["/bin/sh", "-c", "id"],                          # not the kernel
                [x.replace("--reuid=61000", "--reuid=0") for x in base],      # root
                [x for x in base if x != "--no-new-privs"]):
        with pytest.raises(ValueError):
            warm.parse_launch_argv(bad)


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
    first = attack.run_notebook(_student_dir(tmp_path, "a"), [STUDENT_A_PATCHES])
    assert first.outcomes == ["ok"] and first.json(0) == {"relu": [42.0, 42.0], "module": [42.0, 42.0]}
    second = attack.run_notebook(_student_dir(tmp_path, "b"), [STUDENT_B_CHECKS])
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
    first = attack.run_notebook(_student_dir(tmp_path, "a"), [STUDENT_A_LINGERS], client_shuts_down=client_shuts_down)
    assert first.outcomes == ["ok"] and "student-a-haunt" in first.texts[0]
    assert pids_of_uid(UID, include_zombies=True) == []          # all of student A is gone before B starts
    second = attack.run_notebook(_student_dir(tmp_path, "b"), [STUDENT_B_CHECKS, "import time\ntime.sleep(0.5)", STUDENT_B_CHECKS])
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
    run = attack.run_notebook(tmp_path, [cell])
    assert run.outcomes == ["ok"] and float(run.texts[0]) < 0.05
    assert run.report.cpu_seconds < 0.6
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_grader_killed_leaves_no_warm_kernel(tmp_path, jail_ok):
    """SIGKILL the grader mid-notebook: its zygote, the kernel's C, I and K all die with it."""
    slot = attack.SLOT_KILLED
    script = tmp_path / "grader.py"
    script.write_text(
        "import sys, time\nfrom pathlib import Path\nfrom jupyter_core.utils import run_sync\n"
        "from hwkit.sandbox import run_code\nfrom hwkit.warm import WarmJail, process_zygote\n"
        "from hwkit.course import SandboxLimits\n"
        f"jail = WarmJail(Path(sys.argv[1]), SandboxLimits(), slot={slot}).__enter__()\n"
        "run_sync(run_code)(jail.km, '1+1')\n"
        "print('ready', process_zygote().pid, jail._proc.pid, flush=True)\ntime.sleep(600)\n")
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
    while (pids_of_uid(SLOT_UID_BASE + slot) or sandbox._pid_alive(zygote) or sandbox._pid_alive(c_pid)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids_of_uid(SLOT_UID_BASE + slot) == []
    assert not sandbox._pid_alive(zygote) and not sandbox._pid_alive(c_pid)
    sandbox._reap_stale_runs()
    assert attack._run_dirs() == [] and attack._our_mounts() == []


@pytest.mark.sandbox
def test_warm_nothing_left_behind(jail_ok):
    """Runs last: no processes of the slot uids, no cgroups, mounts or run dirs of ours; the zygote clean."""
    for slot in (SLOT, attack.SLOT_B, attack.SLOT_KILLED):
        assert pids_of_uid(SLOT_UID_BASE + slot, include_zombies=True) == []
    assert attack._our_cgroups() == [] and attack._our_mounts() == [] and attack._run_dirs() == []
    _assert_zygote_pristine()
