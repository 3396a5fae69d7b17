"""What a jail takes from the host: a slot (one uid per slot, locked), a run directory with its tmpfs mounts,
and the clean-up of runs whose grader died without tearing down (SIGKILL)."""
from __future__ import annotations

import fcntl
import functools
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hwkit.sandbox.cgroups import cgroup_layout
from hwkit.sandbox.limits import IPC_DIR_BYTES, IPC_DIR_INODES, MB, TMP_INODES, WORK_INODES, SandboxUnavailable
from hwkit.sandbox.linux import umount
from hwkit.sandbox.procs import kill_pid, pid_alive

if TYPE_CHECKING:
    from hwkit.course import SandboxLimits

SLOT_UID_BASE = 61000                # slot N runs as uid/gid SLOT_UID_BASE + N (and the quick probes as
                                     # SLOT_UID_BASE + MAX_SLOTS); these ids must be unused here
MAX_SLOTS = 1000
CGROUP_PREFIX = "hwkit-"
RUN_PREFIX = "hwk"
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def probe_uid() -> int:
    """The uid of the quick availability probes: no slot's, so that a jail clearing its own slot's uid
    (before start, at teardown) cannot kill a probe another lane or grader is running at that moment."""
    return SLOT_UID_BASE + MAX_SLOTS


def slot_uid(slot: int) -> int:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot must be in 0..{MAX_SLOTS - 1}, got {slot}")
    return SLOT_UID_BASE + slot


def uid_is_unused(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


def run_base() -> Path:
    """Short (socket paths are limited to ~107 bytes), root-owned directory holding the run dirs."""
    tmp = tempfile.gettempdir()
    if len(tmp) > 40:
        tmp = "/tmp"
    return Path(tmp) / f"{RUN_PREFIX}{os.geteuid()}"


def ensure_private_dir(path: Path, mode: int) -> None:
    """Create path (or accept it) only if it is a real directory owned by us: never trust a planted one."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SandboxUnavailable(f"{path} exists but is not a directory owned by uid {os.geteuid()}; remove it")
    os.chmod(path, mode)


def lock_slot(base: Path, wanted: int) -> tuple[int, int]:
    """Take slot `wanted`, or the first free one if another jail (another grader or a self-check on this
    machine) holds it: each slot is one uid, and a uid is never shared. Returns (slot, lock fd)."""
    for slot in [wanted] + [s for s in range(MAX_SLOTS - 1) if s != wanted]:
        fd = os.open(base / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return slot, fd
    raise RuntimeError(f"all {MAX_SLOTS} sandbox slots are in use by other jails")


@dataclass(frozen=True)
class RunPaths:
    """The directories of one run, under a root-owned 0711 run dir <base>/<slot>-<pid>-<token>."""
    root: Path

    ipc = property(lambda self: self.root / "k")      # connection file + sockets: a tmpfs, bound at the same path
    work = property(lambda self: self.root / "w")     # tmpfs, bound at JAIL_HOME (readable after the kernel died)
    tmp = property(lambda self: self.root / "t")      # tmpfs, bound at /tmp
    shm = property(lambda self: self.root / "s")      # tmpfs, bound at /dev/shm
    etc = property(lambda self: self.root / "e")      # synthetic passwd/group/hosts, masks (root's, read-only)
    newroot = property(lambda self: self.root / "r")  # the warm fork's scratch root before pivot_root
    connection_file = property(lambda self: self.ipc / "c.json")
    socket_prefix = property(lambda self: self.ipc / "s")   # jupyter's ipc "ip": sockets are s-<port>

    def tmpfs_mounts(self, limits: SandboxLimits, uid: int) -> list[tuple[Path, int, int, int, int]]:
        """(mount point, bytes, inodes, mode, owner) of every tmpfs of the run: all a kernel can write."""
        return [(self.work, limits.disk_mb * MB, WORK_INODES, 0o700, uid),
                (self.ipc, IPC_DIR_BYTES, IPC_DIR_INODES, 0o700, uid),
                (self.tmp, limits.tmp_mb * MB, TMP_INODES, 0o1777, 0),
                (self.shm, limits.tmp_mb * MB, TMP_INODES, 0o1777, 0)]


def copy_seed(src: Path, dst: Path, uid: int) -> None:
    """Copy the grader-prepared workdir into the jail's work dir, owned by the slot uid; symlinks skipped."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            target.mkdir(mode=0o755)
            os.chown(target, uid, uid)
            copy_seed(Path(entry.path), target, uid)
        elif entry.is_file(follow_symlinks=False):
            shutil.copyfile(entry.path, target, follow_symlinks=False)
            os.chown(target, uid, uid)
            os.chmod(target, 0o644)


SCRATCH_PREFIX = "hwk-"     # a grading lane's scratch folder in the temp dir: hwk-<grader pid>-<random>


def scratch_dir() -> Path:
    """A fresh scratch folder for one submission, named by this process so that the folders of a grader that
    died without cleaning up (SIGKILL, Ctrl-C mid-batch) are reaped by the next run."""
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))


def _reap_scratch() -> None:
    for entry in os.scandir(tempfile.gettempdir()):
        parts = entry.name.split("-")
        if (entry.name.startswith(SCRATCH_PREFIX) and len(parts) == 3 and parts[1].isdigit()
                and entry.is_dir(follow_symlinks=False) and not pid_alive(int(parts[1]))):
            shutil.rmtree(entry.path, ignore_errors=True)


def reap_stale_runs() -> None:
    """Remove run dirs, cgroups and scratch folders left by hwkit processes that died without tearing down."""
    _reap_scratch()
    base = run_base()
    if base.is_dir():
        for entry in os.scandir(base):
            parts = entry.name.split("-")
            if entry.is_dir(follow_symlinks=False) and len(parts) == 3 and not pid_alive(int(parts[1] or 0)):
                paths = RunPaths(Path(entry.path))
                for point in (paths.work, paths.ipc, paths.tmp, paths.shm):
                    if os.path.ismount(point):
                        umount(point, lazy=True)
                shutil.rmtree(entry.path, ignore_errors=True)
    layout = cgroup_layout()
    if layout is None:
        return
    for parent in set(layout.parents.values()):
        for entry in parent.glob(f"{CGROUP_PREFIX}*"):
            parts = entry.name[len(CGROUP_PREFIX):].split("-")
            if len(parts) == 3 and parts[0].isdigit() and not pid_alive(int(parts[0])):
                try:
                    for pid in (int(x) for x in (entry / "cgroup.procs").read_text().split()):
                        kill_pid(pid)
                    entry.rmdir()
                except OSError:  # gone since the listing (another grader on this host reaped it) or still busy
                    pass


@functools.lru_cache(maxsize=1)
def reap_stale_runs_once() -> None:
    try:
        reap_stale_runs()
    except (OSError, ValueError):
        pass
