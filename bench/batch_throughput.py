"""Batch throughput: pairs × iterations per second, batched against one at a time.

Command (repository root, the venv active; about 7 minutes on the 2-core CPU machine):

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
  the independent baseline: same weights, same losses, torch.optim.LBFGS), in its own
  process with denormals flushed to zero.

Throughput = pairs × steps / wall seconds, and per CPU second of the process (all threads),
which a shared machine disturbs least. Before timing, the step-0 loss of the first pair
is checked to agree between jaxstyle and PyTorch (relative 1e-4). Compile time is reported
separately (the warm-up run's extra seconds). Results: bench/results/batch_throughput.json
and .md.

Last result (2-core AMD EPYC, no GPU, jax 0.10.2, torch 2.13.0, load average 1-2; pairs ×
iterations per wall second): 128 px: batched 10.9-11.7 (B=1..8), stylize loop 9.9, torch
loop 10.1; 256 px: batched 3.2/3.2/3.1/2.7, stylize loop 2.9, torch loop 2.7. Full table:
bench/results/batch_throughput.md.
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
    from jaxstyle.io.image import load_image

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


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def best_of(fn, repeats: int) -> dict:
    """The fastest of ``repeats`` runs, by wall and by CPU time separately."""
    runs = [timed(fn) for _ in range(repeats)]
    return {"seconds": min(w for w, _ in runs), "cpu_seconds": min(c for _, c in runs)}


def with_rates(d: dict, work: int) -> dict:
    return dict(d, pairs_iters_per_s=work / d["seconds"], pairs_iters_per_cpu_s=work / d["cpu_seconds"])


def run_engine(network, jobs, batch_size: int, mesh) -> None:
    from jaxstyle.api import batch

    results = list(batch.Engine(network, batch_size=batch_size, mesh=mesh).run(jobs))
    assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"]


def bench_size(size: int, steps: int, batch_sizes: list[int], contents, styles, weights_path: str) -> dict:
    import torch

    import jaxstyle
    from bench import torch_ref
    from jaxstyle.io import image as imageio
    from jaxstyle.api import batch, transfer
    from jaxstyle.engine import loop
    from jaxstyle.model.weights import load_vgg

    network, _ = load_vgg(weights_path)
    mesh = loop.batch_mesh()
    opts = dict(size=size, steps=steps)
    jobs = batch.make_jobs(contents, styles, **opts)
    pairs = len(jobs)
    row: dict = {"size": size, "steps": steps, "pairs": pairs, "devices": mesh.size}

    # The two frameworks agree on the first pair's step-0 loss before anything is timed.
    cfg = jobs[0].cfg
    content = imageio.to_float(imageio.resize_long_side(jobs[0].content.load(), size))
    style = imageio.to_float(imageio.resize_long_side(jobs[0].styles[0].load(), size))
    one = transfer.problem(network, content, [style], jaxstyle.make_config(size=size, steps=1))
    jax_terms = next(iter(loop.iterate(one, steps=1))).terms
    tw, _ = torch_ref.load_weights(weights_path)
    tnet = torch_ref.TorchVGG(tw)
    objective = torch_ref.Objective(tnet, cfg, content, [style])
    torch_total = float(sum(objective(torch_ref.nchw(content)).values()))
    row["step0_loss"] = {"jax": float(jax_terms["total"][0]), "torch": torch_total}
    assert abs(torch_total - float(jax_terms["total"][0])) <= 1e-4 * abs(torch_total), row["step0_loss"]

    work = pairs * steps
    row["batched"] = {}
    for b in batch_sizes:
        first, _ = timed(lambda: run_engine(network, jobs, b, mesh))  # compiles
        row["batched"][b] = with_rates(dict(best_of(lambda: run_engine(network, jobs, b, mesh), 2),
                                            first_seconds=first), work)
        print(f"  {size}px batched B={b}: {row['batched'][b]['pairs_iters_per_s']:.2f} pair·it/s, "
              f"{row['batched'][b]['pairs_iters_per_cpu_s']:.2f} per CPU s (first run with its compile "
              f"{first:.1f} s)", file=sys.stderr)

    def stylize_loop() -> None:
        for j in jobs:
            jaxstyle.stylize(j.content.load(), j.styles[0].load(), network=network, **opts)

    jaxstyle.stylize(jobs[0].content.load(), jobs[0].styles[0].load(), network=network, **opts)  # compile
    row["stylize_loop"] = with_rates(best_of(stylize_loop, 2), work)
    print(f"  {size}px stylize loop: {row['stylize_loop']['pairs_iters_per_s']:.2f} pair·it/s", file=sys.stderr)

    # PyTorch in its own process (as bench/workers.py does): XLA's thread pool must not
    # spin beside torch's, and torch flushes denormals to zero as XLA:CPU does.
    import dataclasses
    import multiprocessing

    inputs = [(j.content.load(), j.styles[0].load()) for j in jobs]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        wall, cpu = pool.apply(torch_loop, (weights_path, size, steps, inputs, dataclasses.asdict(cfg)))
    row["torch_loop"] = with_rates({"seconds": wall, "cpu_seconds": cpu}, work)
    print(f"  {size}px torch loop: {row['torch_loop']['pairs_iters_per_s']:.2f} pair·it/s", file=sys.stderr)
    return row


def torch_loop(weights_path: str, size: int, steps: int, inputs, cfg_fields: dict) -> tuple[float, float]:
    """The pairs one after another in PyTorch eager (a worker process): (wall s, CPU s)."""
    import torch

    from bench import torch_ref
    from jaxstyle.config import Config
    from jaxstyle.io.image import resize_long_side, to_float

    torch.set_flush_denormal(True)
    # torch's own thread count: calling torch.set_num_threads(2) here made its steps ~15×
    # slower on this machine (measured), so it is left alone.
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_fields.items()})
    tnet = torch_ref.TorchVGG(torch_ref.load_weights(weights_path)[0])

    def loop(pairs) -> None:
        for content_u8, style_u8 in pairs:
            c = to_float(resize_long_side(content_u8, size))
            s = to_float(resize_long_side(style_u8, size))
            run = torch_ref.Run(torch_ref.Objective(tnet, cfg, c, [s]), c, cfg)
            for _ in range(steps):
                run.step()

    loop(inputs[:1])  # warm-up (allocator, oneDNN primitives); one timed pass, it is slow
    return timed(lambda: loop(inputs))


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
    for key, title in (("pairs_iters_per_s", "per wall-clock second"), ("pairs_iters_per_cpu_s", "per CPU second "
                       "(process CPU time, all threads: what a shared machine disturbs least)")):
        header = "| size | " + " | ".join(f"batched B={b}" for b in bs) + \
            " | stylize loop | torch loop | best batched ÷ stylize loop | ÷ torch loop |"
        lines += [f"Pairs × iterations {title}:", "", header, "|" + "---|" * (len(bs) + 5)]
        for row in result["rows"]:
            best = max(v[key] for v in row["batched"].values())
            cells = [f"{row['batched'][b][key]:.2f}" for b in bs]
            sl, tl = row["stylize_loop"][key], row["torch_loop"][key]
            lines.append(f"| {row['size']} px | " + " | ".join(cells) +
                         f" | {sl:.2f} | {tl:.2f} | {best / sl:.2f}× | {best / tl:.2f}× |")
        lines.append("")
    lines += ["Seconds of the first (compiling) run per batch size, against the best timed run: " + "; ".join(
        f"{row['size']} px: " + ", ".join(
            f"B={b} {row['batched'][b]['first_seconds']:.0f} vs {row['batched'][b]['seconds']:.0f}" for b in bs)
        for row in result["rows"]) + f". Load average at the end: {m['load_average'][0]:.1f} (other jobs "
        "shared the machine). jaxstyle: best of 2 timed runs; PyTorch: one timed run in its own process "
        "after a one-pair warm-up, denormals flushed to zero."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch_throughput"))
    args = parser.parse_args(argv)

    from jaxstyle.model.vgg import build_vgg, conv_specs
    from jaxstyle.model.weights import WeightsInfo, save_weights

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
