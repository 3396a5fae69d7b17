"""The Linux calls the jail needs that the os module lacks, through libc: mount, umount2, prctl, capset,
unshare, sethostname, pivot_root, and the seccomp filter install. Shared by the grader (host-side tmpfs mounts)
and the warm zygote's fork (which builds the jail itself). Every wrapper raises OSError on failure."""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import socket
import struct
from pathlib import Path

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_SLAVE, MS_RELATIME = 16384, 1 << 19, 1 << 21
# umount2(2) flags
MNT_DETACH, UMOUNT_NOFOLLOW = 2, 8
# unshare(2) / clone(2) namespace flags, by the name bwrap gives them (--unshare-NAME)
NAMESPACES = {"mount": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
              "pid": 0x20000000, "net": 0x40000000}
CLONE_NEWUSER = 0x10000000
# prctl(2) options
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_CAPBSET_DROP = 1, 8, 24
PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 22, 38, 47, 4
SECCOMP_MODE_FILTER = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


@functools.lru_cache(maxsize=1)
def libc():
    lib = ctypes.CDLL(None, use_errno=True)
    lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return lib


def check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _enc(value: str | os.PathLike | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(src: str | None, dst: str | os.PathLike, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(libc().mount(_enc(src), _enc(dst), _enc(fstype), flags, _enc(data)), f"mount {src} on {dst}")


def mount_tmpfs(path: Path, size_bytes: int, inodes: int, uid: int, mode: int = 0o700) -> None:
    """A tmpfs bounded in bytes and in inodes, its root owned by uid (nosuid, nodev)."""
    opts = f"size={size_bytes},nr_inodes={inodes},mode={mode:o},uid={uid},gid={uid}"
    mount("hwkit", path, "tmpfs", MS_NOSUID | MS_NODEV, opts)


def umount(path: Path | str, lazy: bool = False) -> bool:
    """Unmount path (never following a symlink there); True if it worked."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if lazy else 0)
    return libc().umount2(os.fsencode(path), flags) == 0


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    check(libc().prctl(option, arg2, arg3, 0, 0), f"prctl({option})")


def unshare(flags: int) -> None:
    check(libc().unshare(flags), "unshare")


def sethostname(name: str) -> None:
    raw = name.encode()
    check(libc().sethostname(raw, len(raw)), "sethostname")


def capset_zero() -> None:
    """Empty effective, permitted and inheritable capability sets of this thread."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)        # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    check(libc().capset(header, data), "capset")


def drop_bounding_set() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        prctl(PR_CAPBSET_DROP, cap)


def install_seccomp(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (needs no_new_privs or CAP_SYS_ADMIN)."""
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def pivot_root(newroot: str) -> None:
    """Make newroot the root of this mount namespace and detach the old one."""
    nr = _PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(f"no pivot_root syscall number for {platform.machine()}")
    os.chdir(newroot)
    check(libc().syscall(nr, b".", b"."), "pivot_root")
    check(libc().umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def loopback_up() -> None:
    import fcntl
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, ifr))[1]          # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1 | 0x40))  # SIOCSIFFLAGS: UP, RUNNING
