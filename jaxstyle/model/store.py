"""Writing safetensors files atomically: the one writer every weights file goes through."""

from __future__ import annotations

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


__all__ = ["write_safetensors"]
