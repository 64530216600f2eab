"""The command line end to end, and every user mistake it must turn into one line.

Most runs call ``jaxstyle.cli.main`` in-process (fast, one JAX start-up); one success and
one failure go through a real ``python -m jaxstyle`` subprocess. Images are at most 64 px.
``--weights random:0`` (the full VGG19) is used where the issue asks for it; the error
cases use a narrow VGG19 written by the test as a torchvision-layout safetensors file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import save_state, tiny_state_dict, write_image
from jaxstyle.cli import main as cli

FAST = ["-q", "--steps", "2", "--optimizer", "adam"]  # tiny runs; -q: no progress bar


# ----------------------------------------------------------------------------- helpers


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``jaxstyle ARGV`` run in this process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse errors and --help
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, out, err, *fragments):
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err and "error" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- success


def test_formats_snapshots_and_json(images, tmp_path, capsys):
    content, style = images
    outdir = tmp_path / "out"
    for ext, fmt in [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF")]:
        out = outdir / f"result{ext}"
        code, _, err = run_cli(capsys, "stylize", content, style, "-o", out, "--weights", "random:0", "--size", 64, *FAST)
        assert code == 0, err
        with Image.open(out) as im:
            assert (im.format, im.size, im.mode) == (fmt, (64, 48), "RGB")
        assert "untrained weights random:0" in err  # the label is never silent
    with Image.open(outdir / "result.png") as im:
        assert "NOT pretrained" in im.info["jaxstyle:weights"]

    # Snapshots every 2 steps of 5, the final image under its own name, and the JSON line.
    out = outdir / "snap" / "run.png"
    code, stdout, err = run_cli(
        capsys, "stylize", content, style, "-o", out, "--weights", "random:0", "--size", 64,
        "-q", "--steps", 5, "--optimizer", "adam", "--save-every", 2, "--json",
    )
    assert code == 0, err
    assert files_under(out.parent) == ["run.png", "run_step00002.png", "run_step00004.png"]
    record = json.loads(stdout)
    assert set(record) == json_keys_in_help(capsys)
    assert record["output"] == str(out) and record["steps"] == 5 and record["size"] == [48, 64]
    assert record["weights"] == "random:0" and record["pretrained"] is False and record["preset"] == "gatys"
    assert np.isfinite(record["losses"]["total"]) and record["losses"]["total"] > 0
    assert {"content", "style:relu1_1", "style:relu5_1"} <= set(record["losses"])
    assert record["seconds"] >= record["optimize_seconds"] >= record["compile_seconds"] > 0
    assert "jaxstyle: wrote" in err and str(out) in err


def json_keys_in_help(capsys) -> set[str]:
    code, out, _ = run_cli(capsys, "stylize", "--help")
    assert code == 0
    text = " ".join(out.split())
    listed = text.split("keys:", 1)[1].split(")", 1)[0]
    return {k.strip(" .") for k in listed.replace(" and ", ",").split(",") if k.strip(" .")}


def test_real_subprocess(images, tmp_path):
    content, style = images
    env = dict(os.environ, JAXSTYLE_COMPILE_CACHE="off")
    out = tmp_path / "sub.jpg"
    cmd = [sys.executable, "-m", "jaxstyle", "stylize", str(content), str(style), "-o", str(out),
           "--weights", "random:0", "--size", "32", *FAST]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (32, 24)
    # A user error in a real process: one line, status 2, nothing written.
    bad = [sys.executable, "-m", "jaxstyle", "stylize", str(tmp_path / "missing.png"), str(style),
           "-o", str(tmp_path / "never.png"), "--weights", "random:0"]
    done = subprocess.run(bad, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "missing.png" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "never.png").exists()


def all_parsers():
    """(command words, parser) for every command and sub-command."""
    found, todo = [], [((), cli.build_parser())]
    while todo:
        words, parser = todo.pop()
        found.append((words, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [((*words, name), sub) for name, sub in action.choices.items()]
    return found


@pytest.mark.parametrize("words", [w for w, _ in all_parsers()], ids=lambda w: " ".join(w) or "jaxstyle")
def test_help_of_every_command_shows_every_default(words, capsys):
    code, out, err = run_cli(capsys, *words, "--help")
    assert code == 0 and err == "" and out.startswith("usage:")
    parser = dict(all_parsers())[words]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.required or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        text = formatter._expand_help(action) if action.help else ""
        assert "default" in text.lower(), f"{' '.join(words)} {action.option_strings[-1]}: no default in {text!r}"


# ----------------------------------------------------------------------------- user errors


def make_bad_image(kind: str, folder: Path) -> Path:
    path = folder / f"bad-{kind}.png"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        good = write_image(folder / "good.png", 40, 40, seed=3).read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif kind == "text-as-jpg":
        path = folder / "notes.jpg"
        path.write_text("not an image\n")
    elif kind == "unreadable":
        write_image(path, 40, 40)
        path.chmod(0)
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "folder", "random-bytes", "truncated", "text-as-jpg", "unreadable"])
@pytest.mark.parametrize("role", ["content", "style", "init"])
def test_bad_image(kind, role, images, tmp_path, capsys, monkeypatch):
    content, style = images
    bad = make_bad_image(kind, tmp_path)
    if kind == "unreadable" and os.geteuid() == 0:
        # root reads any file whatever its mode: make the open fail as it would for a user.
        import builtins

        real_open = builtins.open

        def guarded(file, *args, **kwargs):
            if os.fspath(file) == str(bad):
                raise PermissionError(13, "Permission denied", str(bad))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded)
    argv = {"content": [bad, style], "style": [content, bad], "init": [content, style, "--init", bad]}[role]
    out = tmp_path / "out" / "result.png"
    # random:0 prints a note when loaded: inputs must be checked before the weights load.
    code, stdout, err = run_cli(capsys, "stylize", *argv, "-o", out, "--weights", "random:0", "--size", 32, *FAST)
    assert_user_error(code, stdout, err, bad.name)
    assert not out.parent.exists() or files_under(out.parent) == []


ERROR_CASES = {
    # name: (extra argv, fragments the one line must contain)
    "unknown style layer": (["--style-layers", "relu1_1,relu9_9"], ["relu9_9"]),
    "unknown content layer": (["--content-layers", "conv6_1"], ["conv6_1"]),
    "bad optimizer": (["--optimizer", "sgd"], ["--optimizer", "sgd"]),
    "negative steps": (["--steps", "-1"], ["--steps", "-1"]),
    "lr not a number": (["--lr", "abc"], ["--lr", "abc"]),
    "negative lr": (["--lr", "-1"], ["--lr"]),
    "size zero": (["--size", "0"], ["--size"]),
    "size not an integer": (["--size", "big"], ["--size", "big"]),
    "layer weights mismatch": (["--style-layer-weights", "1,2"], ["--style-layer-weights", "2 values", "5 style layers"]),
    "layer weights not numbers": (["--style-layer-weights", "1,x"], ["--style-layer-weights"]),
    "blend weights mismatch": (["--style-blend-weights", "1,2"], ["--style-blend-weights", "2 values", "1 style"]),
    "bad pooling": (["--pooling", "median"], ["--pooling", "median"]),
    "bad preset": (["--preset", "picasso"], ["--preset", "picasso"]),
    "unknown flag": (["--styel-weight", "3"], ["--styel-weight"]),
    "negative save-every": (["--save-every", "-2"], ["--save-every"]),
    "image too small": (["--size", "12"], ["too small", "relu5_1", ">= 16", "--size"]),
    "missing weights file": (["--weights", "{tmp}/nowhere.safetensors"], ["nowhere.safetensors", "not found"]),
    "bad random spec": (["--weights", "random:x"], ["random:x"]),
    "weights wrong shape": (["--weights", "{bad_shape}"], ["features.5.weight", "conv2_1", "shape"]),
    "weights missing key": (["--weights", "{missing_key}"], ["features.10.weight", "conv3_1", "missing"]),
    "weights not safetensors": (["--weights", "{garbage}"], ["garbage.safetensors"]),
    "output parent is a file": (["-o", "{tmp}/file.txt/out.png"], ["out.png", "cannot write"]),
    "output is a folder": (["-o", "{tmp}/outdir"], ["outdir"]),
    "output extension": (["-o", "{tmp}/out.xyz"], [".xyz", ".png"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_user_errors_are_one_line(case, images, tmp_path, capsys):
    content, style = images
    extra, fragments = ERROR_CASES[case]
    state = tiny_state_dict()
    state["features.5.weight"] = state["features.5.weight"][:, :3]  # conv2_1 sees 3 channels, not 4
    bad_shape = save_state(tmp_path / "bad_shape.safetensors", state)
    state = tiny_state_dict()
    del state["features.10.weight"], state["features.10.bias"]
    missing_key = save_state(tmp_path / "missing_key.safetensors", state)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    (tmp_path / "file.txt").write_text("a file, not a folder")
    (tmp_path / "outdir").mkdir()
    names = dict(tmp=tmp_path, bad_shape=bad_shape, missing_key=missing_key, garbage=garbage)
    extra = [e.format(**names) for e in extra]
    before = files_under(tmp_path)
    default_out = tmp_path / "result.png"
    # random:0 prints a note when loaded, so input mistakes must be caught before the
    # weights load; the weights cases give their own --weights after it (the last wins).
    argv = ["stylize", content, style, "--weights", "random:0", "--size", 32, *FAST]
    if "-o" not in extra:
        argv += ["-o", default_out]
    code, stdout, err = run_cli(capsys, *argv, *extra)
    assert_user_error(code, stdout, err, *fragments)
    assert files_under(tmp_path) == before  # no output, no temporary file left behind


def test_nan_loss_stops_without_output(images, tmp_path, capsys, tiny_weights):
    content, style = images
    out = tmp_path / "nan.png"
    code, stdout, err = run_cli(
        capsys, "stylize", content, style, "-o", out, "--weights", tiny_weights, "--size", 32,
        "-q", "--steps", 5, "--optimizer", "adam", "--lr", "1e30",
    )
    assert_user_error(code, stdout, err, "loss became", "--lr")
    assert not out.exists() and files_under(tmp_path) == ["content.png", "style.png"]


def test_ctrl_c_exits_130_without_output(images, tmp_path, capsys, monkeypatch, tiny_weights):
    import importlib

    api = importlib.import_module("jaxstyle.engine.loop")  # the engine's one chunk loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # a generator, like the real iterate

    monkeypatch.setattr(api, "iterate", interrupted)
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(capsys, "stylize", *images, "-o", out, "--weights", tiny_weights, "--size", 32, *FAST)
    assert code == 130 and len(err.splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
    assert not out.exists() and files_under(tmp_path) == ["content.png", "style.png"]


def test_checksum_mismatch_on_download(tmp_path, capsys, monkeypatch):
    body = b"not the real weights" * 100

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = tmp_path / "home"
    monkeypatch.setenv("JAXSTYLE_HOME", str(home))
    try:
        wrong = "00000000" if not hashlib.sha256(body).hexdigest().startswith("00000000") else "11111111"
        url = f"http://127.0.0.1:{server.server_address[1]}/vgg19-{wrong}.pth"
        code, stdout, err = run_cli(capsys, "weights", "download", "--url", url, "--quiet")
    finally:
        server.shutdown()
        server.server_close()
    assert_user_error(code, stdout, err, "sha256", wrong)
    assert not home.exists() or files_under(home) == []
