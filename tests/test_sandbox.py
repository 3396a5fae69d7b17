"""The sandbox under attack: every attack is a notebook cell run through a real Jail and nbclient, the way the
executor runs a student's notebook (tests/jail_support.py). Each test checks what the cell saw AND the host
afterwards. tests/test_warm.py runs every jail test here again against warm kernels."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from hwkit.course import SandboxLimits
from hwkit import sandbox
from hwkit.sandbox import (JAIL_HOME, MAX_SLOTS, MB, SLOT_UID_BASE, Jail, LocalKernel, SandboxUnavailable,
                           cgroup_layout, pids_of_uid, reap_stale_runs, run_base, seccomp_program)
from tests.jail_support import (LIMITS, HOST_MARKER, SLOT, SLOT_B, SLOT_KILLED, UID, Run, assert_host_clean,
                                cell_text, course, guarded, host_secret_in_env, jail_ok, our_mounts, our_cgroups,
                                reset_rss_peak, rss_peak_mb, run_dirs, run_notebook)  # noqa: F401


# ----------------------------------------------------------------------------------------------------------
# Tests that need no jail

def test_seccomp_program_is_whole_instructions():
    prog = seccomp_program()
    if prog is not None:
        assert len(prog) % 8 == 0 and len(prog) // 8 < 64


def test_unavailable_says_what_to_install(monkeypatch):
    from hwkit.sandbox import available

    monkeypatch.setattr(available, "HOST_PATH", "/nonexistent")
    ok, why = available.sandbox_available.__wrapped__()
    assert not ok
    assert "bwrap" in why or "Linux" in why


def test_jail_refuses_to_run_unsandboxed(tmp_path, monkeypatch):
    from hwkit.sandbox import jail

    monkeypatch.setattr(jail, "sandbox_available", lambda: (False, "'bwrap' not found; install bubblewrap"))
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        Jail(tmp_path, LIMITS, slot=SLOT).__enter__()


def test_local_kernel_reports_a_crash(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import ctypes\nctypes.string_at(0)")])
    with LocalKernel(tmp_path, LIMITS) as local:
        client = NotebookClient(nb, km=local.km, timeout=30, allow_errors=True, shutdown_kernel="immediate")
        with pytest.raises(DeadKernelError), client.setup_kernel(cleanup_kc=True):
            client.execute_cell(nb.cells[0], 0)
    assert local.report.killed_signal == signal.SIGSEGV


def test_local_kernel_runs_in_workdir(tmp_path, course):
    workdir = tmp_path / "local"
    workdir.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os; open('left.txt', 'w').write('hi'); print(os.getcwd()); print(open('data/points.csv').read())")])
    with LocalKernel(workdir, LIMITS, data_dir=course / "data") as local:
        client = NotebookClient(nb, km=local.km, timeout=30, allow_errors=True, kernel_name="python3")
        with client.setup_kernel():
            client.execute_cell(nb.cells[0], 0)
        assert local.read_file("left.txt", 100) == b"hi"
        assert local.read_file("data/points.csv", 100) is None       # through a symlink: refused
    out = cell_text(nb.cells[0])
    assert str(workdir.resolve()) in out and "x,y" in out
    assert not (workdir / "data").exists()


# ----------------------------------------------------------------------------------------------------------
# The jail

FACTS = r"""
import ctypes, json, os, socket
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
libc = ctypes.CDLL(None, use_errno=True)
userns = libc.unshare(0x10000000); userns_errno = ctypes.get_errno()
try:
    os.setuid(0); setuid = 'worked'
except OSError as e:
    setuid = e.errno
print(json.dumps({
    'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(), 'pid': os.getpid(),
    'cap_eff': status['CapEff'].strip(), 'cap_prm': status['CapPrm'].strip(), 'nnp': status['NoNewPrivs'].strip(),
    'seccomp': status['Seccomp'].strip(), 'cwd': os.getcwd(), 'home': os.environ.get('HOME'),
    'root': sorted(os.listdir('/')), 'slash_root': sorted(os.listdir('/root')), 'home_dir': sorted(os.listdir('/home')),
    'tmp': sorted(os.listdir('/tmp')), 'cwd_files': sorted(os.listdir('.')),
    'hostname': socket.gethostname(), 'userns': [userns, userns_errno], 'setuid': setuid,
    'env': dict(os.environ), 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
    'threads': os.environ.get('OMP_NUM_THREADS'),
}))
"""


@pytest.mark.sandbox
def test_kernel_runs_unprivileged_in_own_namespaces(tmp_path, jail_ok):
    def host_view(i, jail, seen):
        pids = pids_of_uid(jail.uid)
        seen["pids"] = pids
        seen["nnp"] = [open(f"/proc/{p}/status").read().count("NoNewPrivs:\t1") for p in pids]

    run = run_notebook(tmp_path, [FACTS], during=host_view, client_shuts_down=False)
    assert run.outcomes == ["ok"]
    facts = run.json(0)
    assert facts["uid"] == UID and facts["gid"] == UID and facts["groups"] == []
    assert facts["cap_eff"] == facts["cap_prm"] == "0000000000000000"
    assert facts["nnp"] == "1" and facts["seccomp"] == "2"
    assert facts["userns"][0] == -1 and facts["userns"][1] == 1          # EPERM: no user namespaces
    assert facts["setuid"] == 1
    assert facts["cwd"] == JAIL_HOME == facts["home"]
    assert facts["cwd_files"] == ["submission.ipynb"]
    assert facts["slash_root"] == [".pyenv"] or not Path(sys.base_prefix).is_relative_to("/root")
    assert facts["home_dir"] == ["student"]
    assert facts["hostname"] == "jail" and facts["threads"] == "1"
    assert max(facts["pids"]) < 20                                      # its own PID namespace
    assert HOST_MARKER not in run.texts[0] and "JPY_PARENT_PID" not in facts["env"]
    assert run.seen_during["pids"] and all(run.seen_during["nnp"])
    assert run.report.peak_memory_mb and run.report.cpu_seconds and run.report.killed_signal is None
    assert_host_clean(SLOT)




NETWORK = r"""
import json, socket
results = {}
for name, addr in [('host_loopback', ('127.0.0.1', PORT)), ('outside', ('1.1.1.1', 53)), ('lan', ('10.0.0.1', 80))]:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect(addr); results[name] = 'connected'
    except OSError as e:
        results[name] = e.errno
    s.close()
results['interfaces'] = [n for _, n in socket.if_nameindex()]
try:
    socket.getaddrinfo('example.com', 80); results['dns'] = 'resolved'
except OSError as e:
    results['dns'] = 'failed'
print(json.dumps(results))
"""


@pytest.mark.sandbox
def test_no_network(tmp_path, jail_ok):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        run = run_notebook(tmp_path, [NETWORK.replace("PORT", str(port))])
    finally:
        stop.set()
        thread.join()
        listener.close()
    results = run.json(0)
    assert results["host_loopback"] != "connected" and results["outside"] != "connected"
    assert results["lan"] != "connected" and results["dns"] == "failed"
    assert results["interfaces"] == ["lo"]
    assert accepted == []
    assert_host_clean(SLOT)


HOST_FILES = r"""
import json, os
found = {}
for path in PATHS:
    try:
        with open(path, 'rb') as f:
            found[path] = f.read(200).decode('utf-8', 'replace')
    except OSError as e:
        found[path] = e.errno
for d in LISTS:
    try:
        found['ls:' + d] = sorted(os.listdir(d))
    except OSError as e:
        found['ls:' + d] = e.errno
leak = []
for pid in (p for p in os.listdir('/proc') if p.isdigit()):
    try:
        leak.append(open(f'/proc/{pid}/environ', 'rb').read().decode('utf-8', 'replace'))
    except OSError:
        pass
found['environs'] = leak
print(json.dumps(found))
"""


@pytest.mark.sandbox
def test_host_files_are_invisible(tmp_path, course, jail_ok):
    paths = [str(course / "hwkit.toml"), str(course / "solutions" / "hw1.py"),
             str(course / "submissions" / "bob" / "hw1.ipynb"), "/proc/1/environ", "/root/.bashrc",
             "/etc/shadow", str(Path(sandbox.__file__)), "/work/main/hwkit/course.py", "data/points.csv"]
    lists = [str(course), str(tmp_path), "/root", "/home", "/tmp", "/work", "/etc", "data"]
    cell = HOST_FILES.replace("PATHS", json.dumps(paths)).replace("LISTS", json.dumps(lists))
    run = run_notebook(tmp_path, [cell], data_dir=course / "data")
    found = run.json(0)
    for secret_path in paths[:3] + paths[4:8]:
        assert isinstance(found[secret_path], int), f"{secret_path} readable in the jail"
    assert isinstance(found["/proc/1/environ"], int)                   # pid 1 is bwrap's, and not ours
    assert found["data/points.csv"].startswith("x,y")                  # the data dir is there, read-only
    assert isinstance(found["ls:" + str(course)], int) and isinstance(found["ls:" + str(tmp_path)], int)
    assert found["ls:/home"] == ["student"]
    assert set(found["ls:/etc"]) <= {"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives",
                                     "passwd", "group", "hosts", "nsswitch.conf", "fonts"}
    assert all(HOST_MARKER not in env for env in found["environs"])
    text = run.texts[0]
    for secret in ("COURSE-SECRET", "SOLUTION-SECRET", "BOB-SUBMISSION", HOST_MARKER):
        assert secret not in text
    assert_host_clean(SLOT)


WRITES = r"""
import json, os
result = {}
for path in TARGETS:
    try:
        with open(path, 'w') as f:
            f.write('pwned')
        result[path] = 'written'
    except OSError as e:
        result[path] = e.errno
print(json.dumps(result))
"""


@pytest.mark.sandbox
def test_writes_outside_cwd_fail(tmp_path, course, jail_ok):
    host_tmp_name = f"/tmp/hwkit-escape-{os.getpid()}"
    targets = ["/etc/passwd", "/usr/pwned", "/pwned", "/root/pwned", f"{sys.prefix}/pwned", "/home/pwned",
               str(course / "pwned"), "data/pwned", "/proc/sys/kernel/hostname", host_tmp_name, "mine.txt"]
    run = run_notebook(tmp_path, [WRITES.replace("TARGETS", json.dumps(targets))], data_dir=course / "data",
                       read=("mine.txt",))
    result = run.json(0)
    for target in targets[:9]:
        assert result[target] != "written", target
    assert result[host_tmp_name] == "written" and not Path(host_tmp_name).exists()   # its own private /tmp
    assert result["mine.txt"] == "written" and run.files["mine.txt"] == b"pwned"
    assert not (course / "pwned").exists() and not (course / "data" / "pwned").exists()
    assert_host_clean(SLOT)


DISK = r"""
import errno, json, os
result = {}
try:
    with open('one_gigabyte.bin', 'wb') as f:
        for _ in range(1024):
            f.write(b'\0' * (1 << 20))
    result['big_file'] = 'written'
except OSError as e:
    result['big_file'] = e.errno
os.remove('one_gigabyte.bin')
for where in ('.', '/tmp', '/dev/shm'):
    total, i = 0, 0
    try:
        while total < (1 << 30):
            with open(f'{where}/fill{i}', 'wb') as f:
                f.write(b'\1' * (4 << 20))
            total += 4 << 20
            i += 1
        result[where] = ['filled', total]
    except OSError as e:
        result[where] = [e.errno, total]
print(json.dumps(result))
"""


@pytest.mark.sandbox
def test_disk_and_file_size_are_capped(tmp_path, jail_ok):
    run = run_notebook(tmp_path, [guarded(DISK)])
    assert "NOT-IN-JAIL" not in run.texts[0]
    result = run.json(0)
    assert result["big_file"] == 27                                    # EFBIG from RLIMIT_FSIZE
    assert result["."][0] == 28 and result["."][1] <= LIMITS.disk_mb * MB   # ENOSPC at the cap
    assert result["/tmp"][0] == 28 and result["/tmp"][1] <= LIMITS.tmp_mb * MB
    assert result["/dev/shm"][0] == 28 and result["/dev/shm"][1] <= LIMITS.tmp_mb * MB
    assert_host_clean(SLOT)


WRITABLE = r"""
import json, os, stat
points = [line.split()[4] for line in open('/proc/self/mountinfo')]
writable = []
for dirpath, dirs, files in os.walk('/'):
    if dirpath == '/':
        dirs[:] = [d for d in dirs if d != 'proc']
    elif dirpath == '/dev':
        dirs[:] = [d for d in dirs if d == 'shm']
    if os.access(dirpath, os.W_OK):
        writable.append(dirpath)
        dirs[:] = []                      # what is below is on the same bounded mount (or sealed: the IPC dir)
        continue
    if os.statvfs(dirpath).f_flag & os.ST_RDONLY:     # below a read-only mount: only its submounts can differ
        dirs[:] = [d for d in dirs if any(p.startswith(os.path.join(dirpath, d) + '/') or p == os.path.join(dirpath, d)
                                          for p in points)]
        continue
    for name in files:
        path = os.path.join(dirpath, name)
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            continue
        if regular and os.access(path, os.W_OK):
            writable.append(path)
bounds = {d: [os.statvfs(d).f_blocks * os.statvfs(d).f_frsize, os.statvfs(d).f_files]
          for d in ('/home/student', '/tmp', '/dev/shm')}
print(json.dumps({'writable': sorted(writable), 'bounds': bounds}))
"""


@pytest.mark.sandbox
def test_every_writable_path_is_a_bounded_tmpfs(tmp_path, jail_ok):
    from hwkit.sandbox.limits import TMP_INODES, WORK_INODES

    limits = SandboxLimits(**{**LIMITS.__dict__, "cell_timeout": 60})
    run = run_notebook(tmp_path, [WRITABLE], limits=limits)
    assert run.outcomes == ["ok"]
    seen = run.json(0)
    assert seen["writable"] == ["/dev/shm", JAIL_HOME, "/tmp"]
    assert seen["bounds"] == {JAIL_HOME: [LIMITS.disk_mb * MB, WORK_INODES], "/tmp": [LIMITS.tmp_mb * MB, TMP_INODES],
                              "/dev/shm": [LIMITS.tmp_mb * MB, TMP_INODES]}
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_memory_bombs(tmp_path, jail_ok):
    cells = ["x = bytearray(10 ** 12)",
             guarded("hog = []\nwhile True:\n    hog.append(b'x' * (32 << 20))"),
             "print('survived')"]
    run = run_notebook(tmp_path, cells)
    assert run.outcomes[0] == "MemoryError"                            # RLIMIT_AS: one absurd allocation
    assert run.outcomes[1] == "dead"                                   # the memory cgroup: OOM kill
    assert run.report.memory_limit_hit and run.report.killed_signal == signal.SIGKILL
    assert not run.report.cpu_limit_hit
    assert run.report.peak_memory_mb <= LIMITS.memory_mb + 1
    assert_host_clean(SLOT)


def _sample_processes(uid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], len(pids_of_uid(uid)))
        time.sleep(0.05)


@pytest.mark.sandbox
@pytest.mark.parametrize("bomb", [
    "while True:\n    os.fork()",
    "while True:\n    try:\n        os.fork()\n    except BaseException:\n        pass",
], ids=["plain", "swallowing-errors"])
def test_fork_bombs_are_contained(tmp_path, bomb, jail_ok):
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_sample_processes, args=(UID, stop, peak), daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        run = run_notebook(tmp_path, [guarded(bomb)])
    finally:
        stop.set()
        sampler.join()
    assert "NOT-IN-JAIL" not in run.texts[0]
    assert run.outcomes[0] in ("BlockingIOError", "timeout", "dead")
    assert peak[0] <= LIMITS.processes
    assert time.monotonic() - started < LIMITS.cell_timeout + 20
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_infinite_loop_times_out(tmp_path, jail_ok):
    started = time.monotonic()
    run = run_notebook(tmp_path, ["print('before')", "while True:\n    pass"], client_shuts_down=False)
    assert run.outcomes == ["ok", "timeout"]
    assert time.monotonic() - started < LIMITS.cell_timeout + 10
    assert run.report.killed_signal is None
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_background_spin_is_stopped_by_cpu_limit(tmp_path, jail_ok):
    limits = SandboxLimits(**{**LIMITS.__dict__, "cpu_seconds": 3, "cell_timeout": 20})
    cells = ["import threading\ndef spin():\n    while True:\n        pass\n"
             "threading.Thread(target=spin, daemon=True).start()\nprint('cell done')",
             "import time\ntime.sleep(30)"]
    run = run_notebook(tmp_path, cells, limits=limits)
    assert run.outcomes == ["ok", "dead"]
    assert run.report.cpu_limit_hit and run.report.killed_signal == signal.SIGXCPU
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_cpu_budget_covers_child_processes(tmp_path, jail_ok):
    """RLIMIT_CPU is per process: children spinning together are stopped by the cgroup budget."""
    if cgroup_layout() is None:
        pytest.skip("no writable cgroups: only per-process CPU limits apply")
    limits = SandboxLimits(**{**LIMITS.__dict__, "cpu_seconds": 3, "cell_timeout": 25})
    spin = guarded("for _ in range(3):\n    if os.fork() == 0:\n        while True:\n            pass\n"
                   "import time\ntime.sleep(30)")
    run = run_notebook(tmp_path, [spin], limits=limits)
    assert run.outcomes == ["dead"]
    assert run.report.cpu_limit_hit and run.report.cpu_seconds >= 3
    assert_host_clean(SLOT)


@pytest.mark.sandbox
@pytest.mark.parametrize("death, expected_signal", [
    ("import os\nos._exit(3)", None),
    ("import ctypes\nctypes.string_at(0)", signal.SIGSEGV),
], ids=["os._exit", "segfault"])
def test_kernel_deaths_are_reported(tmp_path, death, expected_signal, jail_ok):
    run = run_notebook(tmp_path, ["open('before.txt', 'w').write('kept')", death], read=("before.txt",))
    assert run.outcomes == ["ok", "dead"]
    assert run.report.killed_signal == expected_signal
    assert run.files["before.txt"] == b"kept"                         # readable after the kernel died
    assert_host_clean(SLOT)


KILLERS = [
    "import os\ntry:\n    os.kill(os.getppid(), 9)\n    print('parent killed')\nexcept OSError as e:\n    print('refused', e.errno)",
    "import sys\nsys.exit(1)",
    "import subprocess\nchild = subprocess.Popen(['sleep', '600'])\nprint('child', child.pid)",
    guarded("import signal\nos.kill(-1, signal.SIGKILL)\nprint('killed all I could')"),
    "print('kernel alive', child.poll())",
]


@pytest.mark.sandbox
def test_signals_reach_only_the_jail(tmp_path, jail_ok):
    decoy = {}

    def start_decoy(i, jail, seen):
        # A host process with the jail's own uid, outside its PID namespace: kill(-1) inside must miss it.
        if i == 0:
            decoy["proc"] = subprocess.Popen(["setpriv", f"--reuid={jail.uid}", f"--regid={jail.uid}",
                                              "--clear-groups", "sleep", "600"])
        if i == 3:
            seen["decoy_alive"] = decoy["proc"].poll() is None

    try:
        run = run_notebook(tmp_path, KILLERS, during=start_decoy)
    finally:
        if "proc" in decoy:
            decoy["proc"].kill()
            decoy["proc"].wait()
    assert run.outcomes[:2] in (["ok", "SystemExit"], ["ok", "ok"])
    assert "refused 1" in run.texts[0] or run.outcomes[0] == "dead"
    assert "NOT-IN-JAIL" not in run.texts[3]
    assert run.outcomes[3:] == ["ok", "ok"]
    assert "kernel alive -9" in run.texts[4]                          # its own child died, the kernel lives
    assert run.seen_during["decoy_alive"]
    assert_host_clean(SLOT)


DAEMONS = r"""
import os, signal, subprocess, time
subprocess.Popen(['sleep', '600'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        open('daemon.pid', 'w').write(str(os.getpid()))
        while True:
            time.sleep(0.1)
    os._exit(0)
time.sleep(0.5)
print('daemons started')
"""


@pytest.mark.sandbox
def test_daemons_do_not_outlive_the_run(tmp_path, jail_ok):
    def count(i, jail, seen):
        seen["processes"] = len(pids_of_uid(jail.uid))

    run = run_notebook(tmp_path, [DAEMONS], during=count, read=("daemon.pid",), client_shuts_down=False)
    assert run.outcomes == ["ok"] and run.files["daemon.pid"]
    assert run.seen_during["processes"] >= 3                          # kernel + sleep + daemon were running
    assert_host_clean(SLOT)


@pytest.mark.sandbox
def test_huge_output_is_contained(tmp_path, jail_ok):
    reset_rss_peak()
    before = rss_peak_mb()
    started = time.monotonic()
    cells = ["print('x' * 200_000_000)",
             "for _ in range(200):\n    print('y' * 1_000_000)",
             "'z' * 50_000_000",
             "import os\nos.write(1, b'w' * 20_000_000)\nprint()",
             "from IPython.display import display\n"               # no MIME type is exempt from the caps
             "display({'application/x-hwkit-reply+json': {'blob': 'r' * 2_000_000}}, raw=True)",
             "print('still answering')"]
    run = run_notebook(tmp_path, cells)
    took = time.monotonic() - started
    assert run.outcomes == ["ok"] * 6
    for i in range(5):
        assert len(run.texts[i]) <= LIMITS.output_bytes + 200
    assert "truncated" in run.texts[0] and "truncated" in run.texts[1] and "truncated" in run.texts[2]
    assert run.texts[5] == "still answering\n"
    assert took < 30
    assert rss_peak_mb() - before < 150                               # the grader never held the flood
    assert_host_clean(SLOT)


SYMLINKS = r"""
import os
os.symlink(SECRET, 'secret_link.txt')
os.symlink('/', 'root_link')
os.symlink('.', 'self_link')
os.mkfifo('fifo')
os.mkdir('sub')
open('sub/answer.txt', 'w').write('42')
open('big.bin', 'wb').write(b'b' * 3_000_000)
print('planted')
"""


@pytest.mark.sandbox
def test_read_file_never_follows_links(tmp_path, course, jail_ok):
    secret = str(course / "hwkit.toml")
    names = ("secret_link.txt", "root_link/etc/passwd", "self_link/sub/answer.txt", "fifo", "sub/answer.txt",
             "big.bin", "../w/sub/answer.txt", "/etc/passwd", "missing.txt", "sub")
    run = run_notebook(tmp_path, [SYMLINKS.replace("SECRET", repr(secret))], read=names, read_max=1000)
    assert run.outcomes == ["ok"]
    assert run.files["sub/answer.txt"] == b"42"
    assert run.files["big.bin"] == b"b" * 1000
    for name in names:
        if name not in ("sub/answer.txt", "big.bin"):
            assert run.files[name] is None, name
    assert_host_clean(SLOT)


CONCURRENT = r"""
import json, os, time
slot = os.getuid() - UID_BASE
open(f'/dev/shm/mark-{slot}', 'w').write('x')
open(f'/tmp/mark-{slot}', 'w').write('x')
open(f'mark-{slot}', 'w').write('x')
time.sleep(2.5)
cmdlines = []
for pid in (p for p in os.listdir('/proc') if p.isdigit()):
    try:
        cmdlines.append(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\0', b' ').decode())
    except OSError:
        pass
print(json.dumps({'slot': slot, 'shm': sorted(os.listdir('/dev/shm')), 'tmp': sorted(os.listdir('/tmp')),
                  'cwd': sorted(os.listdir('.')), 'cmdlines': cmdlines,
                  'run_dirs': sorted(os.listdir(RUN_BASE)) if os.path.isdir(RUN_BASE) else []}))
"""


@pytest.mark.sandbox
def test_two_jails_do_not_see_each_other(tmp_path, jail_ok):
    cell = CONCURRENT.replace("UID_BASE", str(SLOT_UID_BASE)).replace("RUN_BASE", repr(str(run_base())))
    runs: dict[int, Run] = {}
    errors = []

    def worker(slot: int) -> None:
        try:
            slot_dir = tmp_path / f"slot{slot}"
            slot_dir.mkdir()
            runs[slot] = run_notebook(slot_dir, [cell], slot=slot)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in (SLOT, SLOT_B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for slot, run in runs.items():
        seen = run.json(0)
        other = SLOT + SLOT_B - slot
        assert seen["slot"] == slot
        assert seen["shm"] == [f"mark-{slot}"]
        assert f"mark-{other}" not in seen["tmp"] and f"mark-{other}" not in seen["cwd"]
        assert len(seen["run_dirs"]) == 1                              # only its own run dir
        assert not any(f"mark-{other}" in c or f"/{other}-" in c for c in seen["cmdlines"])
    assert_host_clean(SLOT, SLOT_B)


@pytest.mark.sandbox
def test_grader_killed_leaves_no_kernel(tmp_path, jail_ok):
    """SIGKILL the grader mid-notebook: the jail dies with it, and the next run reaps what it left."""
    script = tmp_path / "grader.py"
    script.write_text(
        "import sys, time\nfrom pathlib import Path\nfrom jupyter_core.utils import run_sync\n"
        "from hwkit.sandbox import Jail, run_code\nfrom hwkit.course import SandboxLimits\n"
        "jail = Jail(Path(sys.argv[1]), SandboxLimits(), slot=52).__enter__()\n"
        "run_sync(run_code)(jail.km, '1+1')\nprint('ready', flush=True)\ntime.sleep(600)\n")
    (tmp_path / "w").mkdir()
    grader = subprocess.Popen([sys.executable, str(script), str(tmp_path / "w")], stdout=subprocess.PIPE,
                              cwd=str(Path(__file__).resolve().parents[1]), text=True)
    try:
        assert grader.stdout.readline().strip() == "ready"
        assert pids_of_uid(SLOT_UID_BASE + SLOT_KILLED)
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 3
    while pids_of_uid(SLOT_UID_BASE + SLOT_KILLED) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids_of_uid(SLOT_UID_BASE + SLOT_KILLED) == []
    reap_stale_runs()
    assert run_dirs() == [] and our_mounts() == []


@pytest.mark.sandbox
def test_doctor_passes_here(jail_ok):
    checks = sandbox.doctor()
    failed = [(name, msg) for name, ok, msg in checks if not ok]
    assert not failed, failed
    assert any(name.startswith("test kernel") for name, _, _ in checks)


@pytest.mark.sandbox
def test_nothing_left_behind(jail_ok):
    """Runs last: no processes of the slot uids, no cgroups, mounts or run dirs of ours."""
    for slot in (SLOT, SLOT_B, SLOT_KILLED, MAX_SLOTS - 1):
        assert pids_of_uid(SLOT_UID_BASE + slot, include_zombies=True) == []
    assert our_cgroups() == [] and our_mounts() == [] and run_dirs() == []


def test_scratch_folders_of_a_grader_that_died_are_reaped(tmp_path, monkeypatch):
    """A grader stopped by SIGKILL or Ctrl-C mid-batch leaves each lane's scratch folder; the next run removes
    those of graders no longer alive (and never a live grader's), so they do not pile up in /tmp."""
    import tempfile

    from hwkit.sandbox import host

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = host.scratch_dir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f"{mine.name.split('-')[0]}-{dead.pid}-x1y2z3"
    left.mkdir()
    (left / "notebook.ipynb").write_text("{}")
    host.reap_stale_runs()
    assert mine.is_dir() and not left.exists()
