"""Warm-start sandboxed kernels: fork each student's kernel from a zygote that has already imported torch.

A cold Jail exec's this launch chain for every notebook:

    sh (joins the run's cgroups) -> prlimit (rlimits) -> bwrap (namespaces, mount view, env, caps, seccomp)
        -> setpriv (slot uid, no groups, no caps, no new privs) -> python -m ipykernel_launcher -f CONN

A WarmJail builds the very same argv (Jail._launch_argv) and hands it to a zygote: a long-lived Python
process, started by the grader worker as root outside any jail, with a clean environment, that has imported
torch, numpy, sympy, matplotlib and ipykernel but started no thread (OMP/MKL/OpenBLAS at 1, no zmq context,
no torch thread pool). For each submission the zygote forks, and the fork *interprets the argv* instead of
exec'ing it, step for step:

    C (fork of the zygote, host pid ns)   joins the cgroups, sets the rlimits, unshare(mount, pid, net, ipc, uts,
                                          cgroup), forks I; waits for it; dies with the zygote (PDEATHSIG)
    I (pid 1 of the new pid namespace)    mount view as bwrap builds it (tmpfs root, read-only binds, /proc,
                                          /dev, private /tmp and /dev/shm with sizes, /etc files, ipc dir,
                                          work dir at JAIL_HOME, data read-only), pivot_root, hostname, lo up;
                                          forks K, drops every capability, reaps, reports K's exit, exits
                                          (which kills everything left in the namespace); dies with C
    K (the kernel, pid 2)                 new session, env cleared to the jail env, bounding set emptied,
                                          setgroups([]), setresgid/setresuid(slot uid), caps cleared,
                                          no_new_privs, the same seccomp filter; then RNGs reseeded,
                                          torch.set_num_threads (thread pools are created here, after the
                                          fork) and ipykernel's IPKernelApp started in-process on CONN.

Unknown options in the argv make the fork fail (closed), so a change to the cold jail cannot silently be
dropped from the warm one. The grader side is Jail itself (setup, cgroups, work-dir tmpfs, watchdog,
teardown and its fail-closed verification, read_file, report); only the spawn differs, returning a
Popen-like handle on C. A handle per kernel: its pid file descriptor (from the zygote, over SCM_RIGHTS) and
a status pipe on which I writes K's exit status (Popen convention: -N for a signal).

Nothing of a student's kernel outlives its run: K, I and C are killed and verified gone by Jail's teardown,
/tmp and /dev/shm are tmpfs mounts of the run's own mount namespace, the work dir is the run's own tmpfs,
and the next kernel is a fresh fork of the zygote, which never runs student code.
"""
from __future__ import annotations

import array
import ctypes
import json
import os
import platform
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.utils.data", "sympy",
           "matplotlib", "matplotlib.pyplot", "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel",
           "ipykernel.zmqshell", "matplotlib_inline.backend_inline", "jupyter_client.session",
           # what IPKernelApp.initialize imports on its own: preloaded, a kernel is ready in a fraction of the time
           "ipykernel.debugger", "debugpy", "IPython.core.debugger", "IPython.core.completerlib",
           "IPython.extensions.storemagic", "sqlite3", "pydoc", "tornado.ioloop", "faulthandler", "mimetypes",
           "http.server", "secrets", "tomllib",
           # what the course's notebooks and probes use beyond torch: image files, tarred/pickled CIFAR batches
           "PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin", "torch.utils.flop_counter", "tarfile")

_CLONE_NEWNS, _CLONE_NEWCGROUP, _CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
_CLONE_NEWIPC, _CLONE_NEWPID, _CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 32, 1024, 2048, 4096
_MS_REC, _MS_SLAVE, _MS_RELATIME = 16384, 1 << 19, 1 << 21
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_KEEPCAPS, _PR_CAPBSET_DROP = 1, 8, 24
_PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 22, 38, 47, 4
_SECCOMP_MODE_FILTER = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_UNSHARE_FLAGS = {"--unshare-pid": _CLONE_NEWPID, "--unshare-net": _CLONE_NEWNET, "--unshare-ipc": _CLONE_NEWIPC,
                  "--unshare-uts": _CLONE_NEWUTS, "--unshare-cgroup-try": _CLONE_NEWCGROUP,
                  "--unshare-cgroup": _CLONE_NEWCGROUP}
_RLIMITS = {"as": resource.RLIMIT_AS, "cpu": resource.RLIMIT_CPU, "nproc": resource.RLIMIT_NPROC,
            "nofile": resource.RLIMIT_NOFILE, "fsize": resource.RLIMIT_FSIZE, "core": resource.RLIMIT_CORE}
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_PROC_RO = ("sys", "sysrq-trigger", "irq", "bus")
_READY = b"hwkit-zygote-ready"


# ==========================================================================================================
# Parsing the cold launch argv into a plan (runs in the zygote's fork; pure, so it is unit-testable)

class LaunchPlan:
    def __init__(self) -> None:
        self.cgroup_procs: list[str] = []
        self.rlimits: dict[int, tuple[int, int]] = {}
        self.unshare = 0
        self.unshare_try = 0
        self.hostname: str | None = None
        self.die_with_parent = False
        self.new_session = False
        self.clearenv = False
        self.env: dict[str, str] = {}
        self.seccomp = False
        self.mounts: list[tuple] = []            # ("bind", src, dst, ro, try) | ("tmpfs", dst, mode, size) | ...
        self.chdir: str | None = None
        self.uid: int | None = None
        self.gid: int | None = None
        self.clear_groups = self.no_new_privs = self.drop_inh_caps = False
        self.kernel_cmd: list[str] = []


def parse_launch_argv(argv: list[str]) -> LaunchPlan:
    """Read Jail._launch_argv's output. Anything this does not know raises ValueError (fail closed)."""
    from hwkit import sandbox as sb

    plan, i = LaunchPlan(), 0

    def until_dashdash(start: int) -> tuple[list[str], int]:
        end = argv.index("--", start)
        return argv[start:end], end + 1

    if argv[i:i + 1] == ["/bin/sh"]:
        if argv[i + 1:i + 4] != ["-c", sb._JOIN_CGROUPS, "sh"]:
            raise ValueError("unexpected cgroup-join command")
        plan.cgroup_procs, i = until_dashdash(i + 4)
    if argv[i:i + 1] == ["prlimit"]:
        opts, i = until_dashdash(i + 1)
        for opt in opts:
            name, _, value = opt.partition("=")
            soft, _, hard = value.partition(":")
            if not name.startswith("--") or name[2:] not in _RLIMITS:
                raise ValueError(f"unknown prlimit option {opt}")
            plan.rlimits[_RLIMITS[name[2:]]] = (int(soft), int(hard or soft))
    if argv[i:i + 1] != ["bwrap"]:
        raise ValueError("no bwrap in the launch argv")
    i += 1
    perms: int | None = None
    size: int | None = None
    while argv[i] != "--":
        opt = argv[i]
        if opt in _UNSHARE_FLAGS:
            if opt.endswith("-try"):
                plan.unshare_try |= _UNSHARE_FLAGS[opt]
            else:
                plan.unshare |= _UNSHARE_FLAGS[opt]
            i += 1
        elif opt in ("--die-with-parent", "--new-session", "--clearenv"):
            setattr(plan, opt[2:].replace("-", "_"), True)
            i += 1
        elif opt == "--hostname":
            plan.hostname, i = argv[i + 1], i + 2
        elif opt in ("--cap-drop", "--cap-add"):
            i += 2                         # the kernel ends with no capabilities and an empty bounding set
        elif opt == "--setenv":
            plan.env[argv[i + 1]] = argv[i + 2]
            i += 3
        elif opt == "--seccomp":
            plan.seccomp, i = True, i + 2
        elif opt == "--perms":
            perms, i = int(argv[i + 1], 8), i + 2
        elif opt == "--size":
            size, i = int(argv[i + 1]), i + 2
        elif opt in ("--ro-bind", "--ro-bind-try", "--bind", "--bind-try"):
            plan.mounts.append(("bind", argv[i + 1], argv[i + 2], opt.startswith("--ro"), opt.endswith("-try")))
            i += 3
        elif opt == "--symlink":
            plan.mounts.append(("symlink", argv[i + 1], argv[i + 2]))
            i += 3
        elif opt == "--dir":
            plan.mounts.append(("dir", argv[i + 1], 0o755 if perms is None else perms))
            perms, i = None, i + 2
        elif opt == "--tmpfs":
            plan.mounts.append(("tmpfs", argv[i + 1], 0o755 if perms is None else perms, size))
            perms, size, i = None, None, i + 2
        elif opt in ("--proc", "--dev"):
            plan.mounts.append((opt[2:], argv[i + 1]))
            i += 2
        elif opt == "--chdir":
            plan.chdir, i = argv[i + 1], i + 2
        else:
            raise ValueError(f"bwrap option {opt} is not supported by the warm path")
    i += 1
    if argv[i:i + 1] != ["/usr/bin/setpriv"]:
        raise ValueError("no setpriv in the launch argv")
    opts, i = until_dashdash(i + 1)
    for opt in opts:
        if opt.startswith("--reuid="):
            plan.uid = int(opt.split("=", 1)[1])
        elif opt.startswith("--regid="):
            plan.gid = int(opt.split("=", 1)[1])
        elif opt == "--clear-groups":
            plan.clear_groups = True
        elif opt == "--inh-caps=-all":
            plan.drop_inh_caps = True
        elif opt == "--no-new-privs":
            plan.no_new_privs = True
        else:
            raise ValueError(f"setpriv option {opt} is not supported by the warm path")
    plan.kernel_cmd = argv[i:]
    extra = plan.kernel_cmd[5:]                      # nbclient adds traitlets options (--HistoryManager...=...)
    if (plan.kernel_cmd[:3] != [sys.executable, "-m", "ipykernel_launcher"] or len(plan.kernel_cmd) < 5
            or plan.kernel_cmd[3] != "-f" or not all(a.startswith("--") and "=" in a for a in extra)):
        raise ValueError(f"unexpected kernel command {plan.kernel_cmd}")
    if plan.uid is None or plan.gid is None or plan.uid == 0 or plan.gid == 0:
        raise ValueError("the kernel must run as an unprivileged uid and gid")
    if not (plan.clear_groups and plan.no_new_privs and plan.drop_inh_caps):
        raise ValueError("setpriv must clear groups and inheritable caps and set no_new_privs")
    return plan


# ==========================================================================================================
# Syscalls

_libc_handle = None


def _libc():
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        _libc_handle.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                       ctypes.c_char_p]
        _libc_handle.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc_handle


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(_libc().prctl(option, arg2, arg3, 0, 0), f"prctl({option})")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(_libc().mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {src} on {dst}")


def _capset_zero() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)        # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()                        # effective, permitted, inheritable (x2): all empty
    _check(_libc().capset(header, data), "capset")


def _drop_bounding_set() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _prctl(_PR_CAPBSET_DROP, cap)


def _install_seccomp(program: bytes) -> None:
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def _loopback_up() -> None:
    import fcntl
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, ifr))[1]          # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1 | 0x40))  # SIOCSIFFLAGS: UP, RUNNING


# ==========================================================================================================
# The mount view (in I, pid 1 of the new namespaces, before pivot_root): what bwrap does for each option

def _statvfs_flags(path: str) -> int:
    st = os.statvfs(path)
    keep = 0
    for st_flag, ms_flag in ((8, _MS_NOEXEC), (1024, _MS_NOATIME), (2048, _MS_NODIRATIME), (4096, _MS_RELATIME)):
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


def _bind(src: str, dst: str, readonly: bool, devices: bool = False) -> None:
    _make_target(dst, os.path.isdir(src))
    _mount(src, dst, None, _MS_BIND | _MS_REC)
    for point in _submounts(dst):            # like bwrap: every mount of the bound tree gets the flags
        flags = _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _statvfs_flags(point)
        flags |= 0 if devices else _MS_NODEV
        flags |= _MS_RDONLY if readonly else 0
        _mount(None, point, None, flags)


def _mount_dev(dst: str) -> None:
    _mount("tmpfs", dst, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    for node in _DEV_NODES:
        _bind(f"/dev/{node}", f"{dst}/{node}", readonly=False, devices=True)
    for name, target in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd"), ("core", "/proc/kcore")):
        os.symlink(target, f"{dst}/{name}")
    os.mkdir(f"{dst}/shm", 0o755)
    os.mkdir(f"{dst}/pts", 0o755)
    _mount("devpts", f"{dst}/pts", "devpts", _MS_NOSUID | _MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", f"{dst}/ptmx")


def _build_root(plan: LaunchPlan, newroot: str) -> None:
    _mount("tmpfs", newroot, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    for op in plan.mounts:
        kind, dst = op[0], newroot + op[2] if op[0] in ("bind", "symlink") else newroot + op[1]
        if kind == "bind":
            _, src, _, readonly, optional = op
            if not os.path.exists(src):
                if optional:
                    continue
                raise FileNotFoundError(src)
            _bind(src, dst, readonly)
        elif kind == "symlink":
            os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
            os.symlink(op[1], dst)
        elif kind == "dir":
            if not os.path.isdir(dst):
                os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
                os.mkdir(dst)
                os.chmod(dst, op[2])
        elif kind == "tmpfs":
            _, _, mode, size = op
            _make_target(dst, True)
            _mount("tmpfs", dst, "tmpfs", _MS_NOSUID | _MS_NODEV,
                   f"mode={mode:o}" + (f",size={size}" if size else ""))
        elif kind == "proc":
            _make_target(dst, True)
            _mount("proc", dst, "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
            for sub in _PROC_RO:
                if os.path.exists(f"{dst}/{sub}"):
                    _bind(f"{dst}/{sub}", f"{dst}/{sub}", readonly=True)
        elif kind == "dev":
            _make_target(dst, True)
            _mount_dev(dst)
        else:
            raise ValueError(kind)


def _pivot(newroot: str) -> None:
    nr = _PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(f"no pivot_root syscall number for {platform.machine()}")
    os.chdir(newroot)
    _check(_libc().syscall(nr, b".", b"."), "pivot_root")
    _check(_libc().umount2(b".", _MNT_DETACH), "umount old root")
    os.chdir("/")


# ==========================================================================================================
# The zygote's fork: C, I and K

def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _fail(what: str) -> None:
    try:
        _write_all(2, f"hwkit warm kernel: {what}\n{traceback.format_exc()}".encode("utf-8", "replace"))
    finally:
        os._exit(127)


def _close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _redirect_std(stderr_fd: int) -> None:
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(stderr_fd, 2)
    os.close(devnull)


def _run_c(argv: list[str], stderr_fd: int, status_fd: int, seccomp_fd: int | None, zygote_pid: int) -> None:
    """C: in the host pid namespace, child of the zygote."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != zygote_pid:
            os._exit(1)
        os.setsid()
        _redirect_std(stderr_fd)
        os.close(stderr_fd)
        program = b""
        if seccomp_fd is not None:
            program = os.pread(seccomp_fd, 65536, 0)
            os.close(seccomp_fd)
        _close_fds_except({status_fd})
        plan = parse_launch_argv(argv)
        if plan.seccomp and not program:
            raise ValueError("the launch asks for seccomp but no filter came with it")
        for procs in plan.cgroup_procs:                  # like `echo $$ > cgroup.procs` in the cold chain
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        try:                     # the memory cgroup's OOM kill should pick the kernel, not C or I (best effort)
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("-1000")
        except OSError:
            pass
        for which, (soft, hard) in plan.rlimits.items():
            resource.setrlimit(which, (soft, hard))
        _check(_libc().unshare(_CLONE_NEWNS | plan.unshare), "unshare")
        if plan.unshare_try:
            _libc().unshare(plan.unshare_try)
        life_r, life_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(life_w)
            _run_init(plan, program, status_fd, life_r)
        os.close(life_r)
        os.close(status_fd)
        os.waitpid(pid, 0)
        os._exit(0)
    except BaseException:
        _fail("setting up the kernel's process failed")


def _run_init(plan: LaunchPlan, program: bytes, status_fd: int, life_r: int) -> None:
    """I: pid 1 of the new pid namespace. Builds the mount view, starts the kernel, reaps, reports."""
    try:
        if plan.die_with_parent:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([life_r], [], [], 0)[0]:          # C already gone: do not outlive it
            os._exit(1)
        _mount(None, "/", None, _MS_REC | _MS_SLAVE)
        if plan.hostname is not None:
            _check(_libc().sethostname(plan.hostname.encode(), len(plan.hostname.encode())), "sethostname")
        if plan.unshare & _CLONE_NEWNET:
            _loopback_up()
        newroot = str(Path(plan.kernel_cmd[4]).parent.parent / "r")     # <run dir>/r, beside k/ (ipc) and w/
        os.mkdir(newroot, 0o755)
        _build_root(plan, newroot)
        _pivot(newroot)
        if plan.chdir:
            os.chdir(plan.chdir)
        pid = os.fork()
        if pid == 0:
            os.close(life_r)
            _run_kernel(plan, program, status_fd)
        _drop_bounding_set()
        _capset_zero()
        status = None
        while True:
            try:
                done, raw = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if done == pid:
                status = os.waitstatus_to_exitcode(raw)
                break
        _write_all(status_fd, str(status if status is not None else -signal.SIGKILL).encode())
        os._exit(0)
    except BaseException:
        _fail("building the kernel's namespaces failed")


def _run_kernel(plan: LaunchPlan, program: bytes, status_fd: int) -> None:
    """K: the student's kernel, pid 2 of its namespace."""
    try:
        os.close(status_fd)
        if plan.new_session:
            os.setsid()
        with open("/proc/self/oom_score_adj", "r+") as f:
            if f.read().strip() == "-1000":
                f.seek(0)
                f.write("0")
        env = dict(plan.env)
        if plan.clearenv:
            os.environ.clear()
        os.environ.update(env)
        # setpriv --reuid --regid --clear-groups --inh-caps=-all --no-new-privs, and bwrap's cap drop
        _drop_bounding_set()
        _prctl(_PR_SET_KEEPCAPS, 0)
        os.setgroups([])
        os.setresgid(plan.gid, plan.gid, plan.gid)
        os.setresuid(plan.uid, plan.uid, plan.uid)
        _capset_zero()
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        if plan.seccomp:
            _install_seccomp(program)
        if os.getuid() != plan.uid or os.geteuid() != plan.uid or os.getgroups():
            raise OSError("dropping to the slot uid did not take")
        _start_kernel(plan)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException:
        _fail("starting the kernel failed")
    os._exit(0)


def _start_kernel(plan: LaunchPlan) -> None:
    import random

    random.seed()                                         # the zygote's RNG state is not the kernel's
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()
    torch = sys.modules.get("torch")         # its default generator is untouched: seeded as in a cold kernel
    if torch is not None:
        threads = plan.env.get("OMP_NUM_THREADS")
        if threads and threads.isdigit():
            torch.set_num_threads(int(threads))           # the intra-op pool is created after the fork
    for name in [m for m in sys.modules if m == "hwkit" or m.startswith("hwkit.")]:
        del sys.modules[name]                             # the grader's own modules are not the kernel's
    sys.path[:] = [p for p in sys.path if p and p not in _ZYGOTE_EXTRA_PATHS]
    launcher = os.path.join(os.path.dirname(os.path.dirname(sys.modules["ipykernel"].__file__)),
                            "ipykernel_launcher.py")
    sys.argv = [launcher] + plan.kernel_cmd[3:]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv=plan.kernel_cmd[3:])


_ZYGOTE_EXTRA_PATHS: set[str] = set()


# ==========================================================================================================
# The zygote's main loop (python -m hwkit.warm zygote FD)

def _recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, ancdata, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(8 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


def _send(sock: socket.socket, payload: dict, fds: list[int] = ()) -> None:
    data = json.dumps(payload).encode()
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], anc)


def _reap(*_) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _warm_up() -> None:
    """Pay the first-use costs once, in the zygote, instead of in every kernel: FlopCounterMode's first use
    imports ~800 modules (torch._dynamo, torch._inductor, ...: ~1 CPU-second), a first autograd pass, the
    first LSTM, and matplotlib's first figure (font cache, Agg canvas, PNG writer). Single-threaded (OMP at 1)
    and deterministic; torch's RNG state is restored, so a kernel's generator starts as a cold one's would."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    rng_state = torch.get_rng_state()
    try:
        from torch.utils.flop_counter import FlopCounterMode

        net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                                  torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(2, 2))
        x = torch.ones(2, 1, 4, 4)
        with FlopCounterMode(display=False):
            net(x)
        net(x).square().mean().backward()
        lstm = torch.nn.LSTM(2, 2, batch_first=True)
        lstm(torch.ones(1, 3, 2))[0].sum().backward()
        torch.optim.SGD(net.parameters(), lr=0.1).step()
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            import io

            fig, ax = plt.subplots(1, 2)
            ax[0].imshow(torch.zeros(4, 4, 3).numpy())
            ax[1].plot([0, 1], [1, 0])
            ax[0].set_title("warm")
            fig.savefig(io.BytesIO(), format="png")
            plt.close("all")
    except Exception:          # a warm-up that fails only leaves that cost to each kernel
        pass
    finally:
        torch.set_rng_state(rng_state)


def zygote_main(fd: int) -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(1)
    sock = socket.socket(fileno=fd)
    import hwkit.sandbox  # noqa: F401  (parse_launch_argv needs it; imported once, before any fork)
    cwd = os.getcwd()
    _ZYGOTE_EXTRA_PATHS.update({cwd, os.environ.get("PYTHONPATH", "")})
    import importlib
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    _warm_up()
    import gc
    gc.collect()
    gc.freeze()                                           # forks do not copy pages just to scan them
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        _send(sock, {"error": f"the zygote has {threads} threads after its imports; forking it is unsafe"})
        os._exit(1)
    signal.signal(signal.SIGCHLD, _reap)
    zygote_pid = os.getpid()
    _send(sock, {"ready": _READY.decode(), "pid": zygote_pid})
    while True:
        try:
            msg, fds = _recv(sock)
        except OSError:
            break
        if not msg:
            break
        try:
            req = json.loads(msg)
            stderr_fd, status_fd = fds[0], fds[1]
            seccomp_fd = fds[2] if len(fds) > 2 else None
        except (ValueError, IndexError) as e:
            for f in fds:
                os.close(f)
            _send(sock, {"error": f"bad request: {e}"})
            continue
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])   # not reaped before the pidfd is open
        try:
            pid = os.fork()
            if pid == 0:
                sock.detach()
                _run_c(req["argv"], stderr_fd, status_fd, seccomp_fd, zygote_pid)
            pidfd = os.pidfd_open(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        for f in fds:
            os.close(f)
        try:
            _send(sock, {"pid": pid}, [pidfd])
        finally:
            os.close(pidfd)
    os._exit(0)


# ==========================================================================================================
# The grader's side

class ZygoteError(RuntimeError):
    pass


class Zygote:
    """A warm parent for one grader worker. Thread-safe; start() is implicit on first use."""

    def __init__(self, start_timeout: float = 120.0):
        self.start_timeout = start_timeout
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.pid: int | None = None

    def _env(self) -> dict[str, str]:
        from hwkit import sandbox as sb

        mpl = sb._run_base() / "mpl"
        sb._ensure_private_dir(sb._run_base(), 0o711)
        sb._ensure_private_dir(mpl, 0o700)
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "HOME": sb.JAIL_HOME, "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(mpl),
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        return env

    def launch(self) -> "Zygote":
        """Start the zygote's process without waiting for its imports (start() waits)."""
        from hwkit import sandbox as sb

        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self
            if self._sock is not None:
                self._sock.close()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                # launched from sandbox's long-lived launcher thread: its PDEATHSIG follows that thread
                self._proc = sb._spawn([sys.executable, "-m", "hwkit.warm", "zygote", str(theirs.fileno())],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/",
                                       env=self._env(), pass_fds=[theirs.fileno()], start_new_session=True)
            finally:
                theirs.close()
            self._sock, self.pid = ours, None
            return self

    def start(self) -> "Zygote":
        """Launch if needed and wait until the zygote has done its imports and is ready to fork."""
        self.launch()
        with self._lock:
            if self.pid is not None:
                return self
            self._sock.settimeout(self.start_timeout)
            try:
                msg, fds = _recv(self._sock)
            except OSError as e:
                self._kill()
                raise ZygoteError(f"the warm zygote did not start: {e}") from e
            for f in fds:
                os.close(f)
            reply = json.loads(msg or b"{}")
            if reply.get("ready") != _READY.decode():
                self._kill()
                raise ZygoteError(f"the warm zygote did not start: {reply.get('error', 'no reply')}")
            self._sock.settimeout(30)
            self.pid = reply["pid"]
            return self

    def spawn(self, argv: list[str], fds: list[int]) -> tuple[int, int]:
        """Fork a kernel that runs argv; returns (host pid of C, its pidfd)."""
        self.start()
        with self._lock:
            try:
                _send(self._sock, {"argv": argv}, fds)
                msg, got = _recv(self._sock)
            except OSError as e:
                raise ZygoteError(f"the warm zygote stopped answering: {e}") from e
            reply = json.loads(msg or b"{}")
            if "pid" not in reply or len(got) != 1:
                for f in got:
                    os.close(f)
                raise ZygoteError(f"the warm zygote refused: {reply.get('error', 'no reply')}")
            return reply["pid"], got[0]

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._kill()
                self._proc = None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


_process_zygote: Zygote | None = None
_process_zygote_pid = 0


def process_zygote(wait: bool = True) -> Zygote:
    """The zygote of this process (one per grader worker), started on first use; with wait=False only
    launched, so that its imports overlap whatever the caller does next."""
    global _process_zygote, _process_zygote_pid
    if _process_zygote is None or _process_zygote_pid != os.getpid():
        import atexit

        _process_zygote, _process_zygote_pid = Zygote(), os.getpid()
        atexit.register(_process_zygote.close)
    return _process_zygote.start() if wait else _process_zygote.launch()


class _ForkedKernel:
    """Popen-like handle on C (the zygote's child): poll/wait through its pidfd, the kernel's exit status
    from the status pipe I writes to (Popen's convention: -N when killed by signal N)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int, status_fd: int):
        self.pid, self._pidfd, self._status_fd = pid, pidfd, status_fd
        self.returncode: int | None = None

    def _exited(self, timeout: float) -> bool:
        return bool(select.select([self._pidfd], [], [], timeout)[0])

    def poll(self) -> int | None:
        if self.returncode is None and self._pidfd >= 0 and self._exited(0):
            try:
                raw = os.read(self._status_fd, 64)
                self.returncode = int(raw) if raw.strip() else -signal.SIGKILL
            except (OSError, ValueError):
                self.returncode = -signal.SIGKILL
            self._close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("warm kernel", timeout)
            self._exited(min(left, 0.5) if left is not None else 0.5)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        for fd in (self._pidfd, self._status_fd):
            if fd >= 0:
                os.close(fd)
        self._pidfd = self._status_fd = -1

    def __del__(self):
        try:
            self._close()
        except Exception:
            pass


def _warm_jail_class():
    from hwkit.sandbox import Jail

    class WarmJail(Jail):
        """A Jail whose kernel is forked from a warm zygote: same interface, setup, limits, teardown."""

        def __init__(self, workdir, limits, *, slot: int = 0, data_dir=None, zygote: Zygote | None = None):
            super().__init__(workdir, limits, slot=slot, data_dir=data_dir)
            self.zygote = zygote

        def _spawn_launch(self, argv, stderr_write, seccomp_fd):
            zygote = self.zygote or process_zygote()
            status_read, status_write = os.pipe2(os.O_CLOEXEC)
            try:
                fds = [stderr_write, status_write] + ([seccomp_fd] if seccomp_fd is not None else [])
                pid, pidfd = zygote.spawn(list(argv), fds)
            except BaseException:
                os.close(status_read)
                raise
            finally:
                os.close(status_write)
            os.set_blocking(status_read, False)
            return _ForkedKernel(pid, pidfd, status_read)

    return WarmJail


def __getattr__(name):
    if name == "WarmJail":
        cls = _warm_jail_class()
        globals()["WarmJail"] = cls
        return cls
    raise AttributeError(name)


if __name__ == "__main__":
    if sys.argv[1:2] == ["zygote"] and len(sys.argv) == 3:
        zygote_main(int(sys.argv[2]))
    sys.exit("usage: python -m hwkit.warm zygote FD (started by hwkit.warm.Zygote)")
