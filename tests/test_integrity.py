"""Grades you can trust: a TA grades one batch in which some students did the work and others tried every
shortcut a student with hwkit's source at hand could think of. The honest student gets every point; the
student who hooked the probes, the one who faked the modules, the one who tried to import the reference,
the one who wrote undefined formulas get nothing for those parts; the one who pasted a friend's notebook is
flagged; the one who flooded output and disk costs the grader nothing beyond its limits.

(Each class has its own detailed tests: test_formula.py, test_outputs.py, test_jail_*.py, test_attacks.py,
test_variant_mismatch.py, test_problem_resnet.py; this file is the story told once, end to end, in the
sandbox, with `hwkit grade` as a TA runs it.)"""
from __future__ import annotations

import json
import sqlite3

import pytest

from hwkit.sandbox import sandbox_available
from tests.support import append_cell, hwkit, make_course, read_grades, release_notebook, set_answer_cell, solution_notebook, submit

pytestmark = pytest.mark.skipif(not sandbox_available()[0], reason="needs the bubblewrap sandbox")

STUDENTS = ["honest", "hooker", "faker", "thief", "undefined", "copier", "flooder"]
MODULE_PARTS = ("resnet_block", "resnet_identity", "resnet_model", "ds_module")

HOOK = r'''
# Hook everything the grader talks to, with the hidden inputs in hand, and answer "plausibly" without the work.
import IPython, numpy as np, torch
import hwkit_kernel.runtime as runtime, hwkit_kernel.modules as modules
seen = []
def forged_behaviour(module, x, *, seed, cotangent_seed, zero=()):
    seen.append(seed)
    x = torch.as_tensor(np.asarray(x))
    return {"layout": [[64, 3, 7, 7]], "y": torch.zeros(x.shape[0], 10), "grad": torch.zeros_like(x)}
modules.behaviour = forged_behaviour
real_answer = runtime.Runtime.answer
def forged_answer(self, content, buffers):
    reply, out = real_answer(self, content, buffers)
    if not reply.get("ok"):
        reply = {"nonce": reply["nonce"], "ok": True, "value": [{"layout": [], "y": 0, "grad": 0}] * 4}
    return reply, out
runtime.Runtime.answer = forged_answer
shell = IPython.get_ipython()
shell.input_transformers_post.append(lambda lines: lines)
shell.events.register("pre_run_cell", lambda *a: None)
torch.allclose = lambda *a, **k: True
class BasicBlock(torch.nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.cout, self.stride = cout, stride
    def forward(self, x):
        return torch.zeros(x.shape[0], self.cout, x.shape[2] // self.stride, x.shape[3] // self.stride)
def make_resnet(depth, classes, cin=3):
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.LazyLinear(classes))
DepthwiseSeparableConv = lambda cin, cout, k: torch.nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
'''

FAKE = r'''
# Modules that look right from outside: parameter blobs sized by the closed-form counts, the right output
# shapes, a FLOP counter fed on the meta device, a ResNet whose shortcut is computed and never added.
import torch, torch.nn.functional as F
from torch import nn
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None
    def forward(self, x):
        shortcut = x if self.down is None else self.down(x)      # computed, never added
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
class Blob(nn.Module):
    def __init__(self, depth, classes, cin):
        super().__init__()
        self.params = nn.Parameter(torch.zeros({11_689_512: 1, 21_797_672: 1}.get(0, 11_689_512)))
        self.classes = classes
    def forward(self, x):
        with torch.device("meta"):
            torch.zeros(1, 1, 224, 224) @ torch.zeros(224, 224)
        return torch.zeros(x.shape[0], self.classes) + 0 * self.params.sum()
make_resnet = lambda depth, classes, cin=3: Blob(depth, classes, cin)
class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.blob = nn.Parameter(torch.zeros(k * k * cin + cin * cout)); self.cout = cout
    def forward(self, x):
        return torch.zeros(x.shape[0], self.cout, x.shape[2], x.shape[3]) + 0 * self.blob.sum()
'''

THIEF = r'''
# Borrow the reference: every way to reach the bank or the grader from inside the kernel.
import importlib, sys, glob
found = {}
for name in ("solutions", "solutions.resnet", "templates", "hwkit", "hwkit.grading", "hwkit.bank"):
    try:
        found[name] = importlib.import_module(name)
    except ImportError:
        pass
print("borrowed:", sorted(found), "files:", glob.glob("/**/solutions/resnet.py", recursive=True)[:3])
if "solutions.resnet" in found:
    BasicBlock, make_resnet = found["solutions.resnet"].BasicBlock, found["solutions.resnet"].make_resnet
'''

UNDEFINED = {"resnet_dydx, resnet_chain_grad": 'resnet_dydx = "1/0"\nresnet_chain_grad = "0**-1"',
             "ds_standard_formula": 'ds_standard_formula = "0/0"\nds_separable_formula = "K**2*C_in + C_in*C_out + 0*(1/(K - K))"\n'
                                    'ds_cost_formula = "1e999"\nds_ratio_formula = "((((10)**64)**64)**64)**64"'}

FLOOD = r'''
import os, sys, time
from IPython.display import display
h = display({"text/plain": "start"}, raw=True, display_id=True)
for i in range(300):
    print("x" * 50_000)
    h.update({"application/x-hwkit-reply+json": {"nonce": "n", "pad": "y" * 200_000}, "text/plain": "z" * 200_000}, raw=True)
    display({"application/x-hwkit-reply+json": {"nonce": "n", "pad": "w" * 200_000}}, raw=True)
for path in (".", "/tmp", "/dev/shm", os.path.dirname(os.environ.get("JPY_CONNECTION_FILE", "") or "/nonexistent")):
    try:
        with open(os.path.join(path, "big.bin"), "wb") as f:
            for _ in range(2_000):
                f.write(b"\0" * 1_000_000)
    except OSError as e:
        print(path, type(e).__name__)
try:
    os.symlink("/etc/passwd", "answers.json")
except OSError:
    pass
'''


def _parts(root, sid: str) -> dict:
    db = sqlite3.connect(root / "gradebook.sqlite")
    rows = db.execute("SELECT part, score, max_points, note FROM parts WHERE assignment='t' AND student_id=?", (sid,))
    return {part: (score, max_points, note) for part, score, max_points, note in rows}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("integrity"), ["resnet", "depthwise-separable"], STUDENTS)
    submit(root, "honest", solution_notebook(root, "honest"))
    submit(root, "hooker", append_cell(release_notebook(root, "hooker"), HOOK))
    submit(root, "faker", append_cell(release_notebook(root, "faker"), FAKE))
    submit(root, "thief", append_cell(release_notebook(root, "thief"), THIEF))
    nb = release_notebook(root, "undefined")
    for part, source in (("resnet_dydx", UNDEFINED["resnet_dydx, resnet_chain_grad"]),
                         ("ds_standard_formula", UNDEFINED["ds_standard_formula"])):
        set_answer_cell(nb, part, source)
    submit(root, "undefined", nb)
    submit(root, "copier", solution_notebook(root, "honest"))
    submit(root, "flooder", append_cell(solution_notebook(root, "flooder"), FLOOD))
    proc = hwkit("grade", "t", "--course", root, timeout=1800)
    return root, proc, read_grades(root / "graded" / "t" / "grades.csv")


def test_the_honest_student_gets_every_point(batch):
    root, _, grades = batch
    assert grades["honest"]["status"] == "ok" and grades["honest"]["total"] == grades["honest"]["max"]


@pytest.mark.parametrize("sid", ["hooker", "faker", "thief"])
def test_no_points_without_the_work(batch, sid):
    root, _, grades = batch
    parts = _parts(root, sid)
    for part in MODULE_PARTS:
        assert parts[part][0] == 0, (sid, part, parts[part])
    assert float(grades[sid]["total"]) == 0, (sid, grades[sid])


def test_undefined_formulas_are_wrong_not_equal(batch):
    root, _, _ = batch
    parts = _parts(root, "undefined")
    for part in ("resnet_dydx", "resnet_chain_grad", "ds_standard_formula", "ds_separable_formula"):
        assert parts[part][0] == 0 and parts[part][2] == "FORMULA_UNDEFINED", (part, parts[part])
    for part in ("ds_cost_formula", "ds_ratio_formula"):
        assert parts[part][0] == 0 and parts[part][2] == "FORMULA_UNPARSEABLE", (part, parts[part])


def test_a_friends_notebook_is_flagged(batch):
    root, _, grades = batch
    assert grades["copier"]["status"] == "variant mismatch" and grades["copier"]["needs_review"] == "yes"
    assert "honest" in grades["copier"]["reason"]


def test_floods_cost_the_grader_nothing_beyond_its_limits(batch):
    root, _, grades = batch
    executed = root / "graded" / "t" / "flooder" / "t.ipynb"
    assert executed.stat().st_size < 12_000_000          # 8 MB of output in all, plus the notebook's own cells
    assert "limit was reached" in executed.read_text() or "output truncated" in executed.read_text()
    assert grades["flooder"]["status"] == "ok" and grades["flooder"]["total"] == grades["flooder"]["max"]  # the work counts
    assert not (root / "graded" / "t" / "flooder" / "answers.json").exists()
    kept = json.loads(executed.read_text())
    assert all("application/x-hwkit-reply+json" not in out.get("data", {}) or len(json.dumps(out)) < 1_100_000
               for cell in kept["cells"] for out in cell.get("outputs", []))
