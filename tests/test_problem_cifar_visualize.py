"""cifar-visualize: CIFAR-10 rows to tensors, de-normalisation, and four ways to show a batch."""
from __future__ import annotations

import json
import pickle
import random

import numpy as np

from hwkit.bank import get_problem
from solutions.cifar_visualize import LABEL_NAMES, batch_files, concat_grid, make_batch, make_grid, to_rows
from tests.support import append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, assert_wrong_with_notes, grade_one, make_course, set_answer_cell, solution_notebook

PROBLEM = get_problem("cifar-visualize")
PART_IDS = ["cifar_to_tensor", "cifar_denormalize", "cifar_show_subplots", "cifar_make_grid",
            "cifar_show_imagegrid", "cifar_concat_grid", "cifar_grid_image"]


def test_sampling_200_seeds_valid_and_distinct():
    notes = set()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        b = params["batch_size"]
        assert (params["batch_index"] + 1) * b <= 64 and 3 <= params["nrow"] < b and params["padding"] != 2
        assert all(0.42 <= m <= 0.53 for m in params["mean"]) and all(0.19 <= s <= 0.28 for s in params["std"])
        notes.add(PROBLEM.note(params))
        json.dumps(PROBLEM.answers(params))
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        if seed % 10:
            continue
        for part in parts:
            assert_part_consistent(part, seed)
    assert len(notes) == 200


def test_data_files_are_real_cifar_python_batches(tmp_path):
    """The test (not the grader) reads the files back to confirm the format."""
    PROBLEM.data(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == ["batches.meta", "data_batch_1"]
    assert sum(p.stat().st_size for p in folder.iterdir()) < 300_000
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    with open(folder / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    images, labels = make_batch()
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (64, 3072)
    assert batch[b"labels"] == labels and set(labels) == set(range(10))
    # channel planes: the first 1024 bytes are the red plane of image 0, row-major
    assert np.array_equal(batch[b"data"][0, :1024].reshape(32, 32), images[0, :, :, 0])
    assert np.array_equal(batch[b"data"][0, 2048:].reshape(32, 32), images[0, :, :, 2])
    assert [n.decode() for n in meta[b"label_names"]] == LABEL_NAMES
    # written like Python 2's cPickle: the default ASCII decoding fails, as with the real files
    with open(folder / "data_batch_1", "rb") as f:
        try:
            pickle.load(f)
            raise AssertionError("expected a UnicodeDecodeError without encoding='bytes'")
        except UnicodeDecodeError:
            pass
    assert batch_files() == batch_files()
    assert np.array_equal(to_rows(images), batch[b"data"])


def test_make_grid_and_concat_layouts_by_hand():
    x = np.arange(3 * 1 * 2 * 2, dtype=np.float32).reshape(3, 1, 2, 2) + 1
    g = make_grid(x, nrow=2, padding=1, pad_value=-1)
    assert g.shape == (1, 7, 7)
    assert np.array_equal(g[0, 1:3, 1:3], x[0, 0]) and np.array_equal(g[0, 1:3, 4:6], x[1, 0])
    assert np.array_equal(g[0, 4:6, 1:3], x[2, 0]) and (g[0, 4:6, 4:6] == -1).all() and (g[0, 0] == -1).all()
    assert make_grid(x, nrow=8, padding=0).shape == (1, 2, 6)          # xmaps = min(nrow, B)
    c = concat_grid(x, nrow=2)
    assert c.shape == (4, 4, 1) and np.array_equal(c[2:, 2:, 0], np.zeros((2, 2)))
    assert np.array_equal(c[:2, 2:, 0], x[1, 0]) and np.array_equal(c[2:, :2, 0], x[2, 0])


WRONG_1 = '''
_good_grid = cifar_make_grid
def cifar_to_tensor(data, mean, std):                    # reshaped as if pixels were interleaved
    x = torch.from_numpy(data.reshape(-1, 32, 32, 3).copy()).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

def cifar_denormalize(x, mean, std):                     # no clamp
    return x * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)

def cifar_show_subplots(batch, labels, mean, std):       # shows the normalised images
    fig, axes = plt.subplots(1, len(batch), squeeze=False)
    for ax, img, y in zip(axes[0], batch, labels):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(cifar_label_names[int(y)])
    return fig

def cifar_make_grid(batch, nrow, padding, pad_value):    # nrow taken as the number of rows
    b, c, h, w = batch.shape
    ymaps = min(nrow, b)
    xmaps = math.ceil(b / ymaps)
    grid = torch.full((c, ymaps * (h + padding) + padding, xmaps * (w + padding) + padding), float(pad_value))
    for k in range(b):
        y, x = divmod(k, xmaps)
        grid[:, y * (h + padding) + padding:y * (h + padding) + padding + h, x * (w + padding) + padding:x * (w + padding) + padding + w] = batch[k]
    return grid

def cifar_show_imagegrid(batch, labels, mean, std, nrow):   # nrow rows instead of nrow columns
    images = cifar_denormalize(batch, mean, std).clamp(0, 1)
    fig = plt.figure()
    grid = ImageGrid(fig, 111, nrows_ncols=(nrow, math.ceil(len(images) / nrow)), axes_pad=0.05)
    for ax, img in zip(grid, images):
        ax.imshow(img.permute(1, 2, 0).numpy())
    return fig

def cifar_concat_grid(images, nrow):                     # channels first
    images = np.asarray(images)
    rows = math.ceil(len(images) / nrow)
    cells = list(images) + [np.zeros_like(images[0])] * (rows * nrow - len(images))
    return np.concatenate([np.concatenate(cells[r * nrow:(r + 1) * nrow], axis=2) for r in range(rows)], axis=1)

cifar_grid_image = _good_grid(cifar_batch, cifar_nrow, cifar_padding, cifar_pad_value).permute(1, 2, 0).numpy()
'''

WRONG_2 = '''
_good_denorm, _good_grid = cifar_denormalize, cifar_make_grid
def cifar_to_tensor(data, mean, std):                    # scaled, not normalised
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255)

def cifar_denormalize(x, mean, std):                     # normalises again
    return ((x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)).clamp(0, 1)

def cifar_show_subplots(batch, labels, mean, std):       # titles are numbers
    images = _good_denorm(batch, mean, std)
    fig, axes = plt.subplots(2, math.ceil(len(images) / 2), squeeze=False)
    for ax, img, y in zip(axes.flat, images, labels):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(str(int(y)))
    return fig

def cifar_make_grid(batch, nrow, padding, pad_value):    # padding only between the images
    g = _good_grid(batch, nrow, padding, pad_value)
    return g[:, padding:g.shape[1] - padding, padding:g.shape[2] - padding] if padding else g

def cifar_show_imagegrid(batch, labels, mean, std, nrow):   # forgot to de-normalise
    fig = plt.figure()
    grid = ImageGrid(fig, 111, nrows_ncols=(math.ceil(len(batch) / nrow), nrow), axes_pad=0.05)
    for ax, img in zip(grid, batch):
        ax.imshow(img.permute(1, 2, 0).numpy())
    return fig

def cifar_concat_grid(images, nrow):                     # nrow rows
    images = np.asarray(images).transpose(0, 2, 3, 1)
    cols = math.ceil(len(images) / nrow)
    cells = list(images) + [np.zeros_like(images[0])] * (nrow * cols - len(images))
    return np.vstack([np.hstack(cells[r * cols:(r + 1) * cols]) for r in range(nrow)])

cifar_grid_image = _good_grid(_good_denorm(cifar_batch, cifar_mean, cifar_std), cifar_nrow, cifar_padding, cifar_pad_value).numpy()
'''

ALTERNATIVE = '''
def cifar_to_tensor(data, mean, std):                     # numpy in float64, then float32
    x = data.reshape(len(data), 3, 32, 32) / 255.0
    x = (x - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
    return torch.tensor(x, dtype=torch.float32)

def cifar_denormalize(x, mean, std):                      # channel by channel
    return torch.clip(torch.stack([x[:, c] * std[c] + mean[c] for c in range(3)], dim=1), 0.0, 1.0)

def cifar_show_subplots(batch, labels, mean, std):        # add_subplot, numpy transpose
    images = cifar_denormalize(batch, mean, std).numpy()
    fig = plt.figure(figsize=(8, 3))
    cols = math.ceil(len(images) / 2)
    for i, img in enumerate(images):
        ax = fig.add_subplot(2, cols, i + 1)
        ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.set_title(cifar_label_names[labels[i].item()])
        ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle("batch")
    return fig

def cifar_make_grid(batch, nrow, padding, pad_value):     # pad every image, then tile
    b, c, h, w = batch.shape
    cols = min(nrow, b)
    rows = -(-b // cols)
    blank = torch.full((c, h, w), float(pad_value), dtype=batch.dtype)
    cells = list(batch) + [blank] * (rows * cols - b)
    padded = [torch.nn.functional.pad(t, (padding, 0, padding, 0), value=float(pad_value)) for t in cells]
    grid = torch.cat([torch.cat(padded[r * cols:(r + 1) * cols], dim=2) for r in range(rows)], dim=1)
    return torch.nn.functional.pad(grid, (0, padding, 0, padding), value=float(pad_value))

def cifar_show_imagegrid(batch, labels, mean, std, nrow):  # ImageGrid with labels and a colour bar mode
    imgs = cifar_denormalize(batch, mean, std).permute(0, 2, 3, 1)
    fig = plt.figure(figsize=(6, 4))
    grid = ImageGrid(fig, (0.05, 0.05, 0.9, 0.9), nrows_ncols=(-(-len(imgs) // nrow), nrow), axes_pad=0.2, share_all=True)
    for i in range(len(imgs)):
        grid[i].imshow(imgs[i])
        grid[i].set_title(cifar_label_names[int(labels[i])], fontsize=6)
    for ax in grid[len(imgs):]:
        ax.axis("off")
    return fig

def cifar_concat_grid(images, nrow):                      # torch permute, hstack/vstack
    imgs = [t.permute(1, 2, 0).numpy() for t in images]
    while len(imgs) % nrow:
        imgs.append(np.zeros_like(imgs[0]))
    return np.vstack([np.hstack(imgs[i:i + nrow]) for i in range(0, len(imgs), nrow)])

_b = cifar_to_tensor(cifar_raw[b"data"], cifar_mean, cifar_std)[cifar_batch_index * cifar_batch_size:(cifar_batch_index + 1) * cifar_batch_size]
cifar_grid_image = np.transpose(cifar_make_grid(cifar_denormalize(_b, cifar_mean, cifar_std), cifar_nrow, cifar_padding, cifar_pad_value).numpy(), (1, 2, 0))
'''


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["cifar-visualize"], students=["s001"])

    # (2) the solution notebook earns full marks
    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    # (3) plausible wrong answers, every part in each of two notebooks
    for source, expected in ((WRONG_1, {"cifar_to_tensor": "CIFAR_RESHAPE_HWC", "cifar_denormalize": "DENORM_NO_CLAMP",
                                        "cifar_show_subplots": "GRID_NO_DENORMALIZE", "cifar_make_grid": "GRID_ROW_COL_SWAPPED",
                                        "cifar_show_imagegrid": "GRID_ROW_COL_SWAPPED", "cifar_concat_grid": "GRID_CHW_NOT_HWC",
                                        "cifar_grid_image": "GRID_NO_DENORMALIZE"}),
                             (WRONG_2, {"cifar_to_tensor": "CIFAR_NOT_NORMALIZED", "cifar_denormalize": "DENORM_INVERTED",
                                        "cifar_show_subplots": "FIG_TITLES_NOT_NAMES", "cifar_make_grid": "GRID_WRONG_PADDING",
                                        "cifar_show_imagegrid": "GRID_NO_DENORMALIZE", "cifar_concat_grid": "GRID_ROW_COL_SWAPPED",
                                        "cifar_grid_image": "GRID_CHW_NOT_HWC"})):
        results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), source))
        assert_wrong_with_notes(results, expected)

    # (4) different, correct implementations earn full marks
    results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), ALTERNATIVE))
    for pid, r in results.items():
        assert r.score == r.max_points, (pid, r.note, r.feedback)


SUBPLOTS_FOR_IMAGEGRID = '''
def cifar_show_imagegrid(batch, labels, mean, std, nrow):   # method 1 again: no ImageGrid
    images = cifar_denormalize(batch, mean, std).clamp(0, 1)
    rows = math.ceil(len(images) / nrow)
    fig, axes = plt.subplots(rows, nrow, squeeze=False)
    for ax, img in zip(axes.flat, images):
        ax.imshow(img.permute(1, 2, 0).numpy())
    for ax in axes.flat[len(images):]:
        ax.axis("off")
    return fig
'''


def test_method_3_drawn_without_imagegrid_awaits_a_person(tmp_path):
    """Method 3 asks for mpl_toolkits' ImageGrid: the same picture drawn with plt.subplots (method 1 again) is
    right by behaviour, so it scores 0 for now and a person decides, as a forbidden shortcut does. Writing the
    word in a comment or a string does not count."""
    root = make_course(tmp_path, ["cifar-visualize"], students=["s001"])
    for source in (SUBPLOTS_FOR_IMAGEGRID, "# ImageGrid\n_note = 'ImageGrid'\n" + SUBPLOTS_FOR_IMAGEGRID):
        nb = set_answer_cell(solution_notebook(root, "s001"), "cifar_show_imagegrid", "import math\n" + source)
        results = grade_one(root, "s001", nb)
        r = results["cifar_show_imagegrid"]
        assert (r.score, r.note, r.needs_review) == (0.0, "REQUIRED_METHOD_NOT_USED", True), (r.note, r.feedback)
        assert "ImageGrid" in r.feedback["en"] and "ImageGrid" in r.feedback["zh"]
        assert results["cifar_show_subplots"].score == results["cifar_show_subplots"].max_points
