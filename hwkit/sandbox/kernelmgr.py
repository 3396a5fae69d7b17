"""The grader's jupyter_client side of a kernel: how it connects, how it waits for the kernel, how it launches.

Every zmq socket the grader opens to a kernel (the manager's control socket and each client channel) is made
by connect_socket(): the endpoint is checked first (a jail refuses anything but the sockets it created,
hwkit.sandbox.ipc) and the socket bounded (ZMQ_MAXMSGSIZE, ZMQ_RCVHWM: hwkit.sandbox.limits.channel_limits)
before it connects. zmq connects asynchronously: it retries a path until the kernel has bound it, and that
retry is unchecked, which is one reason the IPC directory is sealed before any student code runs; after a
connection drops, zmq does not make it again (ZMQ_RECONNECT_STOP). The heartbeat channel is never started
(liveness comes from the kernel's process), so no background thread reconnects on its own."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Callable

import zmq
from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import HBChannel
from jupyter_client.connect import channel_socket_types
from jupyter_client.kernelspec import KernelSpec

from hwkit.sandbox.ipc import CHANNELS
from hwkit.sandbox.limits import MB


@dataclass
class Connections:
    """How the grader connects to one kernel."""
    limits: dict[str, tuple[int, int]]                 # channel -> (ZMQ_MAXMSGSIZE, ZMQ_RCVHWM)
    check: Callable[[str], None] | None = None         # raises for an endpoint url the grader must not use
    on_ready: Callable[[], None] | None = None         # once the kernel answered kernel_info (the jail's seal)


def connect_socket(owner, channel: str, identity: bytes | None, connections: Connections) -> zmq.Socket:
    """jupyter_client's _create_connected_socket, with the endpoint checked and the socket bounded first."""
    url = owner._make_url(channel)
    if connections.check is not None:
        connections.check(url)
    if owner.curve_publickey is not None:
        raise RuntimeError("hwkit kernels do not use CurveZMQ")
    sock = owner.context.socket(channel_socket_types[channel])
    sock.linger = 1000
    max_bytes, hwm = connections.limits.get(channel, (MB, 8))
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
    sock.setsockopt(zmq.RCVHWM, hwm)
    try:         # a connection that drops is not made again by zmq on its own, through a path, unchecked
        sock.setsockopt(zmq.RECONNECT_STOP, zmq.RECONNECT_STOP_AFTER_DISCONNECT)
    except (AttributeError, zmq.ZMQError):  # an older libzmq: the seal alone keeps the path the kernel's socket
        pass
    if identity:
        sock.identity = identity
    sock.connect(url)
    return sock


class NoHeartbeat(HBChannel):
    """Made (jupyter_client's stop_channels asks it is_alive) but never started: a heartbeat thread would
    reconnect to the kernel's socket path on its own, unchecked."""

    def start(self) -> None:
        raise RuntimeError("hwkit kernel clients have no heartbeat channel: liveness comes from the process")


class HwkitKernelClient(AsyncKernelClient):
    """jupyter_client's wait_for_ready ends by draining iopub until 0.2 s pass without a message: 0.2 s of idle
    wall time per kernel, a quarter of a small notebook's grading. Ready here means: a kernel_info reply on
    shell, then that request's `idle` status on iopub (which proves the iopub subscription is live, the
    reason for the drain). A request whose iopub status was missed (slow subscriber) is simply repeated.
    Once ready, the manager's on_ready runs (a jail seals its IPC directory there)."""

    connections = Connections({})
    hb_channel_class = NoHeartbeat

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket:
        return connect_socket(self, channel, identity, self.connections)

    def start_channels(self, shell=True, iopub=True, stdin=True, hb=True, control=True) -> None:
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=False, control=control)

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        sent: set[str] = set()
        while True:
            sent.add(self.kernel_info())
            reply = await self._next_msg(self.shell_channel, min(1.0, deadline - time.monotonic()))
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                if await self._saw_idle(sent, min(time.monotonic() + 0.2, deadline)):
                    self._handle_kernel_info_reply(reply)
                    if self.connections.on_ready is not None:
                        self.connections.on_ready()
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    @staticmethod
    async def _next_msg(channel, wait: float):
        try:
            return await channel.get_msg(timeout=max(0.0, wait))
        except Empty:
            return None

    async def _saw_idle(self, requests: set[str], until: float) -> bool:
        while (left := until - time.monotonic()) > 0:
            msg = await self._next_msg(self.iopub_channel, left)
            if msg is None:
                return False
            if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                    and msg["parent_header"].get("msg_id") in requests):
                return True
        return False


class HwkitKernelManager(AsyncKernelManager):
    """What both runners add to jupyter_client: bounded, checked connections (see the module docstring), and
    a note of the kernel's state just before jupyter_client shuts it down or kills it (a kernel stopped that
    way did not die by signal)."""

    def __init__(self, *, connections: Connections, before_shutdown: Callable[[], None], **kwargs):
        super().__init__(**kwargs)
        self.client_factory = HwkitKernelClient
        self.connections = connections
        self._hwkit_before_shutdown = before_shutdown

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket:
        return connect_socket(self, channel, identity, self.connections)

    def client(self, **kwargs) -> HwkitKernelClient:
        """A client for the kernel, refused (EndpointRefused) unless every endpoint is what it should be."""
        if self.connections.check is not None:
            for channel in CHANNELS:
                if channel != "hb":
                    self.connections.check(self._make_url(channel))
        kc = super().client(**kwargs)
        kc.connections = self.connections
        return kc

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        self._hwkit_before_shutdown()
        await super()._async_shutdown_kernel(now=now, restart=restart)

    async def _async_kill_kernel(self, restart: bool = False) -> None:
        self._hwkit_before_shutdown()
        await super()._async_kill_kernel(restart=restart)

    shutdown_kernel = _async_shutdown_kernel
    kill_kernel = _async_kill_kernel


class JailKernelManager(HwkitKernelManager):
    """A KernelManager whose kernel is launched inside the jail over ipc sockets. `launch` is the jail's
    narrow interface: host_cwd, after_connection_file(path, ip, ports), start(kernel_cmd), before_shutdown()."""

    def __init__(self, *, launch, inner_argv: list[str], **kwargs):
        super().__init__(before_shutdown=launch.before_shutdown, **kwargs)
        self._hwkit_launch = launch
        self._hwkit_inner_argv = inner_argv

    @property
    def kernel_spec(self):
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(argv=list(self._hwkit_inner_argv), display_name="Python 3 (hwkit jail)",
                                           language="python", interrupt_mode="message", metadata={})
        return self._kernel_spec

    def format_kernel_cmd(self, extra_arguments=None):
        return list(self._hwkit_inner_argv) + list(extra_arguments or [])

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        ports = {channel: getattr(self, f"{channel}_port") for channel in CHANNELS}
        self._hwkit_launch.after_connection_file(Path(self.connection_file), self.ip, ports)

    # jupyter_client would unlink the connection file and the sockets by path, in a directory the kernel could
    # write to before the seal: the jail's teardown unmounts the whole IPC tmpfs instead.
    def cleanup_connection_file(self) -> None:
        pass

    def cleanup_ipc_files(self) -> None:
        pass

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        # nbclient's cwd (resources.metadata.path) and env are the host's: the jail sets its own.
        prov = self.provisioner
        proc = self._hwkit_launch.start(kernel_cmd)
        prov.process, prov.pid, prov.pgid, prov.cwd = proc, proc.pid, proc.pid, self._hwkit_launch.host_cwd
        self._reconcile_connection_info(prov.connection_info)
