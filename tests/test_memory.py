"""Memory estimate: a run that cannot fit is refused with one line, before allocating."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxstyle.cli import main as cli
from jaxstyle.plan import memory
from jaxstyle.config import make_config
from jaxstyle.errors import UserError
from jaxstyle.model.vgg import build_vgg

import jaxstyle
from jaxstyle.engine import compiled
from jaxstyle.engine import targets as T
from jaxstyle.objective.terms import Targets


def test_prepare_refuses_before_computing_anything(monkeypatch, net):
    monkeypatch.setattr(memory, "free_bytes", lambda: (10 * 10**9, "a test device"))
    touched = []
    monkeypatch.setattr(T, "style_targets", lambda *a, **k: touched.append(1))
    # A 1500×2000 content image that is never allocated (a broadcast view of one pixel):
    # L-BFGS needs ~15 GB there, Adam ~7 GB.
    content = np.broadcast_to(np.zeros((1, 1, 3), np.float32), (1500, 2000, 3))
    cfg = make_config("gatys", optimizer="lbfgs", size=2000)
    with pytest.raises(UserError) as e:
        jaxstyle.stylize(content, np.zeros((32, 32, 3), np.float32), network=net, optimizer="lbfgs", size=2000)
    message = str(e.value)
    assert "\n" not in message and "GB" in message and "a test device" in message
    assert "--size" in message and "--optimizer adam" in message
    assert not touched


def test_refusal_suggests_only_changes_that_fit():
    cfg = make_config("gatys", optimizer="lbfgs", size=2048)
    cfg = cfg.recipe
    need_adam = memory.estimate(make_config("gatys", optimizer="adam").recipe, (2048, 2048)).total
    with pytest.raises(UserError) as e:
        memory.check_fits(cfg, (2048, 2048), free=need_adam + 1)
    size = int(str(e.value).split("--size ")[1].split()[0])
    assert "--optimizer adam" in str(e.value) and "--precision bf16" not in str(e.value)
    assert memory.estimate(cfg, (size, size)).total <= need_adam + 1 < memory.estimate(cfg, (size + 16, size + 16)).total


def test_cli_refuses_a_huge_size_in_one_line(images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.png"
    code = cli.main(["stylize", str(content), str(style), "-o", str(out), "--size", "12000",
                     "--weights", "random:0", "--steps", "1", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "--size" in err and "GB" in err


def test_estimate_covers_what_xla_allocates():
    # XLA's own buffer assignment for the compiled step (weights, state, activations):
    # the estimate must not be below it, and not wildly above.
    cfg = make_config("gatys", optimizer="lbfgs", lbfgs_history=20)
    network = nnx.eval_shape(lambda: build_vgg("vgg19"))
    graphdef, params = nnx.split(network)
    shape = (96, 128)
    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
    image = f32(1, *shape, 3)
    recipe = cfg.recipe
    state = jax.eval_shape(lambda x: compiled.init_states(recipe, None, x), image)
    grams = {n: {"gram": f32(1, c, c)} for n, c in
             zip(recipe.style_layers, (64, 128, 256, 512, 512))}
    targets = Targets(style=grams, content={"relu4_2": f32(1, shape[0] // 8, shape[1] // 8, 512)})
    program = compiled.chunk.lower(graphdef, recipe, 1, True, (), None, params, targets, state).compile()
    m = program.memory_analysis()
    xla = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
    ours = memory.estimate(recipe, shape).total
    assert xla <= ours <= 2 * xla
