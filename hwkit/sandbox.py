"""Sandboxed Jupyter kernels: one throwaway jail per notebook (bubblewrap + rlimits + cgroups).

A Jail launches `python -m ipykernel_launcher` of this very interpreter inside bwrap:

    sh (joins our cgroups) -> prlimit (rlimits) -> bwrap (namespaces, read-only view)
        -> setpriv (drops to the slot's uid, no caps, no new privs) -> python -m ipykernel_launcher

The kernel talks to the grader over ipc sockets in a short per-run directory bound into the jail at the
same path. Its working directory is a size-limited tmpfs mounted on the host (so files the student left
can still be read after the kernel died) and bound into the jail at JAIL_HOME. Teardown kills the whole
run, verifies nothing of it survives and removes every cgroup, mount and directory it made.

LocalKernel offers the same interface without isolation, for self-check on a student's own machine.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import functools
import os
import platform
import pwd
import secrets
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from queue import Empty
from pathlib import Path

import zmq
from jupyter_client import AsyncKernelManager, KernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_core.utils import run_sync

from hwkit.course import SandboxLimits

JAIL_HOME = "/home/student"          # the kernel's cwd and HOME inside the jail
SLOT_UID_BASE = 61000                # slot N runs as uid/gid SLOT_UID_BASE + N (and the quick probes as
                                     # SLOT_UID_BASE + MAX_SLOTS); these ids must be unused here
MAX_SLOTS = 1000
CGROUP_PREFIX = "hwkit-"
RUN_PREFIX = "hwk"
MB = 1024 * 1024
_HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_TEARDOWN_DEADLINE = 5.0             # seconds to wait for killed processes to vanish
_WATCH_INTERVAL = 0.25
_STDERR_KEPT = 16384                 # bytes of the kernel's stderr kept for diagnosis


class SandboxUnavailable(Exception):
    """The sandbox cannot be built on this machine; the message says what is missing and what to install."""


class SandboxLeak(Exception):
    """A process of a run survived teardown, or a cgroup/mount/dir of it could not be removed."""


@dataclass
class RunReport:
    peak_memory_mb: float | None = None
    cpu_seconds: float | None = None      # CPU used by the kernel's processes, None if unknown
    memory_limit_hit: bool = False        # the memory cgroup OOM-killed something
    cpu_limit_hit: bool = False           # killed by RLIMIT_CPU (SIGXCPU/SIGKILL) or the cgroup CPU budget
    killed_signal: int | None = None      # signal that ended the kernel, if it died by signal before teardown
    wall_limit_hit: bool = False          # killed by the wall-clock backstop (a runaway the executor did not stop)


# ----------------------------------------------------------------------------------------------------------
# What the jail needs from the host

def _python_roots() -> list[Path]:
    """Directories holding the running interpreter, its stdlib and its site-packages (bound read-only)."""
    import site
    candidates = [sys.base_prefix, sys.prefix, *site.getsitepackages()]
    roots: list[Path] = []
    for raw in candidates:
        path = Path(os.path.realpath(raw))
        if not path.is_dir() or _under(path, Path("/usr")):
            continue
        if any(_under(path, r) for r in roots):
            continue
        roots = [r for r in roots if not _under(r, path)] + [path]
    return roots


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _probe_uid() -> int:
    """The uid of the quick availability probes: no slot's, so that a jail clearing its own slot's uid
    (before start, at teardown) cannot kill a probe another lane or grader is running at that moment."""
    return SLOT_UID_BASE + MAX_SLOTS


def _slot_uid(slot: int) -> int:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot must be in 0..{MAX_SLOTS - 1}, got {slot}")
    return SLOT_UID_BASE + slot


def _uid_is_unused(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


def _run_base() -> Path:
    """Short (socket paths are limited to ~107 bytes), root-owned directory holding the run dirs."""
    tmp = tempfile.gettempdir()
    if len(tmp) > 40:
        tmp = "/tmp"
    return Path(tmp) / f"{RUN_PREFIX}{os.geteuid()}"


def _ensure_private_dir(path: Path, mode: int) -> None:
    """Create path (or accept it) only if it is a real directory owned by us: never trust a planted one."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SandboxUnavailable(f"{path} exists but is not a directory owned by uid {os.geteuid()}; remove it")
    os.chmod(path, mode)


# ----------------------------------------------------------------------------------------------------------
# mount(2) / umount2(2) for the work-dir tmpfs

_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(path: Path, size_bytes: int, uid: int) -> None:
    opts = f"size={size_bytes},nr_inodes=16384,mode=0700,uid={uid},gid={uid}".encode()
    if _libc().mount(b"hwkit", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def _umount(path: Path, lazy: bool = False) -> bool:
    flags = _UMOUNT_NOFOLLOW | (_MNT_DETACH if lazy else 0)
    return _libc().umount2(os.fsencode(path), flags) == 0


# ----------------------------------------------------------------------------------------------------------
# cgroups: a uniquely named child of this process's own cgroup, per controller (v1) or one (v2)

@dataclass
class _CgroupLayout:
    version: int                          # 1 or 2
    parents: dict[str, Path]              # controller -> our own cgroup dir for it (v2: one dir for all)


def _parse_cgroup_mounts() -> list[tuple[str, str, set[str], str]]:
    """(mount point, fs type, super options, root) of every cgroup mount, from /proc/self/mountinfo."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields_l, fields_r = left.split(), right.split()
            if len(fields_r) < 3 or fields_r[0] not in ("cgroup", "cgroup2"):
                continue
            mounts.append((fields_l[4].replace("\\040", " "), fields_r[0], set(fields_r[2].split(",")),
                           fields_l[3]))
    return mounts


def _join(mount: str, root: str, path: str) -> Path:
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):] or "/"
    return Path(mount) / path.lstrip("/")


@functools.lru_cache(maxsize=1)
def _cgroup_layout() -> _CgroupLayout | None:
    """Where our cgroups live, or None when no usable memory controller is writable here."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f if line.strip()]
        mounts = _parse_cgroup_mounts()
    except OSError:
        return None
    v1: dict[str, Path] = {}
    for _, controllers, path in lines:
        for ctrl in controllers.split(","):
            if ctrl not in ("memory", "pids", "cpu", "cpuacct"):
                continue
            for mount, fstype, opts, root in mounts:
                if fstype == "cgroup" and ctrl in opts:
                    v1[ctrl] = _join(mount, root, path)
                    break
    if "memory" in v1 and all(os.access(p, os.W_OK) for p in v1.values()):
        return _CgroupLayout(1, v1)
    v2_path = next((p for h, c, p in lines if h == "0" and c == ""), None)
    v2_mount = next(((m, r) for m, t, _, r in mounts if t == "cgroup2"), None)
    if v2_path is None or v2_mount is None:
        return None
    own = _join(v2_mount[0], v2_mount[1], v2_path)
    try:
        available = set((own / "cgroup.controllers").read_text().split())
        if "memory" not in available:
            return None
        enabled = set((own / "cgroup.subtree_control").read_text().split())
        missing = [c for c in ("memory", "pids", "cpu") if c in available and c not in enabled]
        if missing:   # fails with EBUSY when our own cgroup holds processes (the no-internal-process rule)
            (own / "cgroup.subtree_control").write_text(" ".join("+" + c for c in missing))
    except OSError:
        return None
    return _CgroupLayout(2, {c: own for c in ("memory", "pids", "cpu", "cpuacct")})


class _Cgroups:
    """The cgroups of one run. Every method tolerates a missing controller."""

    def __init__(self, layout: _CgroupLayout, name: str):
        self.layout = layout
        self.dirs: list[Path] = []                      # created, in creation order
        self.by_ctrl: dict[str, Path] = {}
        for ctrl, parent in layout.parents.items():
            path = parent / name
            if path not in self.dirs:
                path.mkdir()
                self.dirs.append(path)
            self.by_ctrl[ctrl] = path

    def _write(self, ctrl: str, fname: str, value: str) -> None:
        if ctrl in self.by_ctrl:
            (self.by_ctrl[ctrl] / fname).write_text(value)

    def _read(self, ctrl: str, fname: str) -> str | None:
        try:
            return (self.by_ctrl[ctrl] / fname).read_text()
        except (KeyError, OSError):
            return None

    def apply(self, limits: SandboxLimits, extra_pids: int) -> None:
        mem = limits.memory_mb * MB
        cpu_cores = limits.kernel_threads()
        if self.layout.version == 1:
            self._write("memory", "memory.limit_in_bytes", str(mem))
            if (self.by_ctrl["memory"] / "memory.memsw.limit_in_bytes").exists():
                self._write("memory", "memory.memsw.limit_in_bytes", str(mem))
            self._write("pids", "pids.max", str(limits.processes + extra_pids))
            self._write("cpu", "cpu.cfs_period_us", "100000")
            self._write("cpu", "cpu.cfs_quota_us", str(100000 * cpu_cores))
        else:
            self._write("memory", "memory.max", str(mem))
            if (self.by_ctrl["memory"] / "memory.swap.max").exists():
                self._write("memory", "memory.swap.max", "0")
            self._write("pids", "pids.max", str(limits.processes + extra_pids))
            self._write("cpu", "cpu.max", f"{100000 * cpu_cores} 100000")

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(x) for x in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def cpu_seconds(self) -> float | None:
        if self.layout.version == 1:
            raw = self._read("cpuacct", "cpuacct.usage")
            return int(raw) / 1e9 if raw else None
        stats = _keyed(self._read("cpu", "cpu.stat"))
        return stats["usage_usec"] / 1e6 if "usage_usec" in stats else None

    def peak_memory_mb(self) -> float | None:
        fname = "memory.max_usage_in_bytes" if self.layout.version == 1 else "memory.peak"
        raw = self._read("memory", fname)
        return int(raw) / MB if raw else None

    def oom_killed(self) -> bool:
        if self.layout.version == 1:
            stats = _keyed(self._read("memory", "memory.oom_control"))
            if "oom_kill" in stats:
                return stats["oom_kill"] > 0
            raw = self._read("memory", "memory.failcnt")
            return bool(raw) and int(raw) > 0
        return _keyed(self._read("memory", "memory.events")).get("oom_kill", 0) > 0

    def kill_all(self) -> None:
        if self.layout.version == 2 and self.dirs:
            try:
                (self.dirs[0] / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for pid in self.pids():
            _kill_pid(pid)

    def remove(self) -> list[Path]:
        """rmdir every cgroup we made; returns those that could not be removed."""
        left = []
        for d in reversed(self.dirs):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                left.append(d)
        return left


def _keyed(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


# ----------------------------------------------------------------------------------------------------------
# Processes

def _kill_pid(pid: int, uid: int | None = None) -> None:
    """SIGKILL pid via a pidfd; with uid given, only if the process (pinned by the pidfd) has that uid."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if uid is not None and uid not in _proc_uids(pid):
            return
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def _proc_uids(pid: int) -> tuple[int, ...]:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return tuple(int(x) for x in line.split()[1:])
    except OSError:
        pass
    return ()


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def pids_of_uid(uid: int, include_zombies: bool = False) -> list[int]:
    """Host pids whose real, effective, saved or fs uid is uid."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and uid in _proc_uids(int(name)):
            if include_zombies or _proc_state(int(name)) not in ("Z", "X", ""):
                found.append(int(name))
    return found


# ----------------------------------------------------------------------------------------------------------
# seccomp: refuse new user namespaces and a few syscalls a notebook never needs (kernel attack surface)

_SYSCALLS = {   # arch: (AUDIT_ARCH, unshare, clone, clone3, [denied outright])
    "x86_64": (0xC000003E, 272, 56, 435, [101, 248, 249, 250, 298, 321, 323, 425, 426, 427]),
    "aarch64": (0xC00000B7, 97, 220, 435, [117, 217, 218, 219, 241, 280, 282, 425, 426, 427]),
}
_CLONE_NEWUSER = 0x10000000


def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter for bwrap --seccomp, or None for an architecture we have no table for.
    Denied: ptrace, keyrings, perf_event_open, bpf, userfaultfd, io_uring (EPERM); clone3 (ENOSYS, so libc
    falls back to clone); clone/unshare with CLONE_NEWUSER (EPERM); any foreign syscall ABI (EPERM)."""
    table = _SYSCALLS.get(platform.machine())
    if table is None:
        return None
    arch, nr_unshare, nr_clone, nr_clone3, denied = table
    eperm, enosys, allow = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS, 0x7FFF0000

    def ld(offset): return (0x20, 0, 0, offset)
    def jeq(k, jt, jf): return (0x15, jt, jf, k)
    def jge(k, jt, jf): return (0x35, jt, jf, k)
    def jset(k, jt, jf): return (0x45, jt, jf, k)
    def ret(k): return (0x06, 0, 0, k)

    prog = [ld(4), jeq(arch, 1, 0), ret(eperm), ld(0)]
    if platform.machine() == "x86_64":
        prog += [jge(0x40000000, 0, 1), ret(eperm)]          # the x32 ABI
    for nr in denied:
        prog += [jeq(nr, 0, 1), ret(eperm)]
    prog += [jeq(nr_clone3, 0, 1), ret(enosys)]
    prog += [jeq(nr_unshare, 1, 0), jeq(nr_clone, 0, 3), ld(16), jset(_CLONE_NEWUSER, 0, 1), ret(eperm)]
    prog += [ret(allow)]
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


# ----------------------------------------------------------------------------------------------------------
# The launch command

@dataclass
class _RunPaths:
    root: Path        # /tmp/hwk0/<slot>-<pid>-<token>, root-owned 0711
    ipc: Path         # connection file + sockets, owned by the slot uid, bound at the same path
    work: Path        # tmpfs mount point, bound at JAIL_HOME
    etc: Path         # synthetic passwd/group/hosts

    @property
    def connection_file(self) -> Path:
        return self.ipc / "c.json"



# Run by IPython when the kernel starts (PYTHONSTARTUP): caps each cell's output inside the kernel, so an
# accidental flood (a 200 MB print, a giant repr) is cut before it is sent. A student can undo this, which
# is why the grader side also bounds what it accepts (zmq MAXMSGSIZE, OutputCapMixin).
_KERNEL_STARTUP = '''\
def _hwkit_cap_outputs(limit):
    import sys
    note = "\\n[output truncated: this cell printed more than %d characters]\\n" % limit
    used = {}

    def spend(parent, n):
        """Characters of n this cell may still show, or None when its budget was already used up."""
        msg_id = (parent or {}).get("msg_id", "")
        before = used.get(msg_id, 0)
        used[msg_id] = before + n
        return None if before > limit else min(n, limit - before)

    def capped(stream, write):
        def capped_write(text):
            if not isinstance(text, str):
                return write(text)
            room = spend(stream.parent_header, len(text))
            if room == len(text):
                return write(text)
            if room is not None:
                used[(stream.parent_header or {}).get("msg_id", "")] = limit + 1
                write(text[:max(0, room - len(note))] + note)
            return len(text)
        return capped_write

    def cap_display(msg):
        data = msg.get("content", {}).get("data") or {}
        if any(key.startswith("application/x-hwkit") for key in data):
            return msg                      # the grader's probe replies have their own size limit
        n = sum(len(v) for v in data.values() if isinstance(v, str))
        room = spend(msg.get("parent_header"), n)
        if room == n:
            return msg
        if room is None:
            return None
        msg["content"]["data"], msg["content"]["metadata"] = {"text/plain": note.strip()}, {}
        return msg

    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "parent_header"):
            stream.write = capped(stream, stream.write)
    shell = get_ipython()
    for publisher in (shell.display_pub, shell.displayhook):
        if hasattr(publisher, "register_hook"):
            publisher.register_hook(cap_display)


_hwkit_cap_outputs(OUTPUT_LIMIT)
del _hwkit_cap_outputs
'''
_KERNEL_STARTUP_PATH = "/etc/hwkit_startup.py"


def _jail_env(limits: SandboxLimits) -> dict[str, str]:
    threads = str(limits.kernel_threads())
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": JAIL_HOME, "USER": "student", "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib",
        "IPYTHONDIR": "/tmp/ipython", "JUPYTER_CONFIG_DIR": "/tmp/jupyter",   # no student-planted startup files
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
        "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "PYTHONSTARTUP": _KERNEL_STARTUP_PATH,
    }


def _top_level_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _etc_binds(paths: _RunPaths) -> list[str]:
    args = ["--perms", "0755", "--dir", "/etc"]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "fonts"):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name in ("passwd", "group", "hosts", "nsswitch.conf"):
        args += ["--ro-bind", str(paths.etc / name), f"/etc/{name}"]
    args += ["--ro-bind", str(paths.etc / "startup.py"), _KERNEL_STARTUP_PATH]
    return args


def _write_etc(paths: _RunPaths, uid: int, limits: SandboxLimits) -> None:
    files = {
        "startup.py": _KERNEL_STARTUP.replace("OUTPUT_LIMIT", str(limits.output_bytes)),
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nstudent:x:{uid}:{uid}:student:{JAIL_HOME}:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nstudent:x:{uid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }
    paths.etc.mkdir(mode=0o755)
    for name, text in files.items():
        (paths.etc / name).write_text(text)
        os.chmod(paths.etc / name, 0o644)


def _bind_with_parents(path: Path, made: set[Path], args: list[str], flag: str = "--ro-bind") -> None:
    """bwrap makes missing parents 0700 (unreadable to the slot uid): make them 0755 first."""
    for parent in reversed(path.parents):
        if parent != Path("/") and parent not in made:
            args += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
    args += [flag, str(path), str(path)]
    made.add(path)


def _bwrap_argv(paths: _RunPaths, limits: SandboxLimits, uid: int, data_dir: Path | None,
                seccomp_fd: int | None) -> list[str]:
    args = ["bwrap",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "jail", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",   # for setpriv only
            "--cap-add", "CAP_DAC_READ_SEARCH",          # to chdir into the slot-owned 0700 work dir
            "--clearenv"]
    for key, value in _jail_env(limits).items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += _top_level_binds()
    args += _etc_binds(paths)
    args += ["--proc", "/proc", "--dev", "/dev"]
    tmp_size = str(limits.tmp_mb * MB)
    args += ["--perms", "1777", "--size", tmp_size, "--tmpfs", "/tmp"]       # before any bind below /tmp
    args += ["--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm"]
    made: set[Path] = {Path("/usr"), Path("/etc"), Path("/tmp"), Path("/dev"), Path("/proc")}
    for root in _python_roots():
        _bind_with_parents(root, made, args)
    _bind_with_parents(paths.ipc, made, args, flag="--bind")
    args += ["--perms", "0755", "--dir", str(Path(JAIL_HOME).parent)]
    args += ["--bind", str(paths.work), JAIL_HOME]
    if data_dir is not None:
        args += ["--ro-bind", str(data_dir), f"{JAIL_HOME}/data"]
    args += ["--chdir", JAIL_HOME, "--"]
    args += ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
             "--no-new-privs", "--"]
    return args


def _rlimit_argv(limits: SandboxLimits, cgroup_memory: bool) -> list[str]:
    # With a memory cgroup doing the real accounting, RLIMIT_AS is only a backstop for absurd single
    # allocations: torch reserves far more address space than it touches (pitfall 13).
    address_space = (max(2 * limits.memory_mb, limits.memory_mb + 2048) if cgroup_memory
                     else max(limits.memory_mb, 1536)) * MB
    cpu = limits.cpu_seconds
    files = limits.file_size_mb * MB
    return ["prlimit", f"--as={address_space}:{address_space}", f"--cpu={cpu}:{cpu + 1}",
            f"--nproc={limits.processes}:{limits.processes}",
            f"--nofile={limits.open_files}:{limits.open_files}", f"--fsize={files}:{files}",
            "--core=0:0", "--"]


_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 111; shift; done; shift; exec "$@"'


def _cgroup_join_argv(procs_files: list[Path]) -> list[str]:
    if not procs_files:
        return []
    return ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *map(str, procs_files), "--"]


# ----------------------------------------------------------------------------------------------------------
# Launching: bwrap's --die-with-parent follows the thread that forked it (pitfall 10), so every jail is
# forked from one long-lived thread, whatever thread nbclient happens to start the kernel from.

_launcher: concurrent.futures.ThreadPoolExecutor | None = None
_launcher_pid = 0                    # a forked child inherits the executor but not its thread
_launcher_lock = threading.Lock()


def _spawn(argv: list[str], **popen_kwargs) -> subprocess.Popen:
    global _launcher, _launcher_pid
    with _launcher_lock:
        if _launcher is None or _launcher_pid != os.getpid():
            _launcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hwkit-jail-launcher")
            _launcher_pid = os.getpid()
    return _launcher.submit(subprocess.Popen, argv, **popen_kwargs).result()


def _max_message_bytes(limits: SandboxLimits) -> int:
    return max(64 * MB, 16 * limits.output_bytes)


class _HwkitKernelClient(AsyncKernelClient):
    """jupyter_client's wait_for_ready ends by draining iopub until 0.2 s pass without a message: 0.2 s of idle
    wall time per kernel, a quarter of a small notebook's grading. Ready here means: a kernel_info reply on
    shell, then that request's `idle` status on iopub (which proves the iopub subscription is live, the
    reason for the drain). A request whose iopub status was missed (slow subscriber) is simply repeated."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        sent: set[str] = set()
        while True:
            sent.add(self.kernel_info())
            reply = await self._next_msg(self.shell_channel, min(1.0, deadline - time.monotonic()))
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                if await self._saw_idle(sent, min(time.monotonic() + 0.2, deadline)):
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    @staticmethod
    async def _next_msg(channel, wait: float):
        try:
            return await channel.get_msg(timeout=max(0.0, wait))
        except Empty:
            return None

    async def _saw_idle(self, requests: set[str], until: float) -> bool:
        while (left := until - time.monotonic()) > 0:
            msg = await self._next_msg(self.iopub_channel, left)
            if msg is None:
                return False
            if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                    and msg["parent_header"].get("msg_id") in requests):
                return True
        return False


class _HwkitKernelManager(AsyncKernelManager):
    """What both runners add to jupyter_client: a message size cap, and a note of the kernel's state just
    before jupyter_client shuts it down or kills it (a kernel stopped that way did not die by signal)."""

    def __init__(self, *, max_message_bytes: int, before_shutdown, **kwargs):
        super().__init__(**kwargs)
        self.client_factory = _HwkitKernelClient
        self._hwkit_max_message = max_message_bytes
        self._hwkit_before_shutdown = before_shutdown

    def client(self, **kwargs):
        # The kernel holds the session key and can send anything. zmq cuts off (for good) a peer that sends a
        # message over this size: that notebook loses its outputs, the grader keeps its memory. The in-kernel
        # cap (_KERNEL_STARTUP) keeps ordinary floods far below it.
        kc = super().client(**kwargs)
        kc.context.setsockopt(zmq.MAXMSGSIZE, self._hwkit_max_message)
        return kc

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        self._hwkit_before_shutdown()
        await super()._async_shutdown_kernel(now=now, restart=restart)

    async def _async_kill_kernel(self, restart: bool = False) -> None:
        self._hwkit_before_shutdown()
        await super()._async_kill_kernel(restart=restart)

    shutdown_kernel = _async_shutdown_kernel
    kill_kernel = _async_kill_kernel


class _JailKernelManager(_HwkitKernelManager):
    """A KernelManager whose kernel is launched inside the jail over ipc sockets."""

    def __init__(self, *, launch, inner_argv: list[str], **kwargs):
        super().__init__(before_shutdown=launch.before_shutdown, **kwargs)
        self._hwkit_launch = launch
        self._hwkit_inner_argv = inner_argv

    @property
    def kernel_spec(self):
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(argv=list(self._hwkit_inner_argv), display_name="Python 3 (hwkit jail)",
                                           language="python", interrupt_mode="message", metadata={})
        return self._kernel_spec

    def format_kernel_cmd(self, extra_arguments=None):
        return list(self._hwkit_inner_argv) + list(extra_arguments or [])

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        self._hwkit_launch.after_connection_file(Path(self.connection_file))

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        # nbclient's cwd (resources.metadata.path) and env are the host's: the jail sets its own.
        prov = self.provisioner
        proc = self._hwkit_launch.start(kernel_cmd)
        prov.process, prov.pid, prov.pgid, prov.cwd = proc, proc.pid, proc.pid, self._hwkit_launch.host_cwd
        self._reconcile_connection_info(prov.connection_info)


# ----------------------------------------------------------------------------------------------------------
# Reading what the student left

def read_file_nofollow(base: Path, relpath: str, max_bytes: int) -> bytes | None:
    """Read at most max_bytes of base/relpath if it is a regular file reached without any symlink."""
    parts = [p for p in relpath.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or relpath.startswith("/"):
        return None
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    directory = getattr(os, "O_DIRECTORY", 0)
    if not nofollow or not hasattr(os, "O_PATH"):
        return _read_file_portable(base, parts, max_bytes)
    try:
        fd = os.open(base, os.O_PATH | directory | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | directory | nofollow | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], os.O_RDONLY | nofollow | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(leaf).st_mode):
            return None
        return _read_upto(leaf, max_bytes)
    except OSError:
        return None
    finally:
        os.close(leaf)


def _read_upto(fd: int, max_bytes: int) -> bytes:
    chunks, left = [], max_bytes
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_file_portable(base: Path, parts: list[str], max_bytes: int) -> bytes | None:
    """Windows/macOS fallback for LocalKernel (the student's own files on their own machine)."""
    path = base
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(max_bytes)
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------------------
# The jail

def _copy_seed(src: Path, dst: Path, uid: int) -> None:
    """Copy the grader-prepared workdir into the jail's work dir, owned by the slot uid; symlinks skipped."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            target.mkdir(mode=0o755)
            os.chown(target, uid, uid)
            _copy_seed(Path(entry.path), target, uid)
        elif entry.is_file(follow_symlinks=False):
            shutil.copyfile(entry.path, target, follow_symlinks=False)
            os.chown(target, uid, uid)
            os.chmod(target, 0o644)


class Jail:
    """One throwaway jail for one notebook. Context manager; see the module docstring."""

    def __init__(self, workdir: Path, limits: SandboxLimits, *, slot: int = 0, data_dir: Path | None = None):
        self.workdir = Path(workdir)
        self.limits = limits
        self.slot = slot
        self.uid = _slot_uid(slot)
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.report = RunReport()
        self.km: KernelManager | None = None
        self.paths: _RunPaths | None = None
        self._cgroups: _Cgroups | None = None
        self._proc: subprocess.Popen | None = None
        self._slot_lock_fd: int | None = None
        self._mounted = False
        self._started_at: float | None = None
        self._tearing_down = False
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._kill_reason: str | None = None      # "cpu" | "wall", set by the watchdog
        self._exit_status: int | None = None      # bwrap's status when the kernel died on its own
        self._exit_recorded = False
        self._stderr_fd: int | None = None
        self._stderr_head = b""

    # -- setup ---------------------------------------------------------------------------------------------

    def __enter__(self) -> "Jail":
        ok, why = sandbox_available()
        if not ok:
            raise SandboxUnavailable(why)
        if not self.workdir.is_dir():
            raise FileNotFoundError(f"workdir {self.workdir} is not a directory")
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise FileNotFoundError(f"data_dir {self.data_dir} is not a directory")
        try:
            self._setup()
        except BaseException:
            self._teardown(raise_leak=False)
            raise
        return self

    def _setup(self) -> None:
        base = _run_base()
        _ensure_private_dir(base, 0o711)
        _reap_stale_runs_once()
        self._lock_slot(base)
        self._kill_slot_leftovers()
        token = secrets.token_hex(4)
        root = base / f"{self.slot}-{os.getpid()}-{token}"
        root.mkdir(mode=0o711)
        self.paths = _RunPaths(root=root, ipc=root / "k", work=root / "w", etc=root / "e")
        self.paths.ipc.mkdir(mode=0o700)
        os.chown(self.paths.ipc, self.uid, self.uid)
        self.paths.work.mkdir(mode=0o700)
        _mount_tmpfs(self.paths.work, self.limits.disk_mb * MB, self.uid)
        self._mounted = True
        _copy_seed(self.workdir, self.paths.work, self.uid)
        if self.data_dir is not None:
            (self.paths.work / "data").mkdir(exist_ok=True)
        _write_etc(self.paths, self.uid, self.limits)
        layout = _cgroup_layout()
        if layout is not None:
            self._cgroups = _Cgroups(layout, f"{CGROUP_PREFIX}{os.getpid()}-{self.slot}-{token}")
            self._cgroups.apply(self.limits, extra_pids=4)
        inner = [sys.executable, "-m", "ipykernel_launcher", "-f", str(self.paths.connection_file)]
        self.km = _JailKernelManager(launch=_Launch(self), inner_argv=inner,
                                     max_message_bytes=_max_message_bytes(self.limits), transport="ipc",
                                     connection_file=str(self.paths.connection_file),
                                     ip=str(self.paths.ipc / "s"))

    def _lock_slot(self, base: Path) -> None:
        """Take the asked-for slot, or the first free one if another jail (another grader or a
        self-check on this machine) holds it: each slot is one uid, and a uid is never shared."""
        import fcntl
        for slot in [self.slot] + [s for s in range(MAX_SLOTS - 1) if s != self.slot]:
            fd = os.open(base / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.slot, self.uid = slot, _slot_uid(slot)
            self._slot_lock_fd = fd
            return
        raise RuntimeError(f"all {MAX_SLOTS} sandbox slots are in use by other jails")

    def _kill_slot_leftovers(self) -> None:
        """A previous run of this slot that leaked (SandboxLeak) must not share the uid with this one."""
        if not _uid_is_unused(self.uid):
            raise SandboxUnavailable(f"uid {self.uid} (sandbox slot {self.slot}) belongs to a user in /etc/passwd; "
                                     f"hwkit needs uids {SLOT_UID_BASE}.. to be unused")
        for pid in pids_of_uid(self.uid):
            _kill_pid(pid, self.uid)

    # -- launch (called from the KernelManager) ------------------------------------------------------------

    def _launch_argv(self, kernel_cmd: list[str], seccomp_fd: int | None) -> list[str]:
        assert self.paths is not None
        procs = self._cgroups.procs_files() if self._cgroups else []
        memory_cgroup = self._cgroups is not None and "memory" in self._cgroups.by_ctrl
        return (_cgroup_join_argv(procs) + _rlimit_argv(self.limits, memory_cgroup)
                + _bwrap_argv(self.paths, self.limits, self.uid, self.data_dir, seccomp_fd) + kernel_cmd)

    def _start(self, kernel_cmd: list[str]) -> subprocess.Popen:
        assert self.paths is not None
        if self._proc is not None:
            raise RuntimeError("a Jail runs one kernel; make a new Jail for another (restarts are not supported)")
        program = seccomp_program()
        seccomp_fd = None
        if program is not None:
            seccomp_fd = os.memfd_create("hwkit-seccomp", 0)
            os.write(seccomp_fd, program)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
        # ipykernel echoes everything written to fd 1/2 to the original fds: stdout goes nowhere, stderr to a
        # pipe the watchdog drains (keeping the head), so neither a file limit nor a full pipe can stall it.
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(stderr_read, False)
        self._stderr_fd = stderr_read
        try:
            self._proc = self._spawn_launch(self._launch_argv(kernel_cmd, seccomp_fd), stderr_write, seccomp_fd)
        finally:
            os.close(stderr_write)
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        self._started_at = time.monotonic()
        self._watcher = threading.Thread(target=self._watch, name=f"hwkit-jail-watch-{self.slot}", daemon=True)
        self._watcher.start()
        return self._proc

    def _spawn_launch(self, argv: list[str], stderr_write: int, seccomp_fd: int | None):
        """Run the launch chain (a Popen-like handle). hwkit.warm.WarmJail runs the same argv in a fork of a
        warm zygote instead of exec'ing it."""
        assert self.paths is not None
        return _spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_write,
                      cwd=str(self.paths.root), env={"PATH": _HOST_PATH}, start_new_session=True,
                      pass_fds=[seccomp_fd] if seccomp_fd is not None else [])

    # -- watchdog: the cgroup CPU budget (RLIMIT_CPU is per process) and a wall-clock backstop -------------

    def _watch(self) -> None:
        backstop = self.limits.notebook_timeout + self.limits.cell_timeout + 30
        while not self._watch_stop.is_set():
            self._drain_stderr(wait=_WATCH_INTERVAL)
            if self._proc is None or self._proc.poll() is not None:
                self._drain_stderr(wait=0)
                return
            used = self._cgroups.cpu_seconds() if self._cgroups else None
            if used is not None and used > self.limits.cpu_seconds + 1:
                self._kill_reason = "cpu"
            elif time.monotonic() - (self._started_at or 0) > backstop:
                self._kill_reason = "wall"
            if self._kill_reason:
                self._kill_everything()
                return

    def _drain_stderr(self, wait: float) -> None:
        fd = self._stderr_fd
        if fd is None:
            time.sleep(wait)
            return
        if wait:
            select.select([fd], [], [], wait)
        try:
            while chunk := os.read(fd, 65536):
                room = _STDERR_KEPT - len(self._stderr_head)
                if room > 0:
                    self._stderr_head += chunk[:room]
        except (BlockingIOError, OSError):
            pass

    def _kill_everything(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.kill()      # bwrap dies -> --die-with-parent kills the namespace's init -> all of it
            except OSError:
                pass
        if self._cgroups is not None:
            self._cgroups.kill_all()
        for pid in pids_of_uid(self.uid):
            _kill_pid(pid, self.uid)

    # -- reading results -----------------------------------------------------------------------------------

    def read_file(self, relpath: str, max_bytes: int) -> bytes | None:
        if self.paths is None or not self._mounted:
            return None
        return read_file_nofollow(self.paths.work, relpath, max_bytes)

    def kernel_stderr(self, max_bytes: int = 4000) -> str:
        """The start of what the launch chain wrote to stderr: bwrap's and the kernel's start-up errors."""
        if self._watcher is None or not self._watcher.is_alive():
            self._drain_stderr(wait=0)
        return self._stderr_head[:max_bytes].decode("utf-8", "replace")

    # -- teardown ------------------------------------------------------------------------------------------

    def __exit__(self, *exc) -> None:
        self._teardown(raise_leak=True)

    def _teardown(self, raise_leak: bool) -> None:
        if self._tearing_down:
            return
        self._tearing_down = True
        self._watch_stop.set()
        problems: list[str] = []
        try:
            self._record_exit_before_kill()
            self._kill_everything()
            problems += self._wait_all_gone()
            self._close_km()
            self._fill_report()
        finally:
            problems += self._remove_run()
            if self._watcher is not None:
                self._watcher.join(timeout=2)
            if self._stderr_fd is not None:
                self._drain_stderr(wait=0)
                os.close(self._stderr_fd)
                self._stderr_fd = None
            self._unlock_slot()
        if problems and raise_leak:
            raise SandboxLeak("; ".join(problems))

    def _record_exit_before_kill(self) -> None:
        """Remember whether the kernel had already died on its own (first call wins)."""
        if self._proc is not None and not self._exit_recorded:
            self._exit_recorded = True
            self._exit_status = self._proc.poll()

    def _wait_all_gone(self) -> list[str]:
        deadline = time.monotonic() + _TEARDOWN_DEADLINE
        while True:
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            alive = set(pids_of_uid(self.uid))
            if self._cgroups is not None:
                alive |= {p for p in self._cgroups.pids() if _proc_state(p) not in ("Z", "X", "")}
            proc_alive = self._proc is not None and self._proc.poll() is None
            if not alive and not proc_alive:
                return []
            if time.monotonic() > deadline:
                return [f"processes of sandbox slot {self.slot} survived teardown: {sorted(alive)}"
                        + (" and bwrap itself" if proc_alive else "")]
            self._kill_everything()
            time.sleep(0.02)

    def _close_km(self) -> None:
        km = self.km
        if km is None:
            return
        prov = km.provisioner
        if prov is not None and self._proc is not None and self._proc.poll() is not None:
            prov.process = None          # already reaped by us: let jupyter_client forget it
        try:
            run_sync(km._async_cleanup_resources)()
        except Exception:
            pass

    def _fill_report(self) -> None:
        r = self.report
        status = self._exit_status
        if status is not None:
            if status < 0:
                r.killed_signal = -status
            elif status > 128 and status - 128 < signal.NSIG:
                r.killed_signal = status - 128       # bwrap reports "killed by signal N" as 128 + N
        if self._cgroups is not None:
            r.peak_memory_mb = self._cgroups.peak_memory_mb()
            r.cpu_seconds = self._cgroups.cpu_seconds()
            r.memory_limit_hit = self._cgroups.oom_killed()
        if self._kill_reason == "cpu":
            r.cpu_limit_hit, r.killed_signal = True, signal.SIGKILL
        elif self._kill_reason == "wall":
            r.wall_limit_hit, r.killed_signal = True, signal.SIGKILL
        if r.killed_signal == signal.SIGXCPU:
            r.cpu_limit_hit = True
        elif r.killed_signal == signal.SIGKILL and r.cpu_seconds is not None \
                and r.cpu_seconds >= self.limits.cpu_seconds and not r.memory_limit_hit:
            r.cpu_limit_hit = True           # the RLIMIT_CPU hard limit (SIGXCPU was caught or ignored)

    def _remove_run(self) -> list[str]:
        problems = []
        if self._cgroups is not None:
            left = self._cgroups.remove()
            if left:
                problems.append(f"could not remove cgroups {', '.join(map(str, left))}")
            self._cgroups = None
        if self.paths is not None:
            if self._mounted:
                if not _umount(self.paths.work) and not _umount(self.paths.work, lazy=True):
                    problems.append(f"could not unmount {self.paths.work}")
                self._mounted = False
            try:
                shutil.rmtree(self.paths.root)       # fd-based on Linux: never follows symlinks
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append(f"could not remove {self.paths.root}: {e}")
        return problems

    def _unlock_slot(self) -> None:
        if self._slot_lock_fd is not None:
            os.close(self._slot_lock_fd)
            self._slot_lock_fd = None


class _Launch:
    """What the KernelManager needs from its Jail (kept narrow: the km never touches the Jail's state)."""

    def __init__(self, jail: Jail):
        self._jail = jail

    @property
    def host_cwd(self) -> str:
        return str(self._jail.paths.root)

    def after_connection_file(self, path: Path) -> None:
        os.chown(path, self._jail.uid, self._jail.uid)
        os.chmod(path, 0o400)

    def start(self, kernel_cmd: list[str]) -> subprocess.Popen:
        return self._jail._start(kernel_cmd)

    def before_shutdown(self) -> None:
        self._jail._record_exit_before_kill()


def _reap_stale_runs() -> None:
    """Remove run dirs and cgroups left by hwkit processes that died without tearing down (SIGKILL)."""
    base = _run_base()
    if base.is_dir():
        for entry in os.scandir(base):
            parts = entry.name.split("-")
            if entry.is_dir(follow_symlinks=False) and len(parts) == 3 and not _pid_alive(int(parts[1] or 0)):
                work = Path(entry.path) / "w"
                if os.path.ismount(work):
                    _umount(work, lazy=True)
                shutil.rmtree(entry.path, ignore_errors=True)
    layout = _cgroup_layout()
    if layout is None:
        return
    for parent in set(layout.parents.values()):
        for entry in parent.glob(f"{CGROUP_PREFIX}*"):
            parts = entry.name[len(CGROUP_PREFIX):].split("-")
            if len(parts) == 3 and parts[0].isdigit() and not _pid_alive(int(parts[0])):
                for pid in (int(x) for x in (entry / "cgroup.procs").read_text().split()):
                    _kill_pid(pid)
                try:
                    entry.rmdir()
                except OSError:
                    pass


@functools.lru_cache(maxsize=1)
def _reap_stale_runs_once() -> None:
    try:
        _reap_stale_runs()
    except (OSError, ValueError):
        pass


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------------------
# No isolation: a student's own machine, or an explicit --no-sandbox

class _LocalKernelManager(_HwkitKernelManager):
    def __init__(self, *, cwd: str, env: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self._hwkit_cwd, self._hwkit_env = cwd, env

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["cwd"] = self._hwkit_cwd
        kw["env"] = {**kw.get("env", os.environ), **self._hwkit_env}
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL     # ipykernel echoes fd output there
        await super()._async_launch_kernel(kernel_cmd, **kw)


class LocalKernel:
    """Same interface as Jail, no isolation: for a student's own machine (self-check) and --no-sandbox."""

    def __init__(self, workdir: Path, limits: SandboxLimits, *, slot: int = 0, data_dir: Path | None = None):
        self.workdir = Path(workdir).resolve()
        self.limits = limits
        self.slot = slot
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.report = RunReport()
        self.km: KernelManager | None = None
        self._made_data_link: Path | None = None
        self._exit_status: int | None = None
        self._exit_recorded = False

    def __enter__(self) -> "LocalKernel":
        self._link_data()
        threads = str(self.limits.kernel_threads())
        env = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "PYTHONDONTWRITEBYTECODE": "1"}
        self.km = _LocalKernelManager(cwd=str(self.workdir), env=env, kernel_name="python3",
                                      max_message_bytes=_max_message_bytes(self.limits),
                                      before_shutdown=self._record_exit)
        self.km.kernel_spec.interrupt_mode = "message"
        return self

    def _record_exit(self) -> None:
        proc = getattr(self.km.provisioner, "process", None) if self.km is not None else None
        if proc is not None and not self._exit_recorded:
            self._exit_recorded = True
            self._exit_status = proc.poll()

    def _link_data(self) -> None:
        if self.data_dir is None:
            return
        link = self.workdir / "data"
        if link.exists() or link.is_symlink():
            return
        try:
            os.symlink(self.data_dir, link, target_is_directory=True)
        except OSError:
            shutil.copytree(self.data_dir, link)
        self._made_data_link = link

    def read_file(self, relpath: str, max_bytes: int) -> bytes | None:
        return read_file_nofollow(self.workdir, relpath, max_bytes)

    def __exit__(self, *exc) -> None:
        km = self.km
        if km is not None:
            self._record_exit()
            if self._exit_status is not None and self._exit_status < 0:
                self.report.killed_signal = -self._exit_status
            proc = getattr(km.provisioner, "process", None)
            try:
                if km.has_kernel:
                    run_sync(km._async_shutdown_kernel)(now=True)
                else:
                    run_sync(km._async_cleanup_resources)()
            except Exception:
                if proc is not None and proc.poll() is None:
                    proc.kill()
        link = self._made_data_link
        if link is not None:
            if link.is_symlink():
                link.unlink()
            else:
                shutil.rmtree(link, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# Output caps: nbclient keeps every output message in memory, so capping must happen as messages arrive.

def _output_size(out) -> int:
    kind = out.get("output_type")
    if kind == "stream":
        return len(out.get("text", ""))
    if kind == "error":
        return sum(len(x) for x in out.get("traceback", [])) + len(out.get("evalue", ""))
    data = out.get("data", {})
    return sum(len(v) if isinstance(v, str) else len(str(v)) for v in data.values())


def _truncation_note(dropped: int) -> dict:
    from nbformat.v4 import new_output
    return new_output("stream", name="stderr", text=f"\n[hwkit: output truncated, {dropped} more characters dropped]\n")


class OutputCapMixin:
    """Mix in before NotebookClient (class C(OutputCapMixin, NotebookClient)) and set max_output_bytes:
    each cell keeps about that many characters of output; the rest is dropped as it arrives, and one
    note at the end of the cell says how much. `output_truncated` holds the indexes of cells that were cut."""

    max_output_bytes: int = 1_000_000

    def output(self, outs, msg, display_id, cell_index):
        if any(mime.startswith("application/x-hwkit") for mime in msg.get("content", {}).get("data", {})):
            return super().output(outs, msg, display_id, cell_index)  # probe replies: bounded on their own
        budget = self.__dict__.setdefault("_hwkit_output_used", {})
        truncated = self.__dict__.setdefault("output_truncated", {})
        used = budget.get(cell_index, 0)
        if used >= self.max_output_bytes:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                truncated[cell_index] = truncated.get(cell_index, 0) + _msg_size(msg)
                return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None:
            size = _output_size(out)
            room = self.max_output_bytes - used
            if size > room and out.get("output_type") == "stream":
                truncated[cell_index] = truncated.get(cell_index, 0) + size - max(room, 0)
                out["text"] = out["text"][:max(room, 0)]
                size = max(room, 0)
            budget[cell_index] = used + size
        return out

    def add_truncation_notes(self, cell, cell_index: int) -> None:
        dropped = self.__dict__.get("output_truncated", {}).get(cell_index)
        if dropped:
            cell.outputs.append(_truncation_note(dropped))


def _msg_size(msg) -> int:
    content = msg.get("content", {})
    if "text" in content:
        return len(content["text"])
    return sum(len(v) if isinstance(v, str) else 0 for v in content.get("data", {}).values())


# ----------------------------------------------------------------------------------------------------------
# Availability and diagnosis

def _quick_jail_argv(uid: int, command: list[str]) -> list[str]:
    return (["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
             "--new-session", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
             "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"] + _top_level_binds()
            + ["--proc", "/proc", "--dev", "/dev", "--",
               "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
               "--no-new-privs", "--"] + command)


def _run_quick(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, env={"PATH": _HOST_PATH})
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


@functools.lru_cache(maxsize=1)
def sandbox_available() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, "the sandbox needs Linux (bubblewrap); on this system notebooks can only run unsandboxed"
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux"), ("prlimit", "util-linux")):
        if shutil.which(tool, path=_HOST_PATH) is None:
            return False, f"'{tool}' not found; install the '{package}' package (apt-get install {package})"
    if os.geteuid() != 0:
        return False, ("the sandbox must be run as root (it switches each kernel to its own uid, mounts a size-"
                       "limited work dir and makes cgroups); run the grader as root, e.g. with sudo")
    uid = _probe_uid()
    ok, out = _run_quick(_quick_jail_argv(uid, ["/usr/bin/id", "-u"]))
    if not ok or out.splitlines()[-1:] != [str(uid)]:
        return False, f"bubblewrap could not start a jail here: {out[-300:] or 'no output'}"
    return True, "ok"


def doctor() -> list[tuple[str, bool, str]]:
    """Every check the sandbox depends on, with plain-words advice for those that fail."""
    checks: list[tuple[str, bool, str]] = []
    linux = sys.platform.startswith("linux")
    checks.append(("linux", linux, "Linux" if linux else "the sandbox needs Linux; other systems run notebooks "
                                                         "unsandboxed (self-check) or not at all (grading)"))
    if not linux:
        return checks
    bwrap = shutil.which("bwrap", path=_HOST_PATH)
    checks.append(("bwrap present", bwrap is not None,
                   bwrap or "install bubblewrap: apt-get install bubblewrap (dnf install bubblewrap)"))
    tools = [t for t in ("setpriv", "prlimit") if shutil.which(t, path=_HOST_PATH) is None]
    checks.append(("setpriv and prlimit", not tools,
                   "found" if not tools else f"missing {', '.join(tools)}: apt-get install util-linux"))
    root = os.geteuid() == 0
    checks.append(("running as root", root, "yes" if root else
                   "run grading as root (sudo): uid switching, tmpfs mounts and cgroups need it"))
    if bwrap is None or tools or not root:
        return checks
    ok, out = _run_quick(_quick_jail_argv(_probe_uid(), ["/bin/true"]))
    checks.append(("namespaces (pid, net, ipc, uts, mount)", ok, "bwrap starts a jail" if ok else
                   f"bwrap failed: {out[-300:]}; in a container, allow namespaces (e.g. docker --privileged or a "
                   "seccomp profile that permits unshare/mount)"))
    free = [u for u in (_slot_uid(0), _slot_uid(1), _probe_uid()) if not _uid_is_unused(u)]
    ok, out = _run_quick(_quick_jail_argv(_probe_uid(), ["/usr/bin/id", "-u"]))
    switched = ok and out.splitlines()[-1:] == [str(_probe_uid())] and not free
    checks.append(("uid switching", switched, f"kernels run as uid {SLOT_UID_BASE}+slot" if switched else
                   (f"uids {free} are taken by users in /etc/passwd; hwkit needs uids {SLOT_UID_BASE}.. unused"
                    if free else f"setpriv inside bwrap failed: {out[-300:]}")))
    checks.append(_check_cgroups())
    checks.append(_check_tmpfs())
    prog = seccomp_program()
    checks.append(("seccomp filter", prog is not None, f"{len(prog) // 8} BPF instructions" if prog else
                   f"no syscall table for {platform.machine()}: new user namespaces are not blocked in the jail"))
    checks.append(_check_test_kernel())
    return checks


def _check_cgroups() -> tuple[str, bool, str]:
    layout = _cgroup_layout()
    if layout is None:
        return ("cgroups writable", False, "no writable memory cgroup: limits fall back to rlimits only (no OOM "
                "accounting, no CPU budget across processes). Run as root on a host with cgroups mounted; with "
                "cgroups v2 under systemd, run the grader in a delegated scope (systemd-run --scope -p Delegate=yes)")
    try:
        probe = _Cgroups(layout, f"{CGROUP_PREFIX}{os.getpid()}-doctor-{secrets.token_hex(3)}")
        probe.apply(SandboxLimits(), extra_pids=4)
        left = probe.remove()
    except OSError as e:
        return ("cgroups writable", False, f"creating a cgroup failed ({e}); limits fall back to rlimits only")
    ctrls = ", ".join(sorted(layout.parents))
    return ("cgroups writable", not left, f"cgroups v{layout.version}: {ctrls}" if not left else
            f"could not remove test cgroups {left}")


def _check_tmpfs() -> tuple[str, bool, str]:
    try:
        base = _run_base()
        _ensure_private_dir(base, 0o711)
        path = base / f"doctor-{secrets.token_hex(3)}"
        path.mkdir()
        try:
            _mount_tmpfs(path, MB, os.geteuid())
            _umount(path)
        finally:
            path.rmdir()
    except OSError as e:
        return ("size-limited work dir (tmpfs)", False, f"mounting a tmpfs failed ({e}); run as root")
    return ("size-limited work dir (tmpfs)", True, f"tmpfs mounts work under {base}")


async def run_code(km: KernelManager, code: str, timeout: float = 30) -> tuple[dict, list[dict]]:
    """Start km's kernel, run code, return (execute_reply, iopub messages). For doctor and the bench."""
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    messages: list[dict] = []
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(code, timeout=timeout, output_hook=messages.append)
    finally:
        client.stop_channels()
    return reply, messages


def _check_test_kernel() -> tuple[str, bool, str]:
    name = "test kernel answers 1+1 inside the jail"
    try:
        with tempfile.TemporaryDirectory() as tmp, Jail(Path(tmp), SandboxLimits(), slot=MAX_SLOTS - 1) as jail:
            start = time.monotonic()
            reply, messages = run_sync(run_code)(jail.km, "1+1")
            took = time.monotonic() - start
    except Exception as e:  # a diagnosis reports every failure in words
        return name, False, f"{type(e).__name__}: {e}"
    results = [m["content"]["data"].get("text/plain") for m in messages if m["msg_type"] == "execute_result"]
    ok = reply["content"]["status"] == "ok" and results == ["2"]
    return name, ok, f"kernel ready and answered in {took:.2f} s" if ok else f"unexpected reply: {results or reply}"
