"""Write the sample submissions in submissions/hw1-conv/ for the bundled example course.

Run after changing a template of hw1-conv: `.venv/bin/python scripts/make_samples.py`. A test checks that
the committed samples are what this script writes (the example course's secret is published)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hwkit.course import load_course  # noqa: E402
from hwkit.generate import generate, write_generated  # noqa: E402
from hwkit.scaffold import init_course  # noqa: E402

ASSIGNMENT = "hw1-conv"

# s002 makes one classic mistake per part it gets wrong; each override is a cell a student might write.
PARTLY_WRONG = '''# my answers
rf_final = 1 + sum(d * (k - 1) for k, s, p, d in rf_layers)       # forgot the stride
conv_params = conv_k * conv_k * conv_c_in * conv_c_out            # forgot the bias
conv_flops = conv_macs                                            # MACs, not FLOPs
conv_params_formula = "K**2*C_in*C_out"                           # forgot the bias again


class DepthwiseSeparableConv(nn.Module):                           # a standard conv: no groups
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        return self.conv(x)
'''

DOES_NOT_RUN = ["def receptive_field(layers)\n    return 1, 1\n",               # a syntax error
                "conv_params = conv_weights.numel()\n"]                          # NameError


def _cell(source: str, cell_id: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.id = cell_id  # fixed, so the samples are byte-identical on every run
    return cell


def make_samples(target: Path) -> None:
    with tempfile.TemporaryDirectory() as td:
        root = init_course(Path(td) / "example-course", example=True)
        course = load_course(root)
        spec = course.assignment(ASSIGNMENT)
        write_generated(course, spec, generate(course, spec, course.lang, course.students()))

        def solution(sid):
            nb = nbformat.read(str(root / "source" / ASSIGNMENT / sid / f"{ASSIGNMENT}-solution.ipynb"), as_version=4)
            nb.metadata = release(sid).metadata
            return nb

        def release(sid):
            return nbformat.read(str(root / "release" / ASSIGNMENT / sid / f"{ASSIGNMENT}.ipynb"), as_version=4)

        samples = {"s001": solution("s001"), "s002": solution("s002"), "s003": solution("s003"), "s004": release("s004")}
        samples["s002"].cells.append(_cell(PARTLY_WRONG, "student-1"))
        code = [i for i, c in enumerate(samples["s003"].cells) if c.cell_type == "code"]
        samples["s003"].cells[code[2]].source = DOES_NOT_RUN[0]
        samples["s003"].cells.append(_cell(DOES_NOT_RUN[1], "student-1"))
        for sid, nb in samples.items():
            folder = target / ASSIGNMENT / sid
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(folder / f"{ASSIGNMENT}.ipynb"))


if __name__ == "__main__":
    make_samples(REPO / "submissions")
    print(f"wrote {REPO / 'submissions' / ASSIGNMENT}")
