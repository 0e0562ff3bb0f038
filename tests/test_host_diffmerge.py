"""Kontext Diff-Merge through ComfyUI's own validator and executor (skips without a ComfyUI)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from atelier_core.image import diffmerge

DATA = Path(__file__).parent / "data"


def _capture(key: str, source: list) -> dict:
    return {"class_type": "AtelierTestCapture", "inputs": {"key": key, "value": source}}


def _merge_inputs(**extra) -> dict:
    """The node's inputs with the defaults, the images from nodes "1" and "2"."""
    inputs = {"original": ["1", 0], "edited": ["2", 0], **diffmerge.merge_node_defaults()}
    inputs.update(extra)
    return inputs


def test_diff_merge_node_in_the_executor(comfy_host):
    photo = cv2.imread(str(DATA / "astronaut_512.jpg"))
    edited = photo.copy()
    edited[120:220, 280:400] = (30, 180, 240)
    edited = cv2.warpAffine(edited, np.float32([[1, 0, 2], [0, 1, -1]]), (512, 512), borderMode=cv2.BORDER_REFLECT)
    cv2.imwrite(str(comfy_host.input_path("dm_original.png")), photo)
    cv2.imwrite(str(comfy_host.input_path("dm_edited.png")), edited)
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "dm_original.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "dm_edited.png"}},
        "3": {"class_type": "AtelierDiffMerge", "inputs": _merge_inputs(grow=6, feather=12)},
        "c0": _capture("original", ["1", 0]),
        "c1": _capture("merged", ["3", 0]),
        "c2": _capture("hard", ["3", 1]),
        "c3": _capture("soft", ["3", 2]),
        "c4": _capture("preview", ["3", 3]),
        "c5": _capture("report", ["3", 4]),
    }
    comfy_host.fresh_executor()
    comfy_host.run(graph)
    got = comfy_host.captured
    original, merged = got["original"], got["merged"]
    assert merged.shape == original.shape == (1, 512, 512, 3)
    assert got["hard"].shape == got["soft"].shape == (1, 512, 512) and got["preview"].shape == merged.shape
    assert got["hard"][0, 140:200, 300:380].min() == 1.0
    outside = got["soft"][0] == 0
    assert outside.any() and torch.equal(merged[0][outside], original[0][outside])
    assert "shift: dx=+2.0" in got["report"] and "threshold: ΔE 6.00" in got["report"]
    info = comfy_host.object_info("AtelierDiffMerge")
    assert info["display_name"] == "Kontext Diff-Merge" and info["category"] == "Kontext Atelier/Merge"


def test_global_edit_through_the_node_and_its_force_merge_socket(comfy_host):
    photo = cv2.imread(str(DATA / "astronaut_512.jpg"))
    other = cv2.resize(cv2.imread(str(DATA / "coffee_600x400.jpg")), (512, 512), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(comfy_host.input_path("dm_scene_a.png")), photo)
    cv2.imwrite(str(comfy_host.input_path("dm_scene_b.png")), other)

    def graph(**extra) -> dict:
        return {
            "1": {"class_type": "LoadImage", "inputs": {"image": "dm_scene_a.png"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "dm_scene_b.png"}},
            "3": {"class_type": "AtelierDiffMerge", "inputs": _merge_inputs(**extra)},
            "c0": _capture("edited", ["2", 0]),
            "c1": _capture("merged", ["3", 0]),
            "c2": _capture("preview", ["3", 3]),
            "c3": _capture("report", ["3", 4]),
        }

    comfy_host.fresh_executor()
    comfy_host.run(graph())
    got = comfy_host.captured
    assert torch.equal(got["merged"], got["edited"])  # another scene: the edit itself, neither cropped nor zoomed
    assert "kind: global" in got["report"] and "force_merge" in got["report"]
    assert not torch.equal(got["preview"], got["edited"])  # the preview is framed and labelled
    comfy_host.fresh_executor()
    comfy_host.run(graph(force_merge=True))
    assert "kind: global (merge forced)" in comfy_host.captured["report"]
    info = comfy_host.object_info("AtelierDiffMerge")
    assert info["input"]["optional"]["force_merge"][1].get("forceInput")
