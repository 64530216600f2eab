"""``jaxstyle video INPUT STYLE [STYLE ...] -o OUTPUT``: temporally consistent video."""

from __future__ import annotations

import signal
import sys
import time

from jaxstyle.cli.options import add_config_options, config_from_args, summary_json
from jaxstyle.errors import UserError


def _range(text: str) -> tuple[int, int | None]:
    import argparse

    try:
        a, _, b = text.partition(":")
        start = int(a) if a.strip() else 0
        stop = int(b) if b.strip() else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (frame numbers, from 0, B excluded), got {text!r}") from None
    if start < 0 or (stop is not None and stop <= start):
        raise argparse.ArgumentTypeError(f"--frames {text!r} is empty or negative; give A:B with 0 <= A < B")
    return start, stop


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "video",
        help="stylize a video with temporal consistency (Ruder et al. 2016)",
        description="Stylize every frame of INPUT (a video file: mp4 webm mov mkv avi gif; or a folder or "
        "glob of frames) with Ruder et al.'s temporal loss: each frame starts from the previous stylized "
        "frame warped by the optical flow and is held to it where the flow is reliable. Several styles run "
        "together (one batch) and write one output each. Rerunning the same command resumes.",
    )
    p.add_argument("input", help="video file, folder of frames, or a quoted glob like 'frames/*.png'")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s): one output each")
    p.add_argument("-o", "--output", required=True,
                   help="video file (same frame rate and count, audio copied) or a folder of numbered PNGs; "
                   "with several styles a folder, or a name containing {style}")
    p.add_argument("--temporal-weight", type=float, default=None, metavar="W",
                   help="weight of the temporal loss; 0 stylizes every frame on its own from --init "
                   "(default: Ruder's 1e3 in Caffe pixel units, i.e. nspt; 1e3·255² for [0,1] pixels)")
    p.add_argument("--long-term", type=int, default=1, metavar="N",
                   help="hold each frame to N earlier frames, 1 10 20 40 back (Ruder's long-term loss) (default: 1)")
    p.add_argument("--passes", type=int, default=1, metavar="N",
                   help="Ruder's multi-pass: run over the clip N times, forward then backward and so on, each "
                   "frame after the first pass starting from a blend of its last result and its warped "
                   "neighbour (default: 1)")
    p.add_argument("--pass-steps", type=int, default=None, metavar="N",
                   help="steps per frame in passes 2 and later (default: --steps // 2)")
    p.add_argument("--first-frame-steps", type=int, default=None, metavar="N",
                   help="steps for the first frame (default: --steps)")
    p.add_argument("--frames", type=_range, default=None, metavar="A:B",
                   help="only frames A (from 0) up to B, B excluded (default: all)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of a frames folder, or to override the file's (default: the file's; 24 for folders)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    # Each style is its own output (no blending); coarse-to-fine and colour control are not
    # per-frame operations here yet.
    add_config_options(p, skip=("style_blend_weights", "min_scale", "initial_steps", "preserve_color"))
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from jaxstyle.api.video import stylize_video
    from jaxstyle.io import image as imageio
    from jaxstyle.io import video as videoio
    from jaxstyle.api.network import resolve

    t0 = time.perf_counter()
    cfg = config_from_args(args)
    for name in ("long_term", "passes"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("first_frame_steps", "pass_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.temporal_weight is not None and args.temporal_weight < 0:
        raise UserError(f"--temporal-weight must be >= 0, got {args.temporal_weight}")
    # Check every input before loading (or downloading) weights.
    source = videoio.open_source(args.input, args.fps)
    for s in args.styles:
        imageio.load_image(s)
    start, stop = args.frames or (0, None)
    total = source.count
    if total is not None:
        if start >= total:
            raise UserError(f"--frames starts at {start} but {args.input!r} has {total} frames")
        total = (min(stop, total) if stop is not None else total) - start
    # Raw, or Gatys' normalised network when the weights are not the preset's own (cfg follows).
    network, info, cfg = resolve(None, args.weights, cfg, progress=not args.quiet)
    if info.pretrained is False:
        print(f"jaxstyle: note: using untrained weights {info.source}; the output will not look stylized",
              file=sys.stderr)

    stopping = {}

    def on_signal(signum, frame):
        if stopping:  # a second signal: stop at once
            raise KeyboardInterrupt
        stopping["signal"] = signum
        print("\njaxstyle: stopping after the current frame (signal again to stop now)", file=sys.stderr)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    passes = args.passes
    bar = tqdm(total=total * passes if total is not None else None, disable=args.quiet, file=sys.stderr, unit="frame", dynamic_ncols=True, desc="video")
    last = {}

    def on_frame(info_: dict) -> None:
        # One tick per frame of every pass, resumed ones included.
        last.update(info_)
        if passes > 1:
            bar.set_description_str(f"pass {info_['pass']}/{passes}", refresh=False)
        bar.update(1)
        if info_.get("terms"):
            bar.set_postfix_str(" ".join(f"{k} {float(v[0]):.4g}" for k, v in info_["terms"].items()
                                         if k in ("total", "temporal", "content")), refresh=False)

    made = 0
    try:
        for _ in stylize_video(
            args.input, list(args.styles), output=args.output, network=network, weights_key=info.source,
            config=cfg, temporal_weight=args.temporal_weight, long_term=args.long_term, passes=passes,
            pass_steps=args.pass_steps, first_frame_steps=args.first_frame_steps, frames=args.frames, fps=args.fps,
            should_stop=lambda: bool(stopping), callback=on_frame,
        ):
            made += 1
    finally:
        bar.close()
        for s, h in old.items():
            signal.signal(s, h)
    if stopping:
        where = f"frame {last['frame']} of pass {last['pass']}/{passes}" if last else "the start"
        print(f"jaxstyle: stopped after {where}; run the same command again to continue", file=sys.stderr)
        return 128 + stopping["signal"]
    record = {"input": args.input, "output": args.output, "styles": list(args.styles), "frames": made,
              "seconds": round(time.perf_counter() - t0, 3), "precision": cfg.recipe.precision, "weights": info.source,
              "pretrained": info.pretrained}
    if args.json:
        print(summary_json(record))
    print(f"jaxstyle: wrote {args.output} ({made} frames × {len(args.styles)} styles, {cfg.recipe.precision}) "
          f"in {record['seconds']:.1f} s",
          file=sys.stderr)
    return 0


__all__ = ["register", "run"]
