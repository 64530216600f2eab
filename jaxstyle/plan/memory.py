"""How much memory a run needs, and a one-line refusal when it would not fit.

The compiled step's memory is, per image, a cost per pixel (the VGG activations kept for
the backward pass, their gradients, the optimiser state) plus a fixed part (the weights and
their transposed copies for the input gradient). The activation cost is not derived from
first principles: XLA decides what it keeps, so it is measured. ``ACTIVATION_BYTES`` holds
XLA's own figure (``compiled.memory_analysis().temp_size_in_bytes`` of the jitted step,
jax 0.10.2, XLA:CPU; the slope between 512² and 1024², gatys layers, up to relu5_1) per
unit of "conv output elements per input pixel" (290 for VGG19 up to relu5_1): what XLA keeps
is about 6.3 fp32 values per conv output element, because it holds each conv's raw output
(to recompute the ReLU mask in the backward pass), the ReLU output, a flattened copy of
each Gram layer and the live gradients. ``tests/test_memory.py`` checks the estimate
against ``memory_analysis`` at small sizes.

Measured on XLA:CPU, per-block rematerialisation (``--remat blocks``) does not save memory:
XLA:CPU expands the optimisation barriers that keep recomputation apart, and its temporary
memory grew by 19 % at 512²; the factor below says so. On GPU it is expected to save up to
~20 % (only activations between loss layers can be dropped); not measured here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jaxstyle.config import Recipe, resolve_precision
from jaxstyle.errors import UserError
from jaxstyle.model.vgg import BLOCKS, WIDTHS, layer_names

# Bytes per (conv output element per input pixel), by (precision, remat); see the docstring.
ACTIVATION_BYTES = {
    ("fp32", "none"): 6.3,
    ("bf16", "none"): 5.6,
    ("fp32", "blocks"): 7.6,
    ("bf16", "blocks"): 7.6,
}
# Allocator fragmentation, runtime buffers, host copies of images and weights: with 1.15 the
# estimate was 0.94–1.06 × the peak RSS growth of real CPU runs (bench/memory_fit.py: 1024²
# Adam fp32/bf16 and L-BFGS, 2048² Adam), so 1.25 keeps it above them.
MARGIN = 1.25
FIXED_BYTES = 64 * 2**20  # XLA runtime, conv workspaces, the compiled program


@dataclass(frozen=True)
class Estimate:
    total: int  # bytes, margin included
    activations: int
    optimizer: int
    fixed: int

    def gb(self) -> float:
        return self.total / 1e9


def conv_elements_per_pixel(recipe: Recipe) -> float:
    """Σ over the convs the network runs of (output channels × spatial fraction)."""
    names = layer_names(recipe.model)
    deepest = max(names.index(n) for n in recipe.all_layers)
    total = 0.0
    for b, (n, width) in enumerate(zip(BLOCKS[recipe.model], WIDTHS), start=1):
        for i in range(1, n + 1):
            if names.index(f"conv{b}_{i}") <= deepest:
                total += width / 4 ** (b - 1)
    return total


def weight_bytes(recipe: Recipe) -> int:
    names = layer_names(recipe.model)
    deepest = max(names.index(n) for n in recipe.all_layers)
    total, cin = 0, 3
    for b, (n, width) in enumerate(zip(BLOCKS[recipe.model], WIDTHS), start=1):
        for i in range(1, n + 1):
            if names.index(f"conv{b}_{i}") <= deepest:
                total += (9 * cin * width + width) * 4
            cin = width
    return total


def optimizer_floats_per_value(recipe: Recipe) -> int:
    """Floats per optimised value (3 per pixel): the image, its gradient and the state."""
    if recipe.optimizer == "adam":
        return 6  # image, gradient, mu, nu, update, EMA
    # s and y histories, plus prev_grad, prev_step, direction, the two-loop's q and r, image, gradient
    return 2 * recipe.lbfgs_history + 8 + (4 if recipe.optimizer == "lbfgs-zoom" else 0)


def estimate(recipe: Recipe, shape: tuple[int, int], batch: int = 1) -> Estimate:
    """Bytes a run of ``batch`` images of ``shape`` (H, W) needs on its device."""
    h, w = shape[:2]
    px = h * w
    # A hand-built Recipe may still say "auto" (make_config resolves it; this takes any recipe).
    per_el = ACTIVATION_BYTES[(resolve_precision(recipe.precision), recipe.remat)]
    activations = per_el * conv_elements_per_pixel(recipe) * px
    optimizer = 4 * optimizer_floats_per_value(recipe) * 3 * px
    content = 4 * 512 * px / 64  # content target at relu4_2, kept per image
    fixed = 2 * weight_bytes(recipe) + FIXED_BYTES  # weights + their transposed copies
    total = MARGIN * (batch * (activations + optimizer + content) + fixed)
    return Estimate(int(total), int(batch * activations), int(batch * optimizer), int(fixed))


def free_bytes() -> tuple[int, str]:
    """Bytes the default device can still allocate, and what that device is."""
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"{device.device_kind}"
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"], "this machine's RAM"
    except (OSError, KeyError, ValueError, IndexError):
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "this machine's RAM"


def largest_square(recipe: Recipe, free: int, batch: int = 1) -> int:
    """The largest side S (a multiple of 16) whose S×S run fits in ``free`` bytes."""
    lo, hi = 16, 1 << 17
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if estimate(recipe, (mid, mid), batch).total <= free:
            lo = mid
        else:
            hi = mid
    return lo


def check_fits(recipe: Recipe, shape: tuple[int, int], batch: int = 1, free: int | None = None, *,
               what: str = "run") -> Estimate:
    """Raise a one-line ``UserError`` with what to change when the run would not fit."""
    need = estimate(recipe, shape, batch)
    where = "the device"
    if free is None:
        free, where = free_bytes()
    if need.total <= free:
        return need
    h, w = shape[:2]
    side = max(h, w)
    fits = largest_square(recipe, free, batch) * side // max(1, math.isqrt(h * w))  # same aspect
    hints = [f"--size {max(16, fits // 16 * 16)} or smaller"]
    import dataclasses

    alternatives = [
        ("--optimizer adam", dict(optimizer="adam")) if recipe.optimizer != "adam" else None,
        ("--lbfgs-history 10", dict(lbfgs_history=10)) if recipe.optimizer != "adam" and recipe.lbfgs_history > 10 else None,
        ("--precision bf16", dict(precision="bf16")) if recipe.precision != "bf16" else None,
    ]
    for hint, change in filter(None, alternatives):
        if estimate(dataclasses.replace(recipe, **change), shape, batch).total <= free:
            hints.append(hint)
    if batch > 1:
        hints.append("fewer images per batch")
    raise UserError(
        f"a {w}×{h} {what}{f' of {batch} images' if batch > 1 else ''} with {recipe.optimizer} ({recipe.precision}) needs about "
        f"{need.gb():.1f} GB but {where} has {free / 1e9:.1f} GB free; use {', '.join(hints[:-1]) + ' or ' + hints[-1] if len(hints) > 1 else hints[0]}"
    )


__all__ = ["ACTIVATION_BYTES", "Estimate", "check_fits", "estimate", "free_bytes", "largest_square"]
