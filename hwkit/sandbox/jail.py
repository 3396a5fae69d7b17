"""Jail: one throwaway sandboxed kernel for one notebook (a context manager).

Setup, in order: claim a slot (its uid, locked; leftovers of a leaked run of that uid killed), make the run
dir, mount its tmpfs (work dir, IPC dir, /tmp, /dev/shm: all a kernel can write, each bounded), seed the work
dir, write the jail's /etc files and tombstones, make the cgroups, and a KernelManager that launches through
this jail. The launch builds a LaunchSpec (hwkit.sandbox.spec) and runs it: cold, as the argv it renders;
warm (hwkit.warm.WarmJail), in a fork of a zygote. When the kernel is ready, its IPC directory is sealed.
A watchdog enforces the cgroup CPU budget and a wall-clock backstop. Teardown kills the cgroup and the uid's
processes, verifies that none survived (SandboxLeak otherwise: fail closed), and removes cgroups, mounts and
the run dir."""
from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_core.utils import run_sync

from hwkit.sandbox.cgroups import Cgroups, cgroup_layout
from hwkit.sandbox.available import sandbox_available
from hwkit.sandbox.files import read_file_nofollow
from hwkit.sandbox.host import (CGROUP_PREFIX, HOST_PATH, SLOT_UID_BASE, RunPaths, copy_seed, ensure_private_dir,
                                lock_slot, reap_stale_runs_once, run_base, slot_uid, uid_is_unused)
from hwkit.sandbox.ipc import IpcDir
from hwkit.sandbox.kernelmgr import Connections, JailKernelManager
from hwkit.sandbox.limits import RunReport, SandboxLeak, SandboxUnavailable, channel_limits
from hwkit.sandbox.linux import mount_tmpfs, umount
from hwkit.sandbox.procs import kill_pid, pids_of_uid, proc_state, spawn
from hwkit.sandbox.seccomp import seccomp_memfd
from hwkit.sandbox.spec import LaunchSpec, jail_spec, kernel_command, render_argv, write_jail_files
from hwkit.sandbox.visible import host_view

if TYPE_CHECKING:
    from hwkit.course import SandboxLimits

TEARDOWN_DEADLINE = 5.0             # seconds to wait for killed processes to vanish
WATCH_INTERVAL = 0.25
STDERR_KEPT = 16384                 # bytes of the kernel's stderr kept for diagnosis
EXTRA_PIDS = 4                      # the launch chain's own processes, beyond limits.processes


class Jail:
    """One throwaway jail for one notebook. Context manager; see the module docstring."""

    def __init__(self, workdir: Path, limits: SandboxLimits, *, slot: int = 0, data_dir: Path | None = None):
        self.workdir = Path(workdir)
        self.limits = limits
        self.slot = slot
        self.uid = slot_uid(slot)
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.report = RunReport()
        self.km: JailKernelManager | None = None
        self.paths: RunPaths | None = None
        self.ipc: IpcDir | None = None
        self.spec: LaunchSpec | None = None
        self.process = None                       # the launch's Popen (cold) or a handle on the zygote's fork
        self._cgroups: Cgroups | None = None
        self._slot_lock_fd: int | None = None
        self._mounted: list[Path] = []
        self._started_at: float | None = None
        self._tearing_down = False
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._kill_reason: str | None = None      # "cpu" | "wall", set by the watchdog
        self._exit_status: int | None = None      # the launch's status when the kernel died on its own
        self._exit_recorded = False
        self._stderr_fd: int | None = None
        self._stderr_lock = threading.Lock()   # the watchdog drains while the lane may tear down (see _drain_stderr)
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
        base = run_base()
        ensure_private_dir(base, 0o711)
        reap_stale_runs_once()
        self._claim_slot(base)
        token = secrets.token_hex(4)
        self._make_run_dir(base / f"{self.slot}-{os.getpid()}-{token}")
        self._mount_tmpfs()
        copy_seed(self.workdir, self.paths.work, self.uid)
        if self.data_dir is not None:
            (self.paths.work / "data").mkdir(exist_ok=True)
        write_jail_files(self.paths, self.uid)
        self._make_cgroups(f"{CGROUP_PREFIX}{os.getpid()}-{self.slot}-{token}")
        self.ipc = IpcDir(self.paths.ipc, self.uid)
        connections = Connections(channel_limits(self.limits), check=self.ipc.check, on_ready=self.seal_ipc)
        self.km = JailKernelManager(launch=_Launch(self), connections=connections, transport="ipc",
                                    inner_argv=kernel_command(sys.executable, self.paths.connection_file),
                                    connection_file=str(self.paths.connection_file),
                                    ip=str(self.paths.socket_prefix))

    def _claim_slot(self, base: Path) -> None:
        """Lock a slot (hwkit.sandbox.host.lock_slot); a previous run of its uid that leaked (SandboxLeak) must
        not share the uid with this one."""
        self.slot, self._slot_lock_fd = lock_slot(base, self.slot)
        self.uid = slot_uid(self.slot)
        if not uid_is_unused(self.uid):
            raise SandboxUnavailable(f"uid {self.uid} (sandbox slot {self.slot}) belongs to a user in /etc/passwd; "
                                     f"hwkit needs uids {SLOT_UID_BASE}.. to be unused")
        for pid in pids_of_uid(self.uid):
            kill_pid(pid, self.uid)

    def _make_run_dir(self, root: Path) -> None:
        root.mkdir(mode=0o711)
        self.paths = RunPaths(root)

    def _mount_tmpfs(self) -> None:
        for point, size, inodes, mode, owner in self.paths.tmpfs_mounts(self.limits, self.uid):
            point.mkdir(mode=0o700)
            mount_tmpfs(point, size, inodes, owner, mode)
            self._mounted.append(point)

    def _make_cgroups(self, name: str) -> None:
        layout = cgroup_layout()
        if layout is not None:
            self._cgroups = Cgroups(layout, name)
            self._cgroups.apply(self.limits, extra_pids=EXTRA_PIDS)

    # -- the IPC directory ---------------------------------------------------------------------------------

    def seal_ipc(self) -> None:
        """Make the kernel's IPC directory the grader's (hwkit.sandbox.ipc): called once the kernel answered
        kernel_info, before any student code (the kernel client does it on ready); idempotent."""
        if self.ipc is not None and self.process is not None:
            self.ipc.seal(self.paths.connection_file)

    # -- launch (called from the KernelManager) ------------------------------------------------------------

    def _start(self, kernel_cmd: list[str]):
        if self.process is not None:
            raise RuntimeError("a Jail runs one kernel; make a new Jail for another (restarts are not supported)")
        seccomp_fd = seccomp_memfd()
        cgroups = self._cgroups
        self.spec = jail_spec(self.paths, self.limits, uid=self.uid, data_dir=self.data_dir,
                              cgroup_procs=cgroups.procs_files() if cgroups else [],
                              memory_cgroup=cgroups is not None and cgroups.has_memory,
                              seccomp=seccomp_fd is not None, kernel_cmd=kernel_cmd, view=host_view())
        # ipykernel echoes everything written to fd 1/2 to the original fds: stdout goes nowhere, stderr to a
        # pipe the watchdog drains (keeping the head), so neither a file limit nor a full pipe can stall it.
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(stderr_read, False)
        self._stderr_fd = stderr_read
        try:
            self.process = self.spawn_launch(self.spec, stderr_write, seccomp_fd)
        finally:
            os.close(stderr_write)
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        self._started_at = time.monotonic()
        self._watcher = threading.Thread(target=self._watch, name=f"hwkit-jail-watch-{self.slot}", daemon=True)
        self._watcher.start()
        return self.process

    def spawn_launch(self, spec: LaunchSpec, stderr_write: int, seccomp_fd: int | None):
        """Run the launch (returns a Popen-like handle): here, exec the argv the spec renders to.
        hwkit.warm.WarmJail executes the same spec in a fork of a warm zygote instead."""
        return spawn(render_argv(spec, seccomp_fd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=stderr_write, cwd=str(self.paths.root), env={"PATH": HOST_PATH}, start_new_session=True,
                     pass_fds=[seccomp_fd] if seccomp_fd is not None else [])

    # -- watchdog: the cgroup CPU budget (RLIMIT_CPU is per process) and a wall-clock backstop -------------

    def _watch(self) -> None:
        backstop = self.limits.notebook_timeout + self.limits.cell_timeout + 30
        while not self._watch_stop.is_set():
            self._drain_stderr(wait=WATCH_INTERVAL)
            if self.process is None or self.process.poll() is not None:
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
        """Read what the stderr pipe holds, after waiting up to `wait` seconds for it. Under the lock that its
        closing takes: a read from a descriptor closed meanwhile could be from another lane's socket or pipe
        that was given the same number (lanes are threads of one process)."""
        if self._stderr_fd is None:
            time.sleep(wait)
            return
        with self._stderr_lock:
            fd = self._stderr_fd
            if fd is None:
                return
            if wait:
                select.select([fd], [], [], wait)
            try:
                while chunk := os.read(fd, 65536):
                    room = STDERR_KEPT - len(self._stderr_head)
                    if room > 0:
                        self._stderr_head += chunk[:room]
            except (BlockingIOError, OSError):
                pass

    def _close_stderr(self) -> None:
        self._drain_stderr(wait=0)
        with self._stderr_lock:
            if self._stderr_fd is not None:
                os.close(self._stderr_fd)
                self._stderr_fd = None

    def _kill_everything(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.kill()     # the launch dies -> --die-with-parent kills the namespace's init -> all of it
            except OSError:
                pass
        if self._cgroups is not None:
            self._cgroups.kill_all()
        for pid in pids_of_uid(self.uid):
            kill_pid(pid, self.uid)

    # -- reading results -----------------------------------------------------------------------------------

    def read_file(self, relpath: str, max_bytes: int) -> bytes | None:
        if self.paths is None or self.paths.work not in self._mounted:
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
            self.record_exit()
            self._kill_everything()
            problems += self._wait_all_gone()
            self._close_km()
            self._fill_report()
        finally:
            problems += self._remove_run()
            if self._watcher is not None:
                self._watcher.join(timeout=2)
            self._close_stderr()
            if self._slot_lock_fd is not None:
                os.close(self._slot_lock_fd)
                self._slot_lock_fd = None
        if problems and raise_leak:
            raise SandboxLeak("; ".join(problems))

    def record_exit(self) -> None:
        """Remember whether the kernel had already died on its own (first call wins)."""
        if self.process is not None and not self._exit_recorded:
            self._exit_recorded = True
            self._exit_status = self.process.poll()

    def _wait_all_gone(self) -> list[str]:
        deadline = time.monotonic() + TEARDOWN_DEADLINE
        while True:
            if self.process is not None:
                try:
                    self.process.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            alive = set(pids_of_uid(self.uid))
            if self._cgroups is not None:
                alive |= {p for p in self._cgroups.pids() if proc_state(p) not in ("Z", "X", "")}
            launch_alive = self.process is not None and self.process.poll() is None
            if not alive and not launch_alive:
                return []
            if time.monotonic() > deadline:
                return [f"processes of sandbox slot {self.slot} survived teardown: {sorted(alive)}"
                        + (" and the launch itself" if launch_alive else "")]
            self._kill_everything()
            time.sleep(0.02)

    def _close_km(self) -> None:
        km = self.km
        if km is None:
            return
        prov = km.provisioner
        if prov is not None and self.process is not None and self.process.poll() is not None:
            prov.process = None          # already reaped by us: let jupyter_client forget it
        try:
            run_sync(km.cleanup_resources)()
        except Exception:  # the run is torn down below whatever jupyter_client thinks
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
        for point in reversed(self._mounted):
            if not umount(point) and not umount(point, lazy=True):
                problems.append(f"could not unmount {point}")
        self._mounted = []
        if self.paths is not None:
            try:
                shutil.rmtree(self.paths.root)       # fd-based on Linux: never follows symlinks
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append(f"could not remove {self.paths.root}: {e}")
        return problems


class _Launch:
    """What the KernelManager needs from its Jail (kept narrow: the km never touches the Jail's state)."""

    def __init__(self, jail: Jail):
        self._jail = jail

    @property
    def host_cwd(self) -> str:
        return str(self._jail.paths.root)

    def after_connection_file(self, path: Path, ip: str, ports: dict[str, int]) -> None:
        # The grader wrote it a moment ago, before any process of the slot's uid exists: the kernel's to rewrite.
        os.chown(path, self._jail.uid, self._jail.uid, follow_symlinks=False)
        os.chmod(path, 0o400)
        self._jail.ipc.expect(ip, ports)

    def start(self, kernel_cmd: list[str]):
        return self._jail._start(kernel_cmd)

    def before_shutdown(self) -> None:
        self._jail.record_exit()
