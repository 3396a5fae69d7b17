"""What grading costs depends on what a notebook runs, not on what else it holds: a notebook of 10^5 Markdown
cells is read, run, scored and written without a walk per part or a schema check per cell; a figure is drawn
once, to the PNG the executed notebook keeps; a kernel sends no echo of the code it runs; and the reference
side of a module part traces its variants on the CPU exactly as the meta device would. Correctness and
boundedness are tested here, never timing (bench/grading.py measures that)."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import struct

import nbformat
import numpy as np
import pytest
import torch

from hwkit import behaviour, notebooks
from hwkit.course import SandboxLimits
from hwkit.execute import executed_text, run_notebook
from hwkit.notebooks import AnswerCells, answer_fingerprint, answer_sources, read_notebook
from hwkit.probes import read_variable
from hwkit.records import Status
from hwkit_kernel.modules import use_order
from tests.fake_kernel import FakeKernel

MARKDOWN_CELLS = 100_000


def _answer(source: str, *parts: str):
    return nbformat.v4.new_code_cell(source, metadata={"hwkit": {"parts": list(parts)}})


def _no_schema_checks(monkeypatch) -> list:
    """Every nbformat validation from here on is recorded (and the notebook passes it)."""
    calls = []
    monkeypatch.setattr(nbformat, "validate", lambda *args, **kwargs: calls.append(args[1:2]))
    return calls


def test_markdown_cells_cost_next_to_nothing_however_many(tmp_path, monkeypatch):
    """A notebook of 10^5 Markdown cells and three code cells: only the code cells reach the kernel, every cell
    is kept in the executed notebook, and neither reading, cleaning nor writing the notebook checks a cell
    against nbformat's schema (which cost seconds per 10^5 cells); each part's answer cells are found in
    one pass over the notebook, not one per part."""
    cells = [nbformat.v4.new_markdown_cell(f"note {i}", id=f"m{i}") for i in range(MARKDOWN_CELLS)]
    cells[10:10] = [_answer("a = 1", "a"), nbformat.v4.new_code_cell("helper = 2")]
    cells.append(_answer("b = a + helper", "b"))
    path = tmp_path / "many.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))
    checks = _no_schema_checks(monkeypatch)

    nb, problem = read_notebook(path)
    assert problem == "" and len(nb.cells) == MARKDOWN_CELLS + 3
    kernel = FakeKernel()
    execution = run_notebook(nb, kernel, SandboxLimits(), {"b": read_variable("b")})
    assert kernel.executed == ["a = 1", "helper = 2", "b = a + helper"]
    assert execution.status == Status.OK and execution.replies["b"].value == 3
    assert len(execution.notebook.cells) == MARKDOWN_CELLS + 3

    walks = []
    monkeypatch.setattr(notebooks, "tagged_parts", lambda cell, real=notebooks.tagged_parts: walks.append(1)
                        or real(cell))
    answers = AnswerCells(nb)
    assert len(walks) == 3                                    # the code cells only, once
    assert answers.sources("a") == ["a = 1"] and answers.sources("b") == ["b = a + helper"]
    assert answers.sources("missing") == []
    for part in ("a", "b", "missing"):
        answers.fingerprint(part)
    assert len(walks) == 3                                    # asking about a part walks nothing

    text = executed_text(execution.notebook)
    assert checks == []
    written = json.loads(text)
    assert len(written["cells"]) == MARKDOWN_CELLS + 3 and written["cells"][0]["source"] == ["note 0"]
    assert [c["execution_count"] for c in written["cells"] if c["cell_type"] == "code"] == [1, 2, 3]


def test_a_parts_fingerprint_is_the_one_the_gradebook_has_always_kept():
    """Overrides hold while a part's answer fingerprint is unchanged: the index must give the very hash the
    gradebook stored before it existed (sha256 of the JSON of [own answer cells, code cells no part claims])."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 作业"), nbformat.v4.new_code_cell("import torch"),
        _answer("x = 1\nprint('é')", "x", "y"), _answer("y = 2", "y", "y"), nbformat.v4.new_code_cell("z = 3"),
        nbformat.v4.new_code_cell("w = 4", metadata={"hwkit": {"parts": "not a list"}})])
    shared = ["import torch", "z = 3", "w = 4"]
    for part, own in (("x", ["x = 1\nprint('é')"]), ("y", ["x = 1\nprint('é')", "y = 2"]), ("q", [])):
        stored = hashlib.sha256(json.dumps([own, shared], ensure_ascii=False).encode("utf-8")).hexdigest()
        assert answer_fingerprint(nb, part) == stored == AnswerCells(nb).fingerprint(part)
        assert answer_sources(nb, part) == own


def test_cleaning_keeps_ids_repairs_duplicates_and_never_changes_the_submitted_notebook():
    """The executed notebook's cells keep their ids, a repeated or missing id is replaced (as nbformat's
    validation would), metadata the schema would reject do not stop the run, and writing the executed
    notebook leaves the submitted one as it was."""
    from hwkit.execute import clean_for_execution

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_code_cell("b = 2"),
                                         nbformat.v4.new_markdown_cell("text"), nbformat.v4.new_raw_cell("raw")])
    nb.cells[1].id = nb.cells[0].id
    del nb.cells[2]["id"]
    nb.cells[0].metadata = {"collapsed": "not a bool", "trusted": True}
    nb.metadata["signature"] = "kept in the submission"
    before = json.dumps(nb, sort_keys=True)
    clean = clean_for_execution(nb)
    ids = [c.id for c in clean.cells]
    assert [c.cell_type for c in clean.cells] == ["code", "code", "markdown"]
    assert ids[0] == nb.cells[0].id and len(set(ids)) == 3 and all(isinstance(i, str) and i for i in ids)
    executed_text(clean)
    assert json.dumps(nb, sort_keys=True) == before


# ---- a real kernel (no jail needed): what it sends and draws --------------------------------------------

FIGURE_CELL = """import matplotlib.pyplot as plt
fig = plt.figure(figsize=(4, 3), dpi=100)
draws = []
fig.canvas.mpl_connect('draw_event', lambda event: draws.append(1))
lines = plt.plot([1, 2, 3])"""
COUNT_CELL = """from IPython.core.pylabtools import print_figure
same = plt.figure()
alone = []
same.canvas.mpl_connect('draw_event', lambda event: alone.append(1))
lines = plt.plot([1, 2, 3])
print_figure(same, 'png', bbox_inches=None)
plt.close(same)
print(len(draws), len(alone))"""


def test_a_kernel_draws_a_figure_once_and_echoes_no_code(tmp_path):
    """With Jupyter's inline backend, a figure a cell leaves open is shown once as PNG and drawn only for that
    PNG (as often as print_figure alone draws it), not first on its canvas as well, and not measured first to be
    cropped: the PNG is the whole figure, its size times its dpi. The kernel sends no execute_input echo, every
    cell still has its execution count, and its logger builds no debug records."""
    from hwkit.outputs import CappedClient
    from hwkit.sandbox import LocalKernel

    sources = [FIGURE_CELL, COUNT_CELL, "import logging\nprint(get_ipython().kernel.log.isEnabledFor(logging.DEBUG))"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    seen = []
    with LocalKernel(tmp_path, SandboxLimits()) as kernel:
        client = CappedClient(nb, km=kernel.km, timeout=60, allow_errors=True, kernel_name="python3",
                              shutdown_kernel="immediate")
        with client.setup_kernel(cleanup_kc=True):
            real = client.kc.iopub_channel.get_msg

            async def get_msg(*args, **kwargs):
                msg = await real(*args, **kwargs)
                seen.append(msg["msg_type"])
                return msg

            client.kc.iopub_channel.get_msg = get_msg
            for i, cell in enumerate(nb.cells):
                client.execute_cell(cell, i)
    figure, count, log = nb.cells
    assert [o["output_type"] for o in figure.outputs] == ["display_data"]
    png = base64.b64decode(figure.outputs[0]["data"]["image/png"])
    assert struct.unpack(">II", png[16:24]) == (400, 300)      # the IHDR chunk's width and height
    drawn, alone = map(int, count.outputs[0]["text"].split())
    assert drawn == alone == 1
    assert log.outputs[0]["text"].strip() == "False"
    assert "execute_input" not in seen and "status" in seen
    assert [c.execution_count for c in nb.cells] == [1, 2, 3]


# ---- module parts: the reference's order of use -------------------------------------------------------

def _meta_use(spec, config, switches, shape):
    """The reference's order of use traced on torch's meta device (how it was traced before)."""
    with torch.device("meta"):
        module = spec.build(config, **dict(switches))
        shapes, groups = use_order(module, torch.empty(shape))
    return tuple(map(tuple, shapes)), tuple(groups)


@pytest.mark.slow
def test_module_variants_trace_on_the_cpu_as_on_the_meta_device():
    """Every module part of the bank, every right order and known mistake: the order of use traced on the CPU
    (zeroed tensors) is the meta device's, shapes and groups, and the first right order's, read from the
    case's reply, is too."""
    from hwkit.bank import load_bank

    specs = {}
    for problem in load_bank().values():
        for part in problem.parts(problem.sample(random.Random(3))):
            closure = [c.cell_contents for c in (getattr(part.interpret, "__closure__", None) or ())]
            for spec in (c for c in closure if isinstance(c, behaviour.ModuleSpec)):      # behaviour.module_part
                specs[part.id] = (spec, part.public_probe(random.Random(0)).inputs["cases"][0])
    assert {"resnet_block", "resnet_identity", "resnet_model", "ds_module"} <= set(specs)
    for part_id, (spec, case) in specs.items():
        x = np.asarray(case["x"])
        for _, switches in spec.candidates():
            try:
                want = _meta_use(spec, case["config"], switches, x.shape)
            except (RuntimeError, ValueError, TypeError):
                assert behaviour.traced_use(spec, case["config"], switches, x.shape, x.dtype) is None
                continue
            got = behaviour.traced_use(spec, case["config"], switches, x.shape, x.dtype)
            assert (got.shapes, got.groups) == want, (part_id, switches)
        first = behaviour.reference_use(spec, case, spec.orders[0])
        assert (first.shapes, first.groups) == _meta_use(spec, case["config"], spec.orders[0], x.shape), part_id


# ---- a regrade's order -----------------------------------------------------------------------------------

class _Started(Exception):
    pass


def test_a_regrade_starts_with_the_longest_notebooks(tmp_path, monkeypatch):
    """The gradebook keeps how long each grading took; a regrade hands the lanes the longest first (one never
    graded before counts as longest), so that no long notebook is left running alone at the end."""
    from hwkit.gradebook import Gradebook, SubmissionResult
    from hwkit.grading import main as grading_main
    from tests.support import make_course, release_notebook, submit

    students = ["s001", "s002", "s003", "s004"]
    root = make_course(tmp_path, ["receptive-field"], students)
    for sid in students:
        submit(root, sid, release_notebook(root, sid))
    book = Gradebook(root)
    for sid, seconds in (("s001", 1.0), ("s002", 30.0), ("s003", 5.0)):
        book.record(SubmissionResult("t", sid, "ok", "", "old", timings={"execute": seconds, "probes": 0.5}))
    assert book.seconds_taken("t") == {"s001": 1.5, "s002": 30.5, "s003": 5.5}
    book.close()

    started = []

    class Runner:          # where the batch would run: it only notes the order it is handed
        def check(self):
            pass

        def batch(self, course, assignment_id, todo):
            started.extend(sub.student_id for sub in todo)
            raise _Started

    with pytest.raises(_Started):
        grading_main.main(course_dir=root, assignment_id="t", force=True, sandbox=False, runner=Runner())
    assert started == ["s004", "s002", "s003", "s001"]


def test_a_reference_is_never_served_to_another_spec_that_took_the_first_ones_place():
    """References are cached per spec across a batch. Grading one variant and then another builds a new spec
    where the old one was collected; in CPython it often lands at the same address (the same id). It must get
    its own reference, not the collected spec's."""
    from torch import nn

    from hwkit.behaviour import ModuleSpec

    case = {"config": {"n": 3}, "seed": 11, "cotangent_seed": 12, "x": np.ones((2, 3), dtype=np.float32)}

    def spec_scaled_by(factor: float) -> ModuleSpec:
        return ModuleSpec("Scaled", lambda config: nn.Sequential(nn.Linear(config["n"], config["n"], bias=False),
                                                                 _Scale(factor)))

    base = spec_scaled_by(1.0).reply(case)["y"]
    for factor in range(2, 40):         # each spec is collected before the next is built, often at its address
        spec = spec_scaled_by(float(factor))
        np.testing.assert_allclose(spec.reply(case)["y"], factor * base, rtol=1e-6)
        del spec


class _Scale(torch.nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor
