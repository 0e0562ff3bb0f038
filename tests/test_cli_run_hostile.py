"""``kontext-atelier run`` and ``doctor`` against servers and files that misbehave (issue 23), with a small fake
ComfyUI in a thread (no ComfyUI needed): an address that answers HTML or a JSON list, no server at all, a batch
image that raises an I/O error, a batch state file of the wrong shape. Each ends in one clear line, fast."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from atelier_core.cli import main
from atelier_core.cli.runner import STATE_FILE
from atelier_core.testing.hostile import bomb_png, closed_port, fake_comfyui

WORKFLOW = {
    "1": {"class_type": "LoadImage", "_meta": {"title": "Image"}, "inputs": {"image": "x.png"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


@pytest.fixture
def fake_server():
    with contextlib.ExitStack() as stack:
        yield lambda mode: stack.enter_context(fake_comfyui(mode))


@pytest.fixture
def workflow(tmp_path) -> Path:
    path = tmp_path / "wf.api.json"
    path.write_text(json.dumps(WORKFLOW))
    return path


@pytest.fixture
def image(tmp_path) -> Path:
    return bomb_png(tmp_path / "in.png", 16, 16)  # a valid small PNG (the server never decodes it)


def _one_error(capsys, code: int = 2) -> str:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    return errors[0]


@pytest.mark.parametrize(("mode", "shape"), [("html", "non-JSON answer"), ("list", "wrong shape (list)")])
def test_run_against_a_server_that_is_not_comfyui(fake_server, workflow, image, tmp_path, capsys, mode, shape):
    url = fake_server(mode)
    argv = ["run", str(workflow), "--image", str(image), "--server", url, "-o", str(tmp_path / "out")]
    assert main(argv) == 2
    line = _one_error(capsys)
    assert f"{url} is not a ComfyUI server" in line and shape in line and "--server" in line


@pytest.mark.parametrize("mode", ["html", "list"])
def test_doctor_against_a_server_that_is_not_comfyui(fake_server, tmp_path, capsys, mode):
    url = fake_server(mode)
    assert main(["doctor", "--comfyui", str(tmp_path), "--server", url]) == 1
    out = capsys.readouterr()
    assert f"{url} answers, but not as ComfyUI" in out.out and "Traceback" not in out.err


def test_run_fails_fast_when_no_server_is_there(workflow, image, tmp_path, capsys):
    """No reconnect wait at the start: with --reconnect-timeout 3600 it would hang an hour if it waited."""
    url = f"http://127.0.0.1:{closed_port()}"
    argv = ["run", str(workflow), "--image", str(image), "--server", url, "--reconnect-timeout", "3600"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    line = _one_error(capsys)
    assert "did not answer" in line and "Start ComfyUI" in line


def test_batch_item_with_an_io_error_fails_alone_every_run(fake_server, workflow, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        bomb_png(folder / name, 16, 16)
    (folder / "b.png").symlink_to("/proc/self/mem")  # is_file() is true, reading it raises EIO
    url = fake_server("comfy")
    argv = ["run", str(workflow), "--batch", str(folder), "--server", url, "-o", str(tmp_path / "out")]
    for _ in range(2):  # the re-run reaches the same end, it does not stop at the bad file
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "error: b.png: cannot read" in err and "Input/output error" in err and "Traceback" not in err
        assert "2 of 3 done, 1 failed" in err
    state = json.loads((tmp_path / "out" / STATE_FILE).read_text())
    assert {k: v["status"] for k, v in state["items"].items()} == {"a.png": "done", "b.png": "failed", "c.png": "done"}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("[1, 2, 3]", id="list"),
        pytest.param('{"items": [1, 2]}', id="items-list"),
        pytest.param('{"items": {"a.png": "done"}}', id="item-string"),
        pytest.param('{"items": {"a.png": {"status": "done", "outputs": ["../../x.png"]}}}', id="output-path"),
        pytest.param('{"signature": 5, "items": {}}', id="signature-number"),
        pytest.param("[" * 100_000, id="nested-100000"),
        pytest.param("{not json", id="not-json"),
    ],
)
def test_batch_state_file_of_the_wrong_shape_is_refused(fake_server, workflow, tmp_path, capsys, content):
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    bomb_png(folder / "a.png", 16, 16)
    (out / STATE_FILE).write_text(content)
    argv = ["run", str(workflow), "--batch", str(folder), "--server", fake_server("comfy"), "-o", str(out)]
    assert main(argv) == 2
    line = _one_error(capsys)
    assert str(out / STATE_FILE) in line and "--fresh" in line
    assert main([*argv, "--fresh"]) == 0  # what the message says to do works


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, "nested more than", id="nested"),
        pytest.param(
            '{"1": {"class_type": "LoadImage", "inputs": {"seed": ' + "9" * 5000 + "}}}", "digits", id="digits"
        ),
        pytest.param("[1, 2]", "not an API-format workflow", id="list"),
    ],
)
def test_hostile_workflow_file_is_refused_naming_it(tmp_path, image, capsys, content, needle):
    workflow = tmp_path / "bad.api.json"
    workflow.write_text(content)
    assert main(["run", str(workflow), "--image", str(image), "--server", "http://127.0.0.1:1"]) == 2
    line = _one_error(capsys)
    assert str(workflow) in line and needle in line


def test_set_value_nested_past_the_recursion_limit_is_text():
    """--set VALUE is JSON when it parses, else text: 100,000 brackets are text, not a RecursionError."""
    from atelier_core.workflow_fill import parse_value

    deep = "[" * 100_000
    assert parse_value(deep) == deep and parse_value("[1, 2]") == [1, 2]
