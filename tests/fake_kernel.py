"""A Jupyter kernel faked in this process, so that hwkit.execute's message handling can be tested where
bubblewrap (or any kernel process) is missing.

`run_notebook(nb, kernel, limits, probes)` is given a FakeKernel. Its `km` starts, interrupts and shuts down
nothing but this object; its clients' shell and iopub channels are queues that the kernel side fills as the
test scripted it (the idea of nbclient's tests/test_client.py `prepare_cell_mocks`: messages as data). The
messages are real Jupyter wire messages: jupyter_client's Session packs and parses them, binary buffers
included. Probe requests go to the real hwkit_kernel Runtime, installed in `shell_handlers` as
hwkit_kernel.launch installs it in ipykernel, over `namespace`, the dict that stands for the notebook's
globals.

Scripts are lists of steps, keyed by a cell's source or a probe's function name:

    FakeKernel(cells={"while True: pass": [hangs()]}, probes={"forward": [dies()]})

A cell that is not scripted is run with exec() in the namespace (print becomes a stream output, an exception
an error output), so that ordinary cells (`x = 3`) define what the probes read; a probe that is not scripted
is answered by the runtime. Like a real kernel it handles one request at a time (a request that arrives while
it is busy waits), and time passes for real: `takes(seconds)` delays what it sends next, so a timeout in a
test is a real timeout.
"""
from __future__ import annotations

import asyncio
import bisect
import io
import time
import traceback
from collections import deque
from contextlib import redirect_stdout
from dataclasses import dataclass
from queue import Empty
from typing import Callable

from jupyter_client.session import DELIM, Session

from hwkit_kernel.runtime import REPLY, REQUEST, Runtime

POLL = 0.005                 # seconds between looks at a channel's queue
ANOTHER_REQUEST = {"msg_id": "another-request", "msg_type": "execute_request", "session": "another-session",
                   "username": "someone", "version": "5.3"}
# What the runtime replies when a probe is interrupted: its own KeyboardInterrupt branch, reached by a function
# that raises what the interrupt raises in a stuck probe.
_INTERRUPTED = {"name": "interrupted", "source": "def interrupted(student, inputs):\n    raise KeyboardInterrupt\n"}

STOP = object()              # a step's return value: the request is left unfinished (busy, or the kernel died)


@dataclass
class Request:
    """One shell request as the kernel received it (parsed by the Session, buffers as memoryviews)."""
    msg: dict
    client: "FakeKernelClient"
    idents: list
    error: dict | None = None      # what a cell raised: its execute_reply says so
    interruptible: bool = True
    stops_after: float = 0.0

    @property
    def kind(self) -> str:
        return self.msg["msg_type"]

    @property
    def content(self) -> dict:
        return self.msg["content"]

    @property
    def buffers(self) -> list:
        return self.msg.get("buffers") or []

    @property
    def msg_id(self) -> str:
        return self.msg["header"]["msg_id"]

    @property
    def source(self) -> str:
        return self.content.get("code", "")

    @property
    def function(self) -> str:
        return self.content.get("function", "")


Step = Callable[["FakeKernel", Request], object]


class FakeKernel:
    """What run_notebook is given (`km`, `seal_ipc`, `kernel_stderr`) and what runs inside the kernel (the
    namespace, the runtime, `shell_handlers`, `session`)."""

    def __init__(self, cells: dict[str, list[Step]] | None = None, probes: dict[str, list[Step]] | None = None,
                 namespace: dict | None = None, start_error: str | None = None, stderr: str = ""):
        self.cells = dict(cells or {})
        self.probes = dict(probes or {})
        self.namespace = {} if namespace is None else namespace
        self.start_error, self.stderr = start_error, stderr
        self.log: list[str] = []              # what happened, in order: "start", "sealed", "execute <src>", ...
        self.requests: list[Request] = []
        self.session = Session(key=b"fake kernel key")      # both ends sign and check, as over the connection file
        self.shell_handlers: dict[str, Callable] = {}
        self.runtime = Runtime(self, self.namespace)
        self.runtime.install()
        self.km = FakeKernelManager(self)
        self.started = self.shut_down = False
        self.died_at: float | None = None
        self.busy: Request | None = None
        self.free_at = 0.0                    # when what the kernel sends next goes out
        self.execution_count = 0
        self._inbox: deque[Request] = deque()
        self._iopub: list[tuple[float, list[bytes]]] = []

    # -- what the grader sees ---------------------------------------------------------------------------

    def seal_ipc(self) -> None:
        self.log.append("sealed")

    def kernel_stderr(self) -> str:
        return self.stderr

    def alive(self) -> bool:
        return (self.started and not self.shut_down
                and (self.died_at is None or time.monotonic() < self.died_at))

    @property
    def executed(self) -> list[str]:
        """The sources of the cells the grader sent, in order."""
        return [r.source for r in self.requests if r.kind == "execute_request"]

    @property
    def probe_requests(self) -> list[Request]:
        return [r for r in self.requests if r.kind == REQUEST]

    # -- the kernel's side --------------------------------------------------------------------------------

    def receive(self, frames: list, client: "FakeKernelClient") -> None:
        idents, rest = self.session.feed_identities([bytes(f) for f in frames])
        self._inbox.append(Request(self.session.deserialize(rest), client, idents))
        self._work()

    def _work(self) -> None:
        while self.busy is None and self._inbox and self.alive():
            self._handle(self._inbox.popleft())

    def _handle(self, request: Request) -> None:
        self.free_at = max(self.free_at, time.monotonic())
        self.requests.append(request)
        self.publish(request, "status", {"execution_state": "busy"})
        if request.kind == "execute_request":
            self.log.append(f"execute {request.source}")
            self.execution_count += 1
            self.publish(request, "execute_input", {"code": request.source, "execution_count": self.execution_count})
            if self._run(self.cells.get(request.source, [runs()]), request) is not STOP:
                self.finish_cell(request)
        elif request.kind in self.shell_handlers:
            self.log.append(f"probe {request.function}")
            if self._run(self.probes.get(request.function, [answers()]), request) is not STOP:
                self.publish(request, "status", {"execution_state": "idle"})
        else:
            self.publish(request, "status", {"execution_state": "idle"})

    def _run(self, steps: list[Step], request: Request):
        for step in steps:
            if step(self, request) is STOP:
                return STOP
        return None

    def finish_cell(self, request: Request) -> None:
        status = {"status": "error", **request.error} if request.error else {"status": "ok"}
        self.reply(request, "execute_reply", {**status, "execution_count": self.execution_count})
        self.publish(request, "status", {"execution_state": "idle"})

    def interrupt(self) -> None:
        """SIGINT: what the kernel was stuck in raises KeyboardInterrupt (if it lets itself be interrupted)."""
        self.log.append("interrupt")
        request = self.busy
        if request is None or not request.interruptible or not self.alive():
            return
        self.busy = None
        self.free_at = max(self.free_at, time.monotonic()) + request.stops_after
        if request.kind == "execute_request":
            raises("KeyboardInterrupt", "")(self, request)
            self.finish_cell(request)
        else:
            content = dict(request.content, module=_INTERRUPTED, function="interrupted")
            self.reply(request, REPLY, *self.runtime.answer(content, []))
            self.publish(request, "status", {"execution_state": "idle"})
        self._work()

    # -- sending ------------------------------------------------------------------------------------------

    def publish(self, request: Request, msg_type: str, content: dict, parent: dict | None = None) -> None:
        """An iopub message, by default a child of `request`."""
        self.session.send(_Outbox(self, None), msg_type, content, parent=parent or request.msg)

    def reply(self, request: Request, msg_type: str, content: dict, buffers: list | None = None,
              parent: dict | None = None) -> None:
        """A shell message to the client that sent `request`, by default a reply to it."""
        self.session.send(_Outbox(self, request.client), msg_type, content, parent=parent or request.msg,
                          ident=request.idents, buffers=buffers)

    def send_frames(self, client: "FakeKernelClient | None", frames: list) -> None:
        at = max(self.free_at, time.monotonic())
        frames = [bytes(f) for f in frames]
        if client is None:
            self._iopub.append((at, frames))
        elif client.connected:
            client.shell_queue.append((at, frames))

    def iopub_from(self, since: float) -> int:
        return bisect.bisect_left([at for at, _ in self._iopub], since)

    def iopub_at(self, index: int) -> tuple[float, list[bytes]] | None:
        return self._iopub[index] if index < len(self._iopub) else None


class _Outbox:
    """The kernel's end of a socket: Session.send writes the frames here."""

    def __init__(self, kernel: FakeKernel, client: "FakeKernelClient | None"):
        self.kernel, self.client = kernel, client

    def send_multipart(self, frames, copy=True, track=False):
        self.kernel.send_frames(self.client, frames)


class _ClientSocket:
    """The client's end of the shell socket: what the grader sends reaches the kernel."""

    def __init__(self, kernel: FakeKernel, client: "FakeKernelClient"):
        self.kernel, self.client = kernel, client

    def send_multipart(self, frames, copy=True, track=False):
        self.kernel.receive(frames, self.client)


class _Channel:
    def __init__(self, client: "FakeKernelClient", take: Callable, socket=None):
        self.client, self.session, self._take, self.socket = client, client.session, take, socket

    async def get_msg(self, timeout: float | None = None) -> dict:
        """The next message that has arrived, parsed by the Session (which raises on one it cannot read);
        queue.Empty when none arrives within `timeout`."""
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            frames = self._take()
            if frames is not None:
                _, rest = self.session.feed_identities(frames)
                return self.session.deserialize(rest)
            if until is not None and time.monotonic() >= until:
                raise Empty
            await asyncio.sleep(POLL)

    def send(self, msg: dict) -> None:
        self.session.send(self.socket, msg)


class FakeKernelClient:
    """An AsyncKernelClient's surface as nbclient and hwkit.execute use it."""

    def __init__(self, kernel: FakeKernel):
        self.kernel, self.session = kernel, kernel.session
        self.allow_stdin = False
        self.connected = False
        self.shell_queue: deque[tuple[float, list[bytes]]] = deque()
        self._iopub_next = 0
        self.shell_channel = _Channel(self, self._take_shell, _ClientSocket(kernel, self))
        self.iopub_channel = _Channel(self, self._take_iopub)

    def start_channels(self, *args, **kwargs) -> None:
        """Subscribes to iopub: what the kernel publishes from now on."""
        self.connected = True
        self._iopub_next = self.kernel.iopub_from(time.monotonic())

    def stop_channels(self) -> None:
        self.connected = False

    @property
    def channels_running(self) -> bool:
        return self.connected

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        if self.kernel.start_error is not None:
            raise RuntimeError(self.kernel.start_error)

    async def is_alive(self) -> bool:
        return self.kernel.alive()

    def execute(self, code: str, silent: bool = False, store_history: bool = True, user_expressions=None,
                allow_stdin=None, stop_on_error: bool = True) -> str:
        msg = self.session.msg("execute_request", {
            "code": code, "silent": silent, "store_history": store_history,
            "user_expressions": user_expressions or {}, "allow_stdin": False, "stop_on_error": stop_on_error})
        self.session.send(self.shell_channel.socket, msg)
        return msg["header"]["msg_id"]

    def _deliverable(self, at: float) -> bool:
        died = self.kernel.died_at
        return self.connected and at <= time.monotonic() and (died is None or at < died)

    def _take_shell(self):
        if self.shell_queue and self._deliverable(self.shell_queue[0][0]):
            return self.shell_queue.popleft()[1]
        return None

    def _take_iopub(self):
        found = self.kernel.iopub_at(self._iopub_next)
        if found is not None and self._deliverable(found[0]):
            self._iopub_next += 1
            return found[1]
        return None


class FakeKernelManager:
    """An AsyncKernelManager's surface as nbclient and hwkit.execute use it."""

    kernel_id = "fake"

    def __init__(self, kernel: FakeKernel):
        self.kernel = kernel

    @property
    def has_kernel(self) -> bool:
        return self.kernel.started and not self.kernel.shut_down

    async def start_kernel(self, **kwargs) -> None:
        self.kernel.started = True
        self.kernel.log.append("start")

    async def is_alive(self) -> bool:
        return self.kernel.alive()

    async def interrupt_kernel(self) -> None:
        self.kernel.interrupt()

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        self.kernel.shut_down = True
        self.kernel.log.append("shutdown")

    async def cleanup_resources(self, restart: bool = False) -> None:
        pass

    def client(self, **kwargs) -> FakeKernelClient:
        return FakeKernelClient(self.kernel)


# ---- steps: what a cell or a probe does in the kernel --------------------------------------------------

def runs() -> Step:
    """Run the cell's source in the namespace, as a kernel would (what it prints, what it raises)."""
    def step(kernel: FakeKernel, request: Request):
        printed = io.StringIO()
        try:
            with redirect_stdout(printed):
                exec(compile(request.source, "<cell>", "exec"), kernel.namespace)
        except Exception as exc:  # the cell's own exception is its output, as in a kernel
            if printed.getvalue():
                prints(printed.getvalue())(kernel, request)
            raises(type(exc).__name__, str(exc), traceback.format_exception(exc))(kernel, request)
            return None
        if printed.getvalue():
            prints(printed.getvalue())(kernel, request)
        return None
    return step


def prints(text: str, stream: str = "stdout") -> Step:
    return lambda kernel, request: kernel.publish(request, "stream", {"name": stream, "text": text})


def shows(data: dict, display_id: str | None = None) -> Step:
    """display(): a display_data output, with a display_id if given."""
    content = {"data": data, "metadata": {}, "transient": {"display_id": display_id} if display_id else {}}
    return lambda kernel, request: kernel.publish(request, "display_data", content)


def updates(data: dict, display_id: str) -> Step:
    """display_handle.update(): replaces every output shown with that display_id, in whichever cell."""
    content = {"data": data, "metadata": {}, "transient": {"display_id": display_id}}
    return lambda kernel, request: kernel.publish(request, "update_display_data", content)


def raises(ename: str, evalue: str, traceback_lines: list[str] | None = None) -> Step:
    def step(kernel: FakeKernel, request: Request):
        request.error = {"ename": ename, "evalue": evalue, "traceback": traceback_lines or [f"{ename}: {evalue}"]}
        kernel.publish(request, "error", request.error)
    return step


def captures_output_in_a_widget(comm_id: str = "out-widget") -> Step:
    """`out = ipywidgets.Output(); display(out); with out: ...`: an Output widget opened over comm messages,
    then told to capture what this very cell prints (its msg_id)."""
    def step(kernel: FakeKernel, request: Request):
        state = {"_model_module": "@jupyter-widgets/output", "_model_name": "OutputModel", "outputs": []}
        kernel.publish(request, "comm_open", {"comm_id": comm_id, "target_name": "jupyter.widget",
                                              "data": {"state": state, "buffer_paths": []}})
        kernel.publish(request, "comm_msg", {"comm_id": comm_id,
                                             "data": {"method": "update", "state": {"msg_id": request.msg_id},
                                                      "buffer_paths": []}})
    return step


def takes(seconds: float) -> Step:
    """The kernel works for `seconds` before it sends anything more."""
    def step(kernel: FakeKernel, request: Request):
        kernel.free_at = max(kernel.free_at, time.monotonic()) + seconds
    return step


def hangs(interruptible: bool = True, stops_after: float = 0.0) -> Step:
    """Never finishes by itself (`while True: pass`, a probe stuck in the student's code). An interrupt stops it
    `stops_after` seconds later with a KeyboardInterrupt, unless it is not `interruptible` (the student's code
    catches KeyboardInterrupt, or sits in C code that never checks for signals)."""
    def step(kernel: FakeKernel, request: Request):
        request.interruptible, request.stops_after = interruptible, stops_after
        kernel.busy = request
        return STOP
    return step


def dies() -> Step:
    """The kernel process ends (os._exit, a segfault, the memory limit's OOM kill)."""
    def step(kernel: FakeKernel, request: Request):
        kernel.died_at = max(kernel.free_at, time.monotonic())
        return STOP
    return step


def publishes(msg_type: str, content: dict) -> Step:
    """Any iopub message of this request, as code in the kernel can send one (get_ipython().kernel.session)."""
    return lambda kernel, request: kernel.publish(request, msg_type, content)


def publishes_for_another_request(msg_type: str, content: dict) -> Step:
    """An iopub message whose parent is some other request (another client's, an earlier cell's)."""
    return lambda kernel, request: kernel.publish(request, msg_type, content, parent=ANOTHER_REQUEST)


def replies_for_another_request(msg_type: str, content: dict) -> Step:
    """A shell message to this client whose parent is some other request."""
    return lambda kernel, request: kernel.reply(request, msg_type, content, parent=ANOTHER_REQUEST)


def answers(*, ignoring_the_size_limit: bool = False, then: Callable | None = None,
            parent: dict | None = None) -> Step:
    """The runtime answers the probe. Untouched, through the handler hwkit_kernel installs (Runtime.handle);
    `ignoring_the_size_limit`: a runtime the student's code changed so that it ignores the request's
    max_bytes; `then(content, buffers) -> (content, buffers)`: the reply altered on its way out; `parent`:
    the reply addressed to another request than the one it answers."""
    def step(kernel: FakeKernel, request: Request):
        if not ignoring_the_size_limit and then is None and parent is None:
            kernel.shell_handlers[REQUEST](_Outbox(kernel, request.client), request.idents, request.msg)
            return None
        content = dict(request.content, max_bytes=2**62) if ignoring_the_size_limit else request.content
        reply, buffers = kernel.runtime.answer(content, list(request.buffers))
        if then is not None:
            reply, buffers = then(reply, buffers)
        kernel.reply(request, REPLY, reply, buffers, parent=parent)
        return None
    return step


def answers_the_previous_probe() -> Step:
    """The earlier probe's own answer, arriving now (after that probe was given up on)."""
    def step(kernel: FakeKernel, request: Request):
        earlier = kernel.probe_requests[-2]
        kernel.reply(request, REPLY, *kernel.runtime.answer(earlier.content, list(earlier.buffers)),
                     parent=earlier.msg)
    return step


def sends_unreadable_frames(channel: str = "shell") -> Step:
    """A message the grader's Session cannot parse, on the shell (to this client) or iopub channel: signed
    (code in the kernel can read the key), but its header is not JSON."""
    def step(kernel: FakeKernel, request: Request):
        parts = [b"\xff not json", b"{}", b"{}", b"{}"]
        frames = [DELIM, kernel.session.sign(parts), *parts]
        if channel == "shell":
            kernel.send_frames(request.client, [*request.idents, *frames])
        else:
            kernel.send_frames(None, frames)
    return step
