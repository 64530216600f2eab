"""What every optimising command shares at the edges: the network with its output label,
the progress bar, the result record (``--json``) and the one summary line; and the start-up
stamps (:func:`mark`).

Start-up is measured from the process's launch (Linux: its start time in ``/proc``; elsewhere
from when this module was imported). ``JAXSTYLE_TRACE_STARTUP=1`` prints one line per phase on
stderr, ``jaxstyle: startup: +S.SSS s PHASE`` (phases: ``parsed``, ``imported``, ``inputs``,
``network``, ``first step``, ``written``); the ``--json`` record always carries
``first_step_seconds``, launch to the end of the first optimisation step (``bench/startup.py``).
"""

from __future__ import annotations

import gc
import os
import sys
import time

from jaxstyle.cli.options import summary_json

# The --json record; "size" is [height, width], "losses" the last evaluated loss terms,
# "precision" the arithmetic that ran (--precision auto resolved), "first_step_seconds" the
# time from launch to the end of the first step.
JSON_KEYS = ("output", "command", "preset", "steps", "size", "seconds", "optimize_seconds", "compile_seconds",
             "first_step_seconds", "precision", "losses", "weights", "pretrained")

_IMPORTED = time.perf_counter()
_STAMPS: dict[str, float] = {}
_GC_HELD = [False]
# The command line of the command running (reset_stamps): what read_ahead/remember go by.
_ARGV: list[str] = []


def _launched_ago() -> float | None:
    """Seconds since this process was started, from /proc (10 ms ticks); None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime, in ticks
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# perf_counter() at the process's launch: stamps are perf_counter() differences from it.
_LAUNCH = _IMPORTED - (_launched_ago() or 0.0)


def since_launch() -> float:
    return time.perf_counter() - _LAUNCH


def reset_stamps(argv: list[str] | None = None) -> None:
    """Forget the stamps (and any unused prefetched weights) of an earlier command run in this
    process (the CLI called from Python); ``argv`` is the new command's line."""
    _STAMPS.clear()
    _PREFETCHED.clear()
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)


def _tag() -> str:
    """The command line without its output path (a script writing out1, out2, ... runs the
    same programs), and the folder it ran in (relative input paths name other files elsewhere)."""
    words, value = [os.getcwd()], False
    for word in _ARGV:
        flag = word in ("-o", "--output")
        if not (flag or value or word.startswith(("-o=", "--output="))):
            words.append(word)
        value = flag
    return "\0".join(words)


def read_ahead() -> None:
    """Import JAX, then start reading the compiled programs the same command line used last
    time (``engine.executables.read_ahead``) while the command's other imports run."""
    from jaxstyle.engine import executables

    try:
        executables.read_ahead(_tag())
    except Exception:  # noqa: BLE001 - an optimisation only: the programs load in order
        pass


def start(args) -> None:
    """What a command reporting through :class:`Bar` does before its imports: hold the
    collector until the first step, read the weights in a thread, then import JAX and read
    the compiled programs ahead while the rest imports."""
    hold_gc()
    prefetch_network(args)
    read_ahead()


def hold_gc() -> None:
    """Hold off Python's cyclic garbage collector until the first step (:class:`Bar`) or
    :func:`release_gc` (``main`` calls it on the way out). Start-up makes about a million
    objects that stay alive (JAX's modules, traced programs); collecting them again and again
    took ~10 % of a warm start's CPU time. Only for commands whose progress comes through
    :class:`Bar`: a server or a batch must not run for hours without the collector."""
    if gc.isenabled():
        gc.disable()
        _GC_HELD[0] = True


def release_gc() -> None:
    """Let the collector run again, if :func:`hold_gc` stopped it."""
    if _GC_HELD[0]:
        _GC_HELD[0] = False
        gc.enable()


def mark(phase: str) -> float:
    """Record (once per phase) and return the seconds from launch to now; printed on stderr
    when ``JAXSTYLE_TRACE_STARTUP`` is set (not empty or 0)."""
    if phase not in _STAMPS:
        _STAMPS[phase] = since_launch()
        if os.environ.get("JAXSTYLE_TRACE_STARTUP", "") not in ("", "0"):
            print(f"jaxstyle: startup: +{_STAMPS[phase]:.3f} s {phase}", file=sys.stderr, flush=True)
    return _STAMPS[phase]


# (weights, model, weights source) -> the Future of jaxstyle.api.network.prefetch
_PREFETCHED: dict = {}


def prefetch_network(args) -> None:
    """Start reading the weights ``args`` name in a thread, before the command imports JAX
    (about a second, which the reading then overlaps); :func:`load_network` takes the result
    when its config asks for the same weights. Anything unusual (an option the config refuses,
    weights that are not on disk yet) starts nothing: the command then finds it in order."""
    from jaxstyle import config
    from jaxstyle.api.network import prefetch
    from jaxstyle.cli.options import overrides

    try:
        # fp32: "auto" would ask JAX for its backend; precision does not choose the weights.
        cfg = config.make_config(args.preset, **{**overrides(args), "precision": "fp32"})
        future = prefetch(args.weights, cfg)
    except Exception:  # noqa: BLE001 - reported, if it is the user's, when the command makes its config
        return
    if future is not None:
        _PREFETCHED[(args.weights, cfg.recipe.model, cfg.weights_source)] = future


def load_network(args, cfg):
    """(network, info, output metadata, cfg): the network (raw, or Gatys' normalised one when
    the weights are not those the preset was tuned on; ``cfg`` follows); says on stderr when
    the weights are untrained."""
    from jaxstyle.api.network import resolve
    from jaxstyle.model.weights import provenance_note

    prefetched = _PREFETCHED.pop((args.weights, cfg.recipe.model, cfg.weights_source), None)
    network, info, cfg = resolve(None, args.weights, cfg, progress=not getattr(args, "quiet", False),
                                 prefetched=prefetched)
    metadata = {"jaxstyle:preset": cfg.preset, "jaxstyle:weights": provenance_note(info) or info.source,
                "jaxstyle:network": cfg.network}
    if info.pretrained is False:
        print(f"jaxstyle: note: using untrained weights {info.source}; the output will not look stylized",
              file=sys.stderr)
    # Unknown origin is said in the summary line and the output's metadata, once the run has
    # finished: an error stays the only line of a failed run.
    return network, info, metadata, cfg


def format_terms(terms: dict) -> str:
    """``total … style … content … tv …`` of the first image of a batch of terms."""
    if not terms:
        return "no steps"
    style = sum(float(v[0]) for k, v in terms.items() if k.startswith("style:"))
    parts = {"total": float(terms["total"][0]), "style": style}
    for k in ("content", "tv", "temporal"):
        if k in terms:
            parts[k] = float(terms[k][0])
    return " ".join(f"{k} {v:.4g}" for k, v in parts.items())


class Bar:
    """A tqdm bar fed by Progress callbacks; keeps the last one."""

    def __init__(self, quiet: bool, total: int | None = None, desc: str = "optimise"):
        from tqdm import tqdm

        self.last = None
        self.desc = desc
        self.bar = tqdm(total=total, disable=quiet, file=sys.stderr, unit="it", dynamic_ncols=True, desc="compiling")

    def __call__(self, p) -> None:
        if p.step >= 1:
            mark("first step")  # the step's terms are on the host: it has finished
            release_gc()
        self.bar.total = p.total
        self.bar.set_description(self.desc)
        self.bar.update(p.step - self.bar.n)
        self.bar.set_postfix_str(format_terms(p.terms), refresh=False)
        self.last = p

    def close(self) -> None:
        self.bar.close()


def finish(args, command: str, cfg, out, result, info, bar: Bar, t_start: float) -> int:
    """Print the record (``--json``) and the summary line of a written result."""
    p = bar.last
    record = {
        "output": str(out),
        "command": command,
        "preset": cfg.preset,
        "steps": p.total if p else 0,
        "size": list(result.shape[:2]),
        "seconds": round(time.perf_counter() - t_start, 3),
        "optimize_seconds": round(p.seconds + p.compile_seconds, 3) if p else 0.0,
        "compile_seconds": round(p.compile_seconds, 3) if p else 0.0,
        "first_step_seconds": round(_STAMPS["first step"], 3) if "first step" in _STAMPS else None,
        "precision": cfg.recipe.precision,
        "losses": {k: float(v[0]) for k, v in p.terms.items()} if p else {},
        "weights": info.source,
        "pretrained": info.pretrained,
    }
    mark("written")
    from jaxstyle.engine import executables  # imported already: the command has run its programs

    executables.remember(_tag())
    if getattr(args, "json", False):
        print(summary_json(record))
    origin = " with weights of unknown origin (not recognised by sha256)" if info.pretrained is None else ""
    print(f"jaxstyle: wrote {out} ({result.shape[1]}×{result.shape[0]}, {cfg.recipe.precision}) in "
          f"{record['seconds']:.1f} s (first step incl. compile {record['compile_seconds']:.1f} s){origin}: "
          f"{format_terms(p.terms if p else {})}", file=sys.stderr)
    return 0


__all__ = ["Bar", "JSON_KEYS", "finish", "format_terms", "load_network", "mark", "prefetch_network", "read_ahead", "start", "hold_gc", "release_gc", "reset_stamps", "since_launch"]
