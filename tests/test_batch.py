"""`jaxstyle batch` in one process: batches equal single runs, targets computed once per
unique image, one compile per bucket, naming, manifests, resume, bad inputs, TFDS, sheets.

Tiny VGG19 widths at 32 px and a few steps keep each run to a second or two.
"""

from __future__ import annotations

import json

import numpy as np

import jaxstyle
import pytest
from helpers import CLI_OPTS, OPTS, write_image
from PIL import Image

from jaxstyle.api import batch
from jaxstyle.plan import jobs as batch_plan
from jaxstyle.cli import main as cli
from jaxstyle.io import manifest
from jaxstyle.plan import memory
from jaxstyle.io import sources
from jaxstyle.plan import pairs as pairs_io
from helpers import iterate, prepare
from jaxstyle.engine import loop
from jaxstyle.engine import targets as T
from jaxstyle.engine.targets import batch_problem
from jaxstyle.plan import runner
from jaxstyle.config import make_config
from jaxstyle.io.image import load_image

@pytest.fixture
def folders(tmp_path):
    """contents a, c (landscape), b (portrait); styles x, y (different sizes)."""
    c, s = tmp_path / "contents", tmp_path / "styles"
    c.mkdir()
    s.mkdir()
    write_image(c / "a.png", 48, 64, 1)
    write_image(c / "b.png", 64, 48, 2)
    write_image(c / "c.jpg", 48, 64, 3)
    write_image(s / "x.png", 40, 40, 4)
    write_image(s / "y.png", 30, 50, 5)
    return c, s


# ------------------------------------------------------------------ batch == single runs


def test_batch_equals_single_runs(net, folders):
    c, s = folders
    results = list(batch.run_batch([str(c)], [str(s)], network=net, batch_size=4, **OPTS))
    assert len(results) == 6 and all(r.status == "ok" for r in results)
    for r in results:
        single = jaxstyle.stylize(r.content, list(r.styles), network=net, **OPTS)
        assert r.image.shape == single.shape
        assert np.abs(r.image - single).max() <= 1e-5, r.pair


def test_per_pair_options_from_manifest_equal_single_runs(net, folders, tmp_path):
    c, s = folders
    rows = [
        {"content": str(c / "a.png"), "style": str(s / "x.png"), "init": "random", "seed": 3},
        {"content": str(c / "a.png"), "style": str(s / "y.png"), "init": "random", "seed": 4},
        {"content": "contents/b.png", "style": ["styles/x.png", "styles/y.png"], "style_blend_weights": [1, 3],
         "output": "blend/b"},
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    results = sorted(batch.run_batch(pairs=str(pairs), network=net, batch_size=2, **OPTS), key=lambda r: r.index)
    assert [r.status for r in results] == ["ok"] * 3
    assert results[2].pair == "blend/b.png"
    for r, row in zip(results, rows):
        opts = {k: v for k, v in row.items() if k not in ("content", "style", "output")}
        single = jaxstyle.stylize(r.content, list(r.styles), network=net, **OPTS, **opts)
        assert np.abs(r.image - single).max() <= 1e-5, r.pair
    # The two seeds give different starts, so different images: the init really is per pair.
    assert np.abs(results[0].image - results[1].image).max() > 0.05


def test_coarse_to_fine_and_colour_preservation_equal_single_runs(net, folders, tmp_path):
    c, s = folders
    fine = {"min_scale": 16, "initial_steps": 3, "optimizer": "adam", "ema_decay": 0.9}  # 16 → 23 → 32 px
    rows = [
        {"content": str(c / "a.png"), "style": str(s / "x.png"), **fine},
        {"content": str(c / "c.jpg"), "style": str(s / "y.png"), **fine},  # same shapes: one batch of 2
        {"content": str(c / "b.png"), "style": str(s / "x.png"), "preserve_color": "luminance"},
        {"content": str(c / "b.png"), "style": str(s / "y.png"), "preserve_color": "histogram", **fine},
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    results = sorted(batch.run_batch(pairs=str(pairs), network=net, batch_size=2, **OPTS), key=lambda r: r.index)
    assert [r.status for r in results] == ["ok"] * 4
    assert results[0].steps == 3 + 4 + 4
    for r, row in zip(results, rows):
        opts = {k: v for k, v in row.items() if k not in ("content", "style")}
        single = jaxstyle.stylize(r.content, list(r.styles), network=net, **OPTS, **opts)
        assert r.image.shape == single.shape
        assert np.abs(r.image - single).max() <= 1e-5, r.pair
    assert results[2].image.std(axis=2).max() > 0.01  # luminance mode keeps the colours


def test_stylize_batch_api_returns_images_in_pair_order(net, folders):
    c, s = folders
    images = batch.stylize_batch([str(c / "a.png"), str(c / "b.png")], [str(s / "y.png")], network=net, **OPTS)
    assert [i.shape for i in images] == [(24, 32, 3), (32, 24, 3)]
    assert np.abs(images[1] - jaxstyle.stylize(str(c / "b.png"), str(s / "y.png"), network=net, **OPTS)).max() <= 1e-5


# ------------------------------------------------------------- fast paths, one compile per bucket


def _count_targets(monkeypatch):
    calls = {"content": [], "style": [], "shared": []}
    real_c, real_s, real_p = T.content_targets, T.style_targets, runner.batch_problem

    def content(network, image, recipe):
        calls["content"].append(image.shape)
        return real_c(network, image, recipe)

    def style(network, images, recipe, *a, **kw):
        calls["style"].append(len(images))
        return real_s(network, images, recipe, *a, **kw)

    def prepare(*a, **kw):
        problem = real_p(*a, **kw)
        calls["shared"].append(problem.shared)
        return problem

    monkeypatch.setattr(T, "content_targets", content)
    monkeypatch.setattr(T, "style_targets", style)
    monkeypatch.setattr(runner, "batch_problem", prepare)
    return calls


def test_one_content_many_styles_computes_content_once(net, tmp_path, monkeypatch):
    for i in range(4):
        write_image(tmp_path / f"s{i}.png", 40, 40, 10 + i)
    content = write_image(tmp_path / "c.png", 48, 64, 1)
    calls = _count_targets(monkeypatch)
    styles = [str(tmp_path / f"s{i}.png") for i in range(4)]
    results = list(batch.run_batch(str(content), styles, network=net, batch_size=2, **OPTS))
    assert len(results) == 4
    assert len(calls["content"]) == 1  # two batches, one content feature computation
    assert len(calls["style"]) == 4
    assert calls["shared"] == [("content",), ("content",)]


def test_many_contents_one_style_computes_style_once(net, tmp_path, monkeypatch):
    contents = [str(write_image(tmp_path / f"c{i}.png", 48, 64, i)) for i in range(3)]
    style = write_image(tmp_path / "s.png", 40, 40, 9)
    calls = _count_targets(monkeypatch)
    results = list(batch.run_batch(contents, str(style), network=net, batch_size=4, **OPTS))
    assert len(results) == 3
    assert calls["style"] == [1] and len(calls["content"]) == 3
    assert calls["shared"] == [("style",)]


def test_one_compile_per_bucket(net, folders, count_compiles):
    c, s = folders
    # 2 shapes → 2 buckets; the 4-pair bucket runs as two batches of 2 and still compiles once.
    opts = dict(OPTS, style_weight=123.0, steps=2)
    results = list(batch.run_batch([str(c)], [str(s)], network=net, batch_size=2, **opts))
    assert len(results) == 6
    assert count_compiles("chunk") == 2


def test_non_finite_pair_fails_alone(net, folders):
    c, s = folders
    cfg = make_config(**OPTS)
    content = np.asarray(Image.open(c / "a.png").resize((32, 24)), np.float32) / 255
    style = np.asarray(Image.open(s / "x.png").resize((32, 32)), np.float32) / 255
    inits = np.stack([content, content])
    inits[1, 0, 0, 0] = np.nan
    problem = batch_problem(net, cfg.recipe, [content, content], [[style], [style]], inits)
    progress = list(iterate(problem, cfg))[-1]
    assert np.isfinite(progress.terms["total"][0]) and not np.isfinite(progress.terms["total"][1])
    single = iterate(prepare(net, content, [style], cfg), cfg)
    last = list(single)[-1]
    assert abs(float(last.terms["total"][0]) - float(progress.terms["total"][0])) <= 1e-4 * float(last.terms["total"][0])


# ------------------------------------------------------------------------------ planning


def test_names_are_readable_and_collisions_deterministic(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    for d in ("one", "two"):
        write_image(tmp_path / d / "photo.png", 20, 20)
    write_image(tmp_path / "starry.jpg", 20, 20)
    contents = sources.expand([str(tmp_path / "one"), str(tmp_path / "two" / "*.png")])
    styles = sources.expand([str(tmp_path / "starry.jpg")])
    jobs = batch_plan.make_jobs(batch_plan.pair_up(contents, styles, "product"), preset="gatys", overrides={}, ext=".png")
    names = [j.pair for j in jobs]
    assert len(set(names)) == 2
    assert all(n.startswith("photo-") and n.endswith("__starry.png") for n in names)
    again = batch_plan.make_jobs(batch_plan.pair_up(contents[::-1], styles, "product"), preset="gatys",
                                 overrides={}, ext=".png")
    assert {j.content.key: j.pair for j in again} == {j.content.key: j.pair for j in jobs}
    single = batch_plan.make_jobs(batch_plan.pair_up(contents[:1], styles, "product"), preset="gatys",
                                  overrides={}, ext=".jpg")
    assert single[0].pair == "photo__starry.jpg"


def test_zip_and_errors(tmp_path):
    a = sources.expand([str(write_image(tmp_path / "a.png", 20, 20))])
    with pytest.raises(batch.UserError, match="as many contents as styles"):
        batch_plan.pair_up(a * 2, a, "zip")
    with pytest.raises(batch.UserError, match="no images found"):
        sources.expand([str(tmp_path / "*.gif")])
    with pytest.raises(batch.UserError, match="no such file"):
        sources.expand([str(tmp_path / "missing.png")])
    bad = tmp_path / "pairs.csv"
    bad.write_text("content,style,colour\na.png,a.png,red\n")
    with pytest.raises(batch.UserError, match="unknown column 'colour'"):
        pairs_io.read_pairs(bad)


def test_csv_manifest_options_parse(tmp_path):
    write_image(tmp_path / "a.png", 20, 20)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text('content,style,style-weight,style_layers\na.png,a.png|a.png,50,"relu1_1,relu2_1"\n')
    (row,) = pairs_io.read_pairs(pairs)
    assert row.options == {"style_weight": 50.0, "style_layers": ("relu1_1", "relu2_1")}
    assert len(row.styles) == 2 and row.content.key == str(tmp_path / "a.png")


def test_shares_are_disjoint_and_cover_everything():
    jobs = list(range(23))
    shares = [batch_plan.share(jobs, i, 4) for i in range(4)]
    assert sorted(x for s in shares for x in s) == jobs
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_bucket_batch_size_is_even_and_per_device():
    assert batch_plan.bucket_size(21, 8, 1) == 7  # 3 batches of 7, not 8 + 8 + 5
    assert batch_plan.bucket_size(20, 8, 1) == 7  # 7 + 7 + 6 (one padded copy)
    assert batch_plan.bucket_size(1, 8, 1) == 1
    # The pairs per device do not change with the device count (same numbers on 1 or 4).
    assert batch_plan.bucket_size(6, 4, 1) == 3 and batch_plan.bucket_size(6, 4, 4) == 12
    assert batch_plan.bucket_size(1, 8, 2) == 2


def test_auto_batch_size_counts_the_lbfgs_history():
    cfg = make_config()  # L-BFGS, history 100
    history = 2 * 100 * 512 * 512 * 3 * 4  # s and y alone: 629 MB per pair at 512²
    k = batch_plan.auto_per_device(cfg.recipe, (512, 512), 1, "gpu", 4 << 30)
    assert 1 <= k and k * history <= 0.8 * (4 << 30)
    assert batch_plan.auto_per_device(make_config(optimizer="adam").recipe, (512, 512), 1, "gpu", 4 << 30) > k
    assert batch_plan.auto_per_device(cfg.recipe, (64, 64), 2, "gpu", 64 << 30) == 32  # the cap
    # CPU devices share the RAM: the size is the same for 1 and 4 devices while all fit...
    assert batch_plan.auto_per_device(cfg.recipe, (512, 512), 1, "cpu", 20 << 30, True) == 2
    assert batch_plan.auto_per_device(cfg.recipe, (512, 512), 4, "cpu", 20 << 30, True) == 2
    # ...and lower when all devices' batches together would not.
    assert batch_plan.auto_per_device(cfg.recipe, (1024, 1024), 4, "cpu", 20 << 30, True) == 1
    assert batch_plan.auto_per_device(make_config(optimizer="lbfgs-zoom").recipe, (64, 64), 1, "gpu", 64 << 30) == 1


def test_a_batch_that_cannot_fit_fails_its_pairs_with_the_reason(net, folders, monkeypatch):
    c, s = folders
    monkeypatch.setattr(memory, "free_bytes", lambda: (1 << 20, "a tiny device"))
    results = list(batch.run_batch(str(c / "a.png"), str(s / "x.png"), network=net, **OPTS))
    assert [r.status for r in results] == ["failed"] and "needs about" in results[0].error


# ------------------------------------------------------------------------------ manifest


def test_manifest_cuts_a_torn_tail_and_reader_skips_it(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"pair": "a.png", "status": "ok"}\n{"pair": "b.png", "sta')
    assert [r["pair"] for r in manifest.read_records(tmp_path)] == ["a.png"]
    with manifest.Writer(path) as w:
        w.append({"pair": "c.png", "status": "ok"})
        with pytest.raises(batch.UserError, match="in use by another"):
            manifest.Writer(path)
    lines = path.read_text().splitlines()
    assert [json.loads(x)["pair"] for x in lines] == ["a.png", "c.png"]


def test_finished_needs_ok_record_matching_fingerprint_and_decodable_output(tmp_path):
    write_image(tmp_path / "good.png", 8, 8)
    (tmp_path / "torn.png").write_bytes((tmp_path / "good.png").read_bytes()[:40])
    records = [
        {"pair": "good.png", "status": "ok", "fingerprint": "f", "output": "good.png"},
        {"pair": "torn.png", "status": "ok", "fingerprint": "f", "output": "torn.png"},
        {"pair": "gone.png", "status": "ok", "fingerprint": "f", "output": "gone.png"},
        {"pair": "old.png", "status": "ok", "fingerprint": "other", "output": "good.png"},
        {"pair": "bad.png", "status": "failed", "fingerprint": "f"},
    ]
    wanted = {r["pair"]: "f" for r in records}
    assert manifest.finished(tmp_path, wanted, records) == {"good.png"}


# ------------------------------------------------------------------- files, resume, CLI


def test_resume_skips_finished_and_redoes_missing_or_corrupt(net, folders, tmp_path):
    c, s = folders
    out = tmp_path / "out"
    first = list(batch.run_batch([str(c)], [str(s)], out, network=net, **OPTS))
    assert len(first) == 6 and all((out / r.pair).is_file() for r in first)
    assert list(batch.run_batch([str(c)], [str(s)], out, network=net, **OPTS)) == []
    (out / "a__x.png").unlink()
    (out / "b__y.png").write_bytes(b"not a png")
    again = list(batch.run_batch([str(c)], [str(s)], out, network=net, **OPTS))
    assert sorted(r.pair for r in again) == ["a__x.png", "b__y.png"]
    assert load_image(out / "b__y.png").shape == (32, 24, 3)
    # Other options, other fingerprint: everything is made again.
    assert len(list(batch.run_batch([str(c)], [str(s)], out, network=net, **dict(OPTS, style_weight=10.0)))) == 6


def test_cli_broken_image_fails_only_its_pairs(folders, tmp_path, capsys, tiny_weights):
    c, s = folders
    (c / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "out"
    argv = ["batch", "--content", str(c), "--style", str(s), "-o", str(out), "--weights", tiny_weights,
            *CLI_OPTS, "-q", "--contact-sheet", str(tmp_path / "sheet.png"), "--json"]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "8 pairs: 6 made, 0 already done, 2 failed" in captured.err
    assert json.loads(captured.out)["failed"] == 2
    records = list(manifest.read_records(out))
    failed = [r for r in records if r["status"] == "failed"]
    assert sorted(r["pair"] for r in failed) == ["broken__x.png", "broken__y.png"]
    assert all("broken.png" in r["error"] and "Pillow" in r["error"] for r in failed)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 6 and all(load_image(out / r["output"]).shape[2] == 3 for r in ok)
    assert all(set(r["losses"]) >= {"total", "content", "style:relu1_1"} and r["steps"] == 4 for r in ok)
    # The contact sheet: 4 content rows + 2 style columns + the input edges, and the cell
    # of a__y holds that output (compare means of the cell against the file).
    sheet = load_image(tmp_path / "sheet.png")
    step = 192 + 4 + 14
    assert sheet.shape[:2] == (4 + 5 * step, 4 + 3 * step)
    out_ay = load_image(out / "a__y.png").astype(float)
    cell = sheet[4 + step : 4 + step + 192, 4 + 2 * step : 4 + 2 * step + 192].astype(float)
    inner = cell[30:160, 10:180]  # a 24×32 output fitted into 192² spans rows 24..168
    assert np.abs(inner.mean((0, 1)) - out_ay.mean((0, 1))).max() < 12
    # Rerun: the six are skipped, the two broken pairs are tried again and fail again.
    assert cli.main(argv) == 1
    assert "8 pairs: 0 made, 6 already done, 2 failed" in capsys.readouterr().err


def test_cli_usage_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["batch", "--content", str(tmp_path / "nope.png"), "--style", "x.png", "-o", str(tmp_path),
                     "--weights", "random:0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.png: no such file" in err[0]  # checked before the weights load
    with pytest.raises(SystemExit):
        cli.main(["batch", "--batch-size", "0", "-o", str(tmp_path)])


# ------------------------------------------------------------------------------ TFDS


def test_tfds_source_through_mock_data(net, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets", reason="TensorFlow Datasets is not installed (pip install 'jaxstyle[tfds]')")
    with tfds.testing.mock_data(num_examples=3):
        items = sources.expand(["tfds:cifar10:train"])
        assert [i.stem for i in items] == ["cifar10-train-00000", "cifar10-train-00001", "cifar10-train-00002"]
        first = items[0].load()
        assert first.shape == (32, 32, 3) and first.dtype == np.uint8
        style = write_image(tmp_path / "s.png", 40, 40)
        out = tmp_path / "out"
        results = list(batch.run_batch("tfds:cifar10:train", str(style), out, network=net, **OPTS))
    assert sorted(r.pair for r in results) == [f"cifar10-train-0000{i}__s.png" for i in range(3)]
    assert all(r.status == "ok" and r.content.startswith("tfds:cifar10:train#") for r in results)
    # The output is the TFDS image stylized: same as stylizing the decoded array directly.
    single = jaxstyle.stylize(first, str(style), network=net, **OPTS)
    assert np.abs(load_image(out / "cifar10-train-00000__s.png") / 255.0 - single).max() <= 1 / 255 + 1e-6


def test_tfds_errors_are_one_line():
    with pytest.raises(batch.UserError, match="tfds:NAME"):
        sources.expand(["tfds:only-a-name"])


def test_outputs_in_the_input_folder_are_not_inputs(net, tmp_path):
    write_image(tmp_path / "a.png", 48, 64, 1)
    style = write_image(tmp_path / "s.jpg", 40, 40)
    results = list(batch.run_batch(str(tmp_path / "*.png"), str(style), tmp_path, network=net, **OPTS))
    assert [r.pair for r in results] == ["a__s.png"] and (tmp_path / "a__s.png").is_file()
    # A rerun lists the folder again and finds a__s.png there: not a content image.
    plan = batch.plan_batch(str(tmp_path / "*.png"), str(style), tmp_path, weights_id="network", **OPTS)
    assert [j.pair for j in plan.jobs] == ["a__s.png"] and plan.pending == []
