"""The README's main job: the example course grades the bundled sample submissions exactly as expected."""
import filecmp
import sqlite3
from pathlib import Path

import pytest

from hwkit.sandbox import sandbox_available
from tests.support import hwkit, read_grades

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "submissions" / "hw1-conv"
RF = ["rf_final", "rf_jump", "rf_out_size", "receptive_field"]


def test_committed_samples_match_the_templates(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_samples", REPO / "scripts" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_samples(tmp_path)
    for sid in ("s001", "s002", "s003", "s004"):
        assert filecmp.cmp(tmp_path / "hw1-conv" / sid / "hw1-conv.ipynb", SAMPLES / sid / "hw1-conv.ipynb", shallow=False), \
            f"submissions/hw1-conv/{sid} is stale: run scripts/make_samples.py"


@pytest.mark.skipif(not sandbox_available()[0], reason="needs the bubblewrap sandbox")
def test_example_course_grades_the_samples(tmp_path):
    course = tmp_path / "example-course"
    hwkit("init", course, "--example")
    hwkit("generate", "hw1-conv", "--course", course)
    hwkit("grade", "hw1-conv", "--course", course, "--submissions", SAMPLES)
    grades = read_grades(course / "graded" / "hw1-conv" / "grades.csv")
    assert {sid: (row["total"], row["max"], row["status"]) for sid, row in grades.items()} == {
        "s001": ("52", "52", "ok"), "s002": ("38", "52", "ok"), "s003": ("40", "52", "cell errors"), "s004": ("0", "52", "ok")}
    db = sqlite3.connect(course / "gradebook.sqlite")
    notes = {(sid, part): (score, note) for sid, part, score, note in
             db.execute("SELECT student_id, part, score, note FROM parts WHERE note NOT IN ('CORRECT', 'WRITTEN_ALL_CONCEPTS')")}
    assert {k: v for k, v in notes.items() if k[0] == "s002"} == {
        ("s002", "rf_final"): (0.0, "RF_IGNORED_STRIDE"), ("s002", "conv_params"): (0.0, "CONV_NO_BIAS"),
        ("s002", "conv_flops"): (0.0, "FLOPS_GAVE_MACS"), ("s002", "conv_params_formula"): (0.0, "FORMULA_NO_BIAS"),
        ("s002", "ds_module"): (0.0, "DSCONV_NO_GROUPS")}
    assert {k: v for k, v in notes.items() if k[0] == "s003"} == {("s003", p): (0.0, "NOT_ANSWERED") for p in RF}
    assert {v[1] for k, v in notes.items() if k[0] == "s004"} == {"NOT_ANSWERED"}
    assert len([k for k in notes if k[0] == "s004"]) == 27  # every part of the three problems
    assert not [k for k in notes if k[0] == "s001"]
    review = db.execute("SELECT COUNT(*) FROM parts WHERE student_id='s001' AND needs_review=1").fetchone()[0]
    assert review == 3  # the three written parts are provisional
