"""Processes of a run: found by uid through /proc, killed through pidfds, and the one long-lived thread every
launch is forked from (bwrap's --die-with-parent and the zygote's PDEATHSIG follow the thread that forked)."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import threading


def kill_pid(pid: int, uid: int | None = None) -> None:
    """SIGKILL pid via a pidfd; with uid given, only if the process (pinned by the pidfd) has that uid."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if uid is not None and uid not in proc_uids(pid):
            return
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def proc_uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and filesystem uid of pid (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return tuple(int(x) for x in line.split()[1:])
    except OSError:
        pass
    return ()


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def pids_of_uid(uid: int, include_zombies: bool = False) -> list[int]:
    """Host pids whose real, effective, saved or fs uid is uid."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and uid in proc_uids(int(name)):
            if include_zombies or proc_state(int(name)) not in ("Z", "X", ""):
                found.append(int(name))
    return found


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_launcher: concurrent.futures.ThreadPoolExecutor | None = None
_launcher_pid = 0                    # a forked child inherits the executor but not its thread
_launcher_lock = threading.Lock()


def spawn(argv: list[str], **popen_kwargs) -> subprocess.Popen:
    """subprocess.Popen(argv, ...) from this process's long-lived launcher thread."""
    global _launcher, _launcher_pid
    with _launcher_lock:
        if _launcher is None or _launcher_pid != os.getpid():
            _launcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hwkit-jail-launcher")
            _launcher_pid = os.getpid()
    return _launcher.submit(subprocess.Popen, argv, **popen_kwargs).result()
