"""Render a benchmark JSON as a markdown table and a PNG plot.

Command: ``python -m bench.report bench/results/cpu-latest.json`` (``bench.run`` calls it).

What it shows: one row per case and framework (median ms per iteration with its quartiles,
CPU seconds per iteration, compile, peak memory, images × iterations per second, achieved
GFLOP/s and the fraction of the measured matmul peak, the jaxstyle / other ratio), the
agreement checks, the bf16 quality check; the plot has time per iteration and achieved
GFLOP/s against image size, one line per framework and optimizer.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np


def write(out: dict, folder: Path, tag: str, plot: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    paths = []
    text = json.dumps(out, indent=1, default=_jsonable)
    for name in (f"{tag}-{stamp}.json", f"{tag}-latest.json"):
        (folder / name).write_text(text)
        paths.append(folder / name)
    (folder / f"{tag}-latest.md").write_text(markdown(out))
    paths.append(folder / f"{tag}-latest.md")
    if plot:
        try:
            paths.append(render_plot(out, folder / f"{tag}-latest.png"))
        except ImportError as e:  # matplotlib is in the bench extra, not a dependency
            print(f"bench: no plot ({e}); pip install -e '.[bench]'", file=sys.stderr)
    return paths


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return None  # images stay out of the JSON
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def _fmt_ms(s: dict) -> str:
    return f"{s['median'] * 1e3:,.1f} [{s['q1'] * 1e3:,.1f}–{s['q3'] * 1e3:,.1f}] {s['min'] * 1e3:,.1f}"


def markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB; device {m['device']}"
        + (f" ({_device_names(out)})" if m["device"] == "gpu" else "")
        + f"; {', '.join(f'{k} {v}' for k, v in m['versions'].items())}; git {m['git']}.",
        f"**Run:** `{out['command']}` at {out['when']}, {out['seconds']:.0f} s; threads per framework {out['threads']}; "
        f"weights {out['weights']}; images {out['images']}; load average before/after "
        f"{'/'.join(f'{x:.1f}' for x in out['load_before'][:1] + out['load_after'][:1])}.",
        "**Matmul peak (measured):** "
        + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in (out["matmul_peak_flops"] or {}).items()) + ".",
        "",
        "| size | B | opt | prec | framework | ms/iter median [q1–q3] min | CPU s/iter | compile s | mem MB | img·it/s | GFLOP/iter | GFLOP/s | % peak | others' CPU % | jaxstyle ÷ this (paired) |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["rows"]:
        head = f"| {r['size']} | {r['batch']} | {r['optimizer']} | {r['precision']} | {r['framework']} |"
        if r["status"] != "ok":
            why = r.get("error", "").splitlines()[0][:80] if r.get("error") else ""
            if r["status"] == "disagree" and r.get("agreement"):
                a = r["agreement"]
                why = f"error {a['worst_rel_err']:.1e} at {a['where']} over its limit"
            lines.append(head + f" **{r['status']}** {why} |" + " |" * 9)
            continue
        mem = r["device_peak_mb"] if r.get("device_peak_mb") else r["rss_growth_mb"]
        ratio = ""
        if "jax_over_this" in r:
            ratio = f"{r['jax_over_this']:.2f} ({r['jax_over_this_paired']:.2f})"
        lines.append(
            head + f" {_fmt_ms(r['step_s'])} | {r['cpu_s']['median']:.3f} | {r['compile_s']:.1f} | {mem:,.0f} | "
            f"{r['img_it_per_s']:.2f} | {r['gflop_per_iter']:.1f} | {r['gflops']:,.0f} | {100 * r['frac_peak']:.0f} | "
            f"{_others(r)} | {ratio} |"
        )
    lines += [
        "",
        "ms/iter: wall time per iteration, median over the timed rounds (quartiles in brackets, then the fastest round); rounds of "
        "the frameworks alternate. CPU s/iter: process CPU time per iteration (all threads), which a busy "
        "machine disturbs less than wall time. mem: peak RSS growth of the framework's own process over its "
        "state before the problem was built (GPU: device peak). GFLOP/iter: analytic count (bench/flops.py) × B. "
        "jaxstyle ÷ this: ratio of median times (below 1: jaxstyle is faster), in brackets the median of the "
        "per-round ratios. others' CPU %: the median share of all cores that other processes on the machine used "
        "during this framework's timed rounds (a shared machine; 0 is a quiet one).",
    ]
    checks = [r for r in out["rows"] if r.get("agreement")]
    if checks:
        lines += ["", "**Agreement before timing** (loss terms, jaxstyle vs each; limits: every term at step 0 "
                  "within 1e-4 of itself (bf16 3e-2, TF32 1e-2), at step N within 1e-3 of the total loss (TF32 1e-2); "
                  "the worst error found): " + "; ".join(
            f"{r['size']}px {r['optimizer']} {r['precision']} {r['framework']}: {r['agreement']['worst_rel_err']:.1e} "
            f"at {r['agreement']['where']}" + ("" if r["agreement"]["ok"] else " FAILED")
            for r in checks
        ) + "."]
    if out.get("quality"):
        lines += ["", "**bf16 vs fp32 (jaxstyle, same steps):** " + "; ".join(
            f"{q['size']}px {q['optimizer']}: loss ratio {q['loss_ratio_bf16_over_fp32']:.4f}, PSNR {q['psnr_db']:.1f} dB"
            for q in out["quality"]
        ) + "."]
    return "\n".join(lines) + "\n"


def compact(out: dict) -> str:
    """A short plain-text table: one line per case, the frameworks side by side."""
    cases: dict[tuple, dict] = {}
    for r in out["rows"]:
        key = (r["size"], r["batch"], r["optimizer"], r["precision"])
        cases.setdefault(key, {})[r["framework"]] = r
    names = ["jax", "torch", "torch-loop", "torch-compile"]
    lines = [f"{'size':>5} {'B':>2} {'opt':5} {'prec':4} " + " ".join(f"{n + ' ms':>17}" for n in names)
             + f" {'jax GFLOP/s':>11} {'vs eager':>8} {'vs compile':>10}"]
    for (size, batch, opt, prec), fws in cases.items():
        cells = []
        for n in names:
            r = fws.get(n)
            cells.append(f"{r['step_s']['median'] * 1e3:>17.2f}" if r and r["status"] == "ok"
                         else f"{(r or {}).get('status', '-')[:17]:>17}")
        j = fws.get("jax", {})
        ratio = lambda n: (f"{fws[n]['jax_over_this']:.2f}" if n in fws and "jax_over_this" in fws[n] else "-")  # noqa: E731
        gf = f"{j['gflops']:,.0f}" if j.get("status") == "ok" else "-"
        lines.append(f"{size:>5} {batch:>2} {opt:5} {prec:4} " + " ".join(cells)
                     + f" {gf:>11} {ratio('torch'):>8} {ratio('torch-compile'):>10}")
    return "\n".join(lines) + "\n(vs: jaxstyle time ÷ the other's; below 1 means jaxstyle is faster)\n"


def _others(r: dict) -> str:
    shares = [x for x in r.get("others_cpu_share") or [] if x is not None]
    return f"{100 * float(np.median(shares)):.0f}" if shares else "–"


def _device_names(out: dict) -> str:
    return ", ".join(sorted({r["device"] for r in out["rows"] if r.get("device")}))


def render_plot(out: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in out["rows"] if r["status"] == "ok" and r["batch"] == 1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = {}
    for r in rows:
        series.setdefault((r["framework"], r["optimizer"], r["precision"]), []).append(r)
    for (fw, opt, prec), rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["size"])
        x = [r["size"] for r in rs]
        style = "-" if fw == "jax" else ("--" if fw == "torch" else ":")
        marker = "o" if opt == "adam" else "s"
        label = f"{'jaxstyle' if fw == 'jax' else fw} {opt} {prec}"
        ax1.errorbar(x, [r["step_s"]["median"] * 1e3 for r in rs],
                     yerr=[[r["step_s"]["median"] * 1e3 - r["step_s"]["q1"] * 1e3 for r in rs],
                           [r["step_s"]["q3"] * 1e3 - r["step_s"]["median"] * 1e3 for r in rs]],
                     linestyle=style, marker=marker, label=label, capsize=2)
        ax2.plot(x, [r["gflops"] for r in rs], linestyle=style, marker=marker, label=label)
    for ax, title in ((ax1, "time per iteration (ms, median, IQR)"), (ax2, "achieved GFLOP/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("image side (px)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    ax1.set_yscale("log")
    peaks = out["matmul_peak_flops"] or {}
    for prec in sorted({r["precision"] for r in rows}):
        best = max((v for k, v in peaks.items() if k.endswith(f"-{prec}")), default=0) / 1e9
        if best:
            ax2.axhline(best, color="grey", linewidth=0.8, linestyle="--" if prec == "bf16" else "-")
            ax2.text(ax2.get_xlim()[0], best, f" measured {prec} peak (matmul/conv)", va="bottom", fontsize=8,
                     color="grey")
    ax1.legend(fontsize=7)
    m = out["machine"]
    fig.suptitle(f"jaxstyle vs PyTorch, VGG19 Gatys step — {m['cpu']} ({m['cores']} cores), {m['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    print(markdown(data))
