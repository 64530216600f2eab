"""``jaxstyle.stylize_video``: temporally consistent video stylization (Ruder et al. 2016/2018).

    for frame in jaxstyle.stylize_video("clip.mp4", "starry.jpg", size=256, steps=200):
        ...                                   # H×W×3 float32 in [0, 1], frame by frame
    for frames in jaxstyle.stylize_video("clip.mp4", ["a.jpg", "b.jpg"], output=["a.mp4", "b.mp4"]):
        ...                                   # (2, H, W, 3): every style of one frame, one batch

Frame t is optimised with the usual content/style/TV terms plus Ruder's temporal term
``temporal_weight · (1/D) Σ c (x − ω)²`` (:mod:`jaxstyle.objective.temporal`), ω being the
stylized frame t−1 warped into frame t by the backward optical flow of the *content* frames
and c its reliability (:mod:`jaxstyle.io.flow`); frame t starts from ω (Ruder's
"prevWarped" init). The first frame (and every frame when ``temporal_weight`` is 0) starts
from ``init`` like a still image. Several styles of one clip are one batch (B = styles, the
content shared), vmapped in one compiled step.

Long-term consistency (``long_term=N``): the earlier frames J = (1, 10, 20, 40, …)[:N]
(Ruder's set) each give a warped ω_j and a reliability c_j, made exclusive by eq. (7) (each
pixel held to the closest frame where it is reliable). Σ_j c_j (x − ω_j)² equals
C (x − Ω)² plus a constant, with C = Σ_j c_j and Ω = Σ_j c_j ω_j / C, so one (Ω, C) pair is
handed to the step: the same gradient, one term.

With ``output`` every finished frame is written atomically and recorded (see
:class:`FrameStore`); a rerun continues after the last recorded frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.api.network import resolve
from jaxstyle.config import Config, make_config, replace
from jaxstyle.engine import loop
from jaxstyle.engine.targets import Temporal, batch_problem
from jaxstyle.errors import UserError
from jaxstyle.io import flow as flowio
from jaxstyle.io import image as imageio
from jaxstyle.io import video as videoio
from jaxstyle.model import pixels
from jaxstyle.model.weights import home
from jaxstyle.objective import temporal
from jaxstyle.plan import inputs

# Ruder et al.'s long-term frame offsets (IJCV 2018, §4.2: J = {1, 10, 20, 40}); continued
# by doubling for --long-term > 4.
LONG_TERM_OFFSETS = (1, 10, 20, 40, 80, 160)
# Ruder's default temporal weight (artistic_video.lua: -temporal_weight 1e3) is for
# neural-style's Caffe pixel space (0..255). The same penalty per unit of colour in [0,1]
# pixels is 255² larger. Deviation: that conversion was not tuned on a pretrained network.
DEFAULT_TEMPORAL_WEIGHT = {"caffe": 1e3, "rgb01": 1e3 * 255.0**2}


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    temporal_weight: float | None = None  # None: DEFAULT_TEMPORAL_WEIGHT[pixel space]
    long_term: int = 1  # earlier frames held (1: short-term only)
    first_frame_steps: int | None = None  # None: --steps
    frames: tuple[int, int | None] = (0, None)  # [start, stop) of the source
    passes: int = 1

    def weight(self, cfg: Config) -> float:
        w = DEFAULT_TEMPORAL_WEIGHT[cfg.recipe.pixel_space] if self.temporal_weight is None else self.temporal_weight
        if w < 0:
            raise UserError(f"--temporal-weight must be >= 0, got {w}")
        return float(w)

    def offsets(self) -> tuple[int, ...]:
        if self.long_term < 1 or self.long_term > len(LONG_TERM_OFFSETS):
            raise UserError(f"--long-term must be 1..{len(LONG_TERM_OFFSETS)}, got {self.long_term}")
        return LONG_TERM_OFFSETS[: self.long_term]


# ------------------------------------------------------------------ resumable frame store


class FrameStore:
    """Stylized frames of one output as numbered PNGs in ``folder`` plus a record.

    Frame ``i`` of the source is ``folder/{i:06d}.png``. It is written atomically, *then* a
    line ``{"frame": i, "fingerprint": …}`` is appended to ``folder/.jaxstyle-video.jsonl``
    and fsynced. Frames count as finished only when they are recorded with the run's
    fingerprint and exist, so a run killed at any moment resumes from its last finished
    frame, and another clip, style or option set starts over.
    """

    RECORD = ".jaxstyle-video.jsonl"

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.record = self.folder / self.RECORD

    def path(self, i: int) -> Path:
        return self.folder / f"{i:06d}.png"

    def finished(self) -> set[int]:
        """Frames recorded with this fingerprint whose files exist. Call once, before saving."""
        done = set()
        try:
            text = self.record.read_text()
        except OSError:
            return done
        if text and not text.endswith("\n"):
            # kill -9 mid-line: end the torn line so the next record starts on its own.
            with open(self.record, "a") as f:
                f.write("\n")
        lines = text.splitlines()
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a torn last line after kill -9
            if r.get("fingerprint") == self.fingerprint and self.path(int(r["frame"])).exists():
                done.add(int(r["frame"]))
        return done

    def save(self, i: int, rgb01: np.ndarray) -> np.ndarray:
        """Write frame ``i``; returns it as read back (uint8), for exact resumes."""
        u8 = imageio.to_uint8(rgb01)
        imageio.save_image(self.path(i), u8)
        with open(self.record, "a") as f:
            f.write(json.dumps({"frame": i, "fingerprint": self.fingerprint}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return u8

    def load(self, i: int) -> np.ndarray:
        return imageio.load_image(self.path(i))


# ------------------------------------------------------------------ the solver


def solve(network, cfg: Config, content: np.ndarray, styles_f: Sequence[np.ndarray], init, steps: int,
          tmp: tuple | None, *, frame: int, cache: dict) -> tuple[np.ndarray, dict]:
    """One content frame with B styles, one batch: (B,H,W,3) RGB [0,1] and the last terms (B,).

    ``init``: (B,H,W,3) in the recipe's pixel space; ``tmp``: (Ω (B,H,W,3) in pixel space,
    C (B,H,W,1)) or None (no temporal term). The content's features are computed once and
    shared by the B images; each style's statistics once per clip (``cache``).
    """
    b = len(styles_f)
    extra = {} if tmp is None else {"temporal": Temporal(*tmp)}
    problem = batch_problem(network, cfg.recipe, [content] * b, [[s] for s in styles_f], init,
                            keys=([("frame", frame)] * b, [[("style", k)] for k in range(b)]), cache=cache,
                            **extra)
    for key in [k for k in cache if k[0] == "content"]:
        del cache[key]  # one frame's features are never needed again
    last = None
    for last in loop.iterate(problem, steps=steps, chunk=cfg.run.chunk):
        pass
    if last is None:
        return loop.final_images(problem, loop.init_state(problem)), {}
    for name, value in loop.nonfinite(last.terms).values():
        raise UserError(f"frame {frame}: " + loop.nonfinite_advice(name, value, last.step - 1, cfg.recipe))
    return loop.final_images(problem, last.state), last.terms


# ------------------------------------------------------------------ the frame loop

_warp_jit = jax.jit(jax.vmap(temporal.warp, in_axes=(0, None)))


def temporal_target(previous: dict[int, np.ndarray], flows: dict[int, tuple], offsets, pixel_space: str):
    """(Ω, C, ω_1) for the current frame from the stylized frames ``previous[j]`` ((B,H,W,3)
    RGB [0,1], j frames back) and ``flows[j]`` = (backward flow, reliability): Ω in the
    pixel space, C (B,H,W,1), ω_1 the previous frame warped (RGB [0,1], the init)."""
    js = [j for j in offsets if j in previous]
    ws = [_warp_jit(jnp.asarray(previous[j]), jnp.asarray(flows[j][0])) for j in js]
    c = temporal.long_term_weights(jnp.stack([jnp.asarray(flows[j][1]) for j in js]))  # (J,H,W,1)
    total_c = c.sum(0)
    omega = sum(cj * wj for cj, wj in zip(c, ws)) / jnp.maximum(total_c, 1e-12)
    weight = jnp.broadcast_to(total_c, (omega.shape[0], *total_c.shape))
    return pixels.from_rgb01(omega, pixel_space), weight, ws[0]


def frame_loop(frames: Iterator[tuple[int, np.ndarray]], styles_f: Sequence[np.ndarray], cfg: Config,
               settings: VideoSettings, network, *, flows: flowio.FlowCache, stores: Sequence[FrameStore] = (),
               init_u8: np.ndarray | None = None, should_stop: Callable[[], bool] | None = None,
               callback: Callable[[dict], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, (B,H,W,3) RGB [0,1]) per frame; frames already finished in ``stores`` are
    read back instead of made again. ``cfg.recipe.temporal_weight`` weighs the temporal term."""
    if settings.passes != 1:
        raise UserError("--passes > 1 (Ruder's multi-pass) is not implemented yet; use --passes 1")
    tweight = cfg.recipe.temporal_weight
    offsets = settings.offsets() if tweight > 0 else ()
    keep = max(offsets, default=0)
    done = set.intersection(*(s.finished() for s in stores)) if stores else set()
    b = len(styles_f)
    cache: dict = {}  # style statistics, once per clip
    contents: deque = deque(maxlen=keep + 1)  # (index, content float) of recent frames
    results: deque = deque(maxlen=keep)  # (index, (B,H,W,3)) stylized, recent
    first, resuming = None, True
    for i, frame in frames:
        content = imageio.to_float(imageio.resize_long_side(frame, cfg.run.size))
        if first is None:
            first = i
            inputs.check_size(content.shape, cfg.recipe, "content")
            inputs.check_memory(cfg, content.shape[:2], batch=b)
        if resuming and i in done:
            out = np.stack([imageio.to_float(s.load(i)) for s in stores])
        else:
            resuming = False
            back = {i - idx: r for idx, r in results}
            prev = {j: back[j] for j in offsets if j in back}
            tmp = None
            steps = cfg.run.steps
            if prev:
                earlier = dict(contents)
                fl = {j: flows.pair(content, earlier[i - j]) for j in prev}
                omega, weight, warped = temporal_target(prev, fl, offsets, cfg.recipe.pixel_space)
                tmp = (omega, weight)
                # Ruder's "prevWarped" init: the previous stylized frame moved along the flow.
                init = pixels.from_rgb01(warped, cfg.recipe.pixel_space)
            else:
                start = None if init_u8 is None else imageio.to_float(imageio.resize_to(init_u8, *content.shape[:2]))
                init = jnp.stack([inputs.initial_image(content.shape[:2], cfg, content, start)] * b)
                if i == first and settings.first_frame_steps is not None:
                    steps = settings.first_frame_steps
            out, terms = solve(network, cfg, content, styles_f, init, steps, tmp, frame=i, cache=cache)
            if stores:
                # What is on disk is what the next frame warps, so a resumed run is exact.
                out = np.stack([imageio.to_float(s.save(i, o)) for s, o in zip(stores, out)])
            if callback is not None:
                callback({"frame": i, "steps": steps, "terms": terms})
        contents.append((i, content))
        if keep:
            results.append((i, out))
        yield i, out
        if should_stop is not None and should_stop():
            return


# ------------------------------------------------------------------ outputs and the API


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _identity(x) -> str:
    if isinstance(x, np.ndarray):
        return "array:" + hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:24]
    p = Path(x)
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def style_name(style, index: int) -> str:
    return Path(style).stem if not isinstance(style, np.ndarray) else f"style{index}"


def output_paths(output: str | os.PathLike, styles: Sequence, source_is_video: bool,
                 video_suffix: str = ".mp4") -> list[Path]:
    """One output per style: ``output`` itself for one style; ``{style}`` filled in; else a
    folder with ``<style>.<suffix>`` (video input) or ``<style>/`` (frames) in it."""
    text = os.fspath(output)
    names = [style_name(s, k) for k, s in enumerate(styles)]
    if len(set(names)) != len(names):
        names = [f"{n}-{k}" for k, n in enumerate(names)]
    if len(styles) == 1:
        return [Path(text.replace("{style}", names[0]))]
    if "{style}" in text:
        return [Path(text.replace("{style}", n)) for n in names]
    if videoio.is_video_file(text):
        raise UserError(f"{text!r}: {len(styles)} styles need a folder or a name with {{style}} in it")
    return [Path(text) / (n + video_suffix if source_is_video else n) for n in names]


def store_folder(out: Path) -> Path:
    """Where the frames of ``out`` are kept while it is made (the folder itself for frames)."""
    if videoio.is_video_file(out):
        return out.with_name(f".{out.name}.frames")
    return out


def encode(store: FrameStore, indices: Sequence[int], out: Path, fps, *, audio_from=None,
           audio_range=(0.0, None)) -> Path:
    """Encode the stored frames ``indices`` into the video ``out`` (atomic), audio copied."""
    writer = videoio.VideoWriter(out, fps, audio_from=audio_from, audio_range=audio_range)
    try:
        for i in indices:
            writer.write(store.load(i))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def stylize_video(
    frames_or_path,
    styles,
    *,
    output=None,
    weights=None,
    network=None,
    preset: str = "gatys",
    temporal_weight: float | None = None,
    long_term: int = 1,
    passes: int = 1,
    first_frame_steps: int | None = None,
    frames: tuple[int, int | None] | None = None,
    fps: float | None = None,
    flow_cache: str | os.PathLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    callback: Callable[[dict], None] | None = None,
    weights_key: str | None = None,
    config: Config | None = None,
    **options,
) -> Iterator[np.ndarray]:
    """Stylize a clip frame by frame with Ruder's temporal loss; yields each frame as made.

    ``frames_or_path``: a video file, a folder or glob of frames, or an iterable of H×W×3
    arrays. ``styles``: one style (path or array; yields H×W×3 float32 RGB [0,1]) or a list
    (yields (B,H,W,3), one image per style, all styles optimised together). ``options`` are
    :class:`jaxstyle.Config` fields (``size=``, ``steps=``, …), defaults from ``preset``.
    ``temporal_weight=0`` stylizes every frame on its own from ``init``. ``output`` (a
    path, or a list with one per style): write the frames (video file or folder of PNGs),
    resumably; a video file is encoded when the last frame is done. ``flow_cache``: folder
    for flows (default ``$JAXSTYLE_HOME/flow/<clip hash>`` for files, none for arrays).
    ``config``: a ready :class:`Config` instead of ``preset`` and ``options``.
    """
    cfg = config if config is not None else make_config(preset, **options)
    settings = VideoSettings(temporal_weight, long_term, first_frame_steps,
                             tuple(frames) if frames is not None else (0, None), passes)
    cfg = replace(cfg, temporal_weight=settings.weight(cfg))
    if cfg.run.min_scale or cfg.run.preserve_color is not None:
        raise UserError("jaxstyle video has no coarse-to-fine or colour control yet: use --preset gatys or nspt "
                        "(not quality), without --min-scale or --preserve-color")
    settings.offsets()
    single = not isinstance(styles, (list, tuple))
    style_list = [styles] if single else list(styles)
    if not style_list:
        raise UserError("give at least one style image")
    style_side = max(1, round(cfg.run.size * cfg.run.style_scale))
    styles_f = [imageio.to_float(imageio.resize_long_side(inputs.as_uint8(s, "style"), style_side))
                for s in style_list]
    for s in styles_f:
        inputs.check_size(s.shape, cfg.recipe, "style")
    init_u8 = None if cfg.run.init in ("content", "random") else inputs.as_uint8(cfg.run.init, "init")
    start, stop = settings.frames
    source = None
    if isinstance(frames_or_path, (str, os.PathLike)):
        source = videoio.open_source(frames_or_path, fps)
        frame_iter = source.frames(start, stop)
        clip = source.identity()
    else:
        frame_iter = ((i, inputs.as_uint8(np.asarray(f), "frame")) for i, f in enumerate(frames_or_path)
                      if i >= start and (stop is None or i < stop))
        clip = None
    network, info = resolve(network, weights, cfg)
    if info is not None:
        weights_key = weights_key or info.source
    if flow_cache is None and clip is not None:
        flow_cache = home() / "flow" / _digest(clip, cfg.run.size, flowio.CACHE_VERSION)
    flows = flowio.FlowCache(flow_cache)
    is_video = source is not None and source.video is not None
    stores, outs = [], []
    if output is not None:
        outs = [Path(o) for o in output] if isinstance(output, (list, tuple)) else \
            output_paths(output, style_list, is_video, source.video.suffix.lower() if is_video else ".mp4")
        if len(outs) != len(style_list):
            raise UserError(f"{len(outs)} outputs for {len(style_list)} styles; give one per style")
        sources = {p.resolve() for p in ((source.video,) if is_video else source.files)} if source else set()
        # Numbered frames written into a folder of input frames could replace them.
        input_dirs = {q.parent for q in sources} if not is_video else set()
        for o, s in zip(outs, style_list):
            if o.resolve() in sources or store_folder(o).resolve() in input_dirs:
                raise UserError(f"{str(o)!r} is (or holds) the input; choose another output")
            if videoio.is_video_file(o):
                videoio.check_video_output(o)
            fp = _digest(dataclasses.asdict(cfg), dataclasses.asdict(settings), clip or "arrays", _identity(s),
                         weights_key or "network")
            folder = store_folder(o)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"{str(folder)!r}: cannot write the output ({e.strerror or e})") from None
            stores.append(FrameStore(folder, fp))
    made = []
    for i, images in frame_loop(frame_iter, styles_f, cfg, settings, network, flows=flows, stores=stores,
                                init_u8=init_u8, should_stop=should_stop, callback=callback):
        made.append(i)
        yield images[0] if single else images
    if should_stop is not None and should_stop():
        return
    for o, store in zip(outs, stores):
        if videoio.is_video_file(o):
            rate = source.fps if source is not None else Fraction(fps or videoio.DEFAULT_FPS)
            audio = source.video if is_video and source.has_audio else None
            t1 = float(stop / rate) if stop is not None else None
            encode(store, made, o, rate, audio_from=audio, audio_range=(float(start / rate), t1))
            shutil.rmtree(store.folder, ignore_errors=True)


__all__ = ["FrameStore", "VideoSettings", "frame_loop", "output_paths", "solve", "stylize_video", "temporal_target"]
