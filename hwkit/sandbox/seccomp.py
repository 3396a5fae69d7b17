"""The seccomp filter of every kernel: refuse new user namespaces and a few syscalls a notebook never needs
(kernel attack surface). The cold path hands it to bwrap (--seccomp FD); the warm fork installs it itself."""
from __future__ import annotations

import errno
import os
import platform
import struct

from hwkit.sandbox.linux import CLONE_NEWUSER

_SYSCALLS = {   # arch: (AUDIT_ARCH, unshare, clone, clone3, [denied outright])
    "x86_64": (0xC000003E, 272, 56, 435, [101, 248, 249, 250, 298, 321, 323, 425, 426, 427]),
    "aarch64": (0xC00000B7, 97, 220, 435, [117, 217, 218, 219, 241, 280, 282, 425, 426, 427]),
}


def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter, or None for an architecture we have no table for.
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
    prog += [jeq(nr_unshare, 1, 0), jeq(nr_clone, 0, 3), ld(16), jset(CLONE_NEWUSER, 0, 1), ret(eperm)]
    prog += [ret(allow)]
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def seccomp_memfd() -> int | None:
    """The filter in a memfd positioned at 0 (what bwrap --seccomp and the zygote read), or None."""
    program = seccomp_program()
    if program is None:
        return None
    fd = os.memfd_create("hwkit-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
