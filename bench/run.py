"""jaxstyle against PyTorch, side by side: the one benchmark command.

Command (CPU, about 5–10 minutes on 2 cores)::

    python -m bench.run                                   # 128/256/512, Adam + L-BFGS, fp32; bf16 at 256
    python -m bench.run --sizes 256 --optimizers adam     # the key target only (~1 min)
    python -m bench.run --device gpu --sizes 256,512,1024,2048 --precisions tf32,bf16   # see bench/gpu.py

What it measures, per case (size × batch × optimizer × precision) and framework (jaxstyle,
PyTorch eager, ``torch.compile``; for batches also PyTorch's one-image-at-a-time loop):
the same algorithm (``gatys`` preset, see ``bench/torch_ref.py``), same weights file, same
images, same start. It first runs each framework for a few iterations and checks that the
loss terms agree (Adam: every term at step 0 and after 5 steps, rtol 1e-3; L-BFGS: steps 0
and 1 only, because L-BFGS without line search amplifies float32 rounding; bf16: step 0,
rtol 3e-2); a case that disagrees is reported as such and not timed, and the command exits 1.
Then it times rounds of iterations, interleaving the frameworks round by round so that the
machine's load falls on all of them alike, and reports: per-iteration wall time (median,
min, quartiles), CPU time per iteration, compile / warm-up time separately, peak memory
(RSS growth on CPU, device peak on GPU), images × iterations per second, the analytic FLOPs
per iteration (``bench/flops.py``), achieved GFLOP/s and the fraction of the measured matmul
peak; the jaxstyle / torch ratio both as a ratio of medians and as the median of per-round
ratios; and for bf16 the loss ratio and PSNR of its result against the fp32 run's.
Results: ``bench/results/<device>-latest.{json,md,png}`` and a timestamped JSON.

Last result (``python -m bench.run --wait-quiet 30``, 2026-11-27; 2-core AMD EPYC, Zen 5 /
family 26, no GPU; jax 0.10.2, torch 2.13.0+cpu; random:0 weights; others used ~1 % of the
CPUs): ms per iteration jaxstyle / PyTorch eager / torch.compile — 128² Adam 82 / 85 / 95,
256² Adam 272 / 323 / 322 (jaxstyle ÷ eager 0.84), 256² L-BFGS 290 / 343, 512² Adam
1,059 / 1,641 / 1,264 (0.65), 512² L-BFGS 1,147 / 1,607; bf16 256² Adam 270 / 162 (PyTorch
uses AVX512-BF16, XLA:CPU does not). Full table: ``bench/results/cpu-latest.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DATA = Path("/work/shared/data")  # benchmark images, if present (tests never read it)
CHECK = {"adam": (5, 1e-3), "lbfgs": (1, 1e-3)}  # compare at steps 0 and N, with rtol
TF32_RTOL = 1e-2  # TF32 rounds every conv/matmul input to 10 mantissa bits, differently per library
BF16_RTOL = 3e-2


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--sizes", default=None, help="square sizes, px (cpu: 128,256,512; gpu: 256,512,1024,2048)")
    p.add_argument("--batches", default="1", help="pairs per step, e.g. 1,4")
    p.add_argument("--cases", default=None,
                   help="explicit cases SIZE:BATCH:OPT:PREC,… in this order (instead of the sizes × batches × … grid)")
    p.add_argument("--optimizers", default="adam,lbfgs")
    p.add_argument("--precisions", default="fp32", help="fp32 (strict), tf32 (GPU), bf16")
    p.add_argument("--quality-size", type=int, default=256,
                   help="also run Adam in bf16 at this size for the bf16-vs-fp32 quality check (0: off)")
    p.add_argument("--frameworks", default="jax,torch,torch-compile")
    p.add_argument("--compile-optimizers", default="adam", help="optimizers that also get a torch.compile run")
    p.add_argument("--compile-sizes", default=None, help="sizes that get a torch.compile run (default: all)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per framework (CPU, > 256 px: 2 fewer)")
    p.add_argument("--chunk", type=int, default=0, help="iterations per round (0: jaxstyle's default_chunk)")
    p.add_argument("--threads", type=int, default=0, help="cores for each framework (0: all)")
    p.add_argument("--weights", default=None, help="weights .safetensors (default: cached pretrained, else random:0)")
    p.add_argument("--remat", default=None, help="jaxstyle remat policy for every case")
    p.add_argument("--jax-unroll", choices=("auto", "yes", "no"), default="auto",
                   help="jaxstyle's chunk as straight-line steps or a rolled lax.scan (auto: as stylize.iterate, "
                        "unrolled on CPU only)")
    p.add_argument("--case-timeout", type=float, default=600, help="seconds per case before its workers are killed")
    p.add_argument("--budget", type=float, default=0, help="skip cases once this many seconds have passed (0: none)")
    p.add_argument("--wait-quiet", type=float, default=0,
                   help="before each timed round wait up to this many seconds for other processes to use < 10%% of the CPUs")
    p.add_argument("--tag", default=None, help="results name (default: <device>)")
    p.add_argument("--no-plot", action="store_true")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- inputs


def images(size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Content (size×size) and style (long side = size) as float32 RGB [0,1]."""
    from jaxstyle.io import image as imageio

    content, style = DATA / "content" / "astronaut.jpg", DATA / "styles" / "starry_night.jpg"
    if content.exists() and style.exists():
        c = imageio.resize_to(imageio.load_image(content), size, size)
        s = imageio.resize_long_side(imageio.load_image(style), size)
        return imageio.to_float(c), imageio.to_float(s), f"{content.name} / {style.name}"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    c = np.stack([0.5 + 0.4 * np.sin(6 * xx + 3 * yy + p) for p in (0, 2, 4)], -1)
    s = rng.uniform(0, 1, (size, size, 3))
    return c.astype(np.float32), s.astype(np.float32), "synthetic"


def weights_file(spec: str | None, tmp: Path) -> tuple[str, str]:
    """A safetensors path both frameworks read, and what it holds."""
    from jaxstyle.model import weights

    if spec and not spec.startswith("random:"):
        return spec, Path(spec).name
    cached = weights.cached_path("vgg19", "torchvision")
    if spec is None and cached.exists():
        return str(cached), "pretrained torchvision VGG19"
    seed = int(spec.split(":", 1)[1]) if spec else 0
    from jaxstyle.model.vgg import build_vgg, conv_specs

    net = build_vgg("vgg19", seed=seed)
    arrays = {}
    for name, _, _ in conv_specs("vgg19"):
        conv = getattr(net, name)
        arrays[f"{name}.kernel"] = np.asarray(conv.kernel[...])
        arrays[f"{name}.bias"] = np.asarray(conv.bias[...])
    path = tmp / f"vgg19-random-{seed}.safetensors"
    weights.save_weights(path, arrays, weights.WeightsInfo("vgg19", "torchvision", "random", False, f"random:{seed}", ""))
    return str(path), f"random:{seed} (He-normal, written once by jaxstyle.weights.save_weights)"


def default_chunk(device: str) -> int:
    import jax

    from jaxstyle.engine.loop import default_chunk as chunk

    if device == "cpu":
        jax.config.update("jax_platforms", "cpu")
    return chunk()


# ----------------------------------------------------------------------------- workers


class Worker:
    def __init__(self, spec: dict, timeout: float):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.name = spec["framework"] + ("-loop" if spec.get("mode") == "loop" and spec["batch"] > 1 else "")
        self.timeout = timeout
        from bench.workers import serve

        self.proc = ctx.Process(target=serve, args=(child, spec), daemon=True)
        self.proc.start()
        child.close()
        self.hello = self._recv()

    def _recv(self):
        if not self.conn.poll(self.timeout):
            self.kill()
            raise RuntimeError(f"{self.name}: no answer within {self.timeout:.0f} s")
        status, value = self.conn.recv()
        if status != "ok":
            self.kill()
            raise RuntimeError(f"{self.name}: {value}")
        return value

    def call(self, cmd: str, *args):
        self.conn.send((cmd, args))
        return self._recv()

    def stop(self):
        try:
            self.conn.send(("stop", ()))
        except Exception:
            pass
        self.proc.join(10)
        self.kill()

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# ----------------------------------------------------------------------------- checks


def agreement(ref: list[dict], other: list[dict], steps: list[int], rtol: float, rtol0: float = 1e-4) -> dict:
    """Compare two traces of loss terms at ``steps``: the worst error and pass/fail.

    Step 0 (one evaluation of the same pixels) is held to ``rtol0`` per term, relative to
    the term (terms under 1e-3 of the total, like content at step 0, to 1e-3 of the total).
    Later steps are held to ``rtol`` of the total loss per term: Adam's first update is about
    lr·sign(g), so float32 rounding of near-zero gradients flips some pixels by ±2·lr, and a
    small term can move by ~1e-3 of itself while the total agrees to ~1e-4 (measured here).
    """
    worst = (-1.0, 0.0, None)  # (error / limit, error, where)
    for i in steps:
        total = float(np.max(np.abs(ref[i]["total"]))) + 1e-30
        for k in ref[i]:
            a, b = np.asarray(ref[i][k], np.float64), np.asarray(other[i][k], np.float64)
            if i == 0:
                err, limit = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-3 * total))), rtol0
            else:
                err, limit = float(np.max(np.abs(a - b))) / total, rtol
            err = err if np.isfinite(err) else float("inf")
            worst = max(worst, (err / limit, err, f"{k} at step {i}"))
    return {"steps": steps, "rtol": rtol, "rtol0": rtol0, "worst_rel_err": worst[1], "where": worst[2],
            "ok": bool(worst[0] <= 1.0)}


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


def others_share(before, after, own_cpu_s: float) -> float | None:
    """Fraction of all CPUs that processes other than the timed worker used in between."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy, total = (after[0] - before[0]) / hz, (after[1] - before[1]) / hz
    return max(0.0, busy - own_cpu_s) / total


def wait_quiet(limit: float, threshold: float = 0.1) -> None:
    """Wait (up to ``limit`` s) until other processes use less than ``threshold`` of the CPUs."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        a = cpu_jiffies()
        time.sleep(1.0)
        share = others_share(a, cpu_jiffies(), 0.0)
        if share is None or share < threshold:
            return


def stats(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "min": float(v.min()), "q1": float(q1), "q3": float(q3), "n": int(v.size),
            "samples": [round(float(x), 6) for x in v]}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


# ----------------------------------------------------------------------------- one case


def run_case(case: dict, common: dict, args, peaks: dict) -> tuple[list[dict], dict | None]:
    """All frameworks of one case: agreement check, interleaved timing. Returns the rows and
    the jaxstyle result (images, last terms) for the quality check."""
    from bench.flops import iteration_flops

    size, batch, opt, prec = case["size"], case["batch"], case["optimizer"], case["precision"]
    content, style, _ = images(size)
    base = dict(common, size=size, batch=batch, optimizer=opt, precision=prec, content=content, style=style,
                chunk=case["chunk"], remat=args.remat, unroll=args.jax_unroll)
    specs = [dict(base, framework="jax", mode="batched")]
    for fw in case["frameworks"]:
        if fw == "jax":
            continue
        if fw == "torch-compile" and (opt not in args.compile_optimizers.split(",") or (
                args.compile_sizes and str(size) not in args.compile_sizes.split(","))):
            continue
        if opt == "lbfgs" or batch == 1:
            specs.append(dict(base, framework=fw, mode="loop"))
        else:
            specs.append(dict(base, framework=fw, mode="batched"))
            if fw == "torch":
                specs.append(dict(base, framework=fw, mode="loop"))
    n_check, rtol = CHECK[opt]
    steps, rtol0 = [0, n_check], 1e-4
    if prec == "tf32":
        rtol = rtol0 = TF32_RTOL
    if prec == "bf16":  # same number of steps as fp32 (for the quality check); compare step 0
        steps, rtol = [0], BF16_RTOL
        rtol0 = BF16_RTOL
    label = f"{size}px B={batch} {opt} {prec}"
    rows, workers = [], []
    try:
        checks = {}
        for spec in specs:  # one at a time, so setup and compile run on a quiet machine
            print(f"  {label}: {spec['framework']}{'-loop' if spec['mode'] == 'loop' and batch > 1 else ''} setup…",
                  flush=True)
            w = Worker(spec, args.case_timeout)
            workers.append(w)
            info = w.call("setup")
            checks[w.name] = (info, w.call("check", n_check + 1))
        ref = checks["jax"][1]["trace"]
        agree = {name: agreement(ref, c["trace"], steps, rtol, rtol0) for name, (_, c) in checks.items() if name != "jax"}
        for name, a in agree.items():
            print(f"  {label}: agreement jax vs {name}: worst rel. err {a['worst_rel_err']:.2e} ({a['where']}) "
                  f"{'OK' if a['ok'] else 'FAILED'}", flush=True)
        if not all(a["ok"] for a in agree.values()):
            for w in workers:
                rows.append(dict(case, framework=w.name, status="disagree", agreement=agree.get(w.name)))
            return rows, None
        timings = {w.name: [] for w in workers}
        # Fewer rounds for big images on a CPU, so the default run stays near 10 minutes.
        rounds = args.rounds if size <= 256 or args.device != "cpu" else max(3, args.rounds - 2)
        for r in range(rounds):  # rotate the order each round
            for w in workers[r % len(workers):] + workers[: r % len(workers)]:
                if args.wait_quiet:
                    wait_quiet(args.wait_quiet)
                before = cpu_jiffies()
                wall, cpu = w.call("time")
                timings[w.name].append((wall, cpu, others_share(before, cpu_jiffies(), cpu)))
        flops = iteration_flops(size, size, optimizer=opt)
        # The device's best measured rate at this precision: matmul or conv, either framework.
        peak = max((v for k, v in peaks.items() if k.endswith(f"-{prec}")), default=max(peaks.values()))
        jax_result = None
        for w in workers:
            res = w.call("result")
            walls = [t[0] / case["chunk"] for t in timings[w.name]]
            cpus = [t[1] / case["chunk"] for t in timings[w.name]]
            step = stats(walls)
            info, chk = checks[w.name]
            first = chk["walls"][0] - chk["per_call"] * step["median"]
            row = dict(case, framework=w.name, status="ok", device=info["device"], setup_s=info["setup_s"],
                       compile_s=max(first, 0.0), check_walls=chk["walls"], step_s=step, cpu_s=stats(cpus),
                       agreement=agree.get(w.name), peak_rss_mb=res["peak_rss"] / 2**20,
                       others_cpu_share=[t[2] for t in timings[w.name]],
                       rss_growth_mb=(res["peak_rss"] - res["base_rss"]) / 2**20,
                       device_peak_mb=(res.get("device_peak") or 0) / 2**20 or None,
                       img_it_per_s=batch / step["median"], gflop_per_iter=flops["total"] * batch / 1e9,
                       gflops=flops["total"] * batch / step["median"] / 1e9, frac_peak=flops["total"] * batch / step["median"] / peak,
                       last_total=[float(x) for x in np.ravel(res["last"]["total"])])
            rows.append(row)
            if w.name == "jax":
                jax_result = {"images": res["images"], "total": row["last_total"]}
        # Paired ratios: jaxstyle's round against the other framework's in the same round.
        for row in rows:
            if row["framework"] != "jax":  # same iterations × images per round on both sides
                j = np.asarray([t[0] for t in timings["jax"]])
                o = np.asarray([t[0] for t in timings[row["framework"]]])
                row["jax_over_this_paired"] = float(np.median(j / o))
                row["jax_over_this"] = rows[0]["step_s"]["median"] / row["step_s"]["median"]
        return rows, jax_result
    except Exception as e:
        print(f"  {label}: ERROR {str(e).splitlines()[0][:300]}", flush=True)
        done = {r["framework"] for r in rows}
        rows += [dict(case, framework=w.name, status="error", error=str(e)[:3000]) for w in workers if w.name not in done]
        if not workers:
            rows.append(dict(case, framework="jax", status="error", error=str(e)[:3000]))
        return rows, None
    finally:
        for w in workers:
            w.stop()


# ----------------------------------------------------------------------------- machine


def machine(device: str) -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        family = next((ln.split(":")[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("cpu family")), "")
        cpu += f" (family {family})" if family else ""
    except OSError:
        pass
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "jax-cuda12-plugin"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    mem = 0
    try:
        mem = int(next(ln for ln in open("/proc/meminfo") if ln.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)), "ram_gb": round(mem / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(), "versions": versions, "device": device,
            "git": commit, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def loadavg() -> list[float]:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return []


# ----------------------------------------------------------------------------- main


def plan(args) -> list[dict]:
    sizes = [int(s) for s in (args.sizes or ("128,256,512" if args.device == "cpu" else "256,512,1024,2048")).split(",")]
    chunk = args.chunk or default_chunk(args.device)
    frameworks = args.frameworks.split(",")
    cases = []
    if args.cases:
        for item in args.cases.split(","):
            size, batch, opt, prec = item.split(":")
            cases.append(dict(size=int(size), batch=int(batch), optimizer=opt, precision=prec, chunk=chunk,
                              frameworks=frameworks))
        return cases
    for size in sizes:
        for batch in (int(b) for b in args.batches.split(",")):
            for opt in args.optimizers.split(","):
                for prec in args.precisions.split(","):
                    cases.append(dict(size=size, batch=batch, optimizer=opt, precision=prec, chunk=chunk, frameworks=frameworks))
    if args.quality_size and "bf16" not in args.precisions.split(","):
        cases.append(dict(size=args.quality_size, batch=1, optimizer="adam", precision="bf16", chunk=chunk,
                          frameworks=[f for f in frameworks if f != "torch-compile"]))
    return cases


def quality(rows: list[dict], results: dict) -> list[dict]:
    """bf16 against fp32 (jaxstyle, same steps): loss ratio and PSNR of the images."""
    out = []
    for key, res in results.items():
        size, batch, opt, prec = key
        ref = results.get((size, batch, opt, "fp32")) or results.get((size, batch, opt, "tf32"))
        if prec != "bf16" or ref is None:
            continue
        out.append({"size": size, "batch": batch, "optimizer": opt, "loss_ratio_bf16_over_fp32": res["total"][0] / ref["total"][0],
                    "psnr_db": psnr(res["images"], ref["images"])})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench import report

    t_start = time.perf_counter()
    start_load = loadavg()
    with tempfile.TemporaryDirectory(prefix="jaxstyle-bench-") as tmp:
        weights, weights_desc = weights_file(args.weights, Path(tmp))
        common = {"device": args.device, "weights": weights, "threads": args.threads or None}
        cases = plan(args)
        precisions = sorted({c["precision"] for c in cases})
        print(f"bench: {len(cases)} cases on {args.device}; weights {weights_desc}; measuring matmul peak…", flush=True)
        peak_worker = Worker(dict(common, framework="peak", precisions=precisions), args.case_timeout)
        peaks = peak_worker.hello
        peak_worker.stop()
        print("bench: matmul peak " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()), flush=True)
        rows, results = [], {}
        for case in cases:
            if args.budget and time.perf_counter() - t_start > args.budget:
                rows.append(dict(case, framework="*", status="skipped (budget)"))
                continue
            print(f"case {case['size']}px B={case['batch']} {case['optimizer']} {case['precision']}", flush=True)
            case_rows, res = run_case(case, common, args, peaks)
            rows += case_rows
            if res is not None:
                results[(case["size"], case["batch"], case["optimizer"], case["precision"])] = res
        # Again at the end, keeping the best: a busy machine at the start understates the peak.
        peak_worker = Worker(dict(common, framework="peak", precisions=precisions), args.case_timeout)
        end_peaks = peak_worker.hello
        peak_worker.stop()
        for k, v in end_peaks.items():
            peaks[k] = max(v, peaks.get(k, 0.0))
        for row in rows:  # the fractions against the final peaks
            if row.get("status") == "ok":
                peak = max(v for k, v in peaks.items() if k.endswith(f"-{row['precision']}"))
                row["frac_peak"] = row["gflops"] * 1e9 / peak
    out = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(args.device),
        "weights": weights_desc,
        "images": images(8)[2],
        "threads": args.threads or len(os.sched_getaffinity(0)),
        "load_before": start_load,
        "load_after": loadavg(),
        "matmul_peak_flops": peaks,
        "rows": rows,
        "quality": quality(rows, results),
        "seconds": time.perf_counter() - t_start,
    }
    for r in out["rows"]:
        r.pop("frameworks", None)
    paths = report.write(out, RESULTS, args.tag or args.device, plot=not args.no_plot)
    print(report.markdown(out))
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in paths))
    return 1 if any(r["status"] == "disagree" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
