"""VGG16/VGG19 feature extractor in Flax NNX, NHWC, with the paper's layer names.

Layers are named as in Gatys et al.: ``conv{block}_{i}``, ``relu{block}_{i}``, ``pool{block}``.
The forward pass stops at the deepest requested layer and returns a dict of the requested
ones, so asking for ``relu4_2`` never runs block 5.

The network takes pixels in one of the spaces of :mod:`jaxstyle.pixels` and applies the
preprocessing that its weights were trained with (``convention``), so callers never
normalise by hand.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from jaxstyle.errors import UserError
from jaxstyle.model import pixels
from jaxstyle.model.names import (BLOCKS, MODELS, PADDINGS, POOLINGS, WIDTHS, _block, check_layers,  # noqa: F401
                                  conv_specs, layer_names, min_size, torchvision_indices)

class Conv3x3(nnx.Module):
    """3×3 stride-1 convolution, HWIO kernel, with the padding chosen per call."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs | None = None,
                 kernel: np.ndarray | None = None, bias: np.ndarray | None = None):
        if kernel is not None:  # loaded weights: no random init to trace (start-up time)
            self.kernel = nnx.Param(jnp.asarray(kernel, jnp.float32))
            self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))
            return
        # He-normal, as torchvision's VGG init; only random:SEED weights ever use it.
        std = np.sqrt(2.0 / (cin * 9))
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (3, 3, cin, cout)) * std)
        self.bias = nnx.Param(jnp.zeros((cout,)))

    def __call__(self, x: jax.Array, padding: str = "zeros", grad_kernel: jax.Array | None = None) -> jax.Array:
        """``grad_kernel``: this conv's :func:`grad_kernel` made beforehand (then the input
        gradient uses it instead of reversing and transposing the kernel in the program)."""
        kernel = self.kernel[...].astype(x.dtype)
        pad = 1
        if padding != "zeros":
            mode = {"replicate": "edge", "circular": "wrap"}[padding]
            x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)
            pad = 0
        if grad_kernel is None:
            y = _conv(x, kernel, pad)
        else:
            y = _conv_pre(x, kernel, grad_kernel.astype(x.dtype), pad)
        return y + self.bias[...].astype(x.dtype)


def _conv(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
    h, w = x.shape[1:3]
    if h * w < kernel.shape[0] * kernel.shape[1]:
        return _conv_as_dot(x, kernel, pad)
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_as_dot(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
    """The same convolution as one matrix product over the 3×3 neighbourhoods (im2col).

    For inputs with fewer pixels than the kernel (2×2, 2×4: conv5_1 of a 32–48 px image)
    XLA swaps the convolution's operands, reversing the 3×3×512×512 kernel in every call and
    running the conv with the batch innermost: 40 ms for a 2×4×512 input on the 2-core EPYC,
    against 1.5 ms for this product (tests/test_vgg.py checks both against numpy)."""
    kh, kw, cin, cout = kernel.shape
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    # Neighbourhoods in the kernel's (row, column, channel) order, so HWIO flattens onto them.
    columns = jnp.concatenate([xp[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.einsum("bhwk,ko->bhwo", columns, kernel.reshape(kh * kw * cin, cout))


def grad_kernel(kernel: jax.Array) -> jax.Array:
    """The kernel of a 3×3 conv's input gradient: spatially reversed, in and out swapped
    (HWIO → HW·O·I). What XLA's autodiff builds inside the program from the kernel."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def conv_kernels(network: VGG) -> dict[str, jax.Array]:
    """{conv name: HWIO kernel} of the network's convolutions."""
    return {name: getattr(network, name).kernel[...] for name, _, _ in conv_specs(network.model, network.widths)}


# A conv whose input gradient takes the reversed/transposed kernel as an input. Measured
# (XLA:CPU, VGG19 Adam step at 128², profile of one 4-step chunk call): when the kernels are
# jit arguments XLA rebuilds every grad_kernel in every call (13 reverse+transpose copies,
# 345 ms of 6.6 s, ~5 % of the time, the 3×3×512×512 ones ~20 ms each on one core); made once
# per network outside the program (engine.loop), the chunk does none. The kernel's own
# cotangent is still exact (XLA drops it when nothing asks for it, as in style transfer).
@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv_pre(x, kernel, kernel_t, pad):
    return _conv(x, kernel, pad)


def _conv_pre_fwd(x, kernel, kernel_t, pad):
    return _conv(x, kernel, pad), (x, kernel, kernel_t)


def _conv_pre_bwd(pad, res, g):
    x, kernel, kernel_t = res
    # Stride 1, 3×3, padding p: the input gradient is a conv of g with padding 2 − p.
    dx = _conv(g, kernel_t, 2 - pad)
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k, pad), kernel)
    return dx, kernel_vjp(g)[0], jnp.zeros_like(kernel_t)


_conv_pre.defvjp(_conv_pre_fwd, _conv_pre_bwd)


# {conv name: grad_kernel}, set while a program is traced (see ``grad_kernels``).
_GRAD_KERNELS: contextvars.ContextVar[Mapping[str, jax.Array] | None] = contextvars.ContextVar(
    "jaxstyle_grad_kernels", default=None)


@contextlib.contextmanager
def grad_kernels(kernels: Mapping[str, jax.Array] | None):
    """While tracing inside this context, every VGG conv named in ``kernels`` takes its
    input gradient from ``kernels[name]`` (:func:`grad_kernel` of its kernel, made outside
    the program). The caller guarantees they match the network's current kernels."""
    token = _GRAD_KERNELS.set(kernels)
    try:
        yield
    finally:
        _GRAD_KERNELS.reset(token)


class VGG(nnx.Module):
    """VGG16 or VGG19 convolutional trunk (no classifier).

    ``convention`` is the input convention of the weights: ``"torchvision"`` (RGB in [0,1],
    ImageNet mean/std) or ``"caffe"`` (BGR in [0,255] minus the mean pixel).
    """

    def __init__(
        self,
        model: str = "vgg19",
        *,
        widths: Sequence[int] = WIDTHS,
        convention: str = "torchvision",
        rngs: nnx.Rngs | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ):
        """``arrays`` (checked by :func:`build_vgg`): the weights; else random from ``rngs``."""
        if model not in BLOCKS:
            raise UserError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        if convention not in pixels.CONVENTIONS:
            raise UserError(f"unknown input convention {convention!r}; use {pixels.CONVENTIONS}")
        self.model = model
        self.widths = tuple(int(w) for w in widths)
        self.convention = convention
        for name, cin, cout in conv_specs(model, self.widths):
            given = {} if arrays is None else {"kernel": arrays[f"{name}.kernel"], "bias": arrays[f"{name}.bias"]}
            setattr(self, name, Conv3x3(cin, cout, rngs=rngs, **given))

    def __call__(
        self,
        x: jax.Array,
        layers: Sequence[str],
        *,
        pixel_space: str = "rgb01",
        pooling: str = "max",
        padding: str = "zeros",
        avg_pool_scale: float = 1.0,
        dtype=None,
        remat: bool = False,
    ) -> dict[str, jax.Array]:
        """Features of ``x`` (H,W,3 or N,H,W,3, in ``pixel_space``) at ``layers``.

        ``padding``: "zeros" (the paper), "replicate_first" (replicate padding in conv1_1
        only, crowsonkb's fix for dark borders) or "circular" (every conv wraps around, for
        tileable textures). ``avg_pool_scale`` multiplies average-pooled maps (crowsonkb
        uses 2 to keep activation magnitudes comparable to max pooling).
        ``dtype``: compute dtype for activations (e.g. bfloat16); weights are cast to it.
        ``remat``: rematerialise each block under differentiation (``jax.checkpoint``): the
        backward pass keeps block inputs and the requested features and recomputes the rest.
        Measured on XLA:CPU (256², Adam): 1.36× the CPU time per step and no memory saved
        (+19 % temporary memory at 512², see ``jaxstyle.memory``); meant for accelerators.
        """
        single = x.ndim == 3
        h = pixels.network_input(x[None] if single else x, pixel_space, self.convention)
        if dtype is not None:
            h = h.astype(dtype)
        wanted = set(layers)
        names = layer_names(self.model)
        names = names[: 1 + max((names.index(n) for n in wanted if n in names), default=-1)]
        out: dict[str, jax.Array] = {}
        for segment in _blocks(names) if remat else [names]:

            def run(h, segment=segment):
                feats = {}
                for name in segment:
                    h = self._layer(name, h, padding, pooling, avg_pool_scale)
                    if name in wanted:
                        feats[name] = h = checkpoint_name(h, "vgg_feature")
                return h, feats

            h, feats = (jax.checkpoint(run, policy=_SAVE_FEATURES) if remat else run)(h)
            out.update({k: v[0] if single else v for k, v in feats.items()})
        return out

    def _layer(self, name: str, h: jax.Array, padding: str, pooling: str, avg_pool_scale: float) -> jax.Array:
        if name.startswith("conv"):
            pad = padding
            if padding == "replicate_first":
                pad = "replicate" if name == "conv1_1" else "zeros"
            return getattr(self, name)(h, pad, (_GRAD_KERNELS.get() or {}).get(name))
        if name.startswith("relu"):
            return jax.nn.relu(h)
        return _pool(h, pooling, avg_pool_scale)


# Under remat, a block's requested features are kept (the loss needs them anyway) and its
# other activations are recomputed from the block input in the backward pass.
_SAVE_FEATURES = jax.checkpoint_policies.save_only_these_names("vgg_feature")


def _blocks(names: Sequence[str]) -> list[list[str]]:
    """``names`` cut after every pooling layer: conv_b_1 … pool_b per block."""
    out: list[list[str]] = [[]]
    for name in names:
        out[-1].append(name)
        if name.startswith("pool"):
            out.append([])
    return [seg for seg in out if seg]


def _pool(h: jax.Array, pooling: str, avg_pool_scale: float) -> jax.Array:
    # 2×2 windows, stride 2, odd edges dropped: torch's MaxPool2d(2, 2) floor mode.
    if pooling == "max":
        return max_pool_2x2(h)
    pooled = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return pooled * (0.25 * avg_pool_scale)


# Max pooling as a reshape and a max, with a hand-written gradient. Measured (bench/, XLA:CPU,
# 256², VGG19 Adam step): reduce_window's select-and-scatter gradient is lowered to int32
# iota/index arrays and a scatter at every pooling layer and cost ~15 % of the step; this
# form is one elementwise pass that XLA fuses with the ReLU gradient. Same result: the
# gradient goes to the FIRST maximum of each window in row-major order, as torch's
# MaxPool2d (and XLA's select-and-scatter with `ge`) route it; ties are not split.
@jax.custom_vjp
def max_pool_2x2(h: jax.Array) -> jax.Array:
    """2×2, stride 2, floor mode over NHWC ``h``."""
    return _windows(h).max(axis=(2, 4))


def _windows(h: jax.Array) -> jax.Array:
    n, hh, ww, c = h.shape
    return h[:, : hh // 2 * 2, : ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2, c)


def _max_pool_fwd(h):
    y = max_pool_2x2(h)
    return y, (h, y)


def _max_pool_bwd(res, g):
    h, y = res
    hit = _windows(h) == y[:, :, None, :, None, :]
    a, b, c = hit[:, :, 0, :, 0], hit[:, :, 0, :, 1], hit[:, :, 1, :, 0]
    # One-hot of the first hit in (0,0), (0,1), (1,0), (1,1) order; (1,1) when none hits
    # (a NaN window), so every window passes its gradient to exactly one element.
    first = (a, b & ~a, c & ~(a | b), ~(a | b | c))
    zero = jnp.zeros_like(g)
    top = jnp.stack([jnp.where(first[0], g, zero), jnp.where(first[1], g, zero)], axis=3)
    bottom = jnp.stack([jnp.where(first[2], g, zero), jnp.where(first[3], g, zero)], axis=3)
    n, h2, w2, ch = g.shape
    grad = jnp.stack([top, bottom], axis=2).reshape(n, 2 * h2, 2 * w2, ch)
    pad = ((0, 0), (0, h.shape[1] - 2 * h2), (0, h.shape[2] - 2 * w2), (0, 0))
    return (jnp.pad(grad, pad) if any(p[1] for p in pad) else grad,)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def build_vgg(
    model: str = "vgg19",
    arrays: Mapping[str, np.ndarray] | None = None,
    *,
    convention: str = "torchvision",
    widths: Sequence[int] | None = None,
    seed: int = 0,
) -> VGG:
    """A VGG with the given arrays (``conv1_1.kernel`` HWIO, ``conv1_1.bias``), or random ones.

    Names and shapes are checked strictly: a missing, unexpected or misshapen array is a
    ``UserError`` naming the layer. Arrays for layers deeper than the model has are refused.
    """
    if widths is None:
        widths = _infer_widths(model, arrays) if arrays is not None else WIDTHS
    if arrays is None:
        return VGG(model, widths=widths, convention=convention, rngs=nnx.Rngs(seed))
    expected = {}
    for name, cin, cout in conv_specs(model, widths):
        expected[f"{name}.kernel"] = (3, 3, cin, cout)
        expected[f"{name}.bias"] = (cout,)
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise UserError(f"weights file lacks {missing[0]} ({len(missing)} arrays missing); is it a {model} file?")
    extra = [k for k in arrays if k not in expected]
    if extra:
        raise UserError(f"weights file has unexpected array {extra[0]}; is it a {model} file?")
    for key, shape in expected.items():
        got = tuple(np.shape(arrays[key]))
        if got != shape:
            raise UserError(f"weights for {key} have shape {got}, expected {shape}; the file does not match {model}")
    # Built straight from the arrays: no random init, not even traced (nnx.eval_shape of
    # it cost 0.2 s of every CLI start).
    return VGG(model, widths=widths, convention=convention, arrays=arrays)


def _infer_widths(model: str, arrays: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    # Narrow test networks store their own widths in their shapes; read them back so
    # a file round-trips without a side channel. The last conv of each block has them.
    widths = []
    for b, n in enumerate(BLOCKS[model], start=1):
        key = f"conv{b}_{n}.bias"
        widths.append(int(np.shape(arrays[key])[0]) if key in arrays else WIDTHS[b - 1])
    return tuple(widths)
