"""The largest image that fits, by ``jaxstyle.memory``'s estimate, with spot checks.

Command::

    python -m bench.memory_fit                               # the table for this machine (instant)
    python -m bench.memory_fit --check 1024:adam,1024:lbfgs  # + real runs: peak RSS vs the estimate

What it measures: for Adam and L-BFGS (history 100 and 10), fp32 and bf16, with and without
``--remat blocks``, the largest square side whose run the estimator lets through on this
device (its free memory now), and the estimated bytes per pixel. ``--check`` runs one
compiled chunk of ``jaxstyle.stylize`` (random weights) at each SIZE:OPTIMIZER[:PRECISION]
in a fresh process and compares its peak RSS growth with the estimate: the estimate is
meant to be above it (it is a refusal threshold) and not far above.

Last result (2026-11-27, 2-core AMD EPYC, 23.5 GB, 24.7 GB free): largest square Adam fp32
3168², bf16 3344²; L-BFGS history 100 fp32 2112², bf16 2160²; history 10 fp32 2960²;
remat blocks smaller (it costs memory on XLA:CPU). Checks: 2048² Adam peak RSS growth
8.84 GB (estimate 10.34), 1024² Adam bf16 2.45 GB (2.48); with the earlier 1.15 margin
1024² Adam 2.61 (2.52), 1024² L-BFGS 5.23 (5.45).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, numpy as np
from jaxstyle import stylize
from jaxstyle.plan import memory
from jaxstyle.config import make_config
size, opt, prec = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
before = rss()
rng = np.random.default_rng(0)
content = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
est = memory.estimate(make_config("gatys", optimizer=opt, precision=prec).recipe, (size, size)).total
stylize(content, content, weights="random:0", size=size, steps=1, optimizer=opt, precision=prec)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"size": size, "optimizer": opt, "precision": prec, "peak_growth": peak - before, "estimate": est}))
"""


def table() -> list[dict]:
    from jaxstyle.plan import memory
    from jaxstyle.config import make_config

    free, where = memory.free_bytes()
    rows = []
    for opt, history in (("adam", 100), ("lbfgs", 100), ("lbfgs", 10)):
        for prec in ("fp32", "bf16"):
            for remat in ("none", "blocks"):
                cfg = make_config("gatys", optimizer=opt, precision=prec, remat=remat, lbfgs_history=history)
                side = memory.largest_square(cfg.recipe, free)
                per_px = (memory.estimate(cfg.recipe, (2048, 2048)).total - memory.estimate(cfg.recipe, (1024, 1024)).total) / (
                    2048**2 - 1024**2)
                rows.append({"optimizer": opt if opt == "adam" else f"lbfgs (history {history})", "precision": prec,
                             "remat": remat, "largest_square": side, "bytes_per_px": round(per_px)})
    return [{"free_bytes": free, "device": where}] + rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", default="", help="SIZE:OPT[:PREC],… to run for real")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    head, *rows = table()
    print(f"free: {head['free_bytes'] / 1e9:.1f} GB ({head['device']})")
    print("| optimizer | precision | remat | largest square (px) | estimated B/px |\n|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['optimizer']} | {r['precision']} | {r['remat']} | {r['largest_square']} | {r['bytes_per_px']:,} |")
    for item in filter(None, args.check.split(",")):
        size, opt, *prec = item.split(":")
        done = subprocess.run([sys.executable, "-c", CHILD, size, opt, prec[0] if prec else "fp32"],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            print(f"check {item}: failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"check {item}: peak RSS growth {r['peak_growth'] / 1e9:.2f} GB, estimate {r['estimate'] / 1e9:.2f} GB "
              f"(estimate / measured {r['estimate'] / r['peak_growth']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
