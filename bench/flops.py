"""Analytic FLOPs of one iteration, and the device's measured matmul peak.

Command: none of its own; ``python -m bench.run`` uses it (``python -m bench.flops 256 512``
prints the per-iteration count).

The count follows ``research/perf.md`` §1 and its ``nst_flops.py`` (the counting rules are
copied from there, generalised to any H×W and any set of loss layers): a multiply-add is 2
FLOPs; per conv 2·9·Cin·Cout·H·W forward and the same again for the input gradient (no
weight gradients); per Gram layer 2·C²·N forward plus 2·C²·N backward (one GEMM, the form
jaxstyle's hand-written Gram gradient takes); elementwise work (bias, ReLU, pooling, losses,
TV, optimiser) counted too, about 0.1 %. L-BFGS adds its two-loop recursion, 8·m·P for m
curvature pairs over P pixels (2 dots and 2 axpys per pair), which the perf.md table leaves out.
At 256² with the gatys layers this gives 99.35 GFLOP (Adam), as perf.md's table does.
"""

from __future__ import annotations

import sys

BLOCKS = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}
WIDTHS = (64, 128, 256, 512, 512)
STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def iteration_flops(
    height: int,
    width: int,
    *,
    style_layers=STYLE,
    content_layers=("relu4_2",),
    model: str = "vgg19",
    optimizer: str = "adam",
    lbfgs_history: int = 100,
) -> dict[str, float]:
    """FLOPs of one iteration for one image, by kind (``conv_fwd``, ``conv_bwd``, ``gram``,
    ``other``, ``optimizer``) and ``total``."""
    wanted = set(style_layers) | set(content_layers)
    deepest = max(_position(n, model) for n in wanted)
    h, w, c = height, width, 3
    out = dict(conv_fwd=0.0, conv_bwd=0.0, gram=0.0, other=0.0, optimizer=0.0)
    for b, (n, cout) in enumerate(zip(BLOCKS[model], WIDTHS), start=1):
        for i in range(1, n + 1):
            if _position(f"conv{b}_{i}", model) > deepest:
                return _finish(out, height, width, optimizer, lbfgs_history)
            cin, c = c, cout
            f = 2 * 9 * cin * cout * h * w
            elems = cout * h * w
            out["conv_fwd"] += f
            out["conv_bwd"] += f
            out["other"] += 3 * elems  # bias add; ReLU forward and backward
            relu = f"relu{b}_{i}"
            if relu in style_layers:
                out["gram"] += 4 * cout * cout * h * w
            if relu in style_layers or relu in content_layers:
                out["other"] += 4 * elems  # loss forward/backward, gradient accumulation
        if _position(f"pool{b}", model) > deepest:
            break
        n_in = c * h * w
        h, w = h // 2, w // 2
        out["other"] += 3 * c * h * w + n_in  # pool forward compares, backward routing
    return _finish(out, height, width, optimizer, lbfgs_history)


def _finish(out, height, width, optimizer, history):
    pixels = 3 * height * width
    out["other"] += 6 * pixels  # TV / input preprocessing, as perf.md counts it
    out["optimizer"] = 10 * pixels if optimizer == "adam" else (8 * history + 10) * pixels
    out["total"] = sum(out.values())
    return out


def _position(layer: str, model: str) -> int:
    names = []
    for b, n in enumerate(BLOCKS[model], start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names.index(layer)


def jax_matmul_peak(dtype: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n×n matmul in JAX on the default device (fp32 strict, tf32, bf16)."""
    import time

    import jax
    import jax.numpy as jnp

    dt = jnp.bfloat16 if dtype == "bf16" else jnp.float32
    precision = {"fp32": "highest", "tf32": "tensorfloat32", "bf16": "default"}[dtype]
    a = jax.random.normal(jax.random.key(0), (n, n), dt)
    b = jax.random.normal(jax.random.key(1), (n, n), dt)
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, precision=precision))
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def jax_conv_peak(dtype: str = "fp32", size: int = 64, channels: int = 256, repeats: int = 5) -> float:
    """Best FLOP/s of a VGG-like 3×3 conv (``size``², ``channels`` in and out) in JAX.

    On XLA:CPU convolutions go through a faster library path (YNNPACK) than dots, so a
    matmul alone understates what the hardware does on this workload.
    """
    import time

    import jax
    import jax.numpy as jnp

    dt = jnp.bfloat16 if dtype == "bf16" else jnp.float32
    precision = {"fp32": "highest", "tf32": "tensorfloat32", "bf16": "default"}[dtype]
    x = jax.random.normal(jax.random.key(0), (1, size, size, channels), dt)
    k = jax.random.normal(jax.random.key(1), (3, 3, channels, channels), dt)
    conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision))
    conv(x, k).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        conv(x, k).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * 9 * channels * channels * size * size / best


def torch_matmul_peak(dtype: str = "fp32", n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    import time

    import torch

    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


if __name__ == "__main__":
    for s in [int(a) for a in sys.argv[1:]] or [256, 512, 1024]:
        f = iteration_flops(s, s)
        print(s, {k: round(v / 1e9, 2) for k, v in f.items()}, "GFLOP")
