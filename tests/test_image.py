"""Tests for jaxstyle.image: every image is made here, in tmp_path, with Pillow."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from jaxstyle.io import image as img_mod
from jaxstyle.errors import UserError
from jaxstyle.io.image import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_OUTPUT_SUFFIXES,
    check_output_path,
    load_image,
    resize_long_side,
    resize_to,
    save_image,
    to_float,
    to_uint8,
)


def _asym(h: int = 6, w: int = 9) -> np.ndarray:
    """A small image with no symmetry, so any flip or rotation shows."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _assert_user_error(exc: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg


# ----------------------------------------------------------------------------- load


def test_load_rgb_png_roundtrip_exact(tmp_path):
    a = _asym()
    Image.fromarray(a).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


def test_load_accepts_str_path(tmp_path):
    a = _asym()
    Image.fromarray(a).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png")), a)


@pytest.mark.parametrize(
    ("orientation", "k"),
    [(3, 2), (6, -1), (8, 1)],  # 180, 90 clockwise, 90 counter-clockwise
)
@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_exif_orientation_is_applied(tmp_path, orientation, k, ext):
    a = _asym()
    path = tmp_path / f"o{ext}"
    Image.fromarray(a).save(path, exif=_exif(orientation))
    np.testing.assert_array_equal(load_image(path), np.rot90(a, k=k))


def test_exif_orientation_jpeg(tmp_path):
    a = np.zeros((16, 32, 3), np.uint8)
    a[:, :8] = 255  # a white band on the left edge
    path = tmp_path / "o.jpg"
    Image.fromarray(a).save(path, exif=_exif(6), quality=100, subsampling=0)
    out = load_image(path)
    assert out.shape == (32, 16, 3)
    # 90 degrees clockwise: the left band ends up on top.
    assert np.abs(out.astype(int) - np.rot90(a, k=-1)).max() <= 10


def test_grayscale(tmp_path):
    g = np.array([[0, 64], [128, 255]], np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, axis=2))


def test_one_bit(tmp_path):
    im = Image.new("1", (2, 1))
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 255, 255]]])


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_float_image_in_unit_range(tmp_path):
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    out = load_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[0, :, 1], [0, 128, 255])


def test_palette_without_and_with_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), [[[255, 0, 0], [0, 0, 255]]])

    im.save(tmp_path / "pt.png", transparency=1)  # the blue entry is see-through
    np.testing.assert_array_equal(load_image(tmp_path / "pt.png"), [[[255, 0, 0], [255, 255, 255]]])


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128], [200, 100, 0, 51]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = load_image(tmp_path / "t.png").astype(int)
    a = rgba[..., 3:].astype(float) / 255
    expected = np.round(rgba[..., :3] * a + 255 * (1 - a))
    np.testing.assert_allclose(out, expected, atol=0.5)
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [127, 127, 127]


def test_la_is_composited_on_white(tmp_path):
    la = np.array([[[0, 0], [0, 255], [100, 255]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[0, :, 0], [255, 0, 100])


@pytest.mark.parametrize("ext", [".tif", ".jpg"])
def test_cmyk(tmp_path, ext):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 255]]], np.uint8)
    path = tmp_path / f"c{ext}"
    # Repeat each pixel into an 8x8 block so JPEG blocks stay flat.
    big = np.kron(cmyk, np.ones((8, 8, 1), np.uint8))
    Image.fromarray(big, "CMYK").save(path, **({"quality": 100} if ext == ".jpg" else {}))
    out = load_image(path)[4, 4::8].astype(int)
    expected = np.array([[255, 255, 255], [0, 255, 255], [255, 0, 0], [0, 0, 0]])
    assert np.abs(out - expected).max() <= (0 if ext == ".tif" else 6)


def test_animated_gif_takes_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    out = load_image(tmp_path / "a.gif")
    assert out.shape == (4, 4, 3)
    assert (out == [255, 0, 0]).all()


def test_embedded_srgb_profile_loads_unchanged(tmp_path):
    a = _asym()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(a).save(tmp_path / "s.png", icc_profile=icc)
    np.testing.assert_array_equal(load_image(tmp_path / "s.png"), a)


def test_corrupt_profile_is_ignored(tmp_path):
    a = _asym()
    Image.fromarray(a).save(tmp_path / "bad.png", icc_profile=b"definitely not an ICC profile")
    with Image.open(tmp_path / "bad.png") as check:
        assert check.info.get("icc_profile")
    np.testing.assert_array_equal(load_image(tmp_path / "bad.png"), a)


def _linear_srgb_profile() -> bytes:
    """The sRGB profile with its tone curves replaced by gamma 1.0 ("linear sRGB")."""
    b = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    b[84:100] = bytes(16)  # profile ID (MD5) would no longer match
    linear = b"para" + bytes(4) + struct.pack(">HH", 0, 0) + struct.pack(">i", 1 << 16)
    (count,) = struct.unpack(">I", b[128:132])
    for i in range(count):
        entry = 132 + 12 * i
        sig, offset, _ = struct.unpack(">4sII", b[entry : entry + 12])
        if sig in (b"rTRC", b"gTRC", b"bTRC"):
            b[offset : offset + len(linear)] = linear
            b[entry + 8 : entry + 12] = struct.pack(">I", len(linear))
    return bytes(b)


def test_non_srgb_profile_is_converted(tmp_path):
    icc = _linear_srgb_profile()
    ImageCms.ImageCmsProfile(io.BytesIO(icc))  # the test profile itself must be valid
    gray = np.full((2, 2, 3), 128, np.uint8)
    Image.fromarray(gray).save(tmp_path / "lin.png", icc_profile=icc)
    out = load_image(tmp_path / "lin.png").astype(float)
    # Linear 128/255 encoded with the sRGB transfer function (independent maths).
    lin = 128 / 255
    expected = 255 * (1.055 * lin ** (1 / 2.4) - 0.055)  # ~188
    assert np.abs(out - expected).max() <= 2


def test_decompression_bomb_limit(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    with pytest.raises(UserError) as exc:
        load_image(tmp_path / "big.png", max_pixels=100)
    _assert_user_error(exc, tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", max_pixels=400).shape == (20, 20, 3)
    assert DEFAULT_MAX_PIXELS == 100_000_000


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb's calling card."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize("side", [12_000, 30_000])  # over our limit; over Pillow's own too
def test_huge_header_is_refused_without_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(side, side))
    with pytest.raises(UserError) as exc:
        load_image(path)
    _assert_user_error(exc, path)

def _truncated(tmp_path: Path, ext: str) -> Path:
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # incompressible
    whole = tmp_path / f"whole{ext}"
    Image.fromarray(noisy).save(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: d / "missing.png", id="missing"),
        pytest.param(lambda d: (d / "folder.png").mkdir() or d / "folder.png", id="directory"),
        pytest.param(lambda d: (d / "empty.png").write_bytes(b"") and None or d / "empty.png", id="empty"),
        pytest.param(
            lambda d: (d / "noise.png").write_bytes(os.urandom(1000)) and None or d / "noise.png",
            id="random-bytes",
        ),
        pytest.param(lambda d: _truncated(d, ".png"), id="truncated-png"),
        pytest.param(lambda d: _truncated(d, ".jpg"), id="truncated-jpeg"),
    ],
)
def test_load_errors_are_one_line_user_errors(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(UserError) as exc:
        load_image(path)
    _assert_user_error(exc, path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(UserError) as exc:
            load_image(path)
        _assert_user_error(exc, path)
    finally:
        path.chmod(0o644)


# --------------------------------------------------------------------------- resize


def test_resize_long_side_landscape_and_portrait():
    land = np.zeros((50, 100, 3), np.uint8)
    assert resize_long_side(land, 40).shape == (20, 40, 3)
    port = np.zeros((100, 50, 3), np.uint8)
    assert resize_long_side(port, 40).shape == (40, 20, 3)
    assert resize_long_side(land, 40).dtype == np.uint8


def test_resize_long_side_truncates_like_neural_style_pt():
    a = np.zeros((3, 10, 3), np.uint8)
    assert resize_long_side(a, 7).shape == (int(7 / 10 * 3), 7, 3)  # 2.1 -> 2
    thin = np.zeros((1, 100, 3), np.uint8)
    assert resize_long_side(thin, 10).shape == (1, 10, 3)  # never 0


def test_resize_long_side_same_size_returns_input():
    a = _asym(6, 9)
    assert resize_long_side(a, 9) is a


def test_resize_float_path_keeps_values():
    f = np.full((10, 20, 2), 0.25, np.float32)
    f[..., 1] = 0.75
    out = resize_long_side(f, 8)
    assert out.dtype == np.float32 and out.shape == (4, 8, 2)
    np.testing.assert_allclose(out[..., 0], 0.25, atol=1e-6)
    np.testing.assert_allclose(out[..., 1], 0.75, atol=1e-6)


def test_resize_to_exact_size_and_antialias():
    # A fine checkerboard must average to mid-gray when shrunk, not alias to black/white.
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    rgb = np.repeat(checker[..., None], 3, axis=2)
    out = resize_to(rgb, 8, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - 127.5).max() <= 2
    mask = resize_to(checker.astype(np.float32) / 255, 8, 8, resample="bilinear")
    assert mask.shape == (8, 8) and mask.dtype == np.float32
    np.testing.assert_allclose(mask, 0.5, atol=0.01)


def test_resize_to_matches_pil_for_uint8():
    a = _asym(20, 30)
    expected = np.asarray(Image.fromarray(a).resize((7, 11), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_to(a, 11, 7), expected)
    with pytest.raises(ValueError):
        resize_to(a, 11, 7, resample="sideways")


def test_to_float_and_to_uint8():
    a = np.array([0, 1, 128, 255], np.uint8)
    f = to_float(a)
    assert f.dtype == np.float32
    np.testing.assert_allclose(f, a / 255)
    np.testing.assert_array_equal(to_uint8(f), a)
    np.testing.assert_array_equal(to_uint8(np.array([-0.5, 0.5, 2.0], np.float32)), [0, 128, 255])


# ----------------------------------------------------------------------------- save


def test_save_png_roundtrip_exact_and_creates_parents(tmp_path):
    a = _asym()
    dest = tmp_path / "deep" / "er" / "out.png"
    assert save_image(dest, a) == dest
    np.testing.assert_array_equal(np.asarray(Image.open(dest)), a)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.png"]


@pytest.mark.parametrize(("ext", "tol"), [(".jpg", 12), (".jpeg", 12), (".webp", 40), (".tif", 0), (".TIFF", 0)])
def test_save_each_format_roundtrips(tmp_path, ext, tol):
    # Smooth content: lossy codecs are judged on what they are good at.
    y, x = np.mgrid[0:32, 0:48]
    a = np.stack([x * 5, y * 7, (x + y) * 3], axis=-1).astype(np.uint8)
    dest = save_image(tmp_path / f"out{ext}", a)
    back = load_image(dest)
    assert back.shape == a.shape
    assert np.abs(back.astype(int) - a).max() <= tol


def test_save_accepts_float(tmp_path):
    f = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    dest = save_image(tmp_path / "f.png", f)
    np.testing.assert_array_equal(np.asarray(Image.open(dest)), [[[0, 128, 255]]])


def test_save_jpeg_is_444(tmp_path):
    from PIL import JpegImagePlugin

    dest = save_image(tmp_path / "x.jpg", _asym(16, 16))
    with Image.open(dest) as im:
        assert JpegImagePlugin.get_sampling(im) == 0


def test_save_unknown_extension(tmp_path):
    with pytest.raises(UserError) as exc:
        save_image(tmp_path / "out.bmpx", _asym())
    _assert_user_error(exc, tmp_path / "out.bmpx")
    assert ".png" in str(exc.value)
    assert not (tmp_path / "out.bmpx").exists()
    assert set(SUPPORTED_OUTPUT_SUFFIXES) >= {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}


def test_save_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    dest = tmp_path / "file" / "out.png"
    with pytest.raises(UserError) as exc:
        save_image(dest, _asym())
    _assert_user_error(exc, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_save_onto_a_directory(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(UserError):
        save_image(tmp_path / "out.png", _asym())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores chmod")
def test_save_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError) as exc:
            save_image(ro / "out.png", _asym())
        _assert_user_error(exc, ro / "out.png")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def _failing_save(self, fp, *args, **kwargs):
    fp.write(b"\x89PNG half an image")
    raise OSError(28, "No space left on device")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", _failing_save)
    dest = tmp_path / "out.png"
    with pytest.raises(UserError) as exc:
        save_image(dest, _asym())
    _assert_user_error(exc, dest)
    assert list(tmp_path.iterdir()) == []


def test_save_failure_keeps_existing_file(tmp_path, monkeypatch):
    dest = tmp_path / "out.png"
    dest.write_bytes(b"previous result")
    monkeypatch.setattr(Image.Image, "save", _failing_save)
    with pytest.raises(UserError):
        save_image(dest, _asym())
    assert dest.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_save_non_oserror_still_cleans_up(tmp_path, monkeypatch):
    def boom(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_image(tmp_path / "out.png", _asym())
    assert list(tmp_path.iterdir()) == []


def test_save_overwrites_and_respects_umask(tmp_path):
    dest = tmp_path / "out.png"
    save_image(dest, np.zeros((2, 2, 3), np.uint8))
    save_image(dest, np.full((2, 2, 3), 255, np.uint8))
    assert (np.asarray(Image.open(dest)) == 255).all()
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert dest.stat().st_mode & 0o777 == 0o666 & ~umask


def test_png_metadata_is_stored(tmp_path):
    meta = {"jaxstyle:weights": "random, not pretrained", "jaxstyle:seed": "7"}
    dest = save_image(tmp_path / "m.png", _asym(), metadata=meta)
    with Image.open(dest) as im:
        assert im.text["jaxstyle:weights"] == "random, not pretrained"
        assert im.text["jaxstyle:seed"] == "7"


@pytest.mark.parametrize("ext", [".jpg", ".webp", ".tif"])
def test_metadata_in_other_formats_goes_to_exif(tmp_path, ext):
    dest = save_image(tmp_path / f"m{ext}", _asym(), metadata={"weights": "random"})
    with Image.open(dest) as im:
        assert "weights: random" in str(im.getexif().get(0x010E))


def test_check_output_path(tmp_path):
    dest = tmp_path / "new" / "dir" / "out.jpg"
    assert check_output_path(dest) == dest
    assert dest.parent.is_dir()
    assert list(dest.parent.iterdir()) == []  # the probe file is gone

    with pytest.raises(UserError) as exc:
        check_output_path(tmp_path / "out.gifv")
    _assert_user_error(exc, tmp_path / "out.gifv")

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError) as exc:
        check_output_path(tmp_path / "file" / "out.png")
    _assert_user_error(exc, tmp_path / "file" / "out.png")


def test_module_has_no_jax_import():
    source = Path(img_mod.__file__).read_text()
    assert not re.search(r"^\s*(import|from)\s+jax(\.|\s|$)", source, re.MULTILINE)

