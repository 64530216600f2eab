"""Read PyTorch ``.pth``/``.pt`` weight files into numpy without running code in them.

A ``.pth`` file is a pickle, and unpickling can call any function the file names. So we
never use plain ``pickle.load``/``torch.load`` on it:

- with torch installed, ``torch.load(..., weights_only=True)`` (torch's own allow-list);
- without torch, :class:`RestrictedUnpickler`, whose ``find_class`` hands out only the few
  callables a state dict needs (tensor rebuild functions, ``OrderedDict``, storage types),
  all of them our own numpy stand-ins. Both torch formats are read: the zip format (torch
  >= 1.6) and the older single-stream "legacy" format that the 2017 VGG files use.

Anything else named by the pickle is refused with a ``UserError`` before it is called.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import tarfile
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxstyle.errors import UserError

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


class _Refused(pickle.UnpicklingError):
    """The pickle names a global that is not on the allow-list."""

    def __init__(self, qualname: str):
        super().__init__(qualname)
        self.qualname = qualname


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only its name is used, it is not callable."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """A flat buffer of one dtype; legacy files fill ``data`` after the main pickle."""

    __slots__ = ("kind", "numel", "data")

    def __init__(self, kind: str, numel: int, data: np.ndarray | None = None):
        self.kind, self.numel, self.data = kind, numel, data

    def array(self) -> np.ndarray:
        if self.data is None:
            raise pickle.UnpicklingError("a tensor refers to storage that the file never stores")
        return self.data


class _StorageView:
    __slots__ = ("root", "offset", "numel")

    def __init__(self, root: _Storage, offset: int, numel: int):
        self.root, self.offset, self.numel = root, offset, numel

    @property
    def kind(self) -> str:
        return self.root.kind

    def array(self) -> np.ndarray:
        return self.root.array()[self.offset : self.offset + self.numel]


class _LazyTensor:
    """What the rebuild functions return; turned into a numpy array once storages are read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, (_Storage, _StorageView)):
            raise pickle.UnpicklingError("tensor without a storage")
        for v in (offset, *size, *stride):
            if type(v) is not int or v < 0:
                raise pickle.UnpicklingError("tensor with a malformed size, stride or offset")
        if len(size) != len(stride):
            raise pickle.UnpicklingError("tensor with a malformed size, stride or offset")
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        base = self.storage.array()
        if int(np.prod(self.size)) == 0:
            out = np.zeros(self.size, base.dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= base.size:
                raise pickle.UnpicklingError("tensor reaches past the end of its storage")
            view = np.lib.stride_tricks.as_strided(
                base[self.offset :], self.size, [s * base.itemsize for s in self.stride], writeable=False
            )
            out = np.array(view)
        if self.storage.kind == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out.astype(out.dtype.newbyteorder("="), copy=False)


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
    "collections.OrderedDict": OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain state dicts only; every other global is refused before it is called."""

    def __init__(self, file, persistent: Callable | None = None):
        super().__init__(file, encoding="latin1")
        self._persistent = persistent

    def find_class(self, module: str, name: str):
        qualname = f"{module}.{name}"
        if qualname in _ALLOWED:
            return _ALLOWED[qualname]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(qualname)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent(pid)


def _storage_type_name(storage_type) -> str:
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError("storage of unknown type")
    return storage_type.name


def _dtype(kind: str, big_endian: bool = False) -> np.dtype:
    return np.dtype(("<", ">")[big_endian] + _STORAGE_DTYPES[kind])


def _load_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        pkl = sorted(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
        if not pkl:
            raise pickle.UnpicklingError("zip file without data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        big = prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big"
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                raise pickle.UnpicklingError("unexpected persistent id")
            _, storage_type, key, _location, numel = pid
            kind = _storage_type_name(storage_type)
            key = key.decode("ascii") if isinstance(key, bytes) else str(key)
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise pickle.UnpicklingError(f"missing storage record {record}")
                dtype = _dtype(kind, big)
                raw = zf.read(record)
                if type(numel) is not int or len(raw) < numel * dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage record {record} is truncated")
                storages[key] = _Storage(kind, numel, np.frombuffer(raw, dtype, count=numel))
            return storages[key]

        return RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), persistent).load()


def _load_legacy(path: Path) -> object:
    with open(path, "rb") as f:
        if RestrictedUnpickler(f).load() != LEGACY_MAGIC:
            raise pickle.UnpicklingError("not a PyTorch file (bad magic number)")
        if RestrictedUnpickler(f).load() != LEGACY_PROTOCOL:
            raise pickle.UnpicklingError("unsupported PyTorch legacy protocol version")
        RestrictedUnpickler(f).load()  # sys info: endianness, type sizes
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage")):
                raise pickle.UnpicklingError("unexpected persistent id")
            _, storage_type, root_key, _location, numel, view = pid
            kind = _storage_type_name(storage_type)
            if type(numel) is not int or numel < 0:
                raise pickle.UnpicklingError("malformed storage size")
            root = storages.setdefault(str(root_key), _Storage(kind, numel))
            if view is None:
                return root
            _view_key, offset, view_numel = view
            if type(offset) is not int or type(view_numel) is not int or offset + view_numel > root.numel:
                raise pickle.UnpicklingError("malformed storage view")
            return _StorageView(root, offset, view_numel)

        result = RestrictedUnpickler(f, persistent).load()
        keys = RestrictedUnpickler(f).load()
        if not isinstance(keys, list):
            raise pickle.UnpicklingError("malformed storage list")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise pickle.UnpicklingError("storage list names an unknown storage")
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = _dtype(storage.kind)
            raw = f.read(numel * dtype.itemsize)
            if numel != storage.numel or len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError("file is truncated")
            storage.data = np.frombuffer(raw, dtype)
    return result


def _materialize(obj):
    if isinstance(obj, _LazyTensor):
        return obj.array()
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def load_without_torch(path: str | Path) -> object:
    """The pickled object of a torch file, tensors as numpy arrays; never runs the file's code."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            obj = _load_zip(path)
        elif tarfile.is_tarfile(path):
            raise UserError(
                f"{path} uses PyTorch's pre-2018 tar format, which jaxstyle cannot read without torch; "
                "install torch and retry, or re-save it with a recent torch"
            )
        else:
            obj = _load_legacy(path)
        return _materialize(obj)
    except _Refused as e:
        raise UserError(_refusal(path, e.qualname)) from None
    except UserError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, zipfile.BadZipFile, OverflowError, MemoryError) as e:
        raise UserError(f"cannot read {path} as a PyTorch weights file ({_short(e)}); is the file complete?") from None


def _refusal(path: Path, what: str) -> str:
    return (
        f"{path} contains code or objects other than tensors ({what}); refusing to unpickle it. "
        "Only plain state dicts (name -> tensor) are read; never load weights from an untrusted pickle"
    )


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def load_with_torch(path: str | Path) -> object:
    """``torch.load(weights_only=True)`` with tensors turned into numpy arrays."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise UserError(_refusal(path, found.group(1) if found else "rejected by torch's weights_only loader")) from None
    except Exception as e:  # torch raises many types for a damaged file
        raise UserError(f"cannot read {path} as a PyTorch weights file ({_short(e)}); is the file complete?") from None

    def to_numpy(x):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            if x.dtype == torch.bfloat16:
                x = x.float()
            return x.numpy().copy()
        if isinstance(x, dict):
            return {k: to_numpy(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(to_numpy(v) for v in x)
        return x

    return to_numpy(obj)


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
    arrays = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise UserError(f"{path} holds no tensors; is it a VGG weights file?")
    return arrays
