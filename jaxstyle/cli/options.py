"""Command-line options that map onto :class:`jaxstyle.config.Config`.

The option table is derived from ``Config``'s fields, so defaults are never repeated here:
``--help`` prints each default from ``config.py`` and the presets that change it.
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxstyle import config


def _csv(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers, got {text!r}") from None

    parse.__name__ = f"comma-separated {kind.__name__}s"
    return parse


def _optional_float(text: str):
    return None if text.lower() in ("none", "off") else float(text)


# (field, type, metavar, help). Field order is --help order.
OPTIONS = [
    ("size", int, "PX", "long side of the output in pixels"),
    ("steps", int, "N", "optimisation steps (L-BFGS: one function evaluation each)"),
    ("optimizer", str, "NAME", f"one of {', '.join(config.OPTIMIZERS)}; lbfgs is torch's L-BFGS, no line search"),
    ("lr", float, "LR", "step size; default 1.0 for L-BFGS, for Adam 0.02 in [0,1] pixel units or 1.0 in Caffe units"),
    ("content_weight", float, "W", "weight of the content term"),
    ("style_weight", float, "W", "weight of the style term"),
    ("tv_weight", float, "W", "weight of the total-variation term (0 disables it)"),
    ("content_layers", _csv(str), "L,L", "content layers, e.g. relu4_2"),
    ("style_layers", _csv(str), "L,L", "style layers, e.g. relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"),
    ("style_layer_weights", _csv(float), "W,W", "one weight per style layer (default: 1 each)"),
    ("style_blend_weights", _csv(float), "W,W", "one weight per style image, normalised to sum 1 (default: equal)"),
    ("style_scale", float, "F", "style image long side = --size × F"),
    ("init", str, "INIT", "start from 'content', 'random' noise, or an image PATH"),
    ("seed", int, "N", "seed for --init random; same seed, same machine → same image"),
    ("pooling", str, "KIND", "max or avg"),
    ("model", str, "NAME", "vgg19 or vgg16"),
    ("gram_norm", str, "KIND", "divide Gram matrices by H·W ('hw') or C·H·W ('chw')"),
    ("tv_loss", str, "KIND", f"one of {', '.join(config.TV_LOSSES)}"),
    ("padding", str, "KIND", "conv padding: zeros, replicate_first or circular"),
    ("ema_decay", _optional_float, "D", "write a bias-corrected moving average of the iterates ('none': off)"),
    ("lbfgs_history", int, "N", "L-BFGS memory (curvature pairs kept)"),
    ("lbfgs_precondition", _csv(float), "C,C", "jaxstyle's multiscale L-BFGS: weights of Gaussian blurs of σ = 1, 2, 4… "
     "px in the initial inverse Hessian, e.g. 1,4,16 (about half the steps to the same loss on the default "
     "recipe); empty: torch's plain L-BFGS"),
    ("precision", str, "P", f"one of {', '.join(config.PRECISIONS)}; bf16 computes features and Grams in bfloat16; "
     "auto is bf16 on GPU/TPU and fp32 on CPU (where XLA makes bf16 convolutions no faster), decided at run time "
     "and reported as 'precision' in --json and the summary line"),
    ("chunk", int, "N", "steps per compiled call (0: automatic)"),
    ("remat", str, "R", f"one of {', '.join(config.REMATS)}; blocks recomputes VGG activations in the backward pass"),
    ("min_scale", int, "PX", "coarse-to-fine: first long side, growing ×√2 up to --size (0: one scale)"),
    ("initial_steps", int, "N", "steps at the first scale when coarse-to-fine (default: --steps)"),
    ("preserve_color", str, "MODE",
     f"keep the content's colours: {' or '.join(config.PRESERVE_COLORS)} (Gatys et al. 2017)"),
]


def _default(name: str):
    for part in (config.Recipe(), config.RunSettings(), config.Config()):
        if hasattr(part, name):
            return getattr(part, name)
    raise KeyError(name)


def _default_help(name: str) -> str:
    base = _default(name)
    shown = "auto" if name == "lr" else _show(base)
    others = [f"{p}: {_show(o[name])}" for p, o in config.PRESETS.items() if name in o]
    return f"(default: {shown}" + (f"; {', '.join(others)}" if others else "") + ")"


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def add_config_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The options every command that optimises an image shares (less the fields in ``skip``)."""
    group = parser.add_argument_group("recipe (defaults come from --preset)")
    group.add_argument(
        "--preset",
        default="gatys",
        choices=tuple(config.PRESETS),
        help="published recipe to reproduce: gatys = pystiche's Gatys defaults with torchvision VGG19; "
        "nspt = neural-style-pt with the Caffe VGG19; quality = crowsonkb/style-transfer-pytorch "
        "(W2 style loss, coarse-to-fine Adam, averaged iterates) (default: gatys)",
    )
    for name, kind, metavar, text in OPTIONS:
        if name in skip:
            continue
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=kind, default=None, metavar=metavar,
            help=f"{text} {_default_help(name)}",
        )
    group.add_argument("--clamp", dest="clamp", action=argparse.BooleanOptionalAction, default=None,
                       help="project pixels onto [0,1] after every step (Adam) (default: off)")
    parser.add_argument(
        "--weights", default=None, metavar="SPEC",
        help="VGG weights: a .safetensors/.pth PATH, or random:SEED for untrained test weights "
        "(default: the cached download for the preset; see `jaxstyle weights`)",
    )


def overrides(args: argparse.Namespace) -> dict:
    """The config options given on the command line (flat names; not given: left out)."""
    return {k: getattr(args, k) for k in config.OPTION_FIELDS if getattr(args, k, None) is not None}


def config_from_args(args: argparse.Namespace, **extra) -> config.Config:
    return config.make_config(args.preset, **{**overrides(args), **extra})


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless its text already states one.

    Flags show "off"; options whose default is None show "none" (their help text says
    what that means when it means more than "not given").
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.required or action.default is argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction) or "default" in text.lower()):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            shown = "on" if action.default else "off"
        elif action.default is None:
            shown = "none"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})".strip()


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, with no usage dump, and shows every
    option's default in ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def summary_json(record: dict) -> str:
    return json.dumps(record, sort_keys=True, default=float)


__all__ = ["Parser", "add_config_options", "config_from_args", "overrides", "summary_json"]
