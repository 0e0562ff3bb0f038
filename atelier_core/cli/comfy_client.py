"""A small ComfyUI HTTP + websocket client on the standard library only (urllib, socket).

The command line must run where ComfyUI's own dependencies (aiohttp, ...) are not installed, so the websocket is a
minimal RFC 6455 client: the opening handshake, unmasked server frames (text, binary, ping, close, fragments) and
masked client frames (pong, close). Progress comes over the websocket; completion is always confirmed through
``/history`` so a dropped websocket never loses a result.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import ssl
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from ..errors import AtelierError

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FRAME = 64 * 1024 * 1024  # preview images are a few MB at most; anything bigger is a broken stream
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_NOT_JSON = object()


class ServerUnreachable(AtelierError):
    """The server did not answer (down, restarting, wrong address)."""


class NotComfyUI(AtelierError):
    """The address answered, but not as ComfyUI does (a web page, a proxy's error, another program's JSON)."""


class PromptRefused(AtelierError):
    """POST /prompt answered 400: the workflow failed ComfyUI's validation."""

    def __init__(self, body: dict):
        self.body = body
        super().__init__(format_prompt_error(body))


class ComfyClient:
    def __init__(self, server: str, timeout: float = 30.0):
        server = server.rstrip("/")
        if "://" not in server:
            server = "http://" + server
        self.base = server
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AtelierError(f"--server must look like http://127.0.0.1:8188, not {server!r}")
        self.parts = parts
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        # A proxy configured for the internet must not swallow requests to a ComfyUI on this machine.
        handlers = [urllib.request.ProxyHandler({})] if parts.hostname in LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    # -- HTTP -------------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(f"ComfyUI at {self.base} did not answer ({reason})") from None

    def get_json(self, path: str, expect: type = dict):
        try:
            raw = self._request("GET", path)
        except urllib.error.HTTPError as exc:
            raise AtelierError(f"GET {path} failed: HTTP {exc.code} {exc.reason}") from None
        return self.parse(raw, f"GET {path}", expect)

    def parse(self, raw: bytes, request: str, expect: type = dict):
        """The JSON answer to ``request``, of type ``expect``; :class:`NotComfyUI` for anything else."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = _NOT_JSON
        if not isinstance(data, expect):
            start = raw[:60].decode("utf-8", errors="replace").strip().replace("\n", " ")
            what = "a non-JSON answer" if data is _NOT_JSON else f"JSON of the wrong shape ({type(data).__name__})"
            raise NotComfyUI(
                f"{self.base} is not a ComfyUI server: {request} gave {what}, starting {start!r}. "
                "Check --server (the address ComfyUI prints at start, e.g. http://127.0.0.1:8188)."
            )
        return data

    def object_info(self, node_type: str | None = None) -> dict:
        return self.get_json("/object_info" + (f"/{urllib.parse.quote(node_type)}" if node_type else ""))

    def system_stats(self) -> dict:
        """ComfyUI's ``/system_stats``: a ``system`` map and a ``devices`` list (checked: the first call tells
        ComfyUI from another server)."""
        data = self.get_json("/system_stats")
        if not isinstance(data.get("system"), dict) or not isinstance(data.get("devices", []), list):
            raise NotComfyUI(
                f"{self.base} is not a ComfyUI server: GET /system_stats has no 'system' and 'devices'. Check --server."
            )
        data["devices"] = [d for d in data.get("devices", []) if isinstance(d, dict)]
        return data

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of a prompt, or None while it is unknown (queued, running, or lost by a restart)."""
        entry = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)
        if entry is not None and not isinstance(entry, dict):
            raise NotComfyUI(f"{self.base} answered GET /history with an entry that is not a map. Check --server.")
        return entry

    def queued_ids(self) -> set[str]:
        """Prompt ids running or waiting in the server's queue."""
        data = self.get_json("/queue")
        ids = set()
        for key in ("queue_running", "queue_pending"):
            items = data.get(key, [])
            for item in items if isinstance(items, list) else []:
                if isinstance(item, list) and len(item) > 1:
                    ids.add(str(item[1]))
        return ids

    def queue_prompt(self, prompt: dict, extra: dict | None = None) -> str:
        payload = {"prompt": prompt, "client_id": self.client_id}
        if extra:
            payload["extra_data"] = extra
        body = json.dumps(payload).encode()
        try:
            raw = self._request("POST", "/prompt", body, {"Content-Type": "application/json"})
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = {"error": {"message": raw.decode(errors="replace")[:2000]}}
            if exc.code == 400:
                raise PromptRefused(detail) from None
            raise AtelierError(f"POST /prompt failed: HTTP {exc.code}: {format_prompt_error(detail)}") from None
        answer = self.parse(raw, "POST /prompt")
        if answer.get("node_errors"):
            raise PromptRefused(answer)
        if "prompt_id" not in answer:
            raise NotComfyUI(f"{self.base} is not a ComfyUI server: POST /prompt gave no prompt_id. Check --server.")
        return str(answer["prompt_id"])

    def upload_image(self, path: Path, name: str, subfolder: str = "kontext_atelier") -> str:
        """Upload to the server's input folder (overwriting a file of the same name); return the LoadImage value."""
        boundary = "----kontext-atelier-" + uuid.uuid4().hex
        fields = [("overwrite", "true"), ("type", "input"), ("subfolder", subfolder)]
        chunks = []
        for key, value in fields:
            chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        chunks.append(Path(path).read_bytes())
        chunks.append(f"\r\n--{boundary}--\r\n".encode())
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        try:
            raw = self._request("POST", "/upload/image", b"".join(chunks), headers)
        except urllib.error.HTTPError as exc:
            raise AtelierError(f"uploading {path} failed: HTTP {exc.code} {exc.read()[:500]!r}") from None
        answer = self.parse(raw, "POST /upload/image")
        if not isinstance(answer.get("name"), str):
            raise NotComfyUI(f"{self.base} is not a ComfyUI server: POST /upload/image gave no file name.")
        stored = answer["name"]
        return f"{answer['subfolder']}/{stored}" if answer.get("subfolder") else stored

    def download(self, filename: str, subfolder: str, kind: str) -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        try:
            return self._request("GET", f"/view?{query}")
        except urllib.error.HTTPError as exc:
            raise AtelierError(f"downloading {subfolder}/{filename} failed: HTTP {exc.code}") from None

    # -- websocket --------------------------------------------------------------------------------------------------
    def websocket(self, timeout: float = 10.0) -> WebSocket:
        scheme = "wss" if self.parts.scheme == "https" else "ws"
        path = (self.parts.path or "") + f"/ws?clientId={self.client_id}"
        return WebSocket(scheme, self.parts.hostname, self.parts.port, path, timeout)


class WebSocketClosed(ConnectionError):
    pass


class WebSocket:
    """A client websocket: ``recv(timeout)`` returns a text message, or None on timeout or a non-text frame."""

    def __init__(self, scheme: str, host: str, port: int | None, path: str, timeout: float = 10.0):
        port = port or (443 if scheme == "wss" else 80)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if scheme == "wss":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError as exc:
            raise WebSocketClosed(f"cannot connect to {host}:{port}: {exc}") from None
        self.sock = sock
        self.buffer = bytearray()
        self.frame_timeout = max(timeout, 30.0)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            sock.sendall(request.encode())
            head = self._read_until(b"\r\n\r\n", limit=65536)
        except (OSError, WebSocketClosed) as exc:
            self.close()
            raise WebSocketClosed(f"websocket handshake failed: {exc}") from None
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if " 101 " not in lines[0] + " " or headers.get("sec-websocket-accept") != expected:
            self.close()
            raise WebSocketClosed(f"server refused the websocket: {lines[0]}")

    def _fill(self, timeout: float) -> bool:
        """Read more bytes into the buffer; False on timeout."""
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        if not ready and not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return False
        try:
            self.sock.settimeout(self.frame_timeout)
            data = self.sock.recv(65536)
        except OSError as exc:
            raise WebSocketClosed(str(exc)) from None
        if not data:
            raise WebSocketClosed("connection closed by the server")
        self.buffer.extend(data)
        return True

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self.buffer:
            if len(self.buffer) > limit or not self._fill(self.frame_timeout):
                raise WebSocketClosed("no handshake answer")
        end = self.buffer.index(marker) + len(marker)
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill(self.frame_timeout):
                raise WebSocketClosed("frame truncated")
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        try:
            self.sock.sendall(header + mask + masked)
        except OSError as exc:
            raise WebSocketClosed(str(exc)) from None

    def _frame(self) -> tuple[int, int, bytes]:
        """One frame off the buffer: (fin bit, opcode, unmasked payload)."""
        b1, b2 = self._take(2)
        length = b2 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        if length > MAX_FRAME:
            raise WebSocketClosed(f"frame of {length} bytes")
        mask = self._take(4) if b2 & 0x80 else None
        payload = self._take(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return b1 & 0x80, b1 & 0x0F, payload

    def recv(self, timeout: float) -> str | None:
        if not self.buffer and not self._fill(timeout):
            return None
        message = bytearray()
        message_opcode = None
        for _ in range(10_000):  # fragments of one message
            fin, opcode, payload = self._frame()
            if opcode == 0x8:
                raise WebSocketClosed("closed by the server")
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode != 0x0:
                message_opcode = opcode
            message.extend(payload)
            if fin:
                break
        if message_opcode != 0x1:
            return None  # binary frames are live previews
        return message.decode("utf-8", errors="replace")

    def close(self) -> None:
        try:
            self._send(0x8, struct.pack("!H", 1000))
        except (OSError, WebSocketClosed, AttributeError):
            pass
        try:
            self.sock.close()
        except (OSError, AttributeError):
            pass


# -- error text -------------------------------------------------------------------------------------------------------


def format_prompt_error(body: dict, prompt: dict | None = None) -> str:
    """The /prompt 400 answer as lines a person reads: the error, then each node's problems."""
    error = body.get("error") or {}
    if isinstance(error, str):
        error = {"message": error}
    lines = [str(error.get("message") or "ComfyUI refused the workflow")]
    if error.get("details"):
        lines[0] += f": {error['details']}"
    for node_id, info in sorted((body.get("node_errors") or {}).items(), key=lambda kv: str(kv[0])):
        label = describe_node(node_id, info.get("class_type"), prompt)
        seen = set()
        for item in info.get("errors", []):
            text = str(item.get("message", "error"))
            details = str(item.get("details") or "")
            # A node's own validation answer comes once per input it checks ("input - message"): show it once.
            said = details.split(" - ", 1)[-1]
            if (text, said) in seen:
                continue
            seen.add((text, said))
            if details:
                text += f": {details}"
            lines.append(f"  node {label}: {text}")
    return "\n".join(lines)


def describe_node(node_id, class_type=None, prompt: dict | None = None) -> str:
    node = (prompt or {}).get(str(node_id), {})
    class_type = class_type or node.get("class_type") or "?"
    title = (node.get("_meta") or {}).get("title")
    label = f"{node_id} ({class_type}"
    if title and title != class_type:
        label += f" '{title}'"
    return label + ")"


def format_execution_error(data: dict, prompt: dict | None = None, verbose: bool = False) -> str:
    label = describe_node(data.get("node_id"), data.get("node_type"), prompt)
    # The last dotted part only: a pack loaded from custom_nodes gets a path-derived module name, and the node
    # (named on this line) already says where the error comes from.
    kind = str(data.get("exception_type") or "error").rsplit(".", 1)[-1]
    message = str(data.get("exception_message") or "").strip()
    text = f"node {label} failed: {kind}: {message}"
    if verbose and data.get("traceback"):
        text += "\n" + "".join(data["traceback"])
    return text
