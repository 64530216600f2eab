"""``jaxstyle stylize CONTENT STYLE [STYLE ...] -o OUT``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from jaxstyle import image as imageio
from jaxstyle.cli_options import add_config_options, config_from_args, summary_json
from jaxstyle.errors import UserError


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
                   help=f"print a machine-readable summary on stdout (one JSON object; keys: {', '.join(JSON_KEYS)})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_options(p)
    p.set_defaults(func=run)


# The --json record; "size" is [height, width], "losses" the last evaluated loss terms.
JSON_KEYS = ("output", "preset", "steps", "size", "seconds", "optimize_seconds", "compile_seconds",
             "losses", "weights", "pretrained")


def snapshot_path(out: Path, step: int) -> Path:
    return out.with_name(f"{out.stem}_step{step:05d}{out.suffix}")


def format_terms(terms: dict, keys=None) -> str:
    style = sum(float(v[0]) for k, v in terms.items() if k.startswith("style:"))
    parts = {"total": float(terms["total"][0]), "style": style}
    for k in ("content", "tv"):
        if k in terms:
            parts[k] = float(terms[k][0])
    return " ".join(f"{k} {v:.4g}" for k, v in parts.items())


def read_inputs(args, cfg):
    """The content and style images (uint8, as read), after checking every input.

    Runs before the output folder is made and the weights are loaded (which may download),
    so a wrong path, a broken file or a too-small size costs nothing and prints one line.
    """
    from jaxstyle import stylize as api

    content = imageio.load_image(args.content)
    styles = [imageio.load_image(s) for s in args.styles]
    # The sizes the run will use (this also reads --init PATH); stylize() redoes it.
    content_f, styles_f, _ = api.load_inputs(content, styles, cfg)
    api.check_size(content_f.shape, cfg, "content")
    for s in styles_f:
        api.check_size(s.shape, cfg, "style")
    blend = cfg.style_blend_weights
    if blend is not None and getattr(args, "mask", None) is None and len(blend) != len(styles):
        raise UserError(
            f"--style-blend-weights has {len(blend)} values for {len(styles)} style images; give one per style"
        )
    return content, styles


def run(args) -> int:
    from tqdm import tqdm

    from jaxstyle import stylize as api
    from jaxstyle.weights import load_vgg

    t_start = time.perf_counter()
    cfg = config_from_args(args)
    if args.save_every < 0:
        raise UserError(f"--save-every must be >= 0, got {args.save_every}")
    content, styles = read_inputs(args, cfg)
    out = imageio.check_output_path(args.output)
    network, info = load_vgg(args.weights, model=cfg.model, source=cfg.weights_source, progress=not args.quiet)
    metadata = {"jaxstyle:preset": cfg.preset, "jaxstyle:weights": info.source}
    if not info.pretrained:
        metadata["jaxstyle:weights"] = f"{info.source} (random, NOT pretrained: for tests and demos only)"
        print(f"jaxstyle: note: using untrained weights {info.source}; the output will not look stylized",
              file=sys.stderr)

    from jaxstyle.multiscale import total_steps

    from jaxstyle.vgg import min_size

    # Over every scale when coarse-to-fine (scales too small for the network are skipped).
    steps = total_steps(cfg, content.shape[1], content.shape[0], min_size(cfg.all_layers))
    bar = tqdm(total=steps, disable=args.quiet, file=sys.stderr, unit="it", dynamic_ncols=True,
               desc="compiling")
    last = {}

    def on_progress(p) -> None:
        bar.set_description("stylize")
        bar.update(p.step - bar.n)
        bar.set_postfix_str(format_terms(p.terms), refresh=False)
        last.update(progress=p)
        if args.save_every and p.step % args.save_every == 0 and p.step < p.total:
            imageio.save_image(snapshot_path(out, p.step), p.images()[0], metadata=metadata)

    boundaries = range(args.save_every, steps, args.save_every) if args.save_every else ()
    try:
        result = api.stylize(
            content, styles, preset=cfg.preset, network=network, callback=on_progress,
            boundaries=boundaries, masks=args.mask, **_fields(cfg),
        )
    finally:
        bar.close()
    imageio.save_image(out, result, metadata=metadata)
    p = last.get("progress")
    record = {
        "output": str(out),
        "preset": cfg.preset,
        "steps": steps,
        "size": list(result.shape[:2]),
        "seconds": round(time.perf_counter() - t_start, 3),
        "optimize_seconds": round(p.seconds + p.compile_seconds, 3) if p else 0.0,
        "compile_seconds": round(p.compile_seconds, 3) if p else 0.0,
        "losses": {k: float(v[0]) for k, v in p.terms.items()} if p else {},
        "weights": info.source,
        "pretrained": info.pretrained,
    }
    if args.json:
        print(summary_json(record))
    losses = format_terms(p.terms) if p else "no steps"
    print(f"jaxstyle: wrote {out} ({result.shape[1]}×{result.shape[0]}) in {record['seconds']:.1f} s "
          f"(first step incl. compile {record['compile_seconds']:.1f} s): {losses}", file=sys.stderr)
    return 0


def _fields(cfg) -> dict:
    import dataclasses

    values = dataclasses.asdict(cfg)
    values.pop("preset")
    return values
