"""Form fields → a checked :class:`jaxstyle.config.Config`: the CLI's option names, no dashes.

Only the options listed here are accepted (an allow-list: a field that names a file, such as
``init=PATH``, never reaches the config), each parsed by its own type, with serve's own caps
on the size and step count so one request cannot hold the device for hours.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxstyle.config import PRESETS, Config, make_config, parse_option
from jaxstyle.errors import UserError


# The CLI's options (jaxstyle/cli/options.py) less --model (the server runs one network per
# weights source) and --init PATH (only 'content' or 'random'). Each is parsed by its field's
# own type (jaxstyle.config.parse_option), so the names and types cannot drift from the CLI's.
ALLOWED = (
    "size", "steps", "optimizer", "lr", "content_weight", "style_weight", "tv_weight", "content_layers",
    "style_layers", "style_layer_weights", "style_blend_weights", "style_scale", "init", "seed", "pooling",
    "gram_norm", "tv_loss", "padding", "ema_decay", "lbfgs_history", "precision", "chunk", "remat",
    "min_scale", "initial_steps", "preserve_color", "clamp",
)
MAX_TEXT = 200  # characters in one option value


@dataclass(frozen=True)
class Limits:
    max_size: int = 1024  # long side, px
    max_steps: int = 5000
    max_bytes: int = 20 << 20  # one request's body
    max_pixels: int = 40_000_000  # one decoded upload
    max_styles: int = 8


def parse(fields: dict[str, str], limits: Limits) -> tuple[Config, dict]:
    """(config, the options as given, parsed: JSON-safe, stored with the job)."""
    preset = fields.get("preset", "gatys")
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    options = {}
    for name, text in fields.items():
        if name == "preset":
            continue
        if name not in ALLOWED:
            raise UserError(f"unknown option {name!r}; see `jaxstyle stylize --help` for the names (no dashes)")
        if len(text) > MAX_TEXT:
            raise UserError(f"option {name} is longer than {MAX_TEXT} characters")
        try:
            options[name] = parse_option(name, text)
        except (TypeError, ValueError):
            raise UserError(f"option {name}: cannot parse {text[:40]!r}") from None
    if options.get("init", "content") not in ("content", "random"):
        raise UserError("init must be 'content' or 'random' (the server reads no paths)")
    try:
        cfg = make_config(preset, **options)
    except TypeError as e:
        raise UserError(str(e)) from None
    if cfg.run.size > limits.max_size:
        raise UserError(f"size {cfg.run.size} is over this server's limit of {limits.max_size} px")
    if cfg.run.steps > limits.max_steps:
        raise UserError(f"steps {cfg.run.steps} is over this server's limit of {limits.max_steps}")
    if cfg.recipe.lbfgs_history > 1000 or cfg.run.chunk > 100:
        raise UserError("lbfgs_history must be <= 1000 and chunk <= 100 here")
    stored = {"preset": preset, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}
    return cfg, stored


def config_of(stored: dict) -> Config:
    """The config of a stored job (its options were checked when it was submitted)."""
    values = dict(stored)
    preset = values.pop("preset", "gatys")
    return make_config(preset, **values)


__all__ = ["ALLOWED", "Limits", "config_of", "parse"]
