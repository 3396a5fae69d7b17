"""Kernel side of the LSTM problem: the student's functions called on the grader's tensors."""
import torch

from hwkit_kernel.cases import each


def _tensors(case):
    return [torch.as_tensor(a) for a in case]


def cell(student, inputs):
    """lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh) on each case."""
    lstm_cell = student.function("lstm_cell")
    return each(inputs["cases"], lambda case: lstm_cell(*_tensors(case)))


def forward(student, inputs):
    """lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh) -> (outputs, (h_T, c_T)) on each case."""
    lstm_forward = student.function("lstm_forward")

    def run(case):
        outputs, (h, c) = lstm_forward(*_tensors(case))
        return {"outputs": outputs, "h_T": h, "c_T": c}

    return each(inputs["cases"], run)
