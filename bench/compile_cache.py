"""The persistent compilation cache: does a second CLI run skip the compile?

Command::

    python -m bench.compile_cache                 # 256 px, Adam, 2 CLI runs (~1 min on 2 cores)
    python -m bench.compile_cache --size 512 --optimizer lbfgs

What it measures: two runs of ``jaxstyle stylize`` (a new process each, one compile step's
worth of steps, ``--json``) with the same fresh ``JAXSTYLE_COMPILE_CACHE`` folder and a
weights file on disk. For each: the whole process's wall time (Python start, imports,
weights, targets, compile or cache load, the first chunk, writing the PNG): an upper bound
on the time to the first iteration; and jaxstyle's own ``compile_seconds`` (the first
chunk's call, compile included). Targets (issue 4): compile ≤ 15 s at 256 px; the second
run reaches its first iteration within 3 s.

Last result: see the README's "Benchmarks" section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compile_cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--steps", type=int, default=0, help="steps per run (0: one chunk of jaxstyle's default size)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.run import default_chunk, images, weights_file
    from jaxstyle import image as imageio

    steps = args.steps or default_chunk("cpu")
    with tempfile.TemporaryDirectory(prefix="jaxstyle-cache-bench-") as tmp:
        tmp = Path(tmp)
        weights, what = weights_file(None, tmp)
        content, style, _ = images(args.size)
        imageio.save_image(tmp / "content.png", content)
        imageio.save_image(tmp / "style.png", style)
        env = dict(os.environ, JAXSTYLE_COMPILE_CACHE=str(tmp / "xla-cache"))
        cmd = [sys.executable, "-m", "jaxstyle", "stylize", str(tmp / "content.png"), str(tmp / "style.png"),
               "-o", str(tmp / "out.png"), "--size", str(args.size), "--steps", str(steps),
               "--optimizer", args.optimizer, "--weights", weights, "--json", "-q"]
        runs = []
        for i in (1, 2):
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t0
            if done.returncode:
                print(done.stderr)
                return done.returncode
            record = json.loads(done.stdout)
            runs.append({"run": i, "process_wall_s": round(wall, 2), "compile_seconds": record["compile_seconds"],
                         "cli_seconds": record["seconds"]})
            print(f"run {i}: process {wall:.1f} s, first chunk ({steps} steps) incl. compile "
                  f"{record['compile_seconds']:.1f} s, CLI-reported total {record['seconds']:.1f} s", flush=True)
        cache_mb = sum(f.stat().st_size for f in (tmp / "xla-cache").rglob("*") if f.is_file()) / 2**20
    print(json.dumps({"size": args.size, "optimizer": args.optimizer, "steps": steps, "weights": what,
                      "cache_mb": round(cache_mb, 1), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
