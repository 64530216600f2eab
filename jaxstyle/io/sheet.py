"""A contact sheet: one image showing a whole batch, contents × styles.

The top row holds the style images, the left column the content images, and each cell
the output of that pair (dark grey where the pair failed or is not made yet), so a user
sees a run at a glance. Cells are square; images are fitted inside, keeping their aspect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxstyle.io import image as imageio
from jaxstyle.io import manifest

GAP = 4
LABEL = 14  # px of caption strip under each input
MAX_SIDE = 16384  # past this, viewers and Pillow struggle: cells shrink instead
BACKGROUND, MISSING = (255, 255, 255), (64, 64, 64)


def _fit(img: np.ndarray, cell: int) -> Image.Image:
    h, w = img.shape[:2]
    scale = cell / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return Image.fromarray(imageio.to_uint8(img)).resize(size, Image.Resampling.BILINEAR)


def _paste(sheet: Image.Image, img: np.ndarray | None, x: int, y: int, cell: int, note: str = "") -> None:
    draw = ImageDraw.Draw(sheet)
    if img is None:
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=MISSING)
        if note:
            draw.text((x + 4, y + 4), note, fill=(230, 230, 230), font=ImageFont.load_default())
        return
    thumb = _fit(img, cell)
    sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))


def _caption(sheet: Image.Image, text: str, x: int, y: int, cell: int) -> None:
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    try:
        while len(text) > 3 and draw.textlength(text, font=font) > cell:
            text = text[:-4] + "..."
        draw.text((x, y + 1), text, fill=(0, 0, 0), font=font)
    except (UnicodeError, ValueError, OSError):
        pass  # a name the built-in font cannot draw: the picture is what matters


def _load(item) -> np.ndarray | None:
    try:
        return item.load()
    except Exception:  # noqa: BLE001 - a broken input shows as a grey cell
        return None


def contact_sheet(path: str | Path, jobs: Sequence, outdir: Path, *, cell: int = 192) -> Path:
    """Write the sheet of ``jobs`` (their outputs in ``outdir``, per the manifest) to ``path``."""
    rows = list({j.content.key: j.content for j in jobs}.values())
    cols = list({tuple(s.key for s in j.styles): j.styles for j in jobs}.values())
    cell = max(32, min(cell, (MAX_SIDE - GAP) // (max(len(rows), len(cols)) + 1) - GAP - LABEL))
    step = cell + GAP + LABEL
    sheet = Image.new("RGB", (GAP + step * (len(cols) + 1), GAP + step * (len(rows) + 1)), BACKGROUND)
    ok = {r["pair"]: r for r in manifest.read_records(outdir) if r.get("status") == "ok"}
    failed = {r["pair"] for r in manifest.read_records(outdir) if r.get("status") == "failed"} - ok.keys()
    col_of = {tuple(s.key for s in styles): i for i, styles in enumerate(cols)}
    row_of = {c.key: i for i, c in enumerate(rows)}
    for i, styles in enumerate(cols):
        x = GAP + step * (i + 1)
        _paste(sheet, _load(styles[0]), x, GAP, cell, "unreadable")
        _caption(sheet, "+".join(s.stem for s in styles), x, GAP + cell, cell)
    for i, content in enumerate(rows):
        y = GAP + step * (i + 1)
        _paste(sheet, _load(content), GAP, y, cell, "unreadable")
        _caption(sheet, content.stem, GAP, y + cell, cell)
    for job in jobs:
        x = GAP + step * (col_of[tuple(s.key for s in job.styles)] + 1)
        y = GAP + step * (row_of[job.content.key] + 1)
        image = None
        if job.pair in ok:
            try:
                image = imageio.load_image(outdir / job.pair)
            except Exception:  # noqa: BLE001 - shown as missing
                image = None
        _paste(sheet, image, x, y, cell, "failed" if job.pair in failed else "missing")
    return imageio.save_image(path, np.asarray(sheet))


__all__ = ["contact_sheet"]
