"""The jaxstyle-vs-PyTorch comparison on one GPU, in under 8 minutes, compact table last.

Command (on a machine with one NVIDIA GPU, from the repository root; nothing to install
on this workplace's GPU image, whose python3 has jax, flax, optax, torch and safetensors)::

    python3 -m bench.gpu                  # ~7 min; results in bench/results/gpu-latest.*
    python3 -m bench.gpu --out "$OUT"     # also copy the results there (device tool)
    bash bench/gpu_check.sh               # the same, for the device tool's `run`
    python3 -m bench.gpu --tti-only --tti 1024 --out "$OUT"   # time to a finished image (~3 min)

What it measures: ``bench/run.py`` with ``--device gpu`` on the cases below, most important
first, inside a time budget (cases past it are listed as skipped, never half-run):
512² Adam in TF32 and bf16 (with ``torch.compile``), 256² with 8 pairs batched (jaxstyle's
vmap vs PyTorch's NCHW batch vs its one-image loop), then 256/1024/2048 in TF32 and bf16 and
L-BFGS at 512. TF32 means: JAX ``jax_default_matmul_precision="tensorfloat32"``, torch
``allow_tf32`` for matmul and cuDNN, on both sides. Each case is agreement-checked first.
Targets (issue 4): 512², one image: ≤ 2 ms/iteration TF32, ≤ 1 ms bf16, ≥ 1.5× faster than
PyTorch eager and ≥ 1.2× than torch.compile; 256² batched ≥ 3× PyTorch's loop. Floors from
``research/perf.md``: 397 GFLOP per 512² iteration, 0.8 ms TF32 / 0.4 ms bf16 on an H100.

Rolled or unrolled chunks on the GPU: jaxstyle runs 10 steps per call as a rolled
``lax.scan`` there (``stylize.default_chunk``); ``python3 -m bench.run --device gpu --cases
512:1:adam:tf32 --frameworks jax --chunk 10 --jax-unroll yes`` (and ``no``) compares the two.

Last result: none yet — no session with a GPU has run it. A session that is lent one
records the card and the numbers here and in the README.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    "512:1:adam:tf32", "512:1:adam:bf16", "256:8:adam:tf32", "256:1:adam:tf32", "256:1:adam:bf16",
    "1024:1:adam:tf32", "1024:1:adam:bf16", "2048:1:adam:tf32", "2048:1:adam:bf16", "512:1:lbfgs:tf32",
]


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=400, help="seconds after which remaining cases are skipped")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="also copy the results into this folder")
    p.add_argument("--tti", type=int, default=0, metavar="SIZE",
                   help="then also run bench.time_to_image at this size (default preset, real weights if present)")
    p.add_argument("--tti-only", action="store_true", help="only the time-to-image run")
    args = p.parse_args(argv)
    name = gpu_name()
    if name is None:
        print("bench.gpu: no NVIDIA GPU found (nvidia-smi -L printed nothing); run bench.run on CPU instead")
        return 2
    print(f"bench.gpu: {name}", flush=True)
    sys.path.insert(0, str(ROOT))
    from bench import report, run

    t0 = time.perf_counter()
    if args.tti_only:
        return time_to_image(args.tti or 1024, args.out)
    code = run.main([
        "--device", "gpu", "--cases", args.cases, "--rounds", str(args.rounds), "--chunk", "10",
        "--compile-sizes", "512", "--quality-size", "0", "--budget", str(args.budget),
        "--case-timeout", "150", "--tag", "gpu", "--no-plot",
    ])
    latest = ROOT / "bench" / "results" / "gpu-latest.json"
    out = json.loads(latest.read_text())
    try:
        report.render_plot(out, latest.with_suffix(".png"))
    except Exception as e:  # the table matters more than the plot
        print(f"bench.gpu: no plot ({e})")
    if args.out:
        for suffix in (".json", ".md", ".png"):
            src = latest.with_suffix(suffix)
            if src.exists():
                shutil.copy(src, Path(args.out) / src.name)
    print(f"\nbench.gpu: {name}; {time.perf_counter() - t0:.0f} s; exit {code}")
    print(report.compact(out))
    if args.tti:
        code = time_to_image(args.tti, args.out) or code
    return code


def time_to_image(size: int, out: str | None) -> int:
    """``bench.time_to_image`` on the GPU (PyTorch baseline in CUDA eager, jaxstyle on the GPU)."""
    from bench import time_to_image as tti

    code = tti.main(["--device", "gpu", "--size", str(size), "--tag", f"gpu-{size}", "--timeout", "400"])
    if out:
        for src in (ROOT / "bench" / "results").glob(f"time-to-image-gpu-{size}*"):
            shutil.copy(src, Path(out) / src.name)
    return code


if __name__ == "__main__":
    sys.exit(main())
