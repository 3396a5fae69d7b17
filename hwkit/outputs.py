"""What an executed notebook keeps of its outputs: a cap per cell and a cap for the whole notebook, applied
as messages arrive (nbclient keeps every output it is given in memory); and only messages the grader can read.

Every path by which output enters the notebook goes through the caps: stream, display_data,
execute_result and error outputs, updates of an existing display (update_display_data and display_id
replacements), and comm messages, which are ignored (no widget state is kept). No output is exempt:
probe replies never travel as outputs (hwkit_kernel.runtime)."""
from __future__ import annotations

import time

from nbclient import NotebookClient
from jupyter_core.utils import ensure_async, run_sync
from nbformat.v4 import new_output

from hwkit_kernel.wire import scrub


OUTPUT_OVERHEAD = 200          # what each kept output costs besides its contents (an empty output is not free)


def _size(value, depth: int = 0) -> int:
    """Characters of a JSON value, keys included; absurdly deep values count as too large to keep."""
    if isinstance(value, str):
        return len(value)
    if depth > 64:
        return 1 << 40
    if isinstance(value, dict):
        return sum(len(str(k)) + _size(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_size(v, depth + 1) for v in value)
    return len(str(value))


def output_size(out) -> int:
    """What an output costs against the caps: every string in it, keys and names included, plus an overhead."""
    return OUTPUT_OVERHEAD + _size(out)


def _message_size(msg) -> int:
    return OUTPUT_OVERHEAD + _size(msg.get("content", {}))


def truncation_note(dropped: int, whole_notebook: bool = False) -> dict:
    why = "the notebook's output limit was reached" if whole_notebook else "output truncated"
    return new_output("stream", name="stderr", text=f"\n[hwkit: {why}, {dropped} more characters dropped]\n")


def _sanitise(out) -> None:
    """What no real output has: text that is not valid Unicode, a stream named other than stdout or stderr, a
    MIME type of absurd length."""
    scrub(out)
    if out.get("output_type") == "stream" and out.get("name") not in ("stdout", "stderr"):
        out["name"] = "stdout"
    for key in ("data", "metadata"):
        if isinstance(out.get(key), dict):
            for name in [k for k in out[key] if len(str(k)) > 128]:
                del out[key][name]


def _shrink(out, room: int) -> None:
    """Cut an output to about `room` characters: a stream keeps its start, an error its name, message start
    and last traceback lines, anything else becomes a note."""
    kind = out.get("output_type")
    if kind == "stream":
        out["text"] = out["text"][:room]
    elif kind == "error":            # the error's name, the start of its message, the end of its traceback
        out["ename"], out["evalue"] = str(out.get("ename", ""))[:100], str(out.get("evalue", ""))[:300]
        lines = [str(line) for line in out.get("traceback", [])]
        kept, left = [], max(room - 400, 0)
        for line in reversed(lines):
            if len(line) > left:
                break
            kept.insert(0, line)
            left -= len(line)
        out["traceback"] = kept or [line[-200:] for line in lines[-1:]]
    else:
        note = new_output("stream", name="stderr", text="[hwkit: an output too large to keep was dropped]\n")
        out.clear()
        out.update(note)


# ---- messages the grader can read ----------------------------------------------------------------------
# Code in the kernel can send anything on its sockets (get_ipython().kernel.session). What nbclient reads must
# parse and have the fields its type has; anything else is skipped like noise on the line, so a student's
# tampering costs that student's cell, never the grading.

_FIELDS = {          # msg_type -> {field: type it must have}
    "status": {"execution_state": str},
    "stream": {"name": str, "text": str},
    "display_data": {"data": dict},
    "update_display_data": {"data": dict},
    "execute_result": {"data": dict},
    "error": {"ename": str, "evalue": str, "traceback": list},
    "execute_reply": {"status": str},
}


def well_formed(msg) -> bool:
    """Does a parsed message have what nbclient reads of it, with the types it expects?"""
    if not isinstance(msg, dict) or not isinstance(msg.get("msg_type"), str):
        return False
    content, parent = msg.get("content"), msg.get("parent_header")
    if not isinstance(content, dict) or not isinstance(parent, dict) or not isinstance(msg.get("header"), dict):
        return False
    for field, kind in _FIELDS.get(msg["msg_type"], {}).items():
        if not isinstance(content.get(field), kind):
            return False
    transient = content.get("transient")
    if transient is not None and not (isinstance(transient, dict)
                                      and isinstance(transient.get("display_id", ""), str)):
        return False
    count = content.get("execution_count")
    if not (count is None or (isinstance(count, int) and not isinstance(count, bool))):
        return False
    if "metadata" in content and not isinstance(content["metadata"], dict):
        return False
    return msg["msg_type"] != "error" or all(isinstance(line, str) for line in content["traceback"])


def skip_unreadable(channel) -> None:
    """Make `channel.get_msg` pass over messages that cannot be parsed (or are unsigned) and messages that are
    not well formed, within the caller's timeout (queue.Empty when it passes, as before)."""
    read = channel.get_msg

    async def get_msg(timeout: float | None = None):
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if until is None else max(0.0, until - time.monotonic())
            try:
                msg = await ensure_async(read(timeout=left))
            except (ValueError, KeyError, TypeError, UnicodeError):     # not JSON, a bad signature, bad frames
                continue
            if well_formed(msg):
                return msg

    channel.get_msg = get_msg


class CappedClient(NotebookClient):
    """A NotebookClient that keeps about `cell_bytes` of output per cell and `notebook_bytes` in all; the
    rest is dropped as it arrives, and one note at the end of each cut cell says how much."""

    cell_bytes: int = 1_000_000
    notebook_bytes: int = 8_000_000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, store_widget_state=False, **kwargs)
        self.on_cell_executed = self._count_from_reply
        self.used_by_cell: dict[int, int] = {}
        self.dropped_by_cell: dict[int, int] = {}
        self.used_in_all = 0
        self.notebook_full = False

    def _room(self, cell_index: int) -> int:
        return min(self.cell_bytes - self.used_by_cell.get(cell_index, 0), self.notebook_bytes - self.used_in_all)

    def _spend(self, cell_index: int, size: int) -> None:
        self.used_by_cell[cell_index] = self.used_by_cell.get(cell_index, 0) + size
        self.used_in_all += size

    def _drop(self, cell_index: int, size: int) -> None:
        self.dropped_by_cell[cell_index] = self.dropped_by_cell.get(cell_index, 0) + size
        if self.notebook_bytes - self.used_in_all <= self.cell_bytes - self.used_by_cell.get(cell_index, 0):
            self.notebook_full = True

    def output(self, outs, msg, display_id, cell_index):
        if self._room(cell_index) <= 0:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                self._drop(cell_index, _message_size(msg))
            return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return None
        _sanitise(out)
        size, room = output_size(out), self._room(cell_index)
        if size > room:
            if room < 2 * OUTPUT_OVERHEAD and outs and outs[-1] is out and out.get("output_type") != "error":
                outs.pop()                         # no room left worth keeping: the whole output is dropped
                self._drop(cell_index, size)
                return None
            _shrink(out, max(room - OUTPUT_OVERHEAD - 100, 0))
            self._drop(cell_index, max(size - output_size(out), 0))
            size = output_size(out)
        self._spend(cell_index, size)
        return out

    def _update_display_id(self, display_id, msg):
        """A display update replaces outputs in place: it costs what it adds, and is dropped past the caps."""
        size = _message_size(msg)
        for cell_index, indices in self._display_id_map.get(display_id, {}).items():
            if indices and size * len(indices) > self._room(cell_index):
                self._drop(cell_index, size * len(indices))
                return
        for cell_index, indices in self._display_id_map.get(display_id, {}).items():
            self._spend(cell_index, size * len(indices))
        super()._update_display_id(display_id, msg)

    async def async_start_new_kernel_client(self):
        """The kernel client nbclient makes (again after a timed-out cell), reading only well-formed messages
        once it is ready (before any student code runs)."""
        kc = await super().async_start_new_kernel_client()
        skip_unreadable(kc.shell_channel)
        skip_unreadable(kc.iopub_channel)
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    @staticmethod
    def _count_from_reply(cell, cell_index, execute_reply) -> None:
        """The cell's execution count, from its execute_reply (hwkit's kernels send no execute_input echo)."""
        count = ((execute_reply or {}).get("content") or {}).get("execution_count")
        if isinstance(count, int) and not isinstance(count, bool):
            cell["execution_count"] = count

    def handle_comm_msg(self, outs, msg, cell_index):
        """Widgets are not rendered when grading: their messages are ignored and nothing of them is kept."""
        return None

    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        """Runs the cell as NotebookClient does; a cell that was cut ends with a note saying how much."""
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        finally:
            self.add_truncation_notes(cell, cell_index)

    execute_cell = run_sync(async_execute_cell)

    def add_truncation_notes(self, cell, cell_index: int) -> None:
        dropped = self.dropped_by_cell.pop(cell_index, 0)
        if dropped:
            cell.outputs.append(truncation_note(dropped, self.notebook_full))
