"""``--preset fast``: neural-style-pt's objective on a cheaper schedule (issue 14).

Its speed is measured in bench/time_to_image.py, never here; these tests hold what makes that
comparison fair and the preset usable: the objective is exactly nspt's (so "the same loss" is
the same number), the schedule is coarse-to-fine from half size and costs well under nspt's
work, and it runs end to end from the CLI.
"""

from __future__ import annotations

import json

from helpers import CLI_OPTS
from jaxstyle import config
from jaxstyle.cli import main as cli
from jaxstyle.plan.scales import schedule


def test_fast_is_nspts_objective_on_every_network():
    fast, nspt = config.make_config("fast"), config.make_config("nspt")
    assert fast.recipe == nspt.recipe and fast.weights_source == nspt.weights_source == "caffe"
    # On weights other than the Caffe VGG-19 both run the normalised network with one objective.
    assert config.with_network(fast, "normalized").recipe == config.with_network(nspt, "normalized").recipe


def test_fast_schedule_is_coarse_to_fine_from_half_size_at_a_fraction_of_nspts_work():
    fast, nspt = config.make_config("fast"), config.make_config("nspt")
    assert fast.run.init == "content" and nspt.run.init == "random"
    scales = schedule(512, 512, fast)
    assert [(s.size, s.steps) for s in scales] == [(256, 250), (362, 200), (512, 200)]
    # Work in full-size step equivalents (a step costs ~ its pixel count).
    work = sum(s.steps * s.height * s.width for s in scales) / (512 * 512)
    assert work <= 0.4 * sum(s.steps for s in schedule(512, 512, nspt)) == 0.4 * 1000


def test_fast_preset_runs_from_the_cli(capsys, images, tiny_weights, tmp_path):
    content, style = images
    out = tmp_path / "out.png"
    args = ["stylize", content, style, "-o", out, "--weights", tiny_weights, "--preset", "fast", *CLI_OPTS,
            "--min-scale", "16", "--initial-steps", "2", "--json", "-q"]
    code = cli.main([str(a) for a in args])
    record = json.loads(capsys.readouterr().out)
    assert code in (0, None) and out.exists()
    assert record["preset"] == "fast" and record["steps"] == 2 + 4 + 4  # 16, 23, 32 px: 2, then 4 at each later scale
