"""Reference for the CIFAR-10 batch visualisation problem (seed homework, problem 5).

The synthetic batch is generated here as arrays; the grader computes every reference from those arrays
in memory. The pickled files are only ever written (in the real CIFAR-10 python format), never read."""
from __future__ import annotations

import io
import math
from functools import lru_cache
import struct
from pickle import BINSTRING, GLOBAL, SHORT_BINSTRING, _Pickler

import numpy as np
from PIL import Image, ImageDraw

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
N_IMAGES = 64
BATCH_DIR = "cifar-10-batches-py"
_SEED = 20240612


# ---------------------------------------------------------------- synthetic images, one cartoon per class

def _draw(label: int, rs: np.random.Generator) -> np.ndarray:
    j = lambda lo, hi: float(rs.uniform(lo, hi))  # noqa: E731
    name = LABEL_NAMES[label]
    sky = (int(j(110, 170)), int(j(160, 210)), int(j(220, 255)))
    grass = (int(j(40, 90)), int(j(120, 170)), int(j(40, 80)))
    sea = (int(j(20, 50)), int(j(70, 120)), int(j(150, 200)))
    ground = {"airplane": sky, "bird": sky, "ship": sky, "automobile": (150, 150, 155), "truck": (140, 140, 140),
              "frog": grass, "deer": grass, "horse": grass, "cat": (230, 215, 190), "dog": (200, 220, 235)}[name]
    img = Image.new("RGB", (32, 32), ground)
    d = ImageDraw.Draw(img)
    dx, dy = j(-3, 3), j(-3, 3)
    body = tuple(int(v) for v in rs.integers(30, 230, 3))
    if name == "airplane":
        c = (int(j(60, 120)),) * 3
        d.polygon([(4 + dx, 16 + dy), (28 + dx, 14 + dy), (28 + dx, 18 + dy)], fill=c)
        d.polygon([(14 + dx, 16 + dy), (20 + dx, 4 + dy), (22 + dx, 16 + dy), (20 + dx, 28 + dy)], fill=c)
    elif name in ("automobile", "truck"):
        d.rectangle([0, 24, 31, 31], fill=(70, 70, 70))
        if name == "truck":
            d.rectangle([3 + dx, 6 + dy, 21 + dx, 22 + dy], fill=body)
            d.rectangle([22 + dx, 12 + dy, 29 + dx, 22 + dy], fill=tuple(v // 2 for v in body))
        else:
            d.rectangle([4 + dx, 14 + dy, 28 + dx, 22 + dy], fill=body)
            d.rectangle([9 + dx, 9 + dy, 22 + dx, 14 + dy], fill=(180, 210, 230))
        for x in (8, 23):
            d.ellipse([x - 3 + dx, 19 + dy, x + 3 + dx, 25 + dy], fill=(20, 20, 20))
    elif name == "bird":
        d.ellipse([9 + dx, 11 + dy, 23 + dx, 21 + dy], fill=body)
        d.ellipse([19 + dx, 8 + dy, 26 + dx, 15 + dy], fill=body)
        d.polygon([(26 + dx, 11 + dy), (30 + dx, 12 + dy), (26 + dx, 13 + dy)], fill=(240, 180, 40))
    elif name in ("cat", "dog"):
        fur = (int(j(180, 240)), int(j(110, 160)), int(j(40, 90))) if name == "cat" else (int(j(110, 160)), int(j(80, 110)), int(j(50, 70)))
        if name == "cat":
            d.polygon([(7 + dx, 12 + dy), (9 + dx, 2 + dy), (15 + dx, 9 + dy)], fill=fur)
            d.polygon([(25 + dx, 12 + dy), (23 + dx, 2 + dy), (17 + dx, 9 + dy)], fill=fur)
        else:
            d.ellipse([3 + dx, 8 + dy, 10 + dx, 22 + dy], fill=tuple(v // 2 for v in fur))
            d.ellipse([22 + dx, 8 + dy, 29 + dx, 22 + dy], fill=tuple(v // 2 for v in fur))
        d.ellipse([7 + dx, 7 + dy, 25 + dx, 27 + dy], fill=fur)
        d.ellipse([11 + dx, 13 + dy, 14 + dx, 16 + dy], fill=(10, 10, 10))
        d.ellipse([18 + dx, 13 + dy, 21 + dx, 16 + dy], fill=(10, 10, 10))
        d.ellipse([14 + dx, 19 + dy, 18 + dx, 22 + dy], fill=(60, 20, 20))
    elif name in ("deer", "horse"):
        coat = (int(j(120, 170)), int(j(70, 110)), int(j(30, 60)))
        d.rectangle([7 + dx, 13 + dy, 23 + dx, 20 + dy], fill=coat)
        for x in (8, 12, 18, 22):
            d.rectangle([x + dx, 20 + dy, x + 1 + dx, 28 + dy], fill=coat)
        d.polygon([(21 + dx, 14 + dy), (25 + dx, 5 + dy), (29 + dx, 8 + dy), (24 + dx, 16 + dy)], fill=coat)
        if name == "deer":
            d.line([(25 + dx, 5 + dy), (23 + dx, 0 + dy)], fill=(90, 60, 30), width=1)
            d.line([(26 + dx, 5 + dy), (29 + dx, 0 + dy)], fill=(90, 60, 30), width=1)
        else:
            d.line([(21 + dx, 7 + dy), (21 + dx, 14 + dy)], fill=(30, 20, 10), width=2)
    elif name == "frog":
        green = (int(j(60, 110)), int(j(170, 220)), int(j(40, 80)))
        d.ellipse([6 + dx, 12 + dy, 26 + dx, 26 + dy], fill=green)
        for x in (9, 19):
            d.ellipse([x + dx, 8 + dy, x + 5 + dx, 13 + dy], fill=green)
            d.ellipse([x + 1 + dx, 9 + dy, x + 3 + dx, 11 + dy], fill=(10, 10, 10))
    elif name == "ship":
        d.rectangle([0, 20, 31, 31], fill=sea)
        d.polygon([(4 + dx, 17 + dy), (28 + dx, 17 + dy), (24 + dx, 24 + dy), (8 + dx, 24 + dy)], fill=(90, 90, 100))
        d.rectangle([12 + dx, 10 + dy, 19 + dx, 17 + dy], fill=(230, 230, 230))
    arr = np.clip(np.asarray(img, dtype=np.int16) + rs.integers(-12, 13, size=(32, 32, 3)), 0, 255)
    # Pixel values 45-57 are the bytes of '-', '.', '/' and the digits: nudged out of that band, the raw
    # batch file never holds a byte run that reads as a number (no answer's literal can appear in it).
    arr = np.where((arr >= 45) & (arr <= 57), np.where(arr <= 51, 44, 58), arr)
    return arr.astype(np.uint8)


@lru_cache(maxsize=4)
def _batch(n: int, seed: int) -> tuple[np.ndarray, tuple[int, ...]]:
    rs = np.random.default_rng(seed)
    labels = [i % 10 for i in range(n)]
    labels = [int(v) for v in rs.permutation(labels)]
    images = np.stack([_draw(label, rs) for label in labels])
    images.setflags(write=False)
    return images, tuple(labels)


def make_batch(n: int = N_IMAGES, seed: int = _SEED) -> tuple[np.ndarray, list[int]]:
    """(images uint8 N x 32 x 32 x 3, read-only, labels): every class at least six times, shuffled."""
    images, labels = _batch(n, seed)
    return images, list(labels)


def to_rows(images_hwc: np.ndarray) -> np.ndarray:
    """CIFAR-10 rows: 3072 bytes per image, the 1024 red values first (row-major), then green, then blue."""
    return np.ascontiguousarray(images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), 3072))


# ---------------------------------------------------------------- the real python-version file format

class _Py2Pickler(_Pickler):
    """Writes pickles as Python 2's cPickle did (protocol 2, byte strings as py2 `str`), so loading needs
    pickle.load(f, encoding="bytes") exactly as for the real CIFAR-10 files."""
    dispatch = _Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        self.write(SHORT_BINSTRING + bytes([n]) + obj if n < 256 else BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", "") == "_reconstruct":   # spelled as the original files spell it
            self.write(GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(len)] = save_global


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def batch_files() -> dict[str, bytes]:
    images, labels = make_batch()
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": labels, b"data": to_rows(images),
             # letters-only serials: no digit run in the data can ever read as an answer's literal
             b"filenames": [f"{LABEL_NAMES[y]}_s_synthetic_{chr(97 + i // 26)}{chr(97 + i % 26)}.png".encode()
                            for i, y in enumerate(labels)]}
    meta = {b"num_cases_per_batch": N_IMAGES, b"label_names": [n.encode() for n in LABEL_NAMES], b"num_vis": 3072}
    return {f"{BATCH_DIR}/data_batch_1": py2_pickle(batch), f"{BATCH_DIR}/batches.meta": py2_pickle(meta)}


# ---------------------------------------------------------------- references

def _chan(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float32).reshape(1, 3, 1, 1)


def to_tensor(rows, mean, std, *, hwc: bool = False, scale: bool = True, normalize: bool = True) -> np.ndarray:
    """rows (N, 3072) uint8 -> float32 (N, 3, 32, 32), x = (x/255 - mean) / std per channel."""
    rows = np.asarray(rows)
    x = rows.reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2) if hwc else rows.reshape(-1, 3, 32, 32)
    x = x.astype(np.float32)
    if scale:
        x = x / np.float32(255)
    if normalize:
        x = (x - _chan(mean)) / _chan(std)
    return np.ascontiguousarray(x)


def denormalize(x, mean, std, *, clamp: bool = True, inverted: bool = False, swapped: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    m, s = _chan(mean), _chan(std)
    if inverted:
        y = (x - m) / s
    elif swapped:
        y = x * m + s
    else:
        y = x * s + m
    return np.clip(y, 0, 1) if clamp else y


def make_grid(batch, nrow: int, padding: int = 2, pad_value: float = 0.0, *, swap: bool = False,
              outer: bool = True) -> np.ndarray:
    """torchvision.utils.make_grid for a (B, C, H, W) batch (B >= 2): xmaps = min(nrow, B) columns,
    ymaps = ceil(B / xmaps) rows, cells of (H + padding) x (W + padding), a canvas of
    (C, ymaps*(H+padding) + padding, xmaps*(W+padding) + padding) filled with pad_value, image k at row
    k // xmaps, column k % xmaps, top-left corner (y*(H+padding) + padding, x*(W+padding) + padding).
    swap: nrow read as the number of rows; outer=False: padding only between images."""
    batch = np.asarray(batch, dtype=np.float32)
    b, c, h, w = batch.shape
    if swap:
        ymaps = min(nrow, b)
        xmaps = math.ceil(b / ymaps)
    else:
        xmaps = min(nrow, b)
        ymaps = math.ceil(b / xmaps)
    height, width = h + padding, w + padding
    edge = padding if outer else 0
    grid = np.full((c, ymaps * height + 2 * edge - padding, xmaps * width + 2 * edge - padding), pad_value, dtype=np.float32)
    for k in range(b):
        y, x = divmod(k, xmaps)
        top, left = y * height + edge, x * width + edge
        grid[:, top:top + h, left:left + w] = batch[k]
    return grid


def concat_grid(images, nrow: int, *, swap: bool = False, hwc: bool = True) -> np.ndarray:
    """Rows of nrow images side by side, rows stacked, no padding; a short last row is filled with zeros.
    Returns (rows*H, nrow*W, C). swap: nrow read as the number of rows; hwc=False: left channels-first."""
    images = np.asarray(images, dtype=np.float32)
    b, c, h, w = images.shape
    cols = math.ceil(b / nrow) if swap else nrow
    nrows = nrow if swap else math.ceil(b / cols)
    blank = np.zeros((c, h, w), dtype=np.float32)
    cells = list(images) + [blank] * (nrows * cols - b)
    rows = [np.concatenate(cells[r * cols:(r + 1) * cols], axis=2) for r in range(nrows)]
    grid = np.concatenate(rows, axis=1)
    return np.ascontiguousarray(grid.transpose(1, 2, 0) if hwc else grid)


def grid_positions(b: int, nrow: int, *, swap: bool = False) -> list[list[int]]:
    cols = math.ceil(b / nrow) if swap else nrow
    return [[k // cols, k % cols] for k in range(b)]


def hwc_list(images) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(1, 2, 0)) for x in images]
