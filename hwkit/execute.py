"""Run a notebook in a (sandboxed) kernel, then ask it the probes, and report what happened.

Errors are allowed: a broken cell costs only what depends on it. Each cell has a wall-time limit and
the whole run (probes included) has another; a cell that overruns is interrupted and the run goes on.
Output kept is capped per cell and per notebook (hwkit/outputs.py).

Probes do not run as cells: each is a `hwkit_probe_request` shell message answered by hwkit_kernel's
runtime with a `hwkit_probe_reply` (hwkit/probes.py), with its own time limit. A probe that overruns is
interrupted; a kernel that ignores the interrupt or dies costs the parts not yet probed their answers,
each with the reason."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from nbformat.v4.nbbase import random_cell_id
from nbformat.v4.nbjson import BytesEncoder
from nbformat.v4.rwbase import split_lines, strip_transient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from hwkit.course import SandboxLimits
from hwkit.notebooks import self_check_cells
from hwkit.outputs import CappedClient
from hwkit.records import Probe, Reply, Status
from hwkit.probes import REPLY, REQUEST, new_nonce, read_reply, request

# Execution statuses, worst first when several apply.
SELF_CHECK_NOTE = "[hwkit: the notebook's self-check cell is not run when the notebook is graded or checked]\n"
INTERRUPT_GRACE = 5.0        # seconds a probe gets to stop after the interrupt, before the kernel counts as stuck


@dataclass
class Execution:
    status: Status
    reason: str
    notebook: nbformat.NotebookNode | None
    replies: dict[str, Reply] = field(default_factory=dict)
    cell_errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    cpu_seconds: float | None = None


def kernel_for(sandbox: bool, workdir: Path, limits: SandboxLimits, slot: int, data_dir: Path | None,
               warm: bool = False):
    """The kernel a notebook runs in: a warm or cold jail, or (self-check without bwrap, --no-sandbox) a local one."""
    from hwkit import sandbox as sb

    if sandbox and warm:
        from hwkit.warm import WarmJail

        return WarmJail(workdir, limits, slot=slot, data_dir=data_dir)   # forked from this process's zygote
    cls = sb.Jail if sandbox else sb.LocalKernel
    return cls(workdir, limits, slot=slot, data_dir=data_dir)


def apply_run_report(execution: Execution, report) -> None:
    """Fold what the sandbox saw (after teardown) into the execution's status: a kernel that died or timed
    out because of a limit is reported as that limit."""
    if report is None:
        return
    execution.peak_memory_mb, execution.cpu_seconds = report.peak_memory_mb, report.cpu_seconds
    died_or_late = execution.status in (Status.KERNEL_DIED, Status.TIMEOUT)
    if died_or_late and report.memory_limit_hit:
        execution.status, execution.reason = Status.MEMORY_LIMIT, "the kernel ran out of its memory limit"
    elif died_or_late and report.cpu_limit_hit:
        execution.status, execution.reason = Status.CPU_LIMIT, "the kernel used up its CPU-time limit"
    elif execution.status == Status.KERNEL_DIED and getattr(report, "wall_limit_hit", False):
        execution.status, execution.reason = Status.TIMEOUT, "the kernel ran past the whole-notebook time limit and was stopped"
    elif execution.status == Status.KERNEL_DIED and report.killed_signal:
        execution.status, execution.reason = Status.KILLED, f"the kernel was killed by signal {report.killed_signal}"


def _error_summary(cell, index: int) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"cell {index}: {out.get('ename', 'Error')}: {str(out.get('evalue', ''))[:200]}"
    return None


def clean_for_execution(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Only the student's code and markdown, no old outputs; raw cells dropped.

    Built as plain nodes rather than through nbformat's constructors, which check every new cell against the
    schema (a Markdown cell would cost a validation, and a cell whose metadata the schema rejects would fail
    the whole grading): a Markdown cell costs a copy of three fields. Each cell keeps its id where that is a
    string no earlier cell has, else gets a new one, as nbformat's validation would repair it. Metadata are
    copied one level deep, so that writing the executed notebook never changes the submitted one's."""
    metadata = nb.get("metadata")
    fresh = NotebookNode(nbformat=4, nbformat_minor=nbformat.v4.nbformat_minor,
                         metadata=NotebookNode(metadata if isinstance(metadata, dict) else {}), cells=[])
    seen: set[str] = set()
    for cell in nb.get("cells", []):
        kind = cell.get("cell_type") if isinstance(cell, dict) else None
        if kind not in ("code", "markdown"):
            continue
        source, meta, cell_id = cell.get("source", ""), cell.get("metadata"), cell.get("id")
        if isinstance(source, list):
            source = "".join(map(str, source))
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            cell_id = random_cell_id()
        seen.add(cell_id)
        new = NotebookNode(id=cell_id, cell_type=kind, source=source if isinstance(source, str) else "",
                           metadata=NotebookNode(meta if isinstance(meta, dict) else {}))
        if kind == "code":
            new.execution_count, new.outputs = None, []
        fresh.cells.append(new)
    return fresh


def executed_text(nb: nbformat.NotebookNode) -> str:
    """The executed notebook as its file's text: nbformat's layout (indent 1, sorted keys, multi-line strings
    split into lines) without nbformat.writes' schema validation (which only logs) and deep copy. The lines are
    split in place, so this is the notebook's last use."""
    nb = strip_transient(split_lines(nb))
    return json.dumps(nb, cls=BytesEncoder, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False)


def run_notebook(nb: nbformat.NotebookNode, kernel, limits: SandboxLimits, probes: dict[str, Probe]) -> Execution:
    """`kernel` is an entered hwkit.sandbox.Jail or LocalKernel; its `km` is started here."""
    nb = clean_for_execution(nb)
    n_cells = len(nb.cells)
    client = CappedClient(nb, km=kernel.km, timeout=limits.cell_timeout, allow_errors=True, kernel_name="python3",
                          interrupt_on_timeout=False, record_timing=False, shutdown_kernel="immediate",
                          startup_timeout=60)
    client.cell_bytes, client.notebook_bytes = limits.output_bytes, limits.notebook_output_bytes
    status, reason, errors = Status.OK, "", []
    replies: dict[str, Reply] = {}
    timings = {"kernel_start": 0.0, "execute": 0.0, "probes": 0.0}
    t0 = time.perf_counter()
    deadline = t0 + limits.notebook_timeout
    try:
        with client.setup_kernel(cleanup_kc=True):
            seal = getattr(kernel, "seal_ipc", None)
            if seal is not None:
                seal()                    # before any student code: the kernel can no longer touch its endpoints
            timings["kernel_start"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            status, reason = _execute_cells(client, nb, limits, deadline, errors)
            timings["execute"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            if status != Status.KERNEL_DIED:
                replies = run_sync(_ask_all)(client, probes, limits, deadline)
            timings["probes"] = time.perf_counter() - t2
    except DeadKernelError:
        status, reason = Status.KERNEL_DIED, "the kernel died"
    except RuntimeError as exc:  # "Kernel died before replying to kernel_info" and start-up failures
        stderr = kernel.kernel_stderr()[-300:] if hasattr(kernel, "kernel_stderr") else ""
        status, reason = Status.KERNEL_DIED, f"the kernel could not start ({str(exc)[:200]}) {stderr}".strip()
    except TimeoutError as exc:
        status, reason = Status.TIMEOUT, f"the kernel did not respond ({str(exc)[:200]})"
    del nb.cells[n_cells:]
    for part in probes:
        replies.setdefault(part, Reply(False, error_type="NoReply", error_message=f"not graded: {reason or status}"))
    if status == Status.OK and errors:
        status, reason = Status.CELL_ERRORS, f"{len(errors)} cell(s) raised an error"
    if client.notebook_full:
        note = f"output beyond the notebook's {limits.notebook_output_bytes // 1_000_000} MB limit was dropped"
        reason = f"{reason}; {note}" if reason else note
    return Execution(status, reason, nb, replies, errors, timings)


def _execute_cells(client, nb, limits, deadline, errors) -> tuple[str, str]:
    status, reason = Status.OK, ""
    self_checks = self_check_cells(nb)
    for index, cell in enumerate(list(nb.cells)):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if index in self_checks:
            cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=SELF_CHECK_NOTE))
            continue
        remaining = deadline - time.perf_counter()
        if remaining <= 1:
            return Status.TIMEOUT, f"the notebook ran past its {limits.notebook_timeout}s limit"
        client.timeout = int(max(1, min(limits.cell_timeout, remaining)))
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            limit = client.timeout
            status, reason = Status.TIMEOUT, f"cell {index} ran past its {limit}s limit and was interrupted"
            errors.append(f"cell {index}: timed out")
            _interrupt(client)
            _resync(client, nb)
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stderr", text=f"[hwkit: this cell ran past its {limit}s limit and was interrupted]\n"))
            continue
        except DeadKernelError:
            errors.append(f"cell {index}: the kernel died")
            return Status.KERNEL_DIED, f"the kernel died while running cell {index}"
        summary = _error_summary(cell, index)
        if summary:
            errors.append(summary)
            if ": MemoryError" in summary and status == Status.OK:
                status, reason = Status.MEMORY_LIMIT, f"cell {index} ran out of memory (MemoryError)"
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


# ---- probes ------------------------------------------------------------------------------------------

async def _ask_all(client, probes: dict[str, Probe], limits: SandboxLimits, deadline: float) -> dict[str, Reply]:
    """Each probe in turn, with the cell limit (and what is left of the notebook's) as its own limit."""
    replies: dict[str, Reply] = {}
    stopped: Reply | None = None
    for key, probe in probes.items():
        if stopped is not None:
            replies[key] = stopped
            continue
        remaining = deadline - time.perf_counter()
        if remaining <= 1:
            replies[key] = Reply(False, error_type="Timeout", error_message="no time was left to check this part")
            continue
        replies[key], responsive = await _ask(client, probe, min(limits.cell_timeout, remaining))
        if not responsive:
            stopped = Reply(False, error_type="KernelStopped",
                            error_message="not checked: the kernel stopped responding while an earlier part was checked")
    return replies


async def _ask(client, probe: Probe, limit: float) -> tuple[Reply, bool]:
    """Send one probe and wait for its reply. Returns the reply and whether the kernel can take another."""
    kc, km = client.kc, client.km
    nonce = new_nonce()
    content, buffers = request(probe, nonce)
    msg = kc.session.msg(REQUEST, content)
    kc.session.send(kc.shell_channel.socket, msg, buffers=buffers)
    reply = await _await_reply(kc, km, msg["header"]["msg_id"], nonce, limit)
    if reply is not None:
        return reply, True
    if not await km.is_alive():
        return Reply(False, error_type="KernelDied", error_message="the kernel died while this part was checked"), False
    try:
        await km.interrupt_kernel()
    except Exception:  # the kernel is going away; the wait below finds out
        pass
    late = await _await_reply(kc, km, msg["header"]["msg_id"], nonce, INTERRUPT_GRACE)
    timed_out = Reply(False, error_type="Timeout", error_message=f"checking this part took over {limit:.0f}s")
    if late is None:
        return timed_out, False
    return (late if late.ok else timed_out), True


async def _await_reply(kc, km, msg_id: str, nonce: str, limit: float) -> Reply | None:
    """This request's reply, or None when the limit passes or the kernel dies first. Other shell messages
    (late replies to earlier requests) and anything malformed are skipped."""
    until = time.monotonic() + limit
    while (left := until - time.monotonic()) > 0:
        try:
            msg = await kc.shell_channel.get_msg(timeout=min(left, 1.0))
        except Exception:  # Empty after the wait, or a message that could not be read: look again
            if not await km.is_alive():
                return None
            continue
        if msg.get("msg_type") != REPLY or msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        found = read_reply(msg.get("content"), msg.get("buffers") or [], nonce)
        if found is not None:
            return found
    return None
