"""Hostile weights files: crafted regressions and property-based fuzzing of every reader.

Every file goes through ``jaxstyle.model.weights.convert`` in a long-lived child process (one
with torch importable, one with ``sys.modules["torch"] = None``), so that a crash (the old
``as_strided`` read outside its buffer: exit 139) or a runaway allocation cannot take pytest
down. The child reports the outcome and its peak RSS (``VmHWM``); it runs under an
``RLIMIT_AS`` of its post-import size + 3 GiB (address space: thread arenas count too) so that
a regression fails instead of eating the shared machine (a MemoryError would surface as "MemoryError" in the message and fail the test).

The property for every input: ``UserError`` with one line (or success), no other exception, no
crash, peak RSS under 800 MB and within 100 MB of the child's idle size, no output file and no
temp file left, and the ``touch MARKER`` payloads some inputs carry never run. The pickles and
zip/legacy containers are written by the small assembler below; ``test_assembler_is_torch_format``
checks it against torch itself, so the crafted files are the real formats.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PEAK_RSS_MB = 800  # the bar for any hostile file
GROWTH_MB = 100  # tiny files: the child may grow this much over its idle size, no more
FUZZ = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ----------------------------------------------------------------------------- the child

_WORKER = textwrap.dedent("""
    import json, os, resource, sys, traceback
    if sys.argv[1] == "notorch":
        sys.modules["torch"] = None  # as on a machine without torch
    from jaxstyle.errors import UserError
    from jaxstyle.model import pth, weights
    assert pth._torch_available() == (sys.argv[1] == "torch")
    vm = int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize")][0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.RLIM_INFINITY))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            weights.convert(req["src"], req["dst"])
            out = {"kind": "ok", "msg": ""}
        except UserError as e:
            out = {"kind": "user", "msg": str(e)}
        except BaseException as e:
            out = {"kind": "other", "msg": "".join(traceback.format_exception(e))[-2000:]}
        # VmHWM, the peak of this process's own memory: ru_maxrss would also count the parent's
        # peak, which Linux carries over the fork and exec that started this child.
        hwm = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        out["rss_mb"] = int(hwm) / 1024
        print(json.dumps(out), flush=True)
""")


class Worker:
    def __init__(self, mode: str):
        self.mode = mode
        self.proc = None
        self.idle_mb = None

    def start(self):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}
        self.log = tempfile.TemporaryFile()  # the child's stderr, shown if it dies
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER, self.mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
                                     cwd=Path(__file__).resolve().parents[1])
        assert self._reply(300) == {"ready": True}, f"{self.mode} worker did not start"

    def _reply(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            if self.proc.poll() is None:
                self.proc.kill()
            rc = self.proc.wait()
            self.proc = None
            self.log.seek(0)
            tail = self.log.read()[-1500:].decode(errors="replace")
            return {"kind": "crash", "msg": f"worker died with exit code {rc} (timeout {timeout}s): {tail}", "rss_mb": 0}
        return json.loads(line)

    def convert(self, src: Path, dst: Path) -> dict:
        if self.proc is None:
            self.start()
        self.proc.stdin.write(json.dumps({"src": str(src), "dst": str(dst)}) + "\n")
        self.proc.stdin.flush()
        return self._reply(120)

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    pytest.importorskip("torch")
    made = [Worker("torch"), Worker("notorch")]
    benign = tmp_path_factory.mktemp("benign") / "tiny.pth"
    write_zip(benign, state_pickle({"features.0.weight": tensor(zip_pid("0", 4), 0, (2, 2), (2, 1))}), {"0": bytes(16)})
    for w in made:
        w.start()
        w.convert(benign, benign.with_suffix(".safetensors"))  # warms torch.load & co.
        w.idle_mb = w.convert(benign, benign.with_suffix(".safetensors"))["rss_mb"]
    yield made
    for w in made:
        w.close()


def assert_refused(workers, path: Path, match: str | None = None, *, marker: Path | None = None, allow_ok=False):
    """``path`` is refused by both children with one line (matching ``match``), within the memory bar.

    ``allow_ok``: a fuzzed input may also happen to be a valid file; then the output must exist.
    """
    messages = []
    for w in workers:
        out_dir = path.parent / f"out-{w.mode}"
        out_dir.mkdir(exist_ok=True)
        r = w.convert(path, out_dir / "out.safetensors")
        where = f"[{w.mode}] {path.name}"
        if allow_ok and r["kind"] == "ok":
            assert [p.name for p in out_dir.iterdir()] == ["out.safetensors"], where
            (out_dir / "out.safetensors").unlink()
            continue
        assert r["kind"] == "user", f"{where}: {r['kind']}: {r['msg']}"
        msg = r["msg"]
        assert "\n" not in msg and "\r" not in msg and len(msg) < 1200, f"{where}: not one line: {msg!r}"
        assert "MemoryError" not in msg and "RecursionError" not in msg, f"{where}: {msg}"
        if match is not None:
            assert match in msg, f"{where}: {msg}"
        assert r["rss_mb"] <= PEAK_RSS_MB, f"{where}: peak RSS {r['rss_mb']:.0f} MB"
        assert r["rss_mb"] - w.idle_mb <= GROWTH_MB, f"{where}: grew {r['rss_mb'] - w.idle_mb:.0f} MB"
        assert list(out_dir.iterdir()) == [], f"{where}: left {list(out_dir.iterdir())}"
        if marker is not None:
            assert not marker.exists(), f"{where}: the file ran code"
        messages.append(msg)
    return messages


# ----------------------------------------------------------------------------- pickle assembler


def I(n: int) -> bytes:  # noqa: E743 - an int opcode
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def U(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def G(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def T(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + T(*args) + b"R"


def zip_pid(key: str, numel: int, kind: str = "FloatStorage") -> bytes:
    return T(U("storage"), G("torch", kind), U(key), U("cpu"), I(numel)) + b"Q"


def legacy_pid(key: str, numel: int, kind: str = "FloatStorage") -> bytes:
    return T(U("storage"), G("torch", kind), U(key), U("cpu"), I(numel), b"N") + b"Q"


def tensor(pid: bytes, offset: int, size, stride) -> bytes:
    return call(G("torch._utils", "_rebuild_tensor_v2"), pid, I(offset), T(*map(I, size)), T(*map(I, stride)),
                b"\x89", call(G("collections", "OrderedDict")))


def state_pickle(entries: dict[str, bytes], proto: bytes = b"\x80\x02") -> bytes:
    body = b"".join(U(k) + v for k, v in entries.items())
    return proto + call(G("collections", "OrderedDict")) + b"(" + body + b"u."


def write_zip(path: Path, pkl: bytes, records: dict[str, bytes], *, deflate=False) -> Path:
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", b"little")
        zf.writestr("archive/version", b"3\n")
        for key, data in records.items():
            zf.writestr(f"archive/data/{key}", data)
    return path


def write_legacy(path: Path, pkl: bytes, storages: list[tuple[str, int, bytes]]) -> Path:
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, 2), pickle.dumps(1001, 2), pickle.dumps(info, 2), pkl,
             pickle.dumps([k for k, _, _ in storages], 2)]
    for _, numel, data in storages:
        parts.append(struct.pack("<q", max(min(numel, 2**63 - 1), -(2**63))) + data)
    path.write_bytes(b"".join(parts))
    return path


def make(tmp_path: Path, name: str, fmt: str, entries: dict[str, bytes], storages: dict[str, tuple[int, bytes]],
         *, tail: bytes = b"") -> Path:
    """A ``.pth`` in ``fmt`` (zip|legacy) whose ``entries`` are written with that format's persistent ids."""
    if fmt == "zip":
        return write_zip(tmp_path / f"{name}.pth", state_pickle(entries) + tail, {k: d for k, (_, d) in storages.items()})
    return write_legacy(tmp_path / f"{name}.pth", state_pickle(entries) + tail, [(k, n, d) for k, (n, d) in storages.items()])


def pid_for(fmt: str):
    return zip_pid if fmt == "zip" else legacy_pid


FORMATS = ["zip", "legacy"]


def test_assembler_is_torch_format(tmp_path):
    """The assembler's files are what torch itself reads (else the crafted cases would prove nothing)."""
    torch = pytest.importorskip("torch")
    from jaxstyle.model import pth

    data = np.arange(6, dtype=np.float32)
    for fmt in FORMATS:
        entries = {"a": tensor(pid_for(fmt)("0", 6), 0, (2, 3), (3, 1)), "b": tensor(pid_for(fmt)("0", 6), 1, (2, 2), (1, 3))}
        path = make(tmp_path, f"ok-{fmt}", fmt, entries, {"0": (6, data.tobytes())})
        ref = torch.load(path, weights_only=True)
        np.testing.assert_array_equal(ref["a"].numpy(), data.reshape(2, 3))
        np.testing.assert_array_equal(ref["b"].numpy(), [[1, 4], [2, 5]])
        for use_torch in (False, True):
            got = pth.read_state_dict(path, use_torch=use_torch)
            np.testing.assert_array_equal(got["a"], ref["a"].numpy())
            np.testing.assert_array_equal(got["b"], ref["b"].numpy())


# ----------------------------------------------------------------------------- regressions


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("state", ["slots", "dict"])
def test_build_cannot_rewrite_a_checked_tensor(tmp_path, workers, fmt, state):
    """The audit's 816-byte segfault: a valid tensor whose offset/stride a later BUILD rewrites."""
    evil = {"offset": 1 << 40, "size": (1 << 20,), "stride": (1 << 20,)}
    body = b"}(" + b"".join(U(k) + (I(v) if isinstance(v, int) else T(*map(I, v))) for k, v in evil.items()) + b"u"
    build = (b"N" + body + b"\x86" if state == "slots" else body) + b"b"
    entries = {"features.0.weight": tensor(pid_for(fmt)("0", 4), 0, (2, 2), (2, 1)) + build}
    path = make(tmp_path, "build", fmt, entries, {"0": (4, bytes(16))})
    assert path.stat().st_size < 1200
    assert_refused(workers, path, "BUILD" if state == "slots" else None)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stride0_view_is_not_amplified(tmp_path, workers, fmt):
    """1 float stored, (30000, 10000) of it claimed through stride 0: 1.2 GB from ~800 bytes."""
    path = make(tmp_path, "stride0", fmt, {"features.0.weight": tensor(pid_for(fmt)("0", 1), 0, (30000, 10000), (0, 0))},
                {"0": (1, bytes(4))})
    assert path.stat().st_size < 1000
    assert_refused(workers, path, "stride-0 or overlapping")


@pytest.mark.parametrize("fmt", FORMATS)
def test_overlapping_views_are_not_amplified(tmp_path, workers, fmt):
    """Each of 400 keys views a 2000-float storage as (1000, 1000) with strides (1, 1): 1.6 GB claimed."""
    pid = pid_for(fmt)
    entries = {f"k{i}": tensor(pid("0", 2000), 0, (1000, 1000), (1, 1)) for i in range(400)}
    path = make(tmp_path, "overlap", fmt, entries, {"0": (2000, bytes(8000))})
    assert_refused(workers, path, "overlapping")
    # Views that do not overlap but all reuse the same storage are charged per copy too.
    entries = {f"k{i}": tensor(pid("0", 2000), 0, (1000, 2), (1, 1000)) for i in range(400)}
    assert_refused(workers, make(tmp_path, "shared", fmt, entries, {"0": (2000, bytes(8000))}))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 1.2 GB record of zeros, deflated to ~1.2 MB, that a tensor claims in full."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.pth"
    numel = 300_000_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", state_pickle({"features.0.weight": tensor(zip_pid("0", numel), 0, (numel,), (1,))}))
        with zf.open("archive/data/0", "w", force_zip64=True) as f:
            block = bytes(4_000_000)
            for _ in range(numel * 4 // len(block)):
                f.write(block)
    return path


def test_zip_bomb_is_refused_before_decompression(workers, bomb):
    assert bomb.stat().st_size < 2_000_000
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("archive/data/0").file_size == 1_200_000_000
    assert_refused(workers, bomb, "MB")


def test_zip_bomb_pickle_is_refused(tmp_path, workers):
    path = tmp_path / "pklbomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}" + b"N0" * 20_000_000 + b".")
    assert_refused(workers, path, "data.pkl declares")


@pytest.mark.parametrize("fmt", FORMATS)
def test_deep_nesting_is_one_line(tmp_path, workers, fmt):
    depth = 100_000
    nested = b"]" * depth + b"a" * (depth - 1)  # a list in a list in ... (no recursion while unpickling)
    path = make(tmp_path, "deep", fmt, {"features.0.weight": nested}, {})
    assert_refused(workers, path, "nested more than")


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_sublists_are_converted_once(tmp_path, workers, fmt):
    """L0 = [t]; L(i) = [L(i-1)] * 4: 4**14 = 268M paths to one tensor in a ~300-byte file.

    Walked once per object it is instant; the old per-path copy took 9.5 s at a quarter of this.
    """
    t = tensor(pid_for(fmt)("0", 4), 0, (4,), (1,))
    nested = b"(]" + t + b"aq\x00"  # a tuple of L0 .. L14, each memoised as it is built
    for i in range(1, 15):
        nested += b"](" + (b"h" + bytes([i - 1])) * 4 + b"eq" + bytes([i])
    nested += b"t"
    path = make(tmp_path, "shared", fmt, {"x": nested}, {"0": (4, bytes(16))})
    import time

    t0 = time.perf_counter()
    assert_refused(workers, path, "holds no tensors")
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_declared_storage(tmp_path, workers, fmt):
    # a storage of 2**40 floats backed by 16 bytes (the legacy reader used to allocate it first)
    entries = {"features.0.weight": tensor(pid_for(fmt)("0", 1 << 40), 0, (1 << 20, 1 << 20), (1 << 20, 1))}
    storages = {"0": (1 << 40, bytes(16))}
    assert_refused(workers, make(tmp_path, "huge", fmt, entries, storages))
    # a size product past 2**64 and a negative offset
    entries = {"a": tensor(pid_for(fmt)("0", 4), 0, (1 << 47, 1 << 47, 1 << 47), (0, 0, 0))}
    assert_refused(workers, make(tmp_path, "over", fmt, entries, {"0": (4, bytes(16))}))
    entries = {"a": tensor(pid_for(fmt)("0", 4), -4, (2,), (1,))}
    assert_refused(workers, make(tmp_path, "neg", fmt, entries, {"0": (4, bytes(16))}))


_PAYLOADS = {
    "os.system": lambda m: call(G("os", "system"), U(f"touch {m}")),
    "posix.system": lambda m: call(G("posix", "system"), U(f"touch {m}")),
    "builtins.exec": lambda m: call(G("builtins", "exec"), U(f"open({str(m)!r}, 'w')")),
    "stack_global": lambda m: U("os") + U("system") + b"\x93" + T(U(f"touch {m}")) + b"R",
    "memo_trick": lambda m: G("collections", "OrderedDict") + b"q\x00" + G("os", "system") + b"h\x00" + b")R",
    "inst": lambda m: b"(" + U(f"touch {m}") + b"ios\nsystem\n",
    "obj": lambda m: b"(" + G("subprocess", "Popen") + T(U("touch"), U(str(m))) + b"o",
    "newobj": lambda m: G("subprocess", "Popen") + T(T(U("touch"), U(str(m)))) + b"\x81",
    "torch_global": lambda m: call(G("torch", "load"), U(str(m))),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", sorted(_PAYLOADS))
def test_code_execution_is_refused(tmp_path, workers, fmt, payload):
    marker = tmp_path / "pwned"
    path = make(tmp_path, "evil", fmt, {"features.0.weight": _PAYLOADS[payload](marker)}, {})
    msgs = assert_refused(workers, path, "refusing", marker=marker)
    assert msgs[0] == msgs[1]  # torch and torch-free give the same refusal


def test_cli_exit_code_and_one_line(tmp_path):
    """The real command line: exit 2, one line on stderr, no traceback, no output, no code run."""
    marker = tmp_path / "pwned"
    path = make(tmp_path, "evil", "zip", {"features.0.weight": _PAYLOADS["os.system"](marker)}, {})
    for hide_torch in (False, True):
        code = ("import sys; sys.modules['torch'] = None; " if hide_torch else "") + \
            "from jaxstyle.cli.main import main; sys.exit(main())"
        r = subprocess.run([sys.executable, "-c", "import sys; " + code, "weights", "convert", str(path),
                            str(tmp_path / "out.safetensors")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "out.safetensors").exists() and not marker.exists()


# ----------------------------------------------------------------------------- safetensors


def write_safetensors(path: Path, header: dict, data: bytes, *, declared: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + data)
    return path


_F32 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


@pytest.mark.parametrize("case,header,data,match", [
    ("huge-shape", {"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 16]}}, bytes(16), "shape"),
    ("huge-offset", {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [1 << 40, (1 << 40) + 16]}}, bytes(16), "lies at"),
    ("wrong-dtype", {"a": {**_F32, "dtype": "I64", "shape": [2]}}, bytes(16), "dtype"),
    ("unknown-dtype", {"a": {**_F32, "dtype": "X9"}}, bytes(16), "dtype"),
    ("overlap", {"a": _F32, "b": {**_F32, "data_offsets": [8, 24]}}, bytes(24), "share bytes"),
    ("negative", {"a": {**_F32, "shape": [-2, -2]}}, bytes(16), "dimension"),
    ("float-shape", {"a": {**_F32, "shape": [2.0, 2]}}, bytes(16), "dimension"),
    ("many", {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(5000)}, b"", "tensors"),
    ("metadata", {"__metadata__": {"format": ["x"]}, "a": _F32}, bytes(16), "metadata"),
])
def test_hostile_safetensors_headers(tmp_path, workers, case, header, data, match):
    assert_refused(workers, write_safetensors(tmp_path / f"{case}.safetensors", header, data), match)


def test_hostile_safetensors_framing(tmp_path, workers):
    assert_refused(workers, write_safetensors(tmp_path / "len.safetensors", {"a": _F32}, bytes(16), declared=1 << 62),
                   "header declares")
    deep = tmp_path / "deep.safetensors"
    text = b"[" * 200_000 + b"]" * 200_000
    deep.write_bytes(struct.pack("<Q", len(text)) + text)
    assert_refused(workers, deep)


# ----------------------------------------------------------------------------- fuzzing

_INTS = st.one_of(st.integers(0, 64), st.sampled_from([0, 1, 2, 2**31 - 1, 2**31, 2**32, 2**40, 2**47, 2**48 + 1,
                                                         2**62, 2**64, -1, -(2**31)]))
_KINDS = st.sampled_from(["FloatStorage", "HalfStorage", "BFloat16Storage", "ByteStorage", "LongStorage",
                          "BoolStorage", "DoubleStorage", "ComplexFloatStorage", "UntypedStorage"])
_KEYS = st.sampled_from(["features.0.weight", "features.0.bias", "conv1_1.weight", "state_dict", "x"])


@st.composite
def _value(draw, fmt: str, marker: Path):
    kind = draw(st.sampled_from(["tensor", "tensor", "tensor", "list", "payload", "build", "nested"]))
    pid = pid_for(fmt)
    if kind == "payload":
        return _PAYLOADS[draw(st.sampled_from(sorted(_PAYLOADS)))](marker)
    if kind == "list":
        return b"](" + b"".join(draw(st.lists(st.sampled_from([I(1), U("a"), b"N"]), max_size=4))) + b"e"
    if kind == "nested":
        n = draw(st.integers(1, 80))
        return b"]" * n + b"a" * (n - 1)
    ndim = draw(st.integers(0, 4))
    size = draw(st.lists(_INTS, min_size=ndim, max_size=ndim))
    stride = draw(st.lists(_INTS, min_size=ndim, max_size=draw(st.sampled_from([ndim, ndim, ndim + 1]))))
    t = tensor(pid(draw(st.sampled_from(["0", "1"])), draw(_INTS), draw(_KINDS)), draw(_INTS), size, stride)
    if kind == "build":
        t += b"N}" + U(draw(st.sampled_from(["offset", "stride", "size", "storage", "data"]))) + I(draw(_INTS)) + b"s\x86b"
    return t


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(FORMATS))
def test_fuzz_generated_pickles(tmp_path_factory, workers, data, fmt):
    tmp = tmp_path_factory.mktemp("gen")
    marker = tmp / "pwned"
    entries = data.draw(st.dictionaries(_KEYS, _value(fmt, marker), min_size=1, max_size=4))
    storages = {k: (data.draw(_INTS), bytes(data.draw(st.integers(0, 4096)))) for k in ("0", "1")
                if data.draw(st.booleans())}
    path = make(tmp, "gen", fmt, entries, {k: (n if fmt == "legacy" else len(b), b) for k, (n, b) in storages.items()})
    assert_refused(workers, path, marker=marker)


def _valid_file(tmp: Path, fmt: str) -> Path:
    pid = pid_for(fmt)
    entries = {"features.0.weight": tensor(pid("0", 108), 0, (4, 3, 3, 3), (27, 9, 3, 1)),
               "features.0.bias": tensor(pid("1", 4, "HalfStorage"), 0, (4,), (1,))}
    return make(tmp, "valid", fmt, entries, {"0": (108, np.ones(108, np.float32).tobytes()),
                                             "1": (4, np.ones(4, np.float16).tobytes())})


_MUTATION = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "int"]), st.floats(0, 1, exclude_max=True),
                      st.integers(0, 255), st.sampled_from([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"b", b"R", b"t",
                                                            b"\x8a\x08" + b"\xff" * 8, b"Q", b"]", b"h\x00"]))


def _mutate(raw: bytes, mutations) -> bytes:
    buf = bytearray(raw)
    for op, where, byte, chunk in mutations:
        i = int(where * len(buf)) if buf else 0
        if op == "flip" and buf:
            buf[i] ^= 1 << (byte % 8)
        elif op == "set" and buf:
            buf[i] = byte
        elif op == "insert":
            buf[i:i] = chunk
        elif op == "delete":
            del buf[i : i + 1 + byte % 8]
        elif op == "int":
            buf[i : i + len(chunk)] = chunk
    return bytes(buf)


@FUZZ
@given(fmt=st.sampled_from(FORMATS), mutations=st.lists(_MUTATION, min_size=1, max_size=6),
       inside=st.booleans())
def test_fuzz_mutated_torch_files(tmp_path_factory, workers, fmt, mutations, inside):
    """A valid (but not VGG) file, mutated: in its raw bytes, or (zip) inside data.pkl and re-zipped."""
    tmp = tmp_path_factory.mktemp("mut")
    path = _valid_file(tmp, fmt)
    if fmt == "zip" and inside:
        with zipfile.ZipFile(path) as zf:
            records = {n: zf.read(n) for n in zf.namelist()}
        with zipfile.ZipFile(path, "w") as zf:
            for n, d in records.items():
                zf.writestr(n, _mutate(d, mutations) if n.endswith("data.pkl") else d)
    else:
        path.write_bytes(_mutate(path.read_bytes(), mutations))
    assert_refused(workers, path)


@FUZZ
@given(entries=st.dictionaries(st.text(max_size=8), st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "F64", "BF16", "I64", "U8", "BOOL", "F8_E4M3", ""]),
    "shape": st.lists(_INTS, max_size=4),
    "data_offsets": st.lists(_INTS, min_size=1, max_size=3),
}), max_size=4), data_len=st.integers(0, 512), declared=st.one_of(st.none(), _INTS.filter(lambda n: n >= 0)),
    meta=st.one_of(st.none(), st.dictionaries(st.sampled_from(["format", "model", "convention"]),
                                              st.sampled_from(["jaxstyle-vgg", "vgg19", "caffe", "x"]))))
def test_fuzz_safetensors_headers(tmp_path_factory, workers, entries, data_len, declared, meta):
    tmp = tmp_path_factory.mktemp("st")
    header = {**({"__metadata__": meta} if meta is not None else {}), **entries}
    declared = None if declared is None or declared >= 2**64 else declared
    assert_refused(workers, write_safetensors(tmp / "f.safetensors", header, bytes(data_len), declared=declared),
                   allow_ok=True)
