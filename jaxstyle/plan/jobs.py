"""Planning a batch: pairs, output names, per-pair configs, shares, buckets, batch sizes.

Pure bookkeeping, no JAX work: everything here is deterministic in its inputs, so every
process of a distributed run and every rerun of a command computes the same job list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from jaxstyle.io import image as imageio
from jaxstyle.config import Config, Recipe, make_config
from jaxstyle.errors import UserError
from jaxstyle.io.sources import Item
from jaxstyle.plan.pairs import PairRow
from jaxstyle.optim import optimizers
from jaxstyle.plan import memory

PAIRINGS = ("product", "zip")


@dataclass(frozen=True)
class Job:
    """One style/content pair to make."""

    index: int  # position in the whole job list (all processes)
    pair: str  # the pair's id: its output path relative to OUTDIR
    content: Item
    styles: tuple[Item, ...]
    cfg: Config
    options: dict = field(default_factory=dict, compare=False)  # the per-pair overrides


def pair_up(contents: Sequence[Item], styles: Sequence[Item], how: str) -> list[PairRow]:
    """``product``: every content with every style, content-major (so a content's pairs
    are neighbours and share its features); ``zip``: the i-th content with the i-th style."""
    if how == "product":
        return [PairRow(c, (s,), None, {}, "") for c in contents for s in styles]
    if how == "zip":
        if len(contents) != len(styles):
            raise UserError(f"--pairs zip needs as many contents as styles, got {len(contents)} and {len(styles)}")
        return [PairRow(c, (s,), None, {}, "") for c, s in zip(contents, styles)]
    raise UserError(f"--pairs {how!r}: give product, zip or a .jsonl/.csv pair manifest")


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def _clean(stem: str) -> str:
    # Readable, but never a path separator or a control character in a file name.
    return re.sub(r"[\x00-\x1f/\\:]+", "_", stem).strip(" .") or "image"


def _stems(items: Sequence[Item]) -> dict[str, str]:
    """key → stem; stems shared by different images get a short hash of their key."""
    by_stem: dict[str, set[str]] = {}
    for it in items:
        by_stem.setdefault(_clean(it.stem), set()).add(it.key)
    return {
        it.key: _clean(it.stem) if len(by_stem[_clean(it.stem)]) == 1 else f"{_clean(it.stem)}-{_short_hash(it.key)}"
        for it in items
    }


def _explicit_name(name: str, ext: str, where: str) -> str:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise UserError(f"{where}: output {name!r} must be a relative path inside -o OUTDIR")
    if not p.suffix:
        p = p.with_name(p.name + ext)
    if p.suffix.lower() not in imageio.SUPPORTED_OUTPUT_SUFFIXES:
        raise UserError(f"{where}: output {name!r} must end in one of {', '.join(imageio.SUPPORTED_OUTPUT_SUFFIXES)}")
    return str(p)


class Jobs(list):
    """Jobs in order; ``skipped`` holds one line per manifest row that made no job."""

    def __init__(self, jobs=(), skipped=()):
        super().__init__(jobs)
        self.skipped: list[str] = list(skipped)


def make_jobs(rows: Sequence[PairRow], *, preset: str, overrides: dict, ext: str) -> Jobs:
    """Jobs with their configs and unique, deterministic names ``CONTENT__STYLE.EXT``
    (blends: ``CONTENT__A+B.EXT``). Clashing stems get a hash of the image's key; pairs
    that would still share a name get a hash of their options, then ``-2``, ``-3``…

    A manifest row whose options or output name are not valid is skipped with its line
    (``Jobs.skipped``, after the rows' own ``skipped``); options given for every pair
    (``overrides``) are checked first and stop everything when wrong."""
    make_config(preset, **overrides)
    skipped = list(getattr(rows, "skipped", ()))
    contents = _stems([r.content for r in rows])
    styles = _stems([s for r in rows for s in r.styles])
    taken: set[str] = set()
    explicit: dict[int, str] = {}
    for i, r in enumerate(rows):
        if r.output:
            try:
                name = _explicit_name(r.output, ext, r.where)
            except UserError as e:
                skipped.append(str(e))
                explicit[i] = ""
                continue
            if name in taken:
                skipped.append(f"{r.where}: another pair of the manifest has the output {name!r}; give each pair its own")
                explicit[i] = ""
                continue
            taken.add(name)
            explicit[i] = name
    jobs = []
    for i, r in enumerate(rows):
        if explicit.get(i) == "":
            continue
        try:
            cfg = make_config(preset, **{**overrides, **r.options})
        except (UserError, TypeError) as e:
            skipped.append(f"{r.where}: {e}" if r.where else str(e))
            continue
        if r.output:
            name = explicit[i]
        else:
            base = f"{contents[r.content.key]}__{'+'.join(styles[s.key] for s in r.styles)}"
            name = base + ext
            if name in taken and r.options:
                name = f"{base}-{_short_hash(json.dumps(r.options, sort_keys=True, default=str))}{ext}"
            n = 2
            while name in taken:
                name, n = f"{base}-{n}{ext}", n + 1
        taken.add(name)
        jobs.append(Job(len(jobs), name, r.content, r.styles, cfg, dict(r.options)))
    if not jobs and skipped:
        raise UserError(skipped[0])
    return Jobs(jobs, skipped)


def share(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Process ``index`` of ``count``'s deterministic, disjoint share: a contiguous block,
    so a content's neighbouring pairs (and its features) stay on one host."""
    n = len(jobs)
    return list(jobs[index * n // count : (index + 1) * n // count])


def fingerprint(job: Job, weights_id: str) -> str:
    """What makes a finished output valid for this job: inputs, config and weights."""
    record = {"content": job.content.key, "styles": [s.key for s in job.styles],
              "config": dataclasses.asdict(job.cfg), "weights": weights_id}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bucket_size(pending: int, per_device: int, devices: int) -> int:
    """The batch size of a whole bucket (one compile serves it): ``devices`` × k pairs.

    k, the pairs each device runs at once, splits the bucket as evenly as possible into
    batches of at most ``per_device`` and does NOT depend on the device count: a pair's
    numbers depend on the batch size its device computes (XLA picks other kernels for a
    batch of 1 than for more), so with k fixed, spreading the job over more devices changes
    no number. The last batch is padded with copies, their results dropped.
    """
    batches = math.ceil(pending / per_device)
    return math.ceil(pending / batches) * devices


# ------------------------------------------------------------------------ batch size

# Pairs per device at most. On CPU a batch buys no speed (bench/batch_throughput.py: 1, 2
# and 4 pairs within 5 % at 128 and 256 px, 8 pairs 17 % slower at 256 px), so a small
# batch keeps the memory low; accelerators gain from filling the device.
MAX_PER_DEVICE = {"cpu": 2}
DEFAULT_MAX_PER_DEVICE = 32
BUDGET = 0.8  # of the free memory; memory.estimate already adds its own margin


def auto_per_device(recipe: Recipe, shape: tuple[int, int], devices: int, backend: str, free: int,
                    shared: bool = False) -> int:
    """Pairs per device: the most that :func:`jaxstyle.memory.estimate` (L-BFGS history,
    VGG activations, calibrated on XLA) fits in 80 % of ``free``, capped.

    ``shared`` (CPU devices share the host RAM): the size is chosen as for one device, so
    that it does not change with the device count (see :func:`bucket_size`), and lowered
    only if all devices' batches together would not fit.
    """
    limit = optimizers.kind(recipe).batch_limit
    if limit is not None:
        return limit  # e.g. a line search whose while loops become selects under vmap (DESIGN.md)
    k = 1
    while k < MAX_PER_DEVICE.get(backend, DEFAULT_MAX_PER_DEVICE) and \
            memory.estimate(recipe, shape, k + 1).total <= BUDGET * free:
        k += 1
    while shared and k > 1 and devices * memory.estimate(recipe, shape, k).total > BUDGET * free:
        k -= 1
    return k


__all__ = [
    "Job", "Jobs", "PAIRINGS", "auto_per_device", "bucket_size", "fingerprint", "make_jobs",
    "pair_up", "share",
]
