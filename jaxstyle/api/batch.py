"""Many style/content pairs: plans, outputs, resume, and the Python API.

    for result in jaxstyle.run_batch(["photos/"], ["paintings/"], "out/", size=256):
        print(result.pair, result.status)
    images = jaxstyle.stylize_batch([photo], [style_a, style_b], steps=200)

:mod:`jaxstyle.plan.jobs` makes the job list, :mod:`jaxstyle.plan.runner` runs it
(buckets, batches, sharding). Here: this process's share of the jobs, which are finished,
and, with an output folder, every finished pair saved atomically and recorded in the
results manifest so that a rerun skips it (see :mod:`jaxstyle.io.manifest`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxstyle.api.network import resolve
from jaxstyle.config import make_config, with_network
from jaxstyle.engine.loop import batch_mesh
from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.io import manifest, sources
from jaxstyle.plan import jobs as planning
from jaxstyle.plan.pairs import read_pairs
from jaxstyle.plan.runner import Engine, PairResult

# ------------------------------------------------------------------------------ plans


def _items(x, kind: str) -> list[sources.Item]:
    if x is None:
        return []
    if isinstance(x, (str, os.PathLike, np.ndarray)):
        x = [x]
    items, specs = [], []
    for i, v in enumerate(x):
        if isinstance(v, np.ndarray):
            items.append(sources.array_item(v, i, kind))
        else:
            specs.append(os.fspath(v))
    return items + (sources.expand(specs) if specs else [])


def _made_here(outdir: Path | None) -> set[str]:
    """Keys of the files earlier runs wrote in ``outdir``: with ``-o`` inside an input folder,
    a rerun must not take its own outputs for inputs."""
    if outdir is None or not outdir.is_dir():
        return set()
    return {str((outdir / r["output"]).absolute()) for r in manifest.read_records(outdir) if r.get("output")}


@dataclass
class Plan:
    jobs: list[planning.Job]  # this process's share, in order
    total: int  # jobs in the whole run, all processes
    done: set[str]  # pairs of the share already finished (skipped)
    outdir: Path | None
    fingerprints: dict[str, str]
    process_index: int = 0
    process_count: int = 1
    all_jobs: list[planning.Job] = field(default_factory=list, repr=False)

    @property
    def pending(self) -> list[planning.Job]:
        return [j for j in self.jobs if j.pair not in self.done]


def make_jobs(contents=None, styles=None, outdir=None, *, pairs: str = "product", preset: str = "gatys",
              ext: str = ".png", exclude: Sequence[str] = (), **options) -> list[planning.Job]:
    """Every job of a batch, all processes, in order (no JAX work: cheap, deterministic).

    ``contents``/``styles``: paths, folders, globs, ``tfds:`` sources or arrays (one or a
    list); ``pairs``: ``product``, ``zip`` or the path of a JSONL/CSV pair manifest (then
    ``contents``/``styles`` are not given). ``options`` are ``Config`` fields for every pair.
    Files this batch wrote before in ``outdir`` (and the paths in ``exclude``) are never inputs.
    """
    out = Path(outdir) if outdir is not None else None
    if pairs in planning.PAIRINGS:
        made = _made_here(out) | {str(Path(p).absolute()) for p in exclude}
        c = [i for i in _items(contents, "content") if i.key not in made]
        s = [i for i in _items(styles, "style") if i.key not in made]
        if not c or not s:
            kind = "content" if not c else "style"
            raise UserError(f"give at least one {kind} image (--{kind})")
        rows = planning.pair_up(c, s, pairs)
    else:
        if contents is not None or styles is not None:
            raise UserError("with a pair manifest, leave out --content and --style: the manifest names both")
        rows = read_pairs(pairs)
    if not ext.startswith("."):
        ext = "." + ext
    if ext.lower() not in imageio.SUPPORTED_OUTPUT_SUFFIXES:
        raise UserError(f"--format {ext[1:]!r}: choose one of {', '.join(s[1:] for s in imageio.SUPPORTED_OUTPUT_SUFFIXES)}")
    return planning.make_jobs(rows, preset=preset, overrides=options, ext=ext)


def make_plan(jobs: Sequence[planning.Job], outdir=None, *, weights_id: str = "", process_index: int = 0,
              process_count: int = 1) -> Plan:
    """This process's share of ``jobs`` and, with an output folder, which are finished."""
    out = Path(outdir) if outdir is not None else None
    mine = planning.share(jobs, process_index, process_count)
    prints = {j.pair: planning.fingerprint(j, weights_id) for j in mine}
    done = manifest.finished(out, prints) if out is not None and out.is_dir() else set()
    return Plan(mine, len(jobs), done, out, prints, process_index, process_count, list(jobs))


def plan_batch(contents=None, styles=None, outdir=None, *, weights_id: str = "", process_index: int = 0,
               process_count: int = 1, **kwargs) -> Plan:
    """:func:`make_jobs` then :func:`make_plan`."""
    jobs = make_jobs(contents, styles, outdir, **kwargs)
    return make_plan(jobs, outdir, weights_id=weights_id, process_index=process_index, process_count=process_count)


def execute(plan: Plan, network, *, batch_size: int | None = None, mesh=None,
            should_stop: Callable[[], bool] | None = None, on_step=None,
            metadata: dict | None = None, engine: Engine | None = None) -> Iterator[PairResult]:
    """Run the plan's pending pairs; with an output folder, save each and record it."""
    engine = engine or Engine(network, batch_size=batch_size, mesh=mesh, should_stop=should_stop, on_step=on_step)
    writer = None
    if plan.outdir is not None:
        index = plan.process_index if plan.process_count > 1 else None
        writer = manifest.Writer(manifest.manifest_path(plan.outdir, index))
        # Which pairs are finished is read again now that this share's manifest is locked: a
        # run that finished pairs between planning and here must not have them made twice.
        plan.done = manifest.finished(plan.outdir, plan.fingerprints)
        _remove_stale_temporaries(plan)
    try:
        for result in engine.run(plan.pending):
            if writer is not None:
                if result.status == "ok":
                    path = plan.outdir / result.pair
                    try:
                        imageio.save_image(path, result.image, metadata=metadata)
                        result.output = str(path)
                    except UserError as e:
                        result.status, result.error = "failed", str(e)
                writer.append(result.record(plan.fingerprints[result.pair], plan.process_index))
            yield result
    finally:
        if writer is not None:
            writer.close()


def _remove_stale_temporaries(plan: Plan) -> None:
    """Delete the temporary files a killed run left beside this share's outputs (never
    another process's: the shares are disjoint and the names are the pairs')."""
    mine = {(plan.outdir / j.pair).parent / f".{Path(j.pair).name}." for j in plan.jobs}
    prefixes = {str(p) for p in mine}
    for tmp in plan.outdir.rglob(".*.tmp"):
        name = str(tmp)
        cut = name[: name.rfind(".", 0, len(name) - len(".tmp")) + 1]  # ".NAME." before the random part
        if cut in prefixes:
            tmp.unlink(missing_ok=True)


def _network(network, weights, cfg):
    """(network, weights id, "raw" | "normalized")."""
    network, info, cfg = resolve(network, weights, cfg)
    return network, ("network" if info is None else weights_id(info)), cfg.network


def for_network(jobs: Sequence[planning.Job], network: str) -> planning.Jobs:
    """The jobs with their configs on ``network`` (:func:`jaxstyle.config.with_network`)."""
    moved = [dataclasses.replace(j, cfg=with_network(j.cfg, network)) for j in jobs]
    return planning.Jobs(moved, getattr(jobs, "skipped", ()))


def weights_id(info) -> str:
    return f"{info.source}:{info.source_sha256}"


def run_batch(contents=None, styles=None, outdir=None, *, pairs: str = "product", weights=None,
              preset: str = "gatys", network=None, batch_size: int | None = None, mesh=None, ext: str = ".png",
              should_stop: Callable[[], bool] | None = None, **options) -> Iterator[PairResult]:
    """Stylize many pairs; a generator of :class:`PairResult`, one per pair run now.

    ``contents``/``styles``: paths, folders, globs, ``tfds:`` sources or arrays. ``pairs``:
    ``product`` (every content with every style), ``zip`` or a JSONL/CSV pair manifest.
    ``outdir``: write ``CONTENT__STYLE.png`` files and ``results.jsonl`` there, skipping
    finished pairs; without it, each result carries its ``image``. ``options`` are
    ``Config`` fields with the CLI's defaults (``steps=``, ``size=``…). ``batch_size``: pairs
    per device at once (default automatic). Under ``jax.distributed`` each process runs its
    own share. ``mesh``: default all local devices.
    """
    import jax

    cfg = make_config(preset, **options)
    network, wid, kind = _network(network, weights, cfg)
    jobs = for_network(make_jobs(contents, styles, outdir, pairs=pairs, preset=preset, ext=ext, **options), kind)
    plan = make_plan(jobs, outdir, weights_id=wid, process_index=jax.process_index(),
                     process_count=jax.process_count())
    mesh = mesh if mesh is not None else batch_mesh()
    yield from execute(plan, network, batch_size=batch_size, mesh=mesh, should_stop=should_stop)


def stylize_batch(contents, styles, *, pairs: str = "product", weights=None, preset: str = "gatys",
                  network=None, batch_size: int | None = None, mesh=None, **options) -> list[np.ndarray]:
    """Stylize every pair (``product``: content-major; ``zip``) and return the images, H×W×3
    float32 in [0, 1], in pair order. Same options and defaults as :func:`jaxstyle.stylize`.
    Raises ``UserError`` if any pair fails."""
    cfg = make_config(preset, **options)
    network, _, kind = _network(network, weights, cfg)
    plan = make_plan(for_network(make_jobs(contents, styles, None, pairs=pairs, preset=preset, **options), kind))
    mesh = mesh if mesh is not None else batch_mesh()
    images: dict[int, np.ndarray] = {}
    for r in execute(plan, network, batch_size=batch_size, mesh=mesh):
        if r.status != "ok":
            raise UserError(f"pair {r.pair} failed: {r.error}")
        images[r.index] = r.image
    return [images[j.index] for j in plan.jobs]


def start_distributed(coordinator: str | None = None, num_processes: int | None = None,
                      process_id: int | None = None) -> tuple[int, int]:
    """``jax.distributed.initialize`` from flags, else ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, else JAX's own cluster detection (SLURM,
    Open MPI, TPU pods…). Returns (process index, process count)."""
    import jax

    def env_int(name):
        value = os.environ.get(name)
        try:
            return int(value) if value else None
        except ValueError:
            raise UserError(f"${name}={value!r} is not an integer") from None

    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else env_int("JAX_PROCESS_ID")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except Exception as e:  # noqa: BLE001 - JAX raises RuntimeError/ValueError/XlaRuntimeError
        why = " ".join(str(e).split())[:200]
        raise UserError(f"cannot start jax.distributed ({why}); give --coordinator HOST:PORT "
                        "--num-processes N --process-id I (or the JAX_* variables)") from None
    return jax.process_index(), jax.process_count()


__all__ = ["Engine", "PairResult", "Plan", "execute", "make_jobs", "make_plan", "plan_batch", "run_batch", "start_distributed",
           "stylize_batch", "weights_id"]
