"""Start an IPython kernel with hwkit's runtime installed before any cell runs.

The cold jail runs `python -m hwkit_kernel -f CONN`; the warm zygote's fork calls main() in-process.
Settings come from the environment the jail sets: HWKIT_OUTPUT_LIMIT (characters of output per cell)."""
from __future__ import annotations

import os


def main(argv: list[str]) -> None:
    from ipykernel.kernelapp import IPKernelApp

    from hwkit_kernel.outputs import cap_outputs
    from hwkit_kernel.runtime import Runtime

    app = IPKernelApp.instance()
    app.initialize(argv)
    Runtime(app.kernel, app.shell.user_ns).install()
    limit = os.environ.get("HWKIT_OUTPUT_LIMIT", "")
    if limit.isdigit() and int(limit) > 0:
        cap_outputs(app.shell, int(limit))
    app.start()
