"""How much memory an untrusted weights file may make jaxstyle allocate, and the checks.

A weights file is attacker-controlled input: a few hundred bytes of pickle or safetensors
header can declare terabytes, point a tensor outside its storage, or ask for the same bytes
to be copied a million times. Every size is therefore checked against a budget *before* the
allocation, with one rule for all readers (torch-free pickle, torch path, safetensors):

- everything a file makes us allocate (storage bytes read, copies made) is at most
  ``min(MAX_TOTAL_BYTES, RATIO * file size + SLACK_BYTES)``; MAX_TOTAL_BYTES sits just above
  the largest VGG we read (vgg19 with its classifier, 143,667,240 float32 = 574.7 MB);
- a tensor view must lie inside its storage, and a view whose elements overlap (stride 0,
  or strides smaller than the extent of the dimension inside) is refused unless tiny;
- pickles are small (a VGG state dict pickle is a few KB) and may nest only a little.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from jaxstyle.errors import UserError

LARGEST_VGG_BYTES = 143_667_240 * 4  # vgg19 incl. classifier, float32
MAX_TOTAL_BYTES = 640 * 2**20  # 671 MB: the largest VGG plus its pickle, with room to spare
RATIO = 4  # a deflated weights record shrinks to ~0.93 of its size; 4x leaves room, a bomb does not fit
SLACK_BYTES = 1 << 20
MAX_PICKLE_BYTES = 1 << 20  # a whole torchvision VGG-19 state-dict pickle is ~5 KB
MAX_DEPTH = 32  # a state dict nests 1-3 levels (a checkpoint wrapper adds one)
MAX_NODES = 1 << 20  # containers + leaves visited while converting one file
MAX_NDIM = 8
MAX_INDEX = 1 << 48  # no size, stride or offset of a real tensor comes near this
TINY_VIEW_BYTES = 1 << 16  # an overlapping (expanded) view is copied only below this
MAX_HEADER_BYTES = 16 << 20  # safetensors' own limit is 100 MB; a VGG header is ~4 KB
MAX_TENSORS = 4096


class Hostile(ValueError):
    """The file asks for something no weights file needs; the text says what."""


def budget_for(file_size: int) -> int:
    """Bytes a file of ``file_size`` bytes may make us allocate in all."""
    return min(MAX_TOTAL_BYTES, RATIO * max(int(file_size), 0) + SLACK_BYTES)


class Budget:
    """A running total of bytes allocated for one file; refuses the allocation that would pass it."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int):
        self.limit, self.used = int(limit), 0

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or self.used + nbytes > self.limit:
            raise Hostile(
                f"{what} would take the file's total past {self.limit / 1e6:.1f} MB, more than a VGG "
                f"weights file of this size can hold (largest VGG: {LARGEST_VGG_BYTES / 1e6:.0f} MB)"
            )
        self.used += nbytes


def check_int(v, what: str) -> int:
    if type(v) is not int or not 0 <= v <= MAX_INDEX:
        raise Hostile(f"{what} is not a plain non-negative integer below 2**48")
    return v


def view_nbytes(size, stride, offset, storage_numel: int, itemsize: int, what: str = "a tensor") -> int:
    """Bytes a strided view materialises, after checking it lies inside its storage and does not overlap.

    ``size``/``stride``/``offset`` count elements, as torch does. Raises :class:`Hostile`.
    """
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise Hostile(f"{what} has a size or stride that is not a tuple")
    if len(size) > MAX_NDIM or len(size) != len(stride):
        raise Hostile(f"{what} has {len(size)} sizes and {len(stride)} strides (at most {MAX_NDIM})")
    size = [check_int(n, f"a size of {what}") for n in size]
    stride = [check_int(s, f"a stride of {what}") for s in stride]
    offset = check_int(offset, f"the storage offset of {what}")
    check_int(storage_numel, f"the storage size of {what}")
    numel = 1
    for n in size:
        numel *= n
    if numel == 0:
        if offset > storage_numel:
            raise Hostile(f"{what} starts past the end of its storage")
        return 0
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage_numel:
        raise Hostile(f"{what} reaches element {last} of a storage of {storage_numel}")
    nbytes = numel * itemsize
    if nbytes > TINY_VIEW_BYTES and not non_overlapping(size, stride):
        raise Hostile(f"{what} is a stride-0 or overlapping view of {nbytes} bytes (a state dict holds none)")
    return nbytes


def non_overlapping(size, stride) -> bool:
    """True when no two indices of the view reach the same element (sufficient test, as torch's)."""
    extent = 1
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda p: p[1]):
        if s < extent:
            return False
        extent = s * n
    return True


def refuse(path, e: Hostile) -> UserError:
    return UserError(f"{path} is not a plain weights file ({e}); refusing to read it")


# safetensors dtypes a VGG file may hold (numpy reads them; the converter widens to float32).
SAFETENSORS_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2}


def safetensors_header(path: Path) -> tuple[dict[str, str], dict[str, dict]]:
    """(metadata, name -> {dtype, shape, data_offsets}) of a safetensors file, checked before any tensor is read.

    Raises :class:`Hostile` for a header that no weights file has (sizes, dtypes, offsets, overlaps)
    and ``ValueError`` for one that is merely damaged.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("file shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise Hostile(f"the header declares {n} bytes, the file has {size - 8} (a VGG header takes ~4 KB)")
        text = f.read(n)
    try:
        header = json.loads(text)
    except RecursionError:
        raise Hostile("a header nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("__metadata__ is not a map of strings")
    if len(header) > MAX_TENSORS:
        raise Hostile(f"{len(header)} tensors (a VGG has under 100)")
    data_size, spans, total = size - 8 - n, [], 0
    for name, e in header.items():
        what = f"tensor {name[:60]!r}"
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= set(e):
            raise ValueError(f"{what} lacks dtype, shape or data_offsets")
        if e["dtype"] not in SAFETENSORS_ITEMSIZE:
            raise Hostile(f"{what} has dtype {str(e['dtype'])[:20]!r}; VGG weights are F32 (or F16/F64)")
        shape, offsets = e["shape"], e["data_offsets"]
        if not isinstance(shape, list) or len(shape) > MAX_NDIM:
            raise Hostile(f"{what} has a malformed shape")
        numel = 1
        for d in shape:
            numel *= check_int(d, f"a dimension of {what}")
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise Hostile(f"{what} has malformed data offsets")
        begin, end = (check_int(o, f"an offset of {what}") for o in offsets)
        if not begin <= end <= data_size:
            raise Hostile(f"{what} lies at bytes {begin}..{end} of a data section of {data_size}")
        if end - begin != numel * SAFETENSORS_ITEMSIZE[e["dtype"]]:
            raise Hostile(f"{what} has shape {shape[:8]} but {end - begin} bytes of data")
        spans.append((begin, end))
        total += end - begin
    spans.sort()
    for (_, end), (begin, _) in zip(spans, spans[1:]):
        if begin < end:
            raise Hostile("two tensors share bytes of the data section")
    if total > MAX_TOTAL_BYTES:
        raise Hostile(f"{total / 1e6:.0f} MB of tensors, more than the largest VGG ({LARGEST_VGG_BYTES / 1e6:.0f} MB)")
    return meta, header
