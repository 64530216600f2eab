"""Read PyTorch ``.pth``/``.pt`` weight files into numpy without running code in them.

A ``.pth`` file is a pickle, and unpickling can call any function the file names; a pickle
that calls only harmless functions can still point a tensor outside its buffer or ask for
gigabytes. So every file first goes through :func:`_open`, which reads it without torch:

1. each pickle in it is scanned opcode by opcode (at most 1 MiB; no object-building opcodes,
   only allow-listed globals) before it is unpickled;
2. :class:`RestrictedUnpickler` hands out only the few callables a state dict needs, all our
   own numpy stand-ins; rebuilding a tensor records it lazily, and ``BUILD``/``__setstate__``
   on a stand-in is refused (it could rewrite a checked offset or stride);
3. the object graph is walked once (shared sub-objects once, at most 32 levels deep): every
   tensor's size, stride and offset are checked against its storage and every byte it will
   allocate is charged to the file's budget (:mod:`jaxstyle.model.limits`); zip records are
   size-checked from their headers before anything is decompressed.

Then, without torch, the storages are read and the tensors materialised (checked once more,
from the stand-in's state at that moment); with torch, ``torch.load(weights_only=True)``
reads the already-vetted file and its tensors are checked again on the way to numpy. Both
paths therefore refuse the same files with the same one-line ``UserError``.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import struct
import tarfile
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxstyle.errors import UserError
from jaxstyle.model import limits
from jaxstyle.model.limits import Budget, Hostile, check_int, view_nbytes

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage type -> numpy dtype of its elements (little-endian on disk).
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",  # numpy has no bfloat16: read the bits, widen later
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

# What a state dict pickle is made of: the opcodes torch's weights_only unpickler reads, less
# NEWOBJ and EMPTY_SET (no state dict needs them), so both paths refuse the same pickles.
_OPCODES = frozenset("""
    PROTO STOP MARK NONE NEWFALSE NEWTRUE BININT BININT1 BININT2 LONG1 BINFLOAT SHORT_BINSTRING BINUNICODE
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND APPENDS EMPTY_DICT SETITEM SETITEMS
    GLOBAL REDUCE BUILD BINPERSID BINPUT LONG_BINPUT BINGET LONG_BINGET
""".split())
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


class _Refused(pickle.UnpicklingError):
    """The pickle names a global (or an opcode) that is not on the allow-list."""

    def __init__(self, qualname: str):
        super().__init__(qualname)
        self.qualname = qualname


class _Frozen:
    """Stand-ins are set once by their constructor; a pickle ``BUILD`` on them is refused."""

    __slots__ = ()

    def __setstate__(self, state):
        raise Hostile("the pickle rewrites a tensor or storage after building it (BUILD)")

    def __setattr__(self, name, value):
        raise Hostile("the pickle rewrites a tensor or storage after building it")


class _StorageType(_Frozen):
    """Stand-in for ``torch.FloatStorage`` & co.: only its name is used, it is not callable."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)


class _Storage:
    """A flat buffer of one dtype; ``data`` is filled only after every tensor was checked."""

    __slots__ = ("kind", "numel", "big", "data")

    def __init__(self, kind: str, numel: int, big: bool = False):
        self.kind, self.numel, self.big, self.data = kind, numel, big, None

    def __setstate__(self, state):
        raise Hostile("the pickle rewrites a storage after building it (BUILD)")

    @property
    def root(self) -> _Storage:
        return self

    @property
    def offset(self) -> int:
        return 0

    def array(self) -> np.ndarray:
        data = self.data
        if data is None:
            raise pickle.UnpicklingError("a tensor refers to storage that the file never stores")
        if not (isinstance(data, np.ndarray) and data.ndim == 1 and data.size == self.numel
                and data.dtype == _dtype(self.kind, self.big)):
            raise Hostile("a storage does not hold what its header declares")
        return data


class _StorageView(_Frozen):
    """A slice of a legacy-format root storage."""

    __slots__ = ("root", "offset", "numel")

    def __init__(self, root: _Storage, offset: int, numel: int):
        if check_int(offset, "a storage view offset") + check_int(numel, "a storage view size") > root.numel:
            raise Hostile("a storage view reaches past its storage")
        for k, v in (("root", root), ("offset", offset), ("numel", numel)):
            object.__setattr__(self, k, v)

    @property
    def kind(self) -> str:
        return self.root.kind

    def array(self) -> np.ndarray:
        if self.offset + self.numel > self.root.numel:
            raise Hostile("a storage view reaches past its storage")
        return self.root.array()[self.offset : self.offset + self.numel]


class _LazyTensor(_Frozen):
    """What the rebuild functions return; checked when built, when vetted and when materialised."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, (_Storage, _StorageView)):
            raise pickle.UnpicklingError("tensor without a storage")
        view_nbytes(size, stride, offset, storage.numel, 1)  # cheap early refusal; re-checked later
        for k, v in (("storage", storage), ("offset", offset), ("size", tuple(size)), ("stride", tuple(stride))):
            object.__setattr__(self, k, v)

    def _layout(self) -> tuple[int, bool]:
        """(bytes a copy would take, whether a copy is needed), from the state right now."""
        st = self.storage
        if not isinstance(st, (_Storage, _StorageView)) or st.kind not in _STORAGE_DTYPES:
            raise Hostile("a tensor's storage was replaced")
        item = np.dtype(_STORAGE_DTYPES[st.kind]).itemsize
        nbytes = view_nbytes(self.size, self.stride, self.offset, st.numel, item)
        contiguous = self.stride == _contiguous_strides(self.size)
        widen = st.kind == "BFloat16Storage"
        copy = widen or st.root.big or not contiguous
        return nbytes * (2 if widen else 1), copy

    def vet(self, budget: Budget) -> None:
        nbytes, copy = self._layout()
        if copy:
            budget.charge(nbytes, "a tensor copy")

    def array(self) -> np.ndarray:
        _, copy = self._layout()  # validated again against the storage as it is now
        base = self.storage.array()
        numel = int(np.prod(self.size, dtype=object))
        if numel == 0:
            out = np.zeros(self.size, base.dtype)
        elif not copy:
            out = base[self.offset : self.offset + numel].reshape(self.size)
        else:
            view = np.lib.stride_tricks.as_strided(
                base[self.offset :], self.size, [s * base.itemsize for s in self.stride], writeable=False
            )
            out = np.array(view)
        if self.storage.kind == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out.astype(out.dtype.newbyteorder("="), copy=False)


def _contiguous_strides(size) -> tuple[int, ...]:
    out, step = [], 1
    for n in reversed(size):
        out.append(step)
        step *= max(n, 1)
    return tuple(reversed(out))


class _StateDict(OrderedDict):
    """``collections.OrderedDict`` as pickles use it: built empty, filled by SETITEMS."""

    def __setstate__(self, state):
        # torch's state dicts carry one attribute, ``_metadata``; anything big is an amplifier.
        if not isinstance(state, dict) or len(state) > 8 or not all(isinstance(k, str) for k in state):
            raise Hostile("an OrderedDict with unexpected attributes")
        self.__dict__.update(state)


def _ordered_dict(*args):
    if args and not (len(args) == 1 and isinstance(args[0], (list, tuple)) and not args[0]):
        raise Hostile("an OrderedDict built from arguments (a state dict pickle builds it empty)")
    return _StateDict()


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _LazyTensor):
        raise pickle.UnpicklingError("parameter without a tensor")
    return data


_ALLOWED: dict[str, Callable] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "collections.OrderedDict": _ordered_dict,
}


def _allowed(module: str, name: str) -> bool:
    return f"{module}.{name}" in _ALLOWED or (module == "torch" and name in _STORAGE_DTYPES)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain state dicts only; every other global is refused before it is called."""

    def __init__(self, file, persistent: Callable | None = None):
        super().__init__(file, encoding="latin1")
        self._persistent = persistent

    def find_class(self, module: str, name: str):
        if not _allowed(module, name):
            raise _Refused(f"{module}.{name}")
        qualname = f"{module}.{name}"
        return _ALLOWED[qualname] if qualname in _ALLOWED else _StorageType(name)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent(pid)


def _scan(f) -> int:
    """Check the pickle starting at ``f``'s position opcode by opcode; its length in bytes."""
    start = f.tell()
    for op, arg, pos in pickletools.genops(f):
        if pos - start > limits.MAX_PICKLE_BYTES:
            raise Hostile(f"a pickle longer than {limits.MAX_PICKLE_BYTES >> 20} MiB (a state dict takes a few KB)")
        if op.name not in _OPCODES:
            raise _Refused(f"pickle opcode {op.name}")
        if op.name == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            if not _allowed(module, name):
                raise _Refused(f"{module}.{name}")
    return f.tell() - start


def _unpickle(data: bytes, persistent=None):
    _scan(io.BytesIO(data))
    return RestrictedUnpickler(io.BytesIO(data), persistent).load()


def _storage_type_name(storage_type) -> str:
    if not isinstance(storage_type, _StorageType) or storage_type.name not in _STORAGE_DTYPES:
        raise pickle.UnpicklingError("storage of unknown type")
    return storage_type.name


def _dtype(kind: str, big_endian: bool = False) -> np.dtype:
    return np.dtype(("<", ">")[big_endian] + _STORAGE_DTYPES[kind])


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, nbytes: int) -> bytes:
    """``nbytes`` from a record whose header was checked; decompression stops there."""
    with zf.open(info) as f:
        raw = f.read(nbytes)
    if len(raw) != nbytes:
        raise pickle.UnpicklingError(f"record {info.filename} is truncated")
    return raw


def _open_zip(path: Path, budget: Budget, read: bool):
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkl = sorted(n for n in infos if n == "data.pkl" or n.endswith("/data.pkl"))
        if not pkl:
            raise pickle.UnpicklingError("zip file without data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        for info in infos.values():
            if info.compress_type not in _ZIP_METHODS:
                raise Hostile(f"zip record {info.filename[:80]} uses compression method {info.compress_type}")
        head = infos[pkl[0]]
        if head.file_size > limits.MAX_PICKLE_BYTES:
            raise Hostile(f"data.pkl declares {head.file_size} bytes (a state dict takes a few KB)")
        order = infos.get(prefix + "byteorder")
        big = order is not None and order.file_size < 16 and zf.read(order).strip() == b"big"
        storages: dict[str, tuple[_Storage, zipfile.ZipInfo]] = {}

        def persistent(pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                raise pickle.UnpicklingError("unexpected persistent id")
            _, storage_type, key, _location, numel = pid
            kind = _storage_type_name(storage_type)
            key = key.decode("ascii") if isinstance(key, bytes) else key
            if not isinstance(key, str):
                raise pickle.UnpicklingError("malformed storage key")
            numel = check_int(numel, "a storage size")
            if key in storages:
                storage = storages[key][0]
                if (storage.kind, storage.numel) != (kind, numel):
                    raise Hostile("one storage record declared with two types or sizes")
                return storage
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise pickle.UnpicklingError(f"missing storage record data/{key[:40]}")
            nbytes = numel * _dtype(kind).itemsize
            if info.file_size < nbytes:  # from the record's header: nothing decompressed yet
                raise pickle.UnpicklingError(f"storage record data/{key[:40]} is truncated")
            budget.charge(nbytes, f"storage record data/{key[:40]}")
            storages[key] = (_Storage(kind, numel, big), info)
            return storages[key][0]

        obj = _unpickle(_read_zip_member(zf, head, head.file_size), persistent)
        obj = _walk(obj, lambda t: t.vet(budget))
        if read:
            for storage, info in storages.values():
                raw = _read_zip_member(zf, info, storage.numel * _dtype(storage.kind).itemsize)
                storage.data = np.frombuffer(raw, _dtype(storage.kind, big))
    return obj


def _next_pickle(f) -> bytes:
    """The next pickle of a legacy file, scanned; reads at most 1 MiB whatever the file says."""
    start = f.tell()
    buf = f.read(limits.MAX_PICKLE_BYTES + 1)
    try:
        length = _scan(io.BytesIO(buf))
    except Hostile:
        raise
    except ValueError:
        if len(buf) > limits.MAX_PICKLE_BYTES:
            raise Hostile(f"a pickle longer than {limits.MAX_PICKLE_BYTES >> 20} MiB (a state dict takes a few KB)") from None
        raise
    f.seek(start + length)
    return buf[:length]


def _open_legacy(path: Path, budget: Budget, read: bool):
    size = path.stat().st_size
    with open(path, "rb") as f:
        if _unpickle(_next_pickle(f)) != LEGACY_MAGIC:
            raise pickle.UnpicklingError("not a PyTorch file (bad magic number)")
        if _unpickle(_next_pickle(f)) != LEGACY_PROTOCOL:
            raise pickle.UnpicklingError("unsupported PyTorch legacy protocol version")
        _unpickle(_next_pickle(f))  # sys info: endianness, type sizes
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage")):
                raise pickle.UnpicklingError("unexpected persistent id")
            _, storage_type, root_key, _location, numel, view = pid
            kind = _storage_type_name(storage_type)
            numel = check_int(numel, "a storage size")
            if not isinstance(root_key, (str, int)):
                raise pickle.UnpicklingError("malformed storage key")
            root = storages.setdefault(str(root_key), _Storage(kind, numel))
            if (root.kind, root.numel) != (kind, numel):
                raise Hostile("one storage declared with two types or sizes")
            if view is None:
                return root
            if not (isinstance(view, tuple) and len(view) == 3):
                raise pickle.UnpicklingError("malformed storage view")
            return _StorageView(root, view[1], view[2])

        obj = _unpickle(_next_pickle(f), persistent)
        obj = _walk(obj, lambda t: t.vet(budget))
        keys = _unpickle(_next_pickle(f))
        if not isinstance(keys, list) or len(keys) > limits.MAX_TENSORS:
            raise pickle.UnpicklingError("malformed storage list")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise pickle.UnpicklingError("storage list names an unknown storage")
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * _dtype(storage.kind).itemsize
            if numel != storage.numel or nbytes > size - f.tell():  # checked before reading a byte
                raise pickle.UnpicklingError("file is truncated")
            if storage.data is not None:
                raise Hostile("a storage stored twice")
            budget.charge(nbytes, "a storage")
            if read:
                storage.data = np.frombuffer(f.read(nbytes), _dtype(storage.kind))
            else:
                f.seek(nbytes, io.SEEK_CUR)
                storage.data = np.empty(0)  # marks it present; never materialised
    return obj


def _walk(obj, leaf, leaf_type=None):
    """``obj`` with each tensor replaced by ``leaf(tensor)``; shared parts visited once, depth bounded."""
    leaf_type = leaf_type or _LazyTensor
    memo: dict[int, object] = {}
    count = 0

    def go(x, depth):
        nonlocal count
        key = id(x)
        if key in memo:
            return memo[key]
        count += 1
        if depth > limits.MAX_DEPTH:
            raise Hostile(f"objects nested more than {limits.MAX_DEPTH} levels deep (a state dict nests 1-3)")
        if count > limits.MAX_NODES:
            raise Hostile(f"more than {limits.MAX_NODES} objects")
        if isinstance(x, leaf_type):
            out = leaf(x)
            out = x if out is None else out
        elif isinstance(x, dict):
            out = {k: go(v, depth + 1) for k, v in x.items()}
        elif isinstance(x, list):
            out = [go(v, depth + 1) for v in x]
        elif isinstance(x, tuple):
            out = tuple(go(v, depth + 1) for v in x)
        else:
            out = x
        memo[key] = out
        return out

    return go(obj, 0)


def _open(path: Path, *, read: bool):
    """The file's object, checked; with ``read`` its tensors as numpy arrays, else not read."""
    budget = Budget(limits.budget_for(path.stat().st_size))
    if zipfile.is_zipfile(path):
        obj = _open_zip(path, budget, read)
    elif tarfile.is_tarfile(path):
        raise UserError(
            f"{path} uses PyTorch's pre-2018 tar format, which jaxstyle does not read (its sizes cannot be checked "
            "before they are allocated); re-save it with a recent torch: torch.save(torch.load(f), new)"
        )
    else:
        obj = _open_legacy(path, budget, read)
    return _walk(obj, _LazyTensor.array) if read else obj


# Everything a damaged or hostile file can raise while parsed; each becomes one line.
_DAMAGE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
           struct.error, zipfile.BadZipFile, zlib.error, OverflowError, MemoryError, RecursionError,
           NotImplementedError, RuntimeError, OSError)


def _guarded(path: Path, fn):
    try:
        return fn()
    except _Refused as e:
        raise UserError(_refusal(path, e.qualname)) from None
    except Hostile as e:
        raise limits.refuse(path, e) from None
    except UserError:
        raise
    except _DAMAGE as e:
        raise UserError(f"cannot read {path} as a PyTorch weights file ({short_reason(e)}); is the file complete?") from None


def load_without_torch(path: str | Path) -> object:
    """The pickled object of a torch file, tensors as numpy arrays; never runs the file's code."""
    path = Path(path)
    return _guarded(path, lambda: _open(path, read=True))


def _refusal(path: Path, what: str) -> str:
    return (
        f"{path} contains code or objects other than tensors ({what}); refusing to unpickle it. "
        "Only plain state dicts (name -> tensor) are read; never load weights from an untrusted pickle"
    )


def short_reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def load_with_torch(path: str | Path) -> object:
    """``torch.load(weights_only=True)`` of a file :func:`_open` vetted, tensors turned into numpy arrays."""
    import torch

    path = Path(path)
    _guarded(path, lambda: _open(path, read=False))  # the same refusals as without torch
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise UserError(_refusal(path, found.group(1) if found else "rejected by torch's weights_only loader")) from None
    except Exception as e:  # torch raises many types for a damaged file
        raise UserError(f"cannot read {path} as a PyTorch weights file ({short_reason(e)}); is the file complete?") from None
    budget = Budget(limits.budget_for(path.stat().st_size))

    def to_numpy(x):
        x = x.detach()
        item = x.element_size()
        numel_storage = x.untyped_storage().nbytes() // max(item, 1)
        nbytes = view_nbytes(tuple(x.shape), tuple(x.stride()), x.storage_offset(), numel_storage, item)
        if x.dtype == torch.bfloat16:
            budget.charge(2 * nbytes, "a tensor copy")
            return x.float().numpy()
        if not x.is_contiguous():
            budget.charge(nbytes, "a tensor copy")
            x = x.contiguous()
        return x.numpy()

    return _guarded(path, lambda: _walk(obj, to_numpy, torch.Tensor))


def read_state_dict(path: str | Path, *, use_torch: bool | None = None) -> dict[str, np.ndarray]:
    """The ``name -> array`` state dict in a ``.pth`` (a ``{"state_dict": ...}`` wrapper is opened).

    ``use_torch``: None uses torch when importable; False forces the torch-free reader.
    """
    path = Path(path)
    if use_torch is None:
        use_torch = _torch_available()
    obj = load_with_torch(path) if use_torch else load_without_torch(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(
            f"{path} holds a {type(obj).__name__}, not a state dict of named tensors; "
            "save model.state_dict() instead of the model"
        )
    arrays = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, np.ndarray)}
    if not arrays:
        raise UserError(f"{path} holds no tensors; is it a VGG weights file?")
    return arrays
