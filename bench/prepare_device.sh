#!/usr/bin/env bash
# Build the folder that travels to the lent GPU machine (see ../shared/GPU.md): a trimmed copy of ComfyUI, an
# optional ComfyUI-GGUF checkout for ComfyUI-GGUF's own timings, and the wheels that machine lacks. It goes in `.device/`,
# which this script adds to .git/info/exclude (fetched code must never be committed). Name `.device` in the
# device tool's `carry` and start the command with `bash bench/on_device.sh ...`.
#
#   bash bench/prepare_device.sh [COMFYUI_DIR] [COMFYUI_GGUF_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
comfy="${1:-${COMFYUI_PATH:-$HOME/ComfyUI}}"
peer="${2:-}"
[ -f "$comfy/comfy/model_management.py" ] || { echo "prepare_device: no ComfyUI at '$comfy' (give its path)" >&2; exit 2; }
exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
rm -rf .device && mkdir -p .device/whl
# ComfyUI without its tests, API nodes, model/output folders and the tokenizers Kontext does not use (~8 MB).
tar -C "$comfy" -cf - \
  --exclude=./tests --exclude=./tests-unit --exclude=./.github --exclude=./.git --exclude=./comfy_api_nodes \
  --exclude=./models --exclude=./output --exclude=./input --exclude=./custom_nodes --exclude='__pycache__' \
  --exclude=./comfy/text_encoders/llama_tokenizer --exclude=./comfy/text_encoders/qwen25_tokenizer \
  --exclude=./comfy/text_encoders/ace_lyrics_tokenizer --exclude=./comfy/text_encoders/hydit_clip_tokenizer \
  --exclude=./comfy/text_encoders/t5_pile_tokenizer --exclude=./comfy/text_encoders/byt5_tokenizer . \
  | (mkdir -p .device/ComfyUI && tar -C .device/ComfyUI -xf -)
mkdir -p .device/ComfyUI/models .device/ComfyUI/custom_nodes
if [ -n "$peer" ]; then
  mkdir -p .device/ComfyUI-GGUF
  (cd "$peer" && find . -maxdepth 2 -name '*.py' -print0 | tar --null -cf - -T -) | tar -C .device/ComfyUI-GGUF -xf -
fi
# The device has python 3.12 with torch and triton but not these (ComfyUI's imports and our GGUF reader).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device/whl torchsde trampoline av gguf
du -sh .device
