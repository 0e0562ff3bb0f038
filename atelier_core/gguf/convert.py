"""Stream a Kontext / FLUX.1 safetensors checkpoint into a GGUF file, one tensor at a time.

    convert("flux1-kontext-dev.safetensors", "kontext-Q4_K_M.gguf", "Q4_K_M", lora="style.safetensors")

Source: bf16 / fp16 / fp32 / fp8 (e4m3fn, e5m2) safetensors, in BFL key layout or ComfyUI's
``model.diffusion_model.`` layout (other tensors of a full checkpoint - VAE, text encoders - are skipped). Plain fp8
is upcast; ComfyUI's scaled fp8 (a ``scaled_fp8`` marker and ``<layer>.scale_weight``) is multiplied by its scale.
An optional LoRA is merged into the float weights first (see `LoraMerge`).

Before a byte is written the tensor set is checked against the architecture (`architecture.infer_shape`, plus
no tensor the architecture does not have), every dtype is checked, the LoRA's targets and shapes are checked, the
output path is refused if it exists (unless `overwrite`) and the free disk space is compared with the file size.

Memory: tensors are read with plain file reads into a buffer of one tensor (a `safetensors.safe_open` memory map
counts every touched page of the source in the process RSS - 1.9 GB after reading a 1.3 GB file - although the
pages are only cache), so peak RSS is about the Python/torch baseline plus ~3x the largest tensor in float32.
On a CPU the K-quants run in one worker process per core (`quantize.ParallelQuantizer`; ``ATELIER_QUANT_WORKERS``
sets the count) while this process reads the next tensor: each worker adds its own Python/torch baseline
(~0.5 GB) and a few float32 tasks of 4M values; the parent's own RSS is what ``peak_rss_bytes`` reports.
The file is written to ``<out>.<random>.part`` next to the output, fsynced and renamed: an error, a full disk or
Ctrl-C leaves no file under the final name and removes the partial one.

Recipes (``--type``): a plain type quantizes every large 2-D weight to that type; a ``_M`` recipe moves the
tensors listed below one step up the ladder Q2_K -> Q3_K -> Q4_K -> Q5_K -> Q6_K -> Q8_0, after llama.cpp's
``_M`` recipes (``attn_qkv``/``attn_output`` and the ``ffn_down`` of the first and last layers get more bits).
On top of any recipe the writer's keep-precise policy applies (`writer.default_type_for`): 1-D and small tensors
and img_in / time_in.in_layer / vector_in.in_layer / guidance_in.in_layer / final_layer.linear stay F32, the other
embedders and the final layer's modulation F16, and rows that are not whole blocks F16.

| recipe            | most 2-D weights | one step higher (``_M`` only)                        | general.file_type |
| ----------------- | ---------------- | ---------------------------------------------------- | ----------------- |
| Q8_0              | Q8_0             | -                                                    | 7                 |
| Q6_K              | Q6_K             | -                                                    | 18                |
| Q5_K_M            | Q5_K             | -> Q6_K: double_blocks.*.{img,txt}_attn.{qkv,proj};   | 17                |
|                   |                  | {img,txt}_mlp.2 of the first and last double block;  |                   |
|                   |                  | linear2 of the first and last single block           |                   |
| Q5_K_S (= Q5_K)   | Q5_K             | -                                                    | 16                |
| Q4_K_M            | Q4_K             | -> Q5_K: the same tensors                            | 15                |
| Q4_K_S (= Q4_K)   | Q4_K             | -                                                    | 14                |
| Q3_K_M            | Q3_K             | -> Q4_K: the same tensors                            | 12                |
| Q3_K_S (= Q3_K)   | Q3_K             | -                                                    | 11                |
| Q2_K              | Q2_K             | -                                                    | 10                |
| Q5_0, Q4_0        | that type        | -                                                    | 8, 2              |
| BF16, F16, F32    | that type        | -                                                    | 32, 1, 0          |

(Q5_1, Q4_1, IQ4_NL and IQ4_XS are accepted as plain types too.) At full size Q4_K_M moves 14% of the weights
to Q5_K (about +0.14 bits per weight over Q4_K_S).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import AtelierError, UnsupportedModelError
from ..model import architecture, model_files
from ..model.kontext_layout import KontextShape, layout
from .lora import LoraMerge
from .types import GGMLType, tensor_nbytes
from .writer import QUANTIZATION_VERSION, _check_f16_range, atomic_gguf, default_type_for

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------- recipes

LADDER = (GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.Q8_0)


@dataclass(frozen=True)
class Recipe:
    name: str
    base: GGMLType
    bump: bool  # the `_M` set goes one step up the ladder
    file_type: int  # llama.cpp llama_ftype, stored as general.file_type


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("Q8_0", GGMLType.Q8_0, False, 7),
        Recipe("Q6_K", GGMLType.Q6_K, False, 18),
        Recipe("Q5_K_M", GGMLType.Q5_K, True, 17),
        Recipe("Q5_K_S", GGMLType.Q5_K, False, 16),
        Recipe("Q5_K", GGMLType.Q5_K, False, 16),
        Recipe("Q4_K_M", GGMLType.Q4_K, True, 15),
        Recipe("Q4_K_S", GGMLType.Q4_K, False, 14),
        Recipe("Q4_K", GGMLType.Q4_K, False, 14),
        Recipe("Q3_K_M", GGMLType.Q3_K, True, 12),
        Recipe("Q3_K_S", GGMLType.Q3_K, False, 11),
        Recipe("Q3_K", GGMLType.Q3_K, False, 11),
        Recipe("Q2_K", GGMLType.Q2_K, False, 10),
        Recipe("Q5_0", GGMLType.Q5_0, False, 8),
        Recipe("Q4_0", GGMLType.Q4_0, False, 2),
        Recipe("Q5_1", GGMLType.Q5_1, False, 9),
        Recipe("Q4_1", GGMLType.Q4_1, False, 3),
        Recipe("IQ4_NL", GGMLType.IQ4_NL, False, 25),
        Recipe("IQ4_XS", GGMLType.IQ4_XS, False, 30),
        Recipe("BF16", GGMLType.BF16, False, 32),
        Recipe("F16", GGMLType.F16, False, 1),
        Recipe("F32", GGMLType.F32, False, 0),
    )
}
RECIPE_NAMES = tuple(RECIPES)


def parse_recipe(name: str) -> Recipe:
    key = str(name).strip().upper()
    if key not in RECIPES:
        raise AtelierError(f"unknown quantization type {name!r}; choose one of: {', '.join(RECIPE_NAMES)}")
    return RECIPES[key]


def step_up(t: GGMLType) -> GGMLType:
    i = LADDER.index(t)
    return LADDER[min(i + 1, len(LADDER) - 1)]


_ATTN = re.compile(r"^double_blocks\.\d+\.(img|txt)_attn\.(qkv|proj)\.weight$")
_DOUBLE_DOWN = re.compile(r"^double_blocks\.(\d+)\.(img|txt)_mlp\.2\.weight$")
_SINGLE_DOWN = re.compile(r"^single_blocks\.(\d+)\.linear2\.weight$")


def is_bumped(name: str, model: KontextShape) -> bool:
    """Whether a `_M` recipe gives this tensor one step more (see the module table)."""
    if _ATTN.match(name):
        return True
    m = _DOUBLE_DOWN.match(name)
    if m:
        return int(m.group(1)) in (0, model.depth - 1)
    m = _SINGLE_DOWN.match(name)
    if m:
        return int(m.group(1)) in (0, model.depth_single - 1)
    return False


def tensor_type(recipe: Recipe, name: str, shape: tuple[int, ...], model: KontextShape) -> GGMLType:
    """The GGML type one tensor gets under `recipe` (recipe first, then the writer's keep-precise policy)."""
    wanted = recipe.base
    if recipe.bump and wanted in LADDER and is_bumped(name, model):
        wanted = step_up(wanted)
    return default_type_for(name, shape, wanted)


# ----------------------------------------------------------------------------------------------- source

# safetensors dtype -> (torch storage dtype); everything else is refused.
SOURCE_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_MARKER = "scaled_fp8"


class SafetensorsSource:
    """A safetensors checkpoint read tensor by tensor (plain reads, no memory map): model keys without prefix."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AtelierError(f"'{self.path}' does not exist or is not a file")
        fmt = model_files.sniff_format(self.path)
        if fmt != "safetensors":
            raise AtelierError(
                f"'{self.path.name}' is already a GGUF file; quantize takes the bf16/fp16/fp32/fp8 safetensors "
                "release (re-quantizing a quantized file compounds the error)"
            )
        header = model_files.read_safetensors_header(self.path)
        model_files.check_sampled_values(self.path)  # the loader's value check: never quantize NaN weights
        self.metadata = header.metadata
        self._data_start = header.data_start
        self._offsets = header.offsets
        self._dtypes = {k: d for k, (d, _) in header.tensors.items()}
        names = list(header.tensors)
        self.prefix = architecture.strip_prefix([n for n in names if n != _MARKER])
        self.scaled_fp8 = _MARKER in names or f"{self.prefix}{_MARKER}" in names
        self.skipped: list[str] = []  # tensors of a full checkpoint outside the diffusion model
        self._keys: dict[str, str] = {}  # model key -> file key
        self.scales: dict[str, str] = {}  # model weight key -> file key of its scale_weight
        n = len(self.prefix)
        for file_key in names:
            if file_key in (_MARKER, f"{self.prefix}{_MARKER}"):
                continue
            if self.prefix and not file_key.startswith(self.prefix):
                self.skipped.append(file_key)
                continue
            key = file_key[n:]
            if key.endswith(".scale_weight"):
                self.scales[key[: -len(".scale_weight")] + ".weight"] = file_key
            elif key.endswith(".scale_input"):
                continue
            else:
                self._keys[key] = file_key
        # in file order, so the source is read front to back
        self._keys = dict(sorted(self._keys.items(), key=lambda kv: self._offsets[kv[1]][0]))
        self.shapes = {k: header.tensors[f][1] for k, f in self._keys.items()}
        self.dtypes = {k: self._dtypes[f] for k, f in self._keys.items()}
        orphans = [k for k in self.scales if k not in self._keys]
        if orphans:
            raise AtelierError(f"'{self.path.name}': scale_weight without its weight for {orphans[:3]}")

    def dtype_histogram(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.dtypes.values():
            out[d] = out.get(d, 0) + 1
        return out

    def check_dtypes(self) -> None:
        bad = [(k, d) for k, d in self.dtypes.items() if d not in SOURCE_DTYPES]
        if bad:
            k, d = bad[0]
            raise AtelierError(
                f"'{self.path.name}': tensor '{k}' holds {d} values ({len(bad)} tensors are not float); quantize "
                f"takes float checkpoints ({', '.join(SOURCE_DTYPES)})"
            )

    def _read_raw(self, file_key: str) -> torch.Tensor:
        dtype = SOURCE_DTYPES.get(self._dtypes[file_key])
        if dtype is None:
            raise AtelierError(f"'{self.path.name}': tensor '{file_key}' is not a float tensor")
        start, end = self._offsets[file_key]
        nbytes = end - start
        buf = bytearray(nbytes)
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(self._data_start + start)
            view = memoryview(buf)
            got = 0
            while got < nbytes:
                n = fh.readinto(view[got:])
                if not n:
                    raise AtelierError(f"'{self.path.name}' ended early while reading '{file_key}'; download it again")
                got += n
            _drop_cache(fh.fileno(), self._data_start + start, nbytes)
        if nbytes == 0:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype)

    def read(self, key: str) -> torch.Tensor:
        """One model tensor as float32 (fp8 upcast, scaled fp8 multiplied by its scale_weight)."""
        file_key = self._keys[key]
        shape = self.shapes[key]
        t = self._read_raw(file_key).reshape(shape).to(torch.float32)
        scale_key = self.scales.get(key)
        if scale_key is not None:
            scale = self._read_raw(scale_key).to(torch.float32)
            try:
                t = t * (scale.reshape(()) if scale.numel() == 1 else scale)
            except RuntimeError:
                raise AtelierError(
                    f"'{self.path.name}': the scale_weight of '{key}' has {scale.numel()} values, which do not "
                    f"broadcast to {tuple(shape)}"
                ) from None
        return t


def _drop_cache(fd: int, offset: int, length: int) -> None:
    """Tell the kernel we will not read these pages again (a 24 GB source would otherwise fill the page cache)."""
    if hasattr(os, "posix_fadvise") and length:
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def check_architecture(shapes: dict[str, tuple[int, ...]], label: str) -> KontextShape:
    """`architecture.infer_shape` plus: no tensor the architecture does not have."""
    model = architecture.infer_shape(shapes, label)
    expected = dict(layout(model))
    extra = [k for k in shapes if k not in expected]
    if extra:
        raise UnsupportedModelError(
            f"'{label}' has {len(extra)} tensors a FLUX.1 Kontext transformer does not have (e.g. "
            f"{', '.join(extra[:3])}); it is another variant or a merge with extra modules - quantize only the "
            "transformer"
        )
    return model


# ----------------------------------------------------------------------------------------------- progress


class TextProgress:
    """A one-line progress bar on stderr without dependencies: redrawn in place on a terminal, else a line per 10%."""

    def __init__(self, stream=None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_decile = -1
        self._last_draw = 0.0

    def __call__(self, done: int, total: int, done_bytes: int, total_bytes: int, name: str) -> None:
        frac = done_bytes / total_bytes if total_bytes else 1.0
        elapsed = time.perf_counter() - self.start
        rate = done_bytes / elapsed / 1e6 if elapsed > 0 else 0.0
        eta = (total_bytes - done_bytes) / (rate * 1e6) if rate > 0 else 0.0
        eta_text = _hms(eta) if elapsed > 2 or frac > 0.05 else "-:--"
        filled = int(frac * self.width)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * frac:5.1f}%  {done}/{total} tensors  "
            f"{rate:6.1f} MB/s  ETA {eta_text}  {name[:40]}"
        )
        if self.tty:
            now = time.perf_counter()
            if now - self._last_draw > 0.1 or done == total:
                self.stream.write("\r" + line.ljust(120)[:120])
                self._last_draw = now
            if done == total:
                self.stream.write("\n")
        else:
            decile = int(frac * 10)
            if decile != self._last_decile or done == total:
                self._last_decile = decile
                self.stream.write(line + "\n")
        self.stream.flush()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# ----------------------------------------------------------------------------------------------- convert

ProgressFn = Callable[[int, int, int, int, str], None]  # (done, total, done source bytes, total bytes, name)
QuantizeFn = Callable[[np.ndarray, GGMLType], np.ndarray]


@dataclass
class PlannedTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    nbytes: int


@dataclass
class ConvertReport:
    output: Path
    recipe: str
    model: KontextShape
    tensors: list[PlannedTensor]
    source_bytes: int
    output_bytes: int
    seconds: float
    lora_targets: int = 0
    skipped: list[str] = field(default_factory=list)

    def type_histogram(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.ggml_type.name] = out.get(t.ggml_type.name, 0) + 1
        return out

    @property
    def bits_per_weight(self) -> float:
        n = sum(int(np.prod(t.shape)) for t in self.tensors)
        return 8.0 * sum(t.nbytes for t in self.tensors) / max(n, 1)


def plan(recipe: Recipe, shapes: dict[str, tuple[int, ...]], model: KontextShape) -> list[PlannedTensor]:
    out = []
    for name, shape in shapes.items():
        shape = tuple(int(s) for s in shape) or (1,)
        t = tensor_type(recipe, name, shape, model)
        out.append(PlannedTensor(name, shape, t, tensor_nbytes(shape, t)))
    return out


def _source_bytes(src: SafetensorsSource, name: str) -> int:
    n = int(np.prod(src.shapes[name])) if src.shapes[name] else 1
    return n * {"F32": 4, "F64": 8, "F16": 2, "BF16": 2}.get(src.dtypes[name], 1)


# Below this many values to K-quantize (a few seconds of one core), starting worker processes costs more than
# they save.
PARALLEL_MIN_VALUES = 64 << 20


def _ready(raw: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: raw


def _default_quantizer(tensors: list[PlannedTensor], workers: int | None):
    """(quantize function, the ParallelQuantizer to close or None): torch on a GPU when there is one (see
    `fast_quantize`), else ggml's numpy quantizers, in worker processes when the model is large enough."""
    from . import fast_quantize
    from .quantize import PARALLEL_TYPES, ParallelQuantizer, cpu_workers, quantize

    if fast_quantize.default_device() != "numpy":
        return fast_quantize.quantize, None
    workers = workers or cpu_workers()
    work = sum(int(np.prod(t.shape)) for t in tensors if t.ggml_type in PARALLEL_TYPES)
    if workers < 2 or work < PARALLEL_MIN_VALUES:
        return quantize, None
    pool = ParallelQuantizer(workers)
    try:
        pool.start()
    except Exception as e:  # e.g. spawned from an unguarded `__main__` script: the workers cannot start
        pool.close()
        logger.warning("could not start %d quantizer processes (%s); quantizing in this process", workers, e)
        return quantize, None
    return pool, pool


def convert(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    type_name: str,
    *,
    lora: str | os.PathLike[str] | None = None,
    lora_strength: float = 1.0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    quantizer: QuantizeFn | None = None,
    extra_metadata: dict | None = None,
    workers: int | None = None,
) -> ConvertReport:
    """Quantize a Kontext safetensors checkpoint to a GGUF file (see the module docstring).

    `workers`: CPU processes for the K-quants when no GPU does them (default: `quantize.cpu_workers()`, and one
    for a model too small to repay starting them); ignored when a `quantizer` is given.
    """
    recipe = parse_recipe(type_name)
    out = Path(output)
    _check_output(out, overwrite)
    src = SafetensorsSource(source)
    if out.exists() and out.resolve() == src.path.resolve():
        raise AtelierError(f"{out} is the source file; write the GGUF under another name")
    src.check_dtypes()
    model = check_architecture(src.shapes, src.path.name)
    merge = LoraMerge.load(lora, lora_strength, src.shapes) if lora else None
    tensors = plan(recipe, src.shapes, model)
    _check_space(out, tensors)
    if src.skipped:
        logger.info("skipping %d tensors outside %s (VAE / text encoders)", len(src.skipped), src.prefix)
    metadata = _metadata(recipe, out, src, merge, extra_metadata)
    total_bytes = sum(_source_bytes(src, t.name) for t in tensors)
    started = time.perf_counter()

    logging.getLogger("gguf").setLevel(logging.WARNING)  # its writer logs every file it opens at INFO
    pool = None
    try:
        if quantizer is None:
            quantizer, pool = _default_quantizer(tensors, workers)
        infos = [(t.name, tuple(t.shape), t.ggml_type) for t in tensors]
        with atomic_gguf(out, "flux", metadata, infos) as writer:
            submit = pool.submit if pool is not None else (lambda a, gt: _ready(quantizer(a, gt)))
            _Pipeline(writer, src, tensors, total_bytes, progress).run(
                submit, merge, str(out), pipelined=pool is not None
            )
    finally:
        if pool is not None:
            pool.close()
    return ConvertReport(
        output=out,
        recipe=recipe.name,
        model=model,
        tensors=tensors,
        source_bytes=total_bytes,
        output_bytes=out.stat().st_size,
        seconds=time.perf_counter() - started,
        lora_targets=merge.targets if merge else 0,
        skipped=src.skipped,
    )


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing output (without ``overwrite``) or a missing folder."""
    if out.exists() and not overwrite:
        raise AtelierError(f"{out} already exists; choose another output name or pass --force to replace it")
    out_dir = out.absolute().parent
    if not out_dir.is_dir():
        raise AtelierError(f"{out}: the folder {out_dir} does not exist; create it first")


def _check_space(out: Path, tensors: list[PlannedTensor]) -> None:
    out_dir = out.absolute().parent
    data_bytes = sum(t.nbytes + 32 for t in tensors)
    free = shutil.disk_usage(out_dir).free
    if free < data_bytes + (1 << 20):
        raise AtelierError(
            f"{out}: the GGUF needs about {data_bytes / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free in "
            f"{out_dir}; free some space or write elsewhere"
        )


def _metadata(recipe: Recipe, out: Path, src: SafetensorsSource, merge, extra: dict | None) -> dict:
    metadata: dict = {
        "general.quantization_version": QUANTIZATION_VERSION,
        "general.file_type": recipe.file_type,
        "general.name": out.stem,
        "general.quantized_by": f"kontext-atelier {__version__}",
        "kontext_atelier.recipe": recipe.name,
        "kontext_atelier.source": src.path.name,
    }
    if merge is not None:
        metadata["kontext_atelier.lora"] = f"{merge.path.name} @ {merge.strength:g}"
    metadata.update(extra or {})
    return metadata


class _Pipeline:
    """Read, (merge,) quantize and write the tensors in plan order. With worker processes a tensor is quantized
    while the next one is read; at most two are in memory."""

    def __init__(self, writer, src: SafetensorsSource, tensors: list[PlannedTensor], total_bytes: int, progress):
        self.writer, self.src, self.tensors, self.total_bytes, self.progress = (
            writer,
            src,
            tensors,
            total_bytes,
            progress,
        )
        self.done_bytes = 0
        self.pending: list[tuple[int, PlannedTensor, Callable[[], np.ndarray]]] = []

    def run(self, submit, merge, out_name: str, pipelined: bool) -> None:
        for done, t in enumerate(self.tensors, start=1):
            value = self.src.read(t.name)
            if merge is not None:
                value = merge.apply(t.name, value)
            array = value.reshape(t.shape).numpy()
            del value
            try:
                if t.ggml_type == GGMLType.F16:
                    _check_f16_range(out_name, t.name, array)
                fetch = submit(array, t.ggml_type)
            except AtelierError as e:
                raise AtelierError(f"tensor '{t.name}': {e}") from None
            del array
            self.pending.append((done, t, fetch))
            if len(self.pending) > 1 or not pipelined:
                self._write_oldest()
        while self.pending:
            self._write_oldest()

    def _write_oldest(self) -> None:
        done, t, fetch = self.pending.pop(0)
        try:
            raw = fetch()
        except AtelierError as e:
            raise AtelierError(f"tensor '{t.name}': {e}") from None
        self.writer.write_tensor_data(np.ascontiguousarray(raw).reshape(-1))
        del raw
        self.done_bytes += _source_bytes(self.src, t.name)
        if self.progress is not None:
            self.progress(done, len(self.tensors), self.done_bytes, self.total_bytes, t.name)


def describe_plan(tensors: Iterable[PlannedTensor]) -> str:
    counts: dict[str, int] = {}
    for t in tensors:
        counts[t.ggml_type.name] = counts.get(t.ggml_type.name, 0) + 1
    return ", ".join(f"{k}×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


__all__ = [
    "RECIPES",
    "ConvertReport",
    "LoraMerge",
    "Recipe",
    "SafetensorsSource",
    "TextProgress",
    "check_architecture",
    "convert",
    "parse_recipe",
    "tensor_type",
]
