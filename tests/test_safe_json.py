"""The limited JSON reader: hostile user files are refused quickly with a message naming them, never a traceback."""

from __future__ import annotations

import resource
import time

import pytest

from atelier_core.errors import AtelierError
from atelier_core.safe_json import JsonLimitError, load_json_limited

WHAT = "test file /x/settings.json"


def test_good_json_from_text_bytes_and_path(tmp_path):
    text = '{"a": [1, 2.5, "x[[{{123456789012345678901234567890123456789012345"], "b": null}'
    expected = {"a": [1, 2.5, "x[[{{123456789012345678901234567890123456789012345"], "b": None}
    path = tmp_path / "good.json"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # a Windows editor's byte-order mark is fine
    assert load_json_limited(text, max_depth=3, what=WHAT) == expected
    assert load_json_limited(text.encode(), max_depth=3, what=WHAT) == expected
    assert load_json_limited(path, max_depth=3, what=WHAT) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels"),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested more than 64 levels"),
        ('{"n": ' + "9" * 5000 + "}", "more than 40 digits (near line 1)"),
        ('{\n"n": 1.' + "0" * 5000 + "}", "more than 40 digits (near line 2)"),
        ('{"n": 1e999}', "1e999, which is not a finite number"),
        ('{"n": NaN}', "NaN, which is not a finite number"),
        ('{"n": -Infinity}', "-Infinity, which is not a finite number"),
        ('{"n": 1,}', "is not valid JSON (line 1, column 9"),
        ("", "is empty"),
        (" \n", "is empty"),
    ],
)
def test_hostile_text_is_refused_naming_the_file(text, expected):
    start = time.perf_counter()
    with pytest.raises(JsonLimitError) as caught:
        load_json_limited(text, what=WHAT)
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert WHAT in message and expected in message, message
    assert isinstance(caught.value, AtelierError)


def test_size_limit_reads_no_more_than_the_limit(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as handle:
        handle.truncate(2 * 1024**3)  # a 2 GB sparse file: reading it whole would take 2 GB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(JsonLimitError, match=r"larger than 1,000 bytes"):
        load_json_limited(path, max_bytes=1000, what=WHAT)
    with pytest.raises(JsonLimitError, match=r"larger than 1,000 bytes"):
        load_json_limited("[" + " " * 2000 + "]", max_bytes=1000, what=WHAT)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB on Linux


def test_unreadable_and_undecodable_files(tmp_path):
    with pytest.raises(JsonLimitError, match=r"Could not read the test file .*missing"):
        load_json_limited(tmp_path / "missing.json", what=f"test file {tmp_path / 'missing.json'}")
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"a": "caf\xe9"}')
    with pytest.raises(JsonLimitError, match=r"is not UTF-8 text \(byte 10"):
        load_json_limited(path, what=WHAT)


def test_limits_are_the_callers():
    assert load_json_limited("[[[1]]]", max_depth=3, what=WHAT) == [[[1]]]
    with pytest.raises(JsonLimitError, match="nested more than 2 levels"):
        load_json_limited("[[[1]]]", max_depth=2, what=WHAT)
    assert load_json_limited("123456", max_number_digits=6, what=WHAT) == 123456
    with pytest.raises(JsonLimitError, match="more than 5 digits"):
        load_json_limited("123456", max_number_digits=5, what=WHAT)
