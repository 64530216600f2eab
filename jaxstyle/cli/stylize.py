"""``jaxstyle stylize CONTENT STYLE [STYLE ...] -o OUT``."""

from __future__ import annotations

import time
from pathlib import Path

from jaxstyle.cli import report
from jaxstyle.cli.options import add_config_options, config_from_args
from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stylize",
        help="paint a content image in the style of one or more style images",
        description="Optimise an image so its VGG features match CONTENT and its feature "
        "statistics match STYLE (several styles are blended). Output format follows the "
        "extension of -o (.png .jpg .webp .tif).",
    )
    p.add_argument("content", help="content image (any format Pillow reads)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    p.add_argument("-o", "--output", required=True, help="output image path; written atomically")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also write a snapshot OUT_stepN.EXT every N steps (default: 0, off)")
    p.add_argument("--mask", nargs="+", default=None, metavar="MASK",
                   help="one mask image per style, in order: each style paints where its mask is white "
                   "(guided Gram/W2 statistics, Gatys et al. 2017)")
    p.add_argument("--json", action="store_true",
                   help=f"print a machine-readable summary on stdout (one JSON object; keys: {', '.join(report.JSON_KEYS)})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_options(p)
    p.set_defaults(func=run)


def snapshot_path(out: Path, step: int) -> Path:
    return out.with_name(f"{out.stem}_step{step:05d}{out.suffix}")


def run(args) -> int:
    report.start(args)  # collector held, weights and programs read while the imports below run
    from jaxstyle.api import transfer
    from jaxstyle.model.vgg import min_size
    from jaxstyle.plan import inputs
    from jaxstyle.plan.scales import schedule

    t_start = time.perf_counter()
    report.mark("imported")
    cfg = config_from_args(args)
    if args.save_every < 0:
        raise UserError(f"--save-every must be >= 0, got {args.save_every}")
    # Every input read and checked before the output folder is made and the weights are
    # loaded (which may download): a wrong path or size costs nothing and prints one line.
    originals = inputs.read(args.content, args.styles, cfg, masks=args.mask)
    plan = schedule(*originals.shape, cfg, min_size(cfg.recipe.all_layers))
    for scale in plan:
        inputs.at_scale(originals, scale, cfg)
    inputs.check_memory(cfg, (plan[-1].height, plan[-1].width), originals.styles)
    out = imageio.check_output_path(args.output, inputs=[args.content, *args.styles, *(args.mask or ()), cfg.run.init])
    report.mark("inputs")
    network, info, metadata, cfg = report.load_network(args, cfg)
    report.mark("network")
    steps = sum(s.steps for s in plan)  # over every scale when coarse-to-fine
    bar = report.Bar(args.quiet, steps, desc="stylize")

    def on_progress(p) -> None:
        bar(p)
        if args.save_every and p.step % args.save_every == 0 and p.step < p.total:
            imageio.save_image(snapshot_path(out, p.step), p.images()[0], metadata=metadata)

    boundaries = range(args.save_every, steps, args.save_every) if args.save_every else ()
    try:
        result = transfer.run(network, originals, cfg, plan, callback=on_progress, boundaries=boundaries)
    finally:
        bar.close()
    imageio.save_image(out, result, metadata=metadata)
    return report.finish(args, "stylize", cfg, out, result, info, bar, t_start)
