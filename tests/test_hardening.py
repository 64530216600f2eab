"""Careless and hostile use from the command line: inputs never overwritten, every option
checked up front, manifests that cannot mark a pair done or write outside OUTDIR, and advice
that fits the situation. Each error is one line on stderr with exit status 2 (batch: a bad
manifest row is skipped with its line number and the run exits 1)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import CLI_OPTS, write_image
from PIL import Image

from jaxstyle.cli import main as cli
from jaxstyle.config import make_config
from jaxstyle.engine.loop import nonfinite_advice
from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.io import manifest


def run_cli(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def digest(path) -> bytes:
    return open(path, "rb").read()


@pytest.mark.parametrize("which", ["content", "style", "link to content", "mask", "init"])
def test_output_that_is_an_input_is_refused_before_any_work(which, images, tmp_path, capsys):
    content, style = images
    mask = write_image(tmp_path / "mask.png", 48, 64, 9)
    init = write_image(tmp_path / "init.png", 48, 64, 8)
    link = tmp_path / "link.png"
    os.symlink(content, link)
    target = {"content": content, "style": style, "link to content": link, "mask": mask, "init": init}[which]
    before = {p: digest(p) for p in (content, style, mask, init)}
    extra = {"mask": ["--mask", mask], "init": ["--init", init]}.get(which, [])
    code, _, err = run_cli(capsys, "stylize", content, style, "-o", target, "--weights", "random:0", *CLI_OPTS, *extra)
    one_line_error(code, err, "overwrite an input")
    assert {p: digest(p) for p in before} == before


def test_texture_and_inpaint_refuse_to_overwrite_their_inputs(images, tmp_path, capsys):
    content, style = images
    mask = tmp_path / "hole.png"
    m = np.zeros((48, 64), np.uint8)
    m[10:20, 10:20] = 255
    Image.fromarray(m).save(mask)
    before = digest(style), digest(content), digest(mask)
    code, _, err = run_cli(capsys, "texture", style, "-o", style, "--weights", "random:0", "--size", "32")
    one_line_error(code, err, "overwrite an input")
    code, _, err = run_cli(capsys, "inpaint", content, "--mask", mask, "-o", mask, "--weights", "random:0")
    one_line_error(code, err, "overwrite an input")
    assert (digest(style), digest(content), digest(mask)) == before


@pytest.mark.parametrize("flags, fragment", [
    (["--lr", "nan"], "--lr"),
    (["--style-weight", "inf"], "--style-weight"),
    (["--content-weight", "-1"], "--content-weight"),
    (["--style-layer-weights", "nan,1,1,1,1"], "--style-layer-weights"),
    (["--style-blend-weights", "inf"], "--style-blend-weights"),
    (["--style-scale", "inf"], "--style-scale"),
    (["--style-scale", "1e9"], "--style-scale"),
    (["--style-scale", "200"], "--style-scale"),
    (["--size", "1000000"], "--size"),
    (["--ema-decay", "nan"], "--ema-decay"),
    (["--tv-weight", "nan"], "--tv-weight"),
    (["--lbfgs-precondition", "1,nan"], "--lbfgs-precondition"),
    (["--lbfgs-precondition", "-1"], "--lbfgs-precondition"),
    (["--lbfgs-precondition", "1,4,16", "--optimizer", "adam"], "--lbfgs-precondition"),
])
def test_non_finite_and_absurd_options_are_refused_up_front(flags, fragment, images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.png"
    code, _, err = run_cli(capsys, "stylize", content, style, "-o", out, "--weights", "random:0", *flags)
    one_line_error(code, err, fragment)
    assert not out.exists()


def test_memory_check_covers_the_style_images(images, tmp_path, capsys, monkeypatch):
    # The content fits at 64 px; its style, scaled ×16 to 1024 px, does not: refused up front.
    from jaxstyle.plan import memory

    monkeypatch.setattr(memory, "free_bytes", lambda: (int(1.5e9), "a test device"))
    content, style = images
    big = write_image(tmp_path / "big.png", 400, 400, 3)
    code, _, err = run_cli(capsys, "stylize", content, big, "-o", tmp_path / "o.png", "--size", "64",
                           "--style-scale", "16", "--weights", "random:0")
    one_line_error(code, err, "style image", "GB")


def test_nan_advice_matches_the_optimiser():
    lbfgs = nonfinite_advice("total", float("nan"), 3, make_config(optimizer="lbfgs").recipe)
    adam = nonfinite_advice("total", float("nan"), 3, make_config(optimizer="adam").recipe)
    assert "--optimizer adam" in lbfgs
    assert "--optimizer adam" not in adam and "--lr" in adam


def test_pixel_limit_names_what_raises_it(tmp_path, monkeypatch):
    path = write_image(tmp_path / "wide.png", 20, 60)
    monkeypatch.setenv("JAXSTYLE_MAX_PIXELS", "1000")
    with pytest.raises(UserError, match=r"over the limit of 1000.*JAXSTYLE_MAX_PIXELS"):
        imageio.load_image(path)
    monkeypatch.setenv("JAXSTYLE_MAX_PIXELS", "2000")
    assert imageio.load_image(path).shape == (20, 60, 3)


def test_output_folder_under_a_file_fails_before_weights(images, tmp_path, capsys):
    content, style = images
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    # The weights do not exist: had they been loaded first, that would be the error.
    code, _, err = run_cli(capsys, "batch", "--content", content, "--style", style, "-o", blocker / "out",
                           "--weights", tmp_path / "missing.safetensors")
    one_line_error(code, err, "cannot write")


def test_bad_manifest_rows_are_skipped_with_their_line(images, tmp_path, capsys, tiny_weights):
    content, style = images
    rows = [
        {"content": str(content), "style": str(style), "output": "good.png"},
        {"content": str(content), "style": str(style), "output": str(tmp_path / "abs.png")},
        {"content": str(content), "style": str(style), "output": "../escape.png"},
        {"content": str(content), "style": str(style), "style_weight": [1, 2]},
        {"content": 7, "style": str(style)},
        "not an object",
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "batch", "--pairs", pairs, "-o", out, "--weights", tiny_weights, "-q", *CLI_OPTS)
    assert code == 1, err
    skipped = [line for line in err.splitlines() if line.startswith("jaxstyle: skipped")]
    assert [s.split(":")[2] for s in skipped] == ["2", "3", "4", "5", "6", "7"], skipped
    assert (out / "good.png").is_file()
    assert not (tmp_path / "abs.png").exists() and not (tmp_path / "escape.png").exists()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["pair"] for r in records] == ["good.png"]


def test_a_record_pointing_elsewhere_never_marks_a_pair_done(tmp_path):
    other = write_image(tmp_path / "someone_else.png", 8, 8)
    out = tmp_path / "out"
    out.mkdir()
    records = [{"pair": "a.png", "status": "ok", "fingerprint": "f", "output": str(other)},
               {"pair": "b.png", "status": "ok", "fingerprint": "f", "output": "../someone_else.png"},
               {"pair": ["c.png"], "status": "ok", "fingerprint": "f"}]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert manifest.finished(out, {"a.png": "f", "b.png": "f", "c.png": "f"}) == set()
    write_image(out / "a.png", 8, 8)
    good = [{"pair": "a.png", "status": "ok", "fingerprint": "f", "output": "a.png"}]
    assert manifest.finished(out, {"a.png": "f"}, good) == {"a.png"}
