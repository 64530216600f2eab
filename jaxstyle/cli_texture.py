"""``jaxstyle texture STYLE [STYLE ...] -o OUT [--size N|WxH] [--tileable]``.

Also holds what ``texture`` and ``inpaint`` share: loading the network with its output
label, and the progress bar.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from jaxstyle import config
from jaxstyle import image as imageio
from jaxstyle.cli_options import add_config_options, summary_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "texture",
        help="synthesize a texture from style image(s); --tileable makes it wrap around seamlessly",
        description="Optimise an image from noise until its VGG feature statistics match STYLE "
        "(several styles are blended); there is no content image. With --tileable every "
        "convolution wraps around, so copies of the output tile without a seam.",
    )
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    p.add_argument("-o", "--output", required=True, help="output image path; written atomically")
    p.add_argument("--size", default=None, metavar="N|WxH",
                   help=f"output size: N for a square or WxH (default: {config.Config().size})")
    p.add_argument("--tileable", action="store_true",
                   help="circular padding everywhere: the texture wraps around (sides rounded to multiples of 16)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_options(p, skip=("size", "content_weight", "content_layers", "preserve_color"))
    p.set_defaults(func=run)


def overrides(args) -> dict:
    """The Config fields given on the command line (None: not given)."""
    names = {f.name for f in dataclasses.fields(config.Config)} - {"preset"}
    return {k: getattr(args, k) for k in names if hasattr(args, k)}


def load_network(args, cfg):
    """(network, output metadata), with a note on stderr for untrained weights."""
    from jaxstyle.weights import load_vgg

    network, info = load_vgg(args.weights, model=cfg.model, source=cfg.weights_source, progress=not args.quiet)
    metadata = {"jaxstyle:preset": cfg.preset, "jaxstyle:weights": info.source}
    if not info.pretrained:
        metadata["jaxstyle:weights"] = f"{info.source} (random, NOT pretrained: for tests and demos only)"
        print(f"jaxstyle: note: using untrained weights {info.source}; the output will not look stylized",
              file=sys.stderr)
    return network, info, metadata


class Bar:
    """A tqdm bar fed by Progress callbacks; keeps the last one."""

    def __init__(self, quiet: bool):
        from tqdm import tqdm

        self.last = None
        self.bar = tqdm(total=None, disable=quiet, file=sys.stderr, unit="it", dynamic_ncols=True, desc="compiling")

    def __call__(self, p) -> None:
        from jaxstyle.cli_stylize import format_terms

        self.bar.total = p.total
        self.bar.set_description("optimise")
        self.bar.update(p.step - self.bar.n)
        self.bar.set_postfix_str(format_terms(p.terms), refresh=False)
        self.last = p

    def close(self) -> None:
        self.bar.close()


def finish(args, out, result, info, bar: Bar, t_start: float, what: str) -> int:
    from jaxstyle.cli_stylize import format_terms

    p = bar.last
    record = {
        "output": str(out),
        "command": what,
        "steps": p.total if p else 0,
        "size": list(result.shape[:2]),
        "seconds": round(time.perf_counter() - t_start, 3),
        "compile_seconds": round(p.compile_seconds, 3) if p else 0.0,
        "losses": {k: float(v[0]) for k, v in p.terms.items()} if p else {},
        "weights": info.source,
        "pretrained": info.pretrained,
    }
    if args.json:
        print(summary_json(record))
    print(f"jaxstyle: wrote {out} ({result.shape[1]}×{result.shape[0]}) in {record['seconds']:.1f} s: "
          f"{format_terms(p.terms) if p else 'no steps'}", file=sys.stderr)
    return 0


def run(args) -> int:
    from jaxstyle import texture

    t_start = time.perf_counter()
    width, height = texture.parse_size(args.size) if args.size else (config.Config().size,) * 2
    cfg = texture.texture_config(args.preset, tileable=args.tileable, **dict(overrides(args), size=max(width, height)))
    if args.tileable:
        from jaxstyle.vgg import min_size

        tiled = texture.tile_shape(height, width, min_size(cfg.style_layers))
        if tiled != (height, width):
            print(f"jaxstyle: note: a tileable texture's sides are multiples of {min_size(cfg.style_layers)}: "
                  f"making it {tiled[1]}×{tiled[0]}", file=sys.stderr)
    out = imageio.check_output_path(args.output)
    network, info, metadata = load_network(args, cfg)
    metadata["jaxstyle:texture"] = "tileable" if args.tileable else "plain"
    bar = Bar(args.quiet)
    try:
        result = texture.synthesize(args.styles, width, height, cfg, network=network, callback=bar)
    finally:
        bar.close()
    imageio.save_image(out, result, metadata=metadata)
    return finish(args, out, result, info, bar, t_start, "texture")
