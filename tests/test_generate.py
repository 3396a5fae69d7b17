"""An instructor generates an assignment: every student a different, reproducible variant."""
import hashlib
import json
import random
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from hwkit.bank import load_bank
from hwkit.probes import as_reply
from tests.support import hwkit, make_course

STUDENTS = [f"s{2026000 + i}" for i in range(30)]
FOUNDATION = ["receptive-field", "conv-cost", "depthwise-separable"]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("gen"), FOUNDATION, STUDENTS, lang="zh", generate_now=False)
    hwkit("generate", "t", "--course", root)
    return root


def test_generation_is_byte_identical(course, tmp_path):
    first = _digest(course / "release"), _digest(course / "source")
    hwkit("generate", "t", "--course", course)
    assert (_digest(course / "release"), _digest(course / "source")) == first


def test_every_student_gets_a_distinct_variant(course):
    answers = json.loads((course / "source" / "t" / "answers.json").read_text())["students"]
    assert sorted(answers) == STUDENTS
    for pid in FOUNDATION:
        notes = {answers[s][pid]["note"] for s in STUDENTS}
        assert len(notes) == len(STUDENTS), f"{pid}: two students share a variant"


def test_release_notebooks_are_valid_and_hide_the_answers(course):
    nb = nbformat.read(str(course / "release" / "t" / STUDENTS[0] / "t.ipynb"), as_version=4)
    nbformat.validate(nb)
    meta = nb.metadata["hwkit"]
    assert meta["assignment"] == "t" and meta["student"] == STUDENTS[0] and "variant" not in meta
    solution = nbformat.read(str(course / "source" / "t" / STUDENTS[0] / "t-solution.ipynb"), as_version=4)
    assert set(solution.metadata["hwkit"]["variant"]) == set(FOUNDATION)   # the instructor's copy keeps the notes
    tagged = [c for c in nb.cells if "hwkit-answer" in c.metadata.get("tags", [])]
    assert tagged and all("YOUR CODE HERE" in c.source or "None" in c.source for c in tagged)


def test_subset_generation_leaves_other_students_alone(course):
    before = (course / "release" / "t" / STUDENTS[1] / "t.ipynb").read_bytes()
    hwkit("generate", "t", "--course", course, "--students", STUDENTS[0], "--lang", "en", "--force")
    assert (course / "release" / "t" / STUDENTS[1] / "t.ipynb").read_bytes() == before
    answers = json.loads((course / "source" / "t" / "answers.json").read_text())["students"]
    assert len(answers) == len(STUDENTS)
    hwkit("generate", "t", "--course", course, "--students", STUDENTS[0], "--force")


@pytest.mark.parametrize("pid", sorted(load_bank()))
def test_every_variant_is_solved_by_its_reference(pid):
    """200 seeds per problem: valid parameters, the reference passes its own checks, and the self-check
    fingerprint of the reference matches itself."""
    problem = load_bank()[pid]
    notes = set()
    for seed in range(200):
        params = problem.sample(random.Random(seed))
        json.dumps(params)
        notes.add(problem.note(params))
        for part in problem.parts(params):
            probe = part.probe(random.Random(seed + 1))
            want = part.reference(probe)
            outcome = part.check.grade(as_reply(want), want)
            assert outcome.fraction == 1.0, (pid, seed, part.id, outcome)
            canonical = part.check.canonical(want)
            candidates = part.check.candidates(as_reply(want))
            assert all(v in candidates.get(k, []) for k, v in canonical.items()), (pid, part.id)
    assert len(notes) >= 190, f"{pid}: only {len(notes)} distinct variants in 200 seeds"


def test_solution_notebooks_run_top_to_bottom(course):
    folder = course / "source" / "t" / STUDENTS[0]
    nb = nbformat.read(str(folder / "t-solution.ipynb"), as_version=4)
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(folder)}}).execute()
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
