"""The command line a person meets: a typo gets a suggestion, an error shows its text as written (brackets
included), and a second `hwkit grade` of the same assignment refuses instead of grading everything twice."""
from __future__ import annotations

import os
import subprocess
import sys

from hwkit.course import load_course
from hwkit.grading.main import grading_lock
from tests.support import hwkit, make_course


def test_a_typo_in_an_assignment_name_gets_a_suggestion(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], generate_now=False)
    proc = hwkit("generate", "hw1-cnv", "--course", root, check=False)
    assert proc.returncode == 2 and "did you mean 'hw1-conv'?" in proc.stderr and "Traceback" not in proc.stderr


def test_a_typo_in_a_problem_id_gets_a_suggestion_and_brackets_survive(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], generate_now=False)
    (root / "assignments" / "t.toml").write_text('title = "T"\n\n[[problems]]\nid = "receptive-feld"\n', encoding="utf-8")
    proc = hwkit("generate", "t", "--course", root, check=False)
    assert proc.returncode == 2 and "did you mean 'receptive-field'?" in proc.stderr
    (root / "assignments" / "t.toml").write_text('title = "T"\n', encoding="utf-8")
    proc = hwkit("generate", "t", "--course", root, check=False)
    assert proc.returncode == 2 and "[[problems]]" in proc.stderr, proc.stderr


def test_a_second_grading_of_the_same_assignment_refuses(tmp_path):
    root = make_course(tmp_path, ["receptive-field"])
    (root / "submitted" / "t").mkdir(parents=True)
    with grading_lock(load_course(root), "t"):
        proc = hwkit("grade", "t", "--course", root, "--no-sandbox", check=False)
    assert proc.returncode == 2 and f"pid {os.getpid()}" in proc.stderr and "already being graded" in proc.stderr
    hwkit("grade", "t", "--course", root, "--no-sandbox")          # released: the next run goes ahead


def test_a_killed_grader_holds_no_lock(tmp_path):
    root = make_course(tmp_path, ["receptive-field"])
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom hwkit.course import load_course\nfrom hwkit.grading.main import grading_lock\n"
        f"with grading_lock(load_course({str(root)!r}), 't'):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with grading_lock(load_course(root), "t"):
        pass


def test_generating_in_the_other_language_warns_that_it_replaces_the_release(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], lang="zh")
    release = (root / "release" / "t" / "s001" / "t.ipynb").read_bytes()
    quiet = hwkit("generate", "t", "--course", root, "--lang", "zh")        # the same language: nothing to say
    assert "warning" not in quiet.stderr
    proc = hwkit("generate", "t", "--course", root, "--lang", "en")
    assert "already released in zh" in proc.stderr and "replace" in proc.stderr and "--force" in proc.stderr
    assert (root / "release" / "t" / "s001" / "t.ipynb").read_bytes() != release
