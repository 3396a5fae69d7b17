"""LocalKernel: the Jail's interface without isolation, for self-check on a student's own machine (no
bubblewrap there) and for an explicit --no-sandbox. The kernel is the same: `python -m hwkit_kernel`, with
the output cap (HWKIT_OUTPUT_LIMIT) and the grader's bounded connections; it runs as the caller, in workdir."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_client.kernelspec import KernelSpec
from jupyter_core.utils import run_sync

from hwkit.sandbox.files import read_file_nofollow
from hwkit.sandbox.kernelmgr import Connections, HwkitKernelManager
from hwkit.sandbox.limits import RunReport, channel_limits
from hwkit.sandbox.spec import kernel_command, kernel_env
from hwkit.sandbox.visible import kernel_package_dir

if TYPE_CHECKING:
    from hwkit.course import SandboxLimits


class LocalKernelManager(HwkitKernelManager):
    def __init__(self, *, cwd: str, env: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self._hwkit_cwd, self._hwkit_env = cwd, env

    @property
    def kernel_spec(self):
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(argv=kernel_command(sys.executable, "{connection_file}"),
                                           display_name="Python 3 (hwkit)", language="python",
                                           interrupt_mode="message", metadata={})
        return self._kernel_spec

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["cwd"] = self._hwkit_cwd
        kw["env"] = {**kw.get("env", os.environ), **self._hwkit_env}
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL     # ipykernel echoes fd output there
        await super()._async_launch_kernel(kernel_cmd, **kw)


class LocalKernel:
    """Same interface as Jail, no isolation: for a student's own machine (self-check) and --no-sandbox."""

    def __init__(self, workdir: Path, limits: SandboxLimits, *, slot: int = 0, data_dir: Path | None = None):
        self.workdir = Path(workdir).resolve()
        self.limits = limits
        self.slot = slot
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.report = RunReport()
        self.km: LocalKernelManager | None = None
        self._made_data_link: Path | None = None
        self._exit_status: int | None = None
        self._exit_recorded = False

    def __enter__(self) -> "LocalKernel":
        self._link_data()
        # hwkit_kernel importable wherever hwkit is (installed, or run from a checkout)
        python_path = os.pathsep.join(p for p in (str(kernel_package_dir().parent), os.environ.get("PYTHONPATH"))
                                      if p)
        env = {**kernel_env(self.limits), "PYTHONPATH": python_path}
        self.km = LocalKernelManager(cwd=str(self.workdir), env=env, before_shutdown=self._record_exit,
                                     connections=Connections(channel_limits(self.limits)))
        return self

    def seal_ipc(self) -> None:
        """Nothing to seal: no jail, the kernel runs as the caller."""

    def _record_exit(self) -> None:
        proc = getattr(self.km.provisioner, "process", None) if self.km is not None else None
        if proc is not None and not self._exit_recorded:
            self._exit_recorded = True
            self._exit_status = proc.poll()

    def _link_data(self) -> None:
        if self.data_dir is None:
            return
        link = self.workdir / "data"
        if link.exists() or link.is_symlink():
            return
        try:
            os.symlink(self.data_dir, link, target_is_directory=True)
        except OSError:
            shutil.copytree(self.data_dir, link)
        self._made_data_link = link

    def read_file(self, relpath: str, max_bytes: int) -> bytes | None:
        return read_file_nofollow(self.workdir, relpath, max_bytes)

    def __exit__(self, *exc) -> None:
        km = self.km
        if km is not None:
            self._record_exit()
            if self._exit_status is not None and self._exit_status < 0:
                self.report.killed_signal = -self._exit_status
            proc = getattr(km.provisioner, "process", None)
            try:
                if km.has_kernel:
                    run_sync(km.shutdown_kernel)(now=True)
                else:
                    run_sync(km.cleanup_resources)()
            except Exception:  # the process is killed below if jupyter_client could not stop it
                if proc is not None and proc.poll() is None:
                    proc.kill()
        link = self._made_data_link
        if link is not None:
            if link.is_symlink():
                link.unlink()
            else:
                shutil.rmtree(link, ignore_errors=True)
