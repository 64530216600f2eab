"""Why ``--precision bf16`` is not faster on XLA:CPU: one VGG conv layer under XLA flag sets.

Command (about 2 minutes on 2 cores)::

    python -m bench.bf16_cpu                       # the flag sets below, fp32 vs bf16
    python -m bench.bf16_cpu --flags "--xla_cpu_use_onednn=true"   # one extra set

What it measures, per XLA_FLAGS set (each in a fresh process, since XLA reads the flags
once): the median wall time of one jitted forward + input-gradient of a 3×3 conv (+ReLU)
at a VGG19 shape, in fp32 (precision "highest") and with bf16 operands (what
``--precision bf16`` does), and what XLA made of the bf16 convolution: the element type of
the ``convolution`` in the optimised HLO, and whether it became a oneDNN / XNNPACK / YNNPACK
call. Also the CPU's bf16 instructions (``/proc/cpuinfo``: avx512_bf16, amx_bf16) and
PyTorch's CPU capability, which decide whether any library can run bf16 natively.
The findings are in bench/README.md, "bf16 on CPU".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

FLAG_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn+dot-fusion": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot,eltwise",
    "xnnpack": "--xla_cpu_use_xnnpack=true --xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    # YNNPACK's fusion types in 0.10.2 are dot, eltwise (and reduce): no convolution.
    "ynnpack-dot": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise",
    "xnn-graph-greedy": "--xla_cpu_use_xnnpack=true --xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "fast-math": "--xla_cpu_enable_fast_math=true",
    "not-strict-dot-conv": "--xla_cpu_strict_dot_conv_math=false",
}

CHILD = r"""
import json, re, sys, time
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_platforms", "cpu")
hw, cin, cout, reps = (int(v) for v in sys.argv[1:5])
def layer(x, w, dtype):
    y = jax.lax.conv_general_dilated(x.astype(dtype), w.astype(dtype), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     preferred_element_type=jnp.float32)
    return jnp.sum(jax.nn.relu(y) ** 2)
out = {}
x = jax.random.normal(jax.random.key(0), (1, hw, hw, cin), jnp.float32)
w = jax.random.normal(jax.random.key(1), (3, 3, cin, cout), jnp.float32) * 0.05
for name, dtype in (("fp32", jnp.float32), ("bf16", jnp.bfloat16)):
    with jax.default_matmul_precision("highest" if name == "fp32" else "default"):
        f = jax.jit(jax.value_and_grad(lambda x, w: layer(x, w, dtype)))
        compiled = f.lower(x, w).compile()
    text = compiled.as_text()
    convs = re.findall(r"= (\w+)\[[^\]]*\][^=]*? convolution\(", text)
    calls = sorted(set(re.findall(r'custom_call_target="([^"]+)"', text)) | set(re.findall(r"kind=k(\w+)", text)))
    fus = sorted(set(re.findall(r"(onednn|xnn|ynn)\w*", text, re.I)))
    v, g = compiled(x, w); jax.block_until_ready(g)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter(); v, g = compiled(x, w); jax.block_until_ready(g); times.append(time.perf_counter() - t0)
    out[name] = {"ms": 1e3 * float(np.median(times)), "conv_types": convs, "calls": calls, "libs": fus,
                 "loss": float(v)}
print(json.dumps(out))
"""


def cpu_bf16() -> dict:
    flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), [])
    out = {f: f in flags for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx_vnni", "avx2")}
    try:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception as e:  # torch is optional here
        out["torch_cpu_capability"] = f"unknown ({e})"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bf16_cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="64,256,256", help="H=W,Cin,Cout (default: conv3_x at 256² input)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--flags", default=None, help="one extra XLA_FLAGS set to try")
    p.add_argument("--sets", default=",".join(FLAG_SETS), help="which of the built-in sets")
    args = p.parse_args(argv)
    sets = {k: FLAG_SETS[k] for k in args.sets.split(",") if k}
    if args.flags:
        sets["custom"] = args.flags
    hw, cin, cout = (int(v) for v in args.shape.split(","))
    print(json.dumps({"cpu": cpu_bf16()}), flush=True)
    rows = []
    for name, flags in sets.items():
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip())
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, str(hw), str(cin), str(cout), str(args.reps)],
                              env=env, capture_output=True, text=True)
        if done.returncode:
            err = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
            rows.append({"set": name, "flags": flags, "error": err})
        else:
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"set": name, "flags": flags, **r, "speedup_bf16": round(r["fp32"]["ms"] / r["bf16"]["ms"], 2),
                         "loss_ratio": round(r["bf16"]["loss"] / r["fp32"]["loss"], 4)})
        print(json.dumps(rows[-1]), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\n| XLA_FLAGS set | fp32 ms | bf16 ms | fp32/bf16 | bf16 conv in optimised HLO | library calls |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['set']} | – | – | – | error: {r['error']} | |")
        else:
            b = r["bf16"]
            print(f"| {r['set']} | {r['fp32']['ms']:.1f} | {b['ms']:.1f} | {r['speedup_bf16']:.2f} | "
                  f"{','.join(sorted(set(b['conv_types']))) or 'none (fused/custom)'} | {','.join(b['libs'] + b['calls'])[:80]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
