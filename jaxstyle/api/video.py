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

Multi-pass (``passes=N``, Ruder et al. IJCV 2018 §3.3): pass 1 is the above; pass j ≥ 2 runs
backward (even j) or forward (odd j) over the clip, frame i starting from
``δ·c·ω(x_n^(j)) + (1 − δ + δ(1 − c))·x_i^(j−1)`` (δ = 0.5; x_n^(j) the frame made just
before in this pass, warped into frame i) and held to that neighbour by the temporal term,
for ``pass_steps`` steps. Every pass is a folder of PNGs on disk (the next pass reads it
frame by frame); the last pass is the output.

With ``output`` every finished frame (of every pass) is written atomically and recorded (see
:class:`FrameStore`); a rerun continues after the last recorded frame, in its pass.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.api.network import resolve
from jaxstyle.api.video_output import (
    FrameStore,
    digest,
    encode,
    identity,
    load_all,
    open_stores,
    output_paths,
    save_all,
    work_folder,
)
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
    passes: int = 1  # Ruder's multi-pass: forward, backward, forward, …
    pass_steps: int | None = None  # steps per frame in passes 2…; None: --steps // 2

    def check(self) -> None:
        if self.passes < 1:
            raise UserError(f"--passes must be >= 1, got {self.passes}")
        if self.pass_steps is not None and self.pass_steps < 0:
            raise UserError(f"--pass-steps must be >= 0, got {self.pass_steps}")
        self.offsets()

    def weight(self, cfg: Config) -> float:
        w = DEFAULT_TEMPORAL_WEIGHT[cfg.recipe.pixel_space] if self.temporal_weight is None else self.temporal_weight
        if w < 0:
            raise UserError(f"--temporal-weight must be >= 0, got {w}")
        return float(w)

    def offsets(self) -> tuple[int, ...]:
        if self.long_term < 1 or self.long_term > len(LONG_TERM_OFFSETS):
            raise UserError(f"--long-term must be 1..{len(LONG_TERM_OFFSETS)}, got {self.long_term}")
        return LONG_TERM_OFFSETS[: self.long_term]


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
               callback: Callable[[dict], None] | None = None, content_store: FrameStore | None = None,
               cache: dict | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """The first (or only) pass: (index, (B,H,W,3) RGB [0,1]) per frame, in source order;
    frames already finished in ``stores`` are read back instead of made again.
    ``cfg.recipe.temporal_weight`` weighs the temporal term. ``content_store``: also keep
    the resized content frames (uint8, lossless), which the later passes read backwards."""
    tweight = cfg.recipe.temporal_weight
    offsets = settings.offsets() if tweight > 0 else ()
    keep = max(offsets, default=0)
    done = set.intersection(*(s.finished() for s in stores)) if stores else set()
    b = len(styles_f)
    cache = {} if cache is None else cache  # style statistics, once per clip
    kept = content_store.finished() if content_store is not None else set()
    contents: deque = deque(maxlen=keep + 1)  # (index, content float) of recent frames
    results: deque = deque(maxlen=keep)  # (index, (B,H,W,3)) stylized, recent
    first, resuming = None, True
    for i, frame in frames:
        small = imageio.resize_long_side(frame, cfg.run.size)
        content = imageio.to_float(small)
        if content_store is not None and i not in kept:
            content_store.save(i, small)  # before the frame: a finished frame always has its content
        if first is None:
            first = i
            inputs.check_size(content.shape, cfg.recipe, "content")
            inputs.check_memory(cfg, content.shape[:2], batch=b)
        if resuming and i in done:
            out = load_all(stores, i)
            if callback is not None:
                callback({"frame": i, "pass": 1, "steps": 0, "terms": {}, "resumed": True})
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
                out = save_all(stores, i, out)
            if callback is not None:
                callback({"frame": i, "pass": 1, "steps": steps, "terms": terms})
        contents.append((i, content))
        if keep:
            results.append((i, out))
        yield i, out
        if should_stop is not None and should_stop():
            return


# ------------------------------------------------------------------ the later passes

# Ruder et al. (IJCV 2018, §3.3, "multi-pass algorithm"): δ, the share of the neighbour's warp
# in the blend where the flow is reliable.
BLEND_DELTA = 0.5


def blend_init(own: np.ndarray, warped: np.ndarray, reliable: np.ndarray, delta: float = BLEND_DELTA) -> np.ndarray:
    """Ruder's multi-pass start for frame i in pass j > 1:
    ``δ·c·ω(x_n^(j)) + (1 − δ + δ·(1 − c))·x_i^(j−1)``, ``ω(x_n^(j))`` = ``warped`` (the
    neighbour made just before in this pass, warped into frame i), ``x_i^(j−1)`` = ``own``
    (frame i's result from the previous pass), ``c`` = ``reliable`` (H×W×1). Where the flow
    is unreliable the frame keeps its own result."""
    return delta * reliable * warped + (1.0 - delta + delta * (1.0 - reliable)) * own


def later_pass(j: int, indices: Sequence[int], styles_f: Sequence[np.ndarray], cfg: Config,
               settings: VideoSettings, network, *, flows: flowio.FlowCache, contents: FrameStore,
               previous: Sequence[FrameStore], stores: Sequence[FrameStore], cache: dict,
               should_stop: Callable[[], bool] | None = None,
               callback: Callable[[dict], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Pass ``j`` ≥ 2 of Ruder's multi-pass algorithm over the frames ``indices`` (source
    order): backward for even ``j``, forward for odd. Frame i starts from :func:`blend_init`
    of its result in ``previous`` (pass j−1) and the frame made just before it in this pass,
    and is held by the temporal term to that neighbour; the first frame in the direction
    starts from its previous result alone. Everything is read from disk (the content frames
    from ``contents``), one frame at a time. Frames finished in ``stores`` are read back.

    Deviation from Ruder: the later passes hold each frame to its neighbour only (short-term);
    ``--long-term`` applies to the first pass.
    """
    order = list(indices) if j % 2 else list(reversed(indices))
    done = set.intersection(*(s.finished() for s in stores))
    space, tweight = cfg.recipe.pixel_space, cfg.recipe.temporal_weight
    steps = settings.pass_steps if settings.pass_steps is not None else cfg.run.steps // 2
    neighbour = None  # (content, (B,H,W,3)) of the frame made just before, in this pass
    resuming = True
    for i in order:
        content = imageio.to_float(contents.load(i))
        if resuming and i in done:
            out = load_all(stores, i)
            if callback is not None:
                callback({"frame": i, "pass": j, "steps": 0, "terms": {}, "resumed": True})
        else:
            resuming = False
            own = load_all(previous, i)
            tmp = None
            if neighbour is None:
                init = own
            else:
                # The flow from frame i to its neighbour pulls the neighbour into frame i: the
                # first pass's backward flow in a forward pass, its forward flow in a backward
                # one (computed once per direction, then read from the flow cache).
                flow, reliable = flows.pair(content, neighbour[0])
                omega, weight, warped = temporal_target({1: neighbour[1]}, {1: (flow, reliable)}, (1,), space)
                init = blend_init(own, np.asarray(warped), reliable)
                if tweight > 0:
                    tmp = (omega, weight)
            init = pixels.from_rgb01(jnp.asarray(init, jnp.float32), space)
            out, terms = solve(network, cfg, content, styles_f, init, steps, tmp, frame=i, cache=cache)
            out = save_all(stores, i, out)
            if callback is not None:
                callback({"frame": i, "pass": j, "steps": steps, "terms": terms})
        neighbour = (content, out)
        yield i, out
        if should_stop is not None and should_stop():
            return


def run_passes(frames: Iterator[tuple[int, np.ndarray]], styles_f: Sequence[np.ndarray], cfg: Config,
               settings: VideoSettings, network, *, flows: flowio.FlowCache, finals: Sequence[FrameStore],
               works: Sequence[Path], fingerprints: Sequence[str], init_u8: np.ndarray | None = None,
               should_stop: Callable[[], bool] | None = None,
               callback: Callable[[dict], None] | None = None) -> list[int] | None:
    """Ruder's multi-pass algorithm: pass 1 (:func:`frame_loop`) then :func:`later_pass`
    2 … ``settings.passes``, alternating direction. Pass j < N of style k is kept in
    ``works[k]/pass{j}``, the last in ``finals[k]``, the content frames in
    ``works[0]/content``, each a resumable :class:`FrameStore`. Returns the frame indices
    (source order), or None when ``should_stop`` stopped it."""
    n = settings.passes
    chain = [[FrameStore(w / f"pass{j}", fp) for w, fp in zip(works, fingerprints)] for j in range(1, n)]
    chain.append(list(finals))
    contents = FrameStore(works[0] / "content", fingerprints[0])
    for store in [contents, *(s for stores in chain for s in stores)]:
        store.folder.mkdir(parents=True, exist_ok=True)
    stopped = (lambda: False) if should_stop is None else should_stop
    cache: dict = {}  # style statistics, once for all passes
    indices = [i for i, _ in frame_loop(frames, styles_f, cfg, settings, network, flows=flows, stores=chain[0],
                                        init_u8=init_u8, should_stop=should_stop, callback=callback,
                                        content_store=contents, cache=cache)]
    if stopped():
        return None
    for j in range(2, n + 1):
        for _ in later_pass(j, indices, styles_f, cfg, settings, network, flows=flows, contents=contents,
                            previous=chain[j - 2], stores=chain[j - 1], cache=cache, should_stop=should_stop,
                            callback=callback):
            pass
        if stopped():
            return None
    return indices


# ------------------------------------------------------------------ the API


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
    pass_steps: int | None = None,
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
    """Stylize a clip frame by frame with Ruder's temporal loss; yields each frame as made
    (with ``passes`` > 1: every frame of the last pass, in source order, when it is done).

    ``frames_or_path``: a video file, a folder or glob of frames, or an iterable of H×W×3
    arrays. ``styles``: one style (path or array; yields H×W×3 float32 RGB [0,1]) or a list
    (yields (B,H,W,3), one image per style, all styles optimised together). ``options`` are
    :class:`jaxstyle.Config` fields (``size=``, ``steps=``, …), defaults from ``preset``.
    ``temporal_weight=0`` stylizes every frame on its own from ``init``. ``output`` (a
    path, or a list with one per style): write the frames (video file or folder of PNGs),
    resumably; a video file is encoded when the last frame is done. ``flow_cache``: folder
    for flows (default ``$JAXSTYLE_HOME/flow/<clip hash>`` for files, none for arrays).
    ``config``: a ready :class:`Config` instead of ``preset`` and ``options``.
    ``passes``: Ruder's multi-pass algorithm (alternating direction; ``pass_steps`` steps per
    frame after the first pass, default ``steps // 2``); its work is kept on disk beside the
    output (in a temporary folder without ``output``), never the whole clip in memory.
    """
    cfg = config if config is not None else make_config(preset, **options)
    if passes > 1 and pass_steps is None:
        pass_steps = cfg.run.steps // 2  # resolved here so the fingerprint sees the number
    settings = VideoSettings(temporal_weight, long_term, first_frame_steps,
                             tuple(frames) if frames is not None else (0, None), passes,
                             pass_steps if passes > 1 else None)
    settings.check()
    cfg = replace(cfg, temporal_weight=settings.weight(cfg))
    if cfg.run.min_scale or cfg.run.preserve_color is not None:
        raise UserError("jaxstyle video has no coarse-to-fine or colour control yet: use --preset gatys or nspt "
                        "(not quality), without --min-scale or --preserve-color")
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
    network, info, cfg = resolve(network, weights, cfg)
    if info is not None:
        weights_key = weights_key or info.source
    if flow_cache is None and clip is not None:
        flow_cache = home() / "flow" / digest(clip, cfg.run.size, flowio.CACHE_VERSION)
    flows = flowio.FlowCache(flow_cache)
    is_video = source is not None and source.video is not None
    video_settings = dataclasses.asdict(settings)
    if settings.passes == 1:
        del video_settings["pass_steps"]  # single-pass fingerprints as before multi-pass existed
    outs, stores = ([], []) if output is None else open_stores(
        output, style_list, source, lambda style: digest(dataclasses.asdict(cfg), video_settings, clip or "arrays",
                                                         identity(style), weights_key or "network"))
    made = []
    if settings.passes == 1:
        for i, images in frame_loop(frame_iter, styles_f, cfg, settings, network, flows=flows, stores=stores,
                                    init_u8=init_u8, should_stop=should_stop, callback=callback):
            made.append(i)
            yield images[0] if single else images
    else:
        scratch = None if stores else Path(tempfile.mkdtemp(prefix="jaxstyle-video-"))
        try:
            if scratch is not None:
                works = [scratch / f"style{k}" for k in range(len(style_list))]
                finals = [FrameStore(w / "final", "scratch") for w in works]
            else:
                works, finals = [work_folder(o) for o in outs], stores
            made = run_passes(frame_iter, styles_f, cfg, settings, network, flows=flows, finals=finals, works=works,
                              fingerprints=[s.fingerprint for s in finals], init_u8=init_u8,
                              should_stop=should_stop, callback=callback)
            if made is None:
                return
            for i in made:
                images = load_all(finals, i)
                yield images[0] if single else images
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        for o in outs:
            # The earlier passes are done with; a rerun makes them again (the frames of the
            # last pass, recorded, are read back, not made again).
            shutil.rmtree(work_folder(o), ignore_errors=True)
    if should_stop is not None and should_stop():
        return
    for o, store in zip(outs, stores):
        if videoio.is_video_file(o):
            rate = source.fps if source is not None else Fraction(fps or videoio.DEFAULT_FPS)
            audio = source.video if is_video and source.has_audio else None
            t1 = float(stop / rate) if stop is not None else None
            encode(store, made, o, rate, audio_from=audio, audio_range=(float(start / rate), t1))
            shutil.rmtree(store.folder, ignore_errors=True)


__all__ = ["BLEND_DELTA", "FrameStore", "VideoSettings", "blend_init", "frame_loop", "later_pass", "output_paths",
           "run_passes", "solve", "stylize_video", "temporal_target"]
