"""Run configuration: the only place where defaults live.

A :class:`Config` is frozen and hashable, so it can be a static argument of the jitted
step. Presets reproduce published recipes term by term; every field a preset does not set
takes the value written here. The CLI and the Python API both go through
:func:`make_config`, so they share the defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from jaxstyle import pixels, vgg
from jaxstyle.errors import UserError

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

OPTIMIZERS = ("lbfgs", "adam", "lbfgs-zoom")
INITS = ("content", "random")  # or a path to an image
GRAM_NORMS = ("hw", "chw")
STYLE_LOSSES = ("gram", "w2")
TV_LOSSES = ("l1_sum", "l2_nine_point")
PRECISIONS = ("fp32", "bf16")
REMATS = ("none", "blocks")
PRESERVE_COLORS = ("luminance", "histogram")

# Adam's step size depends on the pixel units: 1.0 in Caffe's 0–255 space is
# neural-style-pt's default; 0.02 in [0,1] units is crowsonkb's.
ADAM_LR = {"caffe": 1.0, "rgb01": 0.02}
LBFGS_LR = 1.0


@dataclass(frozen=True)
class Config:
    """One stylization run. Units and forms are in the README's "Recipes" section."""

    preset: str = "gatys"
    # network and weights
    model: str = "vgg19"
    weights_source: str = "torchvision"  # which download the recipe was tuned on
    pooling: str = "max"
    avg_pool_scale: float = 1.0
    padding: str = "zeros"
    # where the optimised pixels live (see pixels.py)
    pixel_space: str = "rgb01"
    # images
    size: int = 512  # long side of the output, in pixels
    style_scale: float = 1.0  # style image long side = size * style_scale
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
    style_blend_weights: tuple[float, ...] | None = None  # None: equal; always normalised
    # total variation
    tv_loss: str = "l1_sum"
    tv_weight: float = 0.0
    # optimiser
    optimizer: str = "lbfgs"
    lr: float | None = None  # None: LBFGS_LR or ADAM_LR[pixel_space]
    steps: int = 500
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    lbfgs_history: int = 100
    lbfgs_tolerance_grad: float = 1e-7
    lbfgs_tolerance_change: float = 1e-9
    clamp: bool = False  # project onto the [0,1] box after every step (Adam only)
    ema_decay: float | None = None  # write a bias-corrected EMA of the iterates instead
    # coarse-to-fine (crowsonkb): long sides from min_scale up to size, ×√2 per scale;
    # initial_steps at the first scale, steps at each later one. None or 0: one scale.
    min_scale: int | None = None
    initial_steps: int | None = None  # None: steps
    # colour control (Gatys et al. 2017): None, "luminance" or "histogram"
    preserve_color: str | None = None
    # start
    init: str = "content"
    seed: int = 0
    # execution, not recipe
    precision: str = "fp32"
    chunk: int = 0  # steps per compiled call; 0 = automatic
    # "blocks": recompute each VGG block's activations in the backward pass (jax.checkpoint),
    # for large images on accelerators; on XLA:CPU it saved no memory (see jaxstyle.memory)
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


# Each preset is a published recipe, reproduced term by term; see README "Recipes".
PRESETS: dict[str, dict] = {
    # pystiche's CLI defaults (pystiche/_cli.py @71217c2) with torchvision VGG19.
    "gatys": dict(),
    # ProGamerGov/neural-style-pt defaults (neural_style.py @7251405) with the Caffe VGG19.
    "nspt": dict(
        weights_source="caffe",
        pixel_space="caffe",
        content_weight=5.0,
        normalize_layer_weights=False,
        style_weight=100.0,
        gram_norm="chw",
        tv_loss="l1_sum",
        tv_weight=1e-3,
        steps=1000,
        lbfgs_tolerance_grad=-1.0,
        lbfgs_tolerance_change=-1.0,
        init="random",
    ),
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


def make_config(preset: str = "gatys", **overrides) -> Config:
    """The preset's config with ``overrides`` applied (``None`` values are ignored), checked."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values = dict(PRESETS[preset], preset=preset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("content_layers", "style_layers", "style_layer_weights", "style_blend_weights"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    cfg = Config(**values)
    validate(cfg)
    return cfg


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"--{name.replace('_', '-')} {value!r} is not valid; choose one of {', '.join(map(str, choices))}")


def _positive(name: str, value, allow_zero: bool = False) -> None:
    if not (value > 0 or (allow_zero and value == 0)):
        raise UserError(f"--{name.replace('_', '-')} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(cfg: Config) -> None:
    """Raise ``UserError`` naming the first bad option."""
    _choice("model", cfg.model, vgg.MODELS)
    _choice("pooling", cfg.pooling, vgg.POOLINGS)
    _choice("padding", cfg.padding, vgg.PADDINGS)
    _choice("pixel_space", cfg.pixel_space, pixels.SPACES)
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("style_loss", cfg.style_loss, STYLE_LOSSES)
    _choice("gram_norm", cfg.gram_norm, GRAM_NORMS)
    _choice("tv_loss", cfg.tv_loss, TV_LOSSES)
    _choice("precision", cfg.precision, PRECISIONS)
    _choice("remat", cfg.remat, REMATS)
    _positive("size", cfg.size)
    _positive("style_scale", cfg.style_scale)
    _positive("steps", cfg.steps, allow_zero=True)
    _positive("lbfgs_history", cfg.lbfgs_history)
    _positive("chunk", cfg.chunk, allow_zero=True)
    for name in ("content_weight", "style_weight", "tv_weight"):
        _positive(name, getattr(cfg, name), allow_zero=True)
    if cfg.learning_rate <= 0:
        raise UserError(f"--lr must be > 0, got {cfg.learning_rate}")
    if not cfg.style_layers and not cfg.content_layers:
        raise UserError("no loss layers: give --style-layers and/or --content-layers")
    vgg.check_layers(cfg.all_layers, cfg.model)
    w = cfg.style_layer_weights
    if w is not None:
        if len(w) != len(cfg.style_layers):
            raise UserError(
                f"--style-layer-weights has {len(w)} values for {len(cfg.style_layers)} style layers; give one per layer"
            )
        if any(x < 0 for x in w) or (cfg.normalize_layer_weights and sum(w) <= 0):
            raise UserError("--style-layer-weights must be >= 0 with a positive sum")
    if cfg.style_blend_weights is not None and (
        any(x < 0 for x in cfg.style_blend_weights) or sum(cfg.style_blend_weights) <= 0
    ):
        raise UserError("--style-blend-weights must be >= 0 with a positive sum")
    if cfg.ema_decay is not None and not 0 <= cfg.ema_decay < 1:
        raise UserError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.preserve_color is not None:
        _choice("preserve_color", cfg.preserve_color, PRESERVE_COLORS)
    if cfg.min_scale is not None:
        _positive("min_scale", cfg.min_scale, allow_zero=True)
    if cfg.initial_steps is not None:
        _positive("initial_steps", cfg.initial_steps, allow_zero=True)
    if cfg.init not in INITS and not cfg.init:
        raise UserError("--init must be 'content', 'random' or a path to an image")


def replace(cfg: Config, **changes) -> Config:
    new = dataclasses.replace(cfg, **changes)
    validate(new)
    return new


__all__ = ["Config", "PRESETS", "make_config", "replace", "validate"]
