"""Running jobs: buckets, batches, targets once per image, sharded steps, per-pair failure.

Pairs are grouped by compiled config and schedule of shapes (a *bucket*: one compile per
shape). No pad or crop policy is needed: padding would change the Gram statistics and the
content loss, so a pair is only batched with pairs of exactly its shape. Each bucket runs
in batches of one size (the last padded with copies whose results are dropped), the batch
axis sharded over this process's devices. Inputs are prepared exactly as the single-image
path prepares them (``stylize.load_inputs``, or ``control.stylize`` for coarse-to-fine and
colour preservation), so a batched pair solves the same problem as ``jaxstyle stylize``.
"""

from __future__ import annotations

import collections
import datetime
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from jaxstyle import batch_plan as planning
from jaxstyle import color, memory, multiscale, sources
from jaxstyle import image as imageio
from jaxstyle import stylize as S
from jaxstyle.errors import UserError
from jaxstyle.vgg import min_size

TARGET_CACHE_BYTES = 1 << 30  # content features and style statistics kept on device
IMAGE_CACHE_BYTES = 256 << 20  # decoded inputs kept on the host


@dataclass
class PairResult:
    pair: str  # the pair's id: its output path relative to OUTDIR
    content: str  # the content image's key (path, tfds:…#i, array:…)
    styles: tuple[str, ...]
    status: str  # "ok" or "failed"
    error: str | None = None
    losses: dict[str, float] = field(default_factory=dict)  # at the last evaluated step
    steps: int = 0  # over all scales
    seconds: float = 0.0  # this pair's share of its batch's wall time
    output: str | None = None  # the written file, when there is an output folder
    image: np.ndarray | None = field(default=None, repr=False)  # H×W×3 float32 in [0, 1]
    index: int = -1  # the job's position in the whole job list

    def record(self, fingerprint: str, process: int) -> dict:
        return {
            "pair": self.pair, "content": self.content, "style": list(self.styles),
            "output": self.pair if self.status == "ok" else None,
            "status": self.status, "error": self.error, "losses": self.losses, "steps": self.steps,
            "seconds": round(self.seconds, 3), "fingerprint": fingerprint, "process": process,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }


def failed(job: planning.Job, error: Exception | str) -> PairResult:
    return PairResult(job.pair, job.content.key, tuple(s.key for s in job.styles), "failed",
                      " ".join(str(error).split()), index=job.index)


class _LRU(collections.OrderedDict):
    """A mapping that forgets its least recently used entries past ``max_bytes``."""

    def __init__(self, max_bytes: int):
        super().__init__()
        self.max_bytes, self.used = max_bytes, 0

    @staticmethod
    def _size(value) -> int:
        import jax

        return sum(int(getattr(a, "nbytes", 0)) for a in jax.tree.leaves(value))

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key, value) -> None:
        size = self._size(value)
        if size > self.max_bytes:
            return
        while self and self.used + size > self.max_bytes:
            _, old = self.popitem(last=False)
            self.used -= self._size(old)
        super().__setitem__(key, value)
        self.used += size


@dataclass
class _AtScale:
    """One pair's inputs at one scale, as the single-image path would build them."""

    content: np.ndarray  # RGB [0, 1], after the colour transform
    styles: list[np.ndarray]
    content_key: tuple  # identity for the target cache (the shape is added there)
    style_keys: tuple


@dataclass
class _Loaded:
    job: planning.Job
    scales: list[_AtScale]
    init: object  # starting pixels of the first scale, in the pair's pixel space
    colours: color.ColorPlan | None
    final_rgb: np.ndarray  # the last scale's content before any colour transform


class Engine:
    """Runs jobs on one network and this process's devices; yields a result per pair.

    ``batch_size``: pairs per device per step (default: automatic, see
    :func:`batch_plan.auto_per_device`); a step runs ``batch_size`` × devices pairs.
    A bucket whose batch would not fit in memory fails its pairs with the reason.
    """

    def __init__(self, network, *, batch_size: int | None = None, mesh=None,
                 should_stop: Callable[[], bool] | None = None,
                 on_step: Callable[[int, int, int], None] | None = None):
        import jax

        self.network, self.batch_size, self.mesh = network, batch_size, mesh
        self.devices = mesh.size if mesh is not None else 1
        self.should_stop = should_stop or (lambda: False)
        self.on_step = on_step or (lambda step, total, pairs: None)
        self.targets = _LRU(TARGET_CACHE_BYTES)
        self.images = _LRU(IMAGE_CACHE_BYTES)
        self.sizes: dict[str, tuple[int, int] | UserError] = {}  # a content's header, read once
        self.backend = jax.default_backend()
        self.stopped = False

    # ------------------------------------------------------------------------ plan

    def _schedule(self, job: planning.Job) -> tuple[multiscale.Scale, ...]:
        """The shapes and steps a pair runs through (one scale unless --min-scale)."""
        key = job.content.key
        if key not in self.sizes:
            try:
                self.sizes[key] = job.content.size()
            except UserError as e:
                self.sizes[key] = e
        if isinstance(self.sizes[key], UserError):
            raise self.sizes[key]
        h0, w0 = self.sizes[key]
        cfg = job.cfg
        if cfg.min_scale:  # as control.stylize: scales too small for the network left out
            scales = multiscale.schedule(w0, h0, cfg, min_size(cfg.all_layers))
        else:
            scales = [multiscale.Scale(cfg.size, *planning.output_shape(h0, w0, cfg.size), cfg.steps)]
        for scale in scales:
            S.check_size((scale.height, scale.width), cfg, "content")
        blend = cfg.style_blend_weights
        if blend is not None and len(blend) != len(job.styles):
            raise UserError(f"--style-blend-weights has {len(blend)} values for {len(job.styles)} styles")
        return tuple(scales)

    def run(self, jobs: Sequence[planning.Job]) -> Iterator[PairResult]:
        buckets: dict[tuple, list[planning.Job]] = {}
        for job in jobs:
            try:
                schedule = self._schedule(job)
            except UserError as e:
                yield failed(job, e)
                continue
            buckets.setdefault((planning.step_config(job.cfg), schedule), []).append(job)
        for (cfg, schedule), members in buckets.items():
            shape = (schedule[-1].height, schedule[-1].width)
            free, _ = memory.free_bytes()
            shared = self.backend == "cpu"  # CPU devices share the host RAM
            per_device = self.batch_size or planning.auto_per_device(
                cfg, shape, self.devices, self.backend, free, shared)
            try:  # a batch that cannot fit fails its pairs with what to change, not the run
                memory.check_fits(cfg, shape, per_device, free // self.devices if shared else free)
            except UserError as e:
                for job in members:
                    yield failed(job, e)
                continue
            size = planning.bucket_size(len(members), per_device, self.devices)
            queue = collections.deque(members)
            while queue:
                batch: list[_Loaded] = []
                while queue and len(batch) < size:
                    job = queue.popleft()
                    try:
                        batch.append(self._load(job, schedule))
                    except UserError as e:
                        yield failed(job, e)
                if batch:
                    results = self._solve(batch, size, cfg, schedule)
                    if results is None:
                        self.stopped = True
                        return
                    yield from results
                if self.should_stop():
                    self.stopped = True
                    return

    # ---------------------------------------------------------------------- inputs

    def _cached(self, key, make):
        value = self.images.get(key)
        if value is None:
            value = make()
            self.images[key] = value
        return value

    def _original(self, item: sources.Item) -> np.ndarray:
        return self._cached((item.key, "original"), item.load)

    def _resized(self, item: sources.Item, size: int) -> np.ndarray:
        # As stylize.load_inputs: long side resized (PIL bilinear), then [0, 1] floats.
        return self._cached((item.key, "long", size),
                            lambda: imageio.to_float(imageio.resize_long_side(self._original(item), size)))

    def _bicubic(self, item: sources.Item, hw: tuple[int, int]) -> np.ndarray:
        # As control.stylize at each coarse-to-fine scale: bicubic from the original.
        return self._cached((item.key, "bicubic", hw),
                            lambda: imageio.to_float(imageio.resize_to(self._original(item), *hw, resample="bicubic")))

    def _load(self, job: planning.Job, schedule: tuple[multiscale.Scale, ...]) -> _Loaded:
        from jaxstyle.control import style_size

        cfg = job.cfg
        mode = cfg.preserve_color
        init_u8 = None if cfg.init in ("content", "random") else imageio.load_image(cfg.init)
        colours = None
        if mode is not None:  # transforms from the full-size images, as control.stylize
            colours = color.plan(mode, imageio.to_float(self._original(job.content)),
                                 [imageio.to_float(self._original(s)) for s in job.styles])
        how = "bicubic" if cfg.min_scale else "long"
        ckey = (job.content.key, how, mode)
        skeys = tuple((s.key, how, mode, job.content.key if mode else None) for s in job.styles)
        scales, start, rgb = [], None, None
        for k, scale in enumerate(schedule):
            hw = (scale.height, scale.width)
            if cfg.min_scale:
                rgb = self._bicubic(job.content, hw)
                styles = [self._bicubic(s, style_size(self._original(s), scale.size, cfg.style_scale))
                          for s in job.styles]
                if k == 0 and init_u8 is not None:
                    start = imageio.to_float(imageio.resize_to(init_u8, *hw, resample="bicubic"))
            else:
                rgb = self._resized(job.content, cfg.size)
                if rgb.shape[:2] != hw:
                    raise UserError(f"{job.content.key}: decoded as {rgb.shape[1]}×{rgb.shape[0]}, "
                                    f"its header said {hw[1]}×{hw[0]}; re-export the image")
                styles = [self._resized(s, max(1, round(cfg.size * cfg.style_scale))) for s in job.styles]
                if init_u8 is not None:
                    start = imageio.to_float(imageio.resize_to(init_u8, *hw))
            for s in styles:
                S.check_size(s.shape, cfg, "style")
            if colours is not None:
                styles = [t(s) for t, s in zip(colours.styles, styles)]
            scales.append(_AtScale(colours.content(rgb) if colours else rgb, styles, ckey, skeys))
        if colours is not None and start is not None:
            start = colours.content(start)
        return _Loaded(job, scales, S.initial_image(scales[0].content, cfg, start), colours, rgb)

    # ----------------------------------------------------------------------- solve

    def _solve(self, batch: list[_Loaded], size: int, cfg, schedule) -> list[PairResult] | None:
        import jax.numpy as jnp

        padded = batch + [batch[-1]] * (size - len(batch))
        total = sum(s.steps for s in schedule)
        t0 = time.perf_counter()
        bad: dict[int, str] = {}
        state = problem = terms = None
        offset = 0
        for k, scale in enumerate(schedule):
            at = [e.scales[k] for e in padded]
            if k == 0:
                inits = jnp.stack([e.init for e in padded])
            else:  # as multiscale.run: the previous average, upsampled; Adam's moments resized
                inits = multiscale.upsampled_result(state, scale.height, scale.width, cfg)
            problem = S.prepare_batch(
                self.network, [a.content for a in at], [a.styles for a in at], cfg, inits=inits,
                keys=([a.content_key for a in at], [a.style_keys for a in at]), cache=self.targets,
            )
            start = None if k == 0 else multiscale.carry_state(state, problem.init, cfg)
            for progress in S.iterate_batch(problem, mesh=self.mesh, steps=scale.steps, state=start):
                state = progress.state
                terms = progress.terms or terms
                for name, values in progress.terms.items():
                    for i in np.flatnonzero(~np.isfinite(values)):
                        bad.setdefault(int(i), f"the {name} loss became {float(values[i])} at step "
                                               f"{offset + progress.step - 1}; lower --lr or the loss weights, "
                                               "or use --optimizer adam")
                self.on_step(offset + progress.step, total, len(batch))
                if self.should_stop():
                    return None
            offset += scale.steps
        images = S.final_images(problem, state)
        seconds = (time.perf_counter() - t0) / len(batch)
        out = []
        for i, e in enumerate(batch):
            if i in bad:
                out.append(failed(e.job, bad[i]))
                continue
            image = e.colours.finish(images[i], e.final_rgb) if e.colours else images[i]
            losses = {name: float(v[i]) for name, v in (terms or {}).items()}
            out.append(PairResult(e.job.pair, e.job.content.key, tuple(s.key for s in e.job.styles), "ok",
                                  losses=losses, steps=total, seconds=seconds, image=image, index=e.job.index))
        return out


__all__ = ["Engine", "PairResult", "failed"]
