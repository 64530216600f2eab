"""Run configuration: the only place where defaults live.

A run is a :class:`Config`: the preset's name, the **recipe** (:class:`Recipe`: everything
that changes the compiled program — layers, loss forms and weights, pooling, padding,
pixel space, optimiser and its hyper-parameters, precision) and the **run settings**
(:class:`RunSettings`: size, steps, schedule, start, seed, blending, colour control —
what the program is run on, never what it is). The recipe is frozen and hashable: it is
the only static argument of every jitted function and its own compile key, so another
``--steps`` or ``--seed`` never recompiles.

Presets reproduce published recipes term by term (README "Recipes"); every field a
preset does not set takes the value written here. The CLI and the Python API both go
through :func:`make_config` with the same flat option names, so they share the defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from jaxstyle.errors import UserError
from jaxstyle.model import names as vgg
from jaxstyle.model.names import SPACES

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Names only: the objects behind them are chosen once, by jaxstyle.objective.style and
# jaxstyle.optim.optimizers (their registries are keyed by these tuples; a test checks it).
OPTIMIZERS = ("lbfgs", "adam", "lbfgs-zoom")
STYLE_LOSSES = ("gram", "w2")
INITS = ("content", "random")  # or a path to an image
GRAM_NORMS = ("hw", "chw")
TV_LOSSES = ("l1_sum", "l2_nine_point")
PRECISIONS = ("auto", "fp32", "bf16")  # auto: resolve_precision, when the config is made
REMATS = ("none", "blocks")
PRESERVE_COLORS = ("luminance", "histogram")
WEIGHTS_SOURCES = ("torchvision", "caffe")

# Adam's step size depends on the pixel units: 1.0 in Caffe's 0–255 space is
# neural-style-pt's default; 0.02 in [0,1] units is crowsonkb's.
ADAM_LR = {"caffe": 1.0, "rgb01": 0.02}
LBFGS_LR = 1.0


@dataclass(frozen=True)
class Recipe:
    """What the compiled step computes. Units and forms: README "Recipes"."""

    # network
    model: str = "vgg19"
    pooling: str = "max"
    avg_pool_scale: float = 1.0
    padding: str = "zeros"
    # where the optimised pixels live (jaxstyle.model.pixels)
    pixel_space: str = "rgb01"
    # content term: content_weight * mean((F - F_c)^2), summed over layers
    content_layers: tuple[str, ...] = ("relu4_2",)
    content_weight: float = 1.0
    # style term: style_weight * sum_l w_l * mean((G_l - G_s,l)^2)
    style_layers: tuple[str, ...] = GATYS_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: 1 per layer
    normalize_layer_weights: bool = True  # divide w_l by their sum
    style_weight: float = 1e3
    style_loss: str = "gram"
    gram_norm: str = "hw"  # Gram divided by H*W ("hw") or C*H*W ("chw")
    # total variation
    tv_loss: str = "l1_sum"
    tv_weight: float = 0.0
    # video (Ruder et al. 2016): weight of the deviation from the warped previous frame
    temporal_weight: float = 0.0
    # optimiser
    optimizer: str = "lbfgs"
    lr: float | None = None  # None: LBFGS_LR or ADAM_LR[pixel_space]
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    lbfgs_history: int = 100
    lbfgs_tolerance_grad: float = 1e-7
    lbfgs_tolerance_change: float = 1e-9
    # jaxstyle's (not torch's): weights of σ = 1, 2, 4… px Gaussian blurs in L-BFGS's initial
    # inverse Hessian (optim.lbfgs); () is torch's scalar one
    lbfgs_precondition: tuple[float, ...] = ()
    clamp: bool = False  # project onto the pixel box after every step
    ema_decay: float | None = None  # write a bias-corrected EMA of the iterates instead
    # arithmetic: "auto" is resolved by make_config (resolve_precision): a made config holds
    # "fp32" or "bf16", so the compile key and every report name what ran
    precision: str = "auto"
    # "blocks": recompute each VGG block's activations in the backward pass (jax.checkpoint),
    # for large images on accelerators; on XLA:CPU it saved no memory (see plan.memory)
    remat: str = "none"

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return ADAM_LR[self.pixel_space] if self.optimizer == "adam" else LBFGS_LR

    @property
    def layer_weights(self) -> tuple[float, ...]:
        w = self.style_layer_weights or (1.0,) * len(self.style_layers)
        if self.normalize_layer_weights:
            total = sum(w)
            w = tuple(x / total for x in w)
        return tuple(w)

    @property
    def all_layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))

    @property
    def uses_content(self) -> bool:
        return bool(self.content_layers) and self.content_weight != 0


@dataclass(frozen=True)
class RunSettings:
    """What a recipe is run on and for how long; never enters a compiled program."""

    size: int = 512  # long side of the output, in pixels
    style_scale: float = 1.0  # style image long side = size * style_scale
    steps: int = 500
    # coarse-to-fine (crowsonkb): long sides from min_scale up to size, ×√2 per scale;
    # initial_steps at the first scale, steps at each later one. None or 0: one scale.
    min_scale: int | None = None
    initial_steps: int | None = None  # None: steps
    init: str = "content"  # "content", "random" or an image path
    seed: int = 0
    style_blend_weights: tuple[float, ...] | None = None  # None: equal; always normalised
    preserve_color: str | None = None  # Gatys et al. 2017: "luminance" or "histogram"
    chunk: int = 0  # steps per compiled call; 0 = automatic (jaxstyle.engine.loop)


NETWORKS = ("raw", "normalized")


@dataclass(frozen=True)
class Config:
    """One run: a preset's recipe and run settings, with the weights it was tuned on."""

    preset: str = "gatys"
    weights_source: str = "torchvision"  # which download the recipe was tuned on
    # "raw": the weights as trained (the preset's own weights: exact reproduction of its
    # program); "normalized": Gatys' normalised network (jaxstyle.model.normalize), used with
    # any other weights file, with the preset's NORMALIZED loss weights.
    network: str = "raw"
    recipe: Recipe = Recipe()
    run: RunSettings = RunSettings()


RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunSettings))
OPTION_FIELDS = ("weights_source",) + RECIPE_FIELDS + RUN_FIELDS  # the flat option names
_TUPLES = ("content_layers", "style_layers", "style_layer_weights", "style_blend_weights", "lbfgs_precondition")

# ProGamerGov/neural-style-pt's objective (neural_style.py @7251405) with the Caffe VGG19: its
# loss terms, weights and L-BFGS settings, shared by the presets that optimise exactly it.
_NSPT_OBJECTIVE = dict(
    weights_source="caffe",
    pixel_space="caffe",
    content_weight=5.0,
    normalize_layer_weights=False,
    style_weight=100.0,
    gram_norm="chw",
    tv_loss="l1_sum",
    tv_weight=1e-3,
    lbfgs_tolerance_grad=-1.0,
    lbfgs_tolerance_change=-1.0,
)

# Each preset is a published recipe, reproduced term by term (see README "Recipes"), except
# ``fast``, jaxstyle's own schedule for one of them.
PRESETS: dict[str, dict] = {
    # pystiche's CLI defaults (pystiche/_cli.py @71217c2) with torchvision VGG19.
    "gatys": dict(),
    # neural-style-pt's defaults: its objective, 1000 steps from noise.
    "nspt": dict(_NSPT_OBJECTIVE, steps=1000, init="random"),
    # jaxstyle's own: neural-style-pt's objective, reached sooner. Not a published recipe: it
    # starts at the content image (nspt: noise) and solves coarse-to-fine from half the default
    # size (256 → 362 → 512 px; 250, 200, 200 steps: ~0.36 of nspt's 1000 full-size steps in
    # work). Its time to an equally good image is NOT yet measured fairly (README "Time to
    # image": nspt does not clamp, and the 8-bit written images' losses were dominated by
    # clipping). At other sizes set --min-scale SIZE/2.
    "fast": dict(_NSPT_OBJECTIVE, init="content", min_scale=256, initial_steps=250, steps=200),
    # crowsonkb/style-transfer-pytorch (style_transfer.py @e7e2c71) with torchvision VGG19.
    "quality": dict(
        padding="replicate_first",
        # Deviation from crowsonkb's default (max pooling): average pooling ×2, crowsonkb's
        # own option, as the issue asks.
        pooling="avg",
        avg_pool_scale=2.0,
        style_layer_weights=(256.0, 64.0, 16.0, 4.0, 1.0),
        style_loss="w2",
        style_weight=1.0,
        content_weight=0.015,
        tv_loss="l2_nine_point",
        tv_weight=2.0,
        optimizer="adam",
        adam_b2=0.99,
        clamp=True,
        ema_decay=0.99,
        min_scale=128,
        initial_steps=1000,
        steps=500,
    ),
}


# Each preset's loss weights on Gatys' normalised network (every filter's mean activation 1,
# jaxstyle.model.normalize): used when the weights file is not the one the preset was tuned
# on (e.g. the package-index Caffe VGG-19 under a torchvision preset), so that one set of
# loss weights serves every file. Recipe fields only: the run settings stay the preset's.
# Tuned on the package-index VGG-19 (README "Weights and presets"); the measured criteria
# are in tests/test_realweights.py.
NORMALIZED: dict[str, dict] = {
    # Measured: the Gram distance to the style drops 22.5× in 100 L-BFGS steps at 128 px, and
    # the result stays closer to the content than the style image is (tests/test_realweights.py).
    "gatys": dict(style_weight=30.0),
    # Not tuned by eye: keeps the raw Caffe network's style/content ratio (~24) at the oracle
    # images. Only used with weights other than the Caffe VGG-19 (e.g. torchvision's).
    "nspt": dict(style_weight=2.5e5),
    "fast": dict(style_weight=2.5e5),  # nspt's objective, so nspt's value
    # Deviation from crowsonkb: the paper's equal layer weights instead of 256:64:16:4:1.
    # Those weights lean on relu1_1 (on the normalised network they give it 66 % of the W2
    # loss at the test images, relu4_1 1 %), and the result barely matched the deep layers
    # (Gatys' style distance 4.1x lower than the content image's after 200 Adam steps at
    # 128 px); on the normalised network the layers' W2 values are already comparable (2.4–8.6
    # at those images), so each gets weight 1: 12.9x after 200 steps, 20.5x after 800 (README
    # "Weights and presets"). crowsonkb's content and style weights are kept: W2 and the
    # content MSE both scale with activations², so their ratio does not depend on the network.
    "quality": dict(style_layer_weights=(1.0, 1.0, 1.0, 1.0, 1.0)),
}


assert all(set(v) <= set(RECIPE_FIELDS) for v in NORMALIZED.values()), "NORMALIZED: recipe fields only"


def make_config(preset: str = "gatys", *, network: str = "raw", **options) -> Config:
    """The preset's config with ``options`` (flat names: any field of :class:`Recipe` or
    :class:`RunSettings`, or ``weights_source``; ``None`` values are ignored), checked.

    ``network="normalized"``: the preset on Gatys' normalised network, i.e. with its
    :data:`NORMALIZED` loss weights under the options given here."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    _choice("network", network, NETWORKS)
    unknown = set(options) - set(OPTION_FIELDS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values = dict(PRESETS[preset])
    if network == "normalized":
        values.update(NORMALIZED.get(preset, {}))
    values.update({k: v for k, v in options.items() if v is not None})
    for key in _TUPLES:
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    cfg = Config(
        preset=preset,
        network=network,
        weights_source=values.pop("weights_source", Config.weights_source),
        recipe=Recipe(**{k: v for k, v in values.items() if k in RECIPE_FIELDS}),
        run=RunSettings(**{k: v for k, v in values.items() if k in RUN_FIELDS}),
    )
    validate(cfg)
    if cfg.recipe.precision == "auto":
        cfg = dataclasses.replace(cfg, recipe=dataclasses.replace(cfg.recipe, precision=resolve_precision("auto")))
    return cfg


# Backends where bfloat16 features and Grams are faster than float32. XLA:CPU 0.10.2 converts
# bf16 convolution operands to f32 (bench/bf16_cpu.py): bf16 is slower there, so auto is fp32.
BF16_BACKENDS = ("gpu", "cuda", "rocm", "tpu")


def resolve_precision(precision: str, backend: str | None = None) -> str:
    """``precision`` with "auto" resolved for ``backend`` (default: ``jax.default_backend()``,
    asked now, at run time: the first call starts JAX's runtime): "bf16" on GPU/TPU, "fp32"
    elsewhere (CPU). "fp32" and "bf16" are returned as they are."""
    if precision != "auto":
        return precision
    if backend is None:
        import jax

        backend = jax.default_backend()
    return "bf16" if backend in BF16_BACKENDS else "fp32"


def _field_type(name: str) -> str:
    for cls in (Recipe, RunSettings, Config):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return str(f.type)
    raise KeyError(name)


def parse_option(name: str, value):
    """``value`` (a JSON value, or text as in a CSV cell or on the command line) as the
    option's type; ``TypeError``/``ValueError`` with the reason when it is not one.

    Tuples accept a list or comma-separated text; ``bool`` accepts true/false, yes/no, 1/0;
    an optional option accepts ``none``/``off``/null. Only the type is checked here:
    :func:`validate` checks ranges when the config is made.
    """
    kind = _field_type(name)
    optional = kind.endswith("| None")
    base = kind.replace("| None", "").strip()
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "off", "")):
        if optional:
            return None
        raise TypeError("a value is required")
    if base.startswith("tuple["):
        item = base[len("tuple["):].split(",")[0].strip()
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
        return tuple(_scalar(item, v) for v in items)
    return _scalar(base, value)


def _scalar(kind: str, value):
    if isinstance(value, (list, tuple, dict)):
        raise TypeError(f"expected a {kind}, got a {type(value).__name__}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError("expected a whole number")
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise TypeError("expected a number")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(f"expected text, got {value!r}")
        return value.strip()
    raise TypeError(f"unsupported option type {kind}")


def with_network(cfg: Config, network: str) -> Config:
    """``cfg`` for ``network`` ("raw" or "normalized"): every option that differs from what
    the preset gives on ``cfg``'s network is kept (it was asked for); the rest follow the
    preset on the new network."""
    if network == cfg.network:
        return cfg
    base = options_of(make_config(cfg.preset, network=cfg.network))
    asked = {k: v for k, v in options_of(cfg).items() if base.get(k) != v}
    return make_config(cfg.preset, network=network, **asked)


def options_of(cfg: Config) -> dict:
    """The flat options that rebuild ``cfg`` with :func:`make_config` (its preset's name aside)."""
    return {"weights_source": cfg.weights_source, **dataclasses.asdict(cfg.recipe), **dataclasses.asdict(cfg.run)}


def replace(cfg: Config, **changes) -> Config:
    """``cfg`` with flat options changed, checked."""
    return make_config(cfg.preset, network=cfg.network, **{**options_of(cfg), **changes})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{_flag(name)} {value!r} is not valid; choose one of {', '.join(map(str, choices))}")


def _number(name: str, value, *, low=None, high=None, allow_zero: bool = True, integer: bool = False) -> None:
    """A finite number in [low, high] (or > 0 when ``allow_zero`` is False and low is 0)."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer())
    if bad or not math.isfinite(value):
        kind = "a whole number" if integer else "a finite number"
        raise UserError(f"{_flag(name)} must be {kind}, got {value!r}")
    if low is not None and (value < low or (not allow_zero and value == low)):
        raise UserError(f"{_flag(name)} must be {'>=' if allow_zero else '>'} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise UserError(f"{_flag(name)} must be <= {high:g}, got {value:g}")


# Past these a run is a typo, not a wish: they would only fail later, after compiling.
MAX_SIZE = 16384
MAX_STEPS = 10_000_000
MAX_STYLE_SCALE = 16.0


def validate(cfg: Config) -> None:
    """Raise ``UserError`` naming the first bad option."""
    r, s = cfg.recipe, cfg.run
    _choice("weights_source", cfg.weights_source, WEIGHTS_SOURCES)
    _choice("model", r.model, vgg.MODELS)
    _choice("pooling", r.pooling, vgg.POOLINGS)
    _choice("padding", r.padding, vgg.PADDINGS)
    _choice("pixel_space", r.pixel_space, SPACES)
    _choice("optimizer", r.optimizer, OPTIMIZERS)
    _choice("style_loss", r.style_loss, STYLE_LOSSES)
    _choice("gram_norm", r.gram_norm, GRAM_NORMS)
    _choice("tv_loss", r.tv_loss, TV_LOSSES)
    _choice("precision", r.precision, PRECISIONS)
    _choice("remat", r.remat, REMATS)
    _number("size", s.size, low=0, allow_zero=False, high=MAX_SIZE, integer=True)
    _number("style_scale", s.style_scale, low=0, allow_zero=False, high=MAX_STYLE_SCALE)
    _number("steps", s.steps, low=0, high=MAX_STEPS, integer=True)
    _number("seed", s.seed, integer=True)
    _number("chunk", s.chunk, low=0, high=10_000, integer=True)
    _number("lbfgs_history", r.lbfgs_history, low=0, allow_zero=False, high=10_000, integer=True)
    _number("avg_pool_scale", r.avg_pool_scale, low=0, allow_zero=False)
    for name in ("content_weight", "style_weight", "tv_weight", "temporal_weight"):
        _number(name, getattr(r, name), low=0)
    for name in ("adam_b1", "adam_b2"):
        _number(name, getattr(r, name), low=0, high=1)
    _number("adam_eps", r.adam_eps, low=0)
    _number("lbfgs_tolerance_grad", r.lbfgs_tolerance_grad)
    _number("lbfgs_tolerance_change", r.lbfgs_tolerance_change)
    if len(r.lbfgs_precondition) > 8:
        raise UserError("--lbfgs-precondition takes at most 8 weights (blurs of σ = 1 … 128 px)")
    for c in r.lbfgs_precondition:
        _number("lbfgs_precondition", c, low=0, high=1e3)
    if r.lbfgs_precondition and r.optimizer != "lbfgs":
        raise UserError("--lbfgs-precondition applies to --optimizer lbfgs only")
    _number("lr", r.learning_rate, low=0, allow_zero=False)
    if not r.style_layers and not r.content_layers:
        raise UserError("no loss layers: give --style-layers and/or --content-layers")
    vgg.check_layers(r.all_layers, r.model)
    w = r.style_layer_weights
    if w is not None:
        if len(w) != len(r.style_layers):
            raise UserError(
                f"--style-layer-weights has {len(w)} values for {len(r.style_layers)} style layers; give one per layer"
            )
        for x in w:
            _number("style_layer_weights", x, low=0)
        if r.normalize_layer_weights and sum(w) <= 0:
            raise UserError("--style-layer-weights must be >= 0 with a positive sum")
    if s.style_blend_weights is not None:
        for x in s.style_blend_weights:
            _number("style_blend_weights", x, low=0)
        if sum(s.style_blend_weights) <= 0:
            raise UserError("--style-blend-weights must be >= 0 with a positive sum")
    if r.ema_decay is not None:
        _number("ema_decay", r.ema_decay, low=0)
        if not r.ema_decay < 1:
            raise UserError(f"--ema-decay must be in [0, 1), got {r.ema_decay}")
    if s.preserve_color is not None:
        _choice("preserve_color", s.preserve_color, PRESERVE_COLORS)
    if s.min_scale is not None:
        _number("min_scale", s.min_scale, low=0, high=MAX_SIZE, integer=True)
    if s.initial_steps is not None:
        _number("initial_steps", s.initial_steps, low=0, high=MAX_STEPS, integer=True)
    if not s.init:
        raise UserError("--init must be 'content', 'random' or a path to an image")


__all__ = ["Config", "NETWORKS", "NORMALIZED", "PRESETS", "Recipe", "RunSettings", "make_config", "options_of", "parse_option", "replace", "resolve_precision", "validate", "with_network"]
