"""Host-side image I/O: reading, resizing and writing pictures as numpy arrays.

This is the edge of the program, so it is plain numpy + Pillow (no JAX): everything
the user hands us is turned into a predictable ``uint8`` sRGB ``(H, W, 3)`` array,
and every problem they can fix (wrong path, broken file, unwritable output) becomes
a one-line :class:`~jaxstyle.errors.UserError` that names the file.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import warnings
import zlib
from collections.abc import Sequence, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError, features
from PIL.PngImagePlugin import PngInfo

try:  # Pillow can be built without LittleCMS; then embedded profiles are ignored.
    from PIL import ImageCms
except ImportError:  # pragma: no cover - depends on the Pillow build
    ImageCms = None  # type: ignore[assignment]

from jaxstyle.errors import UserError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_OUTPUT_SUFFIXES",
    "check_output_path",
    "load_image",
    "resize_long_side",
    "resize_to",
    "save_image",
    "to_float",
    "to_uint8",
]

# 100 megapixels: far above anything style transfer can use, far below a bomb.
# Pillow refuses on its own above 2 * Image.MAX_IMAGE_PIXELS (~179 MP by default),
# so a larger max_pixels cannot lift the limit past that.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "JAXSTYLE_MAX_PIXELS"  # raises (or lowers) the default limit


def max_pixels_default() -> int:
    """The pixel limit: ``$JAXSTYLE_MAX_PIXELS`` when set, else :data:`DEFAULT_MAX_PIXELS`."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise UserError(f"${MAX_PIXELS_ENV}={value!r} is not a whole number of pixels") from None
    if limit < 1:
        raise UserError(f"${MAX_PIXELS_ENV} must be >= 1, got {limit}")
    return limit

_SAVE_OPTIONS: dict[str, tuple[str, dict]] = {
    ".png": ("PNG", {}),
    # 4:4:4 because chroma subsampling smears the fine colour texture we just made.
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"quality": 95}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
}
SUPPORTED_OUTPUT_SUFFIXES: tuple[str, ...] = tuple(_SAVE_OPTIONS)

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# Everything Pillow raises for a file whose bytes are not a valid image: truncated
# data is OSError, broken PNG chunks are SyntaxError, bad zlib streams zlib.error.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error)
_EXIF_ImageDescription = 0x010E


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _name(path: os.PathLike | str) -> str:
    # A path may itself contain a newline; repr keeps the message on one line.
    s = os.fspath(path)
    return repr(s) if any(c in s for c in "\n\r") else s


# ----------------------------------------------------------------------------- load


def load_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read any image Pillow understands as a ``uint8`` sRGB array of shape (H, W, 3).

    - EXIF orientation is applied, so the array is upright as a viewer shows it.
    - An embedded ICC profile is converted to sRGB; a broken profile is ignored.
    - Transparency (RGBA, LA, PA, palette transparency) is composited onto a WHITE
      background, as most viewers show it on a page.
    - Grayscale, 1-bit, 16-bit and float images are scaled to 8 bits (16-bit values
      are divided by 257 and rounded; float images in [0, 1] are scaled by 255).
    - Animated images (GIF, APNG, WebP): the first frame is used.
    - Images over ``max_pixels`` pixels are refused before they are decoded.

    Raises:
        UserError: a one-line message naming the file, for a missing file, a
            directory, an empty, unreadable, corrupt, truncated or too large image.
    """
    p = Path(path)
    name = _name(p)
    if not p.exists():
        raise UserError(f"{name}: no such file; check the path and spelling")
    if p.is_dir():
        raise UserError(f"{name}: is a directory, not an image; give the path of an image file")
    try:
        if p.stat().st_size == 0:
            raise UserError(f"{name}: the file is empty (0 bytes); give a real image file")
        with warnings.catch_warnings():
            # We enforce our own limit below; Pillow's softer warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                limit = max_pixels_default() if max_pixels is None else max_pixels
                if w * h > limit:
                    raise UserError(
                        f"{name}: {w}x{h} = {w * h} pixels is over the limit of {limit};"
                        f" shrink the image first or raise ${MAX_PIXELS_ENV}"
                    )
                im.seek(0)
                im.load()
                return _to_srgb_array(im)
    except UserError:
        raise
    except PermissionError:
        raise UserError(f"{name}: permission denied; make the file readable or copy it elsewhere") from None
    except Image.DecompressionBombError as e:
        raise UserError(f"{name}: image is too large ({_one_line(e)}); shrink it first") from None
    except UnidentifiedImageError:
        raise UserError(f"{name}: not an image format Pillow can read; convert it to PNG or JPEG") from None
    except _DECODE_ERRORS as e:
        raise UserError(
            f"{name}: the image is corrupt or truncated ({_one_line(e)}); re-export or re-download it"
        ) from None


def _to_srgb_array(im: Image.Image) -> np.ndarray:
    icc = im.info.get("icc_profile")
    im = _exif_upright(im)
    im = _normalise_mode(im)  # now L, LA, RGB, RGBA or CMYK, all 8-bit

    alpha = None
    if im.mode in ("LA", "RGBA"):
        alpha = im.getchannel("A")
        im = im.convert(im.mode[:-1])
    rgb = _apply_icc(im, icc) if icc else None
    if rgb is None:
        rgb = im.convert("RGB")
    out = np.asarray(rgb, dtype=np.uint8)
    if alpha is not None:
        out = _over_white(out, np.asarray(alpha, dtype=np.uint8))
    return np.ascontiguousarray(out)


def _exif_upright(im: Image.Image) -> Image.Image:
    try:
        # Checked first because exif_transpose copies even an upright image.
        if im.getexif().get(ExifTags.Base.Orientation, 1) in (0, 1):
            return im
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a good image unreadable
        return im


def _normalise_mode(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I (PNG/TIFF 16-bit gray)
        # Pillow's own I->L conversion clips at 255 instead of scaling.
        a = np.asarray(im).astype(np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        # Float images are conventionally [0, 1]; some tools write [0, 255] instead.
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("RGBa", "RGBX"):
        return im.convert("RGBA" if mode == "RGBa" else "RGB")
    if mode == "La":
        return im.convert("LA")
    if mode == "LAB" and ImageCms is not None:
        lab = ImageCms.createProfile("LAB")
        return ImageCms.profileToProfile(im, lab, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return im.convert("RGB")  # YCbCr, HSV, ...; raises ValueError for the unconvertible


def _apply_icc(im: Image.Image, icc: bytes) -> Image.Image | None:
    """Convert ``im`` (L, RGB or CMYK) from its embedded profile to sRGB, or None."""
    if ImageCms is None:
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        # A profile that is corrupt or does not match the pixel layout is common in
        # the wild; showing the raw values is what most viewers do then.
        return None


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.uint32)[..., None]
    blended = rgb.astype(np.uint32) * a + 255 * (255 - a)
    return ((blended + 127) // 255).astype(np.uint8)  # +127: round to nearest


# --------------------------------------------------------------------------- resize


def fit_long_side(height: int, width: int, long_side: int, *, rounding: str = "truncate",
                  enlarge: bool = True) -> tuple[int, int]:
    """(height, width) with the long side ``long_side`` and the aspect ratio kept: the one
    output-size formula of every resize in jaxstyle.

    ``rounding="truncate"``: the short side is ``int(long_side / long * short)`` (as
    neural-style-pt, so single-scale sizes match it); ``"round"``: rounded to the nearest
    pixel (crowsonkb's ``size_to_fit``, used between coarse-to-fine scales). At least 1.
    ``enlarge=False`` returns the shape unchanged when it already fits.
    """
    if long_side < 1:
        raise ValueError(f"size must be a positive number of pixels, got {long_side}")
    if not enlarge and max(height, width) <= long_side:
        return height, width
    if rounding == "round":
        if height > width:
            return long_side, max(1, round(long_side * width / height))
        return max(1, round(long_side * height / width)), long_side
    if height >= width:
        return long_side, max(1, int(long_side / height * width))
    return max(1, int(long_side / width * height)), long_side


def resize_long_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the long side is ``size`` pixels (:func:`fit_long_side`, truncated), bilinear.

    ``uint8`` in gives ``uint8`` out; float in gives float32 out. The input is returned as
    is when it already has that shape.
    """
    return resize_to(img, *fit_long_side(*img.shape[:2], size))


def resize_to(img: np.ndarray, height: int, width: int, *, resample: str = "bilinear") -> np.ndarray:
    """Resize ``img`` to exactly ``height`` x ``width``.

    Accepts ``uint8`` (returns ``uint8``) or float arrays such as [0, 1] images and
    masks (returns float32, each channel resized in Pillow mode "F", unclipped:
    bilinear cannot overshoot, bicubic and lanczos can). Shape (H, W) or (H, W, C).
    Pillow antialiases when shrinking, so downscaling does not alias.
    """
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {height}x{width}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
    try:
        method = _RESAMPLE[resample]
    except KeyError:
        raise ValueError(f"unknown resample {resample!r}; use one of {', '.join(_RESAMPLE)}") from None

    if img.dtype == np.uint8:
        if img.shape[:2] == (height, width):
            return img
        if img.ndim == 3 and img.shape[2] == 3:  # the common case: one call, not three
            return np.asarray(Image.fromarray(img, "RGB").resize((width, height), method))
        mode, dtype = "L", np.uint8
    elif np.issubdtype(img.dtype, np.floating):
        if img.shape[:2] == (height, width):
            return img.astype(np.float32, copy=False)
        mode, dtype = "F", np.float32
    else:
        raise TypeError(f"expected a uint8 or float array, got dtype {img.dtype}")

    def one(channel: np.ndarray) -> np.ndarray:
        pil = Image.fromarray(np.ascontiguousarray(channel, dtype=dtype), mode)
        return np.asarray(pil.resize((width, height), method), dtype=dtype)

    if img.ndim == 2:
        return one(img)
    return np.stack([one(img[..., c]) for c in range(img.shape[2])], axis=-1)


def to_float(img: np.ndarray) -> np.ndarray:
    """``uint8`` [0, 255] -> float32 [0, 1]."""
    if img.dtype != np.uint8:
        raise TypeError(f"to_float expects a uint8 image, got dtype {img.dtype}")
    return img.astype(np.float32) / 255


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> ``uint8`` [0, 255], clipping out-of-range values and rounding."""
    if img.dtype == np.uint8:
        return img
    # NaN/inf would otherwise hit an undefined float->int cast.
    x = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- save


def _suffix_of(p: Path) -> str:
    suffix = p.suffix.lower()
    if suffix not in _SAVE_OPTIONS:
        raise UserError(
            f"{_name(p)}: unsupported output type {suffix or '(no extension)'!r};"
            f" end the file name with one of {', '.join(SUPPORTED_OUTPUT_SUFFIXES)}"
        )
    if suffix == ".webp" and not features.check("webp"):
        raise UserError(f"{_name(p)}: this Pillow was built without WebP support; save as .png instead")
    return suffix


def _unwritable(p: Path, e: OSError) -> UserError:
    why = e.strerror or _one_line(e)
    return UserError(f"{_name(p)}: cannot write the output ({why}); choose a writable location")


@contextmanager
def _temp_beside(dest: Path) -> Iterator[tuple[int, Path]]:
    """Yield (fd, path) of a new hidden temp file next to ``dest``; removed on failure.

    Not ``tempfile.mkstemp``: that creates mode 0600, and after ``os.replace`` the
    output would be private. Opening with 0666 lets the umask decide, as for any file.
    """
    for _ in range(100):
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 random collisions
        raise FileExistsError(f"no free temporary name next to {dest}")
    try:
        yield fd, tmp
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _prepare_parent(p: Path) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(p, e) from None
    if p.is_dir():
        raise UserError(f"{_name(p)}: is a directory; give a file name for the output image")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (through links, ``..`` and case-folding file systems)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they resolve to
        return Path(a).resolve() == Path(b).resolve()


def check_output_path(path: str | os.PathLike, *, inputs: Sequence = ()) -> Path:
    """Fail fast, before a long run, if ``path`` could not be saved to later.

    Refuses an output that is one of ``inputs`` (paths; other values are ignored), so a
    run never overwrites what it reads. Checks the extension, creates the parent folders
    and proves the folder is writable with a temporary file that is removed again.
    """
    p = Path(path)
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and Path(source).exists() and same_file(p, source):
            raise UserError(f"{_name(p)}: the output would overwrite an input; write the result to another file")
    _suffix_of(p)
    _prepare_parent(p)
    try:
        with _temp_beside(p) as (fd, tmp):
            os.close(fd)
            tmp.unlink()
    except OSError as e:
        raise _unwritable(p, e) from None
    return p


def check_output_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) and prove it writable, before any long work."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{_name(p)}: exists and is not a folder; give a folder for the outputs")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".jaxstyle-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _unwritable(p, e) from None
    return p


def _to_pil(img: np.ndarray) -> Image.Image:
    arr = to_uint8(np.asarray(img))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), "RGB")
    raise ValueError(f"expected an (H, W, 3) or (H, W) image, got shape {arr.shape}")


def _metadata_options(fmt: str, metadata: Mapping[str, str]) -> dict:
    if fmt == "PNG":
        info = PngInfo()
        for key, value in metadata.items():
            info.add_text(str(key), str(value))
        return {"pnginfo": info}
    # JPEG, WebP and TIFF have no free-form key/value store; EXIF ImageDescription
    # is the field viewers and exiftool show.
    exif = Image.Exif()
    exif[_EXIF_ImageDescription] = "; ".join(f"{k}: {v}" for k, v in metadata.items())
    return {"exif": exif}


def save_image(
    path: str | os.PathLike,
    img: np.ndarray,
    *,
    metadata: dict[str, str] | None = None,
    icc_profile: bytes | None = None,
) -> Path:
    """Write ``img`` (``uint8`` (H, W, 3) or float [0, 1]) to ``path``, atomically.

    The format follows the extension (see ``SUPPORTED_OUTPUT_SUFFIXES``). The image
    goes to a temporary file in the same folder, is fsynced and then renamed over
    ``path``, so a crash or a full disk never leaves a half-written picture, nor
    clobbers an existing one. ``metadata`` becomes PNG text chunks, or the EXIF
    ImageDescription for the other formats. Parent folders are created.
    ``icc_profile``: embed it, for pixels that are in that colour space, not sRGB.
    """
    p = Path(path)
    fmt, options = _SAVE_OPTIONS[_suffix_of(p)]
    pil = _to_pil(img)
    if metadata:
        options = {**options, **_metadata_options(fmt, metadata)}
    if icc_profile:
        options = {**options, "icc_profile": icc_profile}
    _prepare_parent(p)
    try:
        with _temp_beside(p) as (fd, tmp):
            with os.fdopen(fd, "wb") as f:
                pil.save(f, format=fmt, **options)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
    except OSError as e:
        raise _unwritable(p, e) from None
    _fsync_dir(p.parent)
    return p


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) everywhere.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
