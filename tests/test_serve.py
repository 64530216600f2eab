"""`jaxstyle serve` in process: the JSON API (starlette.testclient) and the scheduler.

The API tests run with the scheduler stopped (jobs stay queued) unless they need results;
the scheduler tests drive its worker steps from the test thread, so jobs join and leave a
running batch at exactly chosen chunk boundaries. Tiny VGG19 widths, 32 px, a few steps.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from helpers import png, tiny_arrays
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("multipart")
from starlette.testclient import TestClient  # noqa: E402

from jaxstyle.model.vgg import build_vgg  # noqa: E402
from jaxstyle.serve import options as serve_options  # noqa: E402
from jaxstyle.serve.app import create_app  # noqa: E402
from jaxstyle.serve.scheduler import Scheduler  # noqa: E402
from jaxstyle.serve.store import Store  # noqa: E402

BASE = "http://127.0.0.1"


def upload(content=None, styles=None, **fields):
    files = [("content", ("c.png", content if content is not None else png(1), "image/png"))]
    for s in styles if styles is not None else [png(2)]:
        files.append(("style", ("s.png", s, "image/png")))
    fields = {"size": 32, "steps": 4, **fields}
    return {"files": files, "data": {k: str(v) for k, v in fields.items()}}


@pytest.fixture(scope="module")
def network():
    return build_vgg("vgg19", tiny_arrays())


@pytest.fixture
def server(tmp_path):
    """(client, store, scheduler) with the scheduler NOT running (jobs stay queued)."""
    store = Store(tmp_path / "serve")
    scheduler = Scheduler(store, weights="random:0", max_batch=4, chunk=2)
    limits = serve_options.Limits(max_bytes=200_000, max_pixels=300 * 300, max_size=256, max_steps=100)
    client = TestClient(create_app(store, scheduler, limits=limits, max_queue=3), base_url=BASE)
    yield client, store, scheduler
    store.close()


def one_line_error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"] and "\n" not in body["error"]
    return body["error"]


# ---------------------------------------------------------------- API without the device


def test_submit_status_list_and_cancel(server):
    client, store, _ = server
    r = client.post("/api/jobs", **upload(size=32, steps=4, optimizer="adam", style_weight=10, seed=3))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and re.fullmatch(r"[A-Za-z0-9_-]{24}", job["id"])
    got = client.get(f"/api/jobs/{job['id']}").json()
    assert got["status"] == "queued" and got["steps"] == 4 and got["step"] == 0
    assert got["options"] == {"preset": "gatys", "size": 32, "steps": 4, "optimizer": "adam",
                              "style_weight": 10.0, "seed": 3}
    assert [j["id"] for j in client.get("/api/jobs").json()["jobs"]] == [job["id"]]
    one_line_error(client.get(f"/api/jobs/{job['id']}/result"), 409)
    one_line_error(client.get(f"/api/jobs/{job['id']}/preview"), 409)
    assert client.delete(f"/api/jobs/{job['id']}").json() == {"id": job["id"], "status": "cancelled"}
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"
    # The same bytes are stored once, named by their SHA-256.
    assert client.post("/api/jobs", **upload(size=32, steps=4)).status_code == 201
    assert len(list(store.blobs.iterdir())) == 2


def test_health(server):
    client, _, _ = server
    body = client.get("/api/health").json()
    assert body["ok"] is True and body["devices"] and body["weights"]


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(content=b"GIF89a not really", size=32), "content upload"),
    (dict(content=b"", size=32), "empty"),
    (dict(styles=[], size=32), "style"),
    (dict(size=32, steps="many"), "steps"),
    (dict(size=32, colour="red"), "unknown option"),
    (dict(size=32, init="/etc/passwd"), "init"),
    (dict(size=32, preset="picasso"), "preset"),
    (dict(size=32, optimizer="sgd"), "optimizer"),
    (dict(size=9999), "limit"),
    (dict(size=32, min_scale=16), "min_scale"),
])
def test_bad_input_is_400_one_line(server, kwargs, fragment):
    client, store, _ = server
    error = one_line_error(client.post("/api/jobs", **upload(**kwargs)), 400)
    assert fragment in error
    assert store.list() == []


def test_content_type_is_checked_by_content_not_name(server):
    client, _, _ = server
    files = [("content", ("photo.png", b"#!/bin/sh\necho hi\n", "image/png")), ("style", ("s.png", png(2), "image/png"))]
    assert "not an image format" in one_line_error(client.post("/api/jobs", files=files, data={"size": "32", "steps": "4"}), 400)
    # A JPEG named .txt is fine: the name is never used.
    buf = io.BytesIO()
    Image.open(io.BytesIO(png(1))).save(buf, format="JPEG")
    files = [("content", ("notes.txt", buf.getvalue(), "text/plain")), ("style", ("s.png", png(2), "image/png"))]
    assert client.post("/api/jobs", files=files, data={"size": "32", "steps": "4"}).status_code == 201


def test_too_large_is_413(server):
    client, _, _ = server
    rng = np.random.default_rng(0)
    noise = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(noise, format="PNG")
    assert len(noise.getvalue()) > 200_000
    assert "bytes" in one_line_error(client.post("/api/jobs", **upload(content=noise.getvalue(), size=32)), 413)
    # Small in bytes, large in pixels (a flat 400×400 PNG compresses to almost nothing).
    flat = io.BytesIO()
    Image.new("RGB", (400, 400), (9, 9, 9)).save(flat, format="PNG")
    assert len(flat.getvalue()) < 10_000
    assert "pixels" in one_line_error(client.post("/api/jobs", **upload(styles=[flat.getvalue()], size=32)), 413)


def test_queue_full_is_429(server):
    client, _, _ = server
    for _ in range(3):
        assert client.post("/api/jobs", **upload(size=32, steps=2)).status_code == 201
    one_line_error(client.post("/api/jobs", **upload(size=32, steps=2)), 429)


def test_unknown_job_is_404_and_ids_never_reach_paths(server):
    client, _, _ = server
    for path in ("/api/jobs/AAAAAAAAAAAAAAAAAAAAAAAA", "/api/jobs/AAAAAAAAAAAAAAAAAAAAAAAA/result",
                 "/api/jobs/..%2F..%2Fetc%2Fpasswd/result", "/api/jobs/x/preview", "/no/such/page"):
        one_line_error(client.get(path), 404)
    one_line_error(client.delete("/api/jobs/AAAAAAAAAAAAAAAAAAAAAAAA"), 404)
    assert client.get("/static/../store.py").status_code == 404


def test_cross_site_writes_and_foreign_hosts_are_refused(server):
    client, store, _ = server
    form = upload(size=32)
    assert "cross-origin" in one_line_error(
        client.post("/api/jobs", headers={"Origin": "http://evil.example"}, **form), 403)
    assert "cross-site" in one_line_error(
        client.post("/api/jobs", headers={"Sec-Fetch-Site": "cross-site"}, **form), 403)
    one_line_error(client.post("/api/jobs", headers={"Origin": "null"}, **form), 403)
    assert store.list() == []
    # DNS rebinding: a foreign name resolving to 127.0.0.1 is not this server.
    one_line_error(client.get("/api/jobs", headers={"Host": "evil.example:8765"}), 421)
    # The same origin, as the page sends it, is fine.
    r = client.post("/api/jobs", headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin"}, **form)
    assert r.status_code == 201
    assert r.headers["x-frame-options"] == "DENY" and "default-src 'self'" in r.headers["content-security-policy"]


def test_page_and_static_files(server):
    client, _, _ = server
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(ref).status_code == 200, ref
    assert "http" not in re.sub(r"http-equiv", "", page.text.lower().split("<body>")[0])  # no CDN assets
    assert client.get("/static/samples/chelsea.jpg").headers["content-type"] == "image/jpeg"


# ---------------------------------------------------------------- scheduler


def run_until_idle(scheduler, limit=200):
    for _ in range(limit):
        scheduler._admit()
        if not scheduler.groups:
            return
        scheduler._run_next()
    raise AssertionError("scheduler did not finish")


def submit(store, seed, steps, **options):
    from jaxstyle.serve.options import parse

    fields = {"size": "32", "steps": str(steps), "optimizer": "adam", "lr": "0.05", "seed": str(seed),
              "init": "random", **{k: str(v) for k, v in options.items()}}
    cfg, stored = parse(fields, serve_options.Limits())
    content, style = store.put_blob(png(10 + seed, 32, 40)), store.put_blob(png(20 + seed % 2, 36, 36))
    return store.add(stored, content, [style], cfg.run.steps, max_queue=100), (content, style)


def result_u8(store, job_id):
    return np.asarray(Image.open(store.result_path(job_id)).convert("RGB"))


def test_jobs_joining_and_leaving_a_batch_match_single_runs(tmp_path, network):
    """A starts alone; B and C join at a chunk boundary; B leaves first (fewer steps), then C,
    then A finishes alone. Each result must equal ``jaxstyle.stylize`` of the same job
    alone (the library's single-image path, not the scheduler)."""
    import jaxstyle
    from jaxstyle.io.image import load_image

    store = Store(tmp_path / "serve")
    scheduler = Scheduler(store, network=network, max_batch=4, chunk=2)
    sizes = []
    a, inputs_a = submit(store, 0, 10)
    scheduler._admit()
    scheduler._run_next()
    scheduler._run_next()  # A alone, 4 steps
    assert [m.step for m in scheduler.groups[next(iter(scheduler.groups))].members] == [4]
    b, inputs_b = submit(store, 1, 4)
    c, inputs_c = submit(store, 2, 5)
    for _ in range(100):
        scheduler._admit()
        if not scheduler.groups:
            break
        group = next(iter(scheduler.groups.values()))
        sizes.append(len(group.members))
        scheduler._run_next()
    assert 3 in sizes and 1 in sizes[1:]  # they did share the step, and A ended alone
    for job_id, (content, style), seed, steps in ((a, inputs_a, 0, 10), (b, inputs_b, 1, 4), (c, inputs_c, 2, 5)):
        job = store.get(job_id)
        assert job["status"] == "done" and job["step"] == steps
        alone = jaxstyle.stylize(load_image(store.blob_path(content)), load_image(store.blob_path(style)),
                                 network=network, size=32, steps=steps, optimizer="adam", lr=0.05, seed=seed,
                                 init="random")
        expected = np.round(np.clip(alone, 0, 1) * 255)
        diff = np.abs(result_u8(store, job_id).astype(float) - expected)
        assert diff.max() <= 1 and diff.mean() < 0.02, (job_id, diff.max(), diff.mean())
    # The three jobs differ (different seeds and contents): equal images would hide a mix-up.
    assert np.abs(result_u8(store, a).astype(float) - result_u8(store, c)).mean() > 5


def test_cancel_while_running_and_non_finite_loss(tmp_path, network):
    store = Store(tmp_path / "serve")
    scheduler = Scheduler(store, network=network, max_batch=4, chunk=2)
    keep, _ = submit(store, 0, 4)
    drop, _ = submit(store, 1, 4)
    boom, _ = submit(store, 2, 4, lr="1e30")
    scheduler._admit()
    scheduler._run_next()
    store.cancel(drop)
    scheduler.cancel(drop)
    scheduler._drain(block=False)
    run_until_idle(scheduler)
    assert store.get(keep)["status"] == "done"
    assert store.get(drop)["status"] == "cancelled" and not store.result_path(drop).exists()
    failed = store.get(boom)
    assert failed["status"] == "failed" and "loss became" in failed["error"], failed


def test_end_to_end_with_the_worker_thread(tmp_path, network):
    store = Store(tmp_path / "serve")
    scheduler = Scheduler(store, network=network, max_batch=4, chunk=2).start()
    try:
        client = TestClient(create_app(store, scheduler), base_url=BASE)
        job = client.post("/api/jobs", **upload(size=32, steps=6, optimizer="adam")).json()
        events = []
        with client.stream("GET", f"/api/jobs/{job['id']}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert events[-1]["status"] == "done" and events[-1]["step"] == 6
        assert events[-1]["losses"]["total"] > 0 and events[-1]["batch_size"] == 1
        r = client.get(f"/api/jobs/{job['id']}/result")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (32, 32)
        assert client.get(f"/api/jobs/{job['id']}/preview").content == r.content
    finally:
        scheduler.stop()
