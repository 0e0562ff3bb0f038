"""Users see a short error type and the message once (issue 23), not ComfyUI's path-derived module name.

ComfyUI names an exception's type ``module + "." + qualname``; the pack's modules are imported under a name built from
its folder path, which put ``/home/.../custom_nodes/kontext-atelier.atelier_core.errors.AtelierError`` in front of
every message. The executor-side check is in tests/test_host_lora_check.py and tests/test_host_server_files.py.
"""

from __future__ import annotations

import io

from atelier_core.cli.comfy_client import format_execution_error
from atelier_core.cli.run_progress import Progress
from atelier_core.errors import DISPLAY_MODULE, AtelierError, UnsupportedModelError
from atelier_core.safe_json import JsonLimitError


def _full_type_name(klass) -> str:  # what ComfyUI's execution.full_type_name computes
    return klass.__qualname__ if klass.__module__ == "builtins" else f"{klass.__module__}.{klass.__qualname__}"


def test_every_atelier_error_has_the_short_module_name():
    for klass in (AtelierError, UnsupportedModelError, JsonLimitError):
        assert _full_type_name(klass) == f"{DISPLAY_MODULE}.{klass.__qualname__}"

    class Later(AtelierError):  # subclasses defined anywhere, later, get it too
        pass

    assert Later.__module__ == DISPLAY_MODULE


def test_cli_shows_the_last_part_of_a_dotted_or_path_type_and_the_message_once():
    data = {
        "node_id": "3",
        "node_type": "AtelierKontextLoader",
        "exception_type": "/home/me/ComfyUI/custom_nodes/kontext-atelier.atelier_core.errors.AtelierError",
        "exception_message": "Kontext Loader: 'x.gguf' is truncated. Re-download it.",
    }
    line = format_execution_error(data)
    assert (
        line
        == "node 3 (AtelierKontextLoader) failed: AtelierError: Kontext Loader: 'x.gguf' is truncated. Re-download it."
    )
    stream = io.StringIO()
    Progress(stream).message({"type": "execution_error", "data": data})
    # the live progress only says where it stopped; the message comes once, in the closing report
    assert "is truncated" not in stream.getvalue() and "failed at node 3" in stream.getvalue()
