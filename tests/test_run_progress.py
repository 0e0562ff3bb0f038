"""``kontext-atelier run``'s progress: node titles, step lines that reach a log (not only a terminal), and which batch
item is running; the server's events are fed as ComfyUI sends them."""

from __future__ import annotations

import io

from atelier_core.cli.run_progress import Progress

PROMPT = {
    "11": {"class_type": "KSampler", "_meta": {"title": "Sampler"}, "inputs": {}},
    "12": {"class_type": "VAEDecode", "inputs": {}},
}


def feed(progress: Progress, prompt_id: str, steps: int) -> None:
    progress.message({"type": "execution_start", "data": {"prompt_id": prompt_id}})
    progress.message({"type": "executing", "data": {"node": "11", "prompt_id": prompt_id}})
    for value in range(1, steps + 1):
        progress.message(
            {"type": "progress", "data": {"value": value, "max": steps, "node": "11", "prompt_id": prompt_id}}
        )
    progress.message({"type": "executing", "data": {"node": "12", "prompt_id": prompt_id}})


def test_a_log_gets_titles_and_a_step_line_every_tenth():
    log = io.StringIO()  # not a terminal
    progress = Progress(log)
    progress.track("p1", "knight.png", PROMPT)
    feed(progress, "p1", 40)
    lines = log.getvalue().splitlines()
    assert lines[0] == "knight.png: running"
    assert lines[1] == "  Sampler (node 11)"
    steps = [ln for ln in lines if "step " in ln]
    assert steps[0] == "  Sampler (node 11): step 1/40" and steps[-1] == "  Sampler (node 11): step 40/40"
    assert 10 <= len(steps) <= 12, steps  # a line every tenth of the way, not 40 and not just the last
    assert lines[-1] == "  VAEDecode (node 12)"
    assert "running node" not in log.getvalue()


def test_few_steps_each_get_a_line_and_batch_items_are_named():
    log = io.StringIO()
    progress = Progress(log)
    progress.track("a", "item 1 of 2 (a.png)", PROMPT)
    progress.track("b", "item 2 of 2 (b.png)", PROMPT)
    feed(progress, "a", 3)
    feed(progress, "b", 3)
    text = log.getvalue()
    assert "item 1 of 2 (a.png): running" in text and "item 2 of 2 (b.png): running" in text
    assert text.count("Sampler (node 11): step") == 6


def test_an_error_is_located_once_not_repeated():
    log = io.StringIO()
    progress = Progress(log)
    progress.track("p", "x.png", PROMPT)
    progress.message({"type": "execution_start", "data": {"prompt_id": "p"}})
    progress.message(
        {
            "type": "execution_error",
            "data": {
                "prompt_id": "p",
                "node_id": "11",
                "exception_type": "x.AtelierError",
                "exception_message": "boom",
            },
        }
    )
    assert "failed at Sampler (node 11)" in log.getvalue() and "boom" not in log.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_redrawn_bar():
    term = _Terminal()
    progress = Progress(term)
    progress.track("p", "x.png", PROMPT)
    feed(progress, "p", 4)
    progress.done()
    assert term.getvalue().count("\r\033[K  Sampler (node 11): [") == 4
    assert "step 4/4" in term.getvalue()


def test_execution_error_names_the_node_by_title_without_a_module_path():
    from atelier_core.cli.comfy_client import format_execution_error

    data = {
        "node_id": "1",
        "node_type": "AtelierKontextLoader",
        "exception_type": "custom_nodes.kontext-atelier.atelier_core.errors.AtelierError",
        "exception_message": "Kontext Loader: model file x.gguf is missing",
    }
    prompt = {"1": {"class_type": "AtelierKontextLoader", "_meta": {"title": "Kontext model"}, "inputs": {}}}
    text = format_execution_error(data, prompt)
    assert text == (
        "node 1 (AtelierKontextLoader 'Kontext model') failed: AtelierError: Kontext Loader: model file x.gguf is missing"
    )
    data.update(exception_type="torch.OutOfMemoryError", exception_message="CUDA out of memory")
    assert format_execution_error(data, prompt).endswith("failed: OutOfMemoryError: CUDA out of memory")
