"""The PyTorch baseline: jaxstyle's algorithm written independently in plain PyTorch.

Command: none of its own; ``python -m bench.run`` drives it (and
``tests/test_bench_agreement.py`` checks it against jaxstyle at step 0).

What it is: the same algorithm as a jaxstyle :class:`~jaxstyle.config.Config` (the ``gatys``
and ``nspt`` presets; Adam or torch's L-BFGS), built the way a PyTorch user would build it:

- weights read from the SAME safetensors file as jaxstyle, through ``safetensors.torch``
  (HWIO kernels transposed to torch's OIHW), frozen with ``requires_grad_(False)``, so only
  the image gradient is computed;
- NCHW, ``nn.functional.conv2d(padding=1)``, ReLU, ``max_pool2d(2, 2)``; the net stops at
  the deepest loss layer;
- preprocessing of the weights' convention (torchvision mean/std or Caffe BGR − mean) from
  the recipe's pixel space;
- content ``w_c·mean((F−F_c)²)``; style ``w_s·Σ_l w_l·mean((G_l−Ĝ_l)²)`` with
  ``G = FᵀF/(H·W)`` (or ``/(C·H·W)``); TV ``w_tv·(Σ|Δy| + Σ|Δx|)``;
- ``torch.optim.Adam(lr, betas, eps)`` or ``torch.optim.LBFGS(lr=1, max_iter=1,
  history_size=100, line_search_fn=None, tolerance_grad, tolerance_change)`` stepped once
  per iteration, as neural-style-pt and pystiche do;
- the starting pixels are given by the caller (the same array jaxstyle starts from).

A batch of B pairs runs either as B independent problems one after another (``loop``: what a
PyTorch user does today) or, for Adam only, as one NCHW batch whose loss is the sum of the
per-image losses (``batched``: Adam is elementwise, so the per-image trajectories are the same).
L-BFGS cannot be batched that way (its curvature pairs would mix the images).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# Kept here, not imported from jaxstyle, so the baseline stays an independent implementation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BLOCKS = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}


def load_weights(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """OIHW conv weights and biases by layer name (``conv1_1``), and the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    arrays = load_file(str(path))
    weights = {}
    for key, value in arrays.items():
        name, kind = key.rsplit(".", 1)
        weights[f"{name}.{'weight' if kind == 'kernel' else kind}"] = (
            value.permute(3, 2, 0, 1).contiguous() if kind == "kernel" else value
        )
    return weights, meta


class TorchVGG(torch.nn.Module):
    """VGG conv trunk with paper layer names; returns the requested layers' features."""

    def __init__(self, weights: dict[str, torch.Tensor], model: str = "vgg19", convention: str = "torchvision"):
        super().__init__()
        self.model, self.convention = model, convention
        self.names: list[str] = []
        for b, n in enumerate(BLOCKS[model], start=1):
            for i in range(1, n + 1):
                conv = f"conv{b}_{i}"
                self.register_buffer(f"{conv}_w", weights[f"{conv}.weight"].float())
                self.register_buffer(f"{conv}_b", weights[f"{conv}.bias"].float())
                self.names += [conv, f"relu{b}_{i}"]
            self.names.append(f"pool{b}")
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, layers: Sequence[str], pooling: str = "max") -> dict[str, torch.Tensor]:
        wanted, out = set(layers), {}
        for name in self.names:
            if not wanted - out.keys():
                break
            if name.startswith("conv"):
                x = F.conv2d(x, getattr(self, f"{name}_w"), getattr(self, f"{name}_b"), padding=1)
            elif name.startswith("relu"):
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2, 2) if pooling == "max" else F.avg_pool2d(x, 2, 2)
            if name in wanted:
                out[name] = x
        return out


def _const(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def network_input(x: torch.Tensor, pixel_space: str, convention: str) -> torch.Tensor:
    """NCHW pixels in the recipe's space → what the weights expect."""
    if pixel_space == convention == "caffe":
        return x
    rgb = x if pixel_space == "rgb01" else (x + _const(CAFFE_MEAN_BGR, x)).flip(1) / 255.0
    if convention == "caffe":
        return rgb.flip(1) * 255.0 - _const(CAFFE_MEAN_BGR, x)
    return (rgb - _const(IMAGENET_MEAN, x)) / _const(IMAGENET_STD, x)


def pixel_box(pixel_space: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (low, high) of the RGB [0,1] box in ``pixel_space``, shaped (1, 3, 1, 1)."""
    lo, hi = torch.zeros(1, 3, 1, 1, dtype=like.dtype, device=like.device), torch.ones(1, 3, 1, 1, dtype=like.dtype, device=like.device)
    return from_rgb01(lo, pixel_space), from_rgb01(hi, pixel_space)


def from_rgb01(rgb: torch.Tensor, pixel_space: str) -> torch.Tensor:
    if pixel_space == "rgb01":
        return rgb
    return rgb.flip(1) * 255.0 - _const(CAFFE_MEAN_BGR, rgb)


def gram(f: torch.Tensor, norm: str) -> torch.Tensor:
    """(B, C, H, W) → (B, C, C), divided by H·W or C·H·W."""
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w * (c if norm == "chw" else 1))


class _Flat:
    """A jaxstyle Config read by flat option names (its recipe, then its run settings), as
    this reference is written against the README's formulas."""

    def __init__(self, cfg):
        self._parts = (cfg.recipe, cfg.run, cfg) if hasattr(cfg, "recipe") else (cfg,)

    def __getattr__(self, name):
        for part in self._parts:
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(name)


def _per_image_mean_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().flatten(1).mean(1)


class Objective(torch.nn.Module):
    """Per-image weighted loss terms of a Config, for a (B, 3, H, W) image batch."""

    def __init__(self, net: TorchVGG, cfg, content_rgb01: np.ndarray, styles_rgb01: Sequence[np.ndarray]):
        cfg = _Flat(cfg)
        super().__init__()
        if cfg.style_loss != "gram" or cfg.padding != "zeros" or cfg.ema_decay is not None:
            raise ValueError("the PyTorch baseline covers Gram style loss, zero padding, no EMA")
        if cfg.tv_weight and cfg.tv_loss != "l1_sum":
            raise ValueError("the PyTorch baseline covers the l1_sum TV loss only")
        self.net, self.cfg = net, cfg
        self.device = net.conv1_1_w.device
        self.layers = tuple(dict.fromkeys(cfg.content_layers + cfg.style_layers))
        with torch.no_grad():
            content_x = from_rgb01(nchw(content_rgb01, self.device), cfg.pixel_space)
            content = self.features(content_x, cfg.content_layers)
            blend = cfg.style_blend_weights or (1.0,) * len(styles_rgb01)
            grams = {n: 0.0 for n in cfg.style_layers}
            for s, w in zip(styles_rgb01, blend):
                feats = self.features(from_rgb01(nchw(s, self.device), cfg.pixel_space), cfg.style_layers)
                for n in cfg.style_layers:
                    grams[n] = grams[n] + (w / sum(blend)) * gram(feats[n], cfg.gram_norm)
        self.content_targets = content
        self.style_targets = grams
        # Style layer weights, normalised to sum 1 when the recipe says so (pystiche).
        lw = cfg.style_layer_weights or (1.0,) * len(cfg.style_layers)
        total = sum(lw) if cfg.normalize_layer_weights else 1.0
        self.layer_weights = [w / total for w in lw]

    def features(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        return self.net(network_input(x, self.cfg.pixel_space, self.net.convention), layers, self.cfg.pooling)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        feats = self.features(x, self.layers)
        terms = {}
        if cfg.content_layers and cfg.content_weight:
            terms["content"] = cfg.content_weight * sum(
                _per_image_mean_sq(feats[n], self.content_targets[n]) for n in cfg.content_layers
            )
        for n, w in zip(cfg.style_layers, self.layer_weights):
            terms[f"style:{n}"] = cfg.style_weight * w * _per_image_mean_sq(gram(feats[n], cfg.gram_norm), self.style_targets[n])
        if cfg.tv_weight:
            dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).sum(1)
            dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).sum(1)
            terms["tv"] = cfg.tv_weight * (dy + dx)
        return terms


def nchw(hwc: np.ndarray, device="cpu") -> torch.Tensor:
    """H×W×3 or B×H×W×3 float array → (B, 3, H, W) float32 tensor on ``device``."""
    a = np.asarray(hwc, np.float32)
    a = a.transpose(2, 0, 1)[None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def make_optimizer(params: list[torch.Tensor], cfg):
    cfg = _Flat(cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, betas=(cfg.adam_b1, cfg.adam_b2), eps=cfg.adam_eps)
    if cfg.optimizer == "lbfgs":
        return torch.optim.LBFGS(
            params,
            lr=cfg.learning_rate,
            max_iter=1,
            history_size=cfg.lbfgs_history,
            tolerance_grad=cfg.lbfgs_tolerance_grad,
            tolerance_change=cfg.lbfgs_tolerance_change,
            line_search_fn=None,
        )
    raise ValueError(f"the PyTorch baseline has no optimizer {cfg.optimizer!r}")


class Run:
    """One optimisation: an image tensor (B,3,H,W), its optimiser and a (maybe compiled) loss.

    ``step()`` takes one iteration and returns the per-image terms of the image *before* the
    update (detached), as jaxstyle's step does. With ``compiled=True`` the objective (forward
    and, through AOTAutograd, its backward) goes through ``torch.compile``.
    """

    def __init__(self, objective: Objective, init_pixels: np.ndarray, cfg, *, compiled: bool = False, bf16: bool = False):
        cfg = _Flat(cfg)
        self.objective, self.cfg = objective, cfg
        self.image = nchw(init_pixels, objective.device).clone().requires_grad_(True)
        self.optimizer = make_optimizer([self.image], cfg)
        self.loss_fn = torch.compile(objective) if compiled else objective
        # bf16: autocast runs the convs and Gram matmuls in bf16 (fp32 accumulation inside
        # the kernels; the Gram comes out in bf16, where jaxstyle keeps it in fp32); the
        # image, the losses' reductions and the optimiser state stay fp32.
        self.bf16 = bf16
        self.last: dict[str, torch.Tensor] = {}

    def _closure(self):
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.objective.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            terms = self.loss_fn(self.image)
        terms = {k: v.float() for k, v in terms.items()}
        total = sum(terms.values())
        # The per-image losses are independent, so the gradient of their sum is each
        # image's own gradient (for Adam; L-BFGS runs one image per Run).
        total.sum().backward()
        self.last = {k: v.detach() for k, v in terms.items()}
        self.last["total"] = total.detach()
        return total.sum()

    def step(self) -> dict[str, torch.Tensor]:
        self.optimizer.step(self._closure)
        if self.cfg.clamp:
            # Projection onto the pixel box after the update, in place: torch's L-BFGS keeps
            # its own step t·d as the curvature pair's s, so the projection does not enter
            # the history (jaxstyle's TorchLBFGS does the same).
            with torch.no_grad():
                lo, hi = pixel_box(self.cfg.pixel_space, self.image)
                self.image.copy_(torch.maximum(torch.minimum(self.image, hi), lo))
        return self.last

    def terms(self) -> dict[str, np.ndarray]:
        """Terms of the current image (no step)."""
        with torch.no_grad():
            terms = self.objective(self.image)
            terms["total"] = sum(terms.values())
        return {k: v.float().cpu().numpy().copy() for k, v in terms.items()}
