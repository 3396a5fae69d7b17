"""The grader's side of warm kernels: the Zygote process of a worker, and WarmJail.

WarmJail is a Jail (same setup, cgroups, tmpfs mounts, IPC seal, watchdog, teardown and its fail-closed
verification, read_file, report) whose only different step is the spawn: the LaunchSpec the cold jail would
render to argv is sent to the zygote, whose fork carries it out (hwkit.warm.zygote). The handle on the kernel
is Popen-like: its pid file descriptor (from the zygote, over SCM_RIGHTS) and a status pipe on which I writes
K's exit status (Popen's convention: -N for a signal)."""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from hwkit.sandbox.host import ensure_private_dir, run_base
from hwkit.sandbox.jail import Jail
from hwkit.sandbox.procs import spawn
from hwkit.sandbox.spec import JAIL_HOME, KERNEL_MPLBACKEND, LaunchSpec
from hwkit.warm.zygote import READY, recv_with_fds, send_with_fds


class ZygoteError(RuntimeError):
    pass


class Zygote:
    """A warm parent for one grader worker. Thread-safe; start() is implicit on first use."""

    def __init__(self, start_timeout: float = 120.0):
        self.start_timeout = start_timeout
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.pid: int | None = None

    @staticmethod
    def _env() -> dict[str, str]:
        mpl = run_base() / "mpl"
        ensure_private_dir(run_base(), 0o711)
        ensure_private_dir(mpl, 0o700)
        return {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": JAIL_HOME, "MPLBACKEND": KERNEL_MPLBACKEND, "MPLCONFIGDIR": str(mpl),
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                "PYTHONPATH": str(Path(__file__).resolve().parents[2])}    # hwkit, even uninstalled

    def launch(self) -> "Zygote":
        """Start the zygote's process without waiting for its imports (start() waits)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self
            if self._sock is not None:
                self._sock.close()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                # from the sandbox's long-lived launcher thread: the zygote's PDEATHSIG follows that thread
                self._proc = spawn([sys.executable, "-m", "hwkit.warm", "zygote", str(theirs.fileno())],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/",
                                   env=self._env(), pass_fds=[theirs.fileno()], start_new_session=True)
            finally:
                theirs.close()
            self._sock, self.pid = ours, None
            return self

    def start(self) -> "Zygote":
        """Launch if needed and wait until the zygote has done its imports and is ready to fork."""
        self.launch()
        with self._lock:
            if self.pid is not None:
                return self
            self._sock.settimeout(self.start_timeout)
            try:
                msg, fds = recv_with_fds(self._sock)
            except OSError as e:
                self._kill()
                raise ZygoteError(f"the warm zygote did not start: {e}") from e
            for f in fds:
                os.close(f)
            reply = json.loads(msg or b"{}")
            if reply.get("ready") != READY:
                self._kill()
                raise ZygoteError(f"the warm zygote did not start: {reply.get('error', 'no reply')}")
            self._sock.settimeout(30)
            self.pid = reply["pid"]
            return self

    def _ask(self, payload: dict, fds: list[int]) -> tuple[dict, list[int]]:
        self.start()
        with self._lock:
            try:
                send_with_fds(self._sock, payload, fds)
                msg, got = recv_with_fds(self._sock)
            except OSError as e:
                raise ZygoteError(f"the warm zygote stopped answering: {e}") from e
            return json.loads(msg or b"{}"), got

    def spawn(self, spec: LaunchSpec, fds: list[int]) -> tuple[int, int]:
        """Fork a kernel that carries out spec; fds: its stderr, its status pipe, the seccomp filter if the
        spec asks for one. Returns (host pid of C, its pidfd)."""
        reply, got = self._ask({"spec": spec.to_wire()}, fds)
        if "pid" not in reply or len(got) != 1:
            for f in got:
                os.close(f)
            raise ZygoteError(f"the warm zygote refused: {reply.get('error', 'no reply')}")
        return reply["pid"], got[0]

    def modules(self) -> list[str]:
        """The names of the modules the zygote has imported (every kernel inherits them)."""
        reply, got = self._ask({"modules": True}, [])
        for f in got:
            os.close(f)
        return reply["modules"]

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._kill()
                self._proc = None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


_process_zygote: Zygote | None = None
_process_zygote_pid = 0


def process_zygote(wait: bool = True) -> Zygote:
    """The zygote of this process (one per grader worker), started on first use; with wait=False only
    launched, so that its imports overlap whatever the caller does next."""
    global _process_zygote, _process_zygote_pid
    if _process_zygote is None or _process_zygote_pid != os.getpid():
        import atexit

        _process_zygote, _process_zygote_pid = Zygote(), os.getpid()
        atexit.register(_process_zygote.close)
    return _process_zygote.start() if wait else _process_zygote.launch()


class ForkedKernel:
    """Popen-like handle on C (the zygote's child): poll/wait through its pidfd, the kernel's exit status
    from the status pipe I writes to (Popen's convention: -N when killed by signal N).

    The lane and its jail's watchdog use one handle at once. Its descriptors are read, signalled through and
    closed under one lock: a descriptor closed twice, or a signal sent through a closed pidfd, could reach
    another lane's kernel that was given the same number in between."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int, status_fd: int):
        self.pid, self._pidfd, self._status_fd = pid, pidfd, status_fd
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def _exited(self, timeout: float) -> bool:
        return bool(select.select([self._pidfd], [], [], timeout)[0])

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None and self._pidfd >= 0 and self._exited(0):
                try:
                    raw = os.read(self._status_fd, 64)
                    self.returncode = int(raw) if raw.strip() else -signal.SIGKILL
                except (OSError, ValueError):
                    self.returncode = -signal.SIGKILL
                self._close()
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("warm kernel", timeout)
            with self._lock:
                if self._pidfd < 0:
                    continue
                pidfd = os.dup(self._pidfd)        # waited on outside the lock, never closed by another thread
            try:
                select.select([pidfd], [], [], min(left, 0.5) if left is not None else 0.5)
            finally:
                os.close(pidfd)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self.returncode is None and self._pidfd >= 0:
                try:
                    signal.pidfd_send_signal(self._pidfd, sig)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        """Under the lock (or from __del__, when no other thread holds the handle)."""
        for fd in (self._pidfd, self._status_fd):
            if fd >= 0:
                os.close(fd)
        self._pidfd = self._status_fd = -1

    def __del__(self):
        try:
            self._close()
        except Exception:  # interpreter shutdown
            pass


class WarmJail(Jail):
    """A Jail whose kernel is forked from a warm zygote: same interface, setup, limits, teardown."""

    def __init__(self, workdir, limits, *, slot: int = 0, data_dir=None, zygote: Zygote | None = None):
        super().__init__(workdir, limits, slot=slot, data_dir=data_dir)
        self.zygote = zygote

    def spawn_launch(self, spec: LaunchSpec, stderr_write: int, seccomp_fd: int | None) -> ForkedKernel:
        zygote = self.zygote or process_zygote()
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        try:
            fds = [stderr_write, status_write] + ([seccomp_fd] if seccomp_fd is not None else [])
            pid, pidfd = zygote.spawn(spec, fds)
        except BaseException:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        os.set_blocking(status_read, False)
        return ForkedKernel(pid, pidfd, status_read)
