"""Hidden inputs are drawn once per grading run and part: every student a batch grades is asked the same hidden
questions for the same variant of a part, so the grader computes a whole network's reference once per run, not
once per student; the next run draws new questions. A reference several lanes need at once is computed once."""
from __future__ import annotations

import json
import secrets
import threading

import numpy as np
import torch

from hwkit.behaviour import ModuleSpec
from hwkit.course import load_course
from hwkit.generate import build_variant
from hwkit.grading.one import draw_probes
from hwkit.probes import pack_probe
from tests.support import make_course

STUDENTS = ["s001", "s002", "s003"]


def _questions(course, sid: str, run_secret: bytes | None) -> dict[str, str]:
    variant = build_variant(course, course.assignment("t"), next(s for s in course.roster if s.student_id == sid))
    return {p.key: json.dumps(pack_probe(p.probe), sort_keys=True) for p in draw_probes(variant, run_secret)}


def test_one_run_asks_every_student_the_same_hidden_questions_and_the_next_run_new_ones(tmp_path):
    course = load_course(make_course(tmp_path, ["resnet", "depthwise-separable"], STUDENTS, generate_now=False))
    run = secrets.token_bytes(32)
    first = {sid: _questions(course, sid, run) for sid in STUDENTS}
    # the residual block's cases do not depend on the student's variant: one set of questions for the run
    block = {first[sid]["resnet/resnet_block"] for sid in STUDENTS}
    assert len(block) == 1
    assert _questions(course, "s001", run) == first["s001"]            # drawn again in the run: the same

    again = _questions(course, "s001", secrets.token_bytes(32))
    assert again["resnet/resnet_block"] != first["s001"]["resnet/resnet_block"]
    # without a run (a submission graded alone), every grading draws its own
    assert _questions(course, "s001", None)["resnet/resnet_block"] != _questions(course, "s001", None)[
        "resnet/resnet_block"]


def test_a_reference_lanes_need_at_once_is_computed_once():
    builds = []
    gate = threading.Barrier(4)

    def build(config):
        builds.append(config)
        return torch.nn.Linear(*config)

    spec = ModuleSpec("Linear", build)
    case = {"config": [5, 3], "x": np.ones((2, 5), np.float32), "seed": 7, "cotangent_seed": 8}
    replies = []

    def lane():
        gate.wait()
        replies.append(spec.reply(case))

    threads = [threading.Thread(target=lane) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert all(r is replies[0] for r in replies)
