"""Shared fixtures: tiny images and tiny weights, made by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

# Narrow VGG19 for fast tests: same layers and names, few channels.
TINY_WIDTHS = (4, 8, 8, 8, 8)


def write_image(path, h: int, w: int, seed: int = 0):
    """A smooth random RGB image (structure at several scales, like a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + 3 * yy + p) for p in rng.uniform(0, 6, 3)], -1)
    img = 0.5 + 0.35 * img + 0.15 * rng.standard_normal((h, w, 3))
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    """Paths of a 48×64 content image and a 40×40 style image."""
    return write_image(tmp_path / "content.png", 48, 64, 1), write_image(tmp_path / "style.png", 40, 40, 2)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # Never touch the user's weights cache or compile cache from a test.
    home = tmp_path_factory.mktemp("jaxstyle_home")
    monkeypatch.setenv("JAXSTYLE_HOME", str(home))
    monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "off")
