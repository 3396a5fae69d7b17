"""Start an IPython kernel with hwkit's runtime installed before any cell runs.

The cold jail runs `python -m hwkit_kernel -f CONN`; the warm zygote's fork calls main() in-process.
Settings come from the environment the jail sets: HWKIT_OUTPUT_LIMIT (characters of output per cell).

What a grader never reads is not made: the IPython history database (a kernel lives for one notebook; `In`,
`Out` and `_i` still work), the debug records of the kernel's logger (built for every message, then dropped by
its handler's level), the `execute_input` echo of every cell's code on iopub (the executed notebook takes each
cell's count from its execute_reply, hwkit.outputs), and the extra drawings of a figure the grader never looks at
(see flush_figures_first)."""
from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str]) -> None:
    from ipykernel.kernelapp import IPKernelApp

    from hwkit_kernel.outputs import cap_outputs
    from hwkit_kernel.runtime import Runtime

    app = IPKernelApp.instance()
    app.config.HistoryManager.enabled = False    # a kernel lives for one notebook: no SQLite history to keep
    app.config.InlineBackend.print_figure_kwargs = {"bbox_inches": None}   # see flush_figures_first
    app.initialize(argv)
    Runtime(app.kernel, app.shell.user_ns).install()
    limit = os.environ.get("HWKIT_OUTPUT_LIMIT", "")
    if limit.isdigit() and int(limit) > 0:
        cap_outputs(app.shell, int(limit))
    quiet_debug_log(app.log)
    app.kernel._publish_execute_input = _no_echo
    flush_figures_first(app.shell)
    app.start()


def quiet_debug_log(log: logging.Logger) -> None:
    """The logger's own level at its handlers' (traitlets leaves it at DEBUG and filters in the handlers): the
    same records are written, and none is built only to be dropped."""
    handlers = [h.level for h in log.handlers if h.level > logging.NOTSET]
    if handlers and log.level < min(handlers):
        log.setLevel(min(handlers))


def _no_echo(code, parent, execution_count) -> None:
    """No `execute_input` message: it echoes the code the grader has just sent."""


def flush_figures_first(shell) -> None:
    """With Jupyter's inline backend, pyplot's post-execute hook draws every changed figure on its Agg canvas and
    the inline backend's hook then draws it again to PNG, after it in the hook list. Running the inline backend's
    flush first (its own later run then has nothing to do) shows and closes the figures, so the first drawing,
    which nothing displays, is not made. Nothing changes unless the inline backend is active.

    The PNG itself is the whole figure (no `bbox_inches="tight"`, Jupyter's default, which lays the figure out
    once more to crop it): a figure is drawn once, which halves the kernel's figure work on the homework set;
    a label that sticks out of the figure is cut at its edge, as in a file saved with savefig's defaults."""

    def flush() -> None:
        inline = sys.modules.get("matplotlib_inline.backend_inline")
        if inline is not None and inline.flush_figures in shell.events.callbacks.get("post_execute", ()):
            inline.flush_figures()

    shell.events.register("post_execute", flush)
