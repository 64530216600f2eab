"""``jaxstyle inpaint IMAGE --mask MASK -o OUT``."""

from __future__ import annotations

import sys
import time

from jaxstyle.cli import report
from jaxstyle.cli.options import add_config_options, overrides
from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio

LOSSLESS = (".png", ".tif", ".tiff")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inpaint",
        help="fill the white region of a mask with texture that matches the rest of the image",
        description="Fill the white part of MASK from the hole's own neighbourhood: each hole's VGG "
        "feature statistics are matched to a ring of known pixels around it, and its patches (pixels, "
        "relu3_1, relu4_1) to nearby known patches, coarse to fine, joined to the border, its finest detail and colour "
        "held to the ring's. Only a window around the holes is solved, at full resolution when it fits in --size. "
        "Every pixel outside the mask is written back unchanged, at the image's own size (bit for bit in PNG or TIFF).",
    )
    p.add_argument("image", help="image to fill (any format Pillow reads)")
    p.add_argument("--mask", required=True, metavar="MASK", help="white = fill, black = keep; same shape as IMAGE")
    p.add_argument("-o", "--output", required=True, help="output image path; written atomically")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    # The style is the image itself: nothing to blend, scale or recolour.
    add_config_options(p, skip=("content_weight", "content_layers", "preserve_color", "style_blend_weights",
                                "style_scale"))
    p.set_defaults(func=run)


def run(args) -> int:
    report.start(args)  # collector held, weights and programs read while the imports below run
    from jaxstyle.api import inpaint

    t_start = time.perf_counter()
    cfg = inpaint.inpaint_config(args.preset, **overrides(args))
    if cfg.run.init not in ("content", "random"):
        raise UserError("--init for inpainting is 'content' (a smooth fill plus noise) or 'random'")
    image_u8, icc = inpaint.load_pixels(args.image)
    hole = inpaint.read_hole(args.mask, image_u8.shape[:2])
    out = imageio.check_output_path(args.output, inputs=[args.image, args.mask])
    if out.suffix.lower() not in LOSSLESS:
        print(f"jaxstyle: note: {out.suffix} is lossy, so pixels outside the mask will not stay exactly as they "
              "were; write .png or .tif for that", file=sys.stderr)
    network, info, metadata, cfg = report.load_network(args, cfg)
    metadata["jaxstyle:inpaint"] = f"{int(hole.sum())} px filled"
    bar = report.Bar(args.quiet)
    try:
        result = inpaint.fill(image_u8, hole, cfg, network=network, callback=bar)
    finally:
        bar.close()
    imageio.save_image(out, result, metadata=metadata, icc_profile=icc)
    return report.finish(args, "inpaint", cfg, out, result, info, bar, t_start)
