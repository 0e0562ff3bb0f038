"""``kontext-atelier run``: fill an API-format workflow, queue it on a ComfyUI server, show progress, fetch results.

How the workflow is filled (titles are the nodes' ``_meta.title``, matched without regard to case; the shipped
workflows follow these conventions, see workflows/build.py):

- ``--image``: the ``LoadImage`` titled ``Image`` (or the only ``LoadImage`` whose title does not start with
  ``Reference``);
- ``--reference`` (repeatable): the ``LoadImage`` nodes titled ``Reference 2``, ``Reference 3``, ... in order; those
  left without an image are removed together with the links they fed (the Context Stitcher's extra images are
  optional inputs);
- ``--prompt``: the ``text`` input of the node titled ``Prompt`` (or of the only ``CLIPTextEncode``);
- ``--seed N|random``: the ``seed``/``noise_seed`` of the node titled ``Sampler`` (or of every KSampler / RandomNoise);
- ``--set NODE.INPUT=VALUE``: any input; NODE is a node id or title, VALUE is JSON when it parses (``24``,
  ``true``, ``2.5``) and a string otherwise.

Completion is read from ``/history``; the websocket only drives the progress display. ``--batch FOLDER`` queues one
job per image and keeps ``.kontext-atelier-batch.json`` in the output folder: finished items are skipped when the
command is run again, and an item whose prompt the server no longer knows (a restart lost its queue) is queued
again, so nothing is lost.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AtelierError
from .comfy_client import (
    ComfyClient,
    PromptRefused,
    ServerUnreachable,
    WebSocket,
    WebSocketClosed,
    describe_node,
    format_execution_error,
    format_prompt_error,
)

log = logging.getLogger(__name__)

PACK_DIR = Path(__file__).resolve().parents[2]
# The package's own copy (written by workflows/build.py) is what an install from a wheel has; a checkout finds the
# same files in workflows/api first.
PACKAGE_WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "data" / "workflows"
WORKFLOW_DIRS = (PACK_DIR / "workflows" / "api", PACK_DIR / "workflows", PACKAGE_WORKFLOW_DIR)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
STATE_FILE = ".kontext-atelier-batch.json"
SAMPLER_TYPES = {"KSampler", "KSamplerAdvanced", "RandomNoise", "SamplerCustom"}
SEED_INPUTS = ("seed", "noise_seed")
POLL_S = 1.0
MAX_SEED = 2**32 - 1


# -- workflow ---------------------------------------------------------------------------------------------------------


def available_workflows() -> list[str]:
    names = set()
    for folder in WORKFLOW_DIRS:
        names.update(p.name[: -len(".api.json")] for p in folder.glob("*.api.json"))
    return sorted(names)


def load_workflow(spec: str) -> tuple[str, dict]:
    """(name, API prompt) from a file path or the name of a shipped workflow."""
    path = Path(spec).expanduser()
    if not path.is_file():
        stem = spec[: -len(".api.json")] if spec.endswith(".api.json") else spec.removesuffix(".json")
        candidates = [folder / f"{stem}.api.json" for folder in WORKFLOW_DIRS]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            names = ", ".join(available_workflows()) or "none found"
            raise AtelierError(f"no workflow file or shipped workflow named {spec!r}; shipped workflows: {names}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AtelierError(f"cannot read workflow {path}: {exc}") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise AtelierError(
            f"{path} is a UI-format workflow (what the browser saves). Use its API version "
            "(workflows/api/<name>.api.json, or in ComfyUI: Workflow > Export (API))."
        )
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        raise AtelierError(f"{path} is not an API-format workflow (a map of node id -> class_type/inputs)")
    return path.name.removesuffix(".json").removesuffix(".api"), data


def _title(node: dict) -> str:
    return str((node.get("_meta") or {}).get("title", "")).strip().lower()


def find_nodes(prompt: dict, title: str) -> list[str]:
    return [node_id for node_id, node in prompt.items() if _title(node) == title.lower()]


def image_node(prompt: dict) -> str:
    titled = [i for i in find_nodes(prompt, "image") if prompt[i]["class_type"].startswith("LoadImage")]
    if titled:
        return titled[0]
    loaders = [i for i, n in prompt.items() if n["class_type"] == "LoadImage" and not _title(n).startswith("reference")]
    if len(loaders) == 1:
        return loaders[0]
    raise AtelierError(
        "the workflow needs one LoadImage titled 'Image' for --image "
        f"(found {len(loaders)} LoadImage nodes without that title)"
    )


def reference_nodes(prompt: dict) -> list[str]:
    found = []
    for node_id, node in prompt.items():
        match = re.fullmatch(r"reference\s*(\d+)", _title(node))
        if match and node["class_type"].startswith("LoadImage"):
            found.append((int(match.group(1)), node_id))
    return [node_id for _, node_id in sorted(found)]


def prompt_node(prompt: dict) -> str:
    titled = [i for i in find_nodes(prompt, "prompt") if "text" in prompt[i]["inputs"]]
    if titled:
        return titled[0]
    encoders = [i for i, n in prompt.items() if n["class_type"] == "CLIPTextEncode"]
    if len(encoders) == 1:
        return encoders[0]
    raise AtelierError("--prompt needs a text encoder titled 'Prompt' in the workflow (with a 'text' input)")


def seed_targets(prompt: dict) -> list[tuple[str, str]]:
    def seeds(node_id: str) -> list[tuple[str, str]]:
        inputs = prompt[node_id]["inputs"]
        return [(node_id, k) for k in SEED_INPUTS if k in inputs and not isinstance(inputs[k], list)]

    titled = [t for i in find_nodes(prompt, "sampler") for t in seeds(i)]
    if titled:
        return titled
    return [t for i, n in prompt.items() if n["class_type"] in SAMPLER_TYPES for t in seeds(i)]


def remove_node(prompt: dict, node_id: str) -> None:
    """Drop a node and every link from it (unused reference loaders feed only optional inputs)."""
    prompt.pop(node_id, None)
    for node in prompt.values():
        for key, value in list(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == node_id:
                del node["inputs"][key]


def parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_sets(prompt: dict, sets: list[str]) -> None:
    for item in sets:
        target, eq, raw = item.partition("=")
        node_ref, dot, input_name = target.rpartition(".")
        if not eq or not dot or not node_ref or not input_name:
            raise AtelierError(f"--set {item!r}: write NODE.INPUT=VALUE (NODE is a node id or title)")
        ids = [node_ref] if node_ref in prompt else find_nodes(prompt, node_ref)
        if not ids:
            titles = ", ".join(sorted({f"{i}:{(n.get('_meta') or {}).get('title', '')}" for i, n in prompt.items()}))
            raise AtelierError(f"--set {item!r}: no node with id or title {node_ref!r}; nodes: {titles}")
        for node_id in ids:
            prompt[node_id]["inputs"][input_name] = parse_value(raw)


@dataclass
class Settings:
    prompt_text: str | None
    seed: int | None
    sets: list[str]
    references: list[Path]


def fill(template: dict, image_value: str, reference_values: list[str], settings: Settings) -> dict:
    prompt = copy.deepcopy(template)
    prompt[image_node(prompt)]["inputs"]["image"] = image_value
    slots = reference_nodes(prompt)
    if len(reference_values) > len(slots):
        raise AtelierError(
            f"{len(reference_values)} --reference images given, the workflow has {len(slots)} reference slots "
            "(LoadImage nodes titled 'Reference 2', 'Reference 3', ...)"
        )
    for node_id, value in zip(slots, reference_values, strict=False):
        prompt[node_id]["inputs"]["image"] = value
    for node_id in slots[len(reference_values) :]:
        remove_node(prompt, node_id)
    if settings.prompt_text is not None:
        prompt[prompt_node(prompt)]["inputs"]["text"] = settings.prompt_text
    if settings.seed is not None:
        targets = seed_targets(prompt)
        if not targets:
            raise AtelierError("--seed: the workflow has no sampler seed (a node titled 'Sampler' or a KSampler)")
        for node_id, key in targets:
            prompt[node_id]["inputs"][key] = settings.seed
    apply_sets(prompt, settings.sets)
    return prompt


# -- jobs -------------------------------------------------------------------------------------------------------------


@dataclass
class Job:
    image: Path
    key: str  # file name in the batch folder (the state file's key)
    status: str = "new"  # new -> queued -> done | failed
    prompt_id: str | None = None
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    prompt: dict | None = None  # the filled prompt last queued (for error messages)

    def to_state(self) -> dict:
        return {"status": self.status, "prompt_id": self.prompt_id, "outputs": self.outputs, "error": self.error}


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def upload_name(path: Path) -> str:
    """A content-addressed name: the same file uploads to the same name (re-runs overwrite, never pile up)."""
    return f"{path.stem}_{_digest(path)}{path.suffix.lower()}"


class Runner:
    def __init__(self, client: ComfyClient, template: dict, settings: Settings, out_dir: Path, args):
        self.client = client
        self.template = template
        self.settings = settings
        self.out_dir = out_dir
        self.verbose = bool(args.verbose)
        self.job_timeout = float(args.timeout)
        self.reconnect_timeout = float(args.reconnect_timeout)
        self.max_queued = max(1, int(args.max_queued))
        self.state_path: Path | None = None
        self.state: dict = {}
        self.ws: WebSocket | None = None
        self.progress = Progress(sys.stderr)
        self._reference_values: list[str] | None = None

    # -- state ------------------------------------------------------------------------------------------------------
    def load_state(self, signature: str) -> None:
        self.state_path = self.out_dir / STATE_FILE
        if self.state_path.is_file():
            try:
                self.state = json.loads(self.state_path.read_text())
            except ValueError:
                log.warning("ignoring an unreadable %s", self.state_path)
                self.state = {}
            if self.state.get("signature") not in (None, signature):
                raise AtelierError(
                    f"{self.out_dir} holds a batch run with other settings (workflow, prompt, seed, --set or "
                    "references differ); choose another -o folder or pass --fresh to start over there"
                )
        self.state.setdefault("items", {})
        self.state["signature"] = signature

    def save_state(self, jobs: list[Job]) -> None:
        if self.state_path is None:
            return
        for job in jobs:
            self.state["items"][job.key] = job.to_state()
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_path)  # never a half-written state file

    def restore(self, job: Job) -> None:
        saved = self.state.get("items", {}).get(job.key)
        if not saved:
            return
        if saved.get("status") == "done" and all((self.out_dir / o).is_file() for o in saved.get("outputs", [])):
            job.status, job.outputs = "done", list(saved["outputs"])
        elif saved.get("status") == "queued" and saved.get("prompt_id"):
            job.status, job.prompt_id = "queued", saved["prompt_id"]

    # -- server calls with reconnect --------------------------------------------------------------------------------
    def call(self, fn, *args):
        """Run a request; while the server is down (restarting), retry for up to --reconnect-timeout seconds."""
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.5
        warned = False
        for _ in range(100_000):
            try:
                return fn(*args)
            except ServerUnreachable as exc:
                if time.monotonic() >= deadline:
                    raise ServerUnreachable(
                        f"{exc}; gave up after {self.reconnect_timeout:.0f} s. Unfinished items are recorded: "
                        "run the same command again to resume."
                    ) from None
                if not warned:
                    self.progress.note(f"server unreachable, waiting for it to come back ({exc})")
                    warned = True
                self.close_ws()
                time.sleep(delay)
                delay = min(delay * 1.5, 5.0)
        raise ServerUnreachable("retry limit reached")

    def open_ws(self) -> None:
        if self.ws is not None:
            return
        try:
            self.ws = self.client.websocket()
        except WebSocketClosed as exc:
            log.debug("no websocket (%s); progress comes from polling", exc)
            self.ws = None

    def close_ws(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    # -- one job ----------------------------------------------------------------------------------------------------
    def queue(self, job: Job) -> None:
        image_value = self.call(self.client.upload_image, job.image, upload_name(job.image))
        if self._reference_values is None:
            self._reference_values = [
                self.call(self.client.upload_image, ref, upload_name(ref)) for ref in self.settings.references
            ]
        job.prompt = fill(self.template, image_value, self._reference_values, self.settings)
        try:
            job.prompt_id = self.call(self.client.queue_prompt, job.prompt)
        except PromptRefused as exc:
            job.status, job.error = "failed", format_prompt_error(exc.body, job.prompt)
            return
        job.status = "queued"
        self.progress.note(f"{job.key}: queued as {job.prompt_id}")

    def check(self, job: Job, queued_ids: set[str]) -> None:
        """Finish the job if the server has its result; re-queue it if the server has forgotten it."""
        entry = self.call(self.client.history, job.prompt_id)
        if entry is None:
            if job.prompt_id not in queued_ids:
                self.progress.note(
                    f"{job.key}: the server no longer knows prompt {job.prompt_id} (restarted?); queueing it again"
                )
                job.status, job.prompt_id = "new", None
                self._reference_values = None  # a fresh server may have lost the uploads too
            return
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            errors = [data for event, data in status.get("messages", []) if event == "execution_error"]
            interrupted = any(event == "execution_interrupted" for event, _ in status.get("messages", []))
            if errors:
                job.error = format_execution_error(errors[-1], job.prompt, self.verbose)
            else:
                job.error = "interrupted" if interrupted else "the server reported a failure without details"
            job.status = "failed"
            return
        job.outputs = self.download(job, entry.get("outputs") or {})
        job.status = "done"
        self.progress.note(f"{job.key}: done -> {', '.join(job.outputs) or 'no saved images'}")

    def download(self, job: Job, outputs: dict) -> list[str]:
        files = []
        for node_id in sorted(outputs, key=lambda k: (len(str(k)), str(k))):
            for kind in ("images", "gifs", "videos", "audio"):
                for item in outputs[node_id].get(kind, []) or []:
                    if isinstance(item, dict) and item.get("type") == "output" and item.get("filename"):
                        files.append(item)
        names = []
        stem = Path(job.key).stem + "_kontext"
        for index, item in enumerate(files):
            suffix = Path(item["filename"]).suffix or ".png"
            name = f"{stem}{'' if len(files) == 1 else f'_{index + 1}'}{suffix}"
            data = self.call(self.client.download, item["filename"], item.get("subfolder", ""), "output")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.out_dir / (name + ".partial")
            tmp.write_bytes(data)
            tmp.replace(self.out_dir / name)
            names.append(name)
        return names

    # -- the loop ---------------------------------------------------------------------------------------------------
    def run(self, jobs: list[Job]) -> int:
        for job in jobs:
            self.restore(job)
        skipped = [j for j in jobs if j.status == "done"]
        if skipped and len(jobs) > 1:
            self.progress.note(f"{len(skipped)} of {len(jobs)} already done (recorded in {STATE_FILE}); skipping")
        self.open_ws()
        started = {id(j): time.monotonic() for j in jobs}
        deadline = time.monotonic() + self.job_timeout * max(1, len(jobs))
        try:
            for _ in range(10_000_000):
                active = [j for j in jobs if j.status in ("new", "queued")]
                if not active:
                    break
                if time.monotonic() > deadline:
                    raise AtelierError(f"gave up waiting after {self.job_timeout:.0f} s per job (--timeout)")
                queued = [j for j in active if j.status == "queued"]
                for job in [j for j in active if j.status == "new"][: max(0, self.max_queued - len(queued))]:
                    self.queue(job)
                    started[id(job)] = time.monotonic()
                    self.save_state(jobs)
                self.listen(POLL_S)
                pending = [j for j in jobs if j.status == "queued"]
                if pending:
                    queued_ids = self.call(self.client.queued_ids)
                    for job in pending:
                        self.check(job, queued_ids)
                        if job.status == "queued" and time.monotonic() - started[id(job)] > self.job_timeout:
                            job.status, job.error = "failed", f"no result after {self.job_timeout:.0f} s (--timeout)"
                        if job.status != "queued":
                            self.save_state(jobs)  # record each result at once: a crash now loses nothing
        finally:
            self.save_state(jobs)
            self.close_ws()
            self.progress.done()
        failed = [j for j in jobs if j.status == "failed"]
        for job in failed:
            sys.stderr.write(f"error: {job.key}: {job.error}\n")
        done = [j for j in jobs if j.status == "done"]
        sys.stderr.write(f"{len(done)} of {len(jobs)} done, {len(failed)} failed; outputs in {self.out_dir}\n")
        return 1 if failed else 0

    def listen(self, seconds: float) -> None:
        """Show websocket progress for up to ``seconds`` (or just wait, without a websocket)."""
        end = time.monotonic() + seconds
        if self.ws is None:
            self.open_ws()
        for _ in range(100_000):
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.ws is None:
                time.sleep(left)
                return
            try:
                text = self.ws.recv(left)
            except WebSocketClosed:
                self.close_ws()
                continue
            if text is None:
                continue
            try:
                message = json.loads(text)
            except ValueError:
                continue
            self.progress.message(message)
            if (
                message.get("type") in ("executing", "execution_success", "execution_error")
                and (message.get("data") or {}).get("node") is None
            ):
                return  # something finished: check /history now


class Progress:
    """One status line per node on a terminal (a bar for sampling steps); plain lines elsewhere."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.open_line = False
        self.last_node = None

    def _line(self, text: str, final: bool = True) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
            self.open_line = not final
        else:
            if final:
                self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
        self._line(text)

    def message(self, message: dict) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        if kind == "executing" and data.get("node") is not None and data.get("node") != self.last_node:
            self.last_node = data.get("node")
            self._line(f"  running node {data['node']}", final=not self.tty)
        elif kind == "progress":
            value, maximum = int(data.get("value", 0)), max(1, int(data.get("max", 1)))
            filled = int(24 * value / maximum)
            text = f"  node {data.get('node')}: [{'#' * filled}{'.' * (24 - filled)}] {value}/{maximum}"
            if self.tty:
                self._line(text, final=False)
            elif value == maximum:
                self._line(text)
        elif kind == "execution_error":
            self.note("  " + format_execution_error(data))

    def done(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False


# -- command ----------------------------------------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise AtelierError(f"--batch {folder}: not a folder")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise AtelierError(f"--batch {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def _seed(text: str | None) -> int | None:
    if text is None:
        return None
    if text.lower() == "random":
        return random.randint(0, MAX_SEED)
    try:
        value = int(text)
    except ValueError:
        raise AtelierError(f"--seed must be a whole number or 'random', not {text!r}") from None
    if not 0 <= value <= 2**64 - 1:
        raise AtelierError("--seed must be between 0 and 2^64-1")
    return value


def handle(args) -> int:
    name, template = load_workflow(args.workflow)
    if bool(args.image) == bool(args.batch):
        raise AtelierError("give either --image IMG or --batch FOLDER")
    for ref in args.reference:
        if not Path(ref).is_file():
            raise AtelierError(f"--reference {ref}: no such file")
    if args.image and not Path(args.image).is_file():
        raise AtelierError(f"--image {args.image}: no such file")
    seed_text = args.seed
    settings = Settings(args.prompt, None, list(args.set), [Path(r) for r in args.reference])
    out_dir = Path(args.output).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    client = ComfyClient(args.server)
    # Fail early, with the node errors, on anything that does not depend on the images.
    probe = fill(
        template,
        "probe.png",
        ["probe.png"] * len(settings.references),
        Settings(settings.prompt_text, 0 if seed_text else None, settings.sets, settings.references),
    )
    del probe
    if args.batch:
        images = _images_in(Path(args.batch).expanduser())
        jobs = [Job(p, p.name) for p in images]
    else:
        image = Path(args.image)
        jobs = [Job(image, image.name)]
    runner = Runner(client, template, settings, out_dir, args)
    if args.batch:
        signature = hashlib.sha1(
            json.dumps(
                [name, template, args.prompt, seed_text, sorted(args.set), [_digest(r) for r in settings.references]],
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        if args.fresh and (out_dir / STATE_FILE).is_file():
            (out_dir / STATE_FILE).unlink()
        runner.load_state(signature)
        # A random seed is drawn once per batch and kept, so a resumed batch continues with the same seed.
        if seed_text and seed_text.lower() == "random":
            runner.state.setdefault("seed", _seed(seed_text))
            settings.seed = int(runner.state["seed"])
        else:
            settings.seed = _seed(seed_text)
    else:
        settings.seed = _seed(seed_text)
    try:
        client_stats = runner.call(client.system_stats)
    except ServerUnreachable as exc:
        raise AtelierError(f"{exc}. Start ComfyUI (python main.py --listen) or pass --server URL.") from None
    log.debug("server: %s", (client_stats.get("system") or {}).get("comfyui_version"))
    sys.stderr.write(f"{name}: {len(jobs)} job(s) on {client.base}\n")
    return runner.run(jobs)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="queue a workflow on a running ComfyUI server and download the results",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(
            "examples:\n"
            "  kontext-atelier run kontext_edit_gguf --image knight.png --prompt 'paint the cloak red'\n"
            "  kontext-atelier run kontext_multi_reference_fp8 --image knight.png --reference cloak.png "
            "--prompt '...' --seed 7\n"
            "  kontext-atelier run my_workflow.api.json --batch photos/ -o edited/ --set Sampler.steps=20\n"
            f"shipped workflows: {', '.join(available_workflows()) or 'none found'}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workflow", help="an API-format workflow file (.api.json) or the name of a shipped workflow")
    parser.add_argument("--image", help="the image to edit (goes to the LoadImage titled 'Image')")
    parser.add_argument("--batch", metavar="FOLDER", help="edit every image in FOLDER, one queued job each (resumable)")
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="IMG",
        help="a reference image for the 'Reference 2', 'Reference 3', ... loaders (repeatable)",
    )
    parser.add_argument("--prompt", help="the edit instruction (the text of the node titled 'Prompt')")
    parser.add_argument("--seed", help="sampler seed: a number, or 'random' (default: the workflow's)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="set any input; NODE is a node id or title, VALUE is JSON or text (repeatable)",
    )
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI address (default %(default)s)")
    parser.add_argument("-o", "--output", default=".", help="folder for the results (default: current folder)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for one job (default 3600)")
    parser.add_argument(
        "--reconnect-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a server that went away (a restart) before giving up (default 300)",
    )
    parser.add_argument(
        "--max-queued", type=int, default=4, help="batch: jobs waiting on the server at once (default 4)"
    )
    parser.add_argument("--fresh", action="store_true", help="batch: forget the recorded state in the output folder")
    parser.set_defaults(handler=handle)


__all__ = ["register", "load_workflow", "fill", "Settings", "describe_node"]
