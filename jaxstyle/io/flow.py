"""Optical flow between content frames (OpenCV DIS), Ruder's reliability masks, a disk cache.

Host-side numpy, like every other reader at the edge of the program: the flow is computed
once per frame pair on the *content* frames (never on the stylized ones) and handed to the
compiled step as data.

Conventions (OpenCV's): a flow is H×W×2 float32 ``(dx, dy)``. ``flow(a, b)`` maps frame
``a`` onto ``b``: ``a[p] ≈ b[p + flow(a, b)[p]]``. So the *backward* flow of frame t,
``flow(I_t, I_{t-1})``, pulls the previous frame into the current one with
:func:`jaxstyle.objective.temporal.warp`.

Deviation from Ruder et al.: they used DeepFlow / EpicFlow (external binaries); this uses
OpenCV's DIS optical flow (Kroeger et al. 2016, preset MEDIUM) on grey frames, which installs
from the package index and runs at video rate on a CPU. The reliability test is theirs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import numpy as np

from jaxstyle.errors import UserError

# Bump when the flow or the masks change, so old cache entries are never read.
CACHE_VERSION = "dis-medium-1"


def _cv2():
    try:
        import cv2
    except ImportError:
        raise UserError("video needs OpenCV and PyAV: pip install 'jaxstyle[video]'") from None
    return cv2


def _grey(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame)
    if f.dtype != np.uint8:
        f = (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    # ITU-R BT.601 luma, as cv2.cvtColor(RGB2GRAY) computes it.
    return _cv2().cvtColor(np.ascontiguousarray(f), _cv2().COLOR_RGB2GRAY)


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow mapping frame ``a`` onto frame ``b`` (H×W×3 uint8 or float [0,1] RGB)."""
    cv2 = _cv2()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(_grey(a), _grey(b), None)
    return np.asarray(flow, np.float32)


def _sample(field: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``field`` bilinearly sampled at ``p + flow[p]`` (border replicated), numpy."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(field, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def reliability(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder's per-pixel weight c (H×W×1 float32, 0 or 1) for warping frame t−1 into t.

    ``forward`` = flow(I_{t−1}, I_t), ``backward`` = ŵ = flow(I_t, I_{t−1}). With
    w̃(p) = forward(p + ŵ(p)), a pixel of frame t is unreliable (c = 0) where

    - the flows disagree (disocclusion): |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5;
    - it lies on a motion boundary: |∇ŵ|² > 0.01 |ŵ|² + 0.002 (|∇ŵ|² = |∇û|² + |∇v̂|²,
      central differences);
    - it comes from outside frame t−1 (p + ŵ(p) off the image). Not in Ruder's test: their
      warping has no data there either, so nothing reliable could be asked of it.
    """
    h, w = backward.shape[:2]
    wt = _sample(forward, backward)
    s = wt + backward
    occluded = (s * s).sum(-1) > 0.01 * ((wt * wt).sum(-1) + (backward * backward).sum(-1)) + 0.5
    grad2 = np.zeros((h, w), np.float32)
    for c in range(2):
        gy, gx = np.gradient(backward[..., c].astype(np.float64))
        grad2 += (gx * gx + gy * gy).astype(np.float32)
    boundary = grad2 > 0.01 * (backward * backward).sum(-1) + 0.002
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    tx, ty = xs + backward[..., 0], ys + backward[..., 1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return (~(occluded | boundary | outside)).astype(np.float32)[..., None]


def frame_key(frame: np.ndarray) -> str:
    f = np.ascontiguousarray(frame)
    return hashlib.sha256(str((f.shape, f.dtype.str)).encode() + f.tobytes()).hexdigest()[:20]


class FlowCache:
    """Backward flow and reliability of frame pairs, one ``.npz`` per pair, in ``folder``.

    Entries are named by a hash of the two frames' pixels (and :data:`CACHE_VERSION`), so a
    changed frame, size or method never reads a stale flow; a torn or corrupt entry (a run
    killed mid-write cannot leave one: writes are atomic) is recomputed.
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None

    def pair(self, current: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(backward flow H×W×2, reliability H×W×1) for warping ``previous`` into ``current``."""
        path = None
        if self.folder is not None:
            path = self.folder / f"{frame_key(current)}-{frame_key(previous)}-{CACHE_VERSION}.npz"
            try:
                with np.load(path) as z:
                    return z["backward"], z["reliable"]
            except (OSError, ValueError, KeyError, EOFError):
                pass  # absent or unreadable: compute it again
        backward = optical_flow(current, previous)
        forward = optical_flow(previous, current)
        reliable = reliability(forward, backward)
        if path is not None:
            _save_npz(path, backward=backward, reliable=reliable)
        return backward, reliable


def _save_npz(path: Path, **arrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


__all__ = ["CACHE_VERSION", "FlowCache", "frame_key", "optical_flow", "reliability"]
