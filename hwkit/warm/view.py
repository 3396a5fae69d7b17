"""The jail's mount view as the warm fork builds it (in I, pid 1 of the new namespaces, before pivot_root):
for each Mount of the LaunchSpec, what bwrap does for the same option. A mount kind without a handler here
makes the launch fail (fail closed)."""
from __future__ import annotations

import os

from hwkit.sandbox.linux import (MS_BIND, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY,
                                 MS_REC, MS_RELATIME, MS_REMOUNT, mount)
from hwkit.sandbox.spec import Mount

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")


def _statvfs_flags(path: str) -> int:
    st = os.statvfs(path)
    keep = 0
    for st_flag, ms_flag in ((8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME), (4096, MS_RELATIME)):
        if st.f_flag & st_flag:
            keep |= ms_flag
    return keep


def _submounts(path: str) -> list[str]:
    """Mount points at or below path (after a recursive bind), from our mountinfo."""
    found = []
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == path or point.startswith(prefix):
                found.append(point)
    return sorted(set(found))


def _make_target(dst: str, is_dir: bool) -> None:
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    if is_dir:
        os.makedirs(dst, mode=0o755, exist_ok=True)
    elif not os.path.lexists(dst):
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444))


def bind(src: str, dst: str, readonly: bool, devices: bool = False) -> None:
    _make_target(dst, os.path.isdir(src))
    mount(src, dst, None, MS_BIND | MS_REC)
    for point in _submounts(dst):            # like bwrap: every mount of the bound tree gets the flags
        flags = MS_REMOUNT | MS_BIND | MS_NOSUID | _statvfs_flags(point)
        flags |= 0 if devices else MS_NODEV
        flags |= MS_RDONLY if readonly else 0
        mount(None, point, None, flags)


def _bind_mount(m: Mount, dst: str) -> None:
    if not os.path.exists(m.src):
        if m.kind.endswith("-try"):
            return
        raise FileNotFoundError(m.src)
    bind(m.src, dst, readonly=m.kind.startswith("ro-"))


def _symlink(m: Mount, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    os.symlink(m.src, dst)


def _dir(m: Mount, dst: str) -> None:
    if not os.path.isdir(dst):
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        os.mkdir(dst)
        os.chmod(dst, m.mode)


def _proc(m: Mount, dst: str) -> None:
    _make_target(dst, True)
    mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for sub in PROC_READ_ONLY:
        if os.path.exists(f"{dst}/{sub}"):
            bind(f"{dst}/{sub}", f"{dst}/{sub}", readonly=True)


def _dev(m: Mount, dst: str) -> None:
    _make_target(dst, True)
    mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for node in DEV_NODES:
        bind(f"/dev/{node}", f"{dst}/{node}", readonly=False, devices=True)
    for name, target in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd"), ("core", "/proc/kcore")):
        os.symlink(target, f"{dst}/{name}")
    os.mkdir(f"{dst}/shm", 0o755)
    os.mkdir(f"{dst}/pts", 0o755)
    mount("devpts", f"{dst}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", f"{dst}/ptmx")


HANDLERS = {"ro-bind": _bind_mount, "ro-bind-try": _bind_mount, "bind": _bind_mount, "symlink": _symlink,
            "dir": _dir, "proc": _proc, "dev": _dev}


def build_root(mounts: tuple[Mount, ...], newroot: str) -> None:
    """An empty root (a tmpfs, like bwrap's) at newroot, then every mount in order."""
    mount("tmpfs", newroot, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for m in mounts:
        handler = HANDLERS.get(m.kind)
        if handler is None:
            raise ValueError(f"mount kind {m.kind} is not supported by the warm path")
        handler(m, newroot + m.dst)
