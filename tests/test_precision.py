"""``--precision auto`` (the default): bf16 where bfloat16 is faster (GPU/TPU), fp32 on CPU,
where XLA:CPU converts bf16 convolution operands to f32 (bench/bf16_cpu.py). Resolved when the
config is made, at run time; the result record and the summary line say what ran."""

from __future__ import annotations

import json

import jax
import pytest

from helpers import CLI_OPTS
from jaxstyle import config
from jaxstyle.cli import main as cli
from jaxstyle.errors import UserError


def test_auto_is_the_default_and_resolves_by_backend():
    assert config.Recipe().precision == "auto" and config.PRECISIONS[0] == "auto"
    assert config.resolve_precision("auto", "cpu") == "fp32"
    for backend in ("gpu", "cuda", "rocm", "tpu"):
        assert config.resolve_precision("auto", backend) == "bf16"
    for explicit in ("fp32", "bf16"):  # explicit choices are kept on every backend
        assert config.resolve_precision(explicit, "cpu") == explicit
        assert config.resolve_precision(explicit, "gpu") == explicit


def test_made_configs_hold_the_resolved_precision():
    assert jax.default_backend() == "cpu"  # the test suite runs on CPU
    for preset in config.PRESETS:
        assert config.make_config(preset).recipe.precision == "fp32"  # oracle/parity runs stay fp32
    assert config.make_config(precision="bf16").recipe.precision == "bf16"
    assert config.make_config(precision="fp32").recipe.precision == "fp32"
    # auto and an explicit fp32 are one recipe on CPU: one compile key, nothing compiled twice
    assert config.make_config(precision="auto").recipe == config.make_config(precision="fp32").recipe
    cfg = config.make_config(precision="bf16")
    assert config.with_network(cfg, "normalized").recipe.precision == "bf16"  # asked for: kept
    with pytest.raises(UserError, match="--precision 'fp16' is not valid; choose one of auto, fp32, bf16"):
        config.make_config(precision="fp16")


def _stylize(capsys, images, tiny_weights, tmp_path, *extra):
    content, style = images
    try:
        code = cli.main([str(a) for a in ("stylize", content, style, "-o", tmp_path / "out.png", "--weights",
                                          tiny_weights, *CLI_OPTS, "--steps", "1", "--json", "-q", *extra)])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def test_cli_reports_the_precision_that_ran(capsys, images, tiny_weights, tmp_path):
    record, err = _stylize(capsys, images, tiny_weights, tmp_path)  # default: auto
    assert record["precision"] == "fp32"
    assert ", fp32) in" in err  # the summary line: "wrote OUT (W×H, fp32) in S s ..."
    record, err = _stylize(capsys, images, tiny_weights, tmp_path, "--precision", "bf16")
    assert record["precision"] == "bf16" and ", bf16) in" in err
    assert record["first_step_seconds"] > 0


def test_help_explains_auto(capsys):
    with pytest.raises(SystemExit):
        cli.main(["stylize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one of auto, fp32, bf16" in text and "auto is bf16 on GPU/TPU and fp32 on CPU" in text
    assert "(default: auto)" in text


def test_memory_estimate_takes_an_unresolved_auto_recipe():
    # A Recipe built by hand (not through make_config) still says "auto": the memory check
    # must resolve it (fp32 on CPU) instead of failing on a table lookup.
    from jaxstyle.config import Recipe
    from jaxstyle.plan.memory import estimate

    assert estimate(Recipe(), (96, 128)) == estimate(Recipe(precision="fp32"), (96, 128))
    assert estimate(Recipe(), (96, 128)) != estimate(Recipe(precision="bf16"), (96, 128))
