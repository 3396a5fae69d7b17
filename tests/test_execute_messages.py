"""What the grader records when a student's notebook runs, told by the messages its kernel sends: the executor
(hwkit.execute.run_notebook) driven by a fake kernel whose channels the test scripts (tests/fake_kernel.py),
so that timeouts, dead kernels, stray messages, output floods and probe replies are tested without
bubblewrap or a kernel process. Probes are answered by the real hwkit_kernel runtime, over the real wire."""
from __future__ import annotations

import asyncio
import time

import nbformat
import numpy as np
import pytest
from jupyter_core.utils import ensure_event_loop

from hwkit import execute
from hwkit.checks import cases_unanswered, unanswered
from hwkit.course import SandboxLimits
from hwkit.execute import SELF_CHECK_NOTE, run_notebook
from hwkit.outputs import output_size
from hwkit.probes import MAX_REPLY_BYTES, call_function, read_variable
from hwkit.records import KernelModule, Status
from tests.fake_kernel import (ANOTHER_REQUEST, FakeKernel, answers, answers_the_previous_probe,
                               captures_output_in_a_widget, dies, hangs, prints, publishes,
                               publishes_for_another_request, raises, replies_for_another_request,
                               sends_unreadable_frames, shows, takes, updates)

# A problem's kernel-side probe code, as templates/<problem>/kernel.py would hold it.
LENET = KernelModule("lenet", '''
def conv_weights(student, inputs):
    return student.value("conv_weights")

def fc_weights(student, inputs):
    return student.value("fc_weights")

def forward(student, inputs):
    return student.function("forward")(inputs["x"])

def param_count(student, inputs):
    return student.value("param_count")
''')


def code(source: str):
    return nbformat.v4.new_code_cell(source)


def markdown(source: str):
    return nbformat.v4.new_markdown_cell(source)


def run(kernel: FakeKernel, cells: list, probes: dict | None = None, **limits):
    nb = nbformat.v4.new_notebook(cells=cells)
    return run_notebook(nb, kernel, SandboxLimits(**limits), probes or {})


def texts(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs)


def end_what_nbclient_left_running() -> None:
    """A cell that raises out of nbclient leaves its kernel-alive poller pending on the thread's event loop: it
    is ended here rather than failing in a later test, or being finalised inside pytest's report (where, on
    CPython 3.11.7, a finaliser run during ast.parse made the report fail with SystemError)."""
    loop = ensure_event_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def kept(cell) -> int:
    """What a cell's outputs cost against the caps, hwkit's own notes left out."""
    return sum(output_size(out) for out in cell.outputs if "[hwkit:" not in str(out.get("text", "")))


# ---- cells -------------------------------------------------------------------------------------------

def test_a_notebooks_outputs_are_kept_and_a_cell_that_raises_is_recorded():
    """A student's notebook prints, shows a figure, and has one cell that raises: the outputs are kept, the
    error is recorded against its cell, the cells after it still run, and the parts are still checked."""
    kernel = FakeKernel(cells={"plt.show()": [shows({"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})]})
    execution = run(kernel, [code("x = 3\nprint('x is', x)"), code("plt.show()"), code("1 / 0"), code("y = x + 1")],
                    {"y": read_variable("y")})
    assert execution.status == Status.CELL_ERRORS
    assert execution.reason == "1 cell(s) raised an error"
    assert execution.cell_errors == ["cell 2: ZeroDivisionError: division by zero"]
    cells = execution.notebook.cells
    assert texts(cells[0]) == "x is 3\n"
    assert cells[1].outputs[0]["data"]["image/png"] == "iVBORw0KGgo="
    assert cells[2].outputs[-1]["ename"] == "ZeroDivisionError"
    assert execution.replies["y"].ok and execution.replies["y"].value == 4


def test_markdown_empty_and_self_check_cells_are_not_sent_to_the_kernel():
    """Only the student's code runs: Markdown, blank cells and the notebook's own `hw.check()` cell (which
    would start another check) are never sent; the self-check cell says why it did not run."""
    kernel = FakeKernel()
    execution = run(kernel, [markdown("# LeNet\nprint('not code')"), code("   \n"), code("a = 1"),
                             code("import hwkit.student as hw\nhw.check()"), code("b = 2")])
    assert kernel.executed == ["a = 1", "b = 2"]
    assert execution.status == Status.OK and execution.cell_errors == []
    assert texts(execution.notebook.cells[3]) == SELF_CHECK_NOTE
    assert len(execution.notebook.cells) == 5


def test_the_kernel_is_sealed_before_any_student_code_runs():
    kernel = FakeKernel()
    run(kernel, [code("a = 1")])
    assert kernel.log[:3] == ["start", "sealed", "execute a = 1"]
    assert kernel.log[-1] == "shutdown"


def test_a_cell_that_runs_out_of_memory_is_reported_as_the_memory_limit():
    kernel = FakeKernel(cells={"big = torch.zeros(10**12)": [raises("MemoryError", "")]})
    execution = run(kernel, [code("a = 1"), code("big = torch.zeros(10**12)"), code("c = 3")])
    assert execution.status == Status.MEMORY_LIMIT
    assert execution.reason == "cell 1 ran out of memory (MemoryError)"
    assert kernel.executed[-1] == "c = 3"


def test_a_cell_that_never_finishes_is_interrupted_and_the_later_cells_still_run():
    """`while True: pass` in cell 1: at the cell limit the kernel is interrupted, the cell is marked, the
    notebook goes on with cell 2, and the parts are checked (the one cell 2 answers included)."""
    kernel = FakeKernel(cells={"while True: pass": [hangs()]})
    execution = run(kernel, [code("x = 1"), code("while True: pass"), code("y = 2")],
                    {"y": read_variable("y")}, cell_timeout=1)
    assert execution.status == Status.TIMEOUT
    assert execution.reason == "cell 1 ran past its 1s limit and was interrupted"
    assert execution.cell_errors == ["cell 1: timed out"]
    assert kernel.log.index("interrupt") == kernel.log.index("execute while True: pass") + 1
    assert kernel.executed[-1] == "y = 2"
    assert texts(execution.notebook.cells[1]).endswith("[hwkit: this cell ran past its 1s limit and was interrupted]\n")
    assert execution.replies["y"].ok and execution.replies["y"].value == 2
    assert len(execution.notebook.cells) == 3          # the executor's own resync cell is not kept


def test_an_interrupted_cells_late_traceback_is_not_put_in_the_next_cell():
    """The interrupted cell's KeyboardInterrupt arrives after the grader moved on: it belongs to no later cell."""
    kernel = FakeKernel(cells={"train(epochs=10**6)": [prints("epoch 1\n"), hangs(stops_after=0.3)]})
    execution = run(kernel, [code("train(epochs=10**6)"), code("print('done')")], cell_timeout=1)
    assert execution.cell_errors == ["cell 0: timed out"]
    assert execution.notebook.cells[1].outputs == [nbformat.v4.new_output("stream", name="stdout", text="done\n")]
    assert "KeyboardInterrupt" not in str(execution.notebook.cells)


def test_messages_for_other_requests_are_not_attributed_to_the_running_cell():
    """While a cell runs, the kernel also sends messages whose parent is another request (an 'idle', an error,
    output, a failed execute_reply): none of them ends the cell early or lands in it."""
    kernel = FakeKernel(cells={"fit()": [
        publishes_for_another_request("stream", {"name": "stdout", "text": "not this cell's\n"}),
        publishes_for_another_request("error", {"ename": "RuntimeError", "evalue": "elsewhere", "traceback": []}),
        publishes_for_another_request("status", {"execution_state": "idle"}),
        replies_for_another_request("execute_reply", {"status": "error", "ename": "RuntimeError", "evalue": "elsewhere",
                                                      "traceback": []}),
        takes(0.2), prints("loss 0.1\n")]})
    execution = run(kernel, [code("fit()"), code("print('after')")])
    assert execution.status == Status.OK and execution.cell_errors == []
    assert texts(execution.notebook.cells[0]) == "loss 0.1\n"
    assert texts(execution.notebook.cells[1]) == "after\n"


@pytest.mark.parametrize("message", [
    sends_unreadable_frames("iopub"), sends_unreadable_frames("shell"),
    publishes("stream", {"name": "stdout"}), publishes("status", {}),
    publishes("error", {"ename": "E", "evalue": "v", "traceback": "not a list"}),
    publishes("display_data", {"data": ["not", "a", "dict"]}),
    publishes("stream", {"name": "stdout", "text": "x", "execution_count": "7"}),
    publishes("display_data", {"data": {}, "transient": "not a dict"})],
    ids=["unparsable iopub", "unparsable shell", "stream without text", "status without state",
         "traceback not a list", "data not a dict", "execution count a string", "transient not a dict"])
def test_a_message_the_grader_cannot_read_costs_the_student_not_the_grader(message):
    """Code in the kernel can send anything on its sockets (get_ipython().kernel.session): a message of its cell
    the grader cannot read (not JSON, or without the fields its type has) must not make the grading fail; the
    cells after it run, and the parts are checked."""
    kernel = FakeKernel(cells={"tamper()": [message, prints("x\n")]})
    try:
        execution = run(kernel, [code("tamper()"), code("y = 1")], {"y": read_variable("y")}, cell_timeout=2)
    finally:
        end_what_nbclient_left_running()
    assert kernel.executed[-1] == "y = 1"
    assert execution.replies["y"].value == 1


def test_the_whole_notebook_has_a_deadline_and_parts_left_without_time_say_so():
    """Each cell is within its own limit, but together they use up the notebook's: the cells after are not
    sent, and every part gets a timeout reply saying no time was left."""
    kernel = FakeKernel(cells={"load_data()": [takes(0.5)], "train()": [takes(0.6)]})
    execution = run(kernel, [code("load_data()"), code("train()"), code("later = 1")],
                    {"later": read_variable("later")}, cell_timeout=5, notebook_timeout=2)
    assert execution.status == Status.TIMEOUT
    assert execution.reason == "the notebook ran past its 2s limit"
    assert execution.cell_errors == []
    assert kernel.executed == ["load_data()", "train()"]
    reply = execution.replies["later"]
    assert not reply.ok
    assert (reply.error_type, reply.error_message) == ("Timeout", "no time was left to check this part")
    assert kernel.probe_requests == []


def test_a_kernel_that_dies_in_a_cell_costs_every_part_its_answer_with_the_reason():
    """os._exit() (or the OOM killer) in cell 1: the run stops there, no part is asked, and each part's reply
    says why it was not graded."""
    kernel = FakeKernel(cells={"import os; os._exit(1)": [prints("bye\n"), dies()]})
    execution = run(kernel, [code("x = 1"), code("import os; os._exit(1)"), code("y = 2")],
                    {"x": read_variable("x"), "y": read_variable("y")})
    assert execution.status == Status.KERNEL_DIED
    assert execution.reason == "the kernel died while running cell 1"
    assert execution.cell_errors == ["cell 1: the kernel died"]
    assert kernel.executed == ["x = 1", "import os; os._exit(1)"]
    assert kernel.probe_requests == []
    for reply in execution.replies.values():
        assert (reply.ok, reply.error_type) == (False, "NoReply")
        assert reply.error_message == "not graded: the kernel died while running cell 1"


def test_a_kernel_that_dies_while_a_part_is_checked_costs_that_part_and_the_rest():
    """The kernel dies in the forward pass of the second part: the grader notices within seconds (not at the
    part's limit), that part says the kernel died, and the parts after it are not asked."""
    kernel = FakeKernel(probes={"forward": [dies()]})
    started = time.monotonic()
    execution = run(kernel, [code("conv_weights = [1, 2]\ndef forward(x):\n    return x")],
                    {"conv": LENET.probe("conv_weights"), "forward": LENET.probe("forward", {"x": 1}),
                     "count": LENET.probe("param_count")}, cell_timeout=30)
    assert time.monotonic() - started < 10
    assert execution.replies["conv"].value == [1, 2]
    forward, count = execution.replies["forward"], execution.replies["count"]
    assert (forward.error_type, forward.error_message) == ("KernelDied", "the kernel died while this part was checked")
    assert count.error_type == "KernelStopped"
    assert count.error_message == "not checked: the kernel stopped responding while an earlier part was checked"
    assert [r.function for r in kernel.probe_requests] == ["conv_weights", "forward"]


def test_a_kernel_that_cannot_start_is_reported_with_what_it_printed():
    kernel = FakeKernel(start_error="Kernel died before replying to kernel_info",
                        stderr="ModuleNotFoundError: No module named 'torch'")
    execution = run(kernel, [code("import torch")], {"x": read_variable("x")})
    assert execution.status == Status.KERNEL_DIED
    assert execution.reason.startswith("the kernel could not start (Kernel died before replying to kernel_info)")
    assert execution.reason.endswith("No module named 'torch'")
    assert kernel.executed == []
    assert execution.replies["x"].error_type == "NoReply"


# ---- output caps -------------------------------------------------------------------------------------

def test_a_cell_flooding_its_output_keeps_its_share_and_a_note_of_what_was_dropped():
    """A training loop printing every step: the cell keeps about its cap, ends with a note of how much was
    dropped, and the next cell has its own share."""
    kernel = FakeKernel(cells={"train()": [prints(f"step {i:5d} " + "." * 1990 + "\n") for i in range(100)]})
    execution = run(kernel, [code("train()"), code("print('accuracy 0.9')")], output_bytes=20_000)
    flooded, after = execution.notebook.cells
    assert 10_000 < kept(flooded) <= 20_000
    note = flooded.outputs[-1]["text"]
    assert note.startswith("\n[hwkit: output truncated, ") and note.endswith(" more characters dropped]\n")
    assert int(note.split(", ")[1].split()[0]) > 150_000
    assert texts(after) == "accuracy 0.9\n"
    assert execution.status == Status.OK and execution.reason == ""


def test_the_notebook_cap_is_shared_by_all_cells():
    """Every cell stays under its own cap, but together they pass the notebook's: the rest is dropped, the
    last cell says the notebook's limit was reached, and the run's reason says so too."""
    flood = [prints("#" * 100_000) for _ in range(15)]
    kernel = FakeKernel(cells={f"plot({i})": flood for i in range(3)})
    execution = run(kernel, [code(f"plot({i})") for i in range(3)],
                    output_bytes=1_000_000, notebook_output_bytes=2_000_000)
    assert sum(kept(cell) for cell in execution.notebook.cells) <= 2_000_000
    assert "the notebook's output limit was reached" in execution.notebook.cells[2].outputs[-1]["text"]
    assert execution.reason == "output beyond the notebook's 2 MB limit was dropped"


def test_display_updates_cannot_multiply_an_output_past_the_caps():
    """A progress display shown 20 times with one display_id, then updated from later cells: an update that
    fits replaces all 20; one that would make 20 copies of 300 kB is dropped, and they keep the last that fit."""
    kernel = FakeKernel(cells={
        "bar = display('0%', display_id=True)": [shows({"text/plain": "0%"}, display_id="bar")] * 20,
        "bar.update('50%')": [updates({"text/plain": "50%"}, display_id="bar")],
        "bar.update(huge)": [updates({"text/plain": "9" * 300_000}, display_id="bar")]})
    execution = run(kernel, [code("bar = display('0%', display_id=True)"), code("bar.update('50%')"),
                             code("bar.update(huge)")])
    shown = execution.notebook.cells[0].outputs
    assert len(shown) == 20
    assert all(out["data"]["text/plain"] == "50%" for out in shown)
    assert sum(kept(cell) for cell in execution.notebook.cells) <= 1_000_000


def test_output_printed_into_a_widget_is_kept_in_the_cell_under_the_caps():
    """`with ipywidgets.Output():` would let a widget collect output past the caps: widget messages are
    ignored, what the cell prints stays in the cell, capped, and no widget state is kept."""
    kernel = FakeKernel(cells={"with out: train()": [captures_output_in_a_widget()]
                               + [prints("loss " + "." * 995 + "\n") for _ in range(100)]})
    execution = run(kernel, [code("with out: train()")], output_bytes=20_000)
    cell = execution.notebook.cells[0]
    assert texts(cell).startswith("loss ....")
    assert kept(cell) <= 20_000
    assert "more characters dropped" in cell.outputs[-1]["text"]
    assert "widgets" not in execution.notebook.metadata


# ---- probe replies -----------------------------------------------------------------------------------

def test_parts_are_answered_by_the_kernels_runtime_with_arrays_as_binary_buffers():
    """The grader's arrays reach the student's function as .npy buffers, and the arrays it returns come back
    the same way: values, dtypes and shapes as the notebook computed them."""
    kernel = FakeKernel()
    execution = run(kernel, [code("import numpy as np\nconv_weights = np.arange(6, dtype=np.float32).reshape(2, 3)\n"
                                  "def double(x):\n    return 2 * x")],
                    {"weights": LENET.probe("conv_weights"),
                     "double": call_function("double", [[np.array([1.5, -2.0])]])})
    weights = execution.replies["weights"].value
    assert weights.dtype == np.float32 and weights.shape == (2, 3) and weights[1, 2] == 5
    assert len(kernel.probe_requests[1].buffers) == 1                  # the grader's input travelled as a buffer
    np.testing.assert_array_equal(execution.replies["double"].value[0], [3.0, -4.0])


def test_a_reply_without_the_requests_nonce_is_not_taken_as_the_answer():
    """Student code that answers a probe itself cannot know the request's nonce: its reply is ignored, and the
    real answer, sent after it, is the one recorded."""
    forged = answers(then=lambda content, buffers: ({**content, "nonce": "0" * 16, "value": 9999}, buffers))
    kernel = FakeKernel(probes={"param_count": [forged, takes(0.1), answers()]})
    execution = run(kernel, [code("param_count = 61706")], {"count": LENET.probe("param_count")})
    assert execution.replies["count"].value == 61706


def test_a_reply_addressed_to_another_request_is_not_taken_as_the_answer():
    """A reply carrying the nonce but addressed to another request (its parent header) is not this request's
    reply either."""
    misaddressed = answers(then=lambda content, buffers: ({**content, "value": 9999}, buffers),
                           parent=ANOTHER_REQUEST)
    kernel = FakeKernel(probes={"param_count": [misaddressed, takes(0.1), answers()]})
    execution = run(kernel, [code("param_count = 61706")], {"count": LENET.probe("param_count")})
    assert execution.replies["count"].value == 61706


def test_a_malformed_or_unreadable_reply_costs_that_part_only():
    """A reply the grader cannot read (a message that does not parse, an array that is not .npy, a reference to
    an array that is not there) fails its part with the reason; the next part is asked as usual."""
    not_npy = answers(then=lambda content, buffers: (content, [b"\x93NUMPY garbage"]))
    missing = answers(then=lambda content, buffers: ({**content, "value": {"__array__": 3}}, []))
    kernel = FakeKernel(probes={"conv_weights": [sends_unreadable_frames(), not_npy], "fc_weights": [missing]})
    execution = run(kernel, [code("import numpy as np\nconv_weights = fc_weights = np.ones(3)\nparam_count = 7")],
                    {"conv": LENET.probe("conv_weights"), "fc": LENET.probe("fc_weights"),
                     "count": LENET.probe("param_count")})
    for key in ("conv", "fc"):
        reply = execution.replies[key]
        assert (reply.ok, reply.error_type) == (False, "BadReply")
        assert reply.error_message.startswith("the answer could not be read")
    assert execution.replies["count"].value == 7


def test_an_oversize_answer_is_refused_by_the_runtime_and_by_the_grader():
    """An answer over the reply limit: the runtime refuses to send it; and a runtime the student's code changed
    to send it anyway has it refused by the grader."""
    kernel = FakeKernel(probes={"fc_weights": [answers(ignoring_the_size_limit=True)]})
    too_many = MAX_REPLY_BYTES // 8 + 100                 # float64s: just over the limit
    execution = run(kernel, [code(f"import numpy as np\nconv_weights = fc_weights = np.zeros({too_many})")],
                    {"conv": LENET.probe("conv_weights"), "fc": LENET.probe("fc_weights")})
    by_runtime, by_grader = execution.replies["conv"], execution.replies["fc"]
    assert (by_runtime.error_type, by_runtime.error_message) == (
        "ReplyTooLarge", f"the answer is larger than {MAX_REPLY_BYTES} bytes")
    assert (by_grader.error_type, by_grader.error_message) == ("ReplyTooLarge", "the answer is too large")


def test_a_part_that_overruns_is_a_timeout_and_its_late_answer_is_not_taken_for_the_next_part():
    """The forward pass is too slow: at its limit it is interrupted and the part is a timeout. Its real answer
    then arrives while the next part is being asked; it is not taken for that part."""
    kernel = FakeKernel(probes={"forward": [hangs()],
                                "param_count": [answers_the_previous_probe(), takes(0.1), answers()]})
    execution = run(kernel, [code("def forward(x):\n    return x * 1000\nparam_count = 61706")],
                    {"forward": LENET.probe("forward", {"x": 1}), "count": LENET.probe("param_count")},
                    cell_timeout=1)
    forward = execution.replies["forward"]
    assert not forward.ok
    assert (forward.error_type, forward.error_message) == ("Timeout", "checking this part took over 1s")
    assert "interrupt" in kernel.log
    assert execution.replies["count"].value == 61706


def test_a_part_that_never_answers_even_when_interrupted_stops_the_checking(monkeypatch):
    """The student's code swallows KeyboardInterrupt: the part is a timeout, and the parts after it are not
    asked (the kernel is stuck), each saying why."""
    monkeypatch.setattr(execute, "INTERRUPT_GRACE", 0.3)
    kernel = FakeKernel(probes={"forward": [hangs(interruptible=False)]})
    started = time.monotonic()
    execution = run(kernel, [code("conv_weights = 1\ndef forward(x):\n    while True:\n        try: pass\n"
                                  "        except KeyboardInterrupt: pass\nparam_count = 3")],
                    {"conv": LENET.probe("conv_weights"), "forward": LENET.probe("forward", {"x": 1}),
                     "count": LENET.probe("param_count"), "fc": LENET.probe("fc_weights")},
                    cell_timeout=1)
    assert time.monotonic() - started < 5
    assert execution.replies["conv"].value == 1
    assert execution.replies["forward"].error_type == "Timeout"
    for key in ("count", "fc"):
        assert execution.replies[key].error_type == "KernelStopped"
    assert [r.function for r in kernel.probe_requests] == ["conv_weights", "forward"]


def test_a_function_the_student_has_not_written_yet_is_unanswered():
    """The starter's `raise NotImplementedError` and a name never defined both read as 'not answered' (not as a
    wrong answer), whether the probe calls the function directly or case by case."""
    kernel = FakeKernel()
    execution = run(kernel, [code("def forward(x):\n    raise NotImplementedError")],
                    {"forward": LENET.probe("forward", {"x": 1}), "cases": call_function("forward", [[1], [2]]),
                     "count": LENET.probe("param_count")})
    forward, cases, count = (execution.replies[k] for k in ("forward", "cases", "count"))
    assert not forward.ok and forward.error_type == "NotImplementedError" and unanswered(forward.error_type)
    assert cases.ok and cases_unanswered(cases.value)
    assert not count.ok and count.error_type == "NotAnswered" and unanswered(count.error_type)
