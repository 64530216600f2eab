"""Running batch jobs: buckets, batches, targets once per image, sharded steps, per-pair failure.

Pairs are grouped by compiled config and schedule of shapes (a *bucket*: one compile per
shape). No pad or crop policy is needed: padding would change the Gram statistics and the
content loss, so a pair is only batched with pairs of exactly its shape. Each bucket runs
in batches of one size (the last padded with copies whose results are dropped), the batch
axis sharded over this process's devices. Inputs are prepared exactly as the single-image
path prepares them (:mod:`jaxstyle.plan.inputs`) and solved by the same coarse-to-fine loop
(:mod:`jaxstyle.engine.scales`), so a batched pair solves the same problem as ``jaxstyle stylize``.
"""

from __future__ import annotations

import collections
import datetime
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

import jax.numpy as jnp

from jaxstyle.engine import loop, scales
from jaxstyle.engine.targets import batch_problem
from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.io import sources
from jaxstyle.model.vgg import min_size
from jaxstyle.plan import inputs, memory
from jaxstyle.plan import jobs as planning
from jaxstyle.plan.scales import schedule

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
class _Loaded:
    job: planning.Job
    originals: inputs.Originals
    keys: tuple  # (content key, style keys): identity for the target cache


class Engine:
    """Runs jobs on one network and this process's devices; yields a result per pair.

    ``batch_size``: pairs per device per step (default: automatic, see
    :func:`jaxstyle.plan.jobs.auto_per_device`); a step runs ``batch_size`` × devices pairs.
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

    def _schedule(self, job: planning.Job) -> tuple[scales.Scale, ...]:
        """The shapes and steps a pair runs through, from the content's header alone."""
        key = job.content.key
        if key not in self.sizes:
            try:
                self.sizes[key] = job.content.size()
            except UserError as e:
                self.sizes[key] = e
        if isinstance(self.sizes[key], UserError):
            raise self.sizes[key]
        cfg = job.cfg
        plan = schedule(*self.sizes[key], cfg, min_size(cfg.recipe.all_layers))
        for scale in plan:
            inputs.check_size((scale.height, scale.width), cfg.recipe, "content")
        blend = cfg.run.style_blend_weights
        if blend is not None and len(blend) != len(job.styles):
            raise UserError(f"--style-blend-weights has {len(blend)} values for {len(job.styles)} styles")
        return tuple(plan)

    def run(self, jobs: Sequence[planning.Job]) -> Iterator[PairResult]:
        buckets: dict[tuple, list[planning.Job]] = {}
        for job in jobs:
            try:
                plan = self._schedule(job)
            except UserError as e:
                yield failed(job, e)
                continue
            # One compiled program and one schedule per bucket; per-pair settings (start,
            # seed, colour control, style sizes) are prepared pair by pair.
            run = job.cfg.run
            buckets.setdefault((job.cfg.recipe, plan, run.chunk, run.style_blend_weights), []).append(job)
        for (recipe, plan, chunk, blend), members in buckets.items():
            shape = (plan[-1].height, plan[-1].width)
            free, _ = memory.free_bytes()
            shared = self.backend == "cpu"  # CPU devices share the host RAM
            per_device = self.batch_size or planning.auto_per_device(
                recipe, shape, self.devices, self.backend, free, shared)
            try:  # a batch that cannot fit fails its pairs with what to change, not the run
                memory.check_fits(recipe, shape, per_device, free // self.devices if shared else free)
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
                        batch.append(self._load(job, plan))
                    except UserError as e:
                        yield failed(job, e)
                if batch:
                    results = self._solve(batch, size, plan)
                    if results is None:
                        self.stopped = True
                        return
                    yield from results
                if self.should_stop():
                    self.stopped = True
                    return

    def _original(self, item: sources.Item) -> np.ndarray:
        value = self.images.get((item.key, "original"))
        if value is None:
            value = item.load()
            self.images[(item.key, "original")] = value
        return value

    def _load(self, job: planning.Job, plan: tuple[scales.Scale, ...]) -> _Loaded:
        """The pair's originals, read and checked as the single-image path reads them."""
        content = self._original(job.content)
        if content.shape[:2] != self.sizes[job.content.key]:
            h, w = self.sizes[job.content.key]
            raise UserError(f"{job.content.key}: decoded as {content.shape[1]}×{content.shape[0]}, "
                            f"its header said {w}×{h}; re-export the image")
        originals = inputs.read(content, [self._original(s) for s in job.styles], job.cfg)
        mode = job.cfg.run.preserve_color
        how = "bicubic" if job.cfg.run.min_scale else "bilinear"
        # The inputs a colour transform changes depend on the content too.
        keys = ((job.content.key, how, mode),
                tuple((s.key, how, mode, job.content.key if mode else None) for s in job.styles))
        for scale in plan:  # sizes checked before any device work
            for s in originals.styles:
                inputs.check_size(inputs.style_shape(s, scale, job.cfg), job.cfg.recipe, "style")
        return _Loaded(job, originals, keys)

    def _resized(self, keyed: dict[int, str]):
        def resized(img: np.ndarray, height: int, width: int, resample: str) -> np.ndarray:
            key = (keyed[id(img)], resample, height, width)
            value = self.images.get(key)
            if value is None:
                value = imageio.to_float(imageio.resize_to(img, height, width, resample=resample))
                self.images[key] = value
            return value

        return resized

    def _solve(self, batch: list[_Loaded], size: int, plan: tuple[scales.Scale, ...]) -> list[PairResult] | None:
        padded = batch + [batch[-1]] * (size - len(batch))
        cfg = batch[0].job.cfg
        recipe = cfg.recipe
        total = sum(s.steps for s in plan)
        t0 = time.perf_counter()
        bad: dict[int, str] = {}
        finals: list[np.ndarray | None] = [None] * len(padded)

        def build(scale: scales.Scale, init):
            ats = []
            for e in padded:
                keyed = {id(e.originals.content): e.job.content.key}
                keyed.update({id(o): s.key for o, s in zip(e.originals.styles, e.job.styles)})
                if e.originals.init is not None:
                    keyed[id(e.originals.init)] = f"init:{e.job.cfg.run.init}"
                ats.append(inputs.at_scale(e.originals, scale, e.job.cfg, resized=self._resized(keyed), check=False))
            for i, at in enumerate(ats):
                finals[i] = at.content_rgb
            if init is None:
                init = jnp.stack([inputs.initial_image(at.content.shape[:2], e.job.cfg, at.content, at.init)
                                  for e, at in zip(padded, ats)])
            keys = ([e.keys[0] for e in padded], [e.keys[1] for e in padded])
            return batch_problem(self.network, recipe, [a.content for a in ats], [a.styles for a in ats], init,
                                 blend_weights=cfg.run.style_blend_weights, keys=keys, cache=self.targets)

        gen = scales.run(build, plan, recipe, mesh=self.mesh, chunk=cfg.run.chunk)
        terms: dict = {}
        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                problem, state = stop.value
                break
            terms = progress.terms or terms
            for i, (name, value) in loop.nonfinite(progress.terms).items():
                bad.setdefault(i, loop.nonfinite_advice(name, value, progress.step - 1, recipe))
            self.on_step(progress.step, total, len(batch))
            if self.should_stop():
                return None
        images = loop.final_images(problem, state)
        seconds = (time.perf_counter() - t0) / len(batch)
        out = []
        for i, e in enumerate(batch):
            if i in bad:
                out.append(failed(e.job, bad[i]))
                continue
            image = e.originals.colours.finish(images[i], finals[i])
            losses = {name: float(v[i]) for name, v in terms.items()}
            out.append(PairResult(e.job.pair, e.job.content.key, tuple(s.key for s in e.job.styles), "ok",
                                  losses=losses, steps=total, seconds=seconds, image=image, index=e.job.index))
        return out


__all__ = ["Engine", "PairResult", "failed"]
