"""The hostile-input set of issue 23 through the command line, each case in its own process, with a verdict.

    python bench/hostile_inputs.py [--only WORD] [--markdown] [--keep DIR]

Every case runs ``python -m atelier_core.cli ...`` (or, for the prompt node's token count, a short script on the
cached ComfyUI's tokenizers) in a subprocess and records its exit status, elapsed time and peak RSS (``wait4``).
The files are made here: decompression-bomb PNGs, hand-edited geometry files, batch folders with an unreadable
image, batch state files of the wrong shape, a fake ComfyUI answering HTML or a JSON list, and model files with
truncated data, overflowing shapes, 200,000-deep headers, overlapping offsets, float dims, an object in
``__metadata__``, NaN weights and zero-width layers (driven through ``inspect``, ``quantize`` and ``compare``).

Verdicts (checked, not assumed):

- ``clear refusal``: the exit status says failure, one ``error:`` line (``missing:`` for doctor) names the file or
  server, no ``Traceback``, every input is byte-identical afterwards and no output of the case exists;
- ``correct output``: the case's own check of what was written passed (the batch with one unreadable image: the
  others done, the bad one reported, the same on a re-run);
- ``crash``: killed by a signal or past the time limit;
- ``unclear error``: a failure with a traceback, or whose message does not name the file / server;
- ``silent wrong``: success where a refusal was due, an input changed, or an output written before a refusal.

``excess`` is the case's CPU time (user + system, steadier than wall time on a shared machine) and peak RSS beyond a
baseline process that imports what the command imports (``--version`` for the parser modules; the parser plus
torch for the model commands; the same tokenizers on a short prompt for the token count), the least of three runs:
the issue asks refusals to stay within 1 s and 100 MB of it. The table goes to standard output (``--markdown`` for bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atelier_core.testing.hostile import bomb_png, closed_port, fake_comfyui  # noqa: E402

TIME_LIMIT_S = 120
CLI = [sys.executable, "-m", "atelier_core.cli"]
BASELINES = {
    "cli": [*CLI, "--version"],
    "torch": [sys.executable, "-c", "import atelier_core.cli as c; c.build_parser(); import torch"],
}


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = "refusal"  # or "output"
    needles: tuple[str, ...] = ()  # what the message must name (file, server)
    inputs: tuple[Path, ...] = ()  # must stay byte-identical
    absent: tuple[Path, ...] = ()  # must not exist afterwards
    check: Callable[[subprocess.CompletedProcess], str | None] | None = None  # "output" cases: None = fine
    baseline: str = "cli"
    runs: int = 1  # run again (a re-run must reach the same verdict)
    report_ok: str | None = None  # inspect: exit 0 with this text (and a needle) is a correct report of the refusal


@dataclass
class Result:
    case: Case
    rc: int
    seconds: float
    cpu: float
    rss_mb: float
    out: str
    verdict: str = ""
    why: str = ""
    extra: dict = field(default_factory=dict)


# Linux keeps a process's peak RSS across exec, so a child forked from this (torch-importing) process would report
# this process's peak. A small launcher forks the command instead and reports the command's own peak.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "cpu = usage.ru_utime + usage.ru_stime\n"
    "open(sys.argv[1], 'w').write(f'{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {cpu}')\n"
)


def run_measured(argv: list[str], timeout: float = TIME_LIMIT_S) -> tuple[int, float, float, float, str]:
    """(exit status or -signal, wall seconds, CPU seconds, peak RSS in MB, stdout+stderr) of one process."""
    with tempfile.TemporaryFile() as sink, tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "rc"
        command = [sys.executable, "-c", _LAUNCHER, str(report), *argv]
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, 9))
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        fields = report.read_text().split() if report.is_file() else ["-9", "0", "0"]
        rc, rss_kb, cpu = int(fields[0]), int(fields[1]), float(fields[2])
        sink.seek(0)
        text = sink.read().decode("utf-8", errors="replace")
    return rc, seconds, cpu, rss_kb / 1024, text


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:
        return "unreadable"


def judge(case: Case, rc: int, seconds: float, text: str, before: dict) -> tuple[str, str]:
    if rc < 0 or seconds >= TIME_LIMIT_S:
        return "crash", f"signal {-rc}" if rc < 0 else "timed out"
    changed = [p.name for p in case.inputs if _digest(p) != before[p]]
    if changed:
        return "silent wrong", f"input changed: {', '.join(changed)}"
    traceback = "Traceback" in text
    if case.expect == "output":
        problem = case.check(subprocess.CompletedProcess(case.argv, rc, text, "")) if case.check else None
        if problem:
            return ("unclear error" if traceback else "silent wrong"), problem
        return ("unclear error", "traceback") if traceback else ("correct output", "")
    if rc == 0 and case.report_ok and case.report_ok in text and all(n in text for n in case.needles):
        return "correct output", "exit 0, reports: " + next(ln for ln in text.splitlines() if case.report_ok in ln)
    if rc == 0:
        return "silent wrong", "exit 0 where a refusal was due"
    written = [p.name for p in case.absent if p.exists()]
    if written:
        return "silent wrong", f"wrote {', '.join(written)} before refusing"
    if traceback:
        return "unclear error", "traceback"
    lines = [line for line in text.splitlines() if line.startswith(("error:", "  missing:"))]
    missing = [n for n in case.needles if not any(n in line for line in lines)]
    if not lines or missing:
        return "unclear error", f"no error line naming {', '.join(missing) or 'anything'}"
    return "clear refusal", ""


def run_case(case: Case) -> Result:
    before = {p: _digest(p) for p in case.inputs}
    for _ in range(case.runs):
        rc, seconds, cpu, rss, text = run_measured(case.argv)
        verdict, why = judge(case, rc, seconds, text, before)
        if verdict not in ("clear refusal", "correct output"):
            break
    return Result(case, rc, seconds, cpu, rss, text, verdict, why)


# -- files ----------------------------------------------------------------------------------------------------------


def _photo(path: Path, size=(96, 64)) -> Path:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    return path


def _safetensors_parts(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_safetensors(path: Path, header: dict | str, data: bytes) -> Path:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _gguf_overflow(path: Path) -> Path:
    """A GGUF whose one tensor claims 2^40 x 2^40 x 2^40 F32 values (the product overflows 64 bits)."""

    def string(s: str) -> bytes:
        return struct.pack("<Q", len(s)) + s.encode()

    kv = string("general.architecture") + struct.pack("<I", 8) + string("flux")
    info = string("img_in.weight") + struct.pack("<I", 3) + struct.pack("<3Q", 1 << 40, 1 << 40, 1 << 40)
    info += struct.pack("<IQ", 0, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + kv + info
    path.write_bytes(head + b"\0" * (-len(head) % 32) + b"\0" * 4096)
    return path


def model_files(folder: Path) -> dict[str, Path]:
    """A tiny valid bf16 Kontext safetensors and GGUF, and the hostile variants of them."""
    import torch

    from atelier_core.testing import synth

    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    good = synth.write_float(folder / "good.safetensors", sd, "bf16")
    files = {"good": good}
    gguf = synth.write_gguf(folder / "truncated.gguf", sd, "Q8_0")
    gguf.write_bytes(gguf.read_bytes()[: gguf.stat().st_size // 2])
    files["truncated_gguf"] = gguf
    files["overflow_gguf"] = _gguf_overflow(folder / "overflow.gguf")

    header, data = _safetensors_parts(good)
    files["deep_header"] = _write_safetensors(
        folder / "deep.safetensors", '{"a":' + "[" * 200_000 + "]" * 200_000 + "}", data
    )
    names = [k for k in header if k != "__metadata__"]
    same = [(a, b) for a in names for b in names if a < b and header[a]["shape"] == header[b]["shape"]]
    overlap = json.loads(json.dumps(header))
    a, b = same[0]
    overlap[b]["data_offsets"] = overlap[a]["data_offsets"]
    files["overlap"] = _write_safetensors(folder / "overlap.safetensors", overlap, data)
    floats = json.loads(json.dumps(header))
    floats[names[0]]["shape"] = [float(d) for d in floats[names[0]]["shape"]]
    files["float_dims"] = _write_safetensors(folder / "float_dims.safetensors", floats, data)
    meta = json.loads(json.dumps(header))
    meta["__metadata__"] = {"format": {"nested": "object"}}
    files["object_metadata"] = _write_safetensors(folder / "object_meta.safetensors", meta, data)

    nan = dict(sd)
    key = next(k for k in nan if k.endswith(".weight") and nan[k].ndim == 2)
    nan[key] = torch.full_like(nan[key], float("nan"))
    files["nan_weights"] = synth.write_float(folder / "nan.safetensors", nan, "bf16")
    zero = dict(sd)
    zero[key] = torch.zeros((0, sd[key].shape[1]))
    files["zero_width"] = synth.write_float(folder / "zero_width.safetensors", zero, "bf16")
    return files


# -- cases ----------------------------------------------------------------------------------------------------------


def image_cases(tmp: Path) -> list[Case]:
    photo, edited = _photo(tmp / "photo.png"), _photo(tmp / "edited.png", (96, 64))
    bomb = bomb_png(tmp / "bomb.png")
    merged, file_parent = tmp / "merged.png", tmp / "photo.png" / "m.png"
    locked = tmp / "locked.png"
    lock = [*CLI, "aspect-lock", str(photo), "-o", str(locked), "--fit", "pad"]
    subprocess.run(lock, cwd=ROOT, check=True, capture_output=True)
    geometry = json.loads((tmp / "locked.geometry.json").read_text())

    def edited_geometry(name: str, change: Callable[[dict], object] | str) -> Path:
        path = tmp / name
        if isinstance(change, str):
            path.write_text(change)
        else:
            data = json.loads(json.dumps(geometry))
            change(data)
            path.write_text(json.dumps(data))
        return path

    big = edited_geometry(
        "g_20000.json", lambda g: g.update(original_size=[20000, 20000], crop_box=[0, 0, 20000, 20000])
    )
    deep = edited_geometry("g_deep.json", "[" * 100_000 + "]" * 100_000)
    digits = edited_geometry("g_digits.json", json.dumps(geometry).replace('"version": 1', '"version": ' + "9" * 5000))
    text_size = edited_geometry("g_string.json", lambda g: g.update(original_size="99"))
    restore = ["restore", str(locked), "-o", str(tmp / "restored.png"), "--geometry"]
    both = (photo, edited)
    dm = [*CLI, "diff-merge", str(photo), str(edited)]
    link = tmp / "photo_link.png"
    os.link(photo, link)
    return [
        Case(
            "aspect-lock -o a hard link of IN",
            [*CLI, "aspect-lock", str(photo), "-o", str(link)],
            needles=(str(link),),
            inputs=(photo,),
        ),
        Case(
            "aspect-lock a.png -o a.png",
            [*CLI, "aspect-lock", str(photo), "-o", str(photo)],
            needles=(str(photo),),
            inputs=(photo,),
        ),
        Case(
            "aspect-lock --geometry-out a.png",
            [*CLI, "aspect-lock", str(photo), "-o", str(tmp / "l2.png"), "--geometry-out", str(photo)],
            needles=(str(photo),),
            inputs=(photo,),
            absent=(tmp / "l2.png",),
        ),
        Case(
            "diff-merge --mask-out original.png",
            [*dm, "-o", str(merged), "--mask-out", str(photo)],
            needles=(str(photo),),
            inputs=both,
            absent=(merged,),
        ),
        Case("diff-merge -o under a file", [*dm, "-o", str(file_parent)], needles=(str(photo),), inputs=both),
        Case(
            "diff-merge --preview-out x.xyz",
            [*dm, "-o", str(merged), "--preview-out", str(tmp / "p.xyz")],
            needles=("p.xyz",),
            inputs=both,
            absent=(merged,),
        ),
        Case("diff-merge -o a folder", [*dm, "-o", str(tmp)], needles=(str(tmp),), inputs=both),
        Case(
            "diff-merge 16000² PNG (31 KB)",
            [*CLI, "diff-merge", str(bomb), str(edited), "-o", str(merged)],
            needles=(str(bomb),),
            inputs=(bomb, edited),
            absent=(merged,),
        ),
        Case(
            "aspect-lock 16000² PNG",
            [*CLI, "aspect-lock", str(bomb), "-o", str(tmp / "l3.png")],
            needles=(str(bomb),),
            inputs=(bomb,),
            absent=(tmp / "l3.png",),
        ),
        Case(
            "restore geometry 20000²",
            [*CLI, *restore, str(big)],
            needles=(str(big),),
            inputs=(big,),
            absent=(tmp / "restored.png",),
        ),
        Case("restore geometry 100,000 deep", [*CLI, *restore, str(deep)], needles=(str(deep),), inputs=(deep,)),
        Case(
            "restore geometry 5,000-digit number",
            [*CLI, *restore, str(digits)],
            needles=(str(digits),),
            inputs=(digits,),
        ),
        Case(
            'restore geometry size "99"',
            [*CLI, *restore, str(text_size)],
            needles=(str(text_size),),
            inputs=(text_size,),
        ),
    ]


def _batch_check(folder: Path, out: Path) -> Callable[[subprocess.CompletedProcess], str | None]:
    def check(result: subprocess.CompletedProcess) -> str | None:
        text = result.stdout
        if result.returncode != 1 or "error: b.png: cannot read" not in text or "2 of 3 done, 1 failed" not in text:
            return f"exit {result.returncode}; expected a.png and c.png done, b.png reported"
        state = json.loads((out / ".kontext-atelier-batch.json").read_text())["items"]
        if {k: v["status"] for k, v in state.items()} != {"a.png": "done", "b.png": "failed", "c.png": "done"}:
            return f"state {state}"
        return None

    return check


def server_cases(tmp: Path, servers: dict[str, str]) -> list[Case]:
    workflow = tmp / "wf.api.json"
    workflow.write_text(
        json.dumps({"1": {"class_type": "LoadImage", "_meta": {"title": "Image"}, "inputs": {"image": "x.png"}}})
    )
    image = bomb_png(tmp / "small.png", 16, 16)
    run = [*CLI, "run", str(workflow), "--image", str(image), "-o", str(tmp / "run_out"), "--server"]
    folder, out = tmp / "batch", tmp / "batch_out"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        bomb_png(folder / name, 16, 16)
    (folder / "b.png").symlink_to("/proc/self/mem")  # is_file() is true; reading it raises EIO
    batch = [*CLI, "run", str(workflow), "--batch", str(folder), "--server", servers["comfy"]]
    state_out = tmp / "state_out"
    state_out.mkdir()
    state = state_out / ".kontext-atelier-batch.json"
    state.write_text('{"items": [1, 2, 3]}')
    deep_workflow = tmp / "deep.api.json"
    deep_workflow.write_text("[" * 100_000 + "]" * 100_000)
    deep_run = [*CLI, "run", str(deep_workflow), "--image", str(image), "--server", servers["comfy"]]
    down = f"http://127.0.0.1:{closed_port()}"
    doctor = [*CLI, "doctor", "--comfyui", str(tmp), "--server"]
    return [
        Case("run vs server answering HTML", [*run, servers["html"]], needles=(servers["html"],)),
        Case("run vs server answering a JSON list", [*run, servers["list"]], needles=(servers["list"],)),
        Case(
            "doctor vs server answering HTML", [*doctor, servers["html"]], needles=(servers["html"],), baseline="torch"
        ),
        Case(
            "doctor vs server answering a JSON list",
            [*doctor, servers["list"]],
            needles=(servers["list"],),
            baseline="torch",
        ),
        Case("run with no server (reconnect 300 s)", [*run, down], needles=(down,)),
        Case("run, workflow nested 100,000 deep", deep_run, needles=(str(deep_workflow),), inputs=(deep_workflow,)),
        Case(
            "run --batch, one image raises EIO (twice)",
            [*batch, "-o", str(out)],
            expect="output",
            check=_batch_check(folder, out),
            runs=2,
        ),
        Case(
            "run --batch, state file a list of items",
            [*batch, "-o", str(state_out)],
            needles=(str(state),),
            inputs=(state,),
        ),
    ]


def _token_script(root: Path, extra: Path) -> str:
    """What the prompt node does with its "extra" input: build, then count with ComfyUI's Flux tokenizers."""
    return (
        f"import sys; sys.path.insert(0, {str(root)!r}); sys.argv = ['x', '--cpu']\n"
        "from comfy.cli_args import args; args.cpu = True\n"
        "from comfy.text_encoders.flux import FluxTokenizer\n"
        "from atelier_core.prompts import builder\n"
        "tok = FluxTokenizer()\n"
        "def count(t):\n"
        "    r = tok.tokenize_with_weights(t, return_word_ids=True)\n"
        "    return {k: sum(1 for b in r[n] for x in b if x[2] != 0) for k, n in (('clip_l', 'l'), ('t5xxl', 't5xxl'))}\n"
        f"text = builder.build(builder.Choices(extra=open({str(extra)!r}).read())).text\n"
        "counts, warnings = builder.check_length(text, count)\n"
        "print(len(text), 'characters', counts, *warnings)\n"
    )


def prompt_cases(tmp: Path) -> list[Case]:
    from atelier_core.runtime.hosts import find_comfyui

    extra = tmp / "extra_1mb.txt"
    extra.write_text("paint the cloak deep crimson, " * 34_000)
    cases = [
        Case(
            "prompt --extra 100 KB (argv limit)",
            [*CLI, "prompt", "--extra", extra.read_text()[:100_000]],
            expect="output",
            check=lambda r: None if r.returncode == 0 and "over the 512" in r.stdout else "no prompt or no warning",
        )
    ]
    host = find_comfyui(None)
    root = getattr(host, "root", None)
    if root:
        short = tmp / "extra_short.txt"
        short.write_text("paint the cloak deep crimson")
        # The baseline builds the same tokenizers and counts a short prompt: the excess is what 1 MB costs.
        BASELINES["tokenizer"] = [sys.executable, "-c", _token_script(root, short)]
        cases.append(
            Case(
                "prompt node: 1 MB extra, token count",
                [sys.executable, "-c", _token_script(root, extra)],
                expect="output",
                check=lambda r: None if r.returncode == 0 and "over" in r.stdout else f"exit {r.returncode}",
                baseline="tokenizer",
            )
        )
    return cases


def model_cases(tmp: Path) -> list[Case]:
    files = model_files(tmp)
    good = files["good"]
    cases = []
    for kind in (
        "truncated_gguf",
        "overflow_gguf",
        "deep_header",
        "overlap",
        "float_dims",
        "object_metadata",
        "nan_weights",
        "zero_width",
    ):
        path = files[kind]
        cases.append(
            Case(
                f"inspect {kind}",
                [*CLI, "inspect", str(path)],
                needles=(path.name,),
                inputs=(path,),
                baseline="torch",
                report_ok="refuses it",
            )
        )
        if kind == "overlap":  # any source: the output check comes first
            cases.append(
                Case(
                    "quantize OUT = INPUT --force",
                    [*CLI, "quantize", str(good), str(good), "--type", "Q8_0", "--force"],
                    needles=(str(good),),
                    inputs=(good,),
                    baseline="torch",
                )
            )
        if path.suffix == ".safetensors":
            out = tmp / f"{kind}.gguf"
            cases.append(
                Case(
                    f"quantize {kind}",
                    [*CLI, "quantize", str(path), str(out), "--type", "Q8_0", "--no-progress"],
                    needles=(path.name,),
                    inputs=(path,),
                    absent=(out,),
                    baseline="torch",
                )
            )
        cases.append(
            Case(
                f"compare good vs {kind}",
                [*CLI, "compare", str(good), str(path)],
                needles=(path.name,),
                inputs=(path,),
                baseline="torch",
            )
        )
    return cases


# -- report ---------------------------------------------------------------------------------------------------------


def baselines() -> dict[str, tuple[float, float, float]]:
    """(wall s, CPU s, MB) of each baseline, the least of three runs."""
    found = {}
    for name, argv in BASELINES.items():
        runs = [run_measured(argv) for _ in range(3)]
        found[name] = tuple(min(r[i] for r in runs) for i in (1, 2, 3))
    return found


def table(results: list[Result], base: dict[str, tuple[float, float, float]], markdown: bool) -> str:
    head = ["case", "verdict", "exit", "wall s", "CPU s", "MB", "excess CPU s / MB", "note"]
    rows = []
    for r in results:
        _, bc, bm = base[r.case.baseline]
        extra = f"{r.cpu - bc:+.2f} / {r.rss_mb - bm:+.0f}"
        note = r.why or _first_line(r.out, r.case.needles)
        timing = [f"{r.seconds:.2f}", f"{r.cpu:.2f}", f"{r.rss_mb:.0f}"]
        rows.append([r.case.name, r.verdict, str(r.rc), *timing, extra, note[:110]])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=False)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in [head, *rows])


def _first_line(text: str, needles: tuple[str, ...]) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("error:", "missing:"))]
    named = [line for line in lines if any(n in line for n in needles)]
    return (named or lines or [""])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run the cases whose name contains this text")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--keep", type=Path, help="make the files in this folder and keep them")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hostile_")))
        tmp.mkdir(parents=True, exist_ok=True)
        servers = {mode: stack.enter_context(fake_comfyui(mode)) for mode in ("comfy", "html", "list")}
        cases = image_cases(tmp) + server_cases(tmp, servers) + prompt_cases(tmp) + model_cases(tmp)
        cases = [c for c in cases if not args.only or args.only in c.name]
        base = baselines()
        results = [run_case(case) for case in cases]
    sys.stdout.write(
        f"{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · Python "
        f"{platform.python_version()} · baselines: "
        + ", ".join(f"{k} {s:.2f} s ({c:.2f} s CPU) / {m:.0f} MB" for k, (s, c, m) in base.items())
        + f" · load average {os.getloadavg()[0]:.1f}"
        + "\n\n"
    )
    sys.stdout.write(table(results, base, args.markdown) + "\n")
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    sys.stdout.write("\n" + ", ".join(f"{v}: {n}" for v, n in sorted(counts.items())) + "\n")
    return 0 if set(counts) <= {"clear refusal", "correct output"} else 1


if __name__ == "__main__":
    sys.exit(main())
