"""A student opens the notebook in Jupyter and sees every figure; grading keeps them, and the feedback page shows
each beside the part that drew it."""
import base64
import json
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from hwkit.figures import FIGURE_CHARS, PAGE_FIGURE_CHARS, part_figures
from hwkit.sandbox import sandbox_available
from tests.support import hwkit, make_course, release_notebook, solution_notebook, submit

PLOTTING = ["weight-init", "custom-dataset", "cifar-visualize"]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("fig"), PLOTTING, ["s01"], lang="zh")


def _pngs_by_problem(nb) -> dict[str, int]:
    """image/png outputs per problem, a cell counting for the problem of the nearest answer cell above it."""
    counts, problem = {}, None
    for cell in nb.cells:
        problem = cell.get("metadata", {}).get("hwkit", {}).get("problem", problem)
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                counts[problem] = counts.get(problem, 0) + 1
    return counts


def test_no_notebook_chooses_a_matplotlib_backend(course):
    for nb in (release_notebook(course, "s01"), solution_notebook(course, "s01")):
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert not re.search(r"\.use\(|switch_backend|MPLBACKEND|%matplotlib", code)


def test_solution_run_as_in_jupyter_shows_every_figure(course, monkeypatch):
    """nbclient with the kernel's default backend (Jupyter's inline one), as JupyterLab runs the notebook."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    folder = course / "source" / "t" / "s01"
    nb = solution_notebook(course, "s01")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    counts = _pngs_by_problem(nb)
    # activation curves (weight-init), one batch of cats and dogs, the four CIFAR-10 visualizers
    assert counts == {"weight-init": 1, "custom-dataset": 1, "cifar-visualize": 4}, counts


@pytest.mark.parametrize("mode", ["--warm", "--cold"])
def test_grading_keeps_figures_and_the_feedback_page_shows_them_by_part(course, mode):
    if not sandbox_available()[0]:
        pytest.skip("no sandbox on this machine")
    submit(course, "s01", solution_notebook(course, "s01"))
    hwkit("grade", "t", "--course", course, "--force", mode)
    graded = course / "graded" / "t" / "s01"
    executed = nbformat.read(str(graded / "t.ipynb"), as_version=4)
    assert _pngs_by_problem(executed) == {"weight-init": 1, "custom-dataset": 1, "cifar-visualize": 4}
    page = (graded / "feedback.html").read_text(encoding="utf-8")
    rows = {re.search(r"<td>([\w-]+)</td>", row).group(1) + "/" + title: row.count('src="data:image/png;base64,')
            for row in page.split("<tr>")[2:] for title in [re.findall(r"<td>(.*?)</td>", row)[1]]}
    shown = {k: v for k, v in rows.items() if v}
    assert shown == {"weight-init/实验函数 activation_stds(widths, scheme, seed)": 1,
                     "custom-dataset/可视化一个批次": 1, "cifar-visualize/你的批次的网格图像": 4}, shown


def _executed(*cells) -> str:
    nb = nbformat.v4.new_notebook()
    for parts, outputs in cells:
        cell = nbformat.v4.new_code_cell("x")
        if parts:
            cell.metadata["hwkit"] = {"problem": "p", "parts": parts}
        cell.outputs = outputs
        nb.cells.append(cell)
    return nbformat.writes(nb)


def _image(payload: str) -> dict:
    return nbformat.v4.new_output("display_data", data={"image/png": payload, "text/plain": "<Figure>"})


def test_figures_go_to_the_answer_cell_above_and_are_bounded():
    big = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * FIGURE_CHARS).decode()
    found = part_figures(_executed(([], [_image(PNG)]),                 # above every answer cell: no part
                                   (["a", "b"], [_image(PNG)]),
                                   ([], [_image(PNG), _image(big)]),    # a given cell below a's cell
                                   (["c"], [])))
    assert {k: len(v) for k, v in found.by_part.items()} == {"a": 2} and found.left_out == 2
    many = part_figures(_executed(*[(["a"], [_image(base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (FIGURE_CHARS // 2))
                                                     .decode())])] * 10))
    assert sum(map(len, many.by_part["a"])) <= PAGE_FIGURE_CHARS and many.left_out > 0


def test_only_real_pngs_reach_the_page():
    """A kernel's output is data: markup or another format under image/png is never put into the page."""
    bad = ['"><script>alert(1)</script>', base64.b64encode(b"<svg onload=alert(1)>").decode(),
           PNG + '"><script>x</script>']
    found = part_figures(_executed((["a"], [_image(b) for b in bad] + [_image(PNG)])))
    assert found.by_part == {"a": ["data:image/png;base64," + PNG]}
    assert part_figures("{not json").by_part == {} and part_figures(None).by_part == {}
    assert part_figures(json.dumps({"cells": "x"})).by_part == {}


def test_feedback_page_escapes_what_it_shows():
    from hwkit.figures import PartFigures
    from hwkit.gradebook import PartResult, SubmissionResult
    from hwkit.report import feedback_html

    part = PartResult("p<b>", "a", {"en": "<i>A</i>"}, 0.0, 1.0, "WRONG", {"en": "<script>x</script>"})
    result = SubmissionResult("t", "s<1>", "ok", "", parts=[part])
    page = feedback_html(result, "en", PartFigures({"a": ["data:image/png;base64," + PNG]}))
    assert "<script>" not in page and "&lt;script&gt;" in page and "p&lt;b&gt;" in page
    assert f'<img src="data:image/png;base64,{PNG}"' in page
