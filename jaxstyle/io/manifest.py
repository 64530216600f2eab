"""The results manifest: one JSON line per finished pair, appended and fsynced.

``OUTDIR/results.jsonl`` (``results.p{INDEX}.jsonl`` per process under ``--distributed``).
Each line is a record: pair id, content, style(s), output path, final loss terms, steps,
seconds, status (``ok`` or ``failed``), error, and the fingerprint of inputs, config and
weights. A pair is finished iff it has an ``ok`` record with the current fingerprint AND
its output file exists and decodes. The output is written (atomically) before its
record, so a crash between the two only means the pair is made again.

A ``kill -9`` can tear the last line. Readers skip lines that do not parse; the writer,
holding an exclusive lock on its file, cuts a torn tail off before appending, so the file
stays one valid record per line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from jaxstyle.errors import UserError

PATTERN = "results*.jsonl"


def manifest_path(outdir: Path, process_index: int | None = None) -> Path:
    return outdir / ("results.jsonl" if process_index is None else f"results.p{process_index}.jsonl")


class Writer:
    """Appends records to one manifest file, which it holds locked while open."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise UserError(f"{path}: cannot write the results manifest ({e.strerror}); choose a writable -o") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise UserError(f"{path} is in use by another jaxstyle batch; wait for it or give another -o") from None
        self._cut_torn_tail()

    def _cut_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        # Find the last complete line; everything after it is a record cut short by a crash.
        keep, block = 0, 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            chunk = os.pread(self._fd, end - start, start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)

    def append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True, default=float) + "\n").encode()
        os.write(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_records(outdir: Path) -> Iterator[dict]:
    """Every valid record of every process's manifest in ``outdir``; torn lines are skipped."""
    for path in sorted(outdir.glob(PATTERN)):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for line in data.split(b"\n"):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and "pair" in record:
                yield record


def decodes(path: Path) -> bool:
    """True if ``path`` is a complete image (a torn or half-written file is not)."""
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any failure means "make it again"
        return False


def finished(outdir: Path, wanted: dict[str, str], records: Iterable[dict] | None = None) -> set[str]:
    """The pairs of ``wanted`` (pair id → fingerprint) that are done: an ``ok`` record with
    that fingerprint, and the pair's own output file (``OUTDIR/PAIR``; a record's ``output``
    field is never followed) existing and decoding."""
    ok = set()
    for r in read_records(outdir) if records is None else records:
        pair = r.get("pair")
        if not isinstance(pair, str) or pair not in wanted or r.get("status") != "ok":
            continue
        if r.get("fingerprint") == wanted[pair] and r.get("output", pair) == pair:
            ok.add(pair)
    return {pair for pair in ok if decodes(outdir / pair)}


__all__ = ["PATTERN", "Writer", "decodes", "finished", "manifest_path", "read_records"]
