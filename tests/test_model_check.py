"""model_check.explain_missing_files: core's "Value not in list" for a loader's model file becomes our missing-file
line; everything else in a refused prompt's answer stays as core wrote it."""

from __future__ import annotations

import copy

from atelier_core import model_catalog, model_check


def _not_in_list(input_name: str, value, details: str = "x not in []") -> dict:
    return {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": details,
        "extra_info": {"input_name": input_name, "input_config": None, "received_value": value},
    }


def _answer(class_type: str, *errors: dict) -> dict:
    return {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
        "node_errors": {"7": {"errors": list(errors), "dependent_outputs": ["9"], "class_type": class_type}},
    }


def test_known_file_gets_folder_and_download():
    answer = _answer("VAELoader", _not_in_list("vae_name", "ae.safetensors", "vae_name: 'ae.safetensors' not in []"))
    assert model_check.explain_missing_files(answer)
    (error,) = answer["node_errors"]["7"]["errors"]
    url = model_catalog.BY_NAME["ae.safetensors"]["url"]
    assert (
        error["details"] == f"vae_name: model file ae.safetensors is missing: download {url} into ComfyUI/models/vae/"
    )
    assert error["type"] == "value_not_in_list" and error["extra_info"]["received_value"] == "ae.safetensors"


def test_unknown_file_says_where_it_goes():
    answer = _answer("LoraLoaderModelOnly", _not_in_list("lora_name", "my_style.safetensors"))
    assert model_check.explain_missing_files(answer)
    detail = answer["node_errors"]["7"]["errors"][0]["details"]
    assert (
        detail
        == "lora_name: model file my_style.safetensors is missing: put it in ComfyUI/models/loras/ (or pick a file that is there)"
    )


def test_other_refusals_keep_core_words():
    cases = [
        _answer("KSampler", _not_in_list("sampler_name", "no_such_sampler")),  # not a loader
        _answer("VAELoader", _not_in_list("vae_name", "taesd")),  # a built-in choice, not a file
        _answer("VAELoader", _not_in_list("other_input", "ae.safetensors")),  # not a model input
        _answer("VAELoader", dict(_not_in_list("vae_name", "ae.safetensors"), type="custom_validation_failed")),
        _answer("VAELoader", _not_in_list("vae_name", ["ae.safetensors"])),  # not a string
        _answer("VAELoader", {"type": "value_not_in_list"}),  # no extra_info at all
        _answer("VAELoader", dict(_not_in_list("vae_name", "ae.safetensors"), extra_info={"input_name": ["x"]})),
        _answer(["VAELoader"], _not_in_list("vae_name", "ae.safetensors")),  # a class type that is no name
        {"error": {"type": "no_prompt"}, "node_errors": {}},
        {"error": "odd", "node_errors": ["not", "a", "dict"]},
        {"node_errors": {"1": "not a dict"}},
        {"node_errors": {"1": {"errors": "not a list", "class_type": "VAELoader"}}},
    ]
    for answer in cases:
        before = copy.deepcopy(answer)
        assert not model_check.explain_missing_files(answer), answer
        assert answer == before


def test_each_error_of_a_node_is_worded():
    answer = _answer(
        "DualCLIPLoader",
        _not_in_list("clip_name1", "clip_l.safetensors"),
        _not_in_list("clip_name2", "t5xxl_fp8_e4m3fn_scaled.safetensors"),
    )
    assert model_check.explain_missing_files(answer)
    first, second = (e["details"] for e in answer["node_errors"]["7"]["errors"])
    assert first.startswith("clip_name1: model file clip_l.safetensors is missing: download https://")
    assert second.startswith("clip_name2: model file t5xxl_fp8_e4m3fn_scaled.safetensors is missing: download https://")
    assert first.endswith("into ComfyUI/models/text_encoders/ (or models/clip/)")
