"""``kontext-atelier run``: fill an API-format workflow, queue it on a ComfyUI server, show progress, fetch results.

How the workflow is filled: see ``atelier_core.workflow_fill``. Queuing and collecting: ``atelier_core.cli.runner``.

Completion is read from ``/history``; the websocket only drives the progress display. ``--batch FOLDER`` queues one
job per image and keeps ``.kontext-atelier-batch.json`` in the output folder: finished items are skipped when the
command is run again, and an item whose prompt the server no longer knows (a restart lost its queue) is queued
again, so nothing is lost.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
from pathlib import Path

from ..errors import AtelierError
from ..workflow_fill import MAX_SEED, Settings, available_workflows, fill, load_workflow
from .comfy_client import ComfyClient, ServerUnreachable, describe_node
from .model_precheck import check_server_models
from .runner import STATE_FILE, Job, Runner, digest

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise AtelierError(f"--batch {folder}: not a folder")
    try:
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise AtelierError(f"--batch {folder}: cannot list the folder ({exc.strerror or exc})") from None
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


def _digest(path: Path) -> str:
    try:
        return digest(path)
    except OSError as exc:
        raise AtelierError(
            f"--reference {path}: cannot read it ({exc.strerror or exc}); fix or replace the file"
        ) from None


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
        # One try, no reconnect wait: a server that is not there at the start is a wrong address or not started.
        # The --reconnect-timeout wait is for a server that goes away in the middle of a batch.
        client_stats = client.system_stats()
    except ServerUnreachable as exc:
        raise AtelierError(f"{exc}. Start ComfyUI (python main.py --listen) or pass --server URL.") from None
    log.debug("server: %s", (client_stats.get("system") or {}).get("comfyui_version"))
    # Every model file the workflow loads must be on the server before anything is uploaded or queued.
    runner.call(check_server_models, client, probe)
    sys.stderr.write(f"{name}: {len(jobs)} job(s) on {client.base}\n")
    return runner.run(jobs)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="queue a workflow on a running ComfyUI server and download the results",
        description=(__doc__ or "").split("\n\n")[0].replace("``", ""),
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
