"""The persistent compilation cache: does a second CLI run skip the compile?

Command::

    python -m bench.compile_cache                 # 256 px, Adam, 2 CLI runs (~1 min on 2 cores)
    python -m bench.compile_cache --size 512 --optimizer lbfgs

What it measures: two runs of the ``jaxstyle stylize`` command line (a new process each,
9 steps by default: the first step alone, then two chunks of 4, so both compiled programs
are used) with the same fresh ``JAXSTYLE_COMPILE_CACHE`` folder and a weights file on disk.
For each: the time from launching the process to the end of its first iteration (Python
start, imports, weights, targets, compile or cache load, one step), the first call's own
time (``compile_seconds``: compile or cache load plus one step) and the whole process.
Targets (issue 4): compile ≤ 15 s at 256 px; the second run reaches its first iteration
within 3 s.

Last result (2026-11-27, 2-core AMD EPYC, quiet machine, 256², Adam, 9 steps): first run:
first iteration done 3.5 s after launch, first call (compile + 1 step) 1.4 s, process 8.4 s;
second run: 2.9 s, 0.8 s, 6.4 s (cache 0.2 MB).
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

# The command line itself, with the first yield of the engine's loop timestamped.
CHILD = r"""
import json, sys, time
t_launch = float(sys.argv[1])
from jaxstyle.engine import loop as S
iterate = S.iterate
def timed(*args, **kwargs):
    for i, progress in enumerate(iterate(*args, **kwargs)):
        if i == 0:
            print("FIRST " + json.dumps({"first_iteration_s": time.time() - t_launch}), file=sys.stderr, flush=True)
        yield progress
S.iterate = timed
from jaxstyle.cli import main as cli
sys.exit(cli.main(sys.argv[2:]))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compile_cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--steps", type=int, default=9, help="steps per run")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.run import images, weights_file
    from jaxstyle.io import image as imageio

    steps = args.steps
    with tempfile.TemporaryDirectory(prefix="jaxstyle-cache-bench-") as tmp:
        tmp = Path(tmp)
        weights, what = weights_file(None, tmp)
        content, style, _ = images(args.size)
        imageio.save_image(tmp / "content.png", content)
        imageio.save_image(tmp / "style.png", style)
        env = dict(os.environ, JAXSTYLE_COMPILE_CACHE=str(tmp / "xla-cache"))
        argv = ["stylize", str(tmp / "content.png"), str(tmp / "style.png"), "-o", str(tmp / "out.png"),
                "--size", str(args.size), "--steps", str(steps), "--optimizer", args.optimizer,
                "--weights", weights, "--json", "-q"]
        runs = []
        for i in (1, 2):
            t0, launch = time.perf_counter(), time.time()
            done = subprocess.run([sys.executable, "-c", CHILD, repr(launch), *argv], env=env,
                                  capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t0
            if done.returncode:
                print(done.stderr)
                return done.returncode
            record = json.loads(done.stdout)
            first = json.loads(next(ln for ln in done.stderr.splitlines() if ln.startswith("FIRST "))[6:])
            runs.append({"run": i, "first_iteration_s": round(first["first_iteration_s"], 2),
                         "first_call_s": record["compile_seconds"], "process_wall_s": round(wall, 2)})
            print(f"run {i}: first iteration done {first['first_iteration_s']:.1f} s after launch; first call "
                  f"(compile or cache load + 1 step) {record['compile_seconds']:.1f} s; process {wall:.1f} s "
                  f"for {steps} steps", flush=True)
        cache_mb = sum(f.stat().st_size for f in (tmp / "xla-cache").rglob("*") if f.is_file()) / 2**20
    print(json.dumps({"size": args.size, "optimizer": args.optimizer, "steps": steps, "weights": what,
                      "cache_mb": round(cache_mb, 1), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
