"""The job store: SQLite (WAL) for jobs and their state, files for inputs and results.

Layout under the serve folder (``$JAXSTYLE_HOME/serve/`` or ``--db``'s folder)::

    jobs.sqlite3        one row per job (status, options, input hashes, progress)
    blobs/<sha256>      uploaded images, named by the SHA-256 of their bytes (stored once)
    results/<id>.png    finished images, written atomically before the row says "done"

Crash safety: every change is one committed transaction (``synchronous=FULL``); a result is
on disk (fsynced, renamed into place) before its row turns ``done``. On open, rows left
``running`` by a killed server go back to ``queued`` (their steps start again), unless their
result file is already there, in which case they are ``done``: nothing is lost and nothing
runs twice to completion. No path in here ever comes from a client: ids are
``secrets.token_urlsafe`` values looked up in the table, blobs are named by their hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path

TERMINAL = ("done", "failed", "cancelled")
STATUSES = ("queued", "running") + TERMINAL
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL,
    content TEXT NOT NULL,
    styles TEXT NOT NULL,
    steps INTEGER NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    losses TEXT NOT NULL DEFAULT '{}',
    batch_size INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    starts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
"""


def default_folder() -> Path:
    from jaxstyle.model.weights import home

    return home() / "serve"


class Store:
    """Thread-safe: one connection behind a lock (the app's threads and the scheduler share it)."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_folder()
        self.blobs = self.folder / "blobs"
        self.results = self.folder / "results"
        for d in (self.folder, self.blobs, self.results):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.folder / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.recovered = self._recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ helpers

    def _exec(self, sql: str, args=()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _recover(self) -> int:
        """Rows a killed server left ``running``: done if their result exists, else queued again."""
        rows = self._exec("SELECT id FROM jobs WHERE status = 'running'").fetchall()
        now = time.time()
        for row in rows:
            if self.result_path(row["id"]).is_file():
                self._exec("UPDATE jobs SET status='done', step=steps, updated=? WHERE id=?", (now, row["id"]))
            else:
                self._exec("UPDATE jobs SET status='queued', step=0, updated=? WHERE id=?", (now, row["id"]))
        return len(rows)

    # ------------------------------------------------------------------ inputs

    def put_blob(self, data: bytes) -> str:
        """Store bytes under their SHA-256 (atomically, once) and return the hash."""
        digest = hashlib.sha256(data).hexdigest()
        dest = self.blobs / digest
        if not dest.is_file():
            tmp = self.blobs / f".{digest}.{secrets.token_hex(4)}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        return digest

    def blob_path(self, digest: str) -> Path:
        if not _SHA.match(digest):
            raise ValueError(f"not a blob hash: {digest!r}")
        return self.blobs / digest

    def result_path(self, job_id: str) -> Path:
        if not _ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.results / f"{job_id}.png"

    # ------------------------------------------------------------------ jobs

    def add(self, options: dict, content: str, styles: list[str], steps: int, max_queue: int) -> str | None:
        """A new queued job's id, or None when ``max_queue`` jobs are already waiting or running."""
        job_id = secrets.token_urlsafe(18)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (pending,) = self._db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()
                if pending >= max_queue:
                    self._db.execute("ROLLBACK")
                    return None
                self._db.execute(
                    "INSERT INTO jobs (id, status, options, content, styles, steps, created, updated) "
                    "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                    (job_id, json.dumps(options, sort_keys=True), content, json.dumps(styles), steps, now, now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return job_id

    def get(self, job_id: str) -> dict | None:
        if not isinstance(job_id, str) or not _ID.match(job_id):
            return None
        row = self._exec("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _public(row) if row else None

    def list(self, limit: int = 200) -> list[dict]:
        rows = self._exec("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [_public(r) for r in rows]

    def queued(self, limit: int, skip: set[str] = frozenset()) -> list[dict]:
        """The oldest queued jobs (with their inputs), for the scheduler."""
        rows = self._exec("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT ?",
                          (limit + len(skip),)).fetchall()
        out = [_internal(r) for r in rows if r["id"] not in skip]
        return out[:limit]

    def start(self, job_id: str, batch_size: int) -> bool:
        """queued → running; False if the job is no longer queued (cancelled meanwhile)."""
        cur = self._exec("UPDATE jobs SET status='running', step=0, batch_size=?, starts=starts+1, updated=? "
                         "WHERE id=? AND status='queued'", (batch_size, time.time(), job_id))
        return cur.rowcount == 1

    def progress(self, job_id: str, step: int, losses: dict, batch_size: int) -> None:
        self._exec("UPDATE jobs SET step=?, losses=?, batch_size=?, updated=? WHERE id=? AND status='running'",
                   (step, json.dumps(losses), batch_size, time.time(), job_id))

    def finish(self, job_id: str, step: int, losses: dict, batch_size: int) -> bool:
        cur = self._exec("UPDATE jobs SET status='done', step=?, losses=?, batch_size=?, updated=? "
                         "WHERE id=? AND status='running'",
                         (step, json.dumps(losses), batch_size, time.time(), job_id))
        return cur.rowcount == 1

    def fail(self, job_id: str, error: str) -> None:
        self._exec("UPDATE jobs SET status='failed', error=?, updated=? WHERE id=? AND status IN ('queued', 'running')",
                   (" ".join(str(error).split())[:500], time.time(), job_id))

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued or running job; returns its status afterwards (None: unknown id)."""
        if not _ID.match(job_id):
            return None
        self._exec("UPDATE jobs SET status='cancelled', updated=? WHERE id=? AND status IN ('queued', 'running')",
                   (time.time(), job_id))
        row = self._exec("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row["status"] if row else None

    def status(self, job_id: str) -> str | None:
        row = self._exec("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row["status"] if row else None

    def pending_count(self) -> int:
        (n,) = self._exec("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()
        return n


def _public(row: sqlite3.Row) -> dict:
    job = {
        "id": row["id"], "status": row["status"], "step": row["step"], "steps": row["steps"],
        "losses": json.loads(row["losses"]), "batch_size": row["batch_size"],
        "options": json.loads(row["options"]), "created": row["created"], "restarts": max(0, row["starts"] - 1),
    }
    if row["error"]:
        job["error"] = row["error"]
    return job


def _internal(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "options": json.loads(row["options"]), "content": row["content"],
            "styles": json.loads(row["styles"]), "steps": row["steps"]}


__all__ = ["STATUSES", "TERMINAL", "Store", "default_folder"]
