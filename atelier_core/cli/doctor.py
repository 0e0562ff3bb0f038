"""``kontext-atelier doctor``: is this machine ready for Kontext editing, and if not, what is missing.

Finds ComfyUI with the project's one host finder (``--comfyui``, ``COMFYUI_PATH``, the ComfyUI this pack sits in,
``~/ComfyUI``; never the test hosts' cache), lists the model files
the shipped workflows expect (with where to download the missing ones) and what each transformer file found is
(GGUF, fp8, scaled fp8, bf16), reports the GPU, its memory and fp8 support through torch, and says which loader modes
will run. With ``--server`` it also asks a running ComfyUI whether the pack is loaded and which models it sees; with
``--smoke`` it queues a one-step edit there (256x256, the first shipped edit workflow whose model is present).
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
import zlib
from pathlib import Path

from ..errors import AtelierError
from ..runtime.hosts import HostSearch, find_comfyui

PACK_DIR = Path(__file__).resolve().parents[2]
MODEL_FOLDERS = {
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "vae": ("vae",),
    "loras": ("loras",),
}
MODEL_SUFFIXES = (".gguf", ".safetensors", ".sft")
KONTEXT_PARAMS = 11.9e9  # FLUX.1 Kontext [dev] transformer parameters
GIB = 1024**3
SMOKE_WORKFLOWS = ("kontext_edit_gguf", "kontext_edit_fp8")


class Report:
    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.problems: list[str] = []

    def section(self, title: str) -> None:
        self.out.write(f"\n{title}\n")

    def ok(self, text: str) -> None:
        self.out.write(f"  ok       {text}\n")

    def info(self, text: str) -> None:
        self.out.write(f"           {text}\n")

    def missing(self, text: str, fix: str = "") -> None:
        self.out.write(f"  MISSING  {text}\n")
        if fix:
            self.out.write(f"           {fix}\n")
        self.problems.append(text)

    def warn(self, text: str) -> None:
        self.out.write(f"  note     {text}\n")


def expected_models() -> list[dict]:
    """Every {name, url, directory} named in the shipped UI workflows' loader properties, once."""
    seen: dict[tuple[str, str], dict] = {}
    for path in sorted((PACK_DIR / "workflows").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for node in data.get("nodes", []):
            properties = node.get("properties") or {}
            # GGUF files are listed under "atelier_downloads" (the frontend offers only .safetensors downloads).
            for model in (properties.get("models") or []) + (properties.get("atelier_downloads") or []):
                entry = seen.setdefault((model["directory"], model["name"]), dict(model, workflows=[]))
                entry["workflows"].append(path.stem)
    return list(seen.values())


def model_files(root: Path, kind: str) -> list[Path]:
    files = []
    for folder in MODEL_FOLDERS[kind]:
        base = root / "models" / folder
        if base.is_dir():
            files += [p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES]
    return sorted(files)


def describe_transformer(path: Path) -> str:
    """What a transformer file is, from its header only."""
    from ..model import model_files as mf

    try:
        kind = mf.sniff_format(path)
        if kind == "gguf":
            from ..gguf.reader import open_gguf

            with open_gguf(path) as gguf:
                counts: dict[str, int] = {}
                for info in gguf.tensors.values():
                    if len(info.shape) >= 2:  # the matrices decide the quality; norms and biases stay precise
                        name = getattr(info.ggml_type, "name", str(info.ggml_type))
                        counts[name] = counts.get(name, 0) + info.n_elements
            main = max(counts, key=counts.get) if counts else "?"
            return f"GGUF, mostly {main}"
        header = mf.read_safetensors_header(path)
        dtypes: dict[str, int] = {}
        for dtype, _ in header.tensors.values():
            dtypes[dtype] = dtypes.get(dtype, 0) + 1
        main = max(dtypes, key=dtypes.get) if dtypes else "?"
        if "scaled_fp8" in header.tensors:
            return "ComfyUI scaled fp8 (e4m3fn)"
        return {"F8_E4M3": "fp8 e4m3fn", "F8_E5M2": "fp8 e5m2"}.get(main, f"safetensors {main.lower()}")
    except AtelierError as exc:
        return f"unreadable: {exc}"
    except Exception as exc:  # a doctor reports, it never crashes on one odd file
        return f"unreadable: {type(exc).__name__}: {exc}"


def check_files(report: Report, search: HostSearch) -> None:
    report.section("ComfyUI")
    root = search.root
    if root is None:
        looked = ", ".join(f"{label} ({path})" for label, path in search.tried)
        report.missing("no ComfyUI found", f"{search.reason}; or pass --comfyui PATH (looked at: {looked})")
        return
    report.ok(f"ComfyUI at {root}" + (f" (version {search.version})" if search.version else ""))
    pack_links = [p for p in (root / "custom_nodes").glob("*") if p.resolve() == PACK_DIR]
    if pack_links:
        report.ok(f"this pack is installed as custom_nodes/{pack_links[0].name}")
    else:
        report.warn(f"this pack ({PACK_DIR}) is not in {root / 'custom_nodes'}; clone or link it there")

    report.section("Model files")
    found = {kind: model_files(root, kind) for kind in MODEL_FOLDERS}
    names = {kind: {p.name for p in files} for kind, files in found.items()}
    expected = expected_models()
    transformers = [m for m in expected if m["directory"] == "diffusion_models"]
    # One transformer is enough: the GGUF workflows and the FP8 ones differ only in the file the loader reads.
    have_transformer = any(m["name"] in names["diffusion_models"] for m in transformers)
    # Likewise one T5: the GGUF-T5 workflow and the others differ only in the T5 file their text-encoder node reads.
    t5s = [m for m in expected if m["directory"] == "text_encoders" and "t5" in m["name"].lower()]
    have_t5 = any(m["name"] in names.get("text_encoders", set()) for m in t5s)
    for model in expected:
        kind = model["directory"] if model["directory"] in MODEL_FOLDERS else "diffusion_models"
        where = f"models/{kind}/{model['name']}"
        used = ", ".join(sorted(set(model["workflows"])))
        if model["name"] in names.get(kind, set()):
            report.ok(f"{where}  (used by {used})")
        elif (kind == "diffusion_models" and have_transformer) or kind == "loras" or (model in t5s and have_t5):
            # One transformer and one T5 are enough, and a LoRA serves only the workflows that name it.
            report.warn(f"{where} not present; only needed by {used} (download: {model['url']})")
        else:
            report.missing(where, f"download: {model['url']}  (used by {used})")
    if found["diffusion_models"]:
        report.info("transformers found:")
        for path in found["diffusion_models"]:
            report.info(f"  {path.name}: {describe_transformer(path)}, {path.stat().st_size / GIB:.1f} GiB")


def check_torch(report: Report) -> dict:
    report.section("GPU (torch)")
    try:
        import torch
    except ImportError:
        report.missing("torch is not installed in this Python", "run doctor with ComfyUI's Python")
        return {}
    facts = {"torch": torch.__version__, "fp8_storage": hasattr(torch, "float8_e4m3fn")}
    report.ok(f"torch {torch.__version__}")
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        cc = (props.major, props.minor)
        facts.update(device=props.name, total=total, free=free, cc=cc, bf16=torch.cuda.is_bf16_supported())
        facts["fp8_matmul"] = cc >= (8, 9) and hasattr(torch, "_scaled_mm")
        report.ok(f"{props.name}, compute capability {cc[0]}.{cc[1]}")
        report.ok(f"VRAM {total / GIB:.1f} GiB total, {free / GIB:.1f} GiB free")
        report.ok(f"bf16: {'yes' if facts['bf16'] else 'no (fp16/fp32 compute)'}")
        report.ok(
            "fp8: stored weights yes; fp8 matrix products "
            + ("yes (Ada/Hopper or newer)" if facts["fp8_matmul"] else "no (needs compute capability 8.9+)")
        )
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        facts["device"] = "mps"
        report.ok("Apple GPU (MPS); fp8 matrix products no")
    else:
        facts["device"] = "cpu"
        report.warn("no GPU: everything runs on the CPU, but a 1024x1024 edit takes a very long time")
    return facts


def check_modes(report: Report, facts: dict) -> None:
    report.section("Loader modes")
    if not facts:
        report.info("unknown without torch")
        return
    bf16_weights = KONTEXT_PARAMS * 2 / GIB
    if facts.get("device") in ("cpu", "mps") or "total" not in facts:
        report.info("GGUF on_the_fly / materialize, fp8, bf16: all load; speed is the CPU's")
        return
    total = facts["total"] / GIB
    report.ok("GGUF on_the_fly: runs (weights stay quantized; Q4_K needs about 7.5 GiB, Q8_0 about 13 GiB)")
    if total >= bf16_weights + 4:
        report.ok(f"GGUF materialize: runs (needs about {bf16_weights:.0f} GiB for the dequantized weights)")
    else:
        report.warn(
            f"GGUF materialize: too little VRAM ({total:.0f} GiB < {bf16_weights + 4:.0f}); auto picks on_the_fly"
        )
    if total >= 14:
        report.ok("fp8 (stored fp8, computed in bf16/fp16): runs (about 12.5 GiB)")
    else:
        report.warn(f"fp8: {total:.0f} GiB is tight for the 12 GiB of fp8 weights; prefer a GGUF Q4/Q5 file")
    fp8_weights = KONTEXT_PARAMS / GIB
    if total >= fp8_weights + 8:
        report.ok(
            f"GGUF materialize_fp8: runs (about {fp8_weights:.0f} GiB of fp8 weights beside the GGUF's)"
            + ("; multiplies in fp8" if facts.get("fp8_matmul") else "; upcast per layer (no fp8 matmul here)")
        )
    else:
        report.warn(f"GGUF materialize_fp8: too little VRAM ({total:.0f} GiB); use on_the_fly")
    if facts.get("fp8_matmul"):
        report.ok("fp8_matmul: available")
    else:
        report.info("fp8_matmul: not on this GPU (ignored when set)")


def check_server(report: Report, url: str, smoke: bool) -> None:
    from .comfy_client import ComfyClient, NotComfyUI

    report.section(f"ComfyUI server {url}")
    client = ComfyClient(url, timeout=15)
    try:
        stats = client.system_stats()
    except NotComfyUI as exc:
        report.missing(f"{url} answers, but not as ComfyUI", f"{exc}")
        return
    except AtelierError as exc:
        report.missing(f"no answer from {url}", f"{exc}")
        return
    system = stats.get("system") or {}
    report.ok(
        f"ComfyUI {system.get('comfyui_version', '?')}, Python {(str(system.get('python_version', '?')).split() or ['?'])[0]}"
    )
    for device in stats.get("devices", []):
        report.ok(
            f"device {device.get('name')}: {device.get('vram_total', 0) / GIB:.1f} GiB, "
            f"{device.get('vram_free', 0) / GIB:.1f} GiB free"
        )
    try:
        info = client.object_info("AtelierKontextLoader").get("AtelierKontextLoader")
    except AtelierError:
        info = None
    if not info:
        report.missing("the server has no Kontext Atelier nodes", "install the pack in custom_nodes and restart")
        return
    options = _loader_options(info)
    if options is None:
        report.missing("the server's Kontext Loader does not list its model files", "update the pack and restart")
        return
    report.ok(f"Kontext Atelier loaded; the loader sees {len(options)} transformer file(s)")
    if smoke:
        run_smoke(report, client, set(options))


def _loader_options(info) -> list | None:
    """The loader's model_name choices from /object_info (the V1 list or the V3 COMBO form), None when absent."""
    try:
        options = info["input"]["required"]["model_name"]
        options = options[1]["options"] if options[0] == "COMBO" else options[0]
    except (KeyError, IndexError, TypeError):
        return None
    return options if isinstance(options, list) else None


def _png(width: int, height: int, rgb=(128, 112, 96)) -> bytes:
    """A flat-colour RGB PNG written with zlib (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def run_smoke(report: Report, client, loader_options: set[str]) -> None:
    """Load the model and run one sampling step on the server (256x256), through a shipped workflow."""
    from types import SimpleNamespace

    from .run import Job, Runner, Settings, load_workflow

    for name in SMOKE_WORKFLOWS:
        _, template = load_workflow(name)
        model = next((n["inputs"]["model_name"] for n in template.values() if "model_name" in n["inputs"]), None)
        if model in loader_options:
            break
    else:
        report.missing("one-step test: none of the shipped edit workflows' transformers is on the server")
        return
    with tempfile.TemporaryDirectory(prefix="kontext_doctor_") as tmp:
        image = Path(tmp) / "doctor.png"
        image.write_bytes(_png(256, 256))
        sets = ["Sampler.steps=1", 'Aspect lock.size="keep input ratio"', "Aspect lock.megapixels=0.0625"]
        settings = Settings("make the colour slightly warmer", 0, sets, [])
        args = SimpleNamespace(verbose=False, timeout=1800, reconnect_timeout=10, max_queued=1)
        runner = Runner(client, template, settings, Path(tmp) / "out", args)
        rc = runner.run([Job(image, image.name)])
    if rc == 0:
        report.ok(f"one-step edit with {name} ({model}) ran on the server")
    else:
        report.missing(f"one-step edit with {name} failed (see the error above)")


def handle(args) -> int:
    report = Report()
    # The user's own ComfyUI only: the test hosts in the host cache are not what they run.
    check_files(report, find_comfyui(args.comfyui, use_cache=False))
    facts = check_torch(report)
    check_modes(report, facts)
    if args.server:
        check_server(report, args.server, args.smoke)
    elif args.smoke:
        report.missing("--smoke needs --server URL (a running ComfyUI)")
    report.section("Summary")
    if report.problems:
        for problem in report.problems:
            report.out.write(f"  missing: {problem}\n")
        return 1
    report.out.write("  ready\n")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check ComfyUI, model files, GPU/VRAM/fp8 support and a running server",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--comfyui", metavar="PATH", help="the ComfyUI folder (default: found automatically)")
    parser.add_argument("--server", metavar="URL", help="also check a running ComfyUI, e.g. http://127.0.0.1:8188")
    parser.add_argument("--smoke", action="store_true", help="with --server: load the model and run one step there")
    parser.set_defaults(handler=handle)
