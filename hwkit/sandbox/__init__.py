"""Sandboxed Jupyter kernels: one throwaway jail per notebook (bubblewrap, rlimits, cgroups, seccomp).

Read in this order:
    limits      what bounds each resource and each writable path; RunReport, the errors
    spec        LaunchSpec: the jail as data; the cold argv it renders to; the mount view
    visible     what of the host's Python a kernel sees (roots, hwkit_kernel, tombstones over grader packages)
    jail        Jail: setup as named steps, launch, watchdog, teardown that verifies
    ipc         the IPC directory: endpoint checks and the seal
    kernelmgr   jupyter_client classes: checked, bounded connections; fast ready; jailed launch
    host        slots and uids, run dirs and their tmpfs, stale-run reaping
    cgroups     procs     seccomp     linux (libc calls, shared with the warm zygote)     files (no-follow reads)
    local       LocalKernel: the same interface, no isolation (a student's laptop, --no-sandbox)
    available   sandbox_available(): can a jail start here at all
    doctor      doctor(): every check the sandbox depends on, with advice
The warm path (kernels forked from a zygote that has imported torch) is hwkit.warm.

Names are imported lazily, so that the warm zygote can import spec and linux without jupyter_client."""
from __future__ import annotations

from hwkit.lazy import lazy_exports

_EXPORTS = {
    "limits": ("MB", "RunReport", "SandboxLeak", "SandboxUnavailable", "channel_limits"),
    "spec": ("JAIL_HOME", "KERNEL_ROOT", "LaunchSpec", "Mount", "jail_spec", "render_argv"),
    "visible": ("grader_entries", "python_roots"),
    "host": ("CGROUP_PREFIX", "MAX_SLOTS", "SLOT_UID_BASE", "reap_stale_runs", "run_base", "scratch_dir"),
    "cgroups": ("cgroup_layout",),
    "procs": ("pid_alive", "pids_of_uid"),
    "seccomp": ("seccomp_program",),
    "files": ("read_file_nofollow",),
    "ipc": ("EndpointRefused",),
    "jail": ("Jail",),
    "local": ("LocalKernel",),
    "available": ("sandbox_available",),
    "doctor": ("doctor", "run_code"),
}

__getattr__ = lazy_exports("hwkit.sandbox", globals(), _EXPORTS)
