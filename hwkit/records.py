"""The records that pass between hwkit's stages: a leaf module that imports nothing of hwkit.

A problem (templates/<id>/problem.py) is a `Problem` whose `Part`s say how to probe the kernel for the
student's answer (`probe`), what the reference reply is for that probe (`reference`, computed outside the
kernel from the parameters), how the two are compared (`check`), and which wrong replies are known mistakes
(`mistakes`). The kernel's answer to a probe is a `Reply`; a check turns it into an `Outcome`; a submission
as a whole ends with a `Status`."""
from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable


class Status(enum.StrEnum):
    """How the grading of one submission ended. The values are what the gradebook, grades.csv and the
    feedback pages store and show."""
    OK = "ok"
    CELL_ERRORS = "cell errors"              # it ran; some cells raised (their parts are graded as they stand)
    TIMEOUT = "timeout"
    CPU_LIMIT = "cpu limit"
    MEMORY_LIMIT = "memory limit"
    KILLED = "killed"
    KERNEL_DIED = "kernel died"
    INVALID = "invalid notebook"
    NO_SUBMISSION = "no submission"
    AMBIGUOUS = "ambiguous submission"
    GRADER_ERROR = "grader error"            # the grader failed; the next run grades it again
    VARIANT_MISMATCH = "variant mismatch"    # graded, but the notebook looks like another student's variant


Text = dict  # {"en": "...", "zh": "..."}


def say(en: str, zh: str) -> Text:
    return {"en": en, "zh": zh}


@dataclass(frozen=True)
class KernelModule:
    """A problem's kernel-side probe code: templates/<problem>/kernel.py, real Python that imports only the
    standard library, numpy, torch, matplotlib and hwkit_kernel. Its source travels with each probe and is
    run by hwkit_kernel's runtime in the student's kernel; the bank itself is never visible there."""
    name: str
    source: str

    @classmethod
    def beside(cls, problem_file: str | Path) -> "KernelModule":
        path = Path(problem_file).with_name("kernel.py")
        return cls(path.parent.name, path.read_text(encoding="utf-8"))

    def probe(self, function: str, inputs: dict | None = None) -> "Probe":
        return Probe(function, inputs or {}, self)

    def load(self) -> dict:
        """The module's namespace in the grader, for helpers it shares with the kernel side (e.g. the
        statistics the grader computes from the kernel's samples, which the self-check computes there)."""
        return _load_source(self.name, self.source)


@lru_cache(maxsize=None)
def _load_source(name: str, source: str) -> dict:
    namespace = {"__name__": f"hwkit_kernel_{name}"}
    exec(compile(source, f"<kernel.py of {name}>", "exec"), namespace)
    return namespace


@dataclass(frozen=True)
class Probe:
    """What the grader asks the kernel: call `function(student, inputs)` of `module` (a problem's kernel.py;
    None: hwkit_kernel.builtin) with JSON values and numpy arrays as inputs. The function returns data only."""
    function: str
    inputs: dict = field(default_factory=dict)
    module: KernelModule | None = None


@dataclass(frozen=True)
class Outcome:
    fraction: float
    note: str
    feedback: Text
    needs_review: bool = False   # written answers: provisional score, a person should confirm
    undecided: bool = False      # a formula the checker could not decide in time


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: if the reply matches `value` (same shape as a reference reply; for a
    dict reply only the keys given are compared), the outcome carries this note and feedback, and
    `fraction` of the points where it is given (else what the check gave)."""
    note: str
    value: Any
    feedback: Text
    fraction: float | None = None


def _no_mistakes(probe: Probe) -> list[Mistake]:
    return []


@dataclass
class Part:
    id: str
    points: float
    title: Text
    probe: Callable[[random.Random], Probe]
    reference: Callable[[Probe], Any]
    check: Any                      # a hwkit.checks.Check (duck-typed: checks import this module)
    mistakes: Callable[[Probe], list[Mistake]] = _no_mistakes
    kind: str = "value"             # value | formula | code | written | choice
    hidden_inputs: bool = False     # True: grading draws fresh inputs; self-check uses public ones
    # The self-check's probe, where it must differ from grading's (e.g. a statistical part whose public
    # reply is made deterministic in the kernel; grading never lets the kernel apply a tolerance).
    public_probe: Callable[[random.Random], Probe] | None = None
    # Turns the kernel's raw data into the values the check compares, in the grader (outside the
    # sandbox), so no judgement is ever made by code the student can tamper with.
    interpret: Callable[[Any, Probe], Any] | None = None
    # Where grading compares something the kernel does not report (a module part compares verdicts that
    # `interpret` derives), the self-check compares instead the replies a right answer gives on the public
    # probe (one entry per acceptable alternative) with `public_check`.
    public_reference: Callable[[Probe], list] | None = None
    public_check: Any = None
    # Ready-made shortcuts the statement forbids (regular expressions over the code of the part's answer cells,
    # comments and strings left out, and what to tell the student): behaviour cannot tell them from the work.
    forbidden: tuple = ()            # ((pattern, Text), ...)
    # What the statement requires the answer to use (a method named in the part's title): the same scan must
    # find each pattern, else the part scores 0 and a person decides (behaviour cannot tell method 1 from 3).
    required: tuple = ()             # ((pattern, Text), ...)

    def self_check_probe(self, rng: random.Random) -> Probe:
        return (self.public_probe or self.probe)(rng)

    def self_check_replies(self, probe: Probe) -> list:
        """The replies that pass the self-check on `probe`: any one of them, in full."""
        return self.public_reference(probe) if self.public_reference else [self.reference(probe)]

    def self_check_check(self):
        return self.public_check or self.check


@dataclass
class Problem:
    """One bank entry, loaded from templates/<id>/problem.py."""
    id: str
    title: Text
    points: float
    sample: Callable[[random.Random], dict]
    note: Callable[[dict], str]
    parts: Callable[[dict], list[Part]]
    template: Path
    answers: Callable[[dict], dict]           # reference answers for answers.json (JSON values)
    context: Callable[[dict], dict] = lambda params: {}   # extra template variables (e.g. solution code)
    data: Callable[[Path], None] | None = None  # writes shared data files for the release, deterministic
    topic: str = "homework"

    def part_ids(self) -> list[str]:
        return [p.id for p in self.parts(self.sample(random.Random(0)))]




@dataclass(frozen=True)
class Reply:
    """What the kernel said for one part: a value (data only) or the error it raised."""
    ok: bool
    value: object = None
    error_type: str = ""
    error_message: str = ""
