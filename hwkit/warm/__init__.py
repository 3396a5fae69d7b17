"""Warm-start sandboxed kernels: each student's kernel is forked from a zygote that has already imported
torch (and the rest of a kernel's start-up), instead of a fresh interpreter paying ~1 CPU-second for it.

    zygote      the fork side: the zygote process, and its fork that carries out a LaunchSpec (C, I, K)
    view        the mount view the fork builds, option for option as bwrap does
    client      the grader side: Zygote (one per worker), WarmJail (a Jail with a different spawn step)

Same isolation as a cold Jail: the same LaunchSpec, executed instead of rendered to argv; a spec the fork does
not fully understand is refused. Differences from cold, all measured in tests/test_warm.py: PID 1 in the jail
is a fork of the zygote; pages preloaded by the zygote are not charged to the kernel's memory cgroup;
kernels share the zygote's hash seed (random generators are reseeded).

Names are imported lazily: the zygote imports only the fork side."""
from __future__ import annotations

from hwkit.lazy import lazy_exports

_EXPORTS = {
    "client": ("WarmJail", "Zygote", "ZygoteError", "ForkedKernel", "process_zygote"),
    "zygote": ("PRELOAD", "warm_up", "zygote_main"),
}

__getattr__ = lazy_exports("hwkit.warm", globals(), _EXPORTS)
