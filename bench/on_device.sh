#!/usr/bin/env bash
# Run a command on the lent GPU machine with the carried `.device/` folder (bench/prepare_device.sh): installs the
# carried wheels into /tmp/site, points COMFYUI_PATH at the carried ComfyUI, then runs the command, e.g.
#
#   bash bench/on_device.sh python bench/gpu_checks.py --json-out "$OUT/gpu_checks.jsonl"
#   bash bench/on_device.sh python bench/bench_kontext.py --gguf-peer .device/ComfyUI-GGUF --modes ...
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .device/ComfyUI ] || { echo "on_device: no .device/ComfyUI; run bench/prepare_device.sh and carry .device" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/whl/*.whl
export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export COMFYUI_PATH="$PWD/.device/ComfyUI"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$@"
