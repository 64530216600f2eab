"""``jaxstyle texture STYLE [STYLE ...] -o OUT [--size N|WxH] [--tileable]``."""

from __future__ import annotations

import sys
import time

from jaxstyle import config
from jaxstyle.cli import report
from jaxstyle.cli.options import add_config_options, overrides
from jaxstyle.io import image as imageio


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
                   help=f"output size: N for a square or WxH (default: {config.RunSettings().size})")
    p.add_argument("--tileable", action="store_true",
                   help="circular padding everywhere: the texture wraps around (sides rounded to multiples of 16)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_options(p, skip=("size", "content_weight", "content_layers", "preserve_color"))
    p.set_defaults(func=run)


def run(args) -> int:
    report.start(args)  # collector held, weights and programs read while the imports below run
    from jaxstyle.api import texture

    t_start = time.perf_counter()
    width, height = texture.parse_size(args.size) if args.size else (config.RunSettings().size,) * 2
    cfg = texture.texture_config(args.preset, tileable=args.tileable, **dict(overrides(args), size=max(width, height)))
    if args.tileable:
        from jaxstyle.model.vgg import min_size

        tiled = texture.tile_shape(height, width, min_size(cfg.recipe.style_layers))
        if tiled != (height, width):
            print(f"jaxstyle: note: a tileable texture's sides are multiples of {min_size(cfg.recipe.style_layers)}: "
                  f"making it {tiled[1]}×{tiled[0]}", file=sys.stderr)
    out = imageio.check_output_path(args.output, inputs=[*args.styles, cfg.run.init])
    network, info, metadata, cfg = report.load_network(args, cfg)
    metadata["jaxstyle:texture"] = "tileable" if args.tileable else "plain"
    bar = report.Bar(args.quiet)
    try:
        result = texture.synthesize(args.styles, width, height, cfg, network=network, callback=bar)
    finally:
        bar.close()
    imageio.save_image(out, result, metadata=metadata)
    return report.finish(args, "texture", cfg, out, result, info, bar, t_start)
