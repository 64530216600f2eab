"""jaxstyle video: warping, reliability masks, the temporal loss, I/O, the CLI, resume, batching.

References are independent of the code under test: OpenCV ``remap`` and SciPy
``map_coordinates`` for warping, geometry of a synthetic moving square for the masks,
closed forms in numpy float64 for the loss and its gradient, PyAV for what was written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
av = pytest.importorskip("av")

import jax
import jax.numpy as jnp

from jaxstyle.io import flow as flowio
from jaxstyle.io import video as videoio
from jaxstyle.objective import temporal

DATA = Path(__file__).parent / "data"
CLIP = DATA / "pan_zoom.mp4"
REPO = Path(__file__).resolve().parents[1]


def smooth_image(h=40, w=52, c=3, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w, c)).astype(np.float32)
    return cv2.GaussianBlur(img, (0, 0), 2.0)


def smooth_flow(h=40, w=52, seed=1, scale=4.0):
    rng = np.random.default_rng(seed)
    f = cv2.GaussianBlur(rng.standard_normal((h, w, 2)).astype(np.float32), (0, 0), 6.0)
    f = f / np.abs(f).max() * scale
    # plus a rotation about the centre and a shift, so some samples leave the frame
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a = 0.05
    f[..., 0] += (np.cos(a) - 1) * (xs - w / 2) - np.sin(a) * (ys - h / 2) + 1.3
    f[..., 1] += np.sin(a) * (xs - w / 2) + (np.cos(a) - 1) * (ys - h / 2) - 0.7
    return f


# ------------------------------------------------------------------ warping


@pytest.mark.parametrize("seed", [1, 2])
def test_warp_matches_opencv_remap_and_scipy(seed):
    from scipy import ndimage

    img, flow = smooth_image(seed=seed), smooth_flow(seed=seed)
    h, w = flow.shape[:2]
    ours = np.asarray(temporal.warp(jnp.asarray(img), jnp.asarray(flow)))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    ref = cv2.remap(img, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # OpenCV rounds sample positions to 1/32 px: differences are bounded by that rounding.
    grad = max(np.abs(np.diff(img, axis=0)).max(), np.abs(np.diff(img, axis=1)).max())
    assert np.abs(ours - ref).max() <= grad / 32 + 1e-5
    # SciPy in float64 (positions clamped to the frame = border replicate): exact.
    cy = np.clip(ys.astype(np.float64) + flow[..., 1], 0, h - 1)
    cx = np.clip(xs.astype(np.float64) + flow[..., 0], 0, w - 1)
    exact = np.stack([ndimage.map_coordinates(img[..., k].astype(np.float64), [cy, cx], order=1) for k in range(3)], -1)
    np.testing.assert_allclose(ours, exact, atol=2e-5)


def test_warp_integer_shift_moves_pixels():
    img = smooth_image()
    flow = np.zeros(img.shape[:2] + (2,), np.float32)
    flow[..., 0] = 3.0  # out[y, x] = img[y, x + 3]
    out = np.asarray(temporal.warp(jnp.asarray(img), jnp.asarray(flow)))
    np.testing.assert_allclose(out[:, :-3], img[:, 3:], atol=1e-6)


# ------------------------------------------------------------------ reliability


def moving_square(h=48, w=64, top=14, left=20, size=16, dx=3, dy=2):
    """Synthetic flows of a square moving by (dx, dy) from frame t−1 to t over a still
    background: forward (t−1 → t) and backward (t → t−1), and the two squares' masks."""
    old = np.zeros((h, w), bool)
    old[top:top + size, left:left + size] = True
    new = np.zeros((h, w), bool)
    new[top + dy:top + dy + size, left + dx:left + dx + size] = True
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[old] = (dx, dy)
    bwd = np.zeros((h, w, 2), np.float32)
    bwd[new] = (-dx, -dy)
    return fwd, bwd, old, new


def _dilate(mask, r, cross=False):
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS if cross else cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def test_reliability_moving_square():
    fwd, bwd, old, new = moving_square()
    c = flowio.reliability(fwd, bwd)[..., 0]
    assert c.shape == old.shape and set(np.unique(c)) <= {0.0, 1.0}
    # Disoccluded: background now, covered by the square before. There the backward flow
    # is 0 but the forward flow found at the same place is the square's: inconsistent.
    disoccluded = old & ~new
    assert disoccluded.sum() > 50 and np.all(c[disoccluded] == 0)
    # Motion boundary: the backward flow jumps at the new square's edge (central
    # differences reach one pixel each side).
    edge = _dilate(new, 1, cross=True) & _dilate(~new, 1, cross=True)
    assert np.all(c[edge] == 0)
    # Far from the square: still background, consistent, reliable.
    far = ~_dilate(old | new, 2)
    assert np.all(c[far] == 1)
    # The square's interior (2 px in from its edge) moved consistently: reliable.
    inner = ~_dilate(~new, 2)
    assert inner.sum() > 50 and np.all(c[inner] == 1)


def test_reliability_thresholds():
    """Ruder's test is relative: a 10 % disagreement on a large motion passes, the same
    absolute disagreement on a small one fails (the 0.5 px² slack aside)."""
    h, w = 20, 20
    big_b = np.full((h, w, 2), (-10.0, 0.0), np.float32)
    big_f = np.full((h, w, 2), (10.5, 0.0), np.float32)  # |w̃+ŵ|² = 0.25 < 0.01·200.25 + 0.5
    worse_f = np.full((h, w, 2), (11.5, 0.0), np.float32)  # 2.25 < 0.01·232.25 + 0.5 = 2.82: passes
    worst_f = np.full((h, w, 2), (12.0, 0.0), np.float32)  # 4 > 0.01·244 + 0.5 = 2.94: fails
    inside = (slice(2, -2), slice(12, -2))  # sample points p + ŵ stay in the frame
    assert np.all(flowio.reliability(big_f, big_b)[inside] == 1)
    assert np.all(flowio.reliability(worse_f, big_b)[inside] == 1)
    assert np.all(flowio.reliability(worst_f, big_b)[inside] == 0)
    # Flow leaving the frame: the left 10 columns come from outside frame t−1.
    assert np.all(flowio.reliability(big_f, big_b)[:, :10] == 0)


def test_dis_flow_recovers_a_shift():
    img = (smooth_image(64, 80) * 255).astype(np.uint8)
    a, b = img[8:56, 8:72], img[8:56, 10:74]  # b = a shifted 2 px left: a[p] = b[p − (2, 0)]
    f = flowio.optical_flow(a, b)
    np.testing.assert_allclose(np.median(f[8:-8, 8:-8].reshape(-1, 2), axis=0), (-2.0, 0.0), atol=0.15)


def test_flow_cache_roundtrip(tmp_path):
    img = (smooth_image(48, 64) * 255).astype(np.uint8)
    a, b = img, np.roll(img, 1, axis=1)
    cache = flowio.FlowCache(tmp_path / "flow")
    f1, r1 = cache.pair(b, a)
    files = list((tmp_path / "flow").glob("*.npz"))
    assert len(files) == 1
    f2, r2 = cache.pair(b, a)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(r1, r2)
    files[0].write_bytes(b"torn")  # a corrupt entry is computed again
    f3, _ = cache.pair(b, a)
    np.testing.assert_array_equal(f1, f3)


# ------------------------------------------------------------------ the temporal loss


def test_temporal_loss_value_and_gradient_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        x, om = rng.standard_normal((2, 7, 9, 3))
        c = (rng.random((7, 9, 1)) > 0.3).astype(np.float64)
        d = 7 * 9 * 3
        value = float(temporal.temporal_loss(jnp.asarray(x), jnp.asarray(om), jnp.asarray(c)))
        assert value == pytest.approx(float(np.sum(c * (x - om) ** 2) / d), rel=1e-12)
        g = np.asarray(jax.grad(temporal.temporal_loss)(jnp.asarray(x), jnp.asarray(om), jnp.asarray(c)))
        np.testing.assert_allclose(g, 2 * c * (x - om) / d, rtol=1e-12, atol=1e-15)
        # and against a central finite difference in float64
        k = (3, 4, 1)
        e = np.zeros_like(x)
        e[k] = 1e-6
        f = lambda y: np.sum(c * (y - om) ** 2) / d
        assert g[k] == pytest.approx((f(x + e) - f(x - e)) / 2e-6, rel=1e-6)


def test_long_term_weights_eq7():
    rng = np.random.default_rng(4)
    c = (rng.random((4, 6, 5, 1)) > 0.5).astype(np.float32)
    ours = np.asarray(temporal.long_term_weights(jnp.asarray(c)))
    ref = np.zeros_like(c)
    for j in range(4):
        ref[j] = np.maximum(c[j] - c[:j].sum(0), 0)
    np.testing.assert_array_equal(ours, ref)
    # each pixel held to its closest reliable frame only
    first = np.argmax(c[..., 0] > 0, axis=0)
    any_ = c[..., 0].max(0) > 0
    for j in range(4):
        np.testing.assert_array_equal(ours[j, ..., 0] > 0, any_ & (first == j))


def test_long_term_combined_target_has_the_same_gradient():
    """Σ_j c_j (x − ω_j)² and C (x − Ω)² (what the frame loop hands the step) differ by a
    constant: equal gradients, checked against the closed form in float64."""
    from jaxstyle.api.video import temporal_target  # noqa: F401  (the combination lives there)

    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        x = rng.standard_normal((6, 5, 3))
        om = rng.standard_normal((3, 6, 5, 3))
        c = rng.random((3, 6, 5, 1)) * (rng.random((3, 6, 5, 1)) > 0.3)
        big_c = c.sum(0)
        omega = (c * om).sum(0) / np.maximum(big_c, 1e-12)
        g = np.asarray(jax.grad(temporal.temporal_loss)(jnp.asarray(x), jnp.asarray(omega), jnp.asarray(big_c)))
        ref = sum(2 * c[j] * (x - om[j]) for j in range(3)) / x.size
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------ video I/O


def test_clip_reads_as_committed():
    fps, n, audio = videoio.probe(CLIP)
    assert (fps, n, audio) == (Fraction(24), 32, False)
    i, first = next(videoio.open_source(CLIP).frames())
    assert i == 0 and first.shape == (96, 128, 3) and first.dtype == np.uint8


def test_writer_roundtrip_with_audio(tmp_path):
    src = _clip_with_audio(tmp_path / "a.mp4", frames=10, fps=12)
    fps, n, audio = videoio.probe(src)
    assert (fps, n, audio) == (Fraction(12), 10, True)
    out = tmp_path / "b.webm"
    w = videoio.VideoWriter(out, Fraction(12), audio_from=src)
    for _, f in videoio.open_source(src).frames():
        w.write(f)
    w.close()
    assert videoio.probe(out) == (Fraction(12), 10, True)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_truncated_video_is_one_line_error(tmp_path):
    from jaxstyle.errors import UserError

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(CLIP.read_bytes()[: len(CLIP.read_bytes()) // 2])
    with pytest.raises(UserError) as e:
        src = videoio.open_source(bad)
        list(src.frames())
    assert "\n" not in str(e.value) and "bad.mp4" in str(e.value)


def _clip_with_audio(path: Path, frames: int, fps: int, size=(48, 64)) -> Path:
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = size[1], size[0], "yuv420p"
        a = c.add_stream("aac", rate=16000)
        img = (smooth_image(size[0] + 20, size[1] + 20) * 255).astype(np.uint8)
        for t in range(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[10:10 + size[0], t:t + size[1]]), format="rgb24")
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        n = int(16000 * frames / fps)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)[None]
        for k in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[:, k:k + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    return path


# ------------------------------------------------------------------ end to end
# Untrained weights, shallow layers and 32 px: the pipeline, not the look. The CLI tests use
# the narrow VGG19 as a weights file (conftest's tiny_weights: --weights random:0 builds the
# full-width network, ~10x the compile time); shared options reuse the compiled programs.

LAYERS = {"content_layers": ("relu2_2",), "style_layers": ("relu1_1", "relu2_1")}
CLI = ["--size", "32", "--steps", "2", "--content-layers", "relu2_2",
       "--style-layers", "relu1_1,relu2_1", "-q"]


@pytest.fixture(scope="module")
def style_png(tmp_path_factory):
    from PIL import Image

    p = tmp_path_factory.mktemp("style") / "wave.png"
    Image.fromarray((smooth_image(40, 40, seed=7) * 255).astype(np.uint8)).save(p)
    return p


def _frames_folder(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in videoio.open_source(CLIP).frames(0, n):
        Image.fromarray(f).save(folder / f"in_{i:03d}.png")
    return folder


def _main(argv):
    from jaxstyle.cli.main import main

    return main([str(a) for a in argv])


def test_cli_video_to_video_keeps_fps_count_and_audio(tmp_path, style_png, tiny_weights, capsys):
    src = _clip_with_audio(tmp_path / "in.mp4", frames=5, fps=12)
    out = tmp_path / "out" / "styled.mp4"
    assert _main(["video", src, style_png, "-o", out, "--json", "--weights", tiny_weights, *CLI]) == 0
    assert videoio.probe(out) == (Fraction(12), 5, True)
    first = next(videoio.open_source(out).frames())[1]
    assert first.shape == (24, 32, 3)
    assert json.loads(capsys.readouterr().out)["frames"] == 5
    assert sorted(p.name for p in out.parent.iterdir()) == ["styled.mp4"]  # no work files left


def test_cli_frames_folder_to_folder(tmp_path, style_png, tiny_weights):
    src = _frames_folder(tmp_path / "in", 4)
    out = tmp_path / "out"
    assert _main(["video", src, style_png, "-o", out, "--frames", "1:4", "--weights", tiny_weights, *CLI]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["000001.png", "000002.png", "000003.png"]
    from jaxstyle.io.image import load_image

    assert load_image(out / names[0]).shape == (24, 32, 3)


def test_cli_bad_video_one_line(tmp_path, style_png, tiny_weights, capsys):
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(CLIP.read_bytes()[:3000])
    assert _main(["video", bad, style_png, "-o", tmp_path / "o.mp4", "--weights", tiny_weights, *CLI]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxstyle: error:") and "cut.mp4" in err[0]
    assert not (tmp_path / "o.mp4").exists()


def test_several_styles_equal_one_by_one(net):
    from jaxstyle.api.video import stylize_video

    frames = [f for _, f in videoio.open_source(CLIP).frames(0, 3)]
    styles = [(smooth_image(40, 40, seed=s) * 255).astype(np.uint8) for s in (7, 8)]
    opts = dict(network=net, size=32, steps=3, temporal_weight=1e3, **LAYERS)
    together = np.stack(list(stylize_video(frames, styles, **opts)))  # (T, B, H, W, 3)
    for k, s in enumerate(styles):
        alone = np.stack(list(stylize_video(frames, s, **opts)))
        np.testing.assert_allclose(together[:, k], alone, atol=2e-4)
    assert np.abs(together[:, 0] - together[:, 1]).max() > 0.05  # the styles differ


def test_temporal_weight_zero_is_each_frame_alone(net):
    """With no temporal term each frame is exactly what stylize makes of it."""
    import jaxstyle
    from jaxstyle.api.video import stylize_video

    frames = [f for _, f in videoio.open_source(CLIP).frames(0, 2)]
    style = (smooth_image(40, 40, seed=7) * 255).astype(np.uint8)
    opts = dict(network=net, size=32, steps=3, **LAYERS)
    video = list(stylize_video(frames, style, temporal_weight=0, **opts))
    for f, v in zip(frames, video):
        np.testing.assert_allclose(v, jaxstyle.stylize(f, style, **opts), atol=1e-5)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, style_png, tiny_weights):
    """Kill -9 after some frames; the rerun makes only the rest, and the result equals an
    uninterrupted run."""
    out = tmp_path / "out"
    argv = ["video", CLIP, style_png, "-o", out, "--frames", "0:8", "--weights", tiny_weights, *CLI]
    env = dict(os.environ, JAXSTYLE_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle", *map(str, argv)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    record = out / ".jaxstyle-video.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if record.exists() and len(record.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    early = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    n_early = len(record.read_text().splitlines())
    assert 3 <= n_early < 8, "the run finished or never started before the kill"
    os.environ["JAXSTYLE_HOME"], old = env["JAXSTYLE_HOME"], os.environ.get("JAXSTYLE_HOME")
    try:
        assert _main(argv) == 0
        full = tmp_path / "full"
        assert _main(["video", CLIP, style_png, "-o", full, "--frames", "0:8", "--weights", tiny_weights, *CLI]) == 0
    finally:
        if old is None:
            del os.environ["JAXSTYLE_HOME"]
        else:
            os.environ["JAXSTYLE_HOME"] = old
    lines = [json.loads(x)["frame"] for x in record.read_text().splitlines()]
    assert sorted(lines) == list(range(8))  # every frame recorded exactly once
    for name, mtime in early.items():
        if int(name[:6]) < n_early:
            assert (out / name).stat().st_mtime_ns == mtime, f"{name} was made again"
    from jaxstyle.io.image import load_image

    for i in range(8):
        a, b = load_image(out / f"{i:06d}.png"), load_image(full / f"{i:06d}.png")
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_long_term_target_uses_the_closest_reliable_frame():
    """(Ω, C) from frames 1 and 10 back: Ω is frame 1's warp where it is reliable, frame
    10's where only that one is, C = 0 where neither is (zero flows: warping is identity)."""
    from jaxstyle.api.video import temporal_target

    h, w = 6, 8
    rng = np.random.default_rng(9)
    prev = {1: rng.random((2, h, w, 3)).astype(np.float32), 10: rng.random((2, h, w, 3)).astype(np.float32)}
    c1 = np.zeros((h, w, 1), np.float32)
    c1[:, :4] = 1
    c10 = np.zeros((h, w, 1), np.float32)
    c10[:3] = 1
    zero = np.zeros((h, w, 2), np.float32)
    omega, weight, init = temporal_target(prev, {1: (zero, c1), 10: (zero, c10)}, (1, 10), "rgb01")
    omega, weight = np.asarray(omega), np.asarray(weight)
    np.testing.assert_allclose(omega[:, :, :4], prev[1][:, :, :4], atol=1e-6)
    np.testing.assert_allclose(omega[:, :3, 4:], prev[10][:, :3, 4:], atol=1e-6)
    assert np.all(weight[:, 3:, 4:] == 0) and np.all(weight[:, :, :4] == 1) and np.all(weight[:, :3, 4:] == 1)
    np.testing.assert_allclose(np.asarray(init), prev[1], atol=1e-6)  # the start: frame t−1 warped


def test_missing_extra_names_it(monkeypatch):
    from jaxstyle.errors import UserError

    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    with pytest.raises(UserError, match=r"pip install 'jaxstyle\[video\]'"):
        videoio.open_source(CLIP)
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(UserError, match=r"pip install 'jaxstyle\[video\]'"):
        flowio.optical_flow(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))


@pytest.mark.slow
def test_sigterm_stops_after_the_current_frame(tmp_path, style_png, tiny_weights):
    out = tmp_path / "out"
    argv = ["video", CLIP, style_png, "-o", out, "--frames", "0:20", "--weights", tiny_weights, *CLI]
    env = dict(os.environ, JAXSTYLE_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle", *map(str, argv)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    record = out / ".jaxstyle-video.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (record.exists() and record.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "run the same command again" in err
    frames = [json.loads(x)["frame"] for x in record.read_text().splitlines()]
    assert frames == list(range(len(frames))) and 1 <= len(frames) < 20
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:06d}.png" for i in frames]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_frame_store_survives_a_torn_record(tmp_path):
    from jaxstyle.api.video import FrameStore

    store = FrameStore(tmp_path, "fp")
    store.save(0, np.zeros((4, 4, 3), np.float32))
    with open(store.record, "a") as f:
        f.write('{"frame": 1, "finger')  # kill -9 in the middle of a line
    assert FrameStore(tmp_path, "fp").finished() == {0}
    store.save(1, np.ones((4, 4, 3), np.float32))
    assert FrameStore(tmp_path, "fp").finished() == {0, 1}
    assert FrameStore(tmp_path, "other options").finished() == set()
    assert store.load(1).min() == 255


def test_cli_two_styles_write_one_output_each(tmp_path, style_png, tiny_weights):
    from PIL import Image

    other = tmp_path / "other.png"
    Image.fromarray((smooth_image(40, 40, seed=11) * 255).astype(np.uint8)).save(other)
    out = tmp_path / "out"
    assert _main(["video", CLIP, style_png, other, "-o", out, "--frames", "0:2", "--weights", tiny_weights, *CLI]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["other.mp4", "wave.mp4"]  # named after the styles
    assert videoio.probe(out / "wave.mp4")[:2] == (Fraction(24), 2)
    named = tmp_path / "n_{style}.gif"
    assert _main(["video", CLIP, style_png, other, "-o", named, "--frames", "0:2", "--weights", tiny_weights,
                  *CLI]) == 0
    assert (tmp_path / "n_wave.gif").exists() and (tmp_path / "n_other.gif").exists()


# ------------------------------------------------------------------ multi-pass (Ruder §3.3)


def _np_warp(img, flow):
    """Bilinear backward warp in numpy float64, border replicated (positions clamped)."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x = np.clip(xs + flow[..., 0], 0, w - 1)
    y = np.clip(ys + flow[..., 1], 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), w - 2), np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    img = img.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


class _KnownFlows:
    """A flow cache that knows only the given pairs (current, neighbour) → (flow, c): asking
    for another pair (a wrong direction) fails the test."""

    def __init__(self, pairs):
        key = lambda u8: flowio.frame_key(u8.astype(np.float32) / 255)  # the loop's float content
        self.pairs = {(key(a), key(b)): v for a, b, v in pairs}

    def pair(self, current, previous):
        return self.pairs[flowio.frame_key(current), flowio.frame_key(previous)]


@pytest.mark.parametrize("j", [2, 3])
def test_later_pass_starts_from_ruders_blend(tmp_path, net, j):
    """Pass 2 (backward) and 3 (forward) over a synthetic 3-frame clip with known flows and
    masks, with 0 steps: each frame is exactly its start, which must be
    δ·c·ω(x_n^(j)) + (1 − δ + δ(1 − c))·x_i^(j−1), computed here in numpy float64 (and
    quantised to 8 bits like the frames on disk); the first frame in the direction is its
    previous result."""
    from jaxstyle.api.video import FrameStore, VideoSettings, later_pass
    from jaxstyle.config import make_config, replace

    h, w = 24, 32
    rng = np.random.default_rng(12)
    contents = [(smooth_image(h, w, seed=20 + k) * 255).astype(np.uint8) for k in range(3)]
    own = [(smooth_image(h, w, seed=30 + k) * 255).astype(np.uint8) for k in range(3)]
    order = [2, 1, 0] if j == 2 else [0, 1, 2]
    flows, pairs = {}, []
    for k in (1, 2):
        i, n = order[k], order[k - 1]
        flow = np.zeros((h, w, 2), np.float32)
        flow[..., 0], flow[..., 1] = 1.5 * k, -0.75  # a sub-pixel shift, leaving the frame at one side
        c = (rng.random((h, w, 1)) > 0.3).astype(np.float32)
        flows[i] = (flow, c)
        pairs.append((contents[i], contents[n], (flow, c)))
    cstore, prev, out = (FrameStore(tmp_path / name, "fp") for name in ("content", "prev", "out"))
    for k in range(3):
        cstore.save(k, contents[k])
        prev.save(k, own[k])
    cfg = make_config("gatys", size=w, steps=4, **LAYERS)
    cfg = replace(cfg, temporal_weight=1e3)
    settings = VideoSettings(passes=3, pass_steps=0)
    style = smooth_image(40, 40, seed=7)
    made = dict(later_pass(j, [0, 1, 2], [style], cfg, settings, net, flows=_KnownFlows(pairs), contents=cstore,
                           previous=[prev], stores=[out], cache={}))
    assert sorted(made) == [0, 1, 2]
    ref = {}
    for k, i in enumerate(order):
        x_prev = own[i].astype(np.float64) / 255
        if k == 0:
            start = x_prev
        else:
            flow, c = flows[i]
            warped = _np_warp(ref[order[k - 1]], flow.astype(np.float64))
            start = 0.5 * c * warped + (1 - 0.5 + 0.5 * (1 - c)) * x_prev
        ref[i] = np.round(np.clip(start, 0, 1) * 255) / 255  # what is written and warped next
        got = out.load(i).astype(np.float64) / 255
        assert np.abs(got - ref[i]).max() <= 1.01 / 255, f"frame {i}"
        np.testing.assert_allclose(made[i][0], got, atol=1e-6)  # yielded = written
    # the blend really mixed in the neighbour: far from the frame's own previous result
    assert np.abs(ref[order[2]] - own[order[2]] / 255).max() > 0.1


def test_cli_two_passes_keep_fps_count_and_audio(tmp_path, style_png, tiny_weights, capsys):
    src = _clip_with_audio(tmp_path / "in.mp4", frames=5, fps=12)
    out = tmp_path / "out" / "styled.mp4"
    assert _main(["video", src, style_png, "-o", out, "--json", "--passes", "2", "--weights", tiny_weights,
                  *CLI]) == 0
    assert videoio.probe(out) == (Fraction(12), 5, True)
    assert json.loads(capsys.readouterr().out)["frames"] == 5
    assert sorted(p.name for p in out.parent.iterdir()) == ["styled.mp4"]  # no work files left
    folder = tmp_path / "frames"
    assert _main(["video", src, style_png, "-o", folder, "--passes", "3", "--pass-steps", "1",
                  "--weights", tiny_weights, *CLI]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [".jaxstyle-video.jsonl"] + [f"{i:06d}.png" for i in range(5)]


def test_bad_passes_are_one_line(tmp_path, style_png, tiny_weights, capsys):
    for flag, value in (("--passes", "0"), ("--pass-steps", "-1")):
        assert _main(["video", CLIP, style_png, "-o", tmp_path / "o.mp4", flag, value, "--weights", tiny_weights,
                      *CLI]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0]


@pytest.mark.slow
def test_resume_in_the_middle_of_pass_two(tmp_path, style_png, tiny_weights, monkeypatch):
    """Kill -9 during pass 2 (backward); the rerun makes only pass 2's missing frames (pass 1
    is read back), and the result equals an uninterrupted run."""
    import jaxstyle.api.video as video_api

    out = tmp_path / "out"
    argv = ["video", CLIP, style_png, "-o", out, "--frames", "0:8", "--passes", "2", "--weights", tiny_weights,
            *CLI]
    env = dict(os.environ, JAXSTYLE_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle", *map(str, argv)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    record = out / ".jaxstyle-video.jsonl"  # the last pass is written into the output folder
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if record.exists() and len(record.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pass1 = out / ".jaxstyle-passes" / "pass1" / ".jaxstyle-video.jsonl"
    assert len(pass1.read_text().splitlines()) == 8
    early = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    done = [json.loads(x)["frame"] for x in record.read_text().splitlines()]
    assert 2 <= len(done) < 8, "the run finished or never reached pass 2 before the kill"
    assert done == list(range(7, 7 - len(done), -1))  # pass 2 runs backward
    solved = []
    real_solve = video_api.solve

    def counting_solve(*a, frame, **k):
        solved.append(frame)
        return real_solve(*a, frame=frame, **k)

    monkeypatch.setattr(video_api, "solve", counting_solve)
    monkeypatch.setenv("JAXSTYLE_HOME", env["JAXSTYLE_HOME"])
    assert _main(argv) == 0
    assert solved == list(range(7 - len(done), -1, -1))  # only pass 2's missing frames, backward
    assert not (out / ".jaxstyle-passes").exists()
    # Frames recorded before the kill are never made again. (A frame the kill caught between
    # its atomic write and its record is not finished, and is rightly made again.)
    for name, mtime in early.items():
        if int(name.split(".")[0]) in done:
            assert (out / name).stat().st_mtime_ns == mtime, f"{name} was made again"
    lines = [json.loads(x)["frame"] for x in record.read_text().splitlines()]
    assert sorted(lines) == list(range(8))
    full = tmp_path / "full"
    assert _main(["video", CLIP, style_png, "-o", full, "--frames", "0:8", "--passes", "2", "--weights",
                  tiny_weights, *CLI]) == 0
    from jaxstyle.io.image import load_image

    for i in range(8):
        a, b = load_image(out / f"{i:06d}.png"), load_image(full / f"{i:06d}.png")
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
