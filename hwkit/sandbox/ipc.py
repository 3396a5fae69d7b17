"""The kernel's IPC directory as the grader sees it: a small tmpfs holding the connection file and the zmq
socket files the kernel binds, shared with the jail at the same path.

Until the kernel is ready it must be the kernel's (ipykernel writes the connection file and binds its sockets
there); only hwkit_kernel's start-up code runs then. Once the kernel has answered kernel_info, before any
student code, seal() makes it the grader's: the directory and everything in it root-owned, read-only to the
kernel, so it can no longer rename, replace, add or chmod anything there. The grader connects only to
endpoints that check() accepts: one of the kernel's five socket paths, a socket (never a symlink) on this
tmpfs, the kernel's before the seal and, after it, the very inode that was sealed."""
from __future__ import annotations

import os
import stat
from pathlib import Path

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


class EndpointRefused(RuntimeError):
    """An IPC endpoint of a kernel is not what the jail created: the grader does not connect to it."""


class IpcDir:
    def __init__(self, path: Path, uid: int):
        self.path = Path(path)
        self.uid = uid
        self.dev = os.lstat(self.path).st_dev          # the tmpfs mounted there
        self.ip = ""
        self.ports: dict[str, int] = {}
        self.sealed: dict[Path, tuple[int, int]] = {}  # endpoint -> (device, inode) when sealed

    def expect(self, ip: str, ports: dict[str, int]) -> None:
        """The socket paths of the kernel: <ip>-<port> per channel (jupyter_client's ipc transport)."""
        if Path(ip).parent != self.path:
            raise EndpointRefused(f"the kernel's sockets would not be in {self.path}: {ip}")
        self.ip, self.ports = ip, {c: int(ports[c]) for c in CHANNELS}

    def endpoints(self) -> list[Path]:
        return [Path(f"{self.ip}-{self.ports[c]}") for c in CHANNELS]

    def check(self, url: str) -> None:
        """Raise EndpointRefused unless url is one of the kernel's endpoints, as it should be right now."""
        path = Path(url[len("ipc://"):]) if url.startswith("ipc://") else None
        if path is None or path not in self.endpoints():
            raise EndpointRefused(f"not an endpoint of this kernel: {url}")
        if self.sealed:
            self._check_dir(owner=0)
            st = self._lstat(path)
            if st is None or not stat.S_ISSOCK(st.st_mode) or st.st_uid != 0 \
                    or (st.st_dev, st.st_ino) != self.sealed[path]:
                raise EndpointRefused(f"{path} is not the socket that was sealed")
            return
        st = self._lstat(path)
        if st is not None:                              # before the kernel has bound it, there is nothing yet
            self._check_socket(path, st)

    def seal(self, connection_file: Path) -> None:
        """Make the directory the grader's (see the module docstring); idempotent. Raises EndpointRefused,
        leaving the directory root's, if an endpoint or the connection file is not what the jail expects."""
        if self.sealed:
            for path in self.endpoints():
                self.check(f"ipc://{path}")
            return
        os.chown(self.path, 0, 0)                       # first: the kernel can no longer chmod it back
        os.chmod(self.path, 0o755)
        found = {}
        for path in self.endpoints():
            st = self._lstat(path)
            if st is None:
                raise EndpointRefused(f"the kernel has no socket at {path}")
            self._check_socket(path, st)
            found[path] = (st.st_dev, st.st_ino)
        st = self._lstat(Path(connection_file))
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_dev != self.dev \
                or Path(connection_file).parent != self.path:
            raise EndpointRefused(f"{connection_file} is not a regular file of the IPC directory")
        for path in [*found, Path(connection_file)]:    # entries can no longer change: the directory is sealed
            os.chown(path, 0, 0, follow_symlinks=False)
        self._chmod_regular(Path(connection_file), 0o444)
        self._check_dir(owner=0)
        self.sealed = found

    @staticmethod
    def _chmod_regular(path: Path, mode: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _check_socket(self, path: Path, st: os.stat_result) -> None:
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != self.uid or st.st_dev != self.dev:
            raise EndpointRefused(f"{path} is not a socket of the kernel on its IPC tmpfs")

    def _check_dir(self, owner: int) -> None:
        st = os.lstat(self.path)
        if not stat.S_ISDIR(st.st_mode) or st.st_dev != self.dev or st.st_uid != owner \
                or st.st_mode & 0o022:
            raise EndpointRefused(f"{self.path} is no longer the sealed IPC directory")

    @staticmethod
    def _lstat(path: Path) -> os.stat_result | None:
        try:
            return os.lstat(path)
        except FileNotFoundError:
            return None
