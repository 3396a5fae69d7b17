"""The promise to students: correct work written any reasonable way earns full marks.

Every code part of nn-homework is answered here in several styles a class of students actually writes (none
of them the solution notebook's): other attribute names and registration orders, nn.Sequential or an explicit
forward, functional calls on one's own nn.Parameter tensors, the shortcut computed before, between or after the
main branch, in-place ops, a depthwise step via groups= or per-channel convs or unfold + einsum, a pointwise
step via a 1x1 conv, nn.Linear, nn.Conv1d or a raw (C_in, C_out) matrix, float64 inside, os.walk / glob /
pathlib / scandir datasets, figures by plt.subplots / add_subplot / gridspec / ImageGrid, extra registered but
unused modules. Each style is graded without a kernel (grade_probe: the probe's kernel function runs in-process
on the namespace the student's cells build) over several fresh hidden draws; formula and value parts get their
equivalent forms; one sandboxed batch grades three whole notebooks for real.

Only styles that pass today are here; styles that lose points are listed in the report that introduced this
file, each with a ready-to-paste test."""
from __future__ import annotations

import json
import math
import random
import sqlite3
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from hwkit.bank import get_problem  # noqa: E402
from hwkit.sandbox import sandbox_available  # noqa: E402
from solutions.cifar_visualize import LABEL_NAMES  # noqa: E402
from tests.support import (grade_probe, hwkit, make_course, read_grades, release_notebook, set_answer_cell,  # noqa: E402
                           solution_notebook, submit)

SEEDS = range(5)          # hidden draws per style (fewer for the whole networks, see below)


def _part(problem_id: str, part_id: str, variant: int = 0):
    problem = get_problem(problem_id)
    params = problem.sample(random.Random(variant))
    return next(p for p in problem.parts(params) if p.id == part_id), params


def _namespace(*sources: str, **extra) -> dict:
    """The globals a student's cells build: the notebook's first cell, then the given cell sources in order."""
    ns = {"__name__": "__main__", "np": np, "torch": torch, "nn": nn, "plt": plt, "math": math,
          "cifar_label_names": list(LABEL_NAMES), **extra}
    for source in sources:
        exec(compile(textwrap.dedent(source), "<student cell>", "exec"), ns)
    return ns


def _assert_full_marks(part, ns: dict, seeds=SEEDS) -> None:
    for seed in seeds:
        outcome = grade_probe(part, part.probe(random.Random(seed)), ns)
        plt.close("all")
        assert outcome.fraction == 1.0, (part.id, seed, outcome.note, outcome.feedback["en"])


# ================================================================================ code parts, by answer cell
# Keyed by the answer cell's first part; "$RESAMPLE$" is the variant's PIL filter, as the statement names it.

INIT_WEIGHTS = {
    "nn.init.normal_ with the std computed by hand": """
        import math

        def init_weights(model, scheme):
            for layer in model.modules():
                if not isinstance(layer, nn.Linear):
                    continue
                fan_in, fan_out = layer.in_features, layer.out_features
                std = math.sqrt(2.0 / (fan_in + fan_out)) if scheme == "xavier" else math.sqrt(2.0 / fan_in)
                nn.init.normal_(layer.weight, mean=0.0, std=std)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0.0)
    """,
    "model.apply, in-place normal_ and zero_ under no_grad": """
        def init_weights(model, scheme):
            def _init(m):
                if isinstance(m, torch.nn.Linear):
                    var = 2.0 / (m.in_features + m.out_features) if scheme == "xavier" else 2.0 / m.in_features
                    with torch.no_grad():
                        m.weight.normal_(0.0, var ** 0.5)
                        m.bias.zero_()
            model.apply(_init)
            return model
    """,
    "weight.data replaced by randn * sigma, bias.data.fill_": """
        def init_weights(model, scheme):
            for m in model.modules():
                if isinstance(m, nn.Linear):
                    n_in, n_out = m.in_features, m.out_features
                    sigma = (2 / (n_in + n_out)) ** 0.5 if scheme == "xavier" else (2 / n_in) ** 0.5
                    m.weight.data = torch.randn(n_out, n_in) * sigma
                    m.bias.data.fill_(0.0)
    """,
    "kaiming_normal_ with its defaults, xavier_normal_(gain=1), type() test": """
        def init_weights(model, scheme):
            for m in model.modules():
                if type(m) == nn.Linear:
                    if scheme == "he":
                        nn.init.kaiming_normal_(m.weight)          # fan_in, gain sqrt(2) by default
                    else:
                        nn.init.xavier_normal_(m.weight, gain=1.0)
                    m.bias.data.zero_()
            return model
    """,
    "new nn.Parameter objects, scheme.lower()": """
        def init_weights(model, scheme):
            for lin in [m for m in model.modules() if isinstance(m, nn.Linear)]:
                var = 2.0 / (lin.in_features + lin.out_features) if scheme.lower() == "xavier" else 2.0 / lin.in_features
                lin.weight = nn.Parameter(torch.randn_like(lin.weight) * var ** 0.5)
                lin.bias = nn.Parameter(torch.zeros_like(lin.bias))
            return model
    """,
    "float64 draw copied in, numpy std": """
        def init_weights(model, scheme):
            for m in model.modules():
                if isinstance(m, nn.Linear):
                    fan_in, fan_out = m.in_features, m.out_features
                    std = np.sqrt(2.0 / (fan_in + fan_out)) if scheme == "xavier" else np.sqrt(2.0 / fan_in)
                    with torch.no_grad():
                        m.weight.copy_(torch.randn(fan_out, fan_in, dtype=torch.float64) * std)
                        m.bias.copy_(torch.zeros(fan_out))
    """,
}

ACTIVATION_STDS = {
    "F.relu, float(h.std()), index loop": """
        import torch.nn.functional as F

        def activation_stds(widths, scheme, seed):
            torch.manual_seed(seed)
            h = torch.randn(256, widths[0])
            result = []
            for i in range(len(widths) - 1):
                layer = nn.Linear(widths[i], widths[i + 1])
                if scheme == "xavier":
                    nn.init.xavier_normal_(layer.weight)
                else:
                    nn.init.kaiming_normal_(layer.weight, mode='fan_in', nonlinearity='relu')
                nn.init.zeros_(layer.bias)
                h = F.relu(layer(h))
                result.append(float(h.std()))
            return result
    """,
    "nn.ReLU module, kaiming defaults, no_grad, zip of widths": """
        def activation_stds(widths, scheme, seed):
            torch.manual_seed(seed)
            h = torch.randn(256, widths[0])
            relu, stds = nn.ReLU(), []
            for n_in, n_out in zip(widths, widths[1:]):
                layer = nn.Linear(n_in, n_out)
                if scheme == "xavier":
                    nn.init.xavier_normal_(layer.weight)
                else:
                    nn.init.kaiming_normal_(layer.weight)
                nn.init.zeros_(layer.bias)
                with torch.no_grad():
                    h = relu(layer(h))
                stds.append(h.std().item())
            return stds
    """,
    "clamp(min=0), torch.std, conditional-expression init": """
        def activation_stds(widths, scheme, seed):
            torch.manual_seed(seed)
            h = torch.randn(256, widths[0])
            stds = []
            for fan_in, fan_out in zip(widths[:-1], widths[1:]):
                lin = nn.Linear(fan_in, fan_out)
                (nn.init.xavier_normal_(lin.weight) if scheme == "xavier"
                 else nn.init.kaiming_normal_(lin.weight, mode="fan_in", nonlinearity="relu"))
                nn.init.zeros_(lin.bias)
                h = lin(h).clamp(min=0)
                stds += [torch.std(h).item()]
            return stds
    """,
    "in-place functional relu, torch.maximum": """
        def activation_stds(widths, scheme, seed):
            torch.manual_seed(seed)
            h = torch.randn(256, widths[0])
            out = []
            for i in range(len(widths) - 1):
                layer = nn.Linear(widths[i], widths[i + 1])
                init = nn.init.xavier_normal_ if scheme == "xavier" else (
                    lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"))
                init(layer.weight)
                nn.init.zeros_(layer.bias)
                z = layer(h)
                h = nn.functional.relu(torch.maximum(z, z), inplace=True)
                out.append(h.std().item())
            return out
    """,
}

RECEPTIVE_FIELD = {
    "top-down recursion, list return": """
        def receptive_field(layers):
            r = 1
            for k, s, p, d in reversed(layers):
                r = s * r + (d * (k - 1) + 1 - s)
            j = 1
            for _, s, _, _ in layers:
                j *= s
            return [r, j]
    """,
    "functools.reduce": """
        from functools import reduce

        def receptive_field(layers):
            def step(state, layer):
                R, J = state
                k, s, p, d = layer
                return R + d * (k - 1) * J, J * s
            return reduce(step, layers, (1, 1))
    """,
    "numpy cumprod": """
        def receptive_field(layers):
            L = np.array(layers, dtype=np.int64).reshape(-1, 4)
            k_eff = L[:, 3] * (L[:, 0] - 1) + 1
            jumps = np.cumprod(np.concatenate([[1], L[:, 1]]))
            return int(1 + np.sum((k_eff - 1) * jumps[:-1])), int(jumps[-1])
    """,
    "recursion on the prefix, numpy ints": """
        def receptive_field(layers):
            if not layers:
                return np.int64(1), np.int64(1)
            *rest, (k, s, p, d) = layers
            R, J = receptive_field(rest)
            return R + d * (k - 1) * J, J * s
    """,
}

DATASET = {
    "os.listdir + splitext, numpy float32 / 255": """
        import os
        from PIL import Image
        from torch.utils.data import Dataset

        class CatsDogsDataset(Dataset):
            def __init__(self, root, size):
                self.size = size
                classes = sorted([d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))])
                self.class_to_idx = {}
                for idx, name in enumerate(classes):
                    self.class_to_idx[name] = idx
                self.samples = []
                for name in classes:
                    folder = os.path.join(root, name)
                    for fname in sorted(os.listdir(folder)):
                        if os.path.splitext(fname)[1].lower() in (".jpg", ".jpeg", ".png"):
                            self.samples.append((os.path.join(folder, fname), self.class_to_idx[name]))
                print(f"found {len(self.samples)} images in {len(classes)} classes")

            def __len__(self):
                return len(self.samples)

            def __getitem__(self, i):
                path, label = self.samples[i]
                H, W = self.size
                img = Image.open(path).convert("RGB").resize((W, H), Image.$RESAMPLE$)
                arr = np.asarray(img, dtype=np.float32) / 255.0
                return torch.from_numpy(arr).permute(2, 0, 1), label
    """,
    "pathlib, sorted Paths, torch.tensor(...).div(255)": """
        from pathlib import Path
        from PIL import Image
        from torch.utils.data import Dataset

        class CatsDogsDataset(Dataset):
            EXTS = {".jpg", ".jpeg", ".png"}

            def __init__(self, root, size):
                root = Path(root)
                self.height, self.width = size
                class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
                self.class_to_idx = {p.name: i for i, p in enumerate(class_dirs)}
                self.items = [(f, self.class_to_idx[d.name]) for d in class_dirs for f in sorted(d.iterdir())
                              if f.is_file() and f.suffix.lower() in self.EXTS]

            def __len__(self):
                return len(self.items)

            def __getitem__(self, idx):
                file, label = self.items[idx]
                with Image.open(file) as im:
                    im = im.convert("RGB").resize((self.width, self.height), resample=Image.$RESAMPLE$)
                    x = torch.tensor(np.array(im)).permute(2, 0, 1).float().div(255)
                return x, int(label)
    """,
    "glob, sorted by basename, lazily opened": """
        import glob, os
        from PIL import Image
        from torch.utils.data import Dataset

        class CatsDogsDataset(Dataset):
            def __init__(self, root, size):
                self.size = tuple(size)
                names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(root, "*")) if os.path.isdir(p))
                self.class_to_idx = dict(zip(names, range(len(names))))
                self.paths, self.labels = [], []
                for name in names:
                    files = [f for f in glob.glob(os.path.join(root, name, "*"))
                             if f.lower().endswith((".jpg", ".jpeg", ".png"))]
                    for f in sorted(files, key=os.path.basename):
                        self.paths.append(f)
                        self.labels.append(self.class_to_idx[name])

            def __len__(self):
                return len(self.paths)

            def __getitem__(self, i):
                H, W = self.size
                img = Image.open(self.paths[i])
                img = img.convert("RGB")
                img = img.resize((W, H), Image.$RESAMPLE$)
                return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255, self.labels[i]
    """,
    "os.walk, every image decoded in __init__, torchvision-free ToTensor": """
        import os
        from PIL import Image
        from torch.utils.data import Dataset

        class CatsDogsDataset(Dataset):
            def __init__(self, root, size):
                H, W = size
                self.classes = sorted(next(os.walk(root))[1])
                self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
                found = []
                for dirpath, dirnames, filenames in os.walk(root):
                    cls = os.path.relpath(dirpath, root)
                    if cls not in self.class_to_idx:
                        continue
                    for fn in filenames:
                        if fn.lower().endswith(('.png', '.jpg', '.jpeg')):
                            found.append((self.class_to_idx[cls], fn, os.path.join(dirpath, fn)))
                found.sort()
                self.images, self.targets = [], []
                for label, _, path in found:
                    img = Image.open(path).convert('RGB').resize((W, H), Image.$RESAMPLE$)
                    t = torch.ByteTensor(torch.ByteStorage.from_buffer(img.tobytes()))
                    self.images.append(t.view(H, W, 3).permute(2, 0, 1).contiguous().float().div(255))
                    self.targets.append(label)

            def __len__(self):
                return len(self.images)

            def __getitem__(self, i):
                return self.images[i], self.targets[i]
    """,
    "os.scandir, float64 pixels, files that PIL cannot verify skipped": """
        import os
        from PIL import Image
        from torch.utils.data import Dataset

        class CatsDogsDataset(Dataset):
            def __init__(self, root, size):
                self.size = size
                with os.scandir(root) as it:
                    classes = sorted(e.name for e in it if e.is_dir())
                self.class_to_idx = {name: i for i, name in enumerate(classes)}
                self.samples = []
                for name in classes:
                    with os.scandir(os.path.join(root, name)) as it:
                        names = sorted(e.name for e in it if e.is_file())
                    for fname in names:
                        path = os.path.join(root, name, fname)
                        if fname.lower().rsplit(".", 1)[-1] not in ("jpg", "jpeg", "png"):
                            continue
                        try:
                            with Image.open(path) as im:
                                im.verify()
                        except Exception:
                            continue
                        self.samples.append((path, self.class_to_idx[name]))

            def __len__(self):
                return len(self.samples)

            def __getitem__(self, i):
                path, y = self.samples[i]
                h, w = self.size
                with open(path, "rb") as fh:
                    img = Image.open(fh).convert("RGB")
                img = img.resize(self.size[::-1], Image.$RESAMPLE$)
                x = np.array(img, dtype=np.float64) / 255.0
                return torch.from_numpy(x.transpose(2, 0, 1).copy()).float(), y
    """,
}

LOADER = {
    "keyword arguments": """
        from torch.utils.data import DataLoader

        def cd_make_loader(root, size, batch_size):
            return DataLoader(dataset=CatsDogsDataset(root=root, size=size), batch_size=batch_size, shuffle=False,
                              num_workers=0, drop_last=False)
    """,
    "a lambda, positional batch size": """
        from torch.utils.data import DataLoader
        cd_make_loader = lambda root, size, batch_size: DataLoader(CatsDogsDataset(root, size), batch_size, shuffle=False)
    """,
}

SHOW_BATCH = {
    "one row of subplots, zip": """
        def cd_show_batch(images, labels):
            n = images.shape[0]
            fig, axes = plt.subplots(1, n, figsize=(2 * n, 2))
            for ax, img, lab in zip(np.atleast_1d(axes), images, labels):
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_title(f"label {int(lab)}")
                ax.axis("off")
            return fig
    """,
    "fig.add_subplot, a tensor passed to imshow": """
        import math

        def cd_show_batch(images, labels):
            fig = plt.figure(figsize=(10, 3))
            cols = 4
            rows = math.ceil(len(images) / cols)
            for k in range(len(images)):
                ax = fig.add_subplot(rows, cols, k + 1)
                ax.imshow(images[k].permute(1, 2, 0))
                ax.set_title(str(labels[k].item()))
                ax.set_xticks([]); ax.set_yticks([])
            return fig
    """,
    "squeeze=False grid, the figure closed before it is returned": """
        import math

        def cd_show_batch(images, labels):
            B = len(images)
            ncols = min(B, 3)
            nrows = math.ceil(B / ncols)
            fig, axes = plt.subplots(nrows, ncols, squeeze=False)
            for ax in axes.flat:
                ax.set_axis_off()
            for i in range(B):
                ax = axes[i // ncols, i % ncols]
                ax.imshow(images[i].permute(1, 2, 0).detach().cpu().numpy())
                ax.set_title(labels[i].item())
            plt.close(fig)
            return fig
    """,
}

TO_TENSOR = {
    "numpy float64, then float32": """
        def cifar_to_tensor(data, mean, std):
            x = data.reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
            m = np.array(mean).reshape(1, 3, 1, 1)
            s = np.array(std).reshape(1, 3, 1, 1)
            return torch.tensor((x - m) / s, dtype=torch.float32)
    """,
    "per-channel loop into empty_like": """
        def cifar_to_tensor(data, mean, std):
            x = torch.from_numpy(data).view(-1, 3, 32, 32).float().div(255)
            out = torch.empty_like(x)
            for ch in range(3):
                out[:, ch] = (x[:, ch] - mean[ch]) / std[ch]
            return out
    """,
    "as_tensor, broadcasting (3, 1, 1)": """
        def cifar_to_tensor(data, mean, std):
            x = torch.as_tensor(data).reshape(-1, 3, 32, 32).to(torch.float32) / 255.0
            return (x - torch.tensor(mean).view(3, 1, 1).float()) / torch.tensor(std).view(3, 1, 1).float()
    """,
}

DENORMALIZE = {
    "clone and a per-channel loop": """
        def cifar_denormalize(x, mean, std):
            out = x.clone()
            for ch in range(3):
                out[:, ch] = out[:, ch] * std[ch] + mean[ch]
            return torch.clamp(out, 0, 1)
    """,
    "mul/add/clamp with as_tensor": """
        def cifar_denormalize(x, mean, std):
            mean = torch.as_tensor(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
            std = torch.as_tensor(std, dtype=x.dtype).reshape(1, -1, 1, 1)
            return x.mul(std).add(mean).clamp(min=0.0, max=1.0)
    """,
    "einsum": """
        def cifar_denormalize(x, mean, std):
            return torch.einsum("bchw,c->bchw", x, torch.tensor(std, dtype=x.dtype)).add(
                torch.tensor(mean, dtype=x.dtype)[:, None, None]).clamp(0, 1)
    """,
    "float64 result": """
        def cifar_denormalize(x, mean, std):
            m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
            s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
            return (x.double() * s + m).clamp(0, 1)
    """,
    "torch.stack of the channels": """
        def cifar_denormalize(x, mean, std):
            return torch.stack([x[:, ch] * std[ch] + mean[ch] for ch in range(3)], dim=1).clamp(0, 1)
    """,
}

SUBPLOTS = {
    "squeeze=False, extra Axes removed, labels[k].item()": """
        def cifar_show_subplots(batch, labels, mean, std):
            imgs = cifar_denormalize(batch, mean, std).permute(0, 2, 3, 1)
            n, cols = len(imgs), 4
            rows = -(-n // cols)
            fig, axs = plt.subplots(rows, cols, figsize=(8, 2.2 * rows), squeeze=False)
            for k in range(rows * cols):
                ax = axs[k // cols][k % cols]
                if k < n:
                    ax.imshow(imgs[k])
                    ax.set_title(cifar_label_names[labels[k].item()])
                    ax.axis("off")
                else:
                    ax.remove()
            fig.tight_layout()
            return fig
    """,
    "plt.subplot in a loop, plt.gcf()": """
        def cifar_show_subplots(batch, labels, mean, std):
            imgs = cifar_denormalize(batch, mean, std)
            plt.figure(figsize=(12, 2))
            for i in range(len(imgs)):
                plt.subplot(1, len(imgs), i + 1)
                plt.imshow(np.transpose(imgs[i].numpy(), (1, 2, 0)))
                plt.title(cifar_label_names[int(labels[i])])
                plt.axis("off")
            return plt.gcf()
    """,
    "gridspec, float64 images": """
        def cifar_show_subplots(batch, labels, mean, std):
            imgs = cifar_denormalize(batch, mean, std).double().numpy().transpose(0, 2, 3, 1)
            fig = plt.figure(figsize=(10, 3))
            gs = fig.add_gridspec(2, math.ceil(len(imgs) / 2))
            for k, img in enumerate(imgs):
                ax = fig.add_subplot(gs[k // gs.ncols, k % gs.ncols])
                ax.imshow(img)
                ax.set_title(cifar_label_names[int(labels[k])])
                ax.axis("off")
            return fig
    """,
    "2 rows, a tensor label used as the list index": """
        def cifar_show_subplots(batch, labels, mean, std):
            imgs = cifar_denormalize(batch, mean, std)
            rows, cols = 2, math.ceil(len(imgs) / 2)
            fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 4))
            for ax in axes.flat:
                ax.axis('off')
            for i, (ax, img) in enumerate(zip(axes.flat, imgs)):
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_title(cifar_label_names[labels[i]])
            return fig
    """,
}

MAKE_GRID = {
    "F.pad per cell, concatenated": """
        import torch.nn.functional as F

        def cifar_make_grid(batch, nrow, padding, pad_value):
            b, ch, h, w = batch.shape
            cols = min(nrow, b)
            rows = math.ceil(b / cols)
            blank = torch.full((ch, h, w), float(pad_value))
            cells = [F.pad(batch[k] if k < b else blank, (padding, 0, padding, 0), value=pad_value)
                     for k in range(rows * cols)]
            grid = torch.cat([torch.cat(cells[r * cols:(r + 1) * cols], dim=2) for r in range(rows)], dim=1)
            return F.pad(grid, (0, padding, 0, padding), value=pad_value)
    """,
    "a numpy canvas, then torch.from_numpy": """
        def cifar_make_grid(batch, nrow, padding, pad_value):
            x = batch.numpy()
            B, C, H, W = x.shape
            xm = min(nrow, B)
            ym = int(np.ceil(B / xm))
            out = np.full((C, ym * (H + padding) + padding, xm * (W + padding) + padding), pad_value, dtype=np.float32)
            for k in range(B):
                t, l = (k // xm) * (H + padding) + padding, (k % xm) * (W + padding) + padding
                out[:, t:t + H, l:l + W] = x[k]
            return torch.from_numpy(out)
    """,
    "vectorised: filler images, reshape and permute": """
        import torch.nn.functional as F

        def cifar_make_grid(batch, nrow, padding, pad_value):
            B, C, H, W = batch.shape
            cols = min(nrow, B)
            rows = -(-B // cols)
            x = torch.cat([batch, torch.full((rows * cols - B, C, H, W), float(pad_value), dtype=batch.dtype)])
            x = F.pad(x, (padding, 0, padding, 0), value=pad_value)
            x = x.view(rows, cols, C, H + padding, W + padding).permute(2, 0, 3, 1, 4)
            x = x.reshape(C, rows * (H + padding), cols * (W + padding))
            return F.pad(x, (0, padding, 0, padding), value=pad_value)
    """,
    "new_full and narrow().copy_()": """
        def cifar_make_grid(batch, nrow, padding, pad_value):
            B, C, H, W = batch.shape
            xmaps = min(nrow, B)
            ymaps = math.ceil(B / xmaps)
            grid = batch.new_full((C, ymaps * (H + padding) + padding, xmaps * (W + padding) + padding), pad_value)
            for k in range(B):
                y, x = divmod(k, xmaps)
                grid.narrow(1, y * (H + padding) + padding, H).narrow(2, x * (W + padding) + padding, W).copy_(batch[k])
            return grid
    """,
}

IMAGEGRID = {
    "share_all, label_mode, titles, extra cells switched off": """
        from mpl_toolkits.axes_grid1 import ImageGrid

        def cifar_show_imagegrid(batch, labels, mean, std, nrow):
            imgs = cifar_denormalize(batch, mean, std)
            fig = plt.figure(figsize=(nrow * 1.5, 3))
            grid = ImageGrid(fig, 111, nrows_ncols=(math.ceil(len(imgs) / nrow), nrow), axes_pad=0.3,
                             share_all=True, label_mode="L")
            for ax, im, y in zip(grid, imgs, labels):
                ax.imshow(im.permute(1, 2, 0).numpy())
                ax.set_title(cifar_label_names[y], fontsize=6)
            for ax in grid[len(imgs):]:
                ax.axis("off")
            return fig
    """,
    "aspect=False, a tensor passed to imshow": """
        from mpl_toolkits.axes_grid1 import ImageGrid

        def cifar_show_imagegrid(batch, labels, mean, std, nrow):
            imgs = cifar_denormalize(batch, mean, std)
            fig = plt.figure(figsize=(6, 4))
            grid = ImageGrid(fig, 111, nrows_ncols=(math.ceil(len(imgs) / nrow), nrow), axes_pad=0.1, aspect=False)
            for k, ax in enumerate(grid):
                if k < len(imgs):
                    ax.imshow(imgs[k].permute(1, 2, 0))
                ax.set_xticks([]); ax.set_yticks([])
            return fig
    """,
    "a rect tuple, (x, y) axes_pad, indexing grid[k]": """
        from mpl_toolkits.axes_grid1 import ImageGrid

        def cifar_show_imagegrid(batch, labels, mean, std, nrow):
            pics = cifar_denormalize(batch, mean, std).permute(0, 2, 3, 1).numpy()
            rows = int(np.ceil(len(pics) / nrow))
            fig = plt.figure(figsize=(nrow, rows))
            g = ImageGrid(fig, (0.05, 0.05, 0.9, 0.9), nrows_ncols=(rows, nrow), axes_pad=(0.1, 0.3))
            for k, pic in enumerate(pics):
                g[k].imshow(pic)
            for ax in g:
                ax.set_axis_off()
            return fig
    """,
}

CONCAT = {
    "hstack / vstack rows": """
        def cifar_concat_grid(images, nrow):
            arr = images.numpy().transpose(0, 2, 3, 1)
            B, H, W, C = arr.shape
            rows = []
            for start in range(0, B, nrow):
                row = [arr[k] for k in range(start, min(start + nrow, B))]
                while len(row) < nrow:
                    row.append(np.zeros((H, W, C), dtype=arr.dtype))
                rows.append(np.hstack(row))
            return np.vstack(rows)
    """,
    "zero images appended, channels-first concatenation, transposed at the end": """
        def cifar_concat_grid(images, nrow):
            x = np.asarray(images)
            b, ch, h, w = x.shape
            nrows = math.ceil(b / nrow)
            x = np.concatenate([x, np.zeros((nrows * nrow - b, ch, h, w), dtype=x.dtype)], axis=0)
            rows = [np.concatenate(list(x[r * nrow:(r + 1) * nrow]), axis=2) for r in range(nrows)]
            return np.concatenate(rows, axis=1).transpose(1, 2, 0)
    """,
}

DS_MODULE = {
    "a ModuleList of per-channel convs, then a 1x1 conv": """
        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.channel_convs = nn.ModuleList([
                    nn.Conv2d(1, 1, kernel_size, padding=kernel_size // 2, bias=False) for _ in range(in_channels)])
                self.mix = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)

            def forward(self, x):
                return self.mix(torch.cat([conv(x[:, c:c + 1]) for c, conv in enumerate(self.channel_convs)], dim=1))
    """,
    "groups= then nn.Linear on channels-last": """
        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                           groups=in_channels, bias=False)
                self.pointwise = nn.Linear(in_channels, out_channels, bias=False)

            def forward(self, x):
                return self.pointwise(self.depthwise(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    """,
    "F.conv2d on own nn.Parameter weights": """
        import torch.nn.functional as F

        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.k, self.groups = kernel_size, in_channels
                self.w_depth = nn.Parameter(torch.randn(in_channels, 1, kernel_size, kernel_size) * 0.1)
                self.w_point = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1) * 0.1)

            def forward(self, x):
                return F.conv2d(F.conv2d(x, self.w_depth, padding=self.k // 2, groups=self.groups), self.w_point)
    """,
    "TensorFlow's kernel layouts (K, K, C, 1) and (1, 1, C_in, C_out), permuted in forward": """
        import torch.nn.functional as F

        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.k, self.c = kernel_size, in_channels
                self.depthwise_kernel = nn.Parameter(torch.randn(kernel_size, kernel_size, in_channels, 1) * 0.1)
                self.pointwise_kernel = nn.Parameter(torch.randn(1, 1, in_channels, out_channels) * 0.1)

            def forward(self, x):
                depth = F.conv2d(x, self.depthwise_kernel.permute(2, 3, 0, 1), padding=self.k // 2, groups=self.c)
                return F.conv2d(depth, self.pointwise_kernel.permute(3, 2, 0, 1))
    """,
    "unfold + einsum with a (C, K, K) kernel, a raw (C_in, C_out) mixing matrix": """
        import torch.nn.functional as F

        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.k = kernel_size
                self.kernel = nn.Parameter(torch.randn(in_channels, kernel_size, kernel_size) / kernel_size)
                self.mix = nn.Parameter(torch.randn(in_channels, out_channels) / in_channels ** 0.5)

            def forward(self, x):
                n, c, h, w = x.shape
                k = self.k
                patches = F.unfold(x, k, padding=k // 2).view(n, c, k, k, h, w)
                y = torch.einsum("nckluv,ckl->ncuv", patches, self.kernel)
                return torch.einsum("nchw,co->nohw", y, self.mix)
    """,
    "nn.Conv1d pointwise on the flattened pixels": """
        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.spatial = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                         groups=in_channels, bias=False)
                self.channel = nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False)

            def forward(self, x):
                n, _, h, w = x.shape
                return self.channel(self.spatial(x).flatten(2)).view(n, -1, h, w)
    """,
    "weight shapes read first, then F.conv2d with a viewed 2-D pointwise weight": """
        import torch.nn.functional as F

        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.depthwise = nn.Parameter(torch.randn(in_channels, 1, kernel_size, kernel_size) * 0.1)
                self.pointwise = nn.Parameter(torch.randn(out_channels, in_channels) * 0.1)

            def forward(self, x):
                c_out, c_in = self.pointwise.shape
                k = self.depthwise.shape[-1]
                y = F.conv2d(x, self.depthwise, padding=k // 2, groups=c_in)
                return F.conv2d(y, self.pointwise.view(c_out, c_in, 1, 1))
    """,
    "split + per-channel convs, nn.Linear through transpose(1, 3)": """
        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.dw = nn.ModuleList(nn.Conv2d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
                                        for _ in range(in_channels))
                self.pw = nn.Linear(in_channels, out_channels, bias=False)

            def forward(self, x):
                y = torch.cat([conv(ch) for conv, ch in zip(self.dw, torch.split(x, 1, dim=1))], dim=1)
                return self.pw(y.transpose(1, 3)).transpose(1, 3)
    """,
    "raw (C_in, C_out) matrix through movedim, extra registered modules never used": """
        import torch.nn.functional as F

        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.padding = kernel_size // 2
                self.weight_dw = nn.Parameter(torch.empty(in_channels, 1, kernel_size, kernel_size))
                self.weight_pw = nn.Parameter(torch.empty(in_channels, out_channels))
                nn.init.kaiming_uniform_(self.weight_dw)
                nn.init.kaiming_uniform_(self.weight_pw)
                self.bn = nn.BatchNorm2d(out_channels)      # planned, not used
                self.act = nn.ReLU()

            def forward(self, x):
                y = F.conv2d(x, self.weight_dw, padding=self.padding, groups=x.shape[1])
                return torch.matmul(y.movedim(1, -1), self.weight_pw).movedim(-1, 1)
    """,
    'pointwise weight reshaped at the top of forward (before the depthwise conv)': """
        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                           groups=in_channels, bias=False)
                self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

            def forward(self, x):
                w_mix = self.pointwise.weight.view(self.pointwise.out_channels, -1)     # (C_out, C_in)
                out = self.depthwise(x)
                return torch.einsum("oc,nchw->nohw", w_mix, out)
    """,
    'nn.Linear pointwise whose transposed weight is taken first': """
        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.dw = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                    groups=in_channels, bias=False)
                self.pw = nn.Linear(in_channels, out_channels, bias=False)

            def forward(self, x):
                W = self.pw.weight.t()                       # (C_in, C_out)
                return (self.dw(x).permute(0, 2, 3, 1) @ W).permute(0, 3, 1, 2)
    """,
    'pointwise as a 1x1 ConvTranspose2d (weight (C_in, C_out, 1, 1))': """
        class DepthwiseSeparableConv(nn.Module):
            def __init__(self, in_channels, out_channels, kernel_size):
                super().__init__()
                self.dw = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                    groups=in_channels, bias=False)
                self.pw = nn.ConvTranspose2d(in_channels, out_channels, 1, bias=False)

            def forward(self, x):
                return self.pw(self.dw(x))
    """,
}

BLOCK = {
    "HWIO kernels (TensorFlow's layout) permuted with movedim and permute, functional BatchNorm": """
        import torch.nn.functional as F

        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.stride = stride
                self.k1 = nn.Parameter(torch.randn(3, 3, in_channels, out_channels) * 0.1)
                self.k2 = nn.Parameter(torch.randn(3, 3, out_channels, out_channels) * 0.1)
                self.bn1, self.bn2 = nn.BatchNorm2d(out_channels), nn.BatchNorm2d(out_channels)
                self.project = stride != 1 or in_channels != out_channels
                if self.project:
                    self.k_skip = nn.Parameter(torch.randn(1, 1, in_channels, out_channels) * 0.1)
                    self.bn_skip = nn.BatchNorm2d(out_channels)

            def forward(self, x):
                out = F.relu(self.bn1(F.conv2d(x, self.k1.movedim((2, 3), (1, 0)), stride=self.stride, padding=1)))
                out = self.bn2(F.conv2d(out, self.k2.permute(3, 2, 0, 1), padding=1))
                skip = self.bn_skip(F.conv2d(x, self.k_skip.permute(3, 2, 0, 1), stride=self.stride)) if self.project else x
                return F.relu(out + skip)
    """,
    "shortcut after, out += shortcut(x), one in-place ReLU module": """
        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.relu = nn.ReLU(inplace=True)
                self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(out_channels)
                self.shortcut = nn.Sequential()
                if stride != 1 or in_channels != out_channels:
                    self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                                  nn.BatchNorm2d(out_channels))

            def forward(self, x):
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                out += self.shortcut(x)
                return self.relu(out)
    """,
    "shortcut first, Sequential body registered after it, torch.relu_": """
        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.skip = nn.Identity()
                if stride != 1 or in_channels != out_channels:
                    self.skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                                              nn.BatchNorm2d(out_channels))
                self.body = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))

            def forward(self, x):
                s = self.skip(x)
                y = self.body(x)
                y += s
                return torch.relu_(y)
    """,
    "F.conv2d on own weights, shortcut between the convolutions": """
        import torch.nn.functional as F

        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.stride = stride
                self.w1 = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.w2 = nn.Parameter(torch.empty(out_channels, out_channels, 3, 3))
                self.bn2 = nn.BatchNorm2d(out_channels)
                nn.init.kaiming_normal_(self.w1, mode="fan_out", nonlinearity="relu")
                nn.init.kaiming_normal_(self.w2, mode="fan_out", nonlinearity="relu")
                self.project = stride != 1 or in_channels != out_channels
                if self.project:
                    self.w_sc = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
                    nn.init.kaiming_normal_(self.w_sc)
                    self.bn_sc = nn.BatchNorm2d(out_channels)

            def forward(self, x):
                h = F.relu(self.bn1(F.conv2d(x, self.w1, stride=self.stride, padding=1)))
                sc = self.bn_sc(F.conv2d(x, self.w_sc, stride=self.stride)) if self.project else x
                h = self.bn2(F.conv2d(h, self.w2, padding=1))
                return F.relu(h + sc)
    """,
    "projection always registered and used only when needed, an unused Dropout": """
        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.c1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
                self.b1 = nn.BatchNorm2d(out_channels)
                self.c2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
                self.b2 = nn.BatchNorm2d(out_channels)
                self.proj = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
                self.proj_bn = nn.BatchNorm2d(out_channels)
                self.use_proj = stride != 1 or in_channels != out_channels
                self.dropout = nn.Dropout(0.1)

            def forward(self, x):
                identity = self.proj_bn(self.proj(x)) if self.use_proj else x
                y = torch.relu(self.b1(self.c1(x)))
                y = self.b2(self.c2(y))
                return torch.relu(y + identity)
    """,
    "ModuleLists walked in forward": """
        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.main = nn.ModuleList([
                    nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                    nn.ReLU(), nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels)])
                self.proj = None
                if stride != 1 or in_channels != out_channels:
                    self.proj = nn.ModuleList([nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                               nn.BatchNorm2d(out_channels)])

            def forward(self, x):
                y = x
                for layer in self.main:
                    y = layer(y)
                s = x
                for layer in (self.proj or []):
                    s = layer(s)
                return nn.functional.relu(y + s)
    """,
    "torchvision's forward: downsample after bn2, identity = x": """
        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
                self.bn2 = nn.BatchNorm2d(out_channels)
                self.relu = nn.ReLU(inplace=True)
                self.downsample = None
                if stride != 1 or in_channels != out_channels:
                    self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                                                    nn.BatchNorm2d(out_channels))

            def forward(self, x):
                identity = x
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                if self.downsample is not None:
                    identity = self.downsample(x)
                out += identity
                return self.relu(out)
    """,
    "shortcut as the left operand: F.relu(shortcut(x) + bn(conv(h)))": """
        import torch.nn.functional as F

        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.conv_a = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
                self.bn_a = nn.BatchNorm2d(out_channels)
                self.conv_b = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
                self.bn_b = nn.BatchNorm2d(out_channels)
                self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))

            def forward(self, x):
                h = F.relu(self.bn_a(self.conv_a(x)))
                return F.relu(self.shortcut(x) + self.bn_b(self.conv_b(h)))
    """,
    'downsample applied after conv2, before bn2 (torchvision-like layout)': """
        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.relu = nn.ReLU(inplace=True)
                self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(out_channels)
                self.downsample = None
                if stride != 1 or in_channels != out_channels:
                    self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                                    nn.BatchNorm2d(out_channels))

            def forward(self, x):
                identity = x
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.conv2(out)
                if self.downsample is not None:
                    identity = self.downsample(x)
                out = self.bn2(out)
                return self.relu(out + identity)
    """,
    'shortcut computed after conv1, before bn1': """
        class BasicBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(out_channels)
                self.shortcut = nn.Sequential()
                if stride != 1 or in_channels != out_channels:
                    self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                                  nn.BatchNorm2d(out_channels))

            def forward(self, x):
                out = self.conv1(x)
                identity = self.shortcut(x)
                out = torch.relu(self.bn1(out))
                out = self.bn2(self.conv2(out))
                return torch.relu(out + identity)
    """,
}

MODEL = {
    "a ResNet class with _make_layer, view flatten, an unused auxiliary head": """
        class ResNet(nn.Module):
            def __init__(self, num_blocks, num_classes, in_channels):
                super().__init__()
                self.in_planes = 64
                self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
                self.bn1 = nn.BatchNorm2d(64)
                self.relu = nn.ReLU(inplace=True)
                self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
                self.layer1 = self._make_layer(64, num_blocks[0], 1)
                self.layer2 = self._make_layer(128, num_blocks[1], 2)
                self.layer3 = self._make_layer(256, num_blocks[2], 2)
                self.layer4 = self._make_layer(512, num_blocks[3], 2)
                self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
                self.fc = nn.Linear(512, num_classes)
                self.aux_fc = nn.Linear(256, num_classes)

            def _make_layer(self, planes, blocks, stride):
                layers = []
                for s in [stride] + [1] * (blocks - 1):
                    layers.append(BasicBlock(self.in_planes, planes, s))
                    self.in_planes = planes
                return nn.Sequential(*layers)

            def forward(self, x):
                x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
                x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
                x = self.avgpool(x)
                return self.fc(x.view(x.size(0), -1))

        def make_resnet(depth, num_classes, in_channels=3):
            return ResNet({18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth], num_classes, in_channels)
    """,
    "one nn.Sequential ending in nn.Flatten and nn.Linear": """
        def make_resnet(depth, num_classes, in_channels=3):
            counts = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[depth]
            modules = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                       nn.MaxPool2d(3, 2, 1)]
            c_prev = 64
            for stage, (count, width) in enumerate(zip(counts, (64, 128, 256, 512))):
                for b in range(count):
                    modules.append(BasicBlock(c_prev, width, stride=2 if (stage and not b) else 1))
                    c_prev = width
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(512, num_classes)]
            return nn.Sequential(*modules)
    """,
    "functional stem on an own weight, ModuleList of blocks, mean over H and W": """
        import torch.nn.functional as F

        class ResNet(nn.Module):
            def __init__(self, blocks_per_stage, num_classes, in_channels):
                super().__init__()
                self.stem_w = nn.Parameter(torch.empty(64, in_channels, 7, 7))
                nn.init.kaiming_normal_(self.stem_w)
                self.stem_bn = nn.BatchNorm2d(64)
                self.blocks = nn.ModuleList()
                c_in = 64
                for i, (n, c_out) in enumerate(zip(blocks_per_stage, [64, 128, 256, 512])):
                    for j in range(n):
                        self.blocks.append(BasicBlock(c_in, c_out, 2 if i > 0 and j == 0 else 1))
                        c_in = c_out
                self.fc = nn.Linear(512, num_classes)

            def forward(self, x):
                x = F.relu(self.stem_bn(F.conv2d(x, self.stem_w, stride=2, padding=3)))
                x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
                for blk in self.blocks:
                    x = blk(x)
                return self.fc(x.mean(dim=(2, 3)))

        def make_resnet(depth, num_classes, in_channels=3):
            return ResNet([2, 2, 2, 2] if depth == 18 else [3, 4, 6, 3], num_classes, in_channels)
    """,
    "a raw (512, classes) head through einsum": """
        class ResNetRawHead(nn.Module):
            def __init__(self, layout, num_classes, in_channels):
                super().__init__()
                self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                          nn.MaxPool2d(3, 2, 1))
                blocks, c = [], 64
                for stage, n in enumerate(layout):
                    for j in range(n):
                        blocks.append(BasicBlock(c, 64 << stage, 2 if stage and j == 0 else 1))
                        c = 64 << stage
                self.body = nn.Sequential(*blocks)
                self.W = nn.Parameter(torch.randn(512, num_classes) * 0.01)
                self.b = nn.Parameter(torch.zeros(num_classes))

            def forward(self, x):
                feats = self.body(self.stem(x)).mean(dim=(-2, -1))
                return torch.einsum("nc,ck->nk", feats, self.W) + self.b

        def make_resnet(depth, num_classes, in_channels=3):
            return ResNetRawHead({18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[depth], num_classes, in_channels)
    """,
}

LSTM_CELL = {
    "one fused product, gates sliced": """
        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            gates = x @ W_ih.t() + b_ih + h @ W_hh.t() + b_hh
            H = h.shape[1]
            i = torch.sigmoid(gates[:, 0:H])
            f = torch.sigmoid(gates[:, H:2 * H])
            g = torch.tanh(gates[:, 2 * H:3 * H])
            o = torch.sigmoid(gates[:, 3 * H:4 * H])
            c_new = f * c + i * g
            return o * torch.tanh(c_new), c_new
    """,
    "four F.linear calls on row blocks": """
        import torch.nn.functional as F

        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            H = h.size(1)
            def gate(k):
                rows = slice(k * H, (k + 1) * H)
                return F.linear(x, W_ih[rows], b_ih[rows]) + F.linear(h, W_hh[rows], b_hh[rows])
            i_t, f_t, g_t, o_t = torch.sigmoid(gate(0)), torch.sigmoid(gate(1)), torch.tanh(gate(2)), torch.sigmoid(gate(3))
            c_t = f_t * c + i_t * g_t
            return (o_t * torch.tanh(c_t), c_t)
    """,
    "float64 inside, torch.split, cast back": """
        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            z = x.double() @ W_ih.double().T + h.double() @ W_hh.double().T + (b_ih.double() + b_hh.double())
            z_i, z_f, z_g, z_o = torch.split(z, h.shape[-1], dim=1)
            c_new = torch.sigmoid(z_f) * c.double() + torch.sigmoid(z_i) * torch.tanh(z_g)
            h_new = torch.sigmoid(z_o) * torch.tanh(c_new)
            return h_new.to(x.dtype), c_new.to(x.dtype)
    """,
    "float64 results returned": """
        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            d = torch.float64
            gates = x.to(d) @ W_ih.to(d).T + h.to(d) @ W_hh.to(d).T + b_ih.to(d) + b_hh.to(d)
            i, f, g, o = torch.chunk(gates, 4, dim=-1)
            c_new = torch.sigmoid(f) * c.to(d) + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c_new), c_new
    """,
    "torch.addmm, chunk": """
        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            gates = torch.addmm(b_ih, x, W_ih.t()) + torch.addmm(b_hh, h, W_hh.t())
            ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
            cy = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)
            return torch.sigmoid(outgate) * torch.tanh(cy), cy
    """,
    "einsum, gates viewed as (B, 4, H)": """
        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            H = h.shape[1]
            z = (torch.einsum("bi,gi->bg", x, W_ih) + torch.einsum("bh,gh->bg", h, W_hh) + b_ih + b_hh).view(-1, 4, H)
            c_next = torch.sigmoid(z[:, 1]) * c + torch.sigmoid(z[:, 0]) * torch.tanh(z[:, 2])
            return torch.sigmoid(z[:, 3]) * torch.tanh(c_next), c_next
    """,
    "weights split into named blocks, eight products": """
        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            H = h.shape[1]
            W_ii, W_if, W_ig, W_io = W_ih.split(H, dim=0)
            W_hi, W_hf, W_hg, W_ho = W_hh.split(H, dim=0)
            b_ii, b_if, b_ig, b_io = b_ih.split(H)
            b_hi, b_hf, b_hg, b_ho = b_hh.split(H)
            i = torch.sigmoid(x @ W_ii.T + b_ii + h @ W_hi.T + b_hi)
            f = torch.sigmoid(x @ W_if.T + b_if + h @ W_hf.T + b_hf)
            g = torch.tanh(x @ W_ig.T + b_ig + h @ W_hg.T + b_hg)
            o = torch.sigmoid(x @ W_io.T + b_io + h @ W_ho.T + b_ho)
            c_new = f * c + i * g
            return o * torch.tanh(c_new), c_new
    """,
    "input and hidden projections chunked separately, tensor methods": """
        def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
            xi, xf, xg, xo = (x @ W_ih.T + b_ih).chunk(4, 1)
            hi, hf, hg, ho = (h @ W_hh.T + b_hh).chunk(4, 1)
            c_next = (xf + hf).sigmoid() * c + (xi + hi).sigmoid() * (xg + hg).tanh()
            return (xo + ho).sigmoid() * c_next.tanh(), c_next
    """,
}

LSTM_FORWARD = {
    "a list of states, torch.stack": """
        def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
            h, c, outs = h0, c0, []
            for t in range(xs.shape[0]):
                h, c = lstm_cell(xs[t], h, c, W_ih, W_hh, b_ih, b_hh)
                outs.append(h)
            return torch.stack(outs, dim=0), (h, c)
    """,
    "a preallocated output tensor written row by row": """
        def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
            outputs = torch.zeros(xs.shape[0], xs.shape[1], h0.shape[1])
            h, c = h0, c0
            for t in range(xs.shape[0]):
                h, c = lstm_cell(xs[t], h, c, W_ih, W_hh, b_ih, b_hh)
                outputs[t] = h
            return outputs, (h, c)
    """,
    "a state tuple, torch.cat of unsqueezed rows": """
        def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
            state, rows = (h0, c0), []
            for x_t in xs:
                state = lstm_cell(x_t, *state, W_ih, W_hh, b_ih, b_hh)
                rows.append(state[0].unsqueeze(0))
            return torch.cat(rows, dim=0), state
    """,
    "float64 throughout": """
        def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
            h, c = h0.double(), c0.double()
            outputs = torch.empty(xs.shape[0], h0.shape[0], h0.shape[1], dtype=torch.float64)
            for t, x_t in enumerate(xs):
                h, c = lstm_cell(x_t.double(), h, c, W_ih.double(), W_hh.double(), b_ih.double(), b_hh.double())
                outputs[t] = h
            return outputs, (h, c)
    """,
    "torch.unbind, h_T taken as outputs[-1]": """
        def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
            h, c, outputs = h0, c0, []
            for x in torch.unbind(xs, dim=0):
                h, c = lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh)
                outputs.append(h)
            outputs = torch.stack(outputs)
            return outputs, (outputs[-1], c)
    """,
}

BASE_DENORMALIZE = DENORMALIZE["mul/add/clamp with as_tensor"]
BASE_DATASET = DATASET["os.listdir + splitext, numpy float32 / 255"]
BASE_BLOCK = BLOCK["shortcut after, out += shortcut(x), one in-place ReLU module"]
BASE_CELL = LSTM_CELL["one fused product, gates sliced"]

# (problem, [parts graded], styles, sources the style needs before it, variant of the problem)
CODE = {
    "init_weights": ("weight-init", ["init_weights"], INIT_WEIGHTS, ()),
    "activation_stds": ("weight-init", ["activation_stds"], ACTIVATION_STDS, ()),
    "receptive_field": ("receptive-field", ["receptive_field"], RECEPTIVE_FIELD, ()),
    "cd_dataset": ("custom-dataset", ["cd_labels", "cd_items"], DATASET, ()),
    "cd_loader": ("custom-dataset", ["cd_loader"], LOADER, (BASE_DATASET,)),
    "cd_show_batch": ("custom-dataset", ["cd_show_batch"], SHOW_BATCH, ()),
    "cifar_to_tensor": ("cifar-visualize", ["cifar_to_tensor"], TO_TENSOR, ()),
    "cifar_denormalize": ("cifar-visualize", ["cifar_denormalize"], DENORMALIZE, ()),
    "cifar_show_subplots": ("cifar-visualize", ["cifar_show_subplots"], SUBPLOTS, (BASE_DENORMALIZE,)),
    "cifar_make_grid": ("cifar-visualize", ["cifar_make_grid"], MAKE_GRID, ()),
    "cifar_show_imagegrid": ("cifar-visualize", ["cifar_show_imagegrid"], IMAGEGRID, (BASE_DENORMALIZE,)),
    "cifar_concat_grid": ("cifar-visualize", ["cifar_concat_grid"], CONCAT, ()),
    "ds_module": ("depthwise-separable", ["ds_module"], DS_MODULE, ()),
    "resnet_block": ("resnet", ["resnet_block", "resnet_identity"], BLOCK, ()),
    "lstm_cell": ("lstm", ["lstm_cell"], LSTM_CELL, ()),
    "lstm_forward": ("lstm", ["lstm_forward"], LSTM_FORWARD, (BASE_CELL,)),
}
CASES = [(cell, style) for cell, (_, _, styles, _) in CODE.items() for style in styles]


@pytest.mark.parametrize("cell, style", CASES, ids=[f"{c}: {s}" for c, s in CASES])
def test_code_style_earns_full_marks(cell, style, tmp_path, monkeypatch):
    """Each style, graded by the part's own probe, check and known mistakes, over fresh hidden draws."""
    monkeypatch.chdir(tmp_path)          # the dataset probes write their image folders in the working directory
    problem_id, part_ids, styles, needs = CODE[cell]
    variant = sorted(styles).index(style)             # a different variant of the problem for each style
    part, params = _part(problem_id, part_ids[0], variant)
    sources = [s.replace("$RESAMPLE$", params.get("resample", "BILINEAR")) for s in (*needs, styles[style])]
    ns = _namespace(*sources)
    for part_id in part_ids:
        _assert_full_marks(_part(problem_id, part_id, variant)[0], ns)


@pytest.mark.parametrize("style", list(MODEL))
def test_whole_resnet_in_another_style_earns_full_marks(style):
    """make_resnet in four styles (each with another block style), three variants: both depths, hidden class and
    channel counts, 32x32 and 48x48 inputs."""
    block = list(BLOCK.values())[list(MODEL).index(style) % len(BLOCK)]
    for variant, seed in ((0, 0), (1, 1), (2, 2)):
        part, _ = _part("resnet", "resnet_model", variant)
        _assert_full_marks(part, _namespace(block, MODEL[style]), [seed])


# ================================================================================ formulas, values, choices

FORMULAS = [
    ("weight-init", "wi_xavier_var", ["2 / (n_out + n_in)", "2*(n_in + n_out)**-1", "1/((n_in+n_out)/2)",
                                      "(2/(n_in+n_out))", "2÷(n_in+n_out)", "sqrt(2/(n_in+n_out))**2"]),
    ("weight-init", "wi_he_var", ["2*n_in**-1", "1/(n_in/2)", "2/(n_in)", "2 / n_in"]),
    ("conv-cost", "conv_params_formula", ["K*K*C_in*C_out + C_out", "(K^2*C_in + 1)*C_out", "C_out*(C_in*K**2 + 1)",
                                          "K²·C_in·C_out + C_out", "K²×C_in×C_out + C_out", "C_out + C_out*C_in*K**2"]),
    ("depthwise-separable", "ds_standard_formula", ["K*K*C_in*C_out", "C_out * C_in * K^2", "K² · C_in · C_out"]),
    ("depthwise-separable", "ds_separable_formula", ["C_in*(K**2 + C_out)", "K^2*C_in + C_out*C_in",
                                                     "C_in*C_out + C_in*K**2"]),
    ("depthwise-separable", "ds_cost_formula", ["H_out*W_out*C_in*(K**2 + C_out)", "(K^2*C_in + C_in*C_out) * H_out * W_out",
                                                "H_out*W_out*K*K*C_in + H_out*W_out*C_in*C_out",
                                                "H_out·W_out·(K²·C_in + C_in·C_out)"]),
    ("depthwise-separable", "ds_ratio_formula", ["(K**2 + C_out)/(K**2*C_out)", "1/K^2 + 1/C_out",
                                                 "(K*K*C_in + C_in*C_out)/(K*K*C_in*C_out)", "1/C_out+1/K²"]),
    ("resnet", "resnet_dydx", ["1 + dF", "dF+1", " 1 + dF ", "1+1*dF"]),
]


def _chain_forms(k: int) -> list[str]:
    import itertools
    symbols = [f"d{i}" for i in range(1, k + 1)]
    expanded = " + ".join(["1"] + ["*".join(c) for r in range(1, k + 1) for c in itertools.combinations(symbols, r)])
    return [expanded, expanded.replace(" ", ""), "*".join(f"(1 + {s})" for s in symbols),
            " * ".join(f"({s}+1)" for s in reversed(symbols)), "*".join(f"(1+{s})" for s in symbols[::-1])]


@pytest.mark.parametrize("problem_id, part_id, forms", FORMULAS, ids=[f[1] for f in FORMULAS])
def test_equivalent_formulas_earn_full_marks(problem_id, part_id, forms):
    part, _ = _part(problem_id, part_id)
    for text in forms:
        outcome = grade_probe(part, part.probe(random.Random(0)), {part_id: text})
        assert outcome.fraction == 1.0, (part_id, text, outcome.note)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_chain_gradient_in_any_equivalent_form(k):
    problem = get_problem("resnet")
    params = {**problem.sample(random.Random(0)), "chain_k": k}
    part = next(p for p in problem.parts(params) if p.id == "resnet_chain_grad")
    for text in _chain_forms(k):
        outcome = grade_probe(part, part.probe(random.Random(0)), {"resnet_chain_grad": text})
        assert outcome.fraction == 1.0, (k, text, outcome.note)


def _sig(x: float, n: int) -> float:
    return round(x, n - 1 - math.floor(math.log10(abs(x))))


# How a value is written: the answer key's value turned into what a student's code or pencil produces.
VALUES = [
    ("weight-init", ["wi_xavier_std", "wi_he_std"], [
        ("torch float32 0-d tensor", lambda v: torch.tensor(v, dtype=torch.float32)),
        ("numpy float64", np.float64), ("4 significant figures", lambda v: _sig(v, 4)),
        ("round(x, 5)", lambda v: round(v, 5)), ("a string", lambda v: f"{v:.6f}")]),
    ("receptive-field", ["rf_final", "rf_jump", "rf_out_size"], [
        ("numpy int64", np.int64), ("an integral float", float), ("torch int 0-d tensor", torch.tensor)]),
    ("receptive-field", ["rf_table"], [
        ("numpy array", np.array), ("torch tensor", torch.tensor), ("tuple of tuples", lambda v: tuple(map(tuple, v))),
        ("numpy rows in a list", lambda v: [np.array(row) for row in v])]),
    ("conv-cost", ["conv_out_hw"], [
        ("tuple", tuple), ("torch.Size", lambda v: torch.Size(v)), ("numpy array", np.array),
        ("floats", lambda v: [float(x) for x in v])]),
    ("conv-cost", ["conv_params", "conv_macs", "conv_flops", "conv1x1_params", "conv1x1_flops"], [
        ("numpy int64", np.int64), ("torch int64 tensor", torch.tensor)]),
    ("conv-cost", ["conv_param_ratio", "conv_flops_ratio"], [
        ("torch float32 tensor", lambda v: torch.tensor(v, dtype=torch.float32)), ("4 significant figures", lambda v: _sig(v, 4))]),
    ("depthwise-separable", ["ds_standard_params", "ds_separable_params", "ds_standard_macs", "ds_separable_macs"], [
        ("numpy int64", np.int64), ("an integral float", float)]),
    ("depthwise-separable", ["ds_param_ratio"], [
        ("numpy float32", np.float32), ("4 significant figures", lambda v: _sig(v, 4))]),
    ("conv-vs-fc", ["fcconv_sharing_ratio", "fcconv_fc_conv_ratio"], [
        ("numpy float32", np.float32), ("4 significant figures", lambda v: _sig(v, 4))]),
    ("alexnet-vgg", ["vgg_rf"], [("tuple", tuple), ("numpy array", np.array), ("torch tensor", torch.tensor)]),
    ("alexnet-vgg", ["vgg_ratio5", "vgg_ratio7"], [
        ("numpy float64", np.float64), ("4 significant figures", lambda v: _sig(v, 4))]),
    ("lstm", ["lstm_param_count"], [("numpy int64", np.int64), ("torch int64 tensor", torch.tensor)]),
]
VALUE_CASES = [(pid, part, name, fn) for pid, parts, forms in VALUES for part in parts for name, fn in forms]


@pytest.mark.parametrize("problem_id, part_id, form, write", VALUE_CASES,
                         ids=[f"{c[1]}: {c[2]}" for c in VALUE_CASES])
def test_values_written_any_reasonable_way(problem_id, part_id, form, write):
    for variant in range(3):
        problem = get_problem(problem_id)
        params = problem.sample(random.Random(variant))
        part = next(p for p in problem.parts(params) if p.id == part_id)
        value = write(problem.answers(params)[part_id])
        outcome = grade_probe(part, part.probe(random.Random(0)), {part_id: value})
        assert outcome.fraction == 1.0, (part_id, form, variant, outcome.note)


@pytest.mark.parametrize("problem_id", ["conv-vs-fc", "alexnet-vgg"])
def test_choice_letters_in_any_usual_spelling(problem_id):
    problem = get_problem(problem_id)
    params = problem.sample(random.Random(5))
    answers = problem.answers(params)
    for part in (p for p in problem.parts(params) if p.kind == "choice"):
        letter = answers[part.id]
        for spelling in (letter, letter.lower(), f"({letter})", f" {letter}. ", f"{letter})"):
            assert grade_probe(part, part.probe(random.Random(0)), {part.id: spelling}).fraction == 1.0, spelling


WRITTEN = {
    "wi_why": ("weight-init", "If every weight starts at 0, all neurons of a layer compute the same thing and get the "
               "same gradient, so the symmetry is never broken. Large random weights make activations and gradients "
               "explode, too small ones make them vanish."),
    "conv1x1_role": ("conv-cost", "1×1 卷积可以降维或升维(改变通道数),对各通道做线性组合实现跨通道融合,后面接 ReLU 增加非线性。"),
    "ds_principle": ("depthwise-separable", "Depth-wise step: each channel is convolved separately. Point-wise step: a "
                     "1x1 conv combines channels. Factorising into two steps needs far fewer parameters."),
    "fcconv_roles": ("conv-vs-fc", "卷积层负责特征提取;池化层做下采样,带来一定的平移不变性;全连接层把特征整合起来完成分类。"),
    "fcconv_sharing": ("conv-vs-fc", "FC: dense, no sharing. Conv: locally connected + shared weights (same filter "
                       "everywhere), so far fewer parameters and less risk of overfitting."),
    "alexnet_innovations": ("alexnet-vgg", "ReLU does not saturate so training converges faster; Dropout reduces "
                            "overfitting; training on two GPUs made it fast."),
    "vgg_innovations": ("alexnet-vgg", "VGG 全部使用 3×3 小卷积核堆叠,网络更深,结构统一规则。"),
}


@pytest.mark.parametrize("part_id", list(WRITTEN))
def test_written_answers_with_the_key_ideas_are_not_zero(part_id):
    """Written parts are provisional and reviewed; an answer that names every key idea, in English or Chinese,
    gets its provisional points."""
    problem_id, text = WRITTEN[part_id]
    part, _ = _part(problem_id, part_id)
    outcome = grade_probe(part, part.probe(random.Random(0)), {part_id: text})
    assert outcome.fraction == 1.0 and outcome.needs_review, (part_id, outcome.note)


# ================================================================================ one sandboxed batch

NN_HOMEWORK = ["weight-init", "receptive-field", "conv-cost", "custom-dataset", "cifar-visualize",
               "depthwise-separable", "conv-vs-fc", "alexnet-vgg", "resnet", "lstm"]

# Value cells computed from the notebook's own variables, in three students' ways.
VALUE_CELLS = [
    {   # plain Python and numpy
        "wi_xavier_var": """
            wi_xavier_var = "2 / (n_out + n_in)"
            wi_he_var = "2 / n_in"
            wi_xavier_std = np.sqrt(2 / (wi_n_in + wi_n_out))
            wi_he_std = np.sqrt(2 / wi_n_in)
        """,
        "rf_final": """
            import math
            rf_final, rf_jump = receptive_field(rf_layers)
            size = rf_input_size
            for (K, S, P, d) in rf_layers:
                size = math.floor((size + 2 * P - (d * (K - 1) + 1)) / S) + 1
            rf_out_size = size
        """,
        "conv_out_hw": """
            H_out = (conv_h + 2 * conv_padding - conv_k) // conv_stride + 1
            W_out = (conv_w + 2 * conv_padding - conv_k) // conv_stride + 1
            conv_out_hw = [H_out, W_out]
            conv_params = conv_k * conv_k * conv_c_in * conv_c_out + conv_c_out
            conv_macs = H_out * W_out * conv_c_out * (conv_k * conv_k * conv_c_in)
            conv_flops = conv_macs * 2
        """,
        "conv1x1_params": """
            conv1x1_params = conv_c_in * conv_c_out + conv_c_out
            conv1x1_flops = 2 * H_out * W_out * conv_c_out * conv_c_in
            conv_param_ratio = np.float64(conv_params) / conv1x1_params
            conv_flops_ratio = np.float64(conv_flops) / conv1x1_flops
        """,
        "ds_standard_params": """
            ds_standard_params = ds_k * ds_k * ds_c_in * ds_c_out
            ds_separable_params = ds_k * ds_k * ds_c_in + ds_c_in * ds_c_out
            ds_param_ratio = ds_separable_params / ds_standard_params
            ds_standard_macs = ds_standard_params * ds_h * ds_w
            ds_separable_macs = ds_separable_params * ds_h * ds_w
        """,
        "fcconv_fc_params": """
            n_inputs, n_outputs = fcconv_c * fcconv_h * fcconv_w, fcconv_c_out * fcconv_h * fcconv_w
            fcconv_fc_params = n_inputs * fcconv_hidden + fcconv_hidden
            fcconv_conv_params = fcconv_c_out * (fcconv_c * fcconv_k * fcconv_k + 1)
            fcconv_fc_same_params = (n_inputs + 1) * n_outputs
            fcconv_local_params = n_outputs * (fcconv_c * fcconv_k * fcconv_k + 1)
            fcconv_sharing_ratio = fcconv_local_params / fcconv_conv_params
            fcconv_fc_conv_ratio = fcconv_fc_same_params / fcconv_conv_params
        """,
        "vgg_two3_params": """
            C_in, C = vgg_c_in, vgg_c
            vgg_two3_params = (9 * C_in * C + C) + (9 * C * C + C)
            vgg_one5_params = 25 * C_in * C + C
            vgg_three3_params = vgg_two3_params + 9 * C * C + C
            vgg_one7_params = 49 * C_in * C + C
            vgg_rf = (5, 7)
            vgg_ratio5 = vgg_two3_params / vgg_one5_params
            vgg_ratio7 = vgg_three3_params / vgg_one7_params
            vgg_three3_flops = 2 * vgg_h * vgg_w * (9 * C_in * C + 18 * C * C)
            vgg_one7_flops = 2 * vgg_h * vgg_w * 49 * C_in * C
        """,
        "cifar_grid_image": """
            cifar_grid_image = cifar_make_grid(cifar_denormalize(cifar_batch, cifar_mean, cifar_std), cifar_nrow,
                                               cifar_padding, cifar_pad_value).permute(1, 2, 0).numpy()
        """,
    },
    {   # measured with torch (FlopCounterMode, real modules, the meta device), torch scalars
        "wi_xavier_var": """
            wi_xavier_var = "2*(n_in + n_out)**-1"
            wi_he_var = "1/(n_in/2)"
            wi_xavier_std = torch.sqrt(torch.tensor(2.0 / (wi_n_in + wi_n_out)))
            wi_he_std = torch.tensor(2.0 / wi_n_in).sqrt()
        """,
        "rf_final": """
            rf_final, rf_jump = receptive_field(rf_layers)
            rf_net = nn.Sequential(*[nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d) for k, s, p, d in rf_layers])
            with torch.no_grad():
                rf_out_size = rf_net(torch.zeros(1, 1, rf_input_size, rf_input_size)).shape[-1]
        """,
        "conv_out_hw": """
            from torch.utils.flop_counter import FlopCounterMode
            conv_layer = nn.Conv2d(conv_c_in, conv_c_out, conv_k, stride=conv_stride, padding=conv_padding)
            with FlopCounterMode(display=False) as fc:
                y = conv_layer(torch.zeros(1, conv_c_in, conv_h, conv_w))
            conv_out_hw = tuple(y.shape[-2:])
            conv_params = sum(p.numel() for p in conv_layer.parameters())
            conv_flops = fc.get_total_flops()
            conv_macs = conv_flops // 2
        """,
        "conv1x1_params": """
            conv1x1_layer = nn.Conv2d(conv_c_in, conv_c_out, 1, stride=conv_stride, padding=conv1x1_padding)
            with FlopCounterMode(display=False) as fc1:
                conv1x1_layer(torch.zeros(1, conv_c_in, conv_h, conv_w))
            conv1x1_params = sum(p.numel() for p in conv1x1_layer.parameters())
            conv1x1_flops = fc1.get_total_flops()
            conv_param_ratio = torch.tensor(conv_params) / torch.tensor(conv1x1_params)
            conv_flops_ratio = torch.tensor(conv_flops) / conv1x1_flops
        """,
        "ds_standard_params": """
            from torch.utils.flop_counter import FlopCounterMode

            def count(module):
                with FlopCounterMode(display=False) as counter:
                    module(torch.zeros(1, ds_c_in, ds_h, ds_w))
                return sum(p.numel() for p in module.parameters()), counter.get_total_flops() // 2

            ds_standard_params, ds_standard_macs = count(nn.Conv2d(ds_c_in, ds_c_out, ds_k, padding=ds_k // 2, bias=False))
            ds_separable_params, ds_separable_macs = count(nn.Sequential(
                nn.Conv2d(ds_c_in, ds_c_in, ds_k, padding=ds_k // 2, groups=ds_c_in, bias=False),
                nn.Conv2d(ds_c_in, ds_c_out, 1, bias=False)))
            ds_param_ratio = ds_separable_params / ds_standard_params
        """,
        "fcconv_fc_params": """
            def n_params(m):
                return sum(p.numel() for p in m.parameters())

            with torch.device("meta"):
                fcconv_fc_params = n_params(nn.Linear(fcconv_c * fcconv_h * fcconv_w, fcconv_hidden))
                fcconv_conv_params = n_params(nn.Conv2d(fcconv_c, fcconv_c_out, fcconv_k, padding=fcconv_k // 2))
                fcconv_fc_same_params = n_params(nn.Linear(fcconv_c * fcconv_h * fcconv_w, fcconv_c_out * fcconv_h * fcconv_w))
            fcconv_local_params = fcconv_h * fcconv_w * (fcconv_c_out * fcconv_c * fcconv_k ** 2 + fcconv_c_out)
            fcconv_sharing_ratio = fcconv_local_params / fcconv_conv_params
            fcconv_fc_conv_ratio = fcconv_fc_same_params / fcconv_conv_params
        """,
        "vgg_two3_params": """
            from torch.utils.flop_counter import FlopCounterMode

            def vgg_stack(n, k):
                layers = []
                for i in range(n):
                    layers += [nn.Conv2d(vgg_c_in if i == 0 else vgg_c, vgg_c, k, padding=k // 2), nn.ReLU()]
                return nn.Sequential(*layers)

            def measure(net):
                with FlopCounterMode(display=False) as counter:
                    net(torch.zeros(1, vgg_c_in, vgg_h, vgg_w))
                return sum(p.numel() for p in net.parameters()), counter.get_total_flops()

            vgg_two3_params, _ = measure(vgg_stack(2, 3))
            vgg_one5_params, _ = measure(vgg_stack(1, 5))
            vgg_three3_params, vgg_three3_flops = measure(vgg_stack(3, 3))
            vgg_one7_params, vgg_one7_flops = measure(vgg_stack(1, 7))
            vgg_rf = [1 + 2 * 2, 1 + 3 * 2]
            vgg_ratio5 = vgg_two3_params / vgg_one5_params
            vgg_ratio7 = vgg_three3_params / vgg_one7_params
        """,
        "cifar_grid_image": """
            denorm_batch = cifar_denormalize(cifar_batch, cifar_mean, cifar_std)
            cifar_grid_image = np.transpose(cifar_make_grid(denorm_batch, cifar_nrow, cifar_padding, cifar_pad_value).numpy(), (1, 2, 0))
        """,
    },
]
FORMULA_CELLS = [
    {"conv_params_formula": 'conv_params_formula = "K*K*C_in*C_out + C_out"',
     "ds_standard_formula": 'ds_standard_formula = "K**2 * C_in * C_out"\nds_separable_formula = "C_in*(K**2 + C_out)"\n'
                            'ds_cost_formula = "H_out*W_out*C_in*(K**2 + C_out)"\nds_ratio_formula = "(K**2 + C_out)/(K**2*C_out)"',
     "resnet_dydx": 'resnet_dydx = "1 + dF"'},
    {"conv_params_formula": 'conv_params_formula = "(K^2*C_in + 1)*C_out"',
     "ds_standard_formula": 'ds_standard_formula = "C_out * C_in * K^2"\nds_separable_formula = "K^2*C_in + C_out*C_in"\n'
                            'ds_cost_formula = "(K^2*C_in + C_in*C_out) * H_out * W_out"\nds_ratio_formula = "1/K^2 + 1/C_out"',
     "resnet_dydx": 'resnet_dydx = "dF+1"'},
    {"conv_params_formula": 'conv_params_formula = "K²·C_in·C_out + C_out"',
     "ds_standard_formula": 'ds_standard_formula = "K*K*C_in*C_out"\nds_separable_formula = "K*K*C_in + C_in*C_out"\n'
                            'ds_cost_formula = "H_out*W_out*K*K*C_in + H_out*W_out*C_in*C_out"\n'
                            'ds_ratio_formula = "(K*K*C_in + C_in*C_out)/(K*K*C_in*C_out)"',
     "resnet_dydx": 'resnet_dydx = "1+dF"'},
]
def _hand_cells(answers: dict) -> dict:
    """The third student computes every number by hand and copies 4 significant figures of the floats."""
    a = {k: v for problem in answers.values() for k, v in problem["answers"].items()}
    sig = lambda name: _sig(a[name], 4)  # noqa: E731
    return {
        "wi_xavier_var": f'wi_xavier_var = "1/((n_in+n_out)/2)"\nwi_he_var = "2*n_in**-1"\n'
                         f'wi_xavier_std = {sig("wi_xavier_std")}\nwi_he_std = {sig("wi_he_std")}',
        "rf_final": f"rf_final = {a['rf_final']}\nrf_jump = {a['rf_jump']}\nrf_out_size = {a['rf_out_size']}",
        "conv_out_hw": f"conv_out_hw = ({a['conv_out_hw'][0]}, {a['conv_out_hw'][1]})\nconv_params = {a['conv_params']}\n"
                       f"conv_macs = {a['conv_macs']}\nconv_flops = {a['conv_flops']}",
        "conv1x1_params": f"conv1x1_params = {a['conv1x1_params']}\nconv1x1_flops = {a['conv1x1_flops']}\n"
                          f"conv_param_ratio = {sig('conv_param_ratio')}\nconv_flops_ratio = {sig('conv_flops_ratio')}",
        "ds_standard_params": "\n".join(f"{k} = {a[k]}" for k in ("ds_standard_params", "ds_separable_params",
                                                                  "ds_standard_macs", "ds_separable_macs"))
                              + f"\nds_param_ratio = {sig('ds_param_ratio')}",
        "fcconv_fc_params": "\n".join(f"{k} = {a[k]}" for k in ("fcconv_fc_params", "fcconv_conv_params",
                                                                "fcconv_fc_same_params", "fcconv_local_params"))
                            + f"\nfcconv_sharing_ratio = {sig('fcconv_sharing_ratio')}"
                            + f"\nfcconv_fc_conv_ratio = {sig('fcconv_fc_conv_ratio')}",
        "vgg_two3_params": "\n".join(f"{k} = {a[k]}" for k in ("vgg_two3_params", "vgg_one5_params", "vgg_three3_params",
                                                               "vgg_one7_params", "vgg_three3_flops", "vgg_one7_flops"))
                           + f"\nvgg_rf = [5, 7]\nvgg_ratio5 = {sig('vgg_ratio5')}\nvgg_ratio7 = {sig('vgg_ratio7')}",
        "cifar_grid_image": VALUE_CELLS[0]["cifar_grid_image"],
    }


def _student_notebook(root, sid: str, index: int, answers: dict):
    """A whole nn-homework notebook in one student's styles, filled in the release notebook."""
    nb = release_notebook(root, sid)
    params = answers["custom-dataset"]["params"]
    choose = lambda styles: list(styles.values())[(2 * index + 1) % len(styles)]  # noqa: E731
    cells = {
        "init_weights": choose(INIT_WEIGHTS), "activation_stds": choose(ACTIVATION_STDS),
        "receptive_field": choose(RECEPTIVE_FIELD),
        "cd_labels": choose(DATASET).replace("$RESAMPLE$", params["resample"]), "cd_loader": choose(LOADER),
        "cd_show_batch": choose(SHOW_BATCH), "cifar_to_tensor": choose(TO_TENSOR), "cifar_denormalize": choose(DENORMALIZE),
        "cifar_show_subplots": choose(SUBPLOTS), "cifar_make_grid": choose(MAKE_GRID),
        "cifar_show_imagegrid": choose(IMAGEGRID), "cifar_concat_grid": choose(CONCAT),
        "ds_module": choose(DS_MODULE), "resnet_block": choose(BLOCK), "resnet_model": choose(MODEL),
        "lstm_cell": choose(LSTM_CELL), "lstm_forward": choose(LSTM_FORWARD),
    }
    cells.update(VALUE_CELLS[index] if index < len(VALUE_CELLS) else _hand_cells(answers))
    cells.update(FORMULA_CELLS[index])
    k = answers["resnet"]["params"]["chain_k"]
    cells["resnet_dydx"] += f'\nresnet_chain_grad = "{_chain_forms(k)[index]}"'
    cells["conv_params_formula"] += f"\nconv1x1_role = {WRITTEN['conv1x1_role'][1]!r}"
    cells["wi_why"] = f"wi_why = {WRITTEN['wi_why'][1]!r}"
    cells["ds_principle"] = f"ds_principle = {WRITTEN['ds_principle'][1]!r}"
    cells["fcconv_roles"] = f"fcconv_roles = {WRITTEN['fcconv_roles'][1]!r}\nfcconv_sharing = {WRITTEN['fcconv_sharing'][1]!r}"
    cells["alexnet_innovations"] = (f"alexnet_innovations = {WRITTEN['alexnet_innovations'][1]!r}\n"
                                    f"vgg_innovations = {WRITTEN['vgg_innovations'][1]!r}")
    letters = {**answers["conv-vs-fc"]["answers"], **answers["alexnet-vgg"]["answers"]}
    spell = [lambda x: x, lambda x: x.lower(), lambda x: f"({x})"][index]
    cells["fcconv_choice_pool"] = "\n".join(f"{n} = {spell(letters[n])!r}" for n in ("fcconv_choice_pool", "fcconv_choice_sharing"))
    cells["vgg_choice_stack"] = "\n".join(f"{n} = {spell(letters[n])!r}" for n in ("vgg_choice_stack", "alexnet_choice_relu"))
    lstm = answers["lstm"]["answers"]["lstm_param_count"]
    cells["lstm_param_count"] = ["I, H, L = lstm_pc\nlstm_param_count = 4 * H * (I + H) + 8 * H + (L - 1) * (8 * H * H + 8 * H)",
                                 f"lstm_param_count = {lstm}   # derived by hand: 4H(I+H)+8H, then 4H(2H)+8H per layer",
                                 "sizes = [lstm_pc[0]] + [lstm_pc[1]] * (lstm_pc[2] - 1)\n"
                                 "lstm_param_count = sum(4 * lstm_pc[1] * (n + lstm_pc[1]) + 8 * lstm_pc[1] for n in sizes)"][index]
    for key, source in cells.items():
        if key == "wi_xavier_var":        # the cell that sets wi_n_in, wi_n_out keeps that line
            first = next(line for line in _answer_source(nb, key).splitlines() if line.startswith("wi_n_in"))
            source = first + "\n" + textwrap.dedent(source)
        if key == "lstm_param_count":
            pc = answers["lstm"]["params"]
            source = f"lstm_pc = ({pc['pc_input']}, {pc['pc_hidden']}, {pc['pc_layers']})\n" + source
        set_answer_cell(nb, key, textwrap.dedent(source))
    solution = solution_notebook(root, sid)
    for cell in nb.cells:     # the parts these styles do not vary (the receptive-field table, the LSTM formulas,
        parts = cell.get("metadata", {}).get("hwkit", {}).get("parts", [])    # the new written parts): as solved
        if parts and not set(parts) & set(cells):
            cell.source = _answer_source(solution, parts[0])
    return nb


def _answer_source(nb, part_id: str) -> str:
    return next(c.source for c in nb.cells if part_id in c.get("metadata", {}).get("hwkit", {}).get("parts", []))


@pytest.mark.skipif(not sandbox_available()[0], reason="needs the bubblewrap sandbox")
def test_three_whole_notebooks_in_other_styles_earn_full_marks_in_the_sandbox(tmp_path):
    """The real path: three students answer all of nn-homework in their own styles (one with every number by
    hand), graded in warm sandboxed kernels, two lanes. Every code, value, formula and choice part is full,
    every written part has its provisional points and is flagged for review."""
    students = ["s01", "s02", "s03"]
    root = make_course(tmp_path, NN_HOMEWORK, students=students)
    answers = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]
    for index, sid in enumerate(students):
        submit(root, sid, _student_notebook(root, sid, index, answers[sid]))
    hwkit("grade", "t", "--course", root, "--jobs", "2")
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    db = sqlite3.connect(root / "gradebook.sqlite")
    kinds = {p.id: p.kind for pid in NN_HOMEWORK for p in get_problem(pid).parts(answers["s01"][pid]["params"])}
    for sid in students:
        # "cell errors" only from the notebook's own demo cells (its nn.LSTM self-test compares a float64 answer
        # with float32 by torch.allclose, which raises); the answers themselves are all graded below
        assert grades[sid]["status"] in ("ok", "cell errors"), (sid, grades[sid])
        rows = db.execute("SELECT part, score, max_points, note, needs_review FROM parts "
                          "WHERE assignment='t' AND student_id=?", (sid,)).fetchall()
        assert {part for part, *_ in rows} == set(kinds)
        lost = [(part, score, note) for part, score, points, note, review in rows
                if score < points and not (kinds[part] == "written" and score > 0 and review)]
        assert not lost, (sid, lost)


def test_network_whose_blocks_project_between_conv2_and_bn2_earns_full_marks():
    """The order of use may differ from the reference's wherever that changes nothing (here: the projection
    shortcut used between the second conv and its BatchNorm, as torchvision's layout reads)."""
    part, _ = _part("resnet", "resnet_model")
    block = BLOCK["downsample applied after conv2, before bn2 (torchvision-like layout)"]
    _assert_full_marks(part, _namespace(block, MODEL["one nn.Sequential ending in nn.Flatten and nn.Linear"]), [0])
