"""The zygote: a long-lived Python process (`python -m hwkit.warm zygote FD`, started by a grader worker as
root outside any jail, with a clean environment) that has imported torch, numpy, sympy, matplotlib, ipykernel
and hwkit_kernel, has paid their first-use costs, and holds no thread. It never runs student code and never
imports the grader's course-facing code or the problem bank: of hwkit it holds only this fork side
(hwkit.warm.zygote, hwkit.warm.view, hwkit.sandbox.spec, .limits, .linux).

For each kernel it receives a LaunchSpec (hwkit.sandbox.spec) and forks; the fork carries the spec out:

    C (fork of the zygote, host pid ns)   joins the cgroups, sets the rlimits, unshare(mount + the spec's
                                          namespaces), forks I; waits for it; dies with the zygote (PDEATHSIG)
    I (pid 1 of the new pid namespace)    hostname, lo up, the mount view (hwkit.warm.view), pivot_root;
                                          forks K, drops every capability, reaps, reports K's exit status on
                                          the status pipe, exits (which kills everything left); dies with C
    K (the kernel, pid 2)                 new session, the spec's environment only, bounding set emptied,
                                          setgroups([]), setresgid/setresuid(slot uid), caps cleared,
                                          no_new_privs, the seccomp filter; then RNGs reseeded, torch's thread
                                          pool sized (created after the fork), hwkit's own modules forgotten,
                                          sys.path and hwkit_kernel's paths as a cold kernel has them, and
                                          hwkit_kernel.launch.main(argv) in-process on the connection file.

A spec the fork does not fully understand is refused (LaunchSpec.from_wire, .check, view.HANDLERS)."""
from __future__ import annotations

import array
import json
import os
import resource
import select
import signal
import socket
import sys
import traceback
from pathlib import Path

from hwkit.sandbox.linux import (NAMESPACES, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_KEEPCAPS,
                                 PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, MS_REC, MS_SLAVE, capset_zero,
                                 drop_bounding_set, install_seccomp, loopback_up, mount, pivot_root, prctl,
                                 sethostname, unshare)
from hwkit.sandbox.spec import GRADER_PACKAGES, KERNEL_MODULE, KERNEL_ROOT, LaunchSpec
from hwkit.warm.view import build_root

PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.utils.data", "sympy",
           "matplotlib", "matplotlib.pyplot", "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel",
           "ipykernel.zmqshell", "jupyter_client.session",
           # what IPKernelApp.initialize imports on its own: preloaded, a kernel is ready in a fraction of the time
           "ipykernel.debugger", "debugpy", "IPython.core.debugger", "IPython.core.completerlib",
           "IPython.extensions.storemagic", "sqlite3", "pydoc", "tornado.ioloop", "faulthandler", "mimetypes",
           "http.server", "secrets", "tomllib",
           # what the course's notebooks and probes use beyond torch: image files, tarred/pickled CIFAR batches
           "PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin", "torch.utils.flop_counter", "tarfile",
           # the kernel side of hwkit (every module of the package is preloaded, these and any other)
           "hwkit_kernel", "hwkit_kernel.launch", "hwkit_kernel.runtime", "hwkit_kernel.outputs",
           "hwkit_kernel.wire")
RLIMITS = {"as": resource.RLIMIT_AS, "cpu": resource.RLIMIT_CPU, "nproc": resource.RLIMIT_NPROC,
           "nofile": resource.RLIMIT_NOFILE, "fsize": resource.RLIMIT_FSIZE, "core": resource.RLIMIT_CORE}
READY = "hwkit-zygote-ready"
_base_sys_path: list[str] = []        # the interpreter's own sys.path, without the zygote's cwd and PYTHONPATH


# ==========================================================================================================
# The fork: C, I and K

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


def run_c(wire: dict, stderr_fd: int, status_fd: int, seccomp_fd: int | None, zygote_pid: int) -> None:
    """C: in the host pid namespace, child of the zygote."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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
        spec = LaunchSpec.from_wire(wire).check()
        if spec.seccomp and not program:
            raise ValueError("the launch asks for seccomp but no filter came with it")
        for procs in spec.cgroup_procs:                  # like `echo $$ > cgroup.procs` in the cold chain
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        try:                     # the memory cgroup's OOM kill should pick the kernel, not C or I (best effort)
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("-1000")
        except OSError:
            pass
        for name, soft, hard in spec.rlimits:
            resource.setrlimit(RLIMITS[name], (soft, hard))
        flags = NAMESPACES["mount"]
        for ns in spec.namespaces:
            flags |= NAMESPACES[ns]
        unshare(flags)
        for ns in spec.try_namespaces:
            try:
                unshare(NAMESPACES[ns])
            except OSError:
                pass
        life_r, life_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(life_w)
            run_init(spec, program, status_fd, life_r)
        os.close(life_r)
        os.close(status_fd)
        os.waitpid(pid, 0)
        os._exit(0)
    except BaseException:
        _fail("setting up the kernel's process failed")


def run_init(spec: LaunchSpec, program: bytes, status_fd: int, life_r: int) -> None:
    """I: pid 1 of the new pid namespace. Builds the mount view, starts the kernel, reaps, reports."""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)            # bwrap's --die-with-parent
        if select.select([life_r], [], [], 0)[0]:          # C already gone: do not outlive it
            os._exit(1)
        mount(None, "/", None, MS_REC | MS_SLAVE)
        sethostname(spec.hostname)
        if "net" in spec.namespaces:
            loopback_up()
        newroot = str(Path(spec.connection_file).parent.parent / "r")   # <run dir>/r, beside k/ (ipc) and w/
        os.mkdir(newroot, 0o755)
        build_root(spec.mounts, newroot)
        pivot_root(newroot)
        os.chdir(spec.chdir)
        pid = os.fork()
        if pid == 0:
            os.close(life_r)
            run_kernel(spec, program, status_fd)
        drop_bounding_set()
        capset_zero()
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


def run_kernel(spec: LaunchSpec, program: bytes, status_fd: int) -> None:
    """K: the student's kernel, pid 2 of its namespace."""
    try:
        os.close(status_fd)
        os.setsid()                                       # bwrap's --new-session
        with open("/proc/self/oom_score_adj", "r+") as f:
            if f.read().strip() == "-1000":
                f.seek(0)
                f.write("0")
        os.environ.clear()                                # bwrap's --clearenv, then --setenv
        os.environ.update(dict(spec.env))
        # setpriv --reuid --regid --clear-groups --inh-caps=-all --no-new-privs, and bwrap's cap drop
        drop_bounding_set()
        prctl(PR_SET_KEEPCAPS, 0)
        os.setgroups([])
        os.setresgid(spec.uid, spec.uid, spec.uid)
        os.setresuid(spec.uid, spec.uid, spec.uid)
        capset_zero()
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if spec.seccomp:
            install_seccomp(program)
        if os.getuid() != spec.uid or os.geteuid() != spec.uid or os.getgroups():
            raise OSError("dropping to the slot uid did not take")
        start_kernel(spec)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException:
        _fail("starting the kernel failed")
    os._exit(0)


def start_kernel(spec: LaunchSpec) -> None:
    """In K: make the interpreter look like a cold kernel's, then run hwkit_kernel on the connection file."""
    import random

    random.seed()                                         # the zygote's RNG state is not the kernel's
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()
    torch = sys.modules.get("torch")         # its default generator is untouched: seeded as in a cold kernel
    if torch is not None:
        threads = dict(spec.env).get("OMP_NUM_THREADS", "")
        if threads.isdigit():
            torch.set_num_threads(int(threads))           # the intra-op pool is created after the fork
    for name in [m for m in sys.modules if m.split(".")[0] in GRADER_PACKAGES]:
        del sys.modules[name]                             # the grader's own modules are not the kernel's
    python_path = [p for p in dict(spec.env).get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [spec.chdir, *python_path, *_base_sys_path]       # as `python -m` in the jail would have it
    package = f"{KERNEL_ROOT}/{KERNEL_MODULE}"
    _move_kernel_package(package)
    sys.argv = [f"{package}/__main__.py", *spec.kernel_cmd[3:]]
    from hwkit_kernel.launch import main

    main(list(spec.kernel_cmd[3:]))


def _move_kernel_package(package: str) -> None:
    """hwkit_kernel was preloaded from the host's copy: point it at the jail's (the same files, bound there)."""
    kernel = sys.modules[KERNEL_MODULE]
    host = os.path.dirname(kernel.__file__)
    for name, module in list(sys.modules.items()):
        if name == KERNEL_MODULE or name.startswith(KERNEL_MODULE + "."):
            file = getattr(module, "__file__", None) or ""
            if file.startswith(host + os.sep):
                module.__file__ = package + file[len(host):]
                module.__cached__ = None
                if module.__spec__ is not None:
                    module.__spec__.origin = module.__file__
    kernel.__path__[:] = [package]


# ==========================================================================================================
# The zygote's main loop (python -m hwkit.warm zygote FD)

def recv_with_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, ancdata, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(8 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


def send_with_fds(sock: socket.socket, payload: dict, fds: list[int] = ()) -> None:
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


def warm_up() -> None:
    """Pay the first-use costs once, in the zygote, instead of in every kernel: FlopCounterMode's first use
    imports ~800 modules (torch._dynamo, torch._inductor, ...: ~1 CPU-second), a first autograd pass, the
    first LSTM, and matplotlib's first figure (font cache, Agg canvas, PNG writer; not through pyplot).
    Single-threaded (OMP at 1) and deterministic; torch's RNG state is restored, so a kernel's generator starts as a cold one's would."""
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
        if "matplotlib" in sys.modules:
            _warm_matplotlib()
    except Exception:          # a warm-up that fails only leaves that cost to each kernel
        pass
    finally:
        torch.set_rng_state(rng_state)


def _warm_matplotlib() -> None:
    """A first figure drawn to PNG without pyplot: pyplot must choose its backend in the kernel, where importing
    Jupyter's inline backend hooks it into the kernel's shell (figures shown at the end of each cell)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 2)
    ax[0].imshow([[[0.0, 0.0, 0.0]] * 4] * 4)
    ax[1].plot([0, 1], [1, 0])
    ax[0].set_title("warm")
    fig.savefig(io.BytesIO(), format="png")


def _preload() -> None:
    import importlib
    import pkgutil

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    kernel = sys.modules.get(KERNEL_MODULE)
    for info in pkgutil.walk_packages(kernel.__path__ if kernel else [], prefix=KERNEL_MODULE + "."):
        if not info.name.endswith(".__main__"):   # (that one would start a kernel here)
            importlib.import_module(info.name)


def zygote_main(fd: int) -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(1)
    sock = socket.socket(fileno=fd)
    extra = {"", os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    _base_sys_path[:] = [p for p in sys.path if p not in extra]
    _preload()
    warm_up()
    import gc
    gc.collect()
    gc.freeze()                                           # forks do not copy pages just to scan them
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        send_with_fds(sock, {"error": f"the zygote has {threads} threads after its imports; forking it is unsafe"})
        os._exit(1)
    signal.signal(signal.SIGCHLD, _reap)
    zygote_pid = os.getpid()
    send_with_fds(sock, {"ready": READY, "pid": zygote_pid})
    while True:
        try:
            msg, fds = recv_with_fds(sock)
        except OSError:
            break
        if not msg:
            break
        try:
            req = json.loads(msg)
            if req == {"modules": True}:                  # what the zygote holds (for tests and diagnosis)
                send_with_fds(sock, {"modules": sorted(sys.modules)})
                continue
            wire, stderr_fd, status_fd = req["spec"], fds[0], fds[1]
            seccomp_fd = fds[2] if len(fds) > 2 else None
        except (ValueError, IndexError, KeyError, TypeError) as e:
            for f in fds:
                os.close(f)
            send_with_fds(sock, {"error": f"bad request: {e}"})
            continue
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])   # not reaped before the pidfd is open
        try:
            pid = os.fork()
            if pid == 0:
                sock.detach()
                run_c(wire, stderr_fd, status_fd, seccomp_fd, zygote_pid)
            pidfd = os.pidfd_open(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        for f in fds:
            os.close(f)
        try:
            send_with_fds(sock, {"pid": pid}, [pidfd])
        finally:
            os.close(pidfd)
    os._exit(0)
