"""`hwkit sandbox doctor`: every check the sandbox depends on, with advice in plain words for those that fail
(hwkit.sandbox.available answers only whether a jail can start)."""
from __future__ import annotations

import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from jupyter_core.utils import run_sync

from hwkit.sandbox.available import quick_jail_argv, run_quick
from hwkit.sandbox.cgroups import Cgroups, cgroup_layout
from hwkit.sandbox.host import (CGROUP_PREFIX, HOST_PATH, MAX_SLOTS, SLOT_UID_BASE, ensure_private_dir, probe_uid,
                                run_base, slot_uid, uid_is_unused)
from hwkit.sandbox.jail import Jail
from hwkit.sandbox.limits import MB
from hwkit.sandbox.linux import mount_tmpfs, umount
from hwkit.sandbox.seccomp import seccomp_program


def doctor() -> list[tuple[str, bool, str]]:
    """Every check the sandbox depends on, with plain-words advice for those that fail."""
    checks: list[tuple[str, bool, str]] = []
    linux = sys.platform.startswith("linux")
    checks.append(("linux", linux, "Linux" if linux else "the sandbox needs Linux; other systems run notebooks "
                                                         "unsandboxed (self-check) or not at all (grading)"))
    if not linux:
        return checks
    bwrap = shutil.which("bwrap", path=HOST_PATH)
    checks.append(("bwrap present", bwrap is not None,
                   bwrap or "install bubblewrap: apt-get install bubblewrap (dnf install bubblewrap)"))
    tools = [t for t in ("setpriv", "prlimit") if shutil.which(t, path=HOST_PATH) is None]
    checks.append(("setpriv and prlimit", not tools,
                   "found" if not tools else f"missing {', '.join(tools)}: apt-get install util-linux"))
    root = os.geteuid() == 0
    checks.append(("running as root", root, "yes" if root else
                   "run grading as root (sudo): uid switching, tmpfs mounts and cgroups need it"))
    if bwrap is None or tools or not root:
        return checks
    ok, out = run_quick(quick_jail_argv(probe_uid(), ["/bin/true"]))
    checks.append(("namespaces (pid, net, ipc, uts, mount)", ok, "bwrap starts a jail" if ok else
                   f"bwrap failed: {out[-300:]}; in a container, allow namespaces (e.g. docker --privileged or a "
                   "seccomp profile that permits unshare/mount)"))
    taken = [u for u in (slot_uid(0), slot_uid(1), probe_uid()) if not uid_is_unused(u)]
    ok, out = run_quick(quick_jail_argv(probe_uid(), ["/usr/bin/id", "-u"]))
    switched = ok and out.splitlines()[-1:] == [str(probe_uid())] and not taken
    checks.append(("uid switching", switched, f"kernels run as uid {SLOT_UID_BASE}+slot" if switched else
                   (f"uids {taken} are taken by users in /etc/passwd; hwkit needs uids {SLOT_UID_BASE}.. unused"
                    if taken else f"setpriv inside bwrap failed: {out[-300:]}")))
    checks.append(_check_cgroups())
    checks.append(_check_tmpfs())
    prog = seccomp_program()
    checks.append(("seccomp filter", prog is not None, f"{len(prog) // 8} BPF instructions" if prog else
                   f"no syscall table for {platform.machine()}: new user namespaces are not blocked in the jail"))
    checks += _check_test_kernel()
    return checks


def _check_cgroups() -> tuple[str, bool, str]:
    from hwkit.course import SandboxLimits

    layout = cgroup_layout()
    if layout is None:
        return ("cgroups writable", False, "no writable memory cgroup: limits fall back to rlimits only (no OOM "
                "accounting, no CPU budget across processes). Run as root on a host with cgroups mounted; with "
                "cgroups v2 under systemd, run the grader in a delegated scope (systemd-run --scope -p Delegate=yes)")
    try:
        probe = Cgroups(layout, f"{CGROUP_PREFIX}{os.getpid()}-doctor-{secrets.token_hex(3)}")
        probe.apply(SandboxLimits(), extra_pids=4)
        left = probe.remove()
    except OSError as e:
        return ("cgroups writable", False, f"creating a cgroup failed ({e}); limits fall back to rlimits only")
    ctrls = ", ".join(sorted(layout.parents))
    return ("cgroups writable", not left, f"cgroups v{layout.version}: {ctrls}" if not left else
            f"could not remove test cgroups {left}")


def _check_tmpfs() -> tuple[str, bool, str]:
    try:
        base = run_base()
        ensure_private_dir(base, 0o711)
        path = base / f"doctor-{secrets.token_hex(3)}"
        path.mkdir()
        try:
            mount_tmpfs(path, MB, 16, os.geteuid())
            umount(path)
        finally:
            path.rmdir()
    except OSError as e:
        return ("size-limited tmpfs (work dir, /tmp, IPC dir)", False, f"mounting a tmpfs failed ({e}); run as root")
    return ("size-limited tmpfs (work dir, /tmp, IPC dir)", True, f"tmpfs mounts work under {base}")


async def run_code(km, code: str, timeout: float = 30) -> tuple[dict, list[dict]]:
    """Start km's kernel, run code, return (execute_reply, iopub messages). For doctor and the bench."""
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    messages: list[dict] = []
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(code, timeout=timeout, output_hook=messages.append)
    finally:
        client.stop_channels()
    return reply, messages


HIDDEN_CHECK = """
import importlib
hidden = []
for name in ('hwkit', 'solutions', 'templates'):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        hidden.append(name)
import hwkit_kernel
print(1 + 1, ' '.join(hidden))
"""


def _check_test_kernel() -> list[tuple[str, bool, str]]:
    from hwkit.course import SandboxLimits

    name = "test kernel answers 1+1 inside the jail"
    hidden_name = "grader and bank packages hidden from the kernel"
    try:
        with tempfile.TemporaryDirectory() as tmp, Jail(Path(tmp), SandboxLimits(), slot=MAX_SLOTS - 1) as jail:
            start = time.monotonic()
            reply, messages = run_sync(run_code)(jail.km, HIDDEN_CHECK)
            took = time.monotonic() - start
    except Exception as e:  # a diagnosis reports every failure in words
        return [(name, False, f"{type(e).__name__}: {e}")]
    words = "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream").split()
    ok = reply["content"]["status"] == "ok" and words[:1] == ["2"]
    hidden = ok and words[1:] == ["hwkit", "solutions", "templates"]
    return [(name, ok, f"kernel ready and answered in {took:.2f} s" if ok else f"unexpected reply: {words or reply}"),
            (hidden_name, hidden, "hwkit, solutions and templates cannot be imported; hwkit_kernel can" if hidden
             else f"importable in the jail: {sorted({'hwkit', 'solutions', 'templates'} - set(words[1:]))}")]
