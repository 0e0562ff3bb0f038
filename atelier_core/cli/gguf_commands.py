"""The ``quantize``, ``inspect`` and ``compare`` commands (parsers in ``atelier_core.cli.gguf_tools``).

``quantize`` streams tensor by tensor (see ``atelier_core.gguf.convert`` for the recipes table), draws a progress
bar on standard error and ends with the peak memory it used. ``inspect`` says what a GGUF or safetensors file holds
and whether the Kontext loader accepts it (and why not). ``compare`` reports the per-tensor relative error of a
quantized file against its source, and with ``--sample`` the sampled images through ComfyUI.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import AtelierError
from ..gguf import convert as gconvert
from ..gguf.dequant import dequantize
from ..gguf.reader import SkippedArray, open_gguf
from ..model import architecture, model_files
from ..model.kontext_layout import parameter_count
from .file_checks import check_outputs

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- helpers


def peak_rss_bytes(who: str = "self") -> int | None:
    """Peak resident set size of this process (``who="self"``) or of its largest finished child process
    (``"children"``: the quantizer workers); None where the platform cannot tell."""
    if who == "self":
        # Linux: the high-water mark of this process image. getrusage's ru_maxrss survives exec, so a command
        # started from a large process (a test runner, a ComfyUI server) would report its parent's size.
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    usage = resource.RUSAGE_SELF if who == "self" else resource.RUSAGE_CHILDREN
    peak = resource.getrusage(usage).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a closed terminal, `kill`) ends the run like Ctrl-C, so the partial file is removed."""
    if threading_main():

        def handler(signum, frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        yield


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _write_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


# ----------------------------------------------------------------------------------------------- quantize


def run_quantize(args) -> int:
    inputs = [("INPUT", args.input), ("--lora", args.lora)]
    check_outputs("kontext-atelier quantize", inputs, [("OUTPUT", args.output, None)])
    progress = None if args.no_progress else gconvert.TextProgress(sys.stderr)
    with _sigterm_as_interrupt():
        report = gconvert.convert(
            args.input,
            args.output,
            args.type,
            lora=args.lora,
            lora_strength=args.lora_strength,
            overwrite=args.force,
            progress=progress,
        )
    peak = peak_rss_bytes()
    result = {
        "output": str(report.output),
        "type": report.recipe,
        "tensors": len(report.tensors),
        "types": report.type_histogram(),
        "parameters": parameter_count(report.model),
        "bits_per_weight": round(report.bits_per_weight, 3),
        "source_bytes": report.source_bytes,
        "output_bytes": report.output_bytes,
        "seconds": round(report.seconds, 2),
        "source_mb_per_s": round(report.source_bytes / max(report.seconds, 1e-9) / 1e6, 2),
        "lora_targets": report.lora_targets,
        "skipped_tensors": len(report.skipped),
        "peak_rss_bytes": peak,
        # Each parallel quantizer worker's own peak (0 when none ran); workers run side by side, one per core.
        "worker_peak_rss_bytes": peak_rss_bytes("children"),
    }
    if args.json:
        _write_json(result)
        return 0
    types = ", ".join(f"{k}×{v}" for k, v in sorted(result["types"].items(), key=lambda kv: -kv[1]))
    lines = [
        f"wrote {report.output} ({_size(report.output_bytes)}, {result['bits_per_weight']:.2f} bits per weight)",
        f"  type {report.recipe}: {len(report.tensors)} tensors ({types})",
        f"  {_size(report.source_bytes)} of source in {report.seconds:.1f} s ({result['source_mb_per_s']:.1f} MB/s)",
    ]
    if report.lora_targets:
        lines.append(f"  merged a LoRA into {report.lora_targets} layers (strength {args.lora_strength:g})")
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)} tensors outside the diffusion model")
    if peak is not None:
        workers = result["worker_peak_rss_bytes"] or 0
        extra = f", plus up to {_size(workers)} in each quantizer worker" if workers else ""
        lines.append(f"  peak memory (RSS): {_size(peak)}{extra}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------- inspect


def _loader_verdict(shapes: dict[str, tuple[int, ...]], label: str) -> dict:
    """What the Kontext loader does with these tensor shapes (after the same prefix/scale handling)."""
    prefix = architecture.strip_prefix([k for k in shapes if k != "scaled_fp8"])
    if prefix:
        shapes = {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}
    arch_shapes = {
        k: v for k, v in shapes.items() if k != "scaled_fp8" and not k.endswith((".scale_weight", ".scale_input"))
    }
    try:
        model = gconvert.check_architecture(arch_shapes, label)
    except AtelierError as e:
        return {"accepted": False, "reason": str(e), "prefix": prefix}
    return {
        "accepted": True,
        "reason": "a FLUX.1 / Kontext transformer with every tensor of the expected shape",
        "prefix": prefix,
        "architecture": "FLUX.1 Kontext / FLUX.1-dev transformer",
        "hidden": model.hidden,
        "double_blocks": model.depth,
        "single_blocks": model.depth_single,
        "guidance_embed": model.guidance_embed,
        "parameters": parameter_count(model),
    }


def _printable(value, limit: int = 16):
    if isinstance(value, SkippedArray):
        return repr(value)
    if isinstance(value, (list, tuple)) and len(value) > limit:
        return f"<array of {len(value)} items>"
    if isinstance(value, np.ndarray):
        return f"<array of {value.size} {value.dtype}>" if value.size > limit else value.tolist()
    if isinstance(value, str) and len(value) > 300:
        return value[:300] + f"... ({len(value)} characters)"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def inspect_file(path: Path, with_tensors: bool = False) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AtelierError(f"'{path}' does not exist or is not a file")
    fmt = model_files.sniff_format(path)
    size = path.stat().st_size
    info: dict = {"file": str(path), "format": fmt, "file_bytes": size}
    shapes: dict[str, tuple[int, ...]] = {}
    hist: dict[str, dict[str, int]] = {}
    params = data_bytes = 0
    rows = []
    if fmt == "gguf":
        with open_gguf(path) as gf:
            info["gguf_version"] = gf.version
            info["general.architecture"] = gf.architecture
            info["metadata"] = {k: _printable(v) for k, v in gf.metadata.items()}
            for name, ti in gf.tensors.items():
                shapes[name] = tuple(ti.shape)
                h = hist.setdefault(ti.ggml_type.name, {"tensors": 0, "parameters": 0, "bytes": 0})
                h["tensors"] += 1
                h["parameters"] += ti.n_elements
                h["bytes"] += ti.nbytes
                params += ti.n_elements
                data_bytes += ti.nbytes
                rows.append((name, list(ti.shape), ti.ggml_type.name))
        arch = info["general.architecture"]
        verdict = _loader_verdict(shapes, path.name)
        if arch not in (None, "flux"):
            verdict = {
                "accepted": False,
                "reason": f"general.architecture is '{arch}'; the Kontext loader needs 'flux'",
                "prefix": verdict.get("prefix", ""),
            }
    else:
        header = model_files.read_safetensors_header(path)
        info["metadata"] = {k: _printable(v) for k, v in header.metadata.items()}
        from ..model.model_files import SAFETENSORS_DTYPE_BYTES

        for name, (dtype, shape) in header.tensors.items():
            shapes[name] = tuple(shape)
            n = math.prod(shape) if shape else 1
            h = hist.setdefault(dtype, {"tensors": 0, "parameters": 0, "bytes": 0})
            h["tensors"] += 1
            h["parameters"] += n
            h["bytes"] += n * SAFETENSORS_DTYPE_BYTES[dtype]
            params += n
            data_bytes += n * SAFETENSORS_DTYPE_BYTES[dtype]
            rows.append((name, list(shape), dtype))
        verdict = _loader_verdict(shapes, path.name)
        if verdict["accepted"]:
            bad = [d for d in hist if d not in gconvert.SOURCE_DTYPES]
            if bad:
                verdict = {"accepted": False, "reason": f"holds {', '.join(bad)} tensors; the loader needs floats"}
    if verdict["accepted"]:
        try:  # the loader runs the same check; inspect must not promise what the loader refuses
            model_files.check_sampled_values(path)
        except AtelierError as exc:
            verdict = {"accepted": False, "reason": str(exc), "prefix": verdict.get("prefix", "")}
    info.update(
        {
            "tensor_count": len(shapes),
            "parameters": params,
            "types": hist,
            "bits_per_weight": round(8.0 * data_bytes / params, 3) if params else 0.0,
            "loader": verdict,
        }
    )
    if with_tensors:
        info["tensors"] = [{"name": n, "shape": s, "type": t} for n, s, t in rows]
    return info


def format_inspect(info: dict) -> str:
    v = info["loader"]
    lines = [f"{info['file']}: {info['format']}, {_size(info['file_bytes'])}"]
    if info["format"] == "gguf":
        lines.append(f"  GGUF v{info['gguf_version']}, general.architecture = {info['general.architecture']}")
    if v["accepted"]:
        lines.append(
            f"  architecture: {v['architecture']} (hidden {v['hidden']}, {v['double_blocks']} double + "
            f"{v['single_blocks']} single blocks, {v['parameters'] / 1e9:.2f} B parameters)"
        )
    lines.append(
        f"  tensors: {info['tensor_count']}, parameters {info['parameters']:,}, "
        f"{info['bits_per_weight']:.2f} bits per weight"
    )
    lines.append("  types:")
    for name, h in sorted(info["types"].items(), key=lambda kv: -kv[1]["bytes"]):
        lines.append(f"    {name:<8} {h['tensors']:>5} tensors  {h['parameters']:>14,} values  {_size(h['bytes'])}")
    if info["metadata"]:
        lines.append("  metadata:")
        for k, val in info["metadata"].items():
            lines.append(f"    {k} = {val}")
    lines.append(f"  Kontext loader: {'accepts it' if v['accepted'] else 'refuses it'} - {v['reason']}")
    for t in info.get("tensors", []):
        lines.append(f"    {t['name']:<60} {t['type']:<8} {t['shape']}")
    return "\n".join(lines)


def run_inspect(args) -> int:
    info = inspect_file(Path(args.file), args.tensors)
    if args.json:
        _write_json(info)
    else:
        sys.stdout.write(format_inspect(info) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------- compare


class _GGUFTensors:
    """The tensors of a GGUF, dequantized to float32 one at a time, keys without prefix."""

    def __init__(self, path: Path) -> None:
        self.file = open_gguf(path)
        names = list(self.file.tensors)
        self.prefix = architecture.strip_prefix(names)
        self._keys = {n[len(self.prefix) :]: n for n in names if n.startswith(self.prefix)}
        self.shapes = {k: tuple(self.file.tensors[n].shape) for k, n in self._keys.items()}

    def stored_type(self, key: str) -> str:
        return self.file.tensors[self._keys[key]].ggml_type.name

    def read(self, key: str) -> torch.Tensor:
        ti = self.file.tensors[self._keys[key]]
        return dequantize(self.file.raw_torch(ti.name), ti.ggml_type, ti.shape, torch.float32)

    def close(self) -> None:
        self.file.close()


class _SafetensorsTensors:
    def __init__(self, path: Path) -> None:
        self.src = gconvert.SafetensorsSource(path)
        self.src.check_dtypes()
        self.shapes = self.src.shapes

    def stored_type(self, key: str) -> str:
        return self.src.dtypes[key] + ("*scale" if key in self.src.scales else "")

    def read(self, key: str) -> torch.Tensor:
        return self.src.read(key)

    def close(self) -> None:
        pass


def _open_tensors(path: str):
    p = Path(path)
    if not p.is_file():
        raise AtelierError(f"'{p}' does not exist or is not a file")
    return _GGUFTensors(p) if model_files.sniff_format(p) == "gguf" else _SafetensorsTensors(p)


def compare_files(ref_path: str, quant_path: str) -> dict:
    ref = _open_tensors(ref_path)
    quant = _open_tensors(quant_path)
    try:
        common = [k for k in quant.shapes if k in ref.shapes]
        if not common:
            raise AtelierError(
                f"'{Path(ref_path).name}' and '{Path(quant_path).name}' share no tensor names; compare a quantized "
                "file with its own source"
            )
        rows = []
        sq_err = sq_ref = 0.0
        for key in common:
            if tuple(ref.shapes[key]) != tuple(quant.shapes[key]):
                rows.append({"name": key, "type": quant.stored_type(key), "error": "shape differs"})
                continue
            r = ref.read(key).double()
            q = quant.read(key).double()
            diff = float(torch.linalg.vector_norm(q - r))
            norm = float(torch.linalg.vector_norm(r))
            sq_err += diff * diff
            sq_ref += norm * norm
            rows.append(
                {
                    "name": key,
                    "type": quant.stored_type(key),
                    "values": r.numel(),
                    "relative_error": diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf),
                    "max_abs_error": float((q - r).abs().max()) if r.numel() else 0.0,
                }
            )
        by_type: dict[str, dict] = {}
        for row in rows:
            if "relative_error" not in row:
                continue
            b = by_type.setdefault(row["type"], {"tensors": 0, "values": 0, "_sum": 0.0, "max": 0.0})
            b["tensors"] += 1
            b["values"] += row["values"]
            b["_sum"] += row["relative_error"]
            b["max"] = max(b["max"], row["relative_error"])
        for b in by_type.values():
            b["mean_relative_error"] = b.pop("_sum") / b["tensors"]
            b["max_relative_error"] = b.pop("max")
        return {
            "ref": str(ref_path),
            "quant": str(quant_path),
            "compared": len(rows),
            "only_in_ref": sorted(k for k in ref.shapes if k not in quant.shapes),
            "only_in_quant": sorted(k for k in quant.shapes if k not in ref.shapes),
            "overall_relative_error": math.sqrt(sq_err / sq_ref) if sq_ref > 0 else 0.0,
            "by_type": by_type,
            "tensors": rows,
        }
    finally:
        ref.close()
        quant.close()


def format_compare(result: dict, worst: int) -> str:
    rows = [r for r in result["tensors"] if "relative_error" in r]
    rows.sort(key=lambda r: -r["relative_error"])
    lines = [
        f"{result['quant']} vs {result['ref']}: {result['compared']} tensors compared, overall relative error "
        f"{result['overall_relative_error']:.5f}",
        "  by type:            tensors   mean rel. error   max rel. error",
    ]
    for name, b in sorted(result["by_type"].items(), key=lambda kv: -kv[1]["mean_relative_error"]):
        lines.append(
            f"    {name:<16} {b['tensors']:>8}   {b['mean_relative_error']:>15.6f}   {b['max_relative_error']:>14.6f}"
        )
    if worst > 0 and rows:
        lines.append(f"  worst {min(worst, len(rows))} tensors:")
        for r in rows[:worst]:
            lines.append(f"    {r['relative_error']:.6f}  {r['type']:<8} {r['name']}")
    bad = [r for r in result["tensors"] if "error" in r]
    for r in bad:
        lines.append(f"  {r['name']}: {r['error']}")
    for what in ("only_in_ref", "only_in_quant"):
        if result[what]:
            lines.append(f"  {len(result[what])} tensors {what.replace('_', ' ')} (e.g. {', '.join(result[what][:3])})")
    return "\n".join(lines)


def run_compare(args) -> int:
    result = compare_files(args.ref, args.quant)
    if args.sample:
        if args.size < 64 or args.size % 16 or args.seeds < 1 or args.steps < 1:
            raise AtelierError("--sample needs --size a multiple of 16 (at least 64), --seeds and --steps of 1 or more")
        from ..runtime.sample_compare import compare_sampling

        sampled = compare_sampling(
            Path(args.ref),
            Path(args.quant),
            comfyui=args.comfyui,
            vae=Path(args.vae) if args.vae else None,
            seeds=tuple(range(args.seeds)),
            size=args.size,
            steps=args.steps,
        )
        result["sampling"] = sampled.as_dict()
    if args.json:
        _write_json(result)
    else:
        text = format_compare(result, args.worst)
        if args.sample:
            s = result["sampling"]
            text += (
                f"\nsampled {len(s['seeds'])} seeds through ComfyUI ({s['space']} space): "
                f"PSNR {s['mean_psnr_db']} dB, SSIM {s['mean_ssim']} (per seed: {s['psnr_db']}, {s['ssim']})"
            )
        sys.stdout.write(text + "\n")
    return 0


__all__ = ["compare_files", "inspect_file", "peak_rss_bytes"]
