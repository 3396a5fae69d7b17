"""A custom cats/dogs Dataset in ImageFolder layout, a DataLoader and a batch figure (seed homework, problem 4).

Grading never reads the student's files: each probe writes a fresh image folder (bytes made here, drawn
from the probe rng) under the kernel's working directory, builds the student's dataset on it and returns
the items as arrays; the reference decodes the same bytes with PIL here."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array, Cases, Exact, Fields
from hwkit.problem import KernelModule, Mistake, Part, Problem, say
from solutions.custom_dataset import (RESAMPLE, as_probe_files, dataset_items, from_probe_files, hidden_tree,
                                      index_files, load_image, loader_batches, training_files, write_files)

METHODS = tuple(RESAMPLE)  # NEAREST, BILINEAR, BICUBIC
# Of the points for the items and for the figure, what their form is worth (the item's type and dtype, the
# number of images drawn): earned only with the images right in some case or wrong in a recognised way.
ITEM_POINTS, ITEM_FORM = 5, 1
SHOW_POINTS, SHOW_FORM = 3, 1


def sample(rng: random.Random) -> dict:
    """Output height and width differ (so a swapped PIL size is visible), 77*76 sizes x 6 batch sizes x
    3 resampling filters = 105,336 variants."""
    h = rng.randint(20, 96)
    w = rng.randint(20, 95)
    if w >= h:
        w += 1
    return {"height": h, "width": w, "batch_size": rng.randint(3, 8), "resample": rng.choice(METHODS)}


def note(params: dict) -> str:
    return f"size=(H={params['height']}, W={params['width']}) {params['resample']} batch={params['batch_size']}"


def _size(params: dict) -> tuple[int, int]:
    return params["height"], params["width"]


def answers(params: dict) -> dict:
    files = training_files()
    class_to_idx, samples = index_files(files)
    first = load_image(samples[0][2], _size(params), params["resample"])
    n, b = len(samples), params["batch_size"]
    return {"cd_len": n, "cd_class_to_idx": class_to_idx, "cd_num_batches": -(-n // b),
            "cd_first_batch_shape": [min(b, n), 3, params["height"], params["width"]],
            "cd_first_item_mean": round(float(first.mean()), 6)}


# ---------------------------------------------------------------- kernel side: kernel.py

KERNEL = KernelModule.beside(__file__)


def _tree_inputs(rng: random.Random, size) -> dict:
    return {"dir": f"_hwkit_cd_{rng.getrandbits(40):010x}", "files": as_probe_files(hidden_tree(rng)), "size": list(size)}


def _hidden_size(rng: random.Random) -> list[int]:
    h = rng.randint(10, 32)
    w = rng.randint(10, 31)
    return [h, w + 1 if w >= h else w]


# ---------------------------------------------------------------- parts

def parts(params: dict) -> list[Part]:
    size, method = _size(params), params["resample"]

    def labels_probe(rng):
        return KERNEL.probe("labels", _tree_inputs(rng, _hidden_size(rng)))

    def labels_reference(probe, **switches):
        files = from_probe_files(probe.inputs["files"])
        class_to_idx, samples = index_files(files, **switches)
        return {"len": len(samples), "labels": [label for label, _, _ in samples],
                "class_to_idx": json.dumps(dict(sorted(class_to_idx.items())))}

    def labels_mistakes(probe):
        files = from_probe_files(probe.inputs["files"])
        right = labels_reference(probe)
        reverse = labels_reference(probe, reverse_classes=True)
        k = len(json.loads(right["class_to_idx"]))
        relabelled = {"class_to_idx": reverse["class_to_idx"], "labels": [k - 1 - y for y in right["labels"]]}
        feedback_rev = say("Class indices are reversed: classes are the sorted sub-folder names, index 0 for the first (cat=0, dog=1).",
                           "类别编号反了：类别为排序后的子文件夹名，第一个编号为 0(cat=0,dog=1)。")
        return [Mistake("DATASET_LABELS_REVERSED", reverse, feedback_rev),
                Mistake("DATASET_LABELS_REVERSED", relabelled, feedback_rev),
                Mistake("DATASET_COUNTS_NON_IMAGES", {"len": len(index_files(files, all_files=True)[1])},
                        say("Your dataset also counts files that are not images: keep only .jpg, .jpeg and .png (any case).",
                            "数据集把非图片文件也算进去了：只保留扩展名为 .jpg、.jpeg、.png（不区分大小写）的文件。"))]

    def items_probe(rng):
        return KERNEL.probe("items", _tree_inputs(rng, size))

    def items_reference(probe):
        files = from_probe_files(probe.inputs["files"])
        return {"images": dataset_items(files, size, method), "type": "torch.Tensor", "dtype": "torch.float32"}

    def items_mistakes(probe):
        files = from_probe_files(probe.inputs["files"])

        def m(note, en, zh, **switches):      # a recognised mistake keeps what the item's type and dtype are worth
            return Mistake(note, {"images": dataset_items(files, size, switches.pop("resample", method), **switches)},
                           say(en, zh), fraction=ITEM_FORM / ITEM_POINTS)

        out = [m("DATASET_NOT_NORMALISED", "Pixel values are 0-255: divide by 255 to get floats in [0, 1].",
                 "像素值在 0-255 之间：需要除以 255 得到 [0, 1] 内的浮点数。", scale=False),
               m("DATASET_HWC", "The image is H×W×C; PyTorch expects C×H×W (permute(2, 0, 1)).",
                 "图像布局为 H×W×C;PyTorch 需要 C×H×W(permute(2, 0, 1))。", layout="HWC"),
               m("DATASET_GRAYSCALE_KEPT", "Grey, palette and RGBA images keep their own channels: call .convert(\"RGB\") so every item has 3 channels.",
                 "灰度、调色板和 RGBA 图像保留了原通道数：需要 .convert(\"RGB\")，使每个样本都是 3 通道。", convert="none"),
               m("DATASET_RESIZE_BEFORE_CONVERT", "Convert to RGB before resizing (palette and RGBA images resize differently).",
                 "应先转换为 RGB 再缩放（调色板和 RGBA 图像缩放结果不同）。", convert="after"),
               m("DATASET_SIZE_SWAPPED", "PIL's resize takes (width, height); you passed (height, width).",
                 "PIL 的 resize 参数为（宽，高）；你传入的是（高，宽）。", swap_size=True),
               m("DATASET_NOT_NORMALISED", "Pixel values are 0-255 and the layout is H×W×C.",
                 "像素值在 0-255 之间，且布局为 H×W×C。", scale=False, layout="HWC")]
        for other in METHODS:
            if other != method:
                note_id = "DATASET_DEFAULT_RESAMPLE" if other == "BICUBIC" else "DATASET_WRONG_RESAMPLE"
                out.append(m(note_id, f"Resize with Image.{method} as stated (you used {other}"
                             + (", PIL's default" if other == "BICUBIC" else "") + ").",
                             f"应按题目使用 Image.{method} 缩放（你使用的是 {other}" + ("，即 PIL 的默认值" if other == "BICUBIC" else "") + "）。",
                             resample=other))
        return out

    def loader_probe(rng):
        inputs = _tree_inputs(rng, _hidden_size(rng))
        n = len(index_files(from_probe_files(inputs["files"]))[1])
        inputs["batch_size"] = rng.choice([b for b in range(2, n) if n % b])   # the last batch is partial
        return KERNEL.probe("loader", inputs)

    def loader_reference(probe, **switches):
        return loader_batches(from_probe_files(probe.inputs["files"]), tuple(probe.inputs["size"]), method,
                              probe.inputs["batch_size"], **switches)

    def show_probe(rng):
        rs = np.random.default_rng(rng.getrandbits(63))
        b, h, w = rng.randint(3, 8), rng.randint(8, 24), rng.randint(8, 24)
        images = rs.integers(0, 256, size=(b, 3, h, w), dtype=np.uint8)   # bytes; the kernel divides by 255
        return KERNEL.probe("show_batch", {"images": images, "labels": rs.integers(0, 2, size=b).astype(np.int64)})

    def shown(probe):
        return probe.inputs["images"].astype(np.float32) / np.float32(255)

    def show_reference(probe):
        images = shown(probe)
        return {"count": len(images), "images": [np.ascontiguousarray(x.transpose(1, 2, 0)) for x in images]}

    def show_mistakes(probe):
        images = shown(probe)
        return [Mistake("FIG_ONE_CHANNEL", {"images": [x[0] for x in images]},
                        say("Each axes shows one channel only: show the whole image as H×W×3 (images[i].permute(1, 2, 0)).",
                            "每个子图只显示了一个通道：应以 H×W×3 显示整幅图像(images[i].permute(1, 2, 0))。"),
                        fraction=SHOW_FORM / SHOW_POINTS),
                Mistake("FIG_UINT8", {"images": [(x.transpose(1, 2, 0) * np.float32(255)).astype(np.uint8) for x in images]},
                        say("Show the float image in [0, 1] as stated, not a uint8 copy.", "应按题目显示 [0, 1] 内的浮点图像，而不是 uint8 副本。"),
                        fraction=SHOW_FORM / SHOW_POINTS)]

    return [
        Part("cd_labels", 3, say("Dataset: length, class_to_idx and labels", "数据集：长度、class_to_idx 与标签"),
             probe=labels_probe, reference=labels_reference,
             check=Fields({"len": (1, Exact()), "class_to_idx": (1, Exact()), "labels": (1, Array(rtol=0, atol=0))}),
             mistakes=labels_mistakes, kind="code", hidden_inputs=True),
        Part("cd_items", ITEM_POINTS, say("Dataset items: RGB, resized, float32 CHW tensors in [0, 1]", "数据集样本:RGB、缩放、[0, 1] 内 float32 CHW 张量"),
             probe=items_probe, reference=items_reference,
             check=Fields({"type": (ITEM_FORM / 2, Exact()), "dtype": (ITEM_FORM / 2, Exact()),
                           "images": (ITEM_POINTS - ITEM_FORM, Cases(Array(rtol=0, atol=2e-6)))}, work=("images",)),
             mistakes=items_mistakes, kind="code", hidden_inputs=True),
        Part("cd_loader", 3, say("DataLoader batches", "DataLoader 批次"),
             probe=loader_probe, reference=loader_reference,
             check=Fields({"batch_sizes": (1, Array(rtol=0, atol=0)), "labels": (1, Array(rtol=0, atol=0)),
                           "images": (1, Array(rtol=0, atol=2e-6))}),
             mistakes=lambda probe: [Mistake("DATALOADER_DROP_LAST", {"batch_sizes": loader_reference(probe, drop_last=True)["batch_sizes"]},
                                             say("The last, smaller batch is missing: keep it (drop_last=False).",
                                                 "缺少最后一个较小的批次：应保留它(drop_last=False)。"))],
             kind="code", hidden_inputs=True),
        Part("cd_show_batch", SHOW_POINTS, say("Figure of one batch", "可视化一个批次"),
             probe=show_probe, reference=show_reference,
             check=Fields({"count": (SHOW_FORM, Exact()), "images": (SHOW_POINTS - SHOW_FORM, Cases(Array(rtol=0, atol=1e-6)))},
                          work=("images",)),
             mistakes=show_mistakes, kind="code", hidden_inputs=True),
    ]


def context(params: dict) -> dict:
    return {"cd_size_src": f"({params['height']}, {params['width']})"}


def data(target: Path) -> None:
    write_files(target, training_files())


PROBLEM = Problem(
    id="custom-dataset",
    title=say("A custom cats/dogs Dataset and DataLoader", "自定义猫狗数据集与 DataLoader"),
    points=14, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"), data=data,
)
