"""`jaxstyle serve` as a real process on 127.0.0.1: crash recovery (SIGKILL mid-job).

Tiny VGG19 weights from a file, 32 px. Marked slow: two server starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from jaxstyle.model.weights import WeightsInfo, save_weights  # noqa: E402
from helpers import png, tiny_arrays  # noqa: E402


def start_server(db, weights, env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxstyle", "serve", "--host", "127.0.0.1", "--port", "0", "--db", str(db),
         "--weights", str(weights), "--max-batch", "2"],
        stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 180
    for line in proc.stderr:
        m = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", line)
        if m:
            return proc, m.group(1)
        if time.time() > deadline:
            break
    proc.kill()
    raise AssertionError("server did not start")


def post_job(url, **fields):
    boundary = "jaxstyleboundary"
    parts = []
    for name, data in (("content", png(1, 32, 32)), ("style", png(2, 32, 32))):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/api/jobs", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201
        return json.loads(r.read())["id"]


def get(url, path):
    with urllib.request.urlopen(url + path, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_kill_9_while_running_then_restart_finishes_every_job(tmp_path):
    weights = tmp_path / "tiny.safetensors"
    save_weights(weights, tiny_arrays(), WeightsInfo("vgg19", "torchvision", "torchvision", False, "tiny-test", ""))
    env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": "off"}
    db = tmp_path / "serve"
    proc, url = start_server(db, weights, env)
    try:
        first = post_job(url, size=32, steps=2, optimizer="adam", chunk=2)
        for _ in range(600):
            if get(url, f"/api/jobs/{first}")["status"] == "done":
                break
            time.sleep(0.1)
        long = post_job(url, size=32, steps=3000, optimizer="adam", chunk=2)
        queued = [post_job(url, size=32, steps=4, optimizer="adam", chunk=2, seed=s) for s in (1, 2)]
        for _ in range(1200):
            if get(url, f"/api/jobs/{long}")["step"] > 0:
                break
            time.sleep(0.05)
        assert get(url, f"/api/jobs/{long}")["status"] == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc, url = start_server(db, weights, env)
    try:
        ids = [first, long] + queued
        for _ in range(3000):
            jobs = {i: get(url, f"/api/jobs/{i}") for i in ids}
            if all(j["status"] in ("done", "failed", "cancelled") for j in jobs.values()):
                break
            time.sleep(0.1)
        assert all(j["status"] == "done" for j in jobs.values()), jobs
        assert jobs[long]["restarts"] == 1 and jobs[first]["restarts"] == 0
        for i in ids:
            with urllib.request.urlopen(f"{url}/api/jobs/{i}/result", timeout=30) as r:
                assert r.headers["Content-Type"] == "image/png" and r.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
