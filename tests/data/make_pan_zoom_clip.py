"""Make ``tests/data/pan_zoom.mp4``: a slow pan and zoom over a photo, 32 frames, 128×96, 24 fps.

    python tests/data/make_pan_zoom_clip.py examples/chelsea.jpg tests/data/pan_zoom.mp4

The photo: "Chelsea the cat" by Stefan van der Walt, CC0 1.0 (scikit-image 0.26.0,
skimage/data/chelsea.png; see tests/data/CREDITS.md). The camera moves right by 0.6 px and
zooms in by 0.4 % per output frame, sub-pixel exact (Pillow resizes a fractional box), so
the true motion is small and smooth, as in a real slow pan. H.264 (libx264, CRF 18, 4:2:0).
"""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
from PIL import Image

from jaxstyle.io.video import VideoWriter

FRAMES, WIDTH, HEIGHT, FPS = 32, 128, 96, 24


def frames(photo: Image.Image):
    pw, ph = photo.size
    # The first view covers 78 % of the photo's height at 4:3, left of centre.
    h0 = 0.78 * ph
    w0 = h0 * WIDTH / HEIGHT
    x0, y0 = 0.06 * pw, 0.12 * ph
    for t in range(FRAMES):
        zoom = 1.004 ** t
        w, h = w0 / zoom, h0 / zoom
        # px per frame in output units: 0.6 px to the right; zoom about the view's centre.
        cx = x0 + w0 / 2 + 0.6 * t * (w0 / WIDTH)
        cy = y0 + h0 / 2
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        yield np.asarray(photo.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC, box=box))


def main(src: str, out: str) -> None:
    photo = Image.open(src).convert("RGB")
    writer = VideoWriter(out, Fraction(FPS))
    for f in frames(photo):
        writer.write(f)
    writer.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
