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

from jaxstyle import image as imageio
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


@dataclass(frozen=True)
class PairRow:
    """One line of a pair manifest."""

    content: Item
    styles: tuple[Item, ...]
    output: str | None
    options: dict
    where: str  # FILE:LINE, for messages


def _parsers() -> dict[str, Callable]:
    from jaxstyle.cli_options import OPTIONS

    # Not the preset or model: one network serves the whole run.
    table = {name: kind for name, kind, _, _ in OPTIONS if name != "model"}
    table["clamp"] = lambda s: str(s).strip().lower() in ("1", "true", "yes", "on")
    return table


def read_pairs(path: str | os.PathLike) -> list[PairRow]:
    """A JSONL or CSV manifest: ``content``, ``style`` (JSONL: a list blends several; CSV:
    ``|`` separates them), optional ``output`` and per-pair options named as ``Config``
    fields (``style_weight`` or ``style-weight``). Paths are relative to the manifest."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such pair manifest; give product, zip or a .jsonl/.csv file")
    rows: list[tuple[str, dict]] = []
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError) as e:
        raise UserError(f"{path}: cannot read the pair manifest ({e}); check the file") from None
    if p.suffix.lower() == ".csv":
        for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            rows.append((f"{p}:{n}", {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{p}:{n}: not valid JSON ({e.msg}); one JSON object per line") from None
            if not isinstance(row, dict):
                raise UserError(f"{p}:{n}: expected a JSON object with content and style")
            rows.append((f"{p}:{n}", row))
    parsers = _parsers()
    out = []
    for where, row in rows:
        row = {k.replace("-", "_"): v for k, v in row.items()}
        if "content" not in row or "style" not in row:
            raise UserError(f"{where}: a pair needs both 'content' and 'style'")
        styles = row.pop("style")
        styles = styles if isinstance(styles, list) else str(styles).split("|")
        content = _resolve(p, row.pop("content"))
        output = row.pop("output", None)
        options = {}
        for key, value in row.items():
            if key not in parsers:
                raise UserError(f"{where}: unknown column {key!r}; per-pair options are {', '.join(sorted(parsers))}")
            try:
                options[key] = parsers[key](value) if isinstance(value, str) else value
            except Exception:  # noqa: BLE001 - argparse-style converters raise various types
                raise UserError(f"{where}: bad value {value!r} for {key}") from None
        style_items = tuple(_resolve(p, s) for s in styles if str(s).strip())
        if not style_items:
            raise UserError(f"{where}: empty style")
        out.append(PairRow(content, style_items, str(output) if output else None, options, where))
    if not out:
        raise UserError(f"{path}: the pair manifest has no pairs")
    return out


def _resolve(manifest: Path, value) -> Item:
    q = Path(os.path.expanduser(str(value).strip()))
    # A missing file fails its own pairs when they run, like a broken one: one bad row
    # must not stop a long manifest.
    return file_item(q if q.is_absolute() else manifest.parent / q)


__all__ = ["IMAGE_SUFFIXES", "Item", "PairRow", "array_item", "expand", "file_item", "read_pairs", "tfds_items"]
