"""Run a notebook in a (sandboxed) kernel, then send the probes, and report what happened.

Errors are allowed: a broken cell costs only what depends on it. Each cell has a wall-time limit and
the whole run (probes included) has another; a cell that overruns is interrupted and the run goes on.
Output kept per cell is capped, and the probe replies are never kept in the notebook returned."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from hwkit.checks import Reply
from hwkit.course import SandboxLimits
from hwkit.problem import Probe
from hwkit.probes import decode_reply, find_reply, new_nonce, probe_batch_source
from hwkit.sandbox import OutputCapMixin

# Execution statuses, worst first when several apply.
OK, CELL_ERRORS, TIMEOUT, CPU_LIMIT, MEMORY_LIMIT, KILLED, KERNEL_DIED, INVALID = (
    "ok", "cell errors", "timeout", "cpu limit", "memory limit", "killed", "kernel died", "invalid notebook")


@dataclass
class Execution:
    status: str
    reason: str
    notebook: nbformat.NotebookNode | None
    replies: dict[str, Reply] = field(default_factory=dict)
    cell_errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    cpu_seconds: float | None = None


class CappedClient(OutputCapMixin, NotebookClient):
    """A NotebookClient that keeps about `max_output_bytes` of output per cell (probe replies exempt)."""


def apply_run_report(execution: Execution, report) -> None:
    """Fold what the sandbox saw (after teardown) into the execution's status: a kernel that died or timed
    out because of a limit is reported as that limit."""
    if report is None:
        return
    execution.peak_memory_mb, execution.cpu_seconds = report.peak_memory_mb, report.cpu_seconds
    died_or_late = execution.status in (KERNEL_DIED, TIMEOUT)
    if died_or_late and report.memory_limit_hit:
        execution.status, execution.reason = MEMORY_LIMIT, "the kernel ran out of its memory limit"
    elif died_or_late and report.cpu_limit_hit:
        execution.status, execution.reason = CPU_LIMIT, "the kernel used up its CPU-time limit"
    elif execution.status == KERNEL_DIED and getattr(report, "wall_limit_hit", False):
        execution.status, execution.reason = TIMEOUT, "the kernel ran past the whole-notebook time limit and was stopped"
    elif execution.status == KERNEL_DIED and report.killed_signal:
        execution.status, execution.reason = KILLED, f"the kernel was killed by signal {report.killed_signal}"


def _error_summary(cell, index: int) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"cell {index}: {out.get('ename', 'Error')}: {str(out.get('evalue', ''))[:200]}"
    return None


def clean_for_execution(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Only the student's code and markdown, no old outputs; raw cells dropped."""
    fresh = nbformat.v4.new_notebook(metadata=nb.get("metadata", {}))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            new = nbformat.v4.new_code_cell(cell.get("source", ""), metadata=cell.get("metadata", {}))
        elif cell.get("cell_type") == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.get("source", ""), metadata=cell.get("metadata", {}))
        else:
            continue
        if cell.get("id"):
            new.id = cell["id"]
        fresh.cells.append(new)
    return fresh


def run_notebook(nb: nbformat.NotebookNode, kernel, limits: SandboxLimits, probes: dict[str, Probe]) -> Execution:
    """`kernel` is an entered hwkit.sandbox.Jail or LocalKernel; its `km` is started here."""
    nb = clean_for_execution(nb)
    n_cells = len(nb.cells)
    client = CappedClient(nb, km=kernel.km, timeout=limits.cell_timeout, allow_errors=True, kernel_name="python3",
                          interrupt_on_timeout=False, record_timing=False, shutdown_kernel="immediate",
                          startup_timeout=60)
    client.max_output_bytes = limits.output_bytes
    status, reason, errors = OK, "", []
    replies: dict[str, Reply] = {}
    timings = {"kernel_start": 0.0, "execute": 0.0, "probes": 0.0}
    t0 = time.perf_counter()
    deadline = t0 + limits.notebook_timeout
    try:
        with client.setup_kernel(cleanup_kc=True):
            timings["kernel_start"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            status, reason = _execute_cells(client, nb, limits, deadline, errors)
            timings["execute"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            if status not in (KERNEL_DIED,):
                replies = _run_probes(client, nb, probes, limits, deadline)
            timings["probes"] = time.perf_counter() - t2
    except DeadKernelError:
        status, reason = KERNEL_DIED, "the kernel died"
    except RuntimeError as exc:  # "Kernel died before replying to kernel_info" and start-up failures
        stderr = kernel.kernel_stderr()[-300:] if hasattr(kernel, "kernel_stderr") else ""
        status, reason = KERNEL_DIED, f"the kernel could not start ({str(exc)[:200]}) {stderr}".strip()
    except TimeoutError as exc:
        status, reason = TIMEOUT, f"the kernel did not respond ({str(exc)[:200]})"
    del nb.cells[n_cells:]
    for part in probes:
        replies.setdefault(part, Reply(False, error_type="NoReply", error_message=f"not graded: {reason or status}"))
    if status == OK and errors:
        status, reason = CELL_ERRORS, f"{len(errors)} cell(s) raised an error"
    return Execution(status, reason, nb, replies, errors, timings)


def _execute_cells(client, nb, limits, deadline, errors) -> tuple[str, str]:
    status, reason = OK, ""
    for index, cell in enumerate(list(nb.cells)):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        remaining = deadline - time.perf_counter()
        if remaining <= 1:
            return TIMEOUT, f"the notebook ran past its {limits.notebook_timeout}s limit"
        client.timeout = int(max(1, min(limits.cell_timeout, remaining)))
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            limit = client.timeout
            status, reason = TIMEOUT, f"cell {index} ran past its {limit}s limit and was interrupted"
            errors.append(f"cell {index}: timed out")
            _interrupt(client)
            _resync(client, nb)
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stderr", text=f"[hwkit: this cell ran past its {limit}s limit and was interrupted]\n"))
            continue
        except DeadKernelError:
            errors.append(f"cell {index}: the kernel died")
            return KERNEL_DIED, f"the kernel died while running cell {index}"
        client.add_truncation_notes(cell, index)
        summary = _error_summary(cell, index)
        if summary:
            errors.append(summary)
            if ": MemoryError" in summary and status == OK:
                status, reason = MEMORY_LIMIT, f"cell {index} ran out of memory (MemoryError)"
    return status, reason


def _interrupt(client) -> None:
    try:
        run_sync(client.km.interrupt_kernel)()  # the sandbox's kernel managers are async
    except Exception:  # the kernel may already be gone; the next cell will find out
        pass


def _resync(client, nb) -> None:
    """After a cell timed out, nbclient's cancelled output reader leaves the iopub channel deaf: connect a
    fresh kernel client, then run one empty cell so the subscription is live before the next student cell."""
    try:
        client.kc.stop_channels()
        client.kc = None
        client.start_new_kernel_client()
    except Exception:  # the kernel may be gone; the next cell will report it
        return
    nb.cells.append(nbformat.v4.new_code_cell("pass"))
    client.timeout = 10
    try:
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    except (CellTimeoutError, DeadKernelError):
        pass
    finally:
        del nb.cells[-1]


def _run_probes(client, nb, probes: dict[str, Probe], limits, deadline) -> dict[str, Reply]:
    """One probe cell per problem (one round trip instead of one per part). A probe of a batch that got no
    reply (the batch ran past the cell limit, or student code cut it short) runs again alone, with its own
    limit: a batch never costs a part its answer, at worst a hanging part costs two cell limits of time."""
    replies: dict[str, Reply] = {}
    for batch in probe_batches(probes):
        alive = _run_probe_cell(client, nb, [(key, probes[key]) for key in batch], limits, deadline, replies)
        for key in batch:
            if not alive:
                return replies
            if key not in replies:
                alive = _run_probe_cell(client, nb, [(key, probes[key])], limits, deadline, replies)
    return replies


def probe_batches(probes: dict[str, Probe]) -> list[list[str]]:
    """Probe keys ("problem/part") grouped by problem, in order."""
    batches: dict[str, list[str]] = {}
    for key in probes:
        batches.setdefault(key.split("/", 1)[0], []).append(key)
    return list(batches.values())


def _run_probe_cell(client, nb, batch: list[tuple[str, Probe]], limits, deadline, replies: dict[str, Reply]) -> bool:
    """Run probes in one cell and file the replies it got. A single probe always gets a reply (its answer,
    its error, or why there is none); in a batch, probes without a reply are left out for a re-run.
    Returns False if the kernel died."""
    single = len(batch) == 1
    remaining = deadline - time.perf_counter()
    if remaining <= 1:
        for key, _ in batch:
            replies[key] = Reply(False, error_type="Timeout", error_message="no time was left to check this part")
        return True
    nonces = [new_nonce() for _ in batch]
    cell = nbformat.v4.new_code_cell(probe_batch_source([(probe, nonce) for (_, probe), nonce in zip(batch, nonces)]))
    nb.cells.append(cell)
    client.timeout = int(max(1, min(limits.cell_timeout, remaining)))
    alive, timed_out = True, False
    try:
        client.execute_cell(cell, len(nb.cells) - 1)
    except CellTimeoutError:
        timed_out = True
        _interrupt(client)
        _resync(client, nb)
    except DeadKernelError:
        alive = False
    for (key, _), nonce in zip(batch, nonces):
        found = find_reply(cell.outputs, nonce)
        if found is not None:
            replies[key] = found
        elif not alive:
            replies[key] = Reply(False, error_type="KernelDied", error_message="the kernel died while this part was checked")
            break                       # the first without a reply is the one that was running
        elif single:
            replies[key] = (Reply(False, error_type="Timeout", error_message=f"checking this part took over {client.timeout}s")
                            if timed_out else decode_reply(cell.outputs, nonce))
    return alive
