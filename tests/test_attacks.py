"""A determined student who has read all of hwkit's source: hostile notebooks graded for real, in the sandbox.

Each test is one class of attack that hwkit stops today, written as the student would write it, and asserts
what the attack earns (nothing) and what it costs the grader (nothing beyond its limits). Attacks that still
succeed are not here: they are written up with their reproducing cells in the red-team report.

The student knows everything in the repository except the course secret and the hidden inputs drawn at
grading time. Forging a reply is allowed (the student holds the kernel); it must never be worth more than
doing the work."""
from __future__ import annotations

import json

import nbformat
import pytest

from hwkit.course import load_course
from hwkit.grading.one import grade_submission
from hwkit.grading.submissions import Submission
from hwkit.sandbox import sandbox_available
from tests.support import append_cell, make_course, release_notebook, solution_notebook, submit

pytestmark = [pytest.mark.sandbox,
              pytest.mark.skipif(not sandbox_available()[0], reason="needs the bubblewrap sandbox")]

QUIZ = ["quiz-conv-output", "quiz-conv2d-shape", "quiz-se-block", "quiz-im2col", "quiz-gd-step", "quiz-momentum-adam",
        "quiz-hessian", "quiz-max-lr", "quiz-softmax-ce", "quiz-backprop", "quiz-gru-lstm", "quiz-batchnorm",
        "quiz-dropout"]


def _limits(root, **values) -> None:
    config = root / "hwkit.toml"
    text = config.read_text()
    for key, value in values.items():
        lines = [line for line in text.splitlines() if line.split("=")[0].strip() == key]
        assert lines, key
        text = text.replace(lines[0], f"{key} = {value}")
    config.write_text(text)


def _grade(root, sid: str, nb, warm: bool = False):
    """The real grader on one notebook, sandboxed (cold by default): (result, parts by id, executed notebook)."""
    path = submit(root, sid, nb)
    course = load_course(root)
    student = next(s for s in course.roster if s.student_id == sid)
    result, executed = grade_submission(course, course.assignment("t"), student, Submission(sid, path),
                                        sandbox=True, warm=warm)
    return result, {p.part: p for p in result.parts}, executed


def _outputs_text(executed: str, marker: str) -> str:
    """All stream text of the executed notebook's cells that contain `marker` in their source."""
    nb = nbformat.reads(executed, as_version=4)
    return "".join(out.get("text", "") for cell in nb.cells if marker in cell.get("source", "")
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream")


# ---------------------------------------------------------------------------------------------------------
# 1. Forged probe replies: the student replaces the probe runtime's handler and answers every probe with data
#    of its own choosing, malformed or oversized. Replies are data read with bounds; none becomes a verdict.

FORGE_REPLIES = r'''
import io, IPython, numpy as np
kernel = IPython.get_ipython().kernel
genuine = kernel.shell_handlers["hwkit_probe_request"]

def npy(array, **kw):
    buf = io.BytesIO(); np.save(buf, array, **kw); return buf.getvalue()

deep = 0
for _ in range(40):
    deep = [deep]
REPLIES = {   # variable name -> (reply content without the nonce, buffers)
    "q_convout_size": ({"ok": True, "value": {"__float__": "inf"}}, []),
    "q_convout_shape": ({"ok": True, "value": {"__array__": 0}}, [npy(np.array([1j, 2, 3, 4]))]),   # shapes: always 4
    "q_conv2d_shape": ({"ok": True, "value": deep}, []),
    "q_conv2d_params": ({"ok": True, "value": "1e400"}, []),
    "q_se_shapes": ({"ok": True, "value": [0] * 250_000}, []),
    "q_se_params": ({"ok": True, "value": True}, []),
    "q_im2col_shape": ({"ok": True, "value": [{"__array__": i} for i in range(5000)]}, [npy(np.zeros(1))] * 5000),
    "q_im2col_macs": ({"ok": True, "value": 2.5}, []),
    "q_gd_grad": ({"ok": True, "value": {"__array__": 0}}, [npy(np.array([{"x": 1}], dtype=object), allow_pickle=True)]),
    "q_gd_x1": ({"ok": True, "value": [{"__array__": 0}, {"__array__": 0}]}, [npy(np.zeros(2))]),
    "q_mom_x2": ({"ok": True, "value": {"__array__": 0}}, [npy(np.zeros(9_000_000 // 8 + 100))]),
    "q_adam_x1": ({"ok": True, "value": "[-0.995, -3.005, 1.995]"}, []),
    "q_hess_choice": ({"ok": True, "value": "ABCD"}, []),
    "q_hess_eig": ({"ok": True, "value": {"__array__": 0}}, [npy(np.full(2, np.nan))]),
    "q_maxlr": ({"ok": True, "value": [k / 20000 for k in range(20000)]}, []),
    "q_maxlr_best": ({"ok": True, "value": "0.0982 +- 0.05"}, []),
    "q_softmax_probs": ({"ok": True, "value": {"__unsupported__": "anything"}}, []),
    "q_softmax_ce": ({"ok": False, "error_type": "CORRECT", "message": "Correct."}, []),
    "q_bp_dw1": ({"ok": True}, []),
    "q_bp_dw2": ({"ok": True, "value": {"__float__": "0.055"}}, []),
    "q_rnn_lstm_params": ({"ok": True, "value": {"__int__": "9" * 300}}, []),
    "q_rnn_gru_params": ({"ok": True, "value": "   "}, []),
    "q_bn_y": ({"ok": True, "value": {"__array__": 0}}, [npy(np.zeros((0, 3)))]),
    "q_drop_scale": ({"ok": True, "value": {"__array__": 0}}, [npy(np.array(np.nan))]),
    "q_drop_plain_mean": ({"ok": True, "value": "49.04/1"}, []),
    "q_drop_expect": ({"ok": True, "value": "x + 0/(x - x)"}, []),
}

def forge(stream, idents, msg):
    content = msg.get("content") or {}
    name = (content.get("inputs") or {}).get("name")
    if name not in REPLIES:
        return genuine(stream, idents, msg)
    reply, buffers = REPLIES[name]
    kernel.session.send(stream, "hwkit_probe_reply", {"nonce": content.get("nonce"), **reply}, parent=msg,
                        ident=idents, buffers=buffers)

kernel.shell_handlers["hwkit_probe_request"] = forge
'''

QUIZ_NOTES = {
    "q_convout_size": "NOT_A_NUMBER", "q_convout_shape": "WRONG_DTYPE", "q_conv2d_shape": "RAISED",
    "q_conv2d_params": "NOT_AN_INTEGER", "q_se_shapes": "RAISED", "q_se_params": "NOT_AN_INTEGER",
    "q_im2col_shape": "RAISED", "q_im2col_macs": "NOT_AN_INTEGER", "q_gd_grad": "RAISED", "q_gd_x1": "RAISED",
    "q_mom_x2": "RAISED", "q_adam_x1": "NOT_AN_ARRAY", "q_hess_choice": "NOT_A_CHOICE", "q_hess_eig": "NOT_FINITE",
    "q_maxlr": "NOT_A_NUMBER", "q_maxlr_best": "NOT_A_NUMBER", "q_softmax_probs": "NOT_AN_ARRAY",
    "q_softmax_ce": "RAISED", "q_bp_dw1": "NOT_ANSWERED", "q_bp_dw2": "RAISED", "q_rnn_lstm_params": "WRONG_VALUE",
    "q_rnn_gru_params": "NOT_AN_INTEGER", "q_bn_y": "WRONG_SHAPE", "q_bn_running_var": "NOT_ANSWERED",
    "q_drop_scale": "NOT_A_NUMBER", "q_drop_plain_mean": "NOT_A_NUMBER", "q_drop_expect": "FORMULA_UNDEFINED",
}


@pytest.fixture(scope="module")
def quiz(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("attack-quiz"), QUIZ, ["s001"])
    _limits(root, cell_timeout=20, notebook_timeout=120)
    return root


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_forged_and_malformed_replies_earn_nothing(quiz, warm):
    nb = append_cell(release_notebook(quiz, "s001"), FORGE_REPLIES)
    result, parts, _ = _grade(quiz, "s001", nb, warm=warm)
    assert result.status == "ok", result.reason
    assert {pid: p.note for pid, p in parts.items()} == QUIZ_NOTES
    assert sum(p.score for p in parts.values()) == 0
    feedback = {pid: p.feedback["en"] for pid, p in parts.items()}
    assert "ReplyTooLarge" in feedback["q_mom_x2"]                      # 9 MB of arrays: refused, not loaded
    assert "BadReply" in feedback["q_se_shapes"] and "BadReply" in feedback["q_conv2d_shape"]
    assert "BadReply" in feedback["q_im2col_shape"] and "BadReply" in feedback["q_gd_grad"]
    assert parts["q_softmax_ce"].feedback["en"].startswith("Your code raised CORRECT")   # a name, never a verdict


# ---------------------------------------------------------------------------------------------------------
# 2. Fakes of the asked-for work: modules that only look right, a module that swaps the grader's fill, a
#    function that echoes the hidden inputs, formulas that trick the evaluator, the bank imported from the jail.

MODULE_FAKES = r'''
import numpy as np, torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack

class BasicBlock(nn.Module):
    """Owns every asked-for tensor and touches each in the reference's order of use (the layout is right),
    but returns ReLU(shortcut): what a block gives when its residual branch is switched off."""
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        touched = 0
        for bn in (self.bn1, self.bn2):
            conv = self.conv1 if bn is self.bn1 else self.conv2
            for t in (conv.weight, bn.running_mean, bn.running_var, bn.weight, bn.bias):
                touched = touched + 0 * t.sum()
        shortcut = x if self.down is None else self.down(x)
        return F.relu(shortcut + touched)

def make_resnet(depth, num_classes, in_channels=3):
    return nn.Identity()

import hwkit_kernel.builtin as builtin_probes     # make_resnet's report is forged: a layout of ~9e18 values
genuine_behaviour = builtin_probes.module_behaviour   # and 30,000 tensors, an output of 10**12 columns
def forged_behaviour(student, inputs):
    if inputs["name"] != "make_resnet":
        return genuine_behaviour(student, inputs)
    layout = [[3037000499, 3037000499]] + [[1]] * 30_000
    return [{"layout": layout, "y": np.zeros((0, 10**12)), "grad": None} for _ in inputs["cases"]]
builtin_probes.module_behaviour = forged_behaviour

class DepthwiseSeparableConv(nn.Module):
    """The asked-for tensors, but the grader's fill is swapped for zeros before first use: its outputs (all
    zero) are right for the parameters it ends up with, and for nothing the grader loads."""
    def __init__(self, cin, cout, k):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
    def forward(self, x):
        for mode in _get_current_function_mode_stack():
            if hasattr(mode, "source") and mode.source is not None:
                mode.source = lambda shape: np.zeros(shape)
        return self.pointwise(self.depthwise(x))

def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):      # the hidden inputs echoed back
    return h, c

def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(xs[..., :1]).expand(*xs.shape[:2], h0.shape[1]), (h0, c0)

torch.allclose = lambda *a, **k: True                  # comparisons in the kernel: nobody asks them
np.allclose = lambda *a, **k: True

resnet_dydx = "dF + 1 + 0/(dF - dF)"                   # right almost everywhere, undefined everywhere
resnet_chain_grad = "__import__('os').getcwd()"
ds_standard_formula = "K**2*C_in*C_out + (K**64)**64 - (K**64)**64"   # too big to evaluate: a person decides
ds_separable_formula = "1e999"
ds_cost_formula = "H_out.real * W_out"
ds_ratio_formula = "sqrt(1/C_out**2) + 1/K**2"

LEAKS = []
for name in ("hwkit", "solutions", "templates", "hwkit.behaviour", "solutions.resnet", "templates.lstm.problem"):
    try:
        __import__(name)
        LEAKS.append(name)
    except ImportError:
        pass
import os
for top in ("/work", "/root", "/home", "/srv", "/opt", "/tmp", "/mnt", "/var"):
    for folder, dirs, files in os.walk(top):
        LEAKS += [os.path.join(folder, f) for f in files if f in ("answers.json", "release-cells.json", "hwkit.toml",
                                                                   "resnet.py", "gradebook.sqlite")]
print("LEAKS", LEAKS)
'''


@pytest.fixture(scope="module")
def modules_course(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("attack-modules"), ["resnet", "lstm", "depthwise-separable"], ["s001"])
    _limits(root, cell_timeout=60, notebook_timeout=240)
    return root


def test_fake_modules_functions_and_formulas_earn_nothing(modules_course):
    nb = append_cell(release_notebook(modules_course, "s001"), MODULE_FAKES)
    result, parts, executed = _grade(modules_course, "s001", nb)
    assert result.status == "ok", result.reason
    notes = {pid: (p.score, p.note) for pid, p in parts.items() if p.note != "NOT_ANSWERED"}
    assert notes == {
        "resnet_dydx": (0, "FORMULA_UNDEFINED"), "resnet_chain_grad": (0, "FORMULA_UNPARSEABLE"),
        "resnet_block": (0, "MODULE_WRONG_OUTPUT"),
        "resnet_identity": (0, "MODULE_NOT_TRAINABLE"),      # ReLU(x) is right where the branch is off, but its
                                                             # weights get no gradient there: nothing trains
        "resnet_model": (0, "MODULE_WRONG_SHAPE"),
        "lstm_cell": (0, "WRONG_VALUES"), "lstm_forward": (0, "OUTPUTS_WRONG_VALUES"),
        "ds_standard_formula": (0, "FORMULA_UNDECIDED"), "ds_separable_formula": (0, "FORMULA_UNPARSEABLE"),
        "ds_cost_formula": (0, "FORMULA_UNPARSEABLE"), "ds_ratio_formula": (0, "FORMULA_UNPARSEABLE"),
        "ds_module": (0, "MODULE_WRONG_OUTPUT"),
    }
    assert "0 of 2 hidden test cases pass" in parts["resnet_identity"].feedback["en"]
    assert parts["ds_standard_formula"].needs_review and result.timings["checks"] < 60
    assert _outputs_text(executed, "LEAKS = []").strip() == "LEAKS []"


UNTRAINABLE_MODULES = r'''
import torch
import torch.nn.functional as F
from torch import nn

class DepthwiseSeparableConv(nn.Module):
    """The right function with both weights kept as buffers: nothing an optimizer could train."""
    def __init__(self, cin, cout, k):
        super().__init__()
        self.k = k
        self.register_buffer("dw", torch.randn(cin, 1, k, k))
        self.register_buffer("pw", torch.randn(cout, cin, 1, 1))
    def forward(self, x):
        return F.conv2d(F.conv2d(x, self.dw, padding=self.k // 2, groups=x.shape[1]), self.pw)

class FrozenBN(nn.BatchNorm2d):
    """Running statistics in training mode too, never updated: right in eval mode only."""
    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), FrozenBN(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), FrozenBN(cout)
        self.down = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), FrozenBN(cout))
    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.down(x))

def make_resnet(depth, num_classes, in_channels=3):
    layers, c = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), FrozenBN(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for i, (n, w) in enumerate(zip({18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth], [64, 128, 256, 512])):
        for j in range(n):
            layers.append(BasicBlock(c, w, 2 if i and not j else 1))
            c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
'''


def test_modules_right_at_inference_only_earn_nothing(modules_course):
    """Weights held as buffers, BatchNorm that ignores training mode: right outputs and input gradients in eval
    mode, but not modules one can train. The parameters' gradients and one case in training mode tell."""
    nb = append_cell(solution_notebook(modules_course, "s001"), UNTRAINABLE_MODULES)
    result, parts, _ = _grade(modules_course, "s001", nb)
    assert result.status == "ok", result.reason
    assert {pid: (p.score, p.note) for pid, p in parts.items() if pid in (
        "ds_module", "resnet_block", "resnet_identity", "resnet_model")} == {
        "ds_module": (0, "MODULE_NOT_TRAINABLE"), "resnet_block": (0, "MODULE_WRONG_TRAIN_MODE"),
        "resnet_identity": (0, "MODULE_WRONG_TRAIN_MODE"), "resnet_model": (0, "MODULE_WRONG_TRAIN_MODE")}
    assert [pid for pid, p in parts.items() if p.score < p.max_points] == [
        "resnet_block", "resnet_identity", "resnet_model", "ds_module"]            # the rest of the work keeps its points


# ---------------------------------------------------------------------------------------------------------
# 3. Harm to the grader: floods of output by every path (the kernel-side cap undone by sending raw messages),
#    writable places filled, links and the IPC directory tampered with, processes left behind, IPython hooks that
#    would spoil the answers if probes ran as cells. The grader keeps at most its caps, follows no link, leaves
#    nothing behind, and a student who did the work keeps every point.

RAW = r'''
import IPython
kernel = IPython.get_ipython().kernel
parent = kernel.get_parent("shell")
def raw(kind, content):
    kernel.session.send(kernel.iopub_socket, kind, content, parent=parent)
'''

FLOODS = {
    "print": "for _ in range(400):\n    print('x' * 100_000)",
    "display": RAW + "for _ in range(6):\n    raw('display_data', {'data': {'text/plain': 'd' * 5_000_000}, 'metadata': {}, 'transient': {}})",
    "update": RAW + ("raw('display_data', {'data': {'text/plain': 'a'}, 'metadata': {}, 'transient': {'display_id': 'flood'}})\n"
                     "for _ in range(20):\n"
                     "    raw('update_display_data', {'data': {'text/plain': 'u' * 2_000_000}, 'metadata': {}, 'transient': {'display_id': 'flood'}})"),
    "error": RAW + "raw('error', {'ename': 'E' * 100_000, 'evalue': 'v' * 1_000_000, 'traceback': ['t' * 100] * 100_000})",
    "comm": RAW + ("raw('comm_open', {'comm_id': 'c1', 'target_name': 'jupyter.widget', 'data': {'state': {'x': 'w' * 5_000_000}}})\n"
                   "for _ in range(5):\n"
                   "    raw('comm_msg', {'comm_id': 'c1', 'data': {'method': 'update', 'state': {'x': 'w' * 5_000_000}}})"),
    "clear": ("from IPython.display import clear_output\n"
              "for _ in range(3000):\n    clear_output(wait=True)\n    print('c' * 2_000)"),
    "background": ("import threading, time\n"
                   "def chatter():\n    while True:\n        print('b' * 10_000)\n        time.sleep(0.01)\n"
                   "threading.Thread(target=chatter, daemon=True).start()"),
}

TAMPER = r'''
import errno, json, os, signal, subprocess, sys
from ipykernel.kernelapp import IPKernelApp
done = {}
def attempt(what, action):
    try:
        action()
        done[what] = "ALLOWED"
    except OSError as exc:
        done[what] = errno.errorcode.get(exc.errno, str(exc.errno))
def fill(where):
    for i in range(10_000):
        with open(os.path.join(where, f"fill{i}"), "wb") as f:
            f.write(b"\0" * 4_000_000)
for where in ("/tmp", "/dev/shm", os.getcwd()):                    # fill every writable place
    attempt(where, lambda: fill(where))
for name, target in (("t.ipynb", "/etc/shadow"), ("feedback.html", "/proc/1/environ"), ("data2", "/")):
    os.symlink(target, name)                                       # links where the grader might look
ipc = os.path.dirname(IPKernelApp.instance().connection_file)     # the sealed IPC directory
first = os.path.join(ipc, sorted(os.listdir(ipc))[0])
attempt("ipc-rename", lambda: os.rename(first, first + ".x"))
attempt("ipc-unlink", lambda: os.unlink(first))
attempt("ipc-chmod", lambda: os.chmod(first, 0o777))
attempt("ipc-plant", lambda: open(first + ".new", "w"))
attempt("kill-init", lambda: os.kill(1, signal.SIGKILL))          # the jail's init: the whole jail with it
subprocess.Popen([sys.executable, "-c",                            # a process that means to outlive the run
                  "import os, signal, time\nos.setsid()\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                  "signal.signal(signal.SIGHUP, signal.SIG_IGN)\ntime.sleep(3600)"], start_new_session=True)
print("TAMPER", json.dumps(done, sort_keys=True))
'''


HOOKS = r'''
import ast, sys, IPython
ip = IPython.get_ipython()
spoil = lambda *args, **kw: ip.user_ns.update(rf_final=-1, rf_jump=-1, rf_out_size=-1)
for event in ("pre_execute", "pre_run_cell"):                      # (post_* would fire at the end of this cell)
    ip.events.register(event, spoil)                               # would spoil the answers if a probe ran as a cell
ip.input_transformers_post.append(lambda lines: ["rf_final = -1\n"] + lines)
class Spoil(ast.NodeTransformer):
    def visit_Module(self, node):
        node.body.insert(0, ast.parse("rf_jump = -1").body[0])
        return node
ip.ast_transformers.append(Spoil())
sys.excepthook = spoil
'''


@pytest.fixture(scope="module")
def rf(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("attack-rf"), ["receptive-field"], ["s001", "s002"])
    _limits(root, cell_timeout=30, notebook_timeout=200, disk_mb=32, tmp_mb=16)
    return root


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_floods_files_links_and_processes_cost_the_grader_only_its_limits(rf, warm):
    nb = solution_notebook(rf, "s001")
    for source in FLOODS.values():
        append_cell(nb, source)
    append_cell(nb, TAMPER)
    append_cell(nb, HOOKS)                                           # last: no cell runs after it, only probes
    result, parts, executed = _grade(rf, "s001", nb, warm=warm)
    assert result.status == "cell errors" and result.reason == "1 cell(s) raised an error"   # the forged error output
    assert [pid for pid, p in parts.items() if p.score < p.max_points] == []                   # the work keeps its points
    assert len(executed) < 9_000_000                                # the notebook's 8 MB of output, and the sources
    cells = nbformat.reads(executed, as_version=4).cells
    for key, source in FLOODS.items():
        cell = next(c for c in cells if c.source == source)
        kept = json.dumps(cell.outputs)
        assert len(kept) < 1_300_000, (key, len(kept))              # about one cell's 1 MB, each path
    tampered = json.loads(_outputs_text(executed, "TAMPER").split("TAMPER", 1)[1].strip().splitlines()[0])
    assert tampered == {"/tmp": "ENOSPC", "/dev/shm": "ENOSPC", "/home/student": "ENOSPC", "kill-init": "EPERM",
                        "ipc-rename": "EACCES", "ipc-unlink": "EACCES", "ipc-chmod": "EPERM", "ipc-plant": "EACCES"}
    # and the daemon did not outlive the run: grade_submission raises SandboxLeak when anything survives teardown


# ---------------------------------------------------------------------------------------------------------
# 4. Leaking into the next student: warm kernels are forked from one zygote, one after the other in the same
#    slot (the same uid). What one student plants (files, processes, threads, patched modules, a patched probe
#    runtime) is gone for the next, who keeps every point.

PLANT = r'''
import builtins, os, subprocess, sys, threading, time
import numpy as np, torch
import hwkit_kernel.runtime, hwkit_kernel.wire
for where in ("/tmp", "/dev/shm", os.getcwd()):
    with open(os.path.join(where, "planted"), "w") as f:
        f.write("from the previous student")
torch.add = lambda *a, **k: torch.zeros(1)
np.allclose = lambda *a, **k: False
builtins.abs = lambda x: 0
hwkit_kernel.runtime.Runtime.answer = lambda self, content, buffers: ({"nonce": content.get("nonce"), "ok": True,
                                                                       "value": 0}, [])
hwkit_kernel.wire.encode = lambda value: (0, [])
threading.Thread(target=lambda: time.sleep(3600), daemon=True).start()
subprocess.Popen([sys.executable, "-c", "import os, time\nos.setsid()\ntime.sleep(3600)"], start_new_session=True)
for path in ("/opt/hwkit/hwkit_kernel/runtime.py", sys.modules["torch"].__file__):
    try:
        open(path, "a").write("\nraise SystemExit\n")
    except OSError:
        pass
'''

CHECK_CLEAN = r'''
import json, os, builtins
import numpy as np, torch
import hwkit_kernel.runtime
seen = {"planted": [w for w in ("/tmp", "/dev/shm", os.getcwd()) if os.path.exists(os.path.join(w, "planted"))],
        "torch_add": float(torch.add(torch.ones(1), 1)[0]), "np_allclose": bool(np.allclose(1, 1)), "abs": abs(-3),
        "answer": hwkit_kernel.runtime.Runtime.answer.__qualname__,
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid())}
print("CLEAN", json.dumps(seen, sort_keys=True))
'''


def test_warm_kernels_leave_nothing_to_the_next_student(rf):
    hostile = append_cell(release_notebook(rf, "s001"), PLANT)
    result, parts, _ = _grade(rf, "s001", hostile, warm=True)
    assert result.status == "ok" and sum(p.score for p in parts.values()) == 0
    honest = append_cell(solution_notebook(rf, "s002"), CHECK_CLEAN)
    result, parts, executed = _grade(rf, "s002", honest, warm=True)
    assert result.status == "ok" and [pid for pid, p in parts.items() if p.score < p.max_points] == []
    seen = json.loads(_outputs_text(executed, "CLEAN").split("CLEAN", 1)[1].strip().splitlines()[0])
    assert seen["planted"] == [] and seen["torch_add"] == 2.0 and seen["np_allclose"] and seen["abs"] == 3
    assert seen["answer"] == "Runtime.answer"
    assert all(pid <= 3 for pid in seen["processes"])             # the jail's init and kernel, nothing older


# ---------------------------------------------------------------------------------------------------------
# 5. Stalling the grader through the probe channel: junk and oversized shell messages before the reply, and a
#    handler that never answers and ignores the interrupt. Each part costs at most its limit and the grace.

STALL = r'''
import signal, IPython
kernel = IPython.get_ipython().kernel
genuine = kernel.shell_handlers["hwkit_probe_request"]
junk = "j" * 15_000_000
def stall(stream, idents, msg):
    content = msg.get("content") or {}
    name = (content.get("inputs") or {}).get("name")
    if name == "rf_final":                   # a storm of near-limit messages and forged nonces, then the answer
        for i in range(8):
            kernel.session.send(stream, "hwkit_probe_reply", {"nonce": str(i), "ok": True, "value": junk},
                                parent=msg, ident=idents)
            kernel.session.send(stream, "execute_reply", {"status": "ok", "pad": junk}, parent=msg, ident=idents)
        return genuine(stream, idents, msg)
    if name == "rf_jump":                    # never answers, and no interrupt stops it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
    return genuine(stream, idents, msg)
kernel.shell_handlers["hwkit_probe_request"] = stall
'''


def test_a_stalling_probe_handler_costs_one_limit(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], ["s001"])
    _limits(root, cell_timeout=4, notebook_timeout=120)
    result, parts, _ = _grade(root, "s001", append_cell(solution_notebook(root, "s001"), STALL))
    assert result.status == "ok", result.reason
    assert parts["rf_final"].note == "CORRECT"
    assert {pid: (p.score, p.note) for pid, p in parts.items() if pid != "rf_final"} == {
        pid: (0, "RAISED") for pid in parts if pid != "rf_final"}                   # the stall, then every later part
    assert "Timeout" in parts["rf_jump"].feedback["en"]
    assert "KernelStopped" in parts["rf_out_size"].feedback["en"]
    assert result.timings["probes"] < 4 + 5 + 10                     # one limit, the grace, and the storm
