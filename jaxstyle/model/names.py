"""VGG layer names and architecture tables, without JAX: what configs and messages need.

Layers are named as in Gatys et al.: ``conv{block}_{i}``, ``relu{block}_{i}``, ``pool{block}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jaxstyle.errors import UserError

# Convolutions per block; widths are the channel counts of each block.
BLOCKS = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}
WIDTHS = (64, 128, 256, 512, 512)
MODELS = tuple(BLOCKS)
POOLINGS = ("max", "avg")
PADDINGS = ("zeros", "replicate_first", "circular")


def layer_names(model: str = "vgg19") -> list[str]:
    """Every named layer in forward order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for b, n in enumerate(BLOCKS[model], start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def conv_specs(model: str = "vgg19", widths: Sequence[int] = WIDTHS) -> list[tuple[str, int, int]]:
    """(name, in_channels, out_channels) for each convolution, in order."""
    specs, cin = [], 3
    for b, (n, cout) in enumerate(zip(BLOCKS[model], widths), start=1):
        for i in range(1, n + 1):
            specs.append((f"conv{b}_{i}", cin, cout))
            cin = cout
    return specs


def torchvision_indices(model: str = "vgg19") -> dict[str, int]:
    """Position of each conv in torchvision's ``features`` Sequential (``features.N.weight``)."""
    index, out = 0, {}
    for b, n in enumerate(BLOCKS[model], start=1):
        for i in range(1, n + 1):
            out[f"conv{b}_{i}"] = index
            index += 2  # conv, relu
        index += 1  # pool
    return out


def check_layers(layers: Iterable[str], model: str = "vgg19") -> None:
    known = layer_names(model)
    for name in layers:
        if name not in known:
            raise UserError(
                f"unknown layer {name!r} for {model}; use names like relu4_2, conv1_1, pool3 "
                f"(known: {known[0]} ... {known[-1]})"
            )


def min_size(layers: Iterable[str]) -> int:
    """Smallest image side for which every requested layer has at least one pixel."""
    # Block b sits behind b-1 poolings; pool_b itself halves once more.
    return max((2 ** (_block(n) - (0 if n.startswith("pool") else 1)) for n in layers), default=1)


def _block(name: str) -> int:
    return int(name.lstrip("convrelupool")[0])



# Pixel spaces and weight conventions (jaxstyle.model.pixels holds their arithmetic).
SPACES = ("rgb01", "caffe")
CONVENTIONS = ("torchvision", "caffe")
