"""Pair manifests: JSONL or CSV files naming each pair's content, styles, output and options."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jaxstyle import config
from jaxstyle.errors import UserError
from jaxstyle.io.sources import Item, file_item


@dataclass(frozen=True)
class PairRow:
    """One line of a pair manifest."""

    content: Item
    styles: tuple[Item, ...]
    output: str | None
    options: dict
    where: str  # FILE:LINE, for messages


# Not the preset, the model or the weights' source: one network serves the whole run.
PER_PAIR = tuple(n for n in config.OPTION_FIELDS if n not in ("model", "weights_source"))


class Pairs(list):
    """The valid rows of a pair manifest, in order; ``skipped`` holds one line per row that
    was not (``FILE:LINE: reason``): a bad row is reported and skipped, never fatal, never done."""

    def __init__(self, rows=(), skipped=()):
        super().__init__(rows)
        self.skipped: list[str] = list(skipped)


def _text(value, what: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {what} must be a non-empty path (text), got {value!r}")
    return value


def _row(p: Path, where: str, row) -> PairRow:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object with content and style")
    row = {str(k).replace("-", "_"): v for k, v in row.items()}
    if "content" not in row or "style" not in row:
        raise UserError(f"{where}: a pair needs both 'content' and 'style'")
    styles = row.pop("style")
    if isinstance(styles, list):
        styles = [_text(s, "each style", where) for s in styles]
    else:
        styles = _text(styles, "style", where).split("|")
    content = _resolve(p, _text(row.pop("content"), "content", where))
    output = row.pop("output", None)
    if output is not None:
        output = _text(output, "output", where)
        parts = PurePosixPath(output.replace("\\", "/"))
        # Outputs stay inside OUTDIR: never an absolute path, never a way out with "..".
        if parts.is_absolute() or ".." in parts.parts or Path(output).is_absolute():
            raise UserError(f"{where}: output {output!r} must be a relative path inside -o OUTDIR")
    options = {}
    for key, value in row.items():
        if key not in PER_PAIR:
            raise UserError(f"{where}: unknown column {key!r}; per-pair options are {', '.join(sorted(PER_PAIR))}")
        try:
            options[key] = config.parse_option(key, value)
        except (TypeError, ValueError) as e:
            raise UserError(f"{where}: bad value {value!r} for {key} ({e})") from None
    style_items = tuple(_resolve(p, s) for s in styles if str(s).strip())
    if not style_items:
        raise UserError(f"{where}: empty style")
    return PairRow(content, style_items, output or None, options, where)


def read_pairs(path: str | os.PathLike) -> Pairs:
    """A JSONL or CSV manifest: ``content``, ``style`` (JSONL: a list blends several; CSV:
    ``|`` separates them), optional ``output`` (relative, inside OUTDIR) and per-pair options
    by their flat names (``style_weight`` or ``style-weight``), type-checked. Paths are
    relative to the manifest. Rows that are not valid are skipped with their line number
    (:class:`Pairs`); a manifest with no valid row at all is an error naming the first."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such pair manifest; give product, zip or a .jsonl/.csv file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError) as e:
        raise UserError(f"{path}: cannot read the pair manifest ({e}); check the file") from None
    rows: list[tuple[str, object]] = []
    skipped: list[str] = []
    if p.suffix.lower() == ".csv":
        try:
            for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
                rows.append((f"{p}:{n}", {k.strip(): v.strip() for k, v in row.items()
                                          if isinstance(k, str) and k and isinstance(v, str) and v.strip()}))
        except csv.Error as e:
            raise UserError(f"{path}: not a valid CSV file ({e})") from None
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                rows.append((f"{p}:{n}", json.loads(line)))
            except (json.JSONDecodeError, RecursionError) as e:
                why = getattr(e, "msg", "nested too deeply")
                rows.append((f"{p}:{n}", UserError(f"{p}:{n}: not valid JSON ({why}); one JSON object per line")))
    out = []
    for where, row in rows:  # in line order, bad rows reported where they are
        try:
            if isinstance(row, UserError):
                raise row
            out.append(_row(p, where, row))
        except UserError as e:
            skipped.append(str(e))
    if not out:
        raise UserError(skipped[0] if skipped else f"{path}: the pair manifest has no pairs")
    return Pairs(out, skipped)


def _resolve(manifest: Path, value) -> Item:
    q = Path(os.path.expanduser(str(value).strip()))
    # A missing file fails its own pairs when they run, like a broken one: one bad row
    # must not stop a long manifest.
    return file_item(q if q.is_absolute() else manifest.parent / q)



__all__ = ["PER_PAIR", "PairRow", "Pairs", "read_pairs"]
