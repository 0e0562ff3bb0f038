"""A bounds-checked GGUF reader over a memory map.

The `gguf` package's reader trusts every count and length in the file, so a damaged or hostile file can make it
allocate gigabytes or read past the end. This reader checks each number against hard limits and against the bytes
that are left before it uses it, so a bad file fails in milliseconds with one `AtelierError` that names the file.
`GGUFFile.raw(name)` is a zero-copy view into a read-only `numpy.memmap`, for tools that read a file once and
exit (inspect, compare, quantize). A model that stays loaded uses `GGUFFile.copy_tensors()` instead: its bytes are
read into memory of its own, so a file truncated or overwritten later (a re-download) can neither kill the process
with SIGBUS nor change the weights under it.

GGUF layout (little-endian): magic "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/value pairs,
the tensor infos (name, u32 n_dims, u64 dims innermost first, u32 type, u64 offset), padding to
`general.alignment`, then the tensor data (offsets are relative to the start of the data).
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..errors import AtelierError
from .types import SUPPORTED_TYPE_NAMES, TYPE_INFO, GGMLType, type_name

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS

# Hard limits. Real diffusion-model files are far inside them (Flux: ~780 tensors, < 20 keys).
# (the largest LLM GGUFs have ~1,100 tensors; at these caps a hostile header still parses in ~0.3 s)
MAX_TENSORS = 16_384
MAX_KV = 16_384
MAX_KEY_BYTES = 65_536
MAX_NAME_BYTES = 4_096
MAX_STRING_BYTES = 16 << 20
MAX_ALIGNMENT = 1 << 20
# Arrays longer than this are skipped (kept as a `SkippedArray` placeholder) instead of turned into lists.
MAX_KEPT_ARRAY_ITEMS = 131_072
# Items whose size is not fixed (strings, nested arrays) are walked one by one; this caps that walk for the file
# (a 256k-token vocabulary fits; the walk of the cap takes ~0.2 s).
MAX_WALKED_ITEMS = 600_000
# Strings and lists kept in `metadata`, all together.
MAX_KEPT_METADATA_BYTES = 64 << 20


class ValueType:
    """GGUF metadata value type ids."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_SCALAR_FORMATS = {
    ValueType.UINT8: "<B",
    ValueType.INT8: "<b",
    ValueType.UINT16: "<H",
    ValueType.INT16: "<h",
    ValueType.UINT32: "<I",
    ValueType.INT32: "<i",
    ValueType.FLOAT32: "<f",
    ValueType.BOOL: "<?",
    ValueType.UINT64: "<Q",
    ValueType.INT64: "<q",
    ValueType.FLOAT64: "<d",
}
_SCALAR_NUMPY = {
    ValueType.UINT8: "<u1",
    ValueType.INT8: "<i1",
    ValueType.UINT16: "<u2",
    ValueType.INT16: "<i2",
    ValueType.UINT32: "<u4",
    ValueType.INT32: "<i4",
    ValueType.FLOAT32: "<f4",
    ValueType.BOOL: "<u1",
    ValueType.UINT64: "<u8",
    ValueType.INT64: "<i8",
    ValueType.FLOAT64: "<f8",
}
VALUE_TYPE_NAMES = {v: k for k, v in vars(ValueType).items() if k.isupper()}
_STRUCTS = {fmt: struct.Struct(fmt) for fmt in _SCALAR_FORMATS.values()}
_U32 = _STRUCTS["<I"]
_U64 = _STRUCTS["<Q"]
_INFO_BY_ID = {int(t): info for t, info in TYPE_INFO.items()}  # int keys: Enum hashing is slow


@dataclass(frozen=True)
class SkippedArray:
    """Placeholder for a metadata array too long to keep (a tokenizer vocabulary, say)."""

    item_type: str
    count: int

    def __repr__(self) -> str:
        return f"<array of {self.count} {self.item_type}, not loaded>"


class TensorInfo(NamedTuple):
    name: str
    shape: tuple[int, ...]  # torch order: the GGUF dims reversed, last dim is the row
    ggml_type: GGMLType
    offset: int  # absolute byte offset of the data in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class _Fail(Exception):
    """Internal: a parse failure; `open_gguf` turns it into an AtelierError naming the file."""

    def __init__(self, what: str, todo: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.todo = todo


_REDOWNLOAD = "Re-download or re-convert the file."


def _describe(what: Any) -> str:
    """Error-message parts are built only on failure: `what` is a string or a (template, arg) pair."""
    if isinstance(what, tuple):
        template, arg = what
        return template % (_describe(arg) if isinstance(arg, tuple) else arg,)
    return what


class _Cursor:
    """Reads little-endian values from a buffer, checking every read against the end."""

    def __init__(self, buf: memoryview, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.walked = 0
        self.kept_bytes = 0

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: Any) -> None:
        if n > self.size - self.pos:
            what = _describe(what)
            raise _Fail(
                f"the file ends inside {what} (needs {n} bytes at offset {self.pos}, "
                f"only {self.size - self.pos} left): it is truncated or damaged",
                _REDOWNLOAD,
            )

    def scalar(self, fmt: str, what: Any) -> Any:
        st = _STRUCTS[fmt]
        if st.size > self.size - self.pos:
            self.need(st.size, what)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def u32(self, what: Any) -> int:
        if self.size - self.pos < 4:
            self.need(4, what)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return value

    def u64(self, what: Any) -> int:
        if self.size - self.pos < 8:
            self.need(8, what)
        (value,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return value

    def string(self, what: Any, limit: int, keep: bool = True) -> str:
        length = self.u64(("the length of %s", what))
        if length > limit:
            what = _describe(what)
            raise _Fail(
                f"{what} claims {length} bytes (limit {limit}): the file is damaged or not a model", _REDOWNLOAD
            )
        self.need(length, what)
        start = self.pos
        self.pos += length
        if not keep:
            return ""
        self.keep(length)
        try:
            return bytes(self.buf[start : start + length]).decode("utf-8")
        except UnicodeDecodeError:
            raise _Fail(f"{_describe(what)} is not valid UTF-8: the file is damaged", _REDOWNLOAD) from None

    def keep(self, n: int) -> None:
        self.kept_bytes += n
        if self.kept_bytes > MAX_KEPT_METADATA_BYTES:
            raise _Fail(
                f"the metadata holds more than {MAX_KEPT_METADATA_BYTES >> 20} MiB of strings and lists: "
                "this is not a diffusion-model file this loader accepts",
                "Use a GGUF converted from a Flux/Kontext transformer.",
            )

    def walk(self, n: int, what: str) -> None:
        self.walked += n
        if self.walked > MAX_WALKED_ITEMS:
            raise _Fail(
                f"the metadata has more than {MAX_WALKED_ITEMS} variable-size items (at {what}): "
                "the file is damaged or not a diffusion model",
                _REDOWNLOAD,
            )


def _value_type_name(vtype: int) -> str:
    return VALUE_TYPE_NAMES.get(vtype, f"type {vtype}")


def _read_value(cur: _Cursor, vtype: int, key: str, depth: int = 0, keep: bool = True) -> Any:
    if vtype in _SCALAR_FORMATS:
        value = cur.scalar(_SCALAR_FORMATS[vtype], ("the value of %r", key))
        return bool(value) if vtype == ValueType.BOOL else value
    if vtype == ValueType.STRING:
        return cur.string(("the string value of %r", key), MAX_STRING_BYTES, keep=keep)
    if vtype == ValueType.ARRAY:
        return _read_array(cur, key, depth, keep)
    raise _Fail(f"metadata {key!r} has an unknown value type {vtype}: the file is damaged", _REDOWNLOAD)


def _read_array(cur: _Cursor, key: str, depth: int, keep: bool) -> Any:
    if depth >= 2:
        raise _Fail(f"metadata {key!r} nests arrays more than two deep: the file is damaged", _REDOWNLOAD)
    item_type = cur.u32(("the item type of %r", key))
    count = cur.u64(("the item count of %r", key))
    if item_type in _SCALAR_FORMATS:
        item_size = struct.calcsize(_SCALAR_FORMATS[item_type])
        if count > cur.remaining() // item_size:
            raise _Fail(
                f"metadata array {key!r} claims {count} items of {item_size} bytes, more than the "
                f"{cur.remaining()} bytes left in the file: it is truncated or damaged",
                _REDOWNLOAD,
            )
        start = cur.pos
        cur.pos += count * item_size
        if not keep or count > MAX_KEPT_ARRAY_ITEMS:
            return SkippedArray(_value_type_name(item_type), count)
        cur.keep(count * item_size)
        arr = np.frombuffer(cur.buf, dtype=_SCALAR_NUMPY[item_type], count=count, offset=start)
        values = arr.tolist()
        return [bool(v) for v in values] if item_type == ValueType.BOOL else values
    if item_type == ValueType.STRING:
        if count > cur.remaining() // 8:
            raise _Fail(
                f"metadata array {key!r} claims {count} strings, more than the {cur.remaining()} bytes "
                "left in the file can hold: it is truncated or damaged",
                _REDOWNLOAD,
            )
        cur.walk(count, repr(key))
        keep_items = keep and count <= MAX_KEPT_ARRAY_ITEMS
        items = _string_array(cur, count, key, keep_items)
        return items if keep_items else SkippedArray("STRING", count)
    if item_type == ValueType.ARRAY:
        if count > cur.remaining() // 12:
            raise _Fail(
                f"metadata array {key!r} claims {count} items, more than the {cur.remaining()} bytes "
                "left in the file can hold: it is truncated or damaged",
                _REDOWNLOAD,
            )
        cur.walk(count, repr(key))
        keep_items = keep and count <= MAX_KEPT_ARRAY_ITEMS
        items = [_read_value(cur, item_type, key, depth + 1, keep_items) for _ in range(count)]
        if not keep_items:
            return SkippedArray(_value_type_name(item_type), count)
        cur.keep(8 * count)  # list slots
        return items
    raise _Fail(f"metadata array {key!r} has an unknown item type {item_type}: the file is damaged", _REDOWNLOAD)


def _string_array(cur: _Cursor, count: int, key: str, keep: bool) -> list[str]:
    """Walk `count` strings in a tight loop (tokenizer vocabularies hold 10^5 of them); decode them if `keep`."""
    buf, pos, size, unpack = cur.buf, cur.pos, cur.size, _U64.unpack_from
    start = pos
    out: list[str] = []
    for i in range(count):
        if size - pos < 8:
            cur.pos = pos
            cur.need(8, f"item {i} of {key!r}")
        (n,) = unpack(buf, pos)
        pos += 8
        if n > size - pos or n > MAX_STRING_BYTES:
            cur.pos = pos
            raise _Fail(f"item {i} of metadata array {key!r} claims {n} bytes, past the end of the file", _REDOWNLOAD)
        if keep:
            try:
                out.append(str(buf[pos : pos + n], "utf-8"))
            except UnicodeDecodeError:
                raise _Fail(
                    f"item {i} of metadata array {key!r} is not valid UTF-8: the file is damaged", _REDOWNLOAD
                ) from None
        pos += n
    cur.pos = pos
    if keep:
        cur.keep(pos - start)  # the text plus roughly a list slot per item
    return out


def _sniff_other_format(head: bytes) -> str:
    if head[:2] == b"PK":
        return " (it looks like a zip / PyTorch checkpoint)"
    if head[:1] == b"\x80":
        return " (it looks like a Python pickle)"
    if len(head) >= 9:
        (n,) = struct.unpack_from("<Q", head, 0)
        if head[8:9] == b"{" and n < (1 << 30):
            return " (it looks like a safetensors file)"
    return ""


class GGUFFile:
    """An open, validated GGUF file. Use as a context manager or call `close()`."""

    def __init__(
        self,
        path: str,
        version: int,
        metadata: dict[str, Any],
        metadata_types: dict[str, str],
        tensors: OrderedDict[str, TensorInfo],
        alignment: int,
        data_offset: int,
        file_size: int,
        mm: np.memmap | None,
        file_id: tuple[int, ...] = (),
    ) -> None:
        self.path = path
        self.version = version
        self.metadata = metadata
        self.metadata_types = metadata_types
        self.tensors = tensors
        self.alignment = alignment
        self.data_offset = data_offset
        self.file_size = file_size
        self._mm = mm
        self.file_id = file_id  # (device, inode, size, mtime_ns) when opened: tells a replaced file apart

    @property
    def architecture(self) -> str | None:
        """`general.architecture` ("flux" for Flux/Kontext files), or None when the file does not say."""
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of one tensor: a read-only uint8 view into the memory map (no copy)."""
        info = self._info(name)
        if self._mm is None:
            if info.nbytes == 0:
                return np.zeros(0, dtype=np.uint8)
            raise AtelierError(f"{self.path}: the file is closed; open it again to read tensor {name!r}")
        return self._mm[info.offset : info.offset + info.nbytes].view(np.ndarray)

    def raw_torch(self, name: str):
        """`raw(name)` as a CPU torch uint8 tensor sharing the memory map (read-only: do not write to it)."""
        import torch

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*")
            return torch.from_numpy(self.raw(name))

    def copy_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every tensor's stored bytes read into a fresh uint8 array (not the memory map), in file order.

        Reads with ``readinto`` from a file handle rather than copying out of the map: the copy then never maps the
        file's pages into the process (no RSS beyond the copy itself, only reclaimable page cache), and a file that
        shrank since it was opened gives a short read, reported here, instead of a SIGBUS. A file replaced since
        ``open_gguf`` (another inode, size or modification time) is refused before anything is read.
        """
        with open(self.path, "rb") as handle:
            if self.file_id and _file_id(os.fstat(handle.fileno())) != self.file_id:
                raise AtelierError(_changed_message(self.path))
            for info in sorted(self.tensors.values(), key=lambda t: t.offset):
                data = np.empty(info.nbytes, dtype=np.uint8)
                handle.seek(info.offset)
                if info.nbytes and handle.readinto(memoryview(data)) != info.nbytes:
                    raise AtelierError(_changed_message(self.path))
                yield info.name, data

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise AtelierError(f"{self.path}: no tensor named {name!r} in this GGUF file") from None

    def close(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None and getattr(mm, "_mmap", None) is not None:
            try:
                mm._mmap.close()
            except (BufferError, ValueError):
                # Views handed out by raw() still use the map; it closes when the last one is freed.
                pass

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFFile({self.path!r}, v{self.version}, {len(self.tensors)} tensors, arch={self.architecture!r})"


def open_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Open and validate a GGUF file. Raises AtelierError (naming the file and what to do) on any problem."""
    path = os.fspath(path)
    try:
        if not os.path.exists(path):
            raise _Fail("the file does not exist", "Check the path or pick the file again.")
        if not os.path.isfile(path):
            raise _Fail("it is not a regular file", "Pick a .gguf file.")
        stat = os.stat(path)
        file_size = stat.st_size
        if file_size < 24:
            raise _Fail(f"it has only {file_size} bytes, too few for a GGUF header", _REDOWNLOAD)
        try:
            mm = np.memmap(path, dtype=np.uint8, mode="r")
        except OSError as e:
            raise _Fail(f"it cannot be opened ({e.strerror or e})", "Check that the file is readable.") from None
    except _Fail as f:
        raise _error(path, f) from None
    try:
        gf = _parse(path, mm, file_size)
        gf.file_id = _file_id(stat)
        return gf
    except _Fail as f:
        _close_map(mm)
        raise _error(path, f) from None
    except BaseException:
        _close_map(mm)
        raise


def _file_id(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _changed_message(path: str) -> str:
    return (
        f"{path}: the file changed while it was being loaded (it is shorter or was replaced, e.g. by a download or "
        "copy still in progress). Wait until the file is complete, then run again."
    )


def read_architecture(path: str | os.PathLike[str]) -> str | None:
    """`general.architecture` of a GGUF file (validating the file on the way)."""
    with open_gguf(path) as f:
        return f.architecture


def _close_map(mm: np.memmap) -> None:
    m = getattr(mm, "_mmap", None)
    if m is not None:
        try:
            m.close()
        except (BufferError, ValueError):
            pass


def _error(path: str, f: _Fail) -> AtelierError:
    msg = f"{path}: not a usable GGUF file: {f.what}."
    if f.todo:
        msg += " " + f.todo
    return AtelierError(msg)


def _parse(path: str, mm: np.memmap, file_size: int) -> GGUFFile:
    buf = memoryview(mm)
    cur = _Cursor(buf, file_size)
    version = _read_version(cur, bytes(buf[:16]))
    n_tensors, n_kv = _read_counts(cur, file_size)
    metadata, metadata_types = _read_metadata(cur, n_kv)
    alignment = _alignment(metadata, metadata_types)
    raw_infos = _read_tensor_infos(cur, n_tensors)
    data_offset = -(-cur.pos // alignment) * alignment
    tensors = _locate_tensors(raw_infos, alignment, data_offset, file_size)
    _check_no_overlap(tensors)
    return GGUFFile(path, version, metadata, metadata_types, tensors, alignment, data_offset, file_size, mm)


def _read_version(cur: _Cursor, head: bytes) -> int:
    if head[:4] != GGUF_MAGIC:
        raise _Fail(
            f"it does not start with the GGUF magic (found {head[:4]!r}){_sniff_other_format(head)}",
            "Pick a .gguf file; safetensors and checkpoints go through the other formats of the loader.",
        )
    cur.pos = 4
    version = cur.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        swapped = struct.unpack("<I", struct.pack(">I", version))[0]
        if swapped in SUPPORTED_VERSIONS:
            raise _Fail("it is a big-endian GGUF, which this loader does not read", "Convert it little-endian.")
        if version == 1:
            raise _Fail("it is GGUF version 1, which is obsolete", "Re-convert it with a current converter.")
        raise _Fail(f"its GGUF version {version} is not supported (2 and 3 are)", "Re-convert it or update the pack.")
    return version


def _read_counts(cur: _Cursor, file_size: int) -> tuple[int, int]:
    n_tensors = cur.u64("the tensor count")
    n_kv = cur.u64("the metadata count")
    # The smallest tensor info is 8 (name length) + 1 + 4 + 4 + 8 bytes, the smallest key/value 8 + 1 + 4 + 1.
    if n_tensors > MAX_TENSORS or n_tensors * 25 > cur.remaining():
        raise _Fail(
            f"it claims {n_tensors} tensors, more than {MAX_TENSORS} or than its {file_size} bytes can hold",
            _REDOWNLOAD,
        )
    if n_kv > MAX_KV or n_kv * 14 > cur.remaining():
        raise _Fail(
            f"it claims {n_kv} metadata entries, more than {MAX_KV} or than its {file_size} bytes can hold",
            _REDOWNLOAD,
        )
    return n_tensors, n_kv


def _read_metadata(cur: _Cursor, n_kv: int) -> tuple[dict[str, Any], dict[str, str]]:
    metadata: dict[str, Any] = {}
    metadata_types: dict[str, str] = {}
    for i in range(n_kv):
        key = cur.string(("metadata key #%d", i), MAX_KEY_BYTES)
        if key in metadata:
            raise _Fail(f"metadata key {key!r} appears twice: the file is damaged", _REDOWNLOAD)
        vtype = cur.u32(("the value type of %r", key))
        metadata[key] = _read_value(cur, vtype, key)
        metadata_types[key] = _value_type_name(vtype)
    return metadata, metadata_types


def _alignment(metadata: dict[str, Any], metadata_types: dict[str, str]) -> int:
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    alignment = metadata["general.alignment"]
    if (
        metadata_types["general.alignment"] != "UINT32"
        or not 0 < alignment <= MAX_ALIGNMENT
        or alignment & (alignment - 1)
    ):
        raise _Fail(
            f"general.alignment is {alignment!r} ({metadata_types['general.alignment']}); it must be a "
            f"power of two up to {MAX_ALIGNMENT} stored as UINT32",
            _REDOWNLOAD,
        )
    return alignment


def _read_tensor_infos(cur: _Cursor, n_tensors: int) -> list[tuple[str, list[int], int, int]]:
    raw_infos = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = cur.string(("the name of tensor #%d", i), MAX_NAME_BYTES)
        if name in seen:
            raise _Fail(f"tensor {name!r} appears twice: the file is damaged", _REDOWNLOAD)
        seen.add(name)
        n_dims = cur.u32(("the dimension count of tensor %r", name))
        if n_dims > MAX_DIMS:
            raise _Fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})", _REDOWNLOAD)
        dims = [cur.u64(("the dimensions of tensor %r", name)) for _ in range(n_dims)]
        type_id = cur.u32(("the type of tensor %r", name))
        offset = cur.u64(("the data offset of tensor %r", name))
        raw_infos.append((name, dims, type_id, offset))
    return raw_infos


def _locate_tensors(raw_infos, alignment: int, data_offset: int, file_size: int) -> OrderedDict[str, TensorInfo]:
    tensors: OrderedDict[str, TensorInfo] = OrderedDict()
    for name, dims, type_id, offset in raw_infos:
        tensors[name] = _locate_tensor(name, dims, type_id, offset, alignment, data_offset, file_size)
    return tensors


def _locate_tensor(name, dims, type_id, offset, alignment, data_offset, file_size) -> TensorInfo:
    """One tensor's place in the file, checked: a supported type, whole blocks, aligned, inside the file."""
    info = _INFO_BY_ID.get(type_id)
    if info is None:
        raise _Fail(
            f"tensor {name!r} uses GGML type {type_name(type_id)} (id {type_id}), which this loader does not "
            f"support (supported: {SUPPORTED_TYPE_NAMES})",
            "Re-quantize the model to one of the supported types.",
        )
    if 0 in dims:
        # Zero elements would pass every size check below, whatever the other dimensions claim, and then either
        # overflow torch's element count (dims of 2**40) or load as a layer of width 0 that computes nothing.
        raise _Fail(
            f"tensor {name!r} has a dimension of 0 (dims {dims}): a layer of width 0 cannot compute anything",
            _REDOWNLOAD,
        )
    n_elements = 1
    for d in dims:
        n_elements *= d  # Python ints: no overflow, the size check below bounds it
    row = dims[0] if dims else 1
    if row % info.block_size:
        raise _Fail(
            f"tensor {name!r} has rows of {row} elements, not a whole number of {info.name} blocks of "
            f"{info.block_size}",
            _REDOWNLOAD,
        )
    nbytes = n_elements // info.block_size * info.type_size
    if offset % alignment:
        raise _Fail(
            f"tensor {name!r} starts at offset {offset}, not a multiple of the alignment {alignment}", _REDOWNLOAD
        )
    data_size = file_size - data_offset
    if nbytes and (data_size < 0 or offset + nbytes > data_size):
        raise _Fail(
            f"it is truncated: tensor {name!r} needs bytes {data_offset + offset}..{data_offset + offset + nbytes} "
            f"but the file has only {file_size} bytes",
            _REDOWNLOAD,
        )
    return TensorInfo(name, tuple(reversed(dims)), info.ggml_type, data_offset + offset, nbytes)


def _check_no_overlap(tensors: OrderedDict[str, TensorInfo]) -> None:
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors.values() if t.nbytes)
    for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a:
            raise _Fail(f"tensors {name_a!r} and {name_b!r} overlap in the file: it is damaged", _REDOWNLOAD)
