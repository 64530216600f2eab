"""Batch throughput: pairs × iterations per second, batched against one at a time.

Command (repository root, the venv active; about 6 minutes on the 2-core CPU machine):

    python -m bench.batch_throughput                      # 128 and 256 px, batch 1 2 4 8, 8 pairs
    python -m bench.batch_throughput --sizes 256 512      # on a GPU

What it measures, for each output size, on the same 8 pairs (2 contents × 4 styles from
../shared/data, centre-cropped to squares so all pairs share one bucket), the gatys recipe
(VGG19 to relu5_1, torch's L-BFGS with history 100), random VGG19 weights (seed 0) written
once to a safetensors file that both frameworks read:

- ``batched B``: the ``jaxstyle batch`` engine (``batch.Engine``) with batch size B, end to
  end (targets, init, steps, final images) after a warm-up run that compiled it;
- ``stylize loop``: the same pairs one at a time through ``jaxstyle.stylize`` (warm);
- ``torch loop``: the same pairs one at a time in PyTorch eager (``bench/torch_ref.py``,
  the independent baseline: same weights, same losses, torch.optim.LBFGS).

Throughput = pairs × steps / wall seconds. Before timing, the step-0 loss of the first pair
is checked to agree between jaxstyle and PyTorch (relative 1e-4). Compile time is reported
separately (the warm-up run's extra seconds). Results: bench/results/batch_throughput.json
and .md.

Last result (2-core x86 CPU, no GPU, jax 0.10.2, torch 2.13.0; 5 steps; see
bench/results/batch_throughput.md for the full table): see the README's "Batch generation".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def square_images(folder: Path, names: list[str], seed: int) -> list[np.ndarray]:
    """Centre-cropped square uint8 images from ``folder``, or smooth random ones if absent."""
    from jaxstyle.image import load_image

    out = []
    for i, name in enumerate(names):
        path = folder / name
        if path.is_file():
            a = load_image(path)
            h, w = a.shape[:2]
            s = min(h, w)
            out.append(np.ascontiguousarray(a[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]))
        else:  # no shared data: synthetic pictures of the same kind
            rng = np.random.default_rng(seed + i)
            yy, xx = np.mgrid[0:256, 0:256] / 256
            img = np.stack([np.sin(6 * xx + 3 * yy + p) for p in rng.uniform(0, 6, 3)], -1)
            out.append((np.clip(0.5 + 0.4 * img, 0, 1) * 255).astype(np.uint8))
    return out


def machine() -> dict:
    import jax
    import torch

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.local_devices()], "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average": os.getloadavg()}


def run_engine(network, jobs, batch_size: int, mesh) -> float:
    from jaxstyle import batch

    engine = batch.Engine(network, batch_size=batch_size, mesh=mesh)
    t0 = time.perf_counter()
    results = list(engine.run(jobs))
    assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"]
    return time.perf_counter() - t0


def bench_size(size: int, steps: int, batch_sizes: list[int], contents, styles, weights_path: str) -> dict:
    import torch

    import jaxstyle
    from bench import torch_ref
    from jaxstyle import batch
    from jaxstyle import stylize as S
    from jaxstyle.weights import load_vgg

    network, _ = load_vgg(weights_path)
    mesh = S.batch_mesh()
    opts = dict(size=size, steps=steps)
    jobs = batch.make_jobs(contents, styles, **opts)
    pairs = len(jobs)
    row: dict = {"size": size, "steps": steps, "pairs": pairs, "devices": mesh.size}

    # The two frameworks agree on the first pair's step-0 loss before anything is timed.
    cfg = jobs[0].cfg
    content = jaxstyle.image.to_float(jaxstyle.image.resize_long_side(jobs[0].content.load(), size))
    style = jaxstyle.image.to_float(jaxstyle.image.resize_long_side(jobs[0].styles[0].load(), size))
    jax_terms = next(iter(S.iterate(S.prepare(network, content, [style], jaxstyle.make_config(size=size, steps=1))))).terms
    tw, _ = torch_ref.load_weights(weights_path)
    tnet = torch_ref.TorchVGG(tw)
    objective = torch_ref.Objective(tnet, cfg, content, [style])
    torch_total = float(sum(objective(torch_ref.nchw(content)).values()))
    row["step0_loss"] = {"jax": float(jax_terms["total"][0]), "torch": torch_total}
    assert abs(torch_total - float(jax_terms["total"][0])) <= 1e-4 * abs(torch_total), row["step0_loss"]

    row["batched"] = {}
    for b in batch_sizes:
        first = run_engine(network, jobs, b, mesh)  # compiles
        wall = run_engine(network, jobs, b, mesh)
        row["batched"][b] = {"seconds": wall, "pairs_iters_per_s": pairs * steps / wall, "first_seconds": first}
        print(f"  {size}px batched B={b}: {pairs * steps / wall:.2f} pair·it/s ({wall:.1f} s; "
              f"first run with its compile {first:.1f} s)", file=sys.stderr)

    def stylize_loop() -> float:
        t0 = time.perf_counter()
        for j in jobs:
            jaxstyle.stylize(j.content.load(), j.styles[0].load(), network=network, **opts)
        return time.perf_counter() - t0

    jaxstyle.stylize(jobs[0].content.load(), jobs[0].styles[0].load(), network=network, **opts)  # compile
    wall = stylize_loop()
    row["stylize_loop"] = {"seconds": wall, "pairs_iters_per_s": pairs * steps / wall}
    print(f"  {size}px stylize loop: {pairs * steps / wall:.2f} pair·it/s ({wall:.1f} s)", file=sys.stderr)

    def torch_loop() -> float:
        t0 = time.perf_counter()
        for j in jobs:
            c = jaxstyle.image.to_float(jaxstyle.image.resize_long_side(j.content.load(), size))
            s = jaxstyle.image.to_float(jaxstyle.image.resize_long_side(j.styles[0].load(), size))
            run = torch_ref.Run(torch_ref.Objective(tnet, j.cfg, c, [s]), c, j.cfg)
            for _ in range(steps):
                run.step()
        return time.perf_counter() - t0

    torch_loop_first = torch_loop()  # warm-up (allocator, oneDNN primitives)
    wall = torch_loop()
    row["torch_loop"] = {"seconds": wall, "pairs_iters_per_s": pairs * steps / wall, "first_seconds": torch_loop_first}
    print(f"  {size}px torch loop: {pairs * steps / wall:.2f} pair·it/s ({wall:.1f} s)", file=sys.stderr)
    return row


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Batch throughput (pairs × iterations per second; higher is better)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']} ({len(m['devices'])} device(s)); "
        f"jax {m['jax']}, torch {m['torch']} ({m['torch_threads']} threads). "
        f"gatys recipe (VGG19 to relu5_1, torch L-BFGS, history 100), random VGG19 weights, "
        f"{result['rows'][0]['pairs']} pairs (2 contents × 4 styles), {result['rows'][0]['steps']} steps per pair, "
        "end to end after a warm-up run. Command: `python -m bench.batch_throughput`.",
        "",
    ]
    bs = list(result["rows"][0]["batched"])
    header = "| size | " + " | ".join(f"batched B={b}" for b in bs) + " | stylize loop | torch loop | best batched ÷ stylize loop | ÷ torch loop |"
    lines += [header, "|" + "---|" * (len(bs) + 5)]
    for row in result["rows"]:
        best = max(v["pairs_iters_per_s"] for v in row["batched"].values())
        cells = [f"{row['batched'][b]['pairs_iters_per_s']:.2f}" for b in bs]
        sl, tl = row["stylize_loop"]["pairs_iters_per_s"], row["torch_loop"]["pairs_iters_per_s"]
        lines.append(f"| {row['size']} px | " + " | ".join(cells) + f" | {sl:.2f} | {tl:.2f} | {best / sl:.2f}× | {best / tl:.2f}× |")
    lines += ["", "Seconds of the first (compiling) run per batch size, against the timed run: " + "; ".join(
        f"{row['size']} px: " + ", ".join(
            f"B={b} {row['batched'][b]['first_seconds']:.0f} vs {row['batched'][b]['seconds']:.0f}" for b in bs)
        for row in result["rows"]) + f". Load average during the run: {m['load_average'][0]:.1f} "
        "(other jobs shared the machine; PyTorch's OpenMP threads suffer more from that than XLA's)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch_throughput"))
    args = parser.parse_args(argv)

    from jaxstyle.vgg import build_vgg, conv_specs
    from jaxstyle.weights import WeightsInfo, save_weights

    contents = square_images(DATA / "content", ["chelsea.jpg", "coffee.jpg"], 0)
    styles = square_images(DATA / "styles", ["starry_night.jpg", "great_wave.jpg", "the_scream.jpg",
                                             "composition_vii.jpg"], 10)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vgg19-random0.safetensors"
        net = build_vgg("vgg19", seed=0)
        arrays = {}
        for name, _, _ in conv_specs("vgg19"):
            arrays[f"{name}.kernel"] = np.asarray(getattr(net, name).kernel[...])
            arrays[f"{name}.bias"] = np.asarray(getattr(net, name).bias[...])
        save_weights(weights, arrays, WeightsInfo("vgg19", "torchvision", "torchvision", False, "random:0", ""))
        rows = [bench_size(size, args.steps, args.batch_sizes, contents, styles, str(weights)) for size in args.sizes]
    result = {"machine": machine(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
