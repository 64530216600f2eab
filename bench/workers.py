"""One worker process per (framework, case): jaxstyle, PyTorch eager or ``torch.compile``.

Command: none of its own; ``python -m bench.run`` starts the workers.

Each framework runs in its own process so that neither's thread pool spins while the other
computes, each one's peak memory is its own, and the coordinator can interleave their
timed rounds (the machine's load then falls on both alike). A worker is driven over a pipe:

- ``setup``: build the problem (weights file, images, optimiser) → seconds taken;
- ``check``: run ``n`` iterations → the per-iteration loss terms (for the agreement check)
  and the wall time of each call (the first one pays jaxstyle's compile);
- ``time``: run one timed round of ``chunk`` iterations → (wall s, CPU s);
- ``result``: peak memory, the last terms and the current images (RGB [0,1]);
- ``stop``.

Both frameworks are pinned to the same ``threads`` cores (``sched_setaffinity``, which
XLA:CPU's thread pool follows; ``torch.set_num_threads`` for torch). Denormals are flushed
to zero in torch, as XLA:CPU does by default: without it, torch's eager steps here took up
to 6× longer on steps whose gradients went denormal.
"""

from __future__ import annotations

import os
import resource
import time
import traceback

import numpy as np


def serve(conn, spec: dict) -> None:
    """Worker entry point (a ``multiprocessing`` spawn target)."""
    try:
        _pin(spec)
        if spec["framework"] == "peak":
            conn.send(("ok", _peaks(spec)))
            return
        runner = (_JaxRunner if spec["framework"] == "jax" else _TorchRunner)(spec)
        conn.send(("ok", None))
        while True:
            cmd, arg = conn.recv()
            if cmd == "stop":
                break
            conn.send(("ok", getattr(runner, cmd)(*arg)))
    except BaseException as e:  # report, never hang the coordinator
        try:
            conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"))
        except Exception:
            pass
    finally:
        conn.close()


def _pin(spec: dict) -> None:
    threads = spec.get("threads")
    if threads and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cores[:threads])
    if spec.get("device") == "gpu":
        # Several worker processes share the GPU: allocate on demand (then JAX's
        # peak_bytes_in_use is the run's own peak) instead of taking 75 % up front.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if spec.get("xla_flags"):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + spec["xla_flags"]).strip()


def _peaks(spec: dict) -> dict:
    """Best matmul FLOP/s per precision, in JAX and in torch (each pinned like the runs)."""
    from bench import flops

    if spec["device"] == "cpu":
        import jax

        jax.config.update("jax_platforms", "cpu")
    out, n = {}, 8192 if spec["device"] == "gpu" else 2048
    gpu = spec["device"] == "gpu"
    for precision in spec["precisions"]:
        out[f"jax-{precision}"] = flops.jax_matmul_peak(precision, n, repeats=10)
        out[f"jax-conv-{precision}"] = flops.jax_conv_peak(precision, 128 if gpu else 64, 512 if gpu else 256, repeats=10)
        import torch

        torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
        if precision == "tf32" or spec["device"] == "gpu":
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        out[f"torch-{precision}"] = flops.torch_matmul_peak(
            "bf16" if precision == "bf16" else "fp32", n, device="cuda" if spec["device"] == "gpu" else "cpu"
        )
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _config(spec: dict):
    from jaxstyle.config import make_config

    extra = {"remat": spec["remat"]} if spec.get("remat") else {}
    return make_config(
        "gatys",
        optimizer=spec["optimizer"],
        size=spec["size"],
        steps=10**6,
        precision="bf16" if spec["precision"] == "bf16" else "fp32",
        lbfgs_history=spec.get("lbfgs_history", 100),
        **extra,
    )


class _JaxRunner:
    def __init__(self, spec: dict):
        t0 = time.perf_counter()
        import jax

        if spec["device"] == "cpu":
            jax.config.update("jax_platforms", "cpu")
        # Matmul/conv precision for f32: "highest" is strict fp32, "tensorfloat32" is TF32
        # (JAX's own default on Ampere/Hopper GPUs); irrelevant on CPU, which has no TF32.
        # bf16 runs: the convs and Grams take bf16 operands, which these settings do not change.
        precision = {"tf32": "tensorfloat32", "bf16": "default"}.get(spec["precision"], "highest")
        jax.config.update("jax_default_matmul_precision", precision)
        from jaxstyle.model.weights import load_vgg

        from jaxstyle.engine import loop
        from jaxstyle.engine.targets import batch_problem
        from jaxstyle.plan.inputs import initial_image

        self.jax, self.loop = jax, loop
        self.base_rss = _rss_bytes()
        self.spec, self.cfg = spec, _config(spec)
        network, _ = load_vgg(spec["weights"])
        b = spec["batch"]
        content, style = spec["content"], spec["style"]
        init = jax.numpy.stack([initial_image(content.shape[:2], self.cfg, content)] * b)
        # B copies of the pair with their own targets (distinct keys): the same work per image
        # as B different pairs.
        self.problem = batch_problem(network, self.cfg.recipe, [content] * b, [[style]] * b, init,
                                     keys=(list(range(b)), [[i] for i in range(b)]) if b > 1 else None)
        self.chunk = spec["chunk"]
        unroll = spec.get("unroll", "auto")
        self.unroll = None if unroll == "auto" else unroll == "yes"
        self.state = loop.init_state(self.problem)
        jax.block_until_ready(self.state)
        self.setup_s = time.perf_counter() - t0
        self.device = jax.devices()[0]
        self.last = None

    def setup(self):
        return {"setup_s": self.setup_s, "device": str(self.device), "backend": self.jax.default_backend()}

    def _chunk(self) -> dict:
        # What the engine's loop does per call: one jitted, donated chunk, terms to the host.
        self.state, terms = self.loop.run_chunk(self.problem, self.state, self.chunk, unroll=self.unroll)
        self.last = {k: np.asarray(v) for k, v in terms.items()}  # (chunk, B) each; syncs
        return self.last

    def check(self, n: int):
        trace, walls = [], []
        while len(trace) < n:
            t0 = time.perf_counter()
            terms = self._chunk()
            walls.append(time.perf_counter() - t0)
            trace += [{k: v[i] for k, v in terms.items()} for i in range(self.chunk)]
        return {"trace": trace, "walls": walls, "per_call": self.chunk}

    def time(self):
        t0, c0 = time.perf_counter(), time.process_time()
        self._chunk()
        return time.perf_counter() - t0, time.process_time() - c0

    def result(self):
        images = self.loop.final_images(self.problem, self.state)
        out = {"peak_rss": _peak_rss_bytes(), "base_rss": self.base_rss, "images": images,
               "last": {k: v[-1] for k, v in self.last.items()}}
        stats = getattr(self.device, "memory_stats", lambda: None)()
        if stats:
            out["device_peak"] = stats.get("peak_bytes_in_use")
            out["device_limit"] = stats.get("bytes_limit")
        return out


class _TorchRunner:
    def __init__(self, spec: dict):
        t0 = time.perf_counter()
        import torch

        from bench import torch_ref

        self.torch = torch
        torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
        torch.set_flush_denormal(True)
        tf32 = spec["precision"] == "tf32"
        if spec["device"] == "gpu":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cudnn.benchmark = True
        self.dev = "cuda" if spec["device"] == "gpu" else "cpu"
        self.base_rss = _rss_bytes()
        self.spec, self.cfg = spec, _config(spec)
        weights, meta = torch_ref.load_weights(spec["weights"])
        net = torch_ref.TorchVGG(weights, meta.get("model", "vgg19"), meta.get("convention", "torchvision")).to(self.dev)
        objective = torch_ref.Objective(net, self.cfg, spec["content"], [spec["style"]])
        b, compiled, bf16 = spec["batch"], spec["framework"] == "torch-compile", spec["precision"] == "bf16"
        init = np.asarray(spec["content"], np.float32)
        if spec["mode"] == "loop" or b == 1:  # B independent problems stepped in turn
            self.runs = [torch_ref.Run(objective, init, self.cfg, compiled=compiled, bf16=bf16) for _ in range(b)]
        else:  # one NCHW batch (Adam only: its update is elementwise)
            self.runs = [torch_ref.Run(objective, np.repeat(init[None], b, 0), self.cfg, compiled=compiled, bf16=bf16)]
        self.chunk = spec["chunk"]
        self.setup_s = time.perf_counter() - t0
        self.last = None

    def setup(self):
        name = self.torch.cuda.get_device_name() if self.dev == "cuda" else "cpu"
        return {"setup_s": self.setup_s, "device": name, "threads": self.torch.get_num_threads()}

    def _step(self) -> dict:
        # Terms stay on the device: no per-step sync (a GPU user loop need not have one).
        per_run = [r.step() for r in self.runs]
        return {k: self.torch.cat([t[k].reshape(-1) for t in per_run]) for k in per_run[0]}

    def _to_host(self, terms: dict) -> dict:
        self.last = {k: v.float().cpu().numpy() for k, v in terms.items()}
        return self.last

    def check(self, n: int):
        trace, walls = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            trace.append(self._to_host(self._step()))
            walls.append(time.perf_counter() - t0)
        return {"trace": trace, "walls": walls, "per_call": 1}

    def time(self):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(self.chunk):
            terms = self._step()
        self._to_host(terms)  # one sync per round, as jaxstyle's np.asarray per chunk
        return time.perf_counter() - t0, time.process_time() - c0

    def result(self):
        out = {"peak_rss": _peak_rss_bytes(), "base_rss": self.base_rss, "last": self.last}
        if self.dev == "cuda":
            out["device_peak"] = self.torch.cuda.max_memory_allocated()
        return out
