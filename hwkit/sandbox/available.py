"""Can this machine start a jail at all? `sandbox_available()` (cached; every Jail and `hwkit grade` ask it):
the tools, root, and a bare bubblewrap jail that switches to a slot's uid."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from hwkit.sandbox.host import HOST_PATH, probe_uid
from hwkit.sandbox.spec import mount_args, setpriv_args, system_mounts


def quick_jail_argv(uid: int, command: list[str]) -> list[str]:
    """A bare jail (namespaces, system binds, the uid switch) for the availability probes."""
    return (["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
             "--new-session", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
             "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"] + mount_args(system_mounts())
            + ["--proc", "/proc", "--dev", "/dev", "--"] + setpriv_args(uid) + command)


def run_quick(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, env={"PATH": HOST_PATH})
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


@functools.lru_cache(maxsize=1)
def sandbox_available() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, "the sandbox needs Linux (bubblewrap); on this system notebooks can only run unsandboxed"
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux"), ("prlimit", "util-linux")):
        if shutil.which(tool, path=HOST_PATH) is None:
            return False, f"'{tool}' not found; install the '{package}' package (apt-get install {package})"
    if os.geteuid() != 0:
        return False, ("the sandbox must be run as root (it switches each kernel to its own uid, mounts size-"
                       "limited tmpfs and makes cgroups); run the grader as root, e.g. with sudo")
    uid = probe_uid()
    ok, out = run_quick(quick_jail_argv(uid, ["/usr/bin/id", "-u"]))
    if not ok or out.splitlines()[-1:] != [str(uid)]:
        return False, f"bubblewrap could not start a jail here: {out[-300:] or 'no output'}"
    return True, "ok"
