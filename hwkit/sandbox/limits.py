"""What bounds each resource of a jailed kernel, and the records and errors the sandbox reports.

    resource                       bound                                              set by
    memory                         limits.memory_mb (OOM kill)                        memory cgroup
    one allocation                 max(2 x memory_mb, memory_mb + 2 GiB) of address   RLIMIT_AS
    CPU time                       limits.cpu_seconds, all processes together         RLIMIT_CPU + cgroup watchdog
    processes and threads          limits.processes                                   RLIMIT_NPROC + pids cgroup
    open files                     limits.open_files per process                      RLIMIT_NOFILE
    one file                       limits.file_size_mb                                RLIMIT_FSIZE
    wall time                      cells: the executor; the run: a watchdog backstop  hwkit.sandbox.jail
    output                         limits.output_bytes per cell, in the kernel        HWKIT_OUTPUT_LIMIT (hwkit_kernel)
                                   and again as the grader keeps it                   hwkit.outputs
    grader memory per kernel       channel_limits(): MAXMSGSIZE x RCVHWM per socket   zmq options of the grader

Every path a kernel can write is a tmpfs the grader mounts on the host, bounded in bytes and in inodes:

    jail path          host path     bytes                  inodes          after start
    /home/student      <run>/w       limits.disk_mb         WORK_INODES     the kernel's
    /tmp               <run>/t       limits.tmp_mb          TMP_INODES      the kernel's (mode 1777)
    /dev/shm           <run>/s       limits.tmp_mb          TMP_INODES      the kernel's (mode 1777)
    <run>/k (the IPC   <run>/k       IPC_DIR_BYTES          IPC_DIR_INODES  sealed: root's, read-only to the
      directory)                                                            kernel, before any student code
Nothing else in the jail is writable by the kernel's uid (the rest is read-only binds, or root-owned)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwkit.course import SandboxLimits

MB = 1024 * 1024
WORK_INODES = 16384              # files and directories in the work dir
TMP_INODES = 16384               # in /tmp, and again in /dev/shm
IPC_DIR_BYTES = 64 * 1024        # the connection file (~300 bytes) and five socket inodes need one page
IPC_DIR_INODES = 16
PROBE_REPLY_BYTES = 8_000_000    # the largest probe reply the kernel sends (hwkit_kernel.runtime)


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


def rlimits(limits: SandboxLimits, memory_cgroup: bool) -> list[tuple[str, int, int]]:
    """(prlimit name, soft, hard) for the kernel's processes."""
    # With a memory cgroup doing the real accounting, RLIMIT_AS is only a backstop for absurd single
    # allocations: torch reserves far more address space than it touches (and breaks below ~1.5 GiB).
    address_space = (max(2 * limits.memory_mb, limits.memory_mb + 2048) if memory_cgroup
                     else max(limits.memory_mb, 1536)) * MB
    cpu, files = limits.cpu_seconds, limits.file_size_mb * MB
    return [("as", address_space, address_space), ("cpu", cpu, cpu + 1),
            ("nproc", limits.processes, limits.processes), ("nofile", limits.open_files, limits.open_files),
            ("fsize", files, files), ("core", 0, 0)]


def channel_limits(limits: SandboxLimits) -> dict[str, tuple[int, int]]:
    """Per channel of a kernel, (ZMQ_MAXMSGSIZE, ZMQ_RCVHWM) of the grader's socket.

    The kernel holds the session key and can send anything. A frame over MAXMSGSIZE makes zmq drop that
    connection for good (the notebook loses the rest of that channel; the grader keeps its memory); RCVHWM is
    how many messages zmq queues while the grader is not reading (past it, the kernel's side queues in its own
    memory cgroup, then drops). So a kernel can make the grader hold about MAXMSGSIZE x RCVHWM per socket:
    with the default output_bytes (1 MB), 16 MB x 8 on iopub + 16 MB x 4 on shell + 1 MB x 8 on each of two
    control sockets (the manager's and the client's) and on stdin = 216 MB at most, and usually nothing (the
    grader reads messages as they come).
    Gap: libzmq counts a multipart message once against RCVHWM, whatever its number of frames, so one message
    of many frames is not bounded by this (tests/test_jail_ipc.py, xfail).

    iopub carries cell outputs, which the kernel caps at output_bytes characters per cell (at most 6 bytes
    each in JSON), with room for what that cap misses; shell carries replies, probe replies the largest
    (PROBE_REPLY_BYTES of JSON and arrays); control and stdin carry small replies. The heartbeat channel is
    never connected."""
    big = max(2 * PROBE_REPLY_BYTES, 8 * limits.output_bytes)
    return {"iopub": (big, 8), "shell": (big, 4), "control": (MB, 8), "stdin": (MB, 8)}
