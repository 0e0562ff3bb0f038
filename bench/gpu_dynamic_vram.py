"""Shipped Kontext workflows on a real ComfyUI server with dynamic VRAM (comfy-aimdo) on, then off: a GPU check.

ComfyUI 0.16 and later stream weights through comfy-aimdo on NVIDIA GPUs by default. The Kontext Loader keeps a
plain ModelPatcher for its GGUF and per-channel fp8 layers and hands files in ComfyUI's own quantized formats to
core's loader (dynamic where core makes it so). This runs the same workflows twice on one server kind, once with
``--enable-dynamic-vram`` and once with ``--disable-dynamic-vram``, checks that the server really switched (its log
says "DynamicVRAM support detected and enabled" only in the first), and prints seconds per workflow and the ratio.
Needs a ComfyUI with comfy-aimdo (0.16+; the test host 0.33.0) and an NVIDIA GPU; no CPU run means anything here.

    bash bench/on_device.sh python bench/gpu_dynamic_vram.py --base /tmp/dv --only kontext_edit_gguf,kontext_edit_fp8 \\
        --json-out $OUT/dynamic_vram.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import run_workflows  # noqa: E402

MODES = {"on": "--enable-dynamic-vram", "off": "--disable-dynamic-vram"}
ENABLED_LINE = "DynamicVRAM support detected and enabled"


def main(argv=None) -> int:
    args = run_workflows.parse_args(argv)
    results: dict[str, dict[str, dict]] = {}
    for mode, flag in MODES.items():
        args.server_arg = [flag]
        rows = run_workflows.run_all(args)
        log = (Path(args.base) / "server.log").read_text(errors="replace")
        if (ENABLED_LINE in log) != (mode == "on"):
            raise SystemExit(
                f"gpu_dynamic_vram: the server did not switch dynamic VRAM {mode} (see {args.base}/server.log)"
            )
        results[mode] = {row["workflow"]: row for row in rows}
        if args.json_out:
            with open(args.json_out, "a") as fh:
                fh.write(json.dumps({"dynamic_vram": mode, "rows": rows}) + "\n")
    print(f"\n{'workflow':32} {'on ok':>5} {'off ok':>6} {'on s':>8} {'off s':>8} {'on/off':>7}")  # noqa: T201
    for name, on in results["on"].items():
        off = results["off"][name]
        ratio = on["seconds"] / off["seconds"] if off["seconds"] else float("nan")
        print(  # noqa: T201
            f"{name:32} {'yes' if on['ok'] else 'NO':>5} {'yes' if off['ok'] else 'NO':>6} "
            f"{on['seconds']:>8.1f} {off['seconds']:>8.1f} {ratio:>7.2f}"
        )
    return 0 if all(r["ok"] for mode in results.values() for r in mode.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
