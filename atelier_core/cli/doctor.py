"""kontext-atelier doctor: is this machine ready for Kontext editing, and if not, what is missing.

Finds ComfyUI with the project's one host finder (``--comfyui``, ``COMFYUI_PATH``, the ComfyUI this pack sits in,
``~/ComfyUI``; never the test hosts' cache), or asks the running server where its folders are (``--server``, else
http://127.0.0.1:8188 when something answers there). For each shipped Kontext workflow (``--all`` adds the FLUX.2
and Qwen-Image-Edit ones, ``--workflow`` picks) it names the model files missing, with their folder and download,
from the server's own lists when it runs the pack, else from the folder on disk. It reports what each transformer file
found is, the GPU, its memory and fp8 support through torch, and which loader modes will run; ``--smoke`` queues a
one-step edit on the server (256x256, the first shipped edit workflow whose model is present). It says "ready" only
when every chosen workflow has all its files, and exits 1 otherwise.
"""

from __future__ import annotations

import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AtelierError
from ..runtime.hosts import HostSearch, find_comfyui

PACK_DIR = Path(__file__).resolve().parents[2]
DEFAULT_SERVER = "http://127.0.0.1:8188"
KONTEXT_PARAMS = 11.9e9  # FLUX.1 Kontext [dev] transformer parameters
GIB = 1024**3
SMOKE_WORKFLOWS = ("kontext_edit_gguf", "kontext_edit_fp8")


class Report:
    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.problems: list[str] = []
        self.ready_workflows: list[str] = []

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

    def missing_line(self, text: str) -> None:
        """A MISSING line whose problem is counted elsewhere (a workflow's files, each counted once as a file)."""
        self.out.write(f"  MISSING  {text}\n")

    def warn(self, text: str) -> None:
        self.out.write(f"  note     {text}\n")


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


def is_this_pack(path: Path) -> bool:
    """A custom_nodes entry (folder, clone or symlink) that holds this pack, wherever the command itself runs from."""
    try:
        return path.resolve() == PACK_DIR or (
            (path / "nodes" / "loader.py").is_file() and (path / "atelier_core" / "model_catalog.py").is_file()
        )
    except OSError:
        return False


def check_comfyui(report: Report, search: HostSearch, server: ServerView | None) -> Path | None:
    """The ComfyUI folder (found on disk, else the server's), and whether the pack is in its custom_nodes."""
    report.section("ComfyUI")
    root = search.root or (server.root if server else None)
    if root is None:
        looked = ", ".join(f"{label} ({path})" for label, path in search.tried)
        report.missing(
            "no ComfyUI found",
            f"{search.reason}; or pass --comfyui PATH, or --server URL of a running one (looked at: {looked}, and "
            f"asked {DEFAULT_SERVER})",
        )
        return None
    how = "" if search.root else f" (the folder of the server at {server.url})"
    version = search.version if search.root else server.version
    report.ok(f"ComfyUI at {root}" + (f" (version {version})" if version else "") + how)
    custom = root / "custom_nodes"
    links = [p for p in sorted(custom.glob("*")) if is_this_pack(p)] if custom.is_dir() else []
    if links:
        kind = "linked" if links[0].is_symlink() else "installed"
        report.ok(f"this pack is {kind} as custom_nodes/{links[0].name}")
    elif server and server.has_pack:
        report.ok(f"the server at {server.url} runs this pack")
    else:
        report.warn(f"this pack is not in {custom}; clone or link it there and restart ComfyUI")
    return root


def check_models(report: Report, args, root: Path | None, server: ServerView | None) -> None:
    from .doctor_models import (
        availability,
        check_workflows,
        chosen_workflows,
        files_in,
        local_folders,
        server_folders,
    )

    workflows = chosen_workflows(list(args.workflow or []), bool(args.all))
    if server and server.has_pack:
        source = f"the model lists of the server at {server.url}"
    elif server and server.folder_paths:
        source = f"the model folders of the server at {server.url}"
    else:
        source = f"{root}/models" if root else None
    scope = "" if args.workflow or args.all else " (Kontext; --all adds FLUX.2 and Qwen-Image-Edit)"
    report.section(f"Workflows{scope}" + (f", files from {source}" if source else ""))
    if source is None:
        report.info("no ComfyUI to look in; the files each workflow needs are listed below")
    folders = server_folders(server.folder_paths) if server and server.folder_paths else None
    folders = folders or (local_folders(root) if root else {})
    has_pack = bool(server and server.has_pack)
    report.ready_workflows = check_workflows(
        report, workflows, availability(server.client if server else None, folders, has_pack)
    )
    found = files_in(folders.get("diffusion_models", [])).values()
    transformers = sorted(p for p in found if p.suffix.lower() in (".gguf", ".safetensors", ".sft"))
    if transformers:
        report.info("transformers found:")
        for path in transformers:
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


@dataclass
class ServerView:
    """What a running ComfyUI says about itself: version, devices, model folders, and whether it runs the pack."""

    url: str
    client: object
    stats: dict
    folder_paths: dict = field(default_factory=dict)
    loader: dict | None = None  # /object_info of the Kontext Loader; None when the server lacks the pack

    @property
    def version(self) -> str | None:
        return (self.stats.get("system") or {}).get("comfyui_version")

    @property
    def has_pack(self) -> bool:
        return bool(self.loader)

    @property
    def root(self) -> Path | None:
        custom = self.folder_paths.get("custom_nodes") or []
        return Path(custom[0]).parent if custom else None


NOT_COMFYUI = "answers, but not as ComfyUI: "


def connect(url: str | None) -> tuple[ServerView | None, str | None]:
    """The server at ``url`` (or the default address, asked briefly) and why it did not answer."""
    from .comfy_client import ComfyClient, NotComfyUI, ServerUnreachable

    client = ComfyClient(url or DEFAULT_SERVER, timeout=15 if url else 2)
    try:
        stats = client.system_stats()
    except NotComfyUI as exc:
        return None, f"{NOT_COMFYUI}{exc}"
    except (ServerUnreachable, AtelierError) as exc:
        return None, str(exc)
    view = ServerView(client.base, client, stats)
    for attempt in ("folder_paths", "loader"):
        try:
            if attempt == "folder_paths":
                view.folder_paths = client.get_json("/internal/folder_paths") or {}
            else:
                view.loader = client.object_info("AtelierKontextLoader").get("AtelierKontextLoader")
        except (ServerUnreachable, AtelierError, ValueError):
            pass  # an older or locked-down server: the rest of the report still stands
    return view, None


def check_server(report: Report, args, server: ServerView | None, failure: str | None) -> None:
    if server is None:
        if args.server:
            report.section(f"ComfyUI server {args.server}")
            if (failure or "").startswith(NOT_COMFYUI):
                report.missing(f"{args.server} {NOT_COMFYUI[:-2]}", failure[len(NOT_COMFYUI) :])
            else:
                report.missing(f"no answer from {args.server}", failure or "")
        elif args.smoke:
            report.missing("--smoke needs a running ComfyUI (none answered at " + DEFAULT_SERVER + "; pass --server)")
        return
    report.section(f"ComfyUI server {server.url}")
    system = server.stats.get("system") or {}
    python = (str(system.get("python_version", "?")).split() or ["?"])[0]
    report.ok(f"ComfyUI {server.version or '?'}, Python {python}")
    for device in server.stats.get("devices", []):
        report.ok(
            f"device {device.get('name')}: {device.get('vram_total', 0) / GIB:.1f} GiB, "
            f"{device.get('vram_free', 0) / GIB:.1f} GiB free"
        )
    if not server.has_pack:
        report.missing("the server has no Kontext Atelier nodes", "install the pack in custom_nodes and restart")
        return
    from .model_precheck import combo_options

    options = combo_options(server.loader["input"]["required"]["model_name"]) or []
    report.ok(f"Kontext Atelier loaded; the loader sees {len(options)} transformer file(s)")
    if args.smoke:
        run_smoke(report, server.client, set(options))


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
    server, failure = (None, None) if args.no_server else connect(args.server)
    # The user's own ComfyUI only: the test hosts in the host cache are not what they run.
    root = check_comfyui(report, find_comfyui(args.comfyui, use_cache=False), server)
    check_models(report, args, root, server)
    facts = check_torch(report)
    check_modes(report, facts)
    check_server(report, args, server, failure)
    report.section("Summary")
    if report.ready_workflows:
        report.out.write(f"  ready for: {', '.join(report.ready_workflows)}\n")
    if report.problems:
        for problem in report.problems:
            report.out.write(f"  missing: {problem}\n")
        report.out.write("  not ready: fetch what is listed above (or check one workflow with --workflow NAME)\n")
        return 1
    report.out.write("  ready\n")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check ComfyUI, the model files each workflow needs, GPU/VRAM/fp8 support and a running server",
        description=(__doc__ or "").split("\n\n")[0].replace("``", ""),
    )
    parser.add_argument("--comfyui", metavar="PATH", help="the ComfyUI folder (default: found automatically)")
    parser.add_argument(
        "--server", metavar="URL", help=f"a running ComfyUI to check (default: {DEFAULT_SERVER} if it answers)"
    )
    parser.add_argument("--no-server", action="store_true", help="do not ask a running ComfyUI")
    parser.add_argument(
        "--workflow",
        action="append",
        metavar="NAME",
        help="check only this shipped workflow (or .api.json file); repeatable (default: every Kontext workflow)",
    )
    parser.add_argument(
        "--all", action="store_true", help="also check the FLUX.2 and Qwen-Image-Edit workflows' model files"
    )
    parser.add_argument("--smoke", action="store_true", help="load the model on the server and run one step there")
    parser.set_defaults(handler=handle)
