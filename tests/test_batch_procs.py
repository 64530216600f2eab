"""`jaxstyle batch` across processes: 4 fake CPU devices, two jax.distributed processes,
SIGTERM and SIGKILL part-way then rerun. Each runs in subprocesses, so the XLA flags and
the distributed runtime never touch the rest of the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers import CLI_OPTS, OPTS, tiny_weights_file, write_image

from jaxstyle.api import batch
from jaxstyle.io import manifest
from jaxstyle.io.image import load_image
from jaxstyle.model.weights import load_vgg

# Each test starts fresh Python processes that import JAX and compile the step again.
pytestmark = pytest.mark.slow


@pytest.fixture
def job(tmp_path):
    """Three contents (two shapes) × two styles, and a tiny weights file."""
    c, s = tmp_path / "contents", tmp_path / "styles"
    c.mkdir()
    s.mkdir()
    write_image(c / "a.png", 48, 64, 1)
    write_image(c / "b.png", 64, 48, 2)
    write_image(c / "c.png", 48, 64, 3)
    write_image(s / "x.png", 40, 40, 4)
    write_image(s / "y.png", 30, 50, 5)
    return c, s, tiny_weights_file(tmp_path / "tiny.safetensors")


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "jaxstyle", "batch", *map(str, args)]


def _ok_records(out) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in manifest.read_records(out):
        if r["status"] == "ok":
            counts[r["pair"]] = counts.get(r["pair"], 0) + 1
    return counts


def _all_lines_valid(out) -> bool:
    return all(json.loads(line) for p in out.glob("results*.jsonl") for line in p.read_text().splitlines())


FOUR_DEVICES = textwrap.dedent("""
    import json, sys
    import numpy as np
    import jax
    from jaxstyle.api import batch
    from jaxstyle.engine import loop as S
    from jaxstyle.model.weights import load_vgg

    weights, contents, styles, out, opts = sys.argv[1:]
    seen = set()
    real = S.iterate
    def spy(problem, **kw):  # record how many devices the batch really spans
        for p in real(problem, **kw):
            seen.add(len(p.state.image.sharding.device_set))
            yield p
    S.iterate = spy
    net, _ = load_vgg(weights)
    results = list(batch.run_batch(contents, styles, network=net, batch_size=2, **json.loads(opts)))
    spans = sorted(seen)
    # The same job on one of this process's four devices.
    single = S.batch_mesh(jax.local_devices()[:1])
    alone = list(batch.run_batch(contents, styles, network=net, batch_size=2, mesh=single, **json.loads(opts)))
    np.savez(out, **{r.pair: r.image for r in results}, **{"alone/" + r.pair: r.image for r in alone})
    print(json.dumps({"devices": jax.local_device_count(), "spans": spans}))
""")


def test_four_fake_cpu_devices_equal_one_device(job, tmp_path):
    c, s, weights = job
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = tmp_path / "four.npz"
    proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(weights), str(c), str(s), str(out), json.dumps(OPTS)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == {"devices": 4, "spans": [4]}  # both buckets sharded over all four
    four = np.load(out)
    net, _ = load_vgg(weights)
    # 2 pairs per device: here the 4-pair bucket runs as two batches of 2 and the 2-pair
    # bucket as one; there each bucket is one step of 8 (padded with copies) over 4 devices.
    one = {r.pair: r.image for r in batch.run_batch(str(c), str(s), network=net, batch_size=2, **OPTS)}
    assert sorted(f for f in four.files if "/" not in f) == sorted(one) and len(one) == 6
    for pair, image in one.items():
        assert np.abs(four[pair] - image).max() <= 1e-5, pair
        # Within one runtime, sharding changes no number: each device runs the program one
        # device runs for its 2 pairs. (Across processes XLA:CPU's own threading follows
        # the device count, so only float rounding is promised there.)
        assert np.array_equal(four[pair], four["alone/" + pair]), pair


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_distributed_processes_make_every_pair_once(job, tmp_path):
    c, s, weights = job
    out, sheet = tmp_path / "out", tmp_path / "sheet.png"
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            _cli("--content", c, "--style", s, "-o", out, "--weights", weights, *CLI_OPTS, "-q", "--json",
                 "--contact-sheet", sheet, "--distributed", "--coordinator", f"127.0.0.1:{port}",
                 "--num-processes", 2, "--process-id", i),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-2000:]
    summaries = [json.loads(o.strip().splitlines()[-1]) for o, _ in outputs]
    assert [x["process"] for x in summaries] == [0, 1] and [x["made"] for x in summaries] == [3, 3]
    shares = [{json.loads(line)["pair"] for line in (out / f"results.p{i}.jsonl").read_text().splitlines()}
              for i in range(2)]
    assert not shares[0] & shares[1]
    assert _ok_records(out) == {f"{a}__{b}.png": 1 for a in "abc" for b in "xy"}
    assert all(load_image(out / pair).shape[2] == 3 for pair in _ok_records(out))
    assert load_image(sheet).shape[0] > 192 * 4  # written by process 0 after both finished


def _wait_for_records(out, proc, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(_ok_records(out).values()) >= at_least:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be stopped: {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no record appeared in time")


def test_sigterm_then_sigkill_then_rerun_makes_every_pair_exactly_once(job, tmp_path):
    c, s, weights = job
    write_image(c / "d.png", 64, 48, 6)  # 8 pairs: 4 batches of 2
    out = tmp_path / "out"
    steps = ["--steps", "200"]  # about a second per batch, so a signal lands mid-run
    argv = _cli("--content", c, "--style", s, "-o", out, "--weights", weights, *CLI_OPTS, *steps,
                "--batch-size", 2, "-q")
    pairs = {f"{a}__{b}.png" for a in "abcd" for b in "xy"}

    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_records(out, run, 1)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err
    after_term = _ok_records(out)
    assert 0 < len(after_term) < len(pairs) and set(after_term.values()) == {1}
    assert all(load_image(out / p).shape[2] == 3 for p in after_term)

    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_records(out, run, len(after_term) + 1)
    run.kill()  # SIGKILL: no handler runs
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL
    assert len(_ok_records(out)) < len(pairs)

    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _ok_records(out) == {p: 1 for p in pairs}  # every pair, each exactly once
    assert _all_lines_valid(out)  # a torn last line was cut off before appending
    assert all(load_image(out / p).shape[2] == 3 for p in pairs)
    assert not list(out.glob(".*.tmp"))  # temporaries of the killed run are gone
