"""A bounded load test of `jaxstyle serve`: 16 concurrent clients against one real server.

Every client is a thread with its own connections (urllib), released together by a barrier;
each posts a small compatible job (same recipe and shape, its own images) and polls it to the
end. The server runs --max-batch 4 with tiny weights at 32 px, so the jobs must be batched.
Marked slow: a server start and one compile per batch size.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
from helpers import write_image, start_server
from PIL import Image

pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

CLIENTS = 16
MAX_BATCH = 4
FIELDS = {"size": "32", "steps": "12", "optimizer": "adam", "chunk": "4"}
TERMINAL = ("done", "failed", "cancelled")


def multipart(files: dict[str, bytes], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in files.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
              for k, v in fields.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def client(url: str, content: bytes, style: bytes, barrier: threading.Barrier, out: dict) -> None:
    try:
        body, ctype = multipart({"content": content, "style": style}, FIELDS)
        barrier.wait(60)
        req = urllib.request.Request(url + "/api/jobs", data=body, method="POST", headers={"Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 201
            job_id = json.loads(r.read())["id"]
        deadline = time.time() + 600
        while time.time() < deadline:
            with urllib.request.urlopen(f"{url}/api/jobs/{job_id}", timeout=60) as r:
                job = json.loads(r.read())
            if job["status"] in TERMINAL:
                break
            time.sleep(0.1)
        out["finished_at"] = time.perf_counter()
        out["job"] = job
        if job["status"] == "done":
            with urllib.request.urlopen(f"{url}/api/jobs/{job_id}/result", timeout=60) as r:
                out["result"] = r.read()
    except BaseException as e:  # noqa: BLE001 - reported by the test thread
        out["error"] = repr(e)


@pytest.mark.slow
def test_sixteen_concurrent_clients_all_finish_batched(tmp_path, tiny_weights):
    images = []
    for i in range(CLIENTS):
        c = write_image(tmp_path / f"c{i}.png", 48, 64, 100 + i)  # h × w: 24 × 32 at size 32
        s = write_image(tmp_path / f"s{i}.png", 40, 40, 200 + i)
        images.append((c.read_bytes(), s.read_bytes()))
    proc, url, server_log = start_server(tmp_path / "serve", tiny_weights, max_batch=MAX_BATCH)
    try:
        barrier = threading.Barrier(CLIENTS + 1)
        outs = [{} for _ in range(CLIENTS)]
        threads = [threading.Thread(target=client, args=(url, c, s, barrier, out), daemon=True)
                   for (c, s), out in zip(images, outs)]
        for t in threads:
            t.start()
        barrier.wait(60)
        start = time.perf_counter()
        for t in threads:
            t.join(660)
        assert not any(t.is_alive() for t in threads), "a client is stuck"
        assert not [o["error"] for o in outs if "error" in o], [o.get("error") for o in outs]
        jobs = [o["job"] for o in outs]
        assert [j["status"] for j in jobs] == ["done"] * CLIENTS, [(j["status"], j.get("error")) for j in jobs]
        assert len({j["id"] for j in jobs}) == CLIENTS
        assert all(j["step"] == j["steps"] == 12 for j in jobs)
        sizes = sorted(j["batch_size"] for j in jobs)
        assert max(sizes) >= 2 and max(sizes) <= MAX_BATCH, sizes
        for o in outs:
            with Image.open(io.BytesIO(o["result"])) as im:
                im.load()
                assert im.format == "PNG" and im.size == (32, 24)  # (width, height): long side 32
        wall = max(o["finished_at"] for o in outs) - start
        print(f"\n{CLIENTS} concurrent clients, --max-batch {MAX_BATCH}, 32 px, 12 Adam steps, tiny weights: "
              f"{wall:.1f} s wall (compiles included), {CLIENTS / wall:.2f} jobs/s; batch sizes {sizes}; "
              f"load average {os.getloadavg()[0]:.1f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), "".join(server_log)
