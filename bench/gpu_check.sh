#!/usr/bin/env bash
# The GPU comparison for a session that is lent a GPU (device tool `run`), in one command:
#   bash bench/gpu_check.sh        (timeout_s 540 leaves a margin over its 470 s limit)
# Runs `python3 -m bench.gpu` (see its docstring) under a hard timeout and copies the
# results (gpu-latest.json/.md/.png) into $OUT when the device tool provides it.
set -u
cd "$(dirname "$0")/.."
nvidia-smi -L || { echo "gpu_check: no GPU"; exit 2; }
python3 -c "import jax, torch, flax, optax, safetensors; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
timeout 470 python3 -m bench.gpu ${OUT:+--out "$OUT"} "$@"
