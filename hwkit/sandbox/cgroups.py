"""cgroups of a run: a uniquely named child of this process's own cgroup, per controller (v1) or one (v2).
Memory (OOM kill at the limit, peak), pids, CPU (quota and usage). Only cgroups we created are touched."""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hwkit.sandbox.limits import MB
from hwkit.sandbox.procs import kill_pid

if TYPE_CHECKING:
    from hwkit.course import SandboxLimits


@dataclass
class CgroupLayout:
    version: int                          # 1 or 2
    parents: dict[str, Path]              # controller -> our own cgroup dir for it (v2: one dir for all)


def _cgroup_mounts() -> list[tuple[str, str, set[str], str]]:
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
def cgroup_layout() -> CgroupLayout | None:
    """Where our cgroups live, or None when no usable memory controller is writable here."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f if line.strip()]
        mounts = _cgroup_mounts()
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
        return CgroupLayout(1, v1)
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
    return CgroupLayout(2, {c: own for c in ("memory", "pids", "cpu", "cpuacct")})


class Cgroups:
    """The cgroups of one run. Every method tolerates a missing controller."""

    def __init__(self, layout: CgroupLayout, name: str):
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

    @property
    def has_memory(self) -> bool:
        return "memory" in self.by_ctrl

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
        stats = keyed(self._read("cpu", "cpu.stat"))
        return stats["usage_usec"] / 1e6 if "usage_usec" in stats else None

    def peak_memory_mb(self) -> float | None:
        fname = "memory.max_usage_in_bytes" if self.layout.version == 1 else "memory.peak"
        raw = self._read("memory", fname)
        return int(raw) / MB if raw else None

    def oom_killed(self) -> bool:
        if self.layout.version == 1:
            stats = keyed(self._read("memory", "memory.oom_control"))
            if "oom_kill" in stats:
                return stats["oom_kill"] > 0
            raw = self._read("memory", "memory.failcnt")
            return bool(raw) and int(raw) > 0
        return keyed(self._read("memory", "memory.events")).get("oom_kill", 0) > 0

    def kill_all(self) -> None:
        if self.layout.version == 2 and self.dirs:
            try:
                (self.dirs[0] / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for pid in self.pids():
            kill_pid(pid)

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


def keyed(text: str | None) -> dict[str, int]:
    """'name value' lines (memory.events, cpu.stat, ...) as a dict of ints."""
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out
