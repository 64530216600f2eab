"""Where batch inputs come from: files, folders, globs, TFDS splits and pair manifests.

Every input becomes an :class:`Item`: a stable ``key`` (its identity in the results
manifest), a readable ``stem`` (for output names), a loader and a cheap way to learn its
upright size. Nothing is decoded until a pair needs it; a broken image fails only the
pairs that use it, when they run.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from jaxstyle.io import image as imageio
from jaxstyle.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
TFDS_FORM = "tfds:NAME[/CONFIG]:SPLIT[SLICE], e.g. tfds:oxford_flowers102:train[:100]"
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Item:
    """One input image: identity, readable name, and how to get its pixels."""

    key: str  # absolute path, tfds:NAME:SPLIT#INDEX, or array:N
    stem: str
    load: Callable[[], np.ndarray] = field(compare=False, repr=False)  # uint8 H×W×3
    size: Callable[[], tuple[int, int]] = field(compare=False, repr=False)  # upright (h, w)


# ------------------------------------------------------------------------------ files


def _upright_size(path: Path) -> tuple[int, int]:
    """(h, w) as :func:`image.load_image` will return it, from the header alone."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
            except Exception:  # noqa: BLE001 - load_image ignores broken EXIF too
                orientation = 1
    except Exception:  # noqa: BLE001 - let load_image name the problem in its own words
        h, w = imageio.load_image(path).shape[:2]
        return h, w
    # Orientations 5-8 are transposes: the upright picture swaps width and height.
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def file_item(path: str | os.PathLike) -> Item:
    p = Path(path).expanduser().absolute()
    return Item(str(p), p.stem, lambda: imageio.load_image(p), lambda: _upright_size(p))


def array_item(array: np.ndarray, index: int, kind: str) -> Item:
    """An in-memory image (Python API): float [0, 1] or uint8, H×W×3."""
    a = np.asarray(array)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise UserError(f"the {kind} array #{index} has shape {a.shape}; expected H×W×3")
    u8 = a if a.dtype == np.uint8 else imageio.to_uint8(a)
    return Item(f"array:{kind}:{index}", f"{kind}{index:03d}", lambda: u8, lambda: u8.shape[:2])


def _listing(spec: str) -> list[Path]:
    p = Path(spec).expanduser()
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.is_file())
    elif _GLOB_CHARS.search(spec) and not p.exists():
        found = sorted(Path(q) for q in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(q))
    else:
        if not p.exists():
            raise UserError(f"{spec}: no such file, folder or glob match; check the path")
        return [p]
    # Hidden files include our own temporary outputs; only image suffixes count.
    images = [q for q in found if not q.name.startswith(".") and q.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise UserError(f"{spec}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images


# ------------------------------------------------------------------------------- TFDS


def _tfds_rgb(example: dict, where: str) -> np.ndarray:
    a = example.get("image")
    if a is None:  # datasets name their image feature differently; take the first image-like one
        a = next((v for v in example.values() if isinstance(v, np.ndarray) and v.ndim in (2, 3) and v.dtype == np.uint8), None)
    if a is None:
        raise UserError(f"{where}: the example has no image feature (keys: {', '.join(example)})")
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = imageio.to_uint8(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        return np.repeat(a, 3, axis=-1)
    if a.shape[-1] == 4:  # alpha onto white, as load_image does for files
        alpha = a[..., 3:].astype(np.uint32)
        return ((a[..., :3].astype(np.uint32) * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return a[..., :3]


def tfds_items(spec: str) -> list[Item]:
    """Every example of ``tfds:NAME[/CONFIG]:SPLIT[SLICE]`` through ``tfds.data_source``."""
    m = re.fullmatch(r"tfds:([^:\s]+):(.+)", spec)
    if not m:
        raise UserError(f"bad TFDS source {spec!r}; write {TFDS_FORM}")
    name, split = m.groups()
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError(f"{spec}: TFDS inputs need TensorFlow Datasets; pip install 'jaxstyle[tfds]'") from None
    try:
        source = tfds.data_source(name, split=split)
        count = len(source)
    except Exception as e:  # noqa: BLE001 - TFDS raises many types; all mean "not available"
        why = " ".join(str(e).split())[:200]
        raise UserError(
            f"{spec}: cannot open the TFDS data source ({why}); prepare it with `tfds build {name}` "
            "and point TFDS_DATA_DIR at its folder"
        ) from None
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{name}-{split}").strip("_")

    def item(i: int) -> Item:
        where = f"{spec}#{i}"
        load = lambda: _tfds_rgb(source[i], where)  # noqa: E731
        return Item(f"tfds:{name}:{split}#{i}", f"{safe}-{i:05d}", load, lambda: load().shape[:2])

    return [item(i) for i in range(count)]


# ------------------------------------------------------------------------------ specs


def expand(specs: Sequence[str]) -> list[Item]:
    """Files, folders (their images, sorted, not recursive), globs and TFDS sources, in the
    order given, each image once."""
    items: dict[str, Item] = {}
    for spec in specs:
        found = tfds_items(spec) if spec.startswith("tfds:") else [file_item(p) for p in _listing(spec)]
        for it in found:
            items.setdefault(it.key, it)
    return list(items.values())


__all__ = ["IMAGE_SUFFIXES", "Item", "array_item", "expand", "file_item", "tfds_items"]
