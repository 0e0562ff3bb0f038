"""A real ComfyUI, in this process, for host tests.

The host is found by ``atelier_core.runtime.hosts.find_comfyui`` (``COMFYUI_PATH``, the ComfyUI whose
``custom_nodes/`` holds this pack, ``~/ComfyUI``, then the test hosts ``.ci/hosts.py`` cached). The pack is loaded through ComfyUI's own custom-node loader (so "IMPORT FAILED" fails the test),
prompts are checked by ComfyUI's own ``validate_prompt`` and run by its ``PromptExecutor``, with the real samplers
and model management. Only two test-side nodes are added (``tests/atelier_host_nodes.py``): one that captures tensors for
assertions, and one that stands in for the T5-XXL/CLIP-L text encoders, which are too large for the CPU.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from atelier_core.runtime.hosts import comfyui_version
from atelier_core.runtime.hosts import find_comfyui as _find_host

PACK_DIR = Path(__file__).resolve().parents[1]
MODEL_FOLDERS = ("diffusion_models", "unet", "vae", "loras", "text_encoders", "clip")


def find_comfyui() -> tuple[Path | None, str]:
    """Return (ComfyUI root, '') or (None, reason to show when host tests skip): the project's one host finder."""
    search = _find_host()
    return search.root, search.reason


def new_executor(execution, server, version: str | None = None):
    """A ``PromptExecutor`` with the classic cache, built with the arguments this ComfyUI's main.py passes.

    0.3.64 takes ``cache_size``; 0.3.75 and later take ``cache_args`` and read ``cache_args["ram"]`` while executing,
    so leaving it out crashes every prompt there.
    """
    import inspect

    from comfy.cli_args import args

    params = inspect.signature(execution.PromptExecutor.__init__).parameters
    classic = execution.CacheType.CLASSIC
    if "cache_args" in params:
        # Only the classic cache is used, so the RAM-pressure settings are 0 (no headroom to keep), and they are
        # never taken from args: newer releases made --cache-ram a list and added "ram_inactive".
        cache_args = {"lru": int(getattr(args, "cache_lru", 0) or 0), "ram": 0.0, "ram_inactive": 0.0}
        return execution.PromptExecutor(server, cache_type=classic, cache_args=cache_args)
    if "cache_size" in params:
        return execution.PromptExecutor(server, cache_type=classic, cache_size=getattr(args, "cache_lru", 0))
    raise RuntimeError(
        f"ComfyUI {version or '(unknown version)'}: its PromptExecutor takes ({', '.join(params)}); the test harness knows cache_args (0.3.75+) "
        "and cache_size (0.3.64): teach tests/atelier_host.py::new_executor this version"
    )


NOT_IN_THIS_HOST = "not in this ComfyUI:"


def skip_unless_host_has(available: bool, what: str) -> None:
    """Skip a host test for a feature this ComfyUI release lacks (FLUX.2 on 0.3.64, say).

    The skip reason starts with ``NOT_IN_THIS_HOST`` so the summary counts it apart from real skips: CI fails on a
    host test that skipped, never on one that does not apply to the release under test.
    """
    if not available:
        import pytest

        pytest.skip(f"{NOT_IN_THIS_HOST} {what}")


class HostImportFailed(RuntimeError):
    """ComfyUI's loader reported IMPORT FAILED for this pack."""


class PromptInvalid(AssertionError):
    """ComfyUI's validate_prompt refused the prompt."""

    def __init__(self, error: dict, node_errors: dict):
        self.error = error
        self.node_errors = node_errors
        super().__init__(f"prompt invalid: {error}; node errors: {node_errors}")


class ExecutionFailed(AssertionError):
    """The executor reported an execution_error."""

    def __init__(self, message: dict):
        self.message = message
        detail = {k: message.get(k) for k in ("node_id", "node_type", "exception_type", "exception_message")}
        super().__init__(f"execution failed: {detail}")

    @property
    def exception_message(self) -> str:
        return str(self.message.get("exception_message", ""))


class _MessageSink:
    """Where the executor sends progress/status messages (the transport only; the executor itself is real)."""

    def __init__(self) -> None:
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, Any]] = []

    def send_sync(self, event, data, sid=None) -> None:
        self.messages.append((event, data))

    def send_progress_text(self, text, node_id, sid=None) -> None:
        """What core nodes call to show text on a node (``PromptServer.send_progress_text``)."""
        self.messages.append(("progress_text", {"node": str(node_id), "text": text}))

    def queue_updated(self) -> None:
        pass


def boot_prompt_server(sink: _MessageSink) -> None:
    """Give core's own nodes the ``PromptServer.instance`` they reach for, without a web server.

    Core modules use it at import (0.33.0's ``nodes_replacements`` registers node replacements on
    ``PromptServer.instance.node_replace_manager``; without one it fails with IMPORT FAILED) and while running
    (``send_progress_text``, ``send_sync``). The sink is the executor's message transport; the node-replacement
    registry is core's own class where the release has one. A real server started in this process wins.
    """
    import server

    if getattr(server.PromptServer, "instance", None) is not None:
        return
    try:
        from app.node_replace_manager import NodeReplaceManager
    except ImportError:  # releases before node replacements
        NodeReplaceManager = None
    if NodeReplaceManager is not None:
        sink.node_replace_manager = NodeReplaceManager()
    server.PromptServer.instance = sink


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(record.getMessage())
        except Exception:  # a broken log record must not break the host
            self.records.append(str(record.msg))


def check_core_imports(failed, version: str | None, log: list[str]) -> None:
    """Fail the boot when core's own node modules did not all load (``init_extra_nodes`` returns their files).

    Under main.py they load; a failure here means the harness boots ComfyUI differently from a user's (a missing
    server piece, a missing requirement), so no result on this host could be trusted.
    """
    if failed:
        raise HostImportFailed(
            f"ComfyUI {version}: IMPORT FAILED for its own modules {sorted(failed)} in the test harness "
            "(tests/atelier_host.py boots it):\n" + "\n".join(log[-60:])
        )


class ComfyHost:
    """ComfyUI loaded in-process with the pack; model, input and output folders point into ``workdir``."""

    def __init__(self, root: Path, workdir: Path):
        self.root = root
        self.workdir = workdir
        self.version = comfyui_version(root)
        self.pack_module_name: str | None = None
        self.load_log: list[str] = []
        self._boot()

    # -- start-up -------------------------------------------------------------------------------------------------
    def _boot(self) -> None:
        root = str(self.root)
        # ComfyUI's own top-level modules (nodes, comfy, utils, ...) must win over anything else on sys.path.
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
        import torch
        from comfy.cli_args import args

        # What `python main.py --cpu` does on a machine without a usable GPU (CI has none).
        if not torch.cuda.is_available():
            args.cpu = True
        import folder_paths

        for sub in ("input", "output", "temp", "user"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        folder_paths.set_input_directory(str(self.workdir / "input"))
        folder_paths.set_output_directory(str(self.workdir / "output"))
        folder_paths.set_temp_directory(str(self.workdir / "temp"))
        folder_paths.set_user_directory(str(self.workdir / "user"))
        for folder in MODEL_FOLDERS:
            path = self.workdir / "models" / folder
            path.mkdir(parents=True, exist_ok=True)
            folder_paths.add_model_folder_path(folder, str(path), is_default=True)

        # main.py imports its `utils` package before `nodes`, which puts comfy/ on sys.path (where comfy/utils.py
        # would otherwise shadow it); keep ComfyUI's own import order.
        import utils.extra_config  # noqa: F401, I001
        import execution
        import nodes

        self.sink = _MessageSink()
        boot_prompt_server(self.sink)
        capture = _LogCapture()
        logging.getLogger().addHandler(capture)
        try:
            core_failed = asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
            check_core_imports(core_failed, self.version, capture.records)
            core_ids = set(nodes.NODE_CLASS_MAPPINGS)
            ok = asyncio.run(nodes.load_custom_node(str(PACK_DIR), core_ids, module_parent="custom_nodes"))
        finally:
            logging.getLogger().removeHandler(capture)
        self.load_log = capture.records
        if not ok:
            raise HostImportFailed("ComfyUI reported IMPORT FAILED for the pack:\n" + "\n".join(capture.records[-40:]))
        self.core_ids = core_ids
        self.pack_module_name = str(PACK_DIR).replace(".", "_x_")
        self.nodes = nodes
        self.execution = execution
        import atelier_host_nodes as host_nodes

        host_nodes.register(nodes.NODE_CLASS_MAPPINGS)
        self.captured = host_nodes.CAPTURED
        self.executor = new_executor(execution, self.sink, self.version)

    # -- registry -------------------------------------------------------------------------------------------------
    def pack_node_ids(self) -> list[str]:
        """Node ids the pack's extension registered (asks the extension again, like ComfyUI does)."""
        module = sys.modules[self.pack_module_name]
        extension = asyncio.run(module.comfy_entrypoint())
        return [cls.GET_SCHEMA().node_id for cls in asyncio.run(extension.get_node_list())]

    def node_class(self, node_id: str):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    def object_info(self, node_id: str) -> dict:
        """The node description ComfyUI's /object_info endpoint serves for this id."""
        cls = self.node_class(node_id)
        return cls.GET_NODE_INFO_V1()

    # -- files ----------------------------------------------------------------------------------------------------
    def model_path(self, folder: str, name: str) -> Path:
        return self.workdir / "models" / folder / name

    def input_path(self, name: str) -> Path:
        return self.workdir / "input" / name

    # -- execution ------------------------------------------------------------------------------------------------
    def validate(self, prompt: dict) -> list[str]:
        """Run ComfyUI's validate_prompt; return the output node ids, or raise PromptInvalid."""
        valid, error, outputs, node_errors = asyncio.run(
            self.execution.validate_prompt(str(uuid.uuid4()), prompt, None)
        )
        if not valid:
            raise PromptInvalid(error, node_errors)
        return outputs

    def run(self, prompt: dict) -> dict:
        """Validate and execute an API-format prompt; return the history outputs (ui dicts by node id).

        Tensors reaching an ``AtelierTestCapture`` node are in ``self.captured[key]`` afterwards.
        """
        outputs = self.validate(prompt)
        prompt_id = str(uuid.uuid4())
        self.sink.messages.clear()
        self.captured.clear()
        self.executor.execute(prompt, prompt_id, {}, outputs)
        if not self.executor.success:
            errors = [data for event, data in self.executor.status_messages if event == "execution_error"]
            raise ExecutionFailed(errors[-1] if errors else {"exception_message": "unknown failure"})
        return self.executor.history_result.get("outputs", {})

    def fresh_executor(self) -> None:
        """Drop every cached node output (as a server restart would)."""
        self.executor = new_executor(self.execution, self.sink, self.version)


def host_validates_combos(execution) -> bool:
    """Whether this ComfyUI's ``validate_inputs`` checks V3 ``io.Combo`` values against their options (about 0.8 on;
    0.3.64 and 0.3.75 check only V1 list combos and pass a V3 combo's value to the node unchecked)."""
    import inspect

    return "io.Combo.io_type" in inspect.getsource(execution.validate_inputs)


def run_refused(host: ComfyHost, prompt: dict, node_id: str, input_name: str) -> tuple[bool, str]:
    """Run ``prompt``, whose ``node_id`` gets a value for ``input_name`` it must refuse; return (refused by core's
    validation, the message).

    Where core validates combo values it refuses the prompt up front (``value_not_in_list`` for exactly that input;
    ``run`` raises before the executor is called, so no node runs); elsewhere the node itself must fail with its own message. Anything else fails the test: a prompt
    that runs, a refusal of another input or node, or core's refusal on a release that does not validate combos.
    """
    try:
        host.run(prompt)
    except PromptInvalid as invalid:
        assert host_validates_combos(host.execution), f"ComfyUI {host.version} refused the prompt itself: {invalid}"
        errors = invalid.node_errors.get(node_id, {}).get("errors", [])
        ours = [
            e
            for e in errors
            if e.get("type") == "value_not_in_list" and e.get("extra_info", {}).get("input_name") == input_name
        ]
        assert ours, f"core refused the prompt, but not {node_id}.{input_name} as not in its list: {invalid}"
        return True, f"{ours[0].get('message', '')}: {ours[0].get('details', '')}"
    except ExecutionFailed as failed:
        assert str(failed.message.get("node_id")) == node_id, failed
        return False, failed.exception_message
    raise AssertionError(f"{node_id}.{input_name}: the prompt ran; the value was not refused")


def iter_pack_node_classes(host: ComfyHost) -> Iterator[tuple[str, Any]]:
    for node_id in host.pack_node_ids():
        yield node_id, host.node_class(node_id)
