"""Continuous batching: one worker thread owns the device and runs jobs in shared slots.

Jobs whose compiled program is the same (``slots.group_key``: recipe + exact content shape)
form a *group* of at most ``max_batch`` members that advance together, one compiled chunk of
steps per call (vmapped over the members). Jobs join and leave only between chunks: the
per-job optimiser states are split off the batch axis and the remaining ones stacked again,
which is exact because under vmap each job's state depends on its own slice alone. Each job
keeps its own step count; a chunk runs ``chunk`` steps when every member has that many left,
otherwise single steps (so no job ever takes more steps than it asked for). A job alone runs
the B = 1 program. Groups of different keys take turns, one chunk each.

The ASGI app never touches the device: it writes jobs to the :class:`~.store.Store`, sends
``wake``/``cancel`` through a thread-safe queue, and reads progress and previews from
:class:`Live`.
"""

from __future__ import annotations

import collections
import io
import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.config import with_network
from jaxstyle.serve import options as serve_options
from jaxstyle.serve import slots
from jaxstyle.serve.store import Store

log = logging.getLogger("jaxstyle.serve")

PREVIEW_SECONDS = 0.5  # at most one preview per job this often
SAVE_SECONDS = 1.0  # progress rows written at most this often (the live view is per chunk)
# After waking on an idle device, wait this long so that requests sent together start
# together (one batch of B from the first chunk, rather than B = 1 and a second compile).
GATHER_SECONDS = 0.2


class Live:
    """Progress and latest preview of running jobs, shared between threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._info: dict[str, dict] = {}
        self._preview: dict[str, bytes] = {}

    def update(self, job_id: str, **info) -> None:
        with self._lock:
            entry = self._info.setdefault(job_id, {"version": 0})
            entry.update(info)
            entry["version"] += 1

    def set_preview(self, job_id: str, png: bytes) -> None:
        with self._lock:
            self._preview[job_id] = png

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            entry = self._info.get(job_id)
            return dict(entry) if entry else None

    def preview(self, job_id: str) -> bytes | None:
        with self._lock:
            return self._preview.get(job_id)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._preview.pop(job_id, None)
            if job_id in self._info:
                self._info[job_id]["version"] += 1
                self._info[job_id]["final"] = True


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(imageio.to_uint8(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class _Job:
    id: str
    prep: slots.Prepared
    state: Any
    step: int = 0
    losses: dict = field(default_factory=dict)
    saved_at: float = 0.0
    preview_at: float = 0.0


@dataclass
class _Group:
    key: tuple
    members: list = field(default_factory=list)
    state: Any = None  # stacked, while attached
    targets: Any = None

    def detach(self) -> None:
        """Give each member its own slice of the stacked state (before membership changes)."""
        if self.state is not None:
            for m, s in zip(self.members, slots.split(self.state, len(self.members))):
                m.state = s
            self.state = self.targets = None

    def attach(self) -> None:
        if self.state is None:
            self.state = slots.stack([m.state for m in self.members])
            self.targets = slots.stack([m.prep.targets for m in self.members])
            for m in self.members:
                m.state = None


class Scheduler:
    def __init__(self, store: Store, *, weights: str | None = None, max_batch: int = 4, network=None,
                 chunk: int | None = None, limits: serve_options.Limits | None = None):
        self.store, self.weights, self.max_batch, self.chunk = store, weights, max(1, max_batch), chunk
        self.limits = limits or serve_options.Limits()
        self.live = Live()
        self.inbox: queue.Queue = queue.Queue()
        self._networks: dict = {}
        if network is not None:
            self._networks[None] = (network, "given network", "raw")
        self._given = network is not None
        self.groups: dict[tuple, _Group] = {}
        self._turns: collections.deque = collections.deque()
        self.waiting: list[_Job] = []
        self._cancelled: set[str] = set()
        self._stopping = False
        self.chunks_run = 0
        self.thread = threading.Thread(target=self._main, name="jaxstyle-scheduler", daemon=True)

    # ------------------------------------------------------------- other threads

    def start(self) -> "Scheduler":
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.inbox.put(("stop", None))
        if self.thread.is_alive():
            self.thread.join(timeout)

    def wake(self) -> None:
        self.inbox.put(("wake", None))

    def cancel(self, job_id: str) -> None:
        self.inbox.put(("cancel", job_id))

    def weights_label(self) -> str:
        if self._given:
            return self._networks[None][1]
        return self.weights or "cached download for the preset"

    # ------------------------------------------------------------- worker thread

    def _main(self) -> None:
        while not self._stopping:
            try:
                self._drain(block=not self.groups and not self.waiting)
                if self._stopping:
                    break
                self._admit()
                if self.groups:
                    self._run_next()
            except Exception:  # a bug must not kill the only worker; it is logged and the loop goes on
                log.error("scheduler error:\n%s", traceback.format_exc())
                time.sleep(0.5)

    def _drain(self, block: bool) -> None:
        try:
            msg = self.inbox.get(timeout=1.0) if block else self.inbox.get_nowait()
        except queue.Empty:
            return
        if block:
            time.sleep(GATHER_SECONDS)
        while True:
            kind, arg = msg
            if kind == "stop":
                self._stopping = True
            elif kind == "cancel":
                self._cancelled.add(arg)
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _network_key(self, cfg):
        return None if self._given else (self.weights or cfg.weights_source, cfg.recipe.model)

    def _network(self, cfg):
        key = self._network_key(cfg)
        if key not in self._networks:
            self._networks[key] = slots.load_network(self.weights, cfg)
        return self._networks[key][0]

    def _prepare(self, row: dict) -> _Job:
        cfg = serve_options.config_of(row["options"])
        self._network(cfg)  # loaded once per weights; its kind moves the job's loss weights
        cfg = with_network(cfg, self._networks[self._network_key(cfg)][2])
        content = imageio.load_image(self.store.blob_path(row["content"]), max_pixels=self.limits.max_pixels)
        styles = [imageio.load_image(self.store.blob_path(s), max_pixels=self.limits.max_pixels)
                  for s in row["styles"]]
        prep = slots.prepare_job(self._network(cfg), content, styles, cfg)
        return _Job(row["id"], prep, prep.state)

    def _admit(self) -> None:
        room = self.max_batch - len(self.waiting)
        if room > 0:
            for row in self.store.queued(room, skip={j.id for j in self.waiting}):
                try:
                    self.waiting.append(self._prepare(row))
                except UserError as e:
                    self.store.fail(row["id"], str(e))
                except Exception as e:  # noqa: BLE001 - the job fails with the reason; the server goes on
                    log.error("job %s failed to start:\n%s", row["id"], traceback.format_exc())
                    self.store.fail(row["id"], f"internal error: {type(e).__name__}: {e}")
        still = []
        for job in self.waiting:
            if job.id in self._cancelled:
                self._cancelled.discard(job.id)
                continue
            key = (*job.prep.key, self._network_key(job.prep.cfg))
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = _Group(key)
                self._turns.append(key)
            if len(group.members) >= self.max_batch:
                still.append(job)
                continue
            if not self.store.start(job.id, len(group.members) + 1):
                continue  # cancelled while it waited
            group.detach()
            group.members.append(job)
            self.live.update(job.id, status="running", step=0, steps=job.prep.steps, losses={},
                             batch_size=len(group.members))
        self.waiting = still
        for key in [k for k, g in self.groups.items() if not g.members]:
            self._drop(key)

    def _drop(self, key) -> None:
        del self.groups[key]
        self._turns.remove(key)

    def _remove(self, group: _Group, gone: set[str]) -> None:
        if gone:
            group.detach()
            group.members = [m for m in group.members if m.id not in gone]
            for job_id in gone:
                self.live.forget(job_id)

    def _run_next(self) -> None:
        key = self._turns[0]
        self._turns.rotate(-1)
        group = self.groups[key]
        cancelled = {m.id for m in group.members if m.id in self._cancelled}
        self._cancelled -= cancelled
        self._remove(group, cancelled)
        if not group.members:
            self._drop(key)
            return
        recipe = key[0]
        chunk = self.chunk or slots.default_chunk(group.members[0].prep.cfg)
        left = min(m.prep.steps - m.step for m in group.members)
        b = len(group.members)
        if left > 0:
            n = chunk if left >= chunk else 1
            group.attach()
            group.state, terms = slots.run_chunk(self._network(group.members[0].prep.cfg), recipe, group.targets,
                                                 group.state, n)
            self.chunks_run += 1
        else:
            n, terms = 0, {}
        now = time.time()
        finished, failed = [], []
        for i, m in enumerate(group.members):
            m.step += n
            if terms:
                m.losses = _losses(terms, i)
            if not all(np.isfinite(v) for v in m.losses.values()):
                bad = next(k for k, v in m.losses.items() if not np.isfinite(v))
                failed.append((m, f"the {bad} loss became {m.losses[bad]} at step {m.step}; lower lr or the loss "
                                  "weights, or use optimizer=adam"))
            elif m.step >= m.prep.steps:
                finished.append(i)
            self.live.update(m.id, step=m.step, steps=m.prep.steps, losses=m.losses, batch_size=b)
        due = [i for i, m in enumerate(group.members) if now - m.preview_at >= PREVIEW_SECONDS]
        if finished or due:
            group.attach()
            pictures = slots.images(recipe, group.state)
            for i in due:
                group.members[i].preview_at = now
                self.live.set_preview(group.members[i].id, png_bytes(group.members[i].prep.finish(pictures[i])))
            for i in finished:
                self._finish(group.members[i], pictures[i], b)
        for m, error in failed:
            self.store.fail(m.id, error)
        done = {group.members[i].id for i in finished} | {m.id for m, _ in failed}
        for m in group.members:
            if m.id not in done and now - m.saved_at >= SAVE_SECONDS:
                m.saved_at = now
                self.store.progress(m.id, m.step, m.losses, b)
        self._remove(group, done)
        if not group.members:
            self._drop(key)

    def _finish(self, job: _Job, picture: np.ndarray, batch_size: int) -> None:
        path = self.store.result_path(job.id)
        # The file first (atomic), then the row: a crash in between finds the file on restart.
        imageio.save_image(path, job.prep.finish(picture), metadata={"jaxstyle:preset": job.prep.cfg.preset})
        if not self.store.finish(job.id, job.step, job.losses, batch_size):
            path.unlink(missing_ok=True)  # cancelled while its last chunk ran


def _losses(terms: dict, i: int) -> dict:
    out = {k: float(v[i]) for k, v in terms.items()}
    style = [v for k, v in out.items() if k.startswith("style:")]
    if style:
        out["style"] = float(sum(style))
    return out


__all__ = ["Live", "Scheduler", "png_bytes"]
