"""The jit boundary: targets, chunks of optimisation steps, and the ``stylize`` API.

Everything here works on a leading batch axis B (B = 1 for one image): the single-image
``step`` is vmapped over pairs, with the network's parameters broadcast. Many steps run per
host call; progress is reported between calls.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxstyle import image as imageio
from jaxstyle import losses, memory, pixels
from jaxstyle.config import Config, make_config
from jaxstyle.errors import UserError
from jaxstyle.step import StepState, init_state, result_image, step
from jaxstyle.vgg import VGG, min_size

# How many times each jitted function was traced (i.e. compiled); tests read it.
TRACES: collections.Counter = collections.Counter()

# Config fields that shape the run around the compiled programs (sizes, step counts, the
# start, seeds, blending of targets) but never enter them. A Config is a static jit
# argument, so these are reset before it keys a compiled program: another --steps or
# --seed for the same shapes reuses the compiled step instead of tracing it again.
RUN_ONLY_FIELDS = ("preset", "size", "style_scale", "steps", "seed", "init", "chunk",
                   "style_blend_weights", "min_scale", "initial_steps", "preserve_color")


def compiled_config(cfg: Config) -> Config:
    """``cfg`` with :data:`RUN_ONLY_FIELDS` at their defaults: the key of compiled programs."""
    defaults = Config()
    present = [f for f in RUN_ONLY_FIELDS if hasattr(defaults, f)]
    return dataclasses.replace(cfg, **{f: getattr(defaults, f) for f in present})


def _features(graphdef, params, image, layers, cfg: Config):
    TRACES["features"] += 1
    network = nnx.merge(graphdef, params)
    return network(
        image,
        layers,
        pixel_space=cfg.pixel_space,
        pooling=cfg.pooling,
        padding=cfg.padding,
        avg_pool_scale=cfg.avg_pool_scale,
    )


_features_compiled = jax.jit(_features, static_argnums=(0, 3, 4))


def _features_jit(graphdef, params, image, layers, cfg: Config):
    return _features_compiled(graphdef, params, image, layers, compiled_config(cfg))


def _run_chunk(graphdef, cfg: Config, n: int, unroll: bool, params, targets, state):
    TRACES["chunk"] += 1
    network = nnx.merge(graphdef, params)
    batched = jax.vmap(lambda st, tg: step(st, tg, network, cfg))

    if unroll:
        # Straight-line steps: XLA:CPU runs a rolled loop body several times slower.
        history = []
        for _ in range(n):
            state, terms = batched(state, targets)
            history.append(terms)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    def body(st, _):
        return batched(st, targets)

    return jax.lax.scan(body, state, None, length=n)


# The state is donated: the optimiser's history is the largest buffer, and the caller
# never reads the old state again.
_run_chunk_compiled = jax.jit(_run_chunk, static_argnums=(0, 1, 2, 3), donate_argnums=(6,))


def _run_chunk_jit(graphdef, cfg: Config, n: int, unroll: bool, params, targets, state):
    return _run_chunk_compiled(graphdef, compiled_config(cfg), n, unroll, params, targets, state)


def _init_states(images, cfg: Config):
    TRACES["init"] += 1
    return jax.vmap(lambda x: init_state(x, cfg))(images)


_init_states_compiled = jax.jit(_init_states, static_argnums=(1,))


def _init_states_jit(images, cfg: Config):
    return _init_states_compiled(images, compiled_config(cfg))


@dataclass
class Problem:
    """Everything a run needs on device, with a leading batch axis B."""

    cfg: Config
    network: VGG
    targets: dict  # {"content": {layer: (B,h,w,c)}, "style": {layer: {stat: (B, ...)}}}
    init: jax.Array  # (B, H, W, 3) in cfg.pixel_space
    # Target kinds ("content", "style") held once, without the B axis, because every
    # pair of the batch shares them (prepare_batch); only iterate_batch reads this.
    shared: tuple[str, ...] = ()


def content_targets(network: VGG, content_rgb01: jax.Array, cfg: Config) -> dict:
    graphdef, params = nnx.split(network)
    x = pixels.from_rgb01(jnp.asarray(content_rgb01), cfg.pixel_space)
    return _features_jit(graphdef, params, x, tuple(cfg.content_layers), cfg)


def features(network: VGG, image_rgb01, layers: Sequence[str], cfg: Config) -> dict:
    """The network's features of one RGB [0,1] image at ``layers``, as the step sees them."""
    graphdef, params = nnx.split(network)
    x = pixels.from_rgb01(jnp.asarray(image_rgb01), cfg.pixel_space)
    return _features_jit(graphdef, params, x, tuple(layers), cfg)


def style_targets(network: VGG, styles_rgb01: Sequence[np.ndarray], cfg: Config, *, blend: bool = True) -> dict:
    """Blended per-layer statistics of the style images (each at its own size).

    ``blend=False``: one set per style, stacked on a leading axis (guided regions, masks.py).
    """
    graphdef, params = nnx.split(network)
    per_style = []
    for s in styles_rgb01:
        x = pixels.from_rgb01(jnp.asarray(s), cfg.pixel_space)
        feats = _features_jit(graphdef, params, x, tuple(cfg.style_layers), cfg)
        per_style.append({n: losses.style_statistics(feats[n], cfg.style_loss, cfg.gram_norm) for n in cfg.style_layers})
    if not blend:
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *per_style)
        return {n: losses.finish_targets(v, cfg.style_loss) for n, v in stacked.items()}
    weights = cfg.style_blend_weights or (1.0,) * len(per_style)
    if len(weights) != len(per_style):
        raise UserError(
            f"--style-blend-weights has {len(weights)} values for {len(per_style)} style images; give one per style"
        )
    blended = losses.blend(per_style, weights)
    return {n: losses.finish_targets(v, cfg.style_loss) for n, v in blended.items()}


def initial_image(content_rgb01: np.ndarray, cfg: Config, init_image: np.ndarray | None = None) -> jax.Array:
    """The starting pixels in cfg.pixel_space, for one image."""
    shape = content_rgb01.shape
    if cfg.init == "content":
        r = jnp.asarray(content_rgb01)
    elif cfg.init == "random":
        key = jax.random.key(cfg.seed)
        if cfg.pixel_space == "caffe":
            # neural-style-pt: randn·0.001 in Caffe units, i.e. the mean-pixel grey.
            return jax.random.normal(key, shape, jnp.float32) * 0.001
        r = jax.random.uniform(key, shape, jnp.float32)  # pystiche: torch.rand_like
    else:
        r = jnp.asarray(init_image)
    return pixels.from_rgb01(r, cfg.pixel_space)


def check_size(shape: tuple[int, ...], cfg: Config, what: str) -> None:
    layers = cfg.all_layers if what == "content" else cfg.style_layers
    need = min_size(layers)
    if min(shape[:2]) < need:
        deepest = max(layers, key=lambda n: min_size([n]))
        raise UserError(
            f"the {what} image is {shape[1]}×{shape[0]} px after resizing, too small for layer "
            f"{deepest}: each side must be >= {need} px; raise --size"
        )


def prepare(
    network: VGG,
    content_rgb01: np.ndarray,
    styles_rgb01: Sequence[np.ndarray],
    cfg: Config,
    init_image: np.ndarray | None = None,
    *,
    masks: Sequence[np.ndarray] | None = None,
) -> Problem:
    """One content image and its styles, as a batch of one.

    ``masks``: one content-sized H×W mask per style, giving each style its region
    (guided statistics, :mod:`jaxstyle.masks`) instead of blending them everywhere.
    """
    check_size(content_rgb01.shape, cfg, "content")
    for s in styles_rgb01:
        check_size(s.shape, cfg, "style")
    # Refuse a run that cannot fit before anything large is allocated (one line, with what
    # to change) rather than die in an out-of-memory trace.
    memory.check_fits(cfg, content_rgb01.shape[:2])
    if masks is None:
        targets = {"style": style_targets(network, styles_rgb01, cfg)}
    else:
        from jaxstyle import masks as guides

        guides.check_masks(masks, len(styles_rgb01))
        targets = {
            "style": style_targets(network, styles_rgb01, cfg, blend=False),
            "masks": guides.layer_masks(np.stack(masks), cfg.style_layers),
        }
    if cfg.content_layers and cfg.content_weight:
        targets["content"] = content_targets(network, content_rgb01, cfg)
    init = initial_image(content_rgb01, cfg, init_image)
    batch = jax.tree.map(lambda a: jnp.asarray(a)[None], targets)
    return Problem(cfg, network, batch, init[None])


@dataclass
class Progress:
    step: int  # steps done
    total: int
    terms: dict[str, np.ndarray]  # loss terms at the last evaluated image, each (B,)
    seconds: float  # optimisation time so far (excluding the first chunk's compile)
    compile_seconds: float
    state: StepState
    problem: Problem

    def images(self) -> np.ndarray:
        """The current result, (B, H, W, 3) float32 RGB in [0, 1] (a device→host copy)."""
        return final_images(self.problem, self.state)


def default_chunk(cfg: Config) -> int:
    if cfg.chunk:
        return cfg.chunk
    # Measured (bench/): on XLA:CPU a rolled scan is several times slower than the
    # same step called from Python, so unroll there; 4 unrolled steps per call take 12 %
    # less CPU time per step than 1 (the kernels' transposed copies for the input gradient
    # are made once per call; 256², Adam, 2 cores) and compile in ~3 s (8 took 12 s). On
    # accelerators a rolled scan of 10 steps removes the per-step host round trip.
    return 4 if jax.default_backend() == "cpu" else 10


def iterate(
    problem: Problem,
    *,
    chunk: int | None = None,
    boundaries: Sequence[int] = (),
    steps: int | None = None,
    state: StepState | None = None,
) -> Iterator[Progress]:
    """Run ``cfg.steps`` steps, yielding after every chunk and at each of ``boundaries``.

    ``steps`` and ``state`` (batched, e.g. carried over from a coarser scale by
    :mod:`jaxstyle.multiscale`) override ``cfg.steps`` and the fresh initial state.
    """
    cfg = problem.cfg
    total = cfg.steps if steps is None else steps
    graphdef, params = nnx.split(problem.network)
    chunk = chunk or default_chunk(cfg)
    unroll = jax.default_backend() == "cpu"
    state = _init_states_jit(problem.init, cfg) if state is None else state
    stops = sorted({b for b in boundaries if 0 < b < total} | {total})
    done, spent, compile_s = 0, 0.0, 0.0
    for stop in stops:
        while done < stop:
            # Two programs at most: the first step alone (the first progress report comes
            # after one step, not a chunk) and any remainder before a stop run one step at a
            # time, everything else in whole chunks; never a third compile for a remainder.
            n = chunk if done > 0 and stop - done >= chunk else 1
            t0 = time.perf_counter()
            state, terms = _run_chunk_jit(graphdef, cfg, n, unroll, params, problem.targets, state)
            terms = jax.tree.map(lambda a: np.asarray(a[-1]), terms)
            elapsed = time.perf_counter() - t0
            if done == 0:
                compile_s = elapsed  # the first call pays the compile
            else:
                spent += elapsed
            done += n
            _check_finite(terms, done - 1)
            yield Progress(done, total, terms, spent, compile_s, state, problem)


def _check_finite(terms: dict[str, np.ndarray], at: int) -> None:
    for name, value in terms.items():
        if not np.all(np.isfinite(value)):
            raise UserError(
                f"the {name} loss became {float(np.ravel(value)[0])} at step {at}; lower --lr or the loss weights, "
                "or use --optimizer adam"
            )


def final_images(problem: Problem, state: StepState) -> np.ndarray:
    """(B, H, W, 3) float32 RGB in [0, 1]."""
    images = jax.vmap(lambda s: result_image(s, problem.cfg))(state)
    return np.clip(np.asarray(pixels.to_rgb01(images, problem.cfg.pixel_space)), 0.0, 1.0)


def load_inputs(content, styles, cfg: Config, init=None):
    """Paths or arrays → float32 RGB [0,1] arrays at the run's sizes."""
    content_u8 = _as_uint8(content, "content")
    h, w = content_u8.shape[:2]  # check before resizing up allocates the full-size image
    memory.check_fits(cfg, (max(1, round(h * cfg.size / max(h, w))), max(1, round(w * cfg.size / max(h, w)))))
    content_u8 = imageio.resize_long_side(content_u8, cfg.size)
    style_size = max(1, round(cfg.size * cfg.style_scale))
    styles_u8 = [imageio.resize_long_side(_as_uint8(s, "style"), style_size) for s in styles]
    init_image = None
    if cfg.init not in ("content", "random"):
        init_u8 = _as_uint8(init if init is not None else cfg.init, "init")
        init_image = imageio.to_float(imageio.resize_to(init_u8, *content_u8.shape[:2]))
    return imageio.to_float(content_u8), [imageio.to_float(s) for s in styles_u8], init_image


def _as_uint8(x, what: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        if x.ndim != 3 or x.shape[-1] != 3:
            raise UserError(f"the {what} array has shape {x.shape}; expected H×W×3")
        if x.dtype == np.uint8:
            return x
        return imageio.to_uint8(x)
    return imageio.load_image(x)


def stylize(
    content,
    style,
    *,
    weights=None,
    preset: str = "gatys",
    callback: Callable[[Progress], None] | None = None,
    network: VGG | None = None,
    boundaries: Sequence[int] = (),
    masks: Sequence | None = None,
    **options,
) -> np.ndarray:
    """Stylize ``content`` with ``style`` (a path/array, or a list of them to blend).

    ``options`` are :class:`jaxstyle.config.Config` fields (``steps=``, ``size=``,
    ``optimizer=``, …); defaults come from the preset. ``weights`` is a path, ``"random:SEED"``
    or ``None`` for the cached pretrained weights (or pass a loaded ``network``).
    ``callback`` sees a :class:`Progress` after every chunk of steps and at each step
    number in ``boundaries``. Returns H×W×3 float32 RGB in [0, 1].
    ``masks``: one mask (path or H×W array in [0, 1]) per style, white where it applies.
    """
    cfg = make_config(preset, **options)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if masks is not None or cfg.min_scale or cfg.preserve_color is not None:
        # Coarse-to-fine, colour control and regions: jaxstyle.control builds the problems.
        from jaxstyle import control

        return control.stylize(
            content, styles, cfg, weights=weights, network=network, callback=callback,
            boundaries=boundaries, masks=masks,
        )
    content_f, styles_f, init_image = load_inputs(content, styles, cfg)
    if network is None:
        from jaxstyle.weights import load_vgg

        network, _ = load_vgg(weights, model=cfg.model, source=cfg.weights_source)
    problem = prepare(network, content_f, styles_f, cfg, init_image)
    state = None
    for progress in iterate(problem, boundaries=boundaries):
        state = progress.state
        if callback is not None:
            callback(progress)
    if state is None:  # steps=0
        state = _init_states_jit(problem.init, cfg)
    return final_images(problem, state)[0]


# ------------------------------------------------------------------ batches of pairs
# For jaxstyle.batch: B pairs through one compiled step, targets computed once per unique
# image, the batch axis sharded over this process's devices.

BATCH_AXIS = "batch"


def batch_mesh(devices: Sequence | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: this process's local devices).

    Local, not global, devices: under ``jax.distributed`` each process runs its own share of
    the pairs, so no array ever spans hosts.
    """
    devices = list(devices) if devices is not None else jax.local_devices()
    return jax.make_mesh((len(devices),), (BATCH_AXIS,), (jax.sharding.AxisType.Auto,), devices=devices)


def _target_key(kind: str, key, shape, cfg: Config) -> tuple:
    # Everything besides the image that changes its features or statistics.
    common = (kind, key, shape, cfg.model, cfg.pixel_space, cfg.pooling, cfg.padding, cfg.avg_pool_scale)
    if kind == "content":
        return common + (cfg.content_layers,)
    return common + (cfg.style_layers, cfg.style_loss, cfg.gram_norm, cfg.style_blend_weights)


def _stack(trees: Sequence) -> dict:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def prepare_batch(
    network: VGG,
    contents: Sequence[np.ndarray],
    styles_per_pair: Sequence[Sequence[np.ndarray]],
    cfg: Config,
    *,
    inits: np.ndarray | jax.Array | None = None,
    keys: tuple[Sequence, Sequence[Sequence]] | None = None,
    cache=None,
) -> Problem:
    """B pairs as one problem: ``contents[i]`` (all the same shape) with ``styles_per_pair[i]``
    (several are blended by ``cfg.style_blend_weights``), float32 RGB in [0, 1].

    Content features and style statistics are computed once per unique image (a blend:
    once per set of styles). Images are
    the same when their ``keys`` are equal (``(content_keys, style_keys_per_pair)``; default:
    the same array object); ``cache``, any mutable mapping, keeps the targets across calls
    (it belongs to one network). A target that every pair shares is stored once, without
    the batch axis (``Problem.shared``), and broadcast inside the compiled step: the fast
    path for one content with many styles and many contents with one style.
    ``inits``: (B, H, W, 3) starting pixels in ``cfg.pixel_space`` (default: from ``cfg.init``).
    Solve it with :func:`iterate_batch`.
    """
    if len({c.shape for c in contents}) != 1:
        raise ValueError(f"prepare_batch needs contents of one shape, got {sorted({c.shape for c in contents})}")
    if keys is None:
        keys = ([id(c) for c in contents], [[id(s) for s in ss] for ss in styles_per_pair])
    content_keys = list(keys[0])
    style_keys = [tuple(k) for k in keys[1]]
    cache = {} if cache is None else cache

    def cached(kind, key, shape, compute):
        ck = _target_key(kind, key, shape, cfg)
        value = cache.get(ck)
        if value is None:
            value = compute()
            cache[ck] = value
        return value

    blended = {}
    for styles, ks in zip(styles_per_pair, style_keys):
        if ks not in blended:
            # Exactly the single-image path's targets. Cached per style *set*: in product
            # and zip runs that is one image; blends sharing an image recompute it.
            shape = tuple(tuple(s.shape) for s in styles)
            blended[ks] = cached("style", ks, shape, lambda styles=styles: style_targets(network, styles, cfg))
    targets, shared = {}, []
    if len(blended) == 1:
        targets["style"], shared = next(iter(blended.values())), ["style"]
    else:
        targets["style"] = _stack([blended[k] for k in style_keys])
    if cfg.content_layers and cfg.content_weight:
        feats = {}
        for c, k in zip(contents, content_keys):
            if k not in feats:
                feats[k] = cached("content", k, c.shape, lambda c=c: content_targets(network, c, cfg))
        if len(feats) == 1:
            targets["content"] = next(iter(feats.values()))
            shared.append("content")
        else:
            targets["content"] = _stack([feats[k] for k in content_keys])
    if inits is None:
        inits = jnp.stack([initial_image(c, cfg) for c in contents])
    return Problem(cfg, network, targets, jnp.asarray(inits), tuple(shared))


def _local_chunk(graphdef, cfg: Config, n: int, unroll: bool, shared, params, targets, state):
    b = state.image.shape[0]
    # Broadcast inside the program: XLA fuses it into the loss, so a shared target is
    # never materialised B times.
    targets = {
        k: jax.tree.map(lambda a: jnp.broadcast_to(a, (b, *a.shape)), v) if k in shared else v
        for k, v in targets.items()
    }
    return _run_chunk(graphdef, cfg, n, unroll, params, targets, state)


def _run_batch_chunk(graphdef, cfg: Config, n: int, unroll: bool, shared, sharding, params, targets, state):
    TRACES["batch_chunk"] += 1
    local = functools.partial(_local_chunk, graphdef, cfg, n, unroll, shared)
    if sharding is None:
        return local(params, targets, state)
    # shard_map, not the automatic partitioner: each device runs exactly the program one
    # device runs for its pairs, with no partitioning choice in between (tested: the same
    # numbers as one device of the same runtime, bit for bit).
    spec = jax.sharding.PartitionSpec
    batch, whole = spec(BATCH_AXIS), spec()
    in_specs = (whole, {k: whole if k in shared else batch for k in targets}, batch)
    return jax.shard_map(local, mesh=sharding.mesh, in_specs=in_specs, out_specs=(batch, spec(None, BATCH_AXIS)),
                         check_vma=False)(params, targets, state)


_run_batch_chunk_jit = jax.jit(_run_batch_chunk, static_argnums=(0, 1, 2, 3, 4, 5), donate_argnums=(8,))


def _init_batch_states(images, cfg: Config, sharding):
    state = _init_states(images, cfg)
    # Without the constraint the optimiser's zero-initialised history would be replicated.
    return state if sharding is None else jax.lax.with_sharding_constraint(state, sharding)


_init_batch_states_jit = jax.jit(_init_batch_states, static_argnums=(1, 2))


def iterate_batch(
    problem: Problem,
    *,
    mesh: jax.sharding.Mesh | None = None,
    chunk: int | None = None,
    steps: int | None = None,
    state: StepState | None = None,
) -> Iterator[Progress]:
    """:func:`iterate` for :func:`prepare_batch` problems.

    With a ``mesh`` of several devices the batch axis is split over it (B must be a
    multiple of its size; ``shard_map``) and the network and shared targets are replicated;
    each device runs exactly the program one device runs for its pairs, so the numbers do
    not change with the device count (within one XLA runtime). A non-finite loss is not
    raised: it shows in ``Progress.terms`` for its pair alone, and the others go on.
    ``steps`` and ``state`` (batched, e.g. carried over from a coarser scale) override
    ``cfg.steps`` and the fresh initial state. With 0 steps one Progress at step 0 carries
    the initial state.
    """
    cfg = problem.cfg
    total = cfg.steps if steps is None else steps
    graphdef, params = nnx.split(problem.network)
    targets, init, sharding = problem.targets, problem.init, None
    if mesh is not None and mesh.size > 1:
        if init.shape[0] % mesh.size:
            raise ValueError(f"batch of {init.shape[0]} does not divide over {mesh.size} devices; pad it")
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(BATCH_AXIS))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        params = jax.device_put(params, replicated)
        targets = {k: jax.device_put(v, replicated if k in problem.shared else sharding) for k, v in targets.items()}
        init = jax.device_put(init, sharding)
        state = None if state is None else jax.device_put(state, sharding)
    chunk = chunk or default_chunk(cfg)
    unroll = jax.default_backend() == "cpu"
    key = compiled_config(cfg)  # run-only fields (steps, seed, size…) do not recompile
    state = _init_batch_states_jit(init, key, sharding) if state is None else state
    if total == 0:
        yield Progress(0, 0, {}, 0.0, 0.0, state, problem)
        return
    done, spent, compile_s = 0, 0.0, 0.0
    while done < total:
        # The same chunking as iterate (a first step alone, then whole chunks, a remainder
        # one step at a time), so a batched pair takes the steps a single run takes.
        n = chunk if done > 0 and total - done >= chunk else 1
        t0 = time.perf_counter()
        state, terms = _run_batch_chunk_jit(
            graphdef, key, n, unroll, problem.shared, sharding, params, targets, state
        )
        terms = jax.tree.map(lambda a: np.asarray(a[-1]), terms)
        elapsed = time.perf_counter() - t0
        if done == 0:
            compile_s = elapsed
        else:
            spent += elapsed
        done += n
        yield Progress(done, total, terms, spent, compile_s, state, problem)


class _CallableModule(types.ModuleType):
    """Lets ``jaxstyle.stylize`` be both this module and the API function.

    The package exports ``stylize(content, style, ...)`` as its main entry point, and the
    function's name is this module's; without this, the function would hide the module
    (``jaxstyle.stylize.prepare`` would fail once ``jaxstyle`` is imported).
    """

    def __call__(self, *args, **kwargs):
        return stylize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
