"""Hostile files for the tests and ``bench/hostile_inputs.py``: small on disk, expensive for a careless reader."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: str | Path, width: int = 16000, height: int = 16000) -> Path:
    """A valid 1-bit grey PNG of ``width`` x ``height`` black pixels: 16000x16000 is 256 million pixels in about
    30 KB (a decoder expands it to 256 MB at 8 bits, and a float pipeline to several GB). Written row by row
    through one zlib stream, so making it costs a few MB of memory and well under a second."""
    path = Path(path)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    rows_per_step = max(1, (4 << 20) // len(row))
    parts = []
    for start in range(0, height, rows_per_step):
        parts.append(packer.compress(row * min(rows_per_step, height - start)))
    parts.append(packer.flush())
    header = struct.pack("!IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )
    return path


class FakeComfy(BaseHTTPRequestHandler):
    """Just enough of ComfyUI's HTTP API for ``run``: every prompt finishes at once with no saved image.
    ``mode`` = "html" or "list" makes every answer a web page or a JSON list instead."""

    mode = "comfy"
    prompts: list[dict] = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def _send(self, body, status: int = 200, kind: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, comfy_answer) -> None:
        if self.mode == "html":
            self._send(b"<!DOCTYPE html><html><body>Welcome to nginx</body></html>", kind="text/html")
        elif self.mode == "list":
            self._send([1, 2, 3])
        else:
            self._send(comfy_answer)

    def do_GET(self):
        if self.path.startswith("/system_stats"):
            self._answer({"system": {"comfyui_version": "fake"}, "devices": []})
        elif self.path.startswith("/history/"):
            pid = self.path.rsplit("/", 1)[1]
            self._answer({pid: {"status": {"status_str": "success"}, "outputs": {}}})
        elif self.path.startswith("/queue"):
            self._answer({"queue_running": [], "queue_pending": []})
        elif self.path.startswith("/object_info"):
            self._answer({})
        else:
            self._send({"error": "no websocket here"}, status=404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/prompt":
            type(self).prompts.append(json.loads(body)["prompt"])
            self._answer({"prompt_id": f"p{len(self.prompts)}", "number": 1, "node_errors": {}})
        else:
            self._answer({"name": "up.png", "subfolder": "kontext_atelier", "type": "input"})


@contextlib.contextmanager
def fake_comfyui(mode: str = "comfy") -> Iterator[str]:
    """A :class:`FakeComfy` on a free loopback port, in a thread; yields its URL."""
    handler = type("Handler", (FakeComfy,), {"mode": mode, "prompts": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
