"""Probes every problem can use without a kernel module of its own."""
from __future__ import annotations

from hwkit_kernel.cases import call, each
from hwkit_kernel.student import Student


def variable(student: Student, inputs: dict):
    """The value of the variable the student was asked to set."""
    return student.value(inputs["name"])


def call_function(student: Student, inputs: dict) -> list:
    """The student's function called on each case of inputs["cases"] (lists of positional arguments)."""
    return call(student.function(inputs["name"]), inputs["cases"])


def module_behaviour(student: Student, inputs: dict) -> list:
    """For each case, the module the student's `inputs["name"]` builds from case["config"] (positional
    arguments), run by hwkit_kernel.modules.behaviour on the case's input with the grader's seeds (and once
    more, in training mode, on the case's `train_x` where the grader gave one)."""
    from hwkit_kernel.modules import behaviour

    build = student.function(inputs["name"])
    return each(inputs["cases"], lambda case: behaviour(
        build(*case["config"]), case["x"], seed=case["seed"], cotangent_seed=case["cotangent_seed"],
        zero=case.get("zero", ()), train_x=case.get("train_x")))
