"""One kernel launch as data: a LaunchSpec says everything the jail is (cgroups to join, rlimits, namespaces,
hostname, environment, the mount view, working directory, uid, seccomp, the kernel command).

The cold path renders it to the argv it runs:

    sh (joins the cgroups) -> prlimit (rlimits) -> bwrap (namespaces, mounts, env, seccomp)
        -> setpriv (slot uid, no groups, no caps, no new privs) -> python -m hwkit_kernel -f CONN

and the warm zygote's fork executes the same spec itself (hwkit.warm.zygote), so the two cannot drift apart:
a spec the zygote does not fully understand (an unknown field, mount kind, namespace or rlimit) is refused.
Both paths always, whatever the spec: die with the grader, a new session, a cleared environment, no
capabilities, no supplementary groups, no_new_privs.

The mount view (jail_spec), in order: the system (/usr, /bin, /lib...) read-only; a synthetic /etc; /proc and
/dev; /tmp and /dev/shm (the run's tmpfs mounts); the Python roots read-only, with the grader's and the bank's
packages in them covered by tombstones (hwkit.sandbox.visible); the hwkit_kernel package alone at
KERNEL_ROOT; the IPC directory at its host path; the work dir at JAIL_HOME; the data dir read-only in it."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from hwkit.sandbox.limits import rlimits

if TYPE_CHECKING:
    from hwkit.course import SandboxLimits
    from hwkit.sandbox.host import RunPaths

KERNEL_MODULE = "hwkit_kernel"                     # the only piece of hwkit a kernel can import
GRADER_PACKAGES = ("hwkit", "solutions", "templates")   # never importable in a kernel (hwkit.sandbox.visible)
JAIL_HOME = "/home/student"          # the kernel's cwd and HOME inside the jail
KERNEL_ROOT = "/opt/hwkit"           # holds hwkit_kernel/ (read-only), the kernel's PYTHONPATH
MOUNT_KINDS = ("ro-bind", "ro-bind-try", "bind", "symlink", "dir", "proc", "dev")
NAMESPACES = ("pid", "net", "ipc", "uts", "cgroup")
RLIMIT_NAMES = ("as", "cpu", "nproc", "nofile", "fsize", "core")
JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 111; shift; done; shift; exec "$@"'
TOMBSTONE = ('"""Hidden from sandboxed kernels (hwkit.sandbox.visible)."""\n'
             'raise ModuleNotFoundError(f"No module named {__name__!r}", name=__name__)\n')


@dataclass(frozen=True)
class HostView:
    """What of the host's Python a kernel sees (built by hwkit.sandbox.visible)."""
    roots: tuple[Path, ...]              # bound read-only at the same paths
    hidden: tuple[Path, ...]             # under the roots, each covered by a tombstone
    kernel_package: Path                 # bound read-only at KERNEL_ROOT/hwkit_kernel


@dataclass(frozen=True)
class Mount:
    kind: str                  # one of MOUNT_KINDS
    dst: str                   # path in the jail
    src: str = ""              # binds: the host path; symlink: the link's target
    mode: int = 0o755          # dir: its permissions


@dataclass(frozen=True)
class LaunchSpec:
    cgroup_procs: tuple[str, ...]               # cgroup.procs files the launch joins first
    rlimits: tuple[tuple[str, int, int], ...]   # (prlimit name, soft, hard)
    namespaces: tuple[str, ...]                 # new namespaces: pid, net, ipc, uts (required), mount (always)
    try_namespaces: tuple[str, ...]             # new namespaces where the kernel allows them (cgroup)
    hostname: str
    env: tuple[tuple[str, str], ...]            # the whole environment
    mounts: tuple[Mount, ...]                   # on an empty root, in order
    chdir: str
    uid: int                                    # uid and gid of the kernel
    seccomp: bool                               # install the filter that comes with the launch (an fd)
    kernel_cmd: tuple[str, ...]

    @property
    def connection_file(self) -> str:
        return self.kernel_cmd[4]

    def check(self, python: str = sys.executable) -> "LaunchSpec":
        """Refuse a spec the warm path could not carry out whole (ValueError); returns self."""
        for m in self.mounts:
            if m.kind not in MOUNT_KINDS or not m.dst.startswith("/"):
                raise ValueError(f"unsupported mount {m}")
            if m.kind.endswith(("bind", "bind-try")) and not m.src.startswith("/"):
                raise ValueError(f"bind needs an absolute source: {m}")
        if not set(self.namespaces) | set(self.try_namespaces) <= set(NAMESPACES):
            raise ValueError(f"unknown namespaces {self.namespaces} {self.try_namespaces}")
        if any(name not in RLIMIT_NAMES for name, _, _ in self.rlimits):
            raise ValueError(f"unknown rlimits {self.rlimits}")
        if self.uid <= 0:
            raise ValueError("the kernel must run as an unprivileged uid")
        if not self.chdir.startswith("/"):
            raise ValueError("the working directory must be absolute")
        check_kernel_cmd(list(self.kernel_cmd), python)
        return self

    def to_wire(self) -> dict:
        """The spec as JSON carries it (lists for tuples), as the zygote receives it."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_wire(cls, data: dict) -> "LaunchSpec":
        """The inverse of to_wire, refusing any key it does not know or misses (ValueError)."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            raise ValueError(f"a launch spec has exactly the fields {names}")
        mount_names = sorted(f.name for f in fields(Mount))
        mounts = []
        for m in data["mounts"]:
            if not isinstance(m, dict) or sorted(m) != mount_names:
                raise ValueError(f"a mount has exactly the fields {mount_names}")
            mounts.append(Mount(**m))
        return cls(cgroup_procs=tuple(data["cgroup_procs"]),
                   rlimits=tuple((str(n), int(s), int(h)) for n, s, h in data["rlimits"]),
                   namespaces=tuple(data["namespaces"]), try_namespaces=tuple(data["try_namespaces"]),
                   hostname=str(data["hostname"]), env=tuple((str(k), str(v)) for k, v in data["env"]),
                   mounts=tuple(mounts), chdir=str(data["chdir"]), uid=int(data["uid"]),
                   seccomp=bool(data["seccomp"]), kernel_cmd=tuple(map(str, data["kernel_cmd"])))


def kernel_command(python: str, connection_file: Path | str) -> list[str]:
    return [python, "-m", KERNEL_MODULE, "-f", str(connection_file)]


def check_kernel_cmd(cmd: list[str], python: str) -> None:
    """The kernel command is hwkit_kernel on a connection file, plus only traitlets options (--Name.x=y)."""
    extra = cmd[5:]
    if (cmd[:4] != [python, "-m", KERNEL_MODULE, "-f"] or len(cmd) < 5
            or not all(a.startswith("--") and "=" in a for a in extra)):
        raise ValueError(f"unexpected kernel command {cmd}")


# Jupyter's own non-interactive backend: figures become PNG outputs of the cell that drew them (kept in the executed
# notebook, shown on the feedback page), never a window. Set here, not in the notebooks: a notebook leaves the
# backend to whichever Jupyter the student opens it in.
KERNEL_MPLBACKEND = "module://matplotlib_inline.backend_inline"


def kernel_env(limits: SandboxLimits) -> dict[str, str]:
    """What every kernel's environment says, jailed or not: the backend, its threads, its output cap."""
    threads = str(limits.kernel_threads())
    return {"MPLBACKEND": KERNEL_MPLBACKEND,
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            "PYTHONDONTWRITEBYTECODE": "1",
            "HWKIT_OUTPUT_LIMIT": str(limits.output_bytes)}      # hwkit_kernel's cap on each cell's output


def jail_env(limits: SandboxLimits) -> dict[str, str]:
    return {
        **kernel_env(limits),
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": JAIL_HOME, "USER": "student", "LANG": "C.UTF-8", "MPLCONFIGDIR": "/tmp/matplotlib",
        "IPYTHONDIR": "/tmp/ipython", "JUPYTER_CONFIG_DIR": "/tmp/jupyter",   # no student-planted startup files
        "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONPATH": KERNEL_ROOT,
    }


def write_jail_files(paths: RunPaths, uid: int) -> None:
    """The synthetic /etc files and the tombstones, root-owned and read-only, in paths.etc."""
    files = {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nstudent:x:{uid}:{uid}:student:{JAIL_HOME}:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nstudent:x:{uid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        "tomb.py": TOMBSTONE, "tomb/__init__.py": TOMBSTONE, "empty": "",
    }
    paths.etc.mkdir(mode=0o755)
    (paths.etc / "tomb").mkdir(mode=0o755)
    for name, text in files.items():
        (paths.etc / name).write_text(text)
        os.chmod(paths.etc / name, 0o644)


def system_mounts() -> list[Mount]:
    mounts = [Mount("ro-bind", "/usr", "/usr")]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            mounts.append(Mount("symlink", str(path), os.readlink(path)))
        elif path.is_dir():
            mounts.append(Mount("ro-bind", str(path), str(path)))
    return mounts


def _etc_mounts(paths: RunPaths) -> list[Mount]:
    mounts = [Mount("dir", "/etc")]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "fonts"):
        mounts.append(Mount("ro-bind-try", f"/etc/{name}", f"/etc/{name}"))
    for name in ("passwd", "group", "hosts", "nsswitch.conf"):
        mounts.append(Mount("ro-bind", f"/etc/{name}", str(paths.etc / name)))
    return mounts


class _View:
    """Mounts in order, with missing parent directories made 0755 first (bwrap would make them 0700,
    unreadable to the slot uid)."""

    def __init__(self) -> None:
        self.mounts: list[Mount] = []
        self.made = {Path(p) for p in ("/", "/usr", "/etc", "/tmp", "/dev", "/proc")}

    def add(self, *mounts: Mount) -> None:
        self.mounts.extend(mounts)

    def bind(self, kind: str, src: Path | str, dst: Path | str) -> None:
        for parent in reversed(Path(dst).parents):
            if parent not in self.made:
                self.mounts.append(Mount("dir", str(parent)))
                self.made.add(parent)
        self.mounts.append(Mount(kind, str(dst), str(src)))
        self.made.add(Path(dst))


def jail_spec(paths: RunPaths, limits: SandboxLimits, *, uid: int, data_dir: Path | None,
              cgroup_procs: list[Path], memory_cgroup: bool, seccomp: bool, kernel_cmd: list[str],
              view: HostView) -> LaunchSpec:
    """The launch of one jailed kernel (see the module docstring for the view it builds)."""
    v = _View()
    v.add(*system_mounts(), *_etc_mounts(paths), Mount("proc", "/proc"), Mount("dev", "/dev"))
    v.add(Mount("bind", "/tmp", str(paths.tmp)), Mount("bind", "/dev/shm", str(paths.shm)))  # before binds in /tmp
    for root in view.roots:
        v.bind("ro-bind", root, root)
    for hidden in view.hidden:
        tomb = "tomb" if hidden.is_dir() else "tomb.py" if hidden.suffix == ".py" else "empty"
        v.add(Mount("ro-bind", str(hidden), str(paths.etc / tomb)))
    v.bind("ro-bind", view.kernel_package, f"{KERNEL_ROOT}/{KERNEL_MODULE}")
    v.bind("bind", paths.ipc, paths.ipc)
    v.bind("bind", paths.work, JAIL_HOME)
    if data_dir is not None:
        v.add(Mount("ro-bind", f"{JAIL_HOME}/data", str(data_dir)))
    return LaunchSpec(
        cgroup_procs=tuple(map(str, cgroup_procs)), rlimits=tuple(rlimits(limits, memory_cgroup)),
        namespaces=("pid", "net", "ipc", "uts"), try_namespaces=("cgroup",), hostname="jail",
        env=tuple(jail_env(limits).items()), mounts=tuple(v.mounts), chdir=JAIL_HOME, uid=uid, seccomp=seccomp,
        kernel_cmd=tuple(kernel_cmd)).check()


def mount_args(mounts: list[Mount] | tuple[Mount, ...]) -> list[str]:
    """bwrap's options for these mounts."""
    args: list[str] = []
    for m in mounts:
        if m.kind in ("ro-bind", "ro-bind-try", "bind"):
            args += [f"--{m.kind}", m.src, m.dst]
        elif m.kind == "symlink":
            args += ["--symlink", m.src, m.dst]
        elif m.kind == "dir":
            args += ["--perms", f"{m.mode:04o}", "--dir", m.dst]
        elif m.kind in ("proc", "dev"):
            args += [f"--{m.kind}", m.dst]
        else:
            raise ValueError(f"unsupported mount {m}")
    return args


def setpriv_args(uid: int) -> list[str]:
    return ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--no-new-privs", "--"]


def render_argv(spec: LaunchSpec, seccomp_fd: int | None) -> list[str]:
    """The cold path's argv for spec; seccomp_fd is the filter bwrap reads (inherited by the launch)."""
    argv: list[str] = []
    if spec.cgroup_procs:
        argv += ["/bin/sh", "-c", JOIN_CGROUPS, "sh", *spec.cgroup_procs, "--"]
    argv += ["prlimit", *(f"--{name}={soft}:{hard}" for name, soft, hard in spec.rlimits), "--"]
    argv += ["bwrap", *(f"--unshare-{ns}" for ns in spec.namespaces),
             *(f"--unshare-{ns}-try" for ns in spec.try_namespaces),
             "--hostname", spec.hostname, "--die-with-parent", "--new-session",
             "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",   # for setpriv only
             "--cap-add", "CAP_DAC_READ_SEARCH",            # to chdir into the slot-owned 0700 work dir
             "--clearenv"]
    for key, value in spec.env:
        argv += ["--setenv", key, value]
    if spec.seccomp:
        if seccomp_fd is None:
            raise ValueError("the spec asks for seccomp but no filter came with it")
        argv += ["--seccomp", str(seccomp_fd)]
    argv += mount_args(spec.mounts)
    argv += ["--chdir", spec.chdir, "--"]
    return argv + setpriv_args(spec.uid) + list(spec.kernel_cmd)
