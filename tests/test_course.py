"""An instructor sets up a course; bad input gets one clear line and leaves nothing half-written."""
from pathlib import Path

import pytest

from tests.support import hwkit


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("c") / "course"
    hwkit("init", root)
    return root


def test_init_scaffolds_a_course(course):
    config = (course / "hwkit.toml").read_text()
    assert "secret" in config and "[sandbox]" in config
    assert (course / "roster.csv").read_text().startswith("student_id,name")
    assert {p.stem for p in (course / "assignments").glob("*.toml")} >= {"hw1-conv"}


def test_two_inits_make_different_secrets(tmp_path):
    hwkit("init", tmp_path / "a")
    hwkit("init", tmp_path / "b")
    assert (tmp_path / "a" / "hwkit.toml").read_text() != (tmp_path / "b" / "hwkit.toml").read_text()


def test_init_refuses_an_existing_course(course):
    proc = hwkit("init", course, check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr


def _broken_copy(course: Path, tmp_path: Path) -> Path:
    import shutil
    target = tmp_path / "broken"
    shutil.copytree(course, target)
    return target


@pytest.mark.parametrize("what, edit, message", [
    ("duplicate id", lambda c: (c / "roster.csv").write_text("student_id,name\ns1,A\ns1,B\n"), "duplicate student_id"),
    ("empty id", lambda c: (c / "roster.csv").write_text("student_id,name\ns1,A\n,B\n"), "empty student_id"),
    ("no header", lambda c: (c / "roster.csv").write_text("s1,A\n"), "header"),
    ("missing config", lambda c: (c / "hwkit.toml").unlink(), "hwkit.toml: not found"),
    ("malformed config", lambda c: (c / "hwkit.toml").write_text("[course\nname="), "not valid TOML"),
    ("no secret", lambda c: (c / "hwkit.toml").write_text('[course]\nname="x"\n'), "secret"),
    ("bad limit", lambda c: (c / "hwkit.toml").write_text((c / "hwkit.toml").read_text().replace("memory_mb = 3072", "memory_mb = -1")), "memory_mb"),
    ("unknown problem", lambda c: (c / "assignments" / "hw1-conv.toml").write_text('[[problems]]\nid = "nope"\n'), "unknown problem id 'nope'"),
])
def test_bad_input_gets_one_clear_line(course, tmp_path, what, edit, message):
    broken = _broken_copy(course, tmp_path)
    edit(broken)
    proc = hwkit("generate", "hw1-conv", "--course", broken, check=False)
    assert proc.returncode != 0, what
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3
    assert not (broken / "release").exists() and not (broken / "source").exists()


def test_unknown_language_and_assignment(course):
    proc = hwkit("generate", "hw1-conv", "--course", course, "--lang", "fr", check=False)
    assert proc.returncode != 0 and "--lang 'fr'" in proc.stderr
    proc = hwkit("generate", "hw9", "--course", course, check=False)
    assert proc.returncode != 0 and "no such assignment" in proc.stderr
    assert not (course / "release").exists()


def test_problems_lists_the_bank():
    out = hwkit("problems").stdout
    for pid in ("receptive-field", "conv-cost", "depthwise-separable"):
        assert pid in out


def test_kernels_in_flight_and_threads_follow_the_cores(course):
    from hwkit.course import load_course
    from hwkit.grading.batch import plan_batch

    assert load_course(course).limits.torch_threads == 0                      # a new course: auto
    assert plan_batch(None, 40, 0, cores=2) == plan_batch(3, 40, 0, cores=2)  # cores + 1 kernels, one thread each
    assert plan_batch(None, 40, 0, cores=2).torch_threads == 1
    assert plan_batch(None, 40, 0, cores=8).lanes == 9
    assert plan_batch(None, 40, 0, cores=2).workers == 1                      # lanes are threads of few processes
    assert plan_batch(None, 40, 0, cores=8).workers == 3
    assert plan_batch(1, 40, 0, cores=4).torch_threads == 4                   # one kernel gets every core
    assert plan_batch(1, 40, 2, cores=4).torch_threads == 2                   # unless the course says otherwise
    assert plan_batch(None, 2, 0, cores=8).lanes == 2                         # never more lanes than submissions


def test_sandbox_settings_are_checked(course, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(course, bad)
    config = bad / "hwkit.toml"
    text = config.read_text()
    config.write_text(text.replace("torch_threads = 0", "torch_threads = -1"))
    proc = hwkit("generate", "hw1-conv", "--course", bad, check=False)
    assert proc.returncode == 2 and "torch_threads" in proc.stderr and "0 or more" in proc.stderr
    config.write_text(text.replace("cell_timeout = 60", "cell_timeout = 0"))
    proc = hwkit("generate", "hw1-conv", "--course", bad, check=False)
    assert proc.returncode == 2 and "cell_timeout" in proc.stderr and "positive" in proc.stderr


@pytest.mark.parametrize("points", [10, 7, 3.3, 100])
def test_a_problem_given_other_points_has_parts_that_add_up_to_them(points):
    """An instructor sets `points = 10` for a problem whose parts do not divide it evenly: the parts, rounded,
    still add up to exactly 10, so no total or LMS column ends in 9.9999."""
    import random

    from hwkit.bank import get_problem
    from hwkit.generate import scaled_parts

    problem = get_problem("receptive-field")
    total, parts = scaled_parts(problem, problem.sample(random.Random(0)), float(points))
    assert total == points and round(sum(p.points for p in parts), 4) == points, [p.points for p in parts]
