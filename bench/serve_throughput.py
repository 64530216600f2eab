"""`jaxstyle serve` on CPU: N compatible jobs sent together against the same N one at a time.

Command (repository root, the venv active; about 2 minutes on the 2-core CPU machine):

    python -m bench.serve_throughput                     # N = 4, 96 px, 24 Adam steps, random:0 weights
    python -m bench.serve_throughput --n 4 --size 128 --steps 16 --rounds 3

One real server process (``python -m jaxstyle serve --port 0 --max-batch N``) on 127.0.0.1,
driven over HTTP as a user would. N jobs of the same recipe and content shape (each its own
content, style and seed) are run two ways, alternating, ``--rounds`` times each:

- ``sequential``: submit one job, wait until it is done, then the next;
- ``concurrent``: submit all N at once (the server batches them: one vmapped step).

Before timing, one warm-up of each way compiles the B = 1 and B = N programs (compile time is
not measured). Reported per way: wall seconds from the first submission to the last job done
(client side, polling every 20 ms), and the server process's CPU seconds (user + system, from
/proc, all threads) over the same span, which other processes on a shared machine disturb
least. The ratio concurrent ÷ sequential (median over rounds) should be ≤ 1: batching must not
cost the CPU anything. The sequential way includes the scheduler's 0.2 s gather wait once per
job (the server really does that for a lone request). Results:
bench/results/serve-throughput.json and .md (or --out).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = ("done", "failed", "cancelled")


def picture(h: int, w: int, seed: int) -> bytes:
    """A smooth random RGB PNG: structure at several scales, like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + 3 * yy + p) for p in rng.uniform(0, 6, 3)], -1)
    img = 0.5 + 0.35 * img + 0.15 * rng.standard_normal((h, w, 3))
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Server:
    """``jaxstyle serve`` as a subprocess; its stderr is drained so it never blocks."""

    def __init__(self, db: Path, weights: str, max_batch: int):
        env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": "off"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jaxstyle", "serve", "--host", "127.0.0.1", "--port", "0", "--db", str(db),
             "--weights", weights, "--max-batch", str(max_batch)],
            stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        deadline = time.time() + 300
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
                threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
                return
            if time.time() > deadline:
                break
        self.stop()
        raise SystemExit("the server did not start:\n" + "".join(self.log))

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process, all threads (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, content: bytes, style: bytes, fields: dict) -> str:
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{k}.png"\r\n'
                 f"Content-Type: image/png\r\n\r\n".encode() + v + b"\r\n"
                 for k, v in (("content", content), ("style", style))]
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                  for k, v in fields.items()]
        req = urllib.request.Request(self.url + "/api/jobs", data=b"".join(parts) + f"--{boundary}--\r\n".encode(),
                                     method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["id"]

    def job(self, job_id: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/jobs/{job_id}", timeout=60) as r:
            return json.loads(r.read())

    def wait(self, ids: list[str], timeout: float = 1800) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            jobs = [self.job(i) for i in ids]
            if all(j["status"] in TERMINAL for j in jobs):
                bad = [(j["id"], j["status"], j.get("error")) for j in jobs if j["status"] != "done"]
                if bad:
                    raise SystemExit(f"jobs did not finish: {bad}")
                return jobs
            time.sleep(0.02)
        raise SystemExit("jobs did not finish in time")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def machine() -> dict:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "backend": jax.default_backend(), "jax": jax.__version__,
            "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4, help="jobs per way (and the server's --max-batch)")
    p.add_argument("--size", type=int, default=96, help="output long side, px (contents are 3:4)")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--weights", default="random:0", help="--weights of the server (random:0: full-width VGG19)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds of each way, alternating")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve-throughput"))
    args = p.parse_args(argv)
    start_load = os.getloadavg()[0]
    n, h, w = args.n, args.size * 3 // 4, args.size
    fields = {"size": str(args.size), "steps": str(args.steps), "optimizer": args.optimizer}
    inputs = [(picture(h, w, 100 + i), picture(64, 64, 200 + i)) for i in range(n)]

    with tempfile.TemporaryDirectory(prefix="jaxstyle-bench-serve-") as tmp:
        server = Server(Path(tmp) / "serve", args.weights, n)
        try:
            def sequential() -> list[dict]:
                jobs = []
                for i, (c, s) in enumerate(inputs):
                    jobs += server.wait([server.post(c, s, {**fields, "seed": str(i)})])
                return jobs

            def concurrent() -> list[dict]:
                ids = [server.post(c, s, {**fields, "seed": str(i)}) for i, (c, s) in enumerate(inputs)]
                return server.wait(ids)

            def measure(way) -> dict:
                cpu0, t0 = server.cpu_seconds(), time.perf_counter()
                jobs = way()
                wall, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
                return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                        "batch_sizes": sorted(j["batch_size"] for j in jobs)}

            t0 = time.perf_counter()
            warm = {"sequential": measure(sequential), "concurrent": measure(concurrent)}
            warmup_s = time.perf_counter() - t0
            print(f"warm-up (compiles B=1 and B={n}): {warmup_s:.1f} s", file=sys.stderr)
            rounds = {"sequential": [], "concurrent": []}
            for r in range(args.rounds):
                # Alternate the order so a drift in the machine's load hits both ways alike.
                order = ("sequential", "concurrent") if r % 2 == 0 else ("concurrent", "sequential")
                for name in order:
                    rounds[name].append(measure(sequential if name == "sequential" else concurrent))
                    print(f"round {r + 1} {name}: {rounds[name][-1]}", file=sys.stderr)
        finally:
            server.stop()

    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall_s", "cpu_s")} for k, v in rounds.items()}
    result = {
        "command": "python -m bench.serve_throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "load_average_start_end": [round(start_load, 2), round(os.getloadavg()[0], 2)],
        "n": n, "size": [h, w], "steps": args.steps, "optimizer": args.optimizer, "weights": args.weights,
        "warmup": warm, "warmup_s": round(warmup_s, 1), "rounds": rounds, "median": med,
        "ratio_wall": round(med["concurrent"]["wall_s"] / med["sequential"]["wall_s"], 3),
        "ratio_cpu": round(med["concurrent"]["cpu_s"] / med["sequential"]["cpu_s"], 3),
        "jobs_per_s": {k: round(n / v["wall_s"], 3) for k, v in med.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=2) + "\n"), (".md", markdown(result))):
        tmp = out.with_name(out.name + suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out.with_name(out.name + suffix))
    print(markdown(result))
    return 0


def markdown(res: dict) -> str:
    m, n = res["machine"], res["n"]
    rows = "\n".join(
        f"| {k} | {res['median'][k]['wall_s']:.2f} | {res['jobs_per_s'][k]:.3f} | {res['median'][k]['cpu_s']:.2f} | "
        f"{', '.join(str(r['batch_sizes']) for r in res['rounds'][k])} |" for k in ("sequential", "concurrent"))
    la = res["load_average_start_end"]
    return (
        f"# `jaxstyle serve`: {n} concurrent jobs vs the same {n} one at a time\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}; jax {m['jax']}. "
        f"Command: `{res['command'].strip()}`. {n} jobs of {res['size'][0]}×{res['size'][1]} px, "
        f"{res['steps']} {res['optimizer']} steps, gatys preset, `--weights {res['weights']}`, server "
        f"`--max-batch {n}`; median of {len(res['rounds']['sequential'])} alternating rounds after one "
        f"compiling warm-up of each way ({res['warmup_s']} s). Load average (1 min) at start / end: "
        f"{la[0]:.1f} / {la[1]:.1f} on {m['cores']} cores (other processes shared the machine).\n\n"
        f"| way | wall s | jobs/s | server CPU s | batch sizes per round |\n|---|---:|---:|---:|---|\n{rows}\n\n"
        f"**concurrent ÷ sequential: wall {res['ratio_wall']:.2f}, server CPU {res['ratio_cpu']:.2f}** "
        "(≤ 1: batching costs nothing).\n")


if __name__ == "__main__":
    sys.exit(main())
