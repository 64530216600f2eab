"""Weights files on disk: the one atomic safetensors writer and the one file digest."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


def write_safetensors(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    """``arrays`` with ``meta`` at ``path`` through a temporary file in the same folder and
    ``os.replace``: a failure (or Ctrl-C) leaves nothing, never a partial file."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path) -> str:
    """The full sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["sha256_file", "write_safetensors"]
