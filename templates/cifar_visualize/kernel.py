"""Kernel side of the CIFAR-10 visualisation problem: the student's functions on the grader's arrays, and
what their figures show (each image Axes' array, title and position, as data)."""
import numpy as np
import torch

from hwkit_kernel.cases import each


def call(student, inputs):
    """inputs["name"] called on each case; float arrays are passed as torch tensors."""
    function = student.function(inputs["name"])

    def run(case):
        return function(*[torch.as_tensor(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in case])

    return each(inputs["cases"], run)


def grid_cells(boxes, tolerance=1e-3):
    """[row, column] of each Axes from its box: left edges and top edges that differ by less than the
    tolerance (figure coordinates) are one column or one row, rows counted from the top. (The grader
    computes the cells it grades from the boxes with this same function, outside the kernel.)"""
    def ranks(values, descending):
        levels = []
        for v in sorted(values, reverse=descending):
            if not levels or abs(v - levels[-1]) > tolerance:
                levels.append(v)
        return [next(i for i, level in enumerate(levels) if abs(v - level) <= tolerance) for v in values]

    rows, cols = ranks([b[3] for b in boxes], True), ranks([b[0] for b in boxes], False)
    return [[r, c] for r, c in zip(rows, cols)]


def figure(student, inputs):
    """The batch normalised as the loader does, given to inputs["name"]; what its Figure shows: per image
    Axes its array, title and box (x0, y0, x1, y1 in figure coordinates)."""
    import matplotlib.figure
    import matplotlib.pyplot as plt

    name, mean, std = inputs["name"], inputs["mean"], inputs["std"]
    batch = ((torch.as_tensor(inputs["images"]).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1))
             / torch.tensor(std).view(1, 3, 1, 1))
    fig = student.function(name)(batch, torch.as_tensor(inputs["labels"]), list(mean), list(std), *inputs["extra"])
    if not isinstance(fig, matplotlib.figure.Figure):
        raise TypeError(f"{name} must return a matplotlib Figure, got {type(fig).__name__}")
    try:
        fig.draw_without_rendering()
        axes = [ax for ax in fig.axes if ax.get_images()]
        boxes = [[float(v) for v in ax.get_position().extents] for ax in axes]
        return {"count": len(axes),
                "images": [np.asarray(np.ma.getdata(ax.get_images()[0].get_array()), dtype=np.float32) for ax in axes],
                "titles": [ax.get_title() for ax in axes], "boxes": boxes, "cells": grid_cells(boxes)}
    finally:
        plt.close(fig)
