"""A missing model file is refused by ComfyUI's own ``validate_prompt`` before any node runs, with one message naming
the file, its folder and its download, on every release (0.3.64 does not check V3 combo values at all; newer
releases answer a bare ``Value not in list``)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from atelier_host import PromptInvalid
from workflow_fixtures import EXAMPLE_IMAGE, api_workflows, write_png

from atelier_core import model_catalog, model_check

API = api_workflows()
KONTEXT = sorted(name for name in API if name.startswith("kontext_"))


@pytest.fixture(scope="module")
def models_host(comfy_host, tmp_path_factory):
    """The host with every file the Kontext workflows name, as placeholders in an extra model folder (validation
    only looks for the file; nothing here runs a model), removed again after the module."""
    import folder_paths

    extra = tmp_path_factory.mktemp("placeholder_models")
    added = []
    for name in KONTEXT:
        for _, _, file_name, directory in model_check.workflow_models(API[name]):
            (extra / directory).mkdir(exist_ok=True)
            (extra / directory / file_name).write_bytes(b"placeholder")
    for directory in sorted(p.name for p in extra.iterdir()):
        folder_paths.add_model_folder_path(directory, str(extra / directory))  # appended: real fixtures win
        added.append((directory, str(extra / directory)))
    write_png(comfy_host.input_path(EXAMPLE_IMAGE), 64, 64)
    yield comfy_host
    for directory, path in added:
        folder_paths.folder_names_and_paths[folder_paths.map_legacy(directory)][0].remove(path)


@contextmanager
def moved_away(directory: str, name: str):
    """The file is absent from every folder of its kind for the block (renamed beside it, to a suffix no folder
    lists)."""
    import folder_paths

    hidden = []
    for folder in folder_paths.get_folder_paths(directory):
        path = Path(folder) / name
        if path.is_file():
            path.rename(path.with_name(name + ".away"))
            hidden.append(path)
    try:
        yield
    finally:
        for path in hidden:
            path.with_name(name + ".away").rename(path)


def validate(host, prompt: dict):
    return asyncio.run(host.execution.validate_prompt(str(uuid.uuid4()), prompt, None))


def loader_of(prompt: dict, class_type: str, input_name: str) -> tuple[str, str]:
    node_id, node = next((i, n) for i, n in prompt.items() if n["class_type"] == class_type)
    return node_id, node["inputs"][input_name]


def custom_messages(node_errors: dict, node_id: str) -> list[str]:
    return [e["details"] for e in node_errors[node_id]["errors"]]


@pytest.mark.parametrize("name", KONTEXT)
def test_missing_transformer_is_refused_before_anything_runs(models_host, name):
    prompt = API[name]
    node_id, model = loader_of(prompt, "AtelierKontextLoader", "model_name")
    entry = model_catalog.BY_NAME[model]
    with moved_away("diffusion_models", model):
        valid, error, good_outputs, node_errors = validate(models_host, prompt)
        assert not valid and not good_outputs, f"{name}: some outputs would still run: {good_outputs}"
        assert set(node_errors) == {node_id}, node_errors  # only the loader; nothing else is blamed
        (detail,) = custom_messages(node_errors, node_id)
        assert f"model file {model} is missing" in detail
        assert entry["url"] in detail and "ComfyUI/models/diffusion_models/" in detail
        assert model not in error["details"]  # said once, on the loader, not again for each output
        models_host.sink.messages.clear()
        with pytest.raises(PromptInvalid):
            models_host.run(prompt)
        assert not [m for m in models_host.sink.messages if m[0] in ("executing", "execution_start")]
    models_host.validate(prompt)  # back in place: valid again (the check reads the folder, not a stale list)


def test_missing_text_encoders_each_named_once(models_host):
    prompt = API["kontext_edit_gguf_t5"]
    node_id, t5 = loader_of(prompt, "AtelierKontextTextEncoders", "t5_name")
    _, clip_l = loader_of(prompt, "AtelierKontextTextEncoders", "clip_l_name")
    with moved_away("text_encoders", t5):
        _, _, _, node_errors = validate(models_host, prompt)
        details = custom_messages(node_errors, node_id)
        assert details and all(f"model file {t5} is missing" in d for d in details)
        assert all(model_catalog.T5_GGUF["url"] in d and clip_l not in d for d in details)
        with moved_away("text_encoders", clip_l):
            _, _, _, node_errors = validate(models_host, prompt)
            for detail in custom_messages(node_errors, node_id):
                assert detail.count(f"model file {t5} is missing") == 1
                assert detail.count(f"model file {clip_l} is missing") == 1


def test_unknown_file_name_says_where_it_goes(models_host):
    prompt = {k: dict(v, inputs=dict(v["inputs"])) for k, v in API["kontext_edit_gguf"].items()}
    node_id, _ = loader_of(prompt, "AtelierKontextLoader", "model_name")
    prompt[node_id]["inputs"]["model_name"] = "my_own_kontext.gguf"
    _, _, _, node_errors = validate(models_host, prompt)
    (detail,) = custom_messages(node_errors, node_id)
    assert "my_own_kontext.gguf is missing: put it in ComfyUI/models/diffusion_models/" in detail
