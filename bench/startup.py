"""Start-up: what ``import jaxstyle`` costs, and how soon a CLI run finishes its first step.

Command (about 1–2 minutes on 2 cores)::

    python -m bench.startup                  # import profile + two CLI runs on one fresh cache
    python -m bench.startup --top 25 --size 64

What it measures, each in a fresh process, from outside:

1. ``python -X importtime -c "import jaxstyle"``: total import time and the modules that cost
   most (cumulative, and the jaxstyle modules' own time); plus ``python -c pass`` and
   ``python -c "import jax"`` as floors.
2. ``jaxstyle stylize C S -o OUT --weights random:0 --size 64 --steps 1 --json`` twice with the
   same fresh ``JAXSTYLE_COMPILE_CACHE``: wall time from launch to exit (with 1 step, the first
   iteration ends just before the write), the run's own ``compile_seconds`` (compile or cache
   load + 1 step), and the files the cache gained — a second run that adds files recompiled
   something (its cache key is not stable). Target (issue 14): ≤ 2.0 s on the warm run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def wall(cmd: list[str], env=None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0, done


def import_profile(top: int) -> dict:
    """``-X importtime`` of ``import jaxstyle``: total, and the costliest modules."""
    _, done = wall([sys.executable, "-X", "importtime", "-c", "import jaxstyle"])
    rows = []
    for ln in done.stderr.splitlines():
        m = LINE.match(ln)
        if m:
            rows.append({"self_ms": int(m[1]) / 1e3, "cum_ms": int(m[2]) / 1e3, "depth": len(m[3]) // 2, "module": m[4]})
    total = next((r["cum_ms"] for r in rows if r["module"] == "jaxstyle"), None)
    # Top-level packages (depth ≤ 1 under whoever imported them first), by cumulative time.
    packages: dict[str, float] = {}
    for r in rows:
        root = r["module"].split(".")[0]
        if root != "jaxstyle" and r["module"] == root:
            packages[root] = max(packages.get(root, 0.0), r["cum_ms"])
    ours = sorted((r for r in rows if r["module"].startswith("jaxstyle")), key=lambda r: -r["cum_ms"])
    return {
        "total_ms": total,
        "packages": sorted(packages.items(), key=lambda kv: -kv[1])[:top],
        "jaxstyle_modules": [(r["module"], r["cum_ms"], r["self_ms"]) for r in ours[:top]],
        "returncode": done.returncode,
        "error": done.stderr.strip().splitlines()[-1] if done.returncode else None,
    }


def cli_runs(size: int, steps: int) -> dict:
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="jaxstyle-startup-"))
    try:
        rng = np.random.default_rng(0)
        for name in ("content", "style"):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp / f"{name}.png")
        cache = tmp / "xla-cache"
        env = dict(os.environ, JAXSTYLE_COMPILE_CACHE=str(cache))
        exe = shutil.which("jaxstyle") or str(Path(sys.executable).with_name("jaxstyle"))
        runs = []
        for i in (1, 2):
            before = {p for p in cache.rglob("*") if p.is_file()} if cache.exists() else set()
            seconds, done = wall([exe, "stylize", str(tmp / "content.png"), str(tmp / "style.png"), "-o",
                                  str(tmp / f"out{i}.png"), "--weights", "random:0", "--size", str(size),
                                  "--steps", str(steps), "--json", "-q"], env)
            after = {p for p in cache.rglob("*") if p.is_file()} if cache.exists() else set()
            if done.returncode:
                runs.append({"run": i, "error": done.stderr.strip()[-400:]})
                continue
            record = json.loads(done.stdout)
            runs.append({"run": i, "process_s": round(seconds, 2), "compile_seconds": record.get("compile_seconds"),
                         "seconds": record.get("seconds"), "cache_files_added": len(after - before)})
        return {"size": size, "steps": steps, "runs": runs}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="floors and import timing: best of N")
    args = p.parse_args(argv)
    floors = {}
    for name, code in (("python -c pass", "pass"), ("import numpy", "import numpy"), ("import jax", "import jax"),
                       ("import jax+flax+optax", "import jax, flax.nnx, optax"), ("import jaxstyle", "import jaxstyle")):
        floors[name] = round(min(wall([sys.executable, "-c", code])[0] for _ in range(args.repeats)), 2)
    out = {"floors_s": floors, "imports": import_profile(args.top), "cli": cli_runs(args.size, args.steps)}
    print(json.dumps(out, indent=1))
    print("\n| launch → exit (best of %d) | s |\n|---|---:|" % args.repeats)
    for k, v in floors.items():
        print(f"| `{k}` | {v:.2f} |")
    print("\n| package (first import, cumulative) | ms |\n|---|---:|")
    for k, v in out["imports"]["packages"]:
        print(f"| {k} | {v:.0f} |")
    print("\n| CLI run (fresh cache, then warm) | process s | compile_seconds | cache files added |\n|---|---:|---:|---:|")
    for r in out["cli"]["runs"]:
        if "error" in r:
            print(f"| {r['run']} | error: {r['error'][-120:]} | | |")
        else:
            print(f"| {r['run']} | {r['process_s']:.2f} | {r['compile_seconds']} | {r['cache_files_added']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
