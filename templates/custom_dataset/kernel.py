"""Kernel side of the custom-dataset problem.

Each dataset probe writes a fresh image folder (the grader's bytes) under the kernel's working directory,
builds the student's dataset or loader on it, returns the items as arrays, and removes the folder."""
import contextlib
import json
import os
import shutil

import numpy as np

from hwkit_kernel.cases import error


@contextlib.contextmanager
def _tree(inputs):
    root = os.path.join(os.getcwd(), inputs["dir"])
    shutil.rmtree(root, ignore_errors=True)
    try:
        for rel, blob in inputs["files"]:
            path = os.path.join(root, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(np.asarray(blob, dtype=np.uint8).tobytes())
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _array(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def labels(student, inputs):
    """len(ds), ds.class_to_idx (as sorted JSON) and every item's label."""
    with _tree(inputs) as root:
        ds = student.function("CatsDogsDataset")(root, tuple(inputs["size"]))
        found = []
        for i in range(len(ds)):
            try:
                found.append(int(ds[i][1]))
            except Exception:
                found.append(-1)
        c2i = getattr(ds, "class_to_idx", None)
        return {"len": len(ds), "labels": found,
                "class_to_idx": "missing" if not isinstance(c2i, dict)
                else json.dumps({str(k): int(v) for k, v in sorted(c2i.items())})}


def items(student, inputs):
    """Every item's image as an array, and the type and dtype of the first one."""
    with _tree(inputs) as root:
        ds = student.function("CatsDogsDataset")(root, tuple(inputs["size"]))
        images, first = [], None
        for i in range(len(ds)):
            try:
                x = ds[i][0]
            except Exception as exc:
                images.append(error(exc))
                continue
            first = x if first is None else first
            images.append(_array(x))
        return {"images": images, "type": f"{type(first).__module__}.{type(first).__name__}",
                "dtype": str(getattr(first, "dtype", ""))}


def loader(student, inputs):
    """The loader's batch sizes, and all images and labels in order."""
    with _tree(inputs) as root:
        batches = student.function("cd_make_loader")(root, tuple(inputs["size"]), inputs["batch_size"])
        sizes, images, found = [], [], []
        for batch in batches:
            x, y = batch[0], batch[1]
            sizes.append(int(len(x)))
            images.append(_array(x))
            found.append(_array(y).astype(np.int64))
        return {"batch_sizes": sizes, "images": np.concatenate(images), "labels": np.concatenate(found)}


def figure_images(fig, name):
    """The array shown in each Axes of a matplotlib Figure that shows an image."""
    import matplotlib.figure
    import matplotlib.pyplot as plt

    if not isinstance(fig, matplotlib.figure.Figure):
        raise TypeError(f"{name} must return a matplotlib Figure, got {type(fig).__name__}")
    arrays = [np.asarray(np.ma.getdata(ax.get_images()[0].get_array()), dtype=np.float32)
              for ax in fig.axes if ax.get_images()]
    plt.close(fig)
    return {"count": len(arrays), "images": arrays}


def show_batch(student, inputs):
    """cd_show_batch(images in [0, 1], labels) -> the images its Figure shows."""
    import torch

    images = torch.as_tensor(inputs["images"]).float() / 255
    fig = student.function("cd_show_batch")(images, torch.as_tensor(inputs["labels"]))
    return figure_images(fig, "cd_show_batch")
