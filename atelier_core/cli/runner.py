"""The queue-and-collect half of ``kontext-atelier run``: upload, queue, follow and download one job per image,
with the batch state file that lets a re-run skip finished items and re-queue lost ones."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AtelierError
from ..workflow_fill import Settings, fill
from .comfy_client import (
    ComfyClient,
    PromptRefused,
    ServerUnreachable,
    WebSocket,
    WebSocketClosed,
    format_execution_error,
    format_prompt_error,
)
from .run_progress import Progress

log = logging.getLogger(__name__)

STATE_FILE = ".kontext-atelier-batch.json"
POLL_S = 1.0


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


def digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def upload_name(path: Path) -> str:
    """A content-addressed name: the same file uploads to the same name (re-runs overwrite, never pile up)."""
    return f"{path.stem}_{digest(path)}{path.suffix.lower()}"


def read_state(path: Path) -> dict:
    """The batch state file, checked for the shape this module writes; a clear refusal naming it otherwise."""
    from ..safe_json import load_json_limited

    fix = f"delete {path} or pass --fresh to start the batch over (finished outputs stay in the folder)"
    try:
        state = load_json_limited(path, max_bytes=64 << 20, max_depth=8, what=f"batch state file {path}")
    except AtelierError as exc:
        raise AtelierError(f"{exc} To continue: {fix}.") from None
    items = state.get("items", {}) if isinstance(state, dict) else None
    good = isinstance(items, dict) and all(
        isinstance(v, dict)
        and isinstance(v.get("status", ""), str)
        and isinstance(v.get("prompt_id") or "", str)
        and isinstance(v.get("outputs", []), list)
        and all(isinstance(o, str) and Path(o).name == o for o in v.get("outputs", []))
        for v in items.values()
    )
    if not good or not isinstance(state.get("signature") or "", str) or not isinstance(state.get("seed", 0), int):
        raise AtelierError(f"{path} is not a batch state file this version wrote; {fix}.")
    return state


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
        self._jobs: list[Job] = []

    # -- state ------------------------------------------------------------------------------------------------------
    def load_state(self, signature: str) -> None:
        self.state_path = self.out_dir / STATE_FILE
        if self.state_path.is_file():
            self.state = read_state(self.state_path)
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
        try:
            image_value = self.call(self.client.upload_image, job.image, upload_name(job.image))
            if self._reference_values is None:
                self._reference_values = [
                    self.call(self.client.upload_image, ref, upload_name(ref)) for ref in self.settings.references
                ]
        except OSError as exc:  # an unreadable file (I/O error, permissions): this item fails, the batch goes on
            name = getattr(exc, "filename", None) or job.image
            job.status, job.error = (
                "failed",
                f"cannot read {name} ({exc.strerror or exc}); fix or remove it and run again",
            )
            return
        job.prompt = fill(self.template, image_value, self._reference_values, self.settings)
        try:
            job.prompt_id = self.call(self.client.queue_prompt, job.prompt)
        except PromptRefused as exc:
            job.status, job.error = "failed", format_prompt_error(exc.body, job.prompt)
            return
        job.status = "queued"
        self.progress.track(job.prompt_id, self._item_label(job), job.prompt)
        self.progress.note(f"{job.key}: queued as {job.prompt_id}")

    def _item_label(self, job: Job) -> str:
        jobs = self._jobs
        if len(jobs) < 2 or job not in jobs:
            return job.key
        return f"item {next(i for i, j in enumerate(jobs) if j is job) + 1} of {len(jobs)} ({job.key})"

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
        self.drain(job.prompt_id)
        job.outputs = self.download(job, entry.get("outputs") or {})
        job.status = "done"
        self.progress.note(f"{job.key}: done -> {', '.join(job.outputs) or 'no saved images'}")

    def drain(self, prompt_id: str, seconds: float = 5.0) -> None:
        """Show a finished job's last events: the server writes /history before its websocket has sent them all."""
        end = time.monotonic() + seconds
        while self.ws is not None and prompt_id not in self.progress.finished and time.monotonic() < end:
            self.listen(end - time.monotonic())

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
        self._jobs = jobs  # for "item k of n" in the progress lines
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
                self._queue_more(jobs, active, started)
                self.listen(POLL_S)
                self._check_pending(jobs, started)
        finally:
            self.save_state(jobs)
            self.close_ws()
            self.progress.done()
        return self._report(jobs)

    def _queue_more(self, jobs: list[Job], active: list[Job], started: dict[int, float]) -> None:
        """Queue new jobs while fewer than ``max_queued`` wait on the server."""
        queued = [j for j in active if j.status == "queued"]
        for job in [j for j in active if j.status == "new"][: max(0, self.max_queued - len(queued))]:
            self.queue(job)
            started[id(job)] = time.monotonic()
            self.save_state(jobs)

    def _check_pending(self, jobs: list[Job], started: dict[int, float]) -> None:
        pending = [j for j in jobs if j.status == "queued"]
        if not pending:
            return
        queued_ids = self.call(self.client.queued_ids)
        for job in pending:
            self.check(job, queued_ids)
            if job.status == "queued" and time.monotonic() - started[id(job)] > self.job_timeout:
                job.status, job.error = "failed", f"no result after {self.job_timeout:.0f} s (--timeout)"
            if job.status != "queued":
                self.save_state(jobs)  # record each result at once: a crash now loses nothing

    def _report(self, jobs: list[Job]) -> int:
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
