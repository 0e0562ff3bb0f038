"""What ``kontext-atelier run`` shows while the server works: each node by its title, sampling steps, and which batch
item is running.

On a terminal one status line is redrawn (a bar for the steps). Piped into a log the same events become plain
lines: a line when a node starts, and a step line at every tenth of the way (each step when there are ten or fewer),
so a long sampling shows in the log as it goes, not only at the end.
"""

from __future__ import annotations

STEP_LINES = 10  # step lines per sampling in a log


def node_label(node_id, prompt: dict | None) -> str:
    """A node as the user sees it on the canvas: its title, else its type, with the id for reference."""
    node = (prompt or {}).get(str(node_id)) or {}
    title = (node.get("_meta") or {}).get("title")
    class_type = node.get("class_type")
    if title:
        return f"{title} (node {node_id})"
    return f"{class_type} (node {node_id})" if class_type else f"node {node_id}"


class Progress:
    """One status line per node on a terminal (a bar for sampling steps); plain lines elsewhere."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.open_line = False
        self.last_node = None
        self.items: dict[str, tuple[str, dict | None]] = {}  # prompt id -> (item label, filled prompt)
        self.current: str | None = None  # the prompt id running now
        self.last_step_line = -1
        self.finished: set[str] = set()  # prompt ids whose end the server has announced

    def track(self, prompt_id: str, label: str, prompt: dict | None) -> None:
        """Name a queued prompt: its events are shown with this label and its nodes' titles."""
        self.items[str(prompt_id)] = (label, prompt)

    def _line(self, text: str, final: bool = True) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
            self.open_line = not final
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
        self._line(text)

    def _prompt(self, data: dict) -> dict | None:
        prompt_id = data.get("prompt_id") or self.current
        return self.items.get(str(prompt_id), ("", None))[1]

    def message(self, message: dict) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        ended = kind in ("execution_success", "execution_error", "execution_interrupted")
        if ended or (kind == "executing" and data.get("node") is None):
            self.finished.add(str(data.get("prompt_id")))
        if kind == "execution_start":
            self.current = str(data.get("prompt_id"))
            self.last_node = None
            label = self.items.get(self.current, ("", None))[0]
            if label:
                self.note(f"{label}: running")
        elif kind == "executing" and data.get("node") is not None and data.get("node") != self.last_node:
            self.last_node = data.get("node")
            self.last_step_line = -1
            self._line(f"  {node_label(data['node'], self._prompt(data))}", final=not self.tty)
        elif kind == "progress":
            self._steps(data)
        elif kind == "execution_error":
            # The full message comes once, in the run's closing report; here only where it stopped.
            self.note(f"  failed at {node_label(data.get('node_id'), self._prompt(data))} (details below)")

    def _steps(self, data: dict) -> None:
        value, maximum = int(data.get("value", 0)), max(1, int(data.get("max", 1)))
        filled = int(24 * value / maximum)
        label = node_label(data.get("node"), self._prompt(data))
        text = f"  {label}: [{'#' * filled}{'.' * (24 - filled)}] step {value}/{maximum}"
        if self.tty:
            self._line(text, final=False)
            return
        tenth = value * STEP_LINES // maximum if maximum > STEP_LINES else value
        if tenth != self.last_step_line:
            self.last_step_line = tenth
            self._line(f"  {label}: step {value}/{maximum}")

    def done(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
