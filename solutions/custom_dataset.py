"""Reference for the custom cats/dogs dataset problem (seed homework, problem 4).

Everything here works on image files as bytes that this module made itself (PIL encodes them, PIL
decodes them again); nothing from a student's kernel is ever decoded or unpickled here. The shipped
folder and the hidden test folders come from seeded generators, so both sides see identical bytes."""
from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
RESAMPLE = {"NEAREST": Image.NEAREST, "BILINEAR": Image.BILINEAR, "BICUBIC": Image.BICUBIC}
TRAIN_DIR = "catsdogs/train"
_DATA_SEED = 20240611


# ---------------------------------------------------------------- image files

def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=85)
    else:
        img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def to_mode(img: Image.Image, mode: str, rs: np.random.Generator) -> Image.Image:
    """An RGB image in the requested mode: L (grey), RGBA (with a partly transparent alpha ramp), P (palette)."""
    if mode == "RGB":
        return img
    if mode == "L":
        return img.convert("L")
    if mode == "P":
        return img.quantize(colors=int(rs.integers(8, 33)))
    w, h = img.size
    ramp = np.linspace(int(rs.integers(0, 120)), 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    alpha = Image.fromarray(ramp.astype(np.uint8), "L")
    out = img.convert("RGBA")
    out.putalpha(alpha)
    return out


def draw_animal(kind: str, w: int, h: int, rs: np.random.Generator) -> Image.Image:
    """A recognisable-ish cartoon: a round face; cats get pointed ears, dogs floppy side ears and a snout."""
    bg = tuple(int(v) for v in rs.integers(150, 256, 3))
    fur = tuple(int(v) for v in (rs.integers(170, 240, 3) * np.array([1.0, 0.75, 0.45])).astype(int)) \
        if kind == "cat" else tuple(int(v) for v in (rs.integers(90, 200, 3) * np.array([1.0, 0.8, 0.6])).astype(int))
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    cx, cy, r = w / 2, h * 0.58, min(w, h) * 0.32
    if kind == "cat":
        for s in (-1, 1):
            d.polygon([(cx + s * r * 0.95, cy - r * 0.2), (cx + s * r * 0.85, cy - r * 1.45), (cx + s * r * 0.2, cy - r * 0.85)], fill=fur)
    else:
        for s in (-1, 1):
            d.ellipse([cx + s * r * 0.75 - r * 0.35, cy - r * 0.9, cx + s * r * 0.75 + r * 0.35, cy + r * 0.5], fill=tuple(v // 2 for v in fur))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fur)
    for s in (-1, 1):
        d.ellipse([cx + s * r * 0.4 - r * 0.12, cy - r * 0.3, cx + s * r * 0.4 + r * 0.12, cy - r * 0.06], fill=(20, 20, 20))
    if kind == "dog":
        d.ellipse([cx - r * 0.4, cy + r * 0.1, cx + r * 0.4, cy + r * 0.6], fill=(235, 220, 200))
    d.ellipse([cx - r * 0.13, cy + r * 0.1, cx + r * 0.13, cy + r * 0.3], fill=(60, 30, 30))
    return img


def training_files() -> list[tuple[str, bytes]]:
    """The shipped folder catsdogs/train/{cat,dog}/: 8 cats and 8 dogs named like the Kaggle set
    (cat.7.jpg), mixed sizes, modes (RGB, L, RGBA, P) and formats, plus one stray text file."""
    rs = np.random.default_rng(_DATA_SEED)
    files = []
    modes = ["RGB", "L", "RGBA", "P", "RGB", "RGB", "L", "P"]
    for kind in ("cat", "dog"):
        numbers = sorted(int(n) for n in rs.choice(np.arange(1, 40), size=8, replace=False))
        for i, number in enumerate(numbers):
            w, h = (int(v) for v in rs.integers(20, 81, 2))
            mode = modes[(i + (3 if kind == "dog" else 0)) % len(modes)]
            img = to_mode(draw_animal(kind, w, h, rs), mode, rs)
            fmt = "JPEG" if mode in ("RGB", "L") and i % 3 != 2 else "PNG"
            files.append((f"{TRAIN_DIR}/{kind}/{kind}.{number}.{'jpg' if fmt == 'JPEG' else 'png'}", encode(img, fmt)))
    files.append((f"{TRAIN_DIR}/cat/notes.txt", b"Collected for the course. Not an image.\n"))
    return files


def write_files(target, files) -> None:
    for rel, blob in files:
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)


HIDDEN_CLASSES = ("bird", "cat", "dog", "fox", "owl")


def hidden_tree(rng: random.Random, max_side: int = 36) -> list[tuple[str, bytes]]:
    """A fresh ImageFolder tree for grading: 2-3 classes, 4-7 images with at least one of each mode,
    random smooth content, random Kaggle-style numbers (so string order matters), one stray file."""
    rs = np.random.default_rng(rng.getrandbits(63))
    classes = sorted(rng.sample(HIDDEN_CLASSES, rng.randint(2, 3)))
    n = rng.randint(max(4, len(classes)), 7)
    modes = ["RGB", "L", "RGBA", "P"] + [rng.choice(["RGB", "L", "RGBA", "P"]) for _ in range(n - 4)]
    rng.shuffle(modes)
    owners = list(classes) + [rng.choice(classes) for _ in range(n - len(classes))]
    rng.shuffle(owners)
    used, files = set(), []
    for cls, mode in zip(owners, modes):
        number = rng.randint(0, 120)
        while (cls, number) in used:
            number += 1
        used.add((cls, number))
        w, h = rng.randint(8, max_side), rng.randint(8, max_side)
        small = rs.integers(0, 256, size=(max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((w, h), Image.BILINEAR)
        img = to_mode(img, mode, rs)
        fmt = "JPEG" if mode in ("RGB", "L") and rng.random() < 0.5 else "PNG"
        ext = rng.choice(["jpg", "jpeg"]) if fmt == "JPEG" else "png"
        files.append((f"{cls}/{cls}.{number}.{ext}", encode(img, fmt)))
    files.append((f"{rng.choice(classes)}/{rng.choice(['notes.txt', 'Thumbs.db', 'labels.csv'])}", b"not an image\n"))
    return files


def as_probe_files(files) -> list:
    """Bytes travel to the kernel as uint8 arrays (the probe protocol carries JSON and arrays only)."""
    return [[rel, np.frombuffer(blob, dtype=np.uint8).copy()] for rel, blob in files]


def from_probe_files(files) -> list[tuple[str, bytes]]:
    return [(rel, np.asarray(arr, dtype=np.uint8).tobytes()) for rel, arr in files]


# ---------------------------------------------------------------- the dataset, as the statement defines it

def index_files(files, *, reverse_classes: bool = False, all_files: bool = False):
    """ImageFolder rules: classes = sorted sub-folder names (index = position); samples sorted by class,
    then by file name (string order); only .jpg/.jpeg/.png files (any case) count."""
    classes = sorted({rel.split("/")[-2] for rel, _ in files}, reverse=reverse_classes)
    class_to_idx = {c: i for i, c in enumerate(classes)}
    samples = sorted((class_to_idx[rel.split("/")[-2]], rel.split("/")[-1], blob) for rel, blob in files
                     if all_files or rel.lower().endswith(IMAGE_EXTENSIONS))
    return class_to_idx, samples


def load_image(blob: bytes, size_hw, resample: str = "BILINEAR", *, convert: str = "first",
               scale: bool = True, layout: str = "CHW", swap_size: bool = False) -> np.ndarray:
    """The item image: decode, convert('RGB'), resize((W, H), method), float32 / 255, CHW.
    convert: 'first' (right), 'after' (resize then convert) or 'none' (mode kept, to_tensor channels)."""
    h, w = size_hw
    img = Image.open(io.BytesIO(blob))
    img.load()
    if convert == "first":
        img = img.convert("RGB")
    img = img.resize((h, w) if swap_size else (w, h), RESAMPLE[resample])
    if convert == "after":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32)
    if scale:
        arr = arr / np.float32(255)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr.transpose(2, 0, 1) if layout == "CHW" else arr)


def dataset_items(files, size_hw, resample: str = "BILINEAR", **switches) -> list[np.ndarray]:
    _, samples = index_files(files)
    return [load_image(blob, size_hw, resample, **switches) for _, _, blob in samples]


def loader_batches(files, size_hw, resample: str, batch_size: int, *, drop_last: bool = False) -> dict:
    """What DataLoader(dataset, batch_size, shuffle=False) yields, summarised."""
    _, samples = index_files(files)
    images = np.stack(dataset_items(files, size_hw, resample))
    labels = np.array([label for label, _, _ in samples], dtype=np.int64)
    n = len(samples)
    sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    if drop_last and sizes[-1] < batch_size:
        sizes = sizes[:-1]
    keep = sum(sizes)
    return {"batch_sizes": np.array(sizes, dtype=np.int64), "images": images[:keep], "labels": labels[:keep]}
