"""Four ways to look at a normalised CIFAR-10 batch (seed homework, problem 5).

The data are synthetic CIFAR-10 python batches in the real pickled format, written by `data()`; the grader
never reads them back: every reference comes from the generator's arrays in memory. Figures are probed in
the kernel: the array shown in each Axes (get_images()[0].get_array()), titles and grid cells come back
as data."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array, Cases, Exact, Fields
from hwkit.problem import KernelModule, Mistake, Part, Probe, Problem, say
from hwkit.probes import read_variable
from solutions.cifar_visualize import (LABEL_NAMES, N_IMAGES, batch_files, concat_grid, denormalize, grid_positions,
                                       hwc_list, make_batch, make_grid, to_rows, to_tensor)

PAD_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)


def sample(rng: random.Random) -> dict:
    """Per-channel mean/std to 2 decimals (12^3 x 10^3 choices alone; short, so no checksum answer rounds to one), batch size and index, grid layout."""
    b = rng.randint(6, 16)
    return {"mean": [round(rng.uniform(0.42, 0.53), 2) for _ in range(3)],
            "std": [round(rng.uniform(0.19, 0.28), 2) for _ in range(3)],
            "batch_size": b, "batch_index": rng.randint(0, N_IMAGES // b - 1),
            "nrow": rng.randint(3, min(8, b - 1)), "padding": rng.choice([1, 3, 4, 5]),
            "pad_value": rng.choice(PAD_VALUES)}


def note(params: dict) -> str:
    m = ",".join(f"{v:.3f}" for v in params["mean"])
    s = ",".join(f"{v:.3f}" for v in params["std"])
    return (f"mean=({m}) std=({s}) B={params['batch_size']} k={params['batch_index']} "
            f"nrow={params['nrow']} pad={params['padding']} pv={params['pad_value']:g}")


def _student_batch(params: dict, index: int | None = None) -> tuple[np.ndarray, list[int]]:
    images, labels = make_batch()
    b = params["batch_size"]
    k = params["batch_index"] if index is None else index
    return to_rows(images)[k * b:(k + 1) * b], labels[k * b:(k + 1) * b]


def grid_image(params: dict, *, denorm: bool = True, hwc: bool = True, index: int | None = None, **grid_switches) -> np.ndarray:
    rows, _ = _student_batch(params, index)
    x = to_tensor(rows, params["mean"], params["std"])
    if denorm:
        x = denormalize(x, params["mean"], params["std"])
    settings = {"padding": params["padding"], "pad_value": params["pad_value"], **grid_switches}
    g = make_grid(x, params["nrow"], **settings)
    return np.ascontiguousarray(g.transpose(1, 2, 0)) if hwc else g


def answers(params: dict) -> dict:
    rows, labels = _student_batch(params)
    g = grid_image(params)
    return {"cifar_batch_labels": [LABEL_NAMES[y] for y in labels], "cifar_grid_shape": list(g.shape),
            "cifar_grid_mean": round(float(g.mean()), 6),
            "cifar_first_pixel_normalised": [round(float(v), 6) for v in to_tensor(rows[:1], params["mean"], params["std"])[0, :, 0, 0]]}


# ---------------------------------------------------------------- kernel side: kernel.py

KERNEL = KernelModule.beside(__file__)
MAX_AXES = 256          # a figure of a batch has a few dozen; more boxes than this are not ranked (the cost is O(n^2))


def _call_probe(name: str, cases: list) -> Probe:
    return KERNEL.probe("call", {"name": name, "cases": cases})


def _figure_probe(name: str, rs: np.random.Generator, b: int, mean, std, extra: list) -> Probe:
    """The batch travels as bytes (B, 3, 32, 32); the kernel normalises it as the loader would."""
    return KERNEL.probe("figure", {"name": name, "images": rs.integers(0, 256, size=(b, 3, 32, 32), dtype=np.uint8),
                                   "labels": rs.integers(0, 10, size=b).astype(np.int64), "mean": list(mean),
                                   "std": list(std), "extra": extra})


def _figure_data(reply, probe: Probe):
    """In the grader: each Axes' grid cell, recomputed here from the boxes the kernel reported."""
    if not isinstance(reply, dict) or not isinstance(reply.get("boxes"), list) or len(reply["boxes"]) > MAX_AXES:
        return reply
    boxes = [[float(v) for v in box] for box in reply["boxes"]]
    return {**reply, "cells": KERNEL.load()["grid_cells"](boxes) if all(len(b) == 4 for b in boxes) else []}


def _figure_batch(probe: Probe) -> np.ndarray:
    """The normalised batch the kernel built (float32, the same operations)."""
    images = probe.inputs["images"]
    return to_tensor(images.reshape(len(images), 3072), probe.inputs["mean"], probe.inputs["std"])


def _hidden_stats(rng: random.Random) -> tuple[list[float], list[float]]:
    return ([round(rng.uniform(0.3, 0.6), 3) for _ in range(3)], [round(rng.uniform(0.15, 0.35), 3) for _ in range(3)])


def _np_rng(rng: random.Random) -> np.random.Generator:
    return np.random.default_rng(rng.getrandbits(63))


# ---------------------------------------------------------------- parts

# Method 3 is ImageGrid by name (AxesGrid is the same class): the same picture drawn with plt.subplots is method 1
# again.
_USES_IMAGEGRID = ((r"\b(ImageGrid|AxesGrid)\b", say(
    "Method 3 asks for mpl_toolkits.axes_grid1.ImageGrid; this answer draws the grid another way (method 1 again). "
    "An instructor will review it.",
    "方法三要求使用 mpl_toolkits.axes_grid1.ImageGrid；你的答案用了别的方式画网格（相当于又做了一遍方法一），将由教师复核。")),)


def parts(params: dict) -> list[Part]:
    mean, std = params["mean"], params["std"]

    def to_tensor_probe(rng):
        rs, cases = _np_rng(rng), []
        for _ in range(3):
            m, s = _hidden_stats(rng)
            cases.append([rs.integers(0, 256, size=(rng.randint(1, 2), 3072), dtype=np.uint8), m, s])
        return _call_probe("cifar_to_tensor", cases)

    def to_tensor_ref(probe, **switches):
        return [to_tensor(rows, m, s, **switches) for rows, m, s in probe.inputs["cases"]]

    def denorm_probe(rng):
        rs, cases = _np_rng(rng), []
        for _ in range(3):
            m, s = _hidden_stats(rng)
            x = rs.normal(0, 1.5, size=(rng.randint(1, 3), 3, rng.randint(2, 6), rng.randint(2, 6))).astype(np.float32)
            cases.append([x, m, s])
        return _call_probe("cifar_denormalize", cases)

    def denorm_ref(probe, **switches):
        return [denormalize(x, m, s, **switches) for x, m, s in probe.inputs["cases"]]

    def subplots_probe(rng):
        return _figure_probe("cifar_show_subplots", _np_rng(rng), rng.randint(4, 8), mean, std, [])

    def subplots_ref(probe):
        batch, labels = _figure_batch(probe), probe.inputs["labels"]
        return {"count": len(batch), "images": hwc_list(denormalize(batch, mean, std)),
                "titles": [LABEL_NAMES[int(y)] for y in labels]}

    def grid_probe(rng):
        rs, cases = _np_rng(rng), []
        for kind in ("partial", "wide", "random"):
            if kind == "partial":
                nrow = rng.randint(2, 4)
                b = rng.choice([v for v in range(nrow + 1, 3 * nrow + 1) if v % nrow and math.ceil(v / nrow) != nrow])
            elif kind == "wide":
                b = rng.randint(2, 4)
                nrow = b + rng.randint(1, 3)
            else:
                b, nrow = rng.randint(2, 12), rng.randint(1, 6)
            x = rs.random(size=(b, 3, rng.randint(3, 8), rng.randint(3, 8))).astype(np.float32)
            cases.append([x, nrow, rng.randint(1, 3) if kind != "random" else rng.randint(0, 3), rng.choice(PAD_VALUES)])
        return _call_probe("cifar_make_grid", cases)

    def grid_ref(probe, **switches):
        return [make_grid(x, nrow, padding, pad_value, **switches) for x, nrow, padding, pad_value in probe.inputs["cases"]]

    def imagegrid_probe(rng):
        nrow = rng.randint(3, 5)
        return _figure_probe("cifar_show_imagegrid", _np_rng(rng), rng.randint(nrow + 1, 2 * nrow), mean, std, [nrow])

    def imagegrid_ref(probe):
        batch, nrow = _figure_batch(probe), probe.inputs["extra"][0]
        return {"count": len(batch), "images": hwc_list(denormalize(batch, mean, std)), "cells": grid_positions(len(batch), nrow)}

    def concat_probe(rng):
        rs, cases = _np_rng(rng), []
        for kind in ("partial", "full", "random"):
            nrow = rng.randint(2, 4)
            if kind == "partial":
                b = rng.choice([v for v in range(nrow + 1, 3 * nrow + 1) if v % nrow and math.ceil(v / nrow) != nrow])
            elif kind == "full":
                b = nrow * rng.choice([r for r in (1, 2, 3) if r != nrow])
            else:
                b = rng.randint(2, 10)
            cases.append([rs.random(size=(b, 3, rng.randint(3, 8), rng.randint(3, 8))).astype(np.float32), nrow])
        return _call_probe("cifar_concat_grid", cases)

    def concat_ref(probe, **switches):
        return [concat_grid(x, nrow, **switches) for x, nrow in probe.inputs["cases"]]

    no_denorm = say("The images are still normalised: de-normalise with x·std + mean (and clip to [0, 1]) before showing them.",
                    "图像仍是归一化后的数值：显示前需要反归一化 x·std + mean（并裁剪到 [0, 1]）。")
    swapped = say("nrow is the number of images per row (columns); you used it as the number of rows.",
                  "nrow 是每行的图像数（列数）；你把它当成了行数。")

    def fig_no_denorm(probe):
        return {"images": hwc_list(np.clip(_figure_batch(probe), 0, 1))}

    def value_ref(probe):
        return grid_image(params)

    def value_mistakes(probe):
        want = grid_image(params)
        k, b = params["batch_index"], params["batch_size"]
        out = [Mistake("GRID_NO_DENORMALIZE", grid_image(params, denorm=False), no_denorm),
               Mistake("GRID_CHW_NOT_HWC", grid_image(params, hwc=False),
                       say("plt.imshow needs H×W×C: permute(1, 2, 0) the C×H×W grid.", "plt.imshow 需要 H×W×C:对 C×H×W 的网格做 permute(1, 2, 0)。")),
               Mistake("GRID_WRONG_PADDING", grid_image(params, padding=2),
                       say(f"Use padding={params['padding']} as stated (2 is torchvision's default).",
                           f"应按题目使用 padding={params['padding']}(2 是 torchvision 的默认值)。")),
               Mistake("GRID_WRONG_PADDING", grid_image(params, pad_value=0.0),
                       say(f"Fill the padding with pad_value={params['pad_value']:g} as stated.", f"应按题目用 pad_value={params['pad_value']:g} 填充间隔。")),
               Mistake("GRID_ROW_COL_SWAPPED", grid_image(params, swap=True), swapped),
               Mistake("CIFAR_WRONG_BATCH", grid_image(params, index=0 if k else 1),
                       say(f"Use batch number {k} (counting from 0) of the DataLoader with batch_size={b}, shuffle=False.",
                           f"应使用 DataLoader(batch_size={b}, shuffle=False)的第 {k} 个批次（从 0 开始计数）。"))]
        check = Array(rtol=1e-5, atol=1e-5)
        return [m for m in out if not check.matches(m.value, want)]

    # A figure is its images: the count and the titles or the grid's cells earn their share only with them, or
    # with the images wrong in a recognised way (FIG_FORM: count 1 and titles or cells 1, of 4).
    fig_check = lambda extra: Fields({"count": (1, Exact()), "images": (2, Cases(Array(rtol=0, atol=1e-5))), **extra},  # noqa: E731
                                     work=("images",))
    FIG_FORM = 2 / 4

    return [
        Part("cifar_to_tensor", 3, say("Rows of a CIFAR-10 batch to a normalised (N, 3, 32, 32) tensor", "CIFAR-10 数据行转换为归一化的 (N, 3, 32, 32) 张量"),
             probe=to_tensor_probe, reference=to_tensor_ref, check=Cases(Array(rtol=1e-5, atol=1e-5)),
             mistakes=lambda probe: [
                 Mistake("CIFAR_RESHAPE_HWC", to_tensor_ref(probe, hwc=True),
                         say("Each row holds the 1024 red values, then green, then blue: reshape to (N, 3, 32, 32) directly, not (N, 32, 32, 3).",
                             "每行依次是 1024 个红色值、绿色值、蓝色值：应直接 reshape 为 (N, 3, 32, 32)，而不是 (N, 32, 32, 3)。")),
                 Mistake("CIFAR_NOT_NORMALIZED", to_tensor_ref(probe, normalize=False),
                         say("Scaled to [0, 1] but not normalised: subtract the mean and divide by the std per channel.",
                             "只缩放到了 [0, 1]，没有归一化：还需按通道减去均值、除以标准差。")),
                 Mistake("CIFAR_NORMALIZE_NO_SCALE", to_tensor_ref(probe, scale=False),
                         say("Divide the 0-255 bytes by 255 before normalising.", "归一化之前要先把 0-255 的字节值除以 255。"))],
             kind="code", hidden_inputs=True),
        Part("cifar_denormalize", 2, say("De-normalise a batch for display", "反归一化以便显示"),
             probe=denorm_probe, reference=denorm_ref, check=Cases(Array(rtol=1e-5, atol=1e-5)),
             mistakes=lambda probe: [
                 Mistake("DENORM_NO_CLAMP", denorm_ref(probe, clamp=False),
                         say("Clip the result to [0, 1] (torch.clamp).", "需要把结果裁剪到 [0, 1](torch.clamp)。")),
                 Mistake("DENORM_INVERTED", denorm_ref(probe, inverted=True),
                         say("You normalised again: de-normalising is x·std + mean.", "你又做了一次归一化：反归一化是 x·std + mean。")),
                 Mistake("DENORM_MEAN_STD_SWAPPED", denorm_ref(probe, swapped=True),
                         say("Mean and std are swapped: x·std + mean.", "均值和标准差用反了：应为 x·std + mean。"))],
             kind="code", hidden_inputs=True),
        Part("cifar_show_subplots", 3, say("Method 1: a grid of matplotlib subplots", "方法一:matplotlib 子图"),
             probe=subplots_probe, reference=subplots_ref, interpret=_figure_data,
             check=fig_check({"titles": (1, Cases(Exact()))}),
             mistakes=lambda probe: [
                 Mistake("GRID_NO_DENORMALIZE", fig_no_denorm(probe), no_denorm, fraction=FIG_FORM),
                 Mistake("FIG_TITLES_NOT_NAMES", {"titles": [str(int(y)) for y in probe.inputs["labels"]]},
                         say("Title each image with its class name, cifar_label_names[label], not the number.",
                             "每幅图的标题应为类别名 cifar_label_names[label]，而不是数字。"))],
             kind="code", hidden_inputs=True),
        Part("cifar_make_grid", 4, say("Method 2: make_grid with torchvision's layout", "方法二：按 torchvision 规则实现 make_grid"),
             probe=grid_probe, reference=grid_ref, check=Cases(Array(rtol=0, atol=1e-6)),
             mistakes=lambda probe: [
                 Mistake("GRID_ROW_COL_SWAPPED", grid_ref(probe, swap=True), swapped),
                 Mistake("GRID_WRONG_PADDING", grid_ref(probe, outer=False),
                         say("torchvision's grid also has padding around the outside: its size is (ymaps·(H+p) + p, xmaps·(W+p) + p).",
                             "torchvision 的网格外圈也有填充：尺寸为 (ymaps·(H+p) + p, xmaps·(W+p) + p)。"))],
             kind="code", hidden_inputs=True),
        Part("cifar_show_imagegrid", 3, say("Method 3: mpl_toolkits ImageGrid", "方法三:mpl_toolkits 的 ImageGrid"),
             probe=imagegrid_probe, reference=imagegrid_ref, interpret=_figure_data, required=_USES_IMAGEGRID,
             check=fig_check({"cells": (1, Array(rtol=0, atol=0))}),
             mistakes=lambda probe: [
                 Mistake("GRID_NO_DENORMALIZE", fig_no_denorm(probe), no_denorm, fraction=FIG_FORM),
                 Mistake("GRID_ROW_COL_SWAPPED", {"cells": grid_positions(len(probe.inputs["images"]), probe.inputs["extra"][0], swap=True)}, swapped)],
             kind="code", hidden_inputs=True),
        Part("cifar_concat_grid", 3, say("Method 4: a grid by numpy concatenation", "方法四：用 numpy 拼接成网格"),
             probe=concat_probe, reference=concat_ref, check=Cases(Array(rtol=0, atol=1e-6)),
             mistakes=lambda probe: [
                 Mistake("GRID_CHW_NOT_HWC", concat_ref(probe, hwc=False),
                         say("Return an H×W×C array (channels last), ready for plt.imshow.", "应返回 H×W×C（通道在最后）的数组，可直接用于 plt.imshow。")),
                 Mistake("GRID_ROW_COL_SWAPPED", concat_ref(probe, swap=True), swapped)],
             kind="code", hidden_inputs=True),
        Part("cifar_grid_image", 2, say("The displayed grid of your batch", "你的批次的网格图像"),
             probe=lambda rng: read_variable("cifar_grid_image"), reference=value_ref,
             check=Array(rtol=1e-5, atol=1e-5), mistakes=value_mistakes),
    ]


def context(params: dict) -> dict:
    f = lambda v: "(" + ", ".join(f"{x:.3f}" for x in v) + ")"  # noqa: E731
    return {"cifar_mean_src": f(params["mean"]), "cifar_std_src": f(params["std"]),
            "cifar_pad_value_src": f"{params['pad_value']:g}" if params["pad_value"] % 1 else f"{params['pad_value']:.1f}",
            "cifar_first": params["batch_index"] * params["batch_size"],
            "cifar_last": (params["batch_index"] + 1) * params["batch_size"] - 1}


def data(target: Path) -> None:
    for rel, blob in batch_files().items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)


PROBLEM = Problem(
    id="cifar-visualize",
    title=say("Four ways to visualise a CIFAR-10 batch", "可视化 CIFAR-10 批次的四种方法"),
    points=20, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"), data=data,
)
