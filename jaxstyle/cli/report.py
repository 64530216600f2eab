"""What every optimising command shares at the edges: the network with its output label,
the progress bar, the result record (``--json``) and the one summary line."""

from __future__ import annotations

import sys
import time

from jaxstyle.cli.options import summary_json

# The --json record; "size" is [height, width], "losses" the last evaluated loss terms.
JSON_KEYS = ("output", "command", "preset", "steps", "size", "seconds", "optimize_seconds", "compile_seconds",
             "losses", "weights", "pretrained")


def load_network(args, cfg):
    """(network, info, output metadata, cfg): the network (raw, or Gatys' normalised one when
    the weights are not those the preset was tuned on; ``cfg`` follows); says on stderr when
    the weights are untrained."""
    from jaxstyle.api.network import resolve
    from jaxstyle.model.weights import provenance_note

    network, info, cfg = resolve(None, args.weights, cfg, progress=not getattr(args, "quiet", False))
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
        "losses": {k: float(v[0]) for k, v in p.terms.items()} if p else {},
        "weights": info.source,
        "pretrained": info.pretrained,
    }
    if getattr(args, "json", False):
        print(summary_json(record))
    origin = " with weights of unknown origin (not recognised by sha256)" if info.pretrained is None else ""
    print(f"jaxstyle: wrote {out} ({result.shape[1]}×{result.shape[0]}) in {record['seconds']:.1f} s "
          f"(first step incl. compile {record['compile_seconds']:.1f} s){origin}: {format_terms(p.terms if p else {})}",
          file=sys.stderr)
    return 0


__all__ = ["Bar", "JSON_KEYS", "finish", "format_terms", "load_network"]
