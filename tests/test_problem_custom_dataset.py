"""custom-dataset: an ImageFolder-style cats/dogs Dataset, its DataLoader and a batch figure."""
from __future__ import annotations

import io
import json
import random

import pytest

from hwkit.bank import get_problem
from solutions.custom_dataset import hidden_tree, index_files, training_files
from tests.support import grade_probe, append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, assert_wrong_with_notes, grade_one, make_course, solution_notebook

PROBLEM = get_problem("custom-dataset")
PART_IDS = ["cd_labels", "cd_items", "cd_loader", "cd_show_batch"]


def test_sampling_200_seeds_valid_and_distinct():
    notes = set()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        assert 20 <= params["height"] <= 96 and 20 <= params["width"] <= 96 and params["height"] != params["width"]
        assert params["resample"] in ("NEAREST", "BILINEAR", "BICUBIC") and 3 <= params["batch_size"] <= 8
        notes.add(PROBLEM.note(params))
        ref = PROBLEM.answers(params)
        json.dumps(ref)
        assert ref["cd_len"] == 16 and ref["cd_class_to_idx"] == {"cat": 0, "dog": 1}
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        if seed % 10:
            continue   # the full reference/mistake round trip on every 10th seed keeps the test fast
        for part in parts:
            assert_part_consistent(part, seed)
    assert len(notes) == 200


def test_shipped_data_is_small_and_in_imagefolder_layout(tmp_path):
    from PIL import Image

    PROBLEM.data(tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert sum(p.stat().st_size for p in files) < 300_000
    assert {p.parent.name for p in files} == {"cat", "dog"}
    images = [p for p in files if p.suffix in (".jpg", ".png")]
    assert 12 <= len(images) <= 20 and len(files) == len(images) + 1
    modes, formats = set(), set()
    for p in images:
        with Image.open(p) as img:
            modes.add(img.mode)
            formats.add(img.format)
            assert all(20 <= s <= 80 for s in img.size)
    assert modes == {"RGB", "L", "RGBA", "P"} and formats == {"JPEG", "PNG"}
    # deterministic: the same bytes every time
    assert training_files() == training_files()


def test_hidden_trees_have_every_mode_and_a_stray_file():
    from PIL import Image

    for seed in range(20):
        files = hidden_tree(random.Random(seed))
        _, samples = index_files(files)
        assert len(samples) == len(files) - 1 >= 4
        modes = {Image.open(io.BytesIO(blob)).mode for _, _, blob in samples}
        assert modes == {"RGB", "L", "RGBA", "P"}


# ---------------------------------------------------------------- student code run in-process (no kernel)

STUDENT_BASE = '''
import os
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, DataLoader

class CatsDogsDataset(Dataset):
    CONVERT, LAYOUT, SCALE, SWAP, METHOD = "first", "CHW", True, False, None
    def __init__(self, root, size):
        self.size = size
        classes = sorted(os.listdir(root))
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.samples = [(os.path.join(root, c, f), i) for c, i in self.class_to_idx.items()
                        for f in sorted(os.listdir(os.path.join(root, c)))
                        if f.lower().endswith((".png", ".jpg", ".jpeg"))]
    def __len__(self):
        return len(self.samples)
    def __getitem__(self, i):
        img = Image.open(self.samples[i][0])
        h, w = self.size
        if self.CONVERT == "first":
            img = img.convert("RGB")
        img = img.resize((h, w) if self.SWAP else (w, h), getattr(Image, self.METHOD or METHOD))
        if self.CONVERT == "after":
            img = img.convert("RGB")
        a = np.array(img)
        if a.ndim == 2:
            a = a[:, :, None]
        x = torch.from_numpy(a).float()
        if self.SCALE:
            x = x / 255
        return (x.permute(2, 0, 1) if self.LAYOUT == "CHW" else x), self.samples[i][1]
'''


@pytest.mark.parametrize("switch, note", [
    ('LAYOUT = "HWC"', "DATASET_HWC"),
    ('CONVERT = "none"', "DATASET_GRAYSCALE_KEPT"),
    ('CONVERT = "after"', "DATASET_RESIZE_BEFORE_CONVERT"),
    ("SWAP = True", "DATASET_SIZE_SWAPPED"),
    ("SCALE = False", "DATASET_NOT_NORMALISED"),
    ('METHOD = "OTHER"', None),
])
def test_item_mistakes_have_notes(tmp_path, monkeypatch, switch, note):
    monkeypatch.chdir(tmp_path)
    params = PROBLEM.sample(random.Random(11))
    part = {p.id: p for p in PROBLEM.parts(params)}["cd_items"]
    ns = {}
    exec(STUDENT_BASE + f"METHOD = {params['resample']!r}\n", ns)
    if switch == 'METHOD = "OTHER"':
        other = "BICUBIC" if params["resample"] != "BICUBIC" else "NEAREST"
        switch, note = f"METHOD = {other!r}", "DATASET_DEFAULT_RESAMPLE" if other == "BICUBIC" else "DATASET_WRONG_RESAMPLE"
    exec(f"class CatsDogsDataset(CatsDogsDataset):\n    {switch}\n", ns)
    outcome = grade_probe(part, part.probe(random.Random(5)), ns)
    assert outcome.fraction < 1 and outcome.note == note, (outcome.note, outcome.feedback)
    assert not list(tmp_path.iterdir())   # the probe removed its folder


def test_the_right_form_without_the_images_earns_nothing(tmp_path, monkeypatch):
    """A student who read the checks returns float32 zeros of the right shape for every item, and a figure of
    blank images, one per image asked for: the item's type and dtype and the figure's count were a fifth and a
    third of those parts' points without the work. A recognised mistake still keeps that share."""
    monkeypatch.chdir(tmp_path)
    params = PROBLEM.sample(random.Random(11))
    parts = {p.id: p for p in PROBLEM.parts(params)}
    ns = {}
    exec(STUDENT_BASE + f"METHOD = {params['resample']!r}\n" + """
class CatsDogsDataset(CatsDogsDataset):
    def __getitem__(self, i):
        return torch.zeros(3, *self.size), self.samples[i][1]

import matplotlib.pyplot as plt
def cd_show_batch(images, labels):
    fig, axes = plt.subplots(1, len(images), squeeze=False)
    for ax in axes[0]:
        ax.imshow(np.zeros((4, 4, 3), np.float32))
    return fig
""", ns)
    for part_id in ("cd_items", "cd_show_batch"):
        part = parts[part_id]
        outcome = grade_probe(part, part.probe(random.Random(5)), ns)
        assert outcome.fraction == 0.0, (part_id, outcome)

    ns["CatsDogsDataset"] = _student_class(params, 'LAYOUT = "HWC"')
    outcome = grade_probe(parts["cd_items"], parts["cd_items"].probe(random.Random(5)), ns)
    assert outcome.note == "DATASET_HWC" and outcome.fraction == pytest.approx(1 / 5), outcome


def _student_class(params, switch: str):
    ns = {}
    exec(STUDENT_BASE + f"METHOD = {params['resample']!r}\n", ns)
    exec(f"class CatsDogsDataset(CatsDogsDataset):\n    {switch}\n", ns)
    return ns["CatsDogsDataset"]


def test_in_process_reference_student_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = PROBLEM.sample(random.Random(3))
    ns = {}
    exec(STUDENT_BASE + f"METHOD = {params['resample']!r}\n", ns)
    for part in PROBLEM.parts(params)[:2]:
        for seed in range(3):
            assert grade_probe(part, part.probe(random.Random(seed)), ns).fraction == 1.0, part.id


# ---------------------------------------------------------------- the real autograder, one kernel per notebook

WRONG_1 = '''
_Good = CatsDogsDataset
class CatsDogsDataset(_Good):            # cat=1, dog=0 and pixel values 0-255
    def __init__(self, root, size):
        super().__init__(root, size)
        k = len(self.class_to_idx)
        self.class_to_idx = {c: k - 1 - i for c, i in self.class_to_idx.items()}
        self.samples = [(p, k - 1 - y) for p, y in self.samples]
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x * 255, y

def cd_make_loader(root, size, batch_size):
    return DataLoader(_Good(root, size), batch_size=batch_size, shuffle=False, drop_last=True)

def cd_show_batch(images, labels):
    fig, axes = plt.subplots(1, len(images), squeeze=False)
    for ax, x in zip(axes[0], images):
        ax.imshow(x[0].numpy(), cmap="gray")
    return fig
'''

WRONG_2 = '''
_Good = CatsDogsDataset
class CatsDogsDataset(_Good):            # every file counts, the stray text file too
    def __init__(self, root, size):
        super().__init__(root, size)
        self.samples = [(os.path.join(root, c, f), i) for c, i in self.class_to_idx.items()
                        for f in sorted(os.listdir(os.path.join(root, c)))]

def cd_make_loader(root, size, batch_size):
    return DataLoader(_Good(root, size), batch_size=1, shuffle=False)

def cd_show_batch(images, labels):
    fig = plt.figure()
    for k, x in enumerate(images):
        fig.add_subplot(1, len(images), k + 1).imshow((x.permute(1, 2, 0) * 255).numpy().astype(np.uint8))
    return fig
'''

ALTERNATIVE = '''
import pathlib
from mpl_toolkits.axes_grid1 import ImageGrid

class CatsDogsDataset(torch.utils.data.Dataset):   # pathlib, a list of labels, numpy conversion
    def __init__(self, root, size):
        root = pathlib.Path(root)
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.class_to_idx = dict(zip(names, range(len(names))))
        self.files, self.labels = [], []
        for name in names:
            for p in sorted((root / name).iterdir(), key=lambda p: p.name):
                if p.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                    self.files.append(p)
                    self.labels.append(self.class_to_idx[name])
        self.hw = size
    def __len__(self):
        return len(self.files)
    def __getitem__(self, idx):
        im = Image.open(self.files[idx]).convert("RGB").resize(self.hw[::-1], Image.%(method)s)
        arr = np.asarray(im).astype(np.float32) / 255.0
        return torch.tensor(arr.transpose(2, 0, 1)), int(self.labels[idx])

def cd_make_loader(root, size, batch_size):
    return torch.utils.data.DataLoader(CatsDogsDataset(root, size), batch_size, False)

def cd_show_batch(images, labels):
    fig = plt.figure(figsize=(8, 3))
    grid = ImageGrid(fig, 111, nrows_ncols=(2, (len(images) + 1) // 2), axes_pad=0.1)
    for ax, img, lab in zip(grid, images, labels):
        ax.imshow(img.numpy().transpose(1, 2, 0))
        ax.set_title(f"{int(lab)}")
    return fig
'''


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["custom-dataset"], students=["s001"])
    params = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s001"]["custom-dataset"]["params"]

    # (2) the solution notebook earns full marks
    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    # (3) plausible wrong answers, several parts per notebook
    results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), WRONG_1))
    expected = {"cd_labels": "DATASET_LABELS_REVERSED", "cd_items": "DATASET_NOT_NORMALISED",
                "cd_loader": "DATALOADER_DROP_LAST", "cd_show_batch": "FIG_ONE_CHANNEL"}
    assert_wrong_with_notes(results, expected)

    results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), WRONG_2))
    expected = {"cd_labels": "DATASET_COUNTS_NON_IMAGES", "cd_loader": "BATCH_SIZES_WRONG_SHAPE",
                "cd_show_batch": "FIG_UINT8"}
    assert_wrong_with_notes(results, expected)
    assert results["cd_items"].score < results["cd_items"].max_points

    # (4) a different, correct implementation earns full marks
    results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), ALTERNATIVE % {"method": params["resample"]}))
    for pid, r in results.items():
        assert r.score == r.max_points, (pid, r.note, r.feedback)
