"""``kontext-atelier aspect-lock`` / ``restore`` on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from atelier_core.cli import main
from atelier_core.image import geometry as G

DATA = Path(__file__).parent / "data"
PACK = Path(__file__).resolve().parents[1]


def _write(path: Path, pixels: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix, pixels)
    assert ok
    data.tofile(str(path))
    return path


def _read(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture
def photo(tmp_path) -> Path:
    """An 8-bit RGB PNG that Kontext mode crops (3:2-ish but not a bucket) -- the chelsea test photo upscaled."""
    pixels = cv2.resize(cv2.imread(str(DATA / "chelsea_451x300.jpg")), (700, 460), interpolation=cv2.INTER_CUBIC)
    return _write(tmp_path / "in.png", pixels)


def test_lock_then_restore_returns_exact_size_with_identical_margins(tmp_path, photo, capsys):
    locked, geo_json, mask = tmp_path / "locked.png", tmp_path / "g.json", tmp_path / "mask.png"
    assert (
        main(
            [
                "aspect-lock",
                str(photo),
                "-o",
                str(locked),
                "--geometry-out",
                str(geo_json),
                "--mode",
                "1:1",
                "--mask-out",
                str(mask),
            ]
        )
        == 0
    )
    assert "700x460 -> 1024x1024 (1:1, crop)" in capsys.readouterr().out
    g = G.Geometry.from_dict(json.loads(geo_json.read_text()))
    assert g.original_size == (700, 460) and g.target_size == (1024, 1024) and g.is_cropped
    assert _read(locked).shape == (1024, 1024, 3)
    assert _read(mask).shape == (1024, 1024) and _read(mask).max() == 0  # crop: no padding

    out = tmp_path / "out.png"
    assert main(["restore", str(locked), "--geometry", str(geo_json), "--original", str(photo), "-o", str(out)]) == 0
    original, restored = _read(photo), _read(out)
    assert restored.shape == original.shape
    x, _, w, _ = g.crop_box
    assert np.array_equal(restored[:, :x], original[:, :x]) and np.array_equal(
        restored[:, x + w :], original[:, x + w :]
    )
    mse = np.mean((restored.astype(float) - original.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 40


def test_pad_mode_mask_and_sixteen_bit_rgba(tmp_path):
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.integers(0, 65535, (300, 500, 4), dtype=np.uint16).astype(np.float32), (0, 0), 4)
    src = _write(tmp_path / "rgba16.png", np.clip(smooth, 0, 65535).astype(np.uint16))
    locked, geo_json, mask = tmp_path / "l.png", tmp_path / "g.json", tmp_path / "m.png"
    args = [
        "aspect-lock",
        str(src),
        "-o",
        str(locked),
        "--geometry-out",
        str(geo_json),
        "--mode",
        "4:3",
        "--fit",
        "pad",
    ]
    assert (
        main([*args, "--pad-mode", "color", "--pad-color", "#ff0000", "--long-side", "512", "--mask-out", str(mask)])
        == 0
    )
    out_pixels = _read(locked)
    assert out_pixels.dtype == np.uint16 and out_pixels.shape == (384, 512, 4)
    assert tuple(out_pixels[0, 0]) == (0, 0, 65535, 65535)  # BGRA red, opaque
    assert _read(mask)[0, 0] == 255 and _read(mask)[192, 256] == 0

    out = tmp_path / "out.png"
    assert main(["restore", str(locked), "--geometry", str(geo_json), "-o", str(out)]) == 0  # pad: no original needed
    restored = _read(out)
    assert restored.dtype == np.uint16 and restored.shape == (300, 500, 4)


def test_errors_exit_2_with_a_message(tmp_path, photo, capsys):
    locked, geo_json = tmp_path / "l.png", tmp_path / "g.json"
    assert main(["aspect-lock", str(photo), "-o", str(locked), "--geometry-out", str(geo_json)]) == 0
    capsys.readouterr()

    other = _write(tmp_path / "other.png", np.full((460, 700, 3), 40, np.uint8))
    cases = [
        (["restore", str(locked), "--geometry", str(geo_json), "-o", str(tmp_path / "o.png")], "pass --original"),
        (
            [
                "restore",
                str(locked),
                "--geometry",
                str(geo_json),
                "--original",
                str(other),
                "-o",
                str(tmp_path / "o.png"),
            ],
            "not the image this geometry was made from",
        ),
        (
            ["restore", str(locked), "--geometry", str(photo), "-o", str(tmp_path / "o.png")],
            "not a readable geometry JSON",
        ),
        (
            ["restore", str(locked), "--geometry", str(tmp_path / "none.json"), "-o", str(tmp_path / "o.png")],
            "no such geometry file",
        ),
        (["aspect-lock", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")], "no such image file"),
        (["aspect-lock", str(geo_json), "-o", str(tmp_path / "o.png")], "not an image this tool can read"),
        (["aspect-lock", str(photo), "-o", str(tmp_path / "o.bmp")], "use a .png"),
        (["aspect-lock", str(photo), "-o", str(tmp_path / "o.png"), "--mode", "wide"], "cannot read the ratio"),
        (
            [
                "aspect-lock",
                str(photo),
                "-o",
                str(tmp_path / "o.png"),
                "--mode",
                "4:3",
                "--megapixels",
                "1",
                "--long-side",
                "800",
            ],
            "not both",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: kontext-atelier ") and message in err, (argv, err)


def test_default_geometry_path_and_console_entry(tmp_path, photo):
    locked = tmp_path / "locked.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "atelier_core.cli",
            "aspect-lock",
            str(photo),
            "-o",
            str(locked),
            "--mode",
            "keep",
            "--fit",
            "stretch",
        ],
        cwd=PACK,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    geo_json = tmp_path / "locked.geometry.json"
    assert str(geo_json) in result.stdout
    assert G.Geometry.from_dict(json.loads(geo_json.read_text())).fit == "stretch"
