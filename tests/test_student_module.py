"""A student checks from inside the notebook: the last cell runs `hw.check()`, which finds the notebook being
edited, runs its last saved version in a separate kernel as `hwkit check` does, and shows the same table. Grading
and `hwkit check` never run that cell."""
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from hwkit.notebooks import self_check_cells
from hwkit.sandbox import sandbox_available
from hwkit.student import NotebookNotFound, check, find_notebook
from tests.support import append_cell, grade_result, hwkit, make_course, release_notebook, solution_notebook

RF = ["receptive-field"]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("student"), RF, ["s01"])


def _student_folder(root: Path, tmp_path: Path, nb) -> Path:
    folder = tmp_path / "student"
    shutil.copytree(root / "release" / "t" / "s01", folder, dirs_exist_ok=True)
    nbformat.write(nb, str(folder / "t.ipynb"))
    return folder / "t.ipynb"


def _partly_wrong(root: Path):
    """The reference in the student's own notebook (with its self-check cell), then one wrong answer."""
    nb = release_notebook(root, "s01")
    solved = {c.id: c for c in solution_notebook(root, "s01").cells}
    for cell in nb.cells:
        if cell.get("metadata", {}).get("hwkit"):
            cell.source = solved[cell.id].source
    last = nb.cells.pop()
    append_cell(nb, "rf_jump = rf_jump + 1")
    nb.cells.append(last)
    return nb


def test_the_release_ends_with_the_self_check_cell(course):
    nb = release_notebook(course, "s01")
    assert nb.cells[-1].source == "import hwkit.student as hw\nhw.check()"
    assert "last saved version" in nb.cells[-2].source
    assert self_check_cells(nb) == {len(nb.cells) - 1}
    zh = release_notebook(make_course(course.parent / "zh", RF, ["s01"], lang="zh"), "s01")
    assert "最后保存的版本" in zh.cells[-2].source and not re.search(r"[\u4e00-\u9fff][,;:.()!?]", zh.cells[-2].source)


def test_the_cell_in_jupyter_shows_what_hwkit_check_says(course, tmp_path, monkeypatch):
    """Run as JupyterLab runs it (JPY_SESSION_NAME names the notebook, the kernel runs in its folder)."""
    path = _student_folder(course, tmp_path, _partly_wrong(course))
    monkeypatch.setenv("JPY_SESSION_NAME", path.name)
    monkeypatch.delenv("HWKIT_OUTPUT_LIMIT", raising=False)
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    shown = [o for o in nb.cells[-1].outputs if o.output_type == "display_data"]
    assert len(shown) == 1 and {"text/html", "text/plain"} <= set(shown[0].data)
    page, text = shown[0].data["text/html"], shown[0].data["text/plain"]
    assert "last saved version of t.ipynb" in page and "last saved version of t.ipynb" in text
    rows = {re.findall(r"<td[^>]*>(.*?)</td>", row)[1]: re.findall(r"<td[^>]*>(.*?)</td>", row)[3]
            for row in page.split("<tr>")[2:]}
    out = json.loads(hwkit("check", path, "--json", check=False).stdout)
    assert rows == {r["title"]["en"]: r["status"] for r in out["results"]}
    assert rows["Jump (cumulative stride)"] == "fail" and list(rows.values()).count("pass") == 4
    assert "4 of 5 public checks pass" in page and "4 of 5 public checks pass" in text


def test_finds_the_notebook_from_jupyter_and_vs_code(tmp_path):
    (tmp_path / "sub").mkdir()
    nb = tmp_path / "sub" / "hw.ipynb"
    nb.write_text("{}")
    assert find_notebook({"JPY_SESSION_NAME": "course/sub/hw.ipynb"}, {}, tmp_path / "sub") == nb
    assert find_notebook({"JPY_SESSION_NAME": str(nb)}, {}, tmp_path) == nb
    assert find_notebook({}, {"__session__": "sub/hw.ipynb"}, tmp_path) == nb
    assert find_notebook({}, {"__vsc_ipynb_file__": str(nb)}, tmp_path) == nb
    with pytest.raises(NotebookNotFound, match=r'hw\.check\(path="'):
        find_notebook({}, {}, tmp_path)
    with pytest.raises(NotebookNotFound):
        find_notebook({"JPY_SESSION_NAME": "gone.ipynb"}, {"__session__": "console-1"}, tmp_path)


def test_does_nothing_inside_a_kernel_hwkit_runs(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HWKIT_OUTPUT_LIMIT", "1000")
    assert check(path=tmp_path / "nowhere.ipynb") is None
    assert "does nothing while hwkit runs this notebook" in capsys.readouterr().out


def test_self_check_cells_are_recognised_and_nothing_else():
    cells = ["import hwkit.student as hw\nhw.check()",
             "hw.check('rf_final')  # again, in a cell of my own",
             "from hwkit import student\nstudent.check(path='t.ipynb')",
             "import hwkit.student\nhwkit.student.check()",
             "hw.check()\nrf_final = 3",                     # does more than check: runs as written
             "import hwkit.student as hw\nprint(hw)",
             "other.check()",
             "import hwkit.student as hw\nhw.check(",        # not Python
             ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    assert self_check_cells(nb) == {0, 1, 2, 3}


@pytest.mark.parametrize("sandbox", [True, False])
def test_grading_never_runs_the_self_check_cell(course, sandbox):
    """In the jail hwkit is not importable: the cell is skipped, the solution keeps full marks, and the graded
    notebook says why the cell did not run."""
    if sandbox and not sandbox_available()[0]:
        pytest.skip("no sandbox on this machine")
    nb = _partly_wrong(course)
    nb.cells.insert(-1, nbformat.v4.new_code_cell("rf_jump = rf_jump - 1"))          # right again
    nb.cells.append(nbformat.v4.new_code_cell("hw.check('rf_final')"))
    result = grade_result(course, "s01", nb, sandbox=sandbox)
    assert result.status == "ok" and result.score == result.max_score, (result.status, result.reason)
