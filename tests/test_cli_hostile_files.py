"""The command line's file arguments under hostile use (issue 23): outputs that would replace an input, output paths
that cannot be written, decompression-bomb images and hand-edited geometry files. Every case ends in exit code 2,
one ``error:`` line naming the file, nothing written, and no traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest

from atelier_core.cli import main
from atelier_core.cli.file_checks import check_outputs, image_size
from atelier_core.errors import AtelierError
from atelier_core.image.geometry_record import MAX_INPUT_PIXELS
from atelier_core.testing.hostile import bomb_png

DATA = Path(__file__).parent / "data"


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.imread(str(DATA / "chelsea_451x300.jpg")))
    return path


@pytest.fixture
def edited(tmp_path, photo) -> Path:
    pixels = cv2.imread(str(photo))
    pixels[80:180, 150:260] = (40, 200, 60)
    path = tmp_path / "edited.png"
    cv2.imwrite(str(path), pixels)
    return path


def _refused(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("error: kontext-atelier ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_aspect_lock_never_writes_over_its_input(tmp_path, photo, capsys):
    before = _bytes(photo)
    _refused(capsys, ["aspect-lock", str(photo), "-o", str(photo)], "would replace it", str(photo))
    _refused(
        capsys,
        ["aspect-lock", str(photo), "-o", str(tmp_path / "l.png"), "--geometry-out", str(photo)],
        "--geometry-out",
    )
    _refused(capsys, ["aspect-lock", str(photo), "-o", str(tmp_path / "l.png"), "--mask-out", str(photo)], "--mask-out")
    # The same file under another name: a hard link and a relative path with '..' in it.
    link = tmp_path / "link.png"
    os.link(photo, link)
    _refused(capsys, ["aspect-lock", str(photo), "-o", str(link)], "would replace it")
    _refused(capsys, ["aspect-lock", str(photo), "-o", str(tmp_path / "sub" / ".." / "photo.png")], "would replace it")
    assert _bytes(photo) == before and not (tmp_path / "l.png").exists()


def test_restore_never_writes_over_its_inputs(tmp_path, photo, capsys):
    locked, geo = tmp_path / "locked.png", tmp_path / "g.json"
    assert main(["aspect-lock", str(photo), "-o", str(locked), "--geometry-out", str(geo), "--mode", "1:1"]) == 0
    capsys.readouterr()
    sources = {p: _bytes(p) for p in (photo, locked, geo)}
    base = ["restore", str(locked), "--geometry", str(geo), "--original", str(photo)]
    for target in (photo, locked):
        _refused(capsys, [*base, "-o", str(target)], "would replace it")
    _refused(capsys, [*base, "-o", str(geo)], "extension")
    assert all(_bytes(p) == data for p, data in sources.items())


def test_diff_merge_never_writes_over_an_input_and_checks_outputs_first(tmp_path, photo, edited, capsys):
    before = _bytes(photo)
    merged = tmp_path / "merged.png"
    base = ["diff-merge", str(photo), str(edited), "-o", str(merged)]
    _refused(capsys, [*base, "--mask-out", str(photo)], "--mask-out", "would replace it")
    _refused(capsys, [*base, "--preview-out", str(edited)], "--preview-out")
    _refused(capsys, [*base, "--report-out", str(photo)], "--report-out")
    _refused(capsys, [*base, "--mask-out", str(merged)], "give each output its own name")
    # Paths that cannot be written: under a file, an unknown extension, a folder. Refused before -o is written.
    _refused(capsys, [*base, "--mask-out", str(photo / "mask.png")], "is a file, not a folder")
    _refused(capsys, [*base, "--preview-out", str(tmp_path / "preview.xyz")], "'.xyz'")
    _refused(capsys, [*base, "--soft-mask-out", str(tmp_path)], "is a folder")
    _refused(capsys, ["diff-merge", str(photo), str(edited), "-o", str(tmp_path / "merged")], "'(none)'")
    assert _bytes(photo) == before and not merged.exists()
    assert main([*base, "--mask-out", str(tmp_path / "deeper" / "mask.png")]) == 0  # a missing folder is made
    assert merged.is_file() and (tmp_path / "deeper" / "mask.png").is_file()


def test_quantize_refuses_an_output_that_is_its_input_or_lora(tmp_path, capsys):
    source, lora = tmp_path / "model.safetensors", tmp_path / "lora.safetensors"
    source.write_bytes(b"not read: the output check comes first")
    lora.write_bytes(b"not read either")
    before = (_bytes(source), _bytes(lora))
    _refused(capsys, ["quantize", str(source), str(source), "--force"], "INPUT", "would replace it")
    _refused(capsys, ["quantize", str(source), str(lora), "--lora", str(lora), "--force"], "--lora")
    assert (_bytes(source), _bytes(lora)) == before


def test_bomb_png_is_refused_from_its_header(tmp_path, photo, capsys):
    bomb = bomb_png(tmp_path / "bomb.png")  # 16000x16000, ~30 KB
    assert bomb.stat().st_size < 100_000
    for argv in (
        ["diff-merge", str(bomb), str(photo), "-o", str(tmp_path / "m.png")],
        ["diff-merge", str(photo), str(bomb), "-o", str(tmp_path / "m.png")],
        ["diff-merge", str(photo), str(photo), "--mask", str(bomb), "-o", str(tmp_path / "m.png")],
        ["aspect-lock", str(bomb), "-o", str(tmp_path / "l.png")],
    ):
        _refused(capsys, argv, str(bomb), "16000x16000", "limit")
    assert not (tmp_path / "m.png").exists() and not (tmp_path / "l.png").exists()


def test_image_size_reads_the_header_only_and_keeps_pillow_settings(tmp_path):
    from PIL import Image

    guard = Image.MAX_IMAGE_PIXELS
    side = int(MAX_INPUT_PIXELS**0.5)
    assert image_size(bomb_png(tmp_path / "edge.png", side, side), "t", "image") == (side, side)
    with pytest.raises(AtelierError, match="limit"):
        image_size(bomb_png(tmp_path / "over.png", side, side + 1), "t", "image")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(AtelierError, match="not an image this tool can read"):
        image_size(tmp_path / "text.png", "t", "image")
    assert Image.MAX_IMAGE_PIXELS == guard


def _geometry(tmp_path, photo) -> tuple[Path, dict]:
    locked, geo = tmp_path / "locked.png", tmp_path / "g.json"
    assert main(["aspect-lock", str(photo), "-o", str(locked), "--geometry-out", str(geo), "--fit", "pad"]) == 0
    return locked, json.loads(geo.read_text())


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda g: g.update(original_size=[20000, 20000], crop_box=[0, 0, 20000, 20000]), "20000x20000"),
        (lambda g: g.update(target_size=[8000, 8000], pad_box=[0, 0, 8000, 8000]), "8000x8000"),
        (lambda g: g.update(original_size="99"), "expected 2 integers"),
        (lambda g: g.update(original_size=[451.5, 300]), "expected 2 integers"),
        (lambda g: g.update(original_size=[True, 300]), "expected 2 integers"),
        (lambda g: g.update(pad_color=list(range(100))), "pad_color"),
        (lambda g: g.update(mode=[[[[[[["deep"]]]]]]]), "nested"),
        (lambda g: g.update(requested_ratio=int("9" * 60)), "digits"),
        (lambda g: g.update(notes="x" * 100_000), "larger than"),
    ],
)
def test_hand_edited_geometry_is_refused(tmp_path, photo, capsys, edit, needle):
    locked, data = _geometry(tmp_path, photo)
    capsys.readouterr()
    edit(data)
    geo = tmp_path / "edited.json"
    geo.write_text(json.dumps(data))
    _refused(capsys, ["restore", str(locked), "--geometry", str(geo), "-o", str(tmp_path / "r.png")], needle)
    assert not (tmp_path / "r.png").exists()


def test_check_outputs_accepts_new_distinct_files(tmp_path, photo):
    check_outputs("t", [("IN", photo), ("--mask", None)], [("-o", tmp_path / "new" / "a.png", (".png",))])
    with pytest.raises(AtelierError, match="-o and --x"):
        check_outputs("t", [], [("--x", tmp_path / "a.png", None), ("-o", tmp_path / "a.png", None)])


def test_check_outputs_survives_a_symlink_loop(tmp_path, photo):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    check_outputs("t", [("IN", photo)], [("-o", tmp_path / "out.png", None), ("--x", loop / "a.png", None)])
    with pytest.raises(AtelierError, match="is the input"):
        check_outputs("t", [("IN", loop)], [("-o", loop, None)])
