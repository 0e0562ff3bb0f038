"""The GGML tensor types this pack reads and writes, with their block geometry.

Our own table (ids and sizes from the GGUF spec) so the reader never has to trust a third-party table, and so an
unsupported type is refused by name before any byte of its data is touched.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import AtelierError

QK_K = 256  # elements in a K-quant super-block
# The 16 non-uniform levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl), indexed by the stored 4-bit code.
IQ4_NL_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


class GGMLType(enum.IntEnum):
    """GGML type ids as stored in a GGUF tensor info (only the ones we support)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    IQ4_NL = 20
    IQ4_XS = 23
    BF16 = 30


@dataclass(frozen=True)
class TypeInfo:
    """Geometry of one type: `block_size` elements are stored in `type_size` bytes."""

    ggml_type: GGMLType
    name: str
    block_size: int
    type_size: int

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.type_size / self.block_size

    @property
    def is_float(self) -> bool:
        return self.block_size == 1

    def row_bytes(self, n_elements: int) -> int:
        """Bytes for `n_elements` consecutive elements (must be a whole number of blocks)."""
        if n_elements % self.block_size:
            raise AtelierError(
                f"{n_elements} elements are not a whole number of {self.name} blocks of {self.block_size}; "
                f"pick a type whose block size divides the row length"
            )
        return n_elements // self.block_size * self.type_size


def _info(t: GGMLType, block_size: int, type_size: int) -> TypeInfo:
    return TypeInfo(t, t.name, block_size, type_size)


TYPE_INFO: dict[GGMLType, TypeInfo] = {
    info.ggml_type: info
    for info in (
        _info(GGMLType.F32, 1, 4),
        _info(GGMLType.F16, 1, 2),
        _info(GGMLType.BF16, 1, 2),
        _info(GGMLType.Q8_0, 32, 2 + 32),
        _info(GGMLType.Q5_0, 32, 2 + 4 + 16),
        _info(GGMLType.Q5_1, 32, 2 + 2 + 4 + 16),
        _info(GGMLType.Q4_0, 32, 2 + 16),
        _info(GGMLType.Q4_1, 32, 2 + 2 + 16),
        _info(GGMLType.Q6_K, QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),
        _info(GGMLType.Q5_K, QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),
        _info(GGMLType.Q4_K, QK_K, 2 + 2 + 12 + QK_K // 2),
        _info(GGMLType.Q3_K, QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),
        _info(GGMLType.Q2_K, QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),
        _info(GGMLType.IQ4_NL, 32, 2 + 16),
        _info(GGMLType.IQ4_XS, QK_K, 2 + 2 + QK_K // 64 + QK_K // 2),
    )
}

SUPPORTED_TYPE_NAMES = ", ".join(info.name for info in TYPE_INFO.values())

# Names of GGML types we do not support, so an error can say what the file holds (ids from the GGUF spec).
_OTHER_TYPE_NAMES = {
    9: "Q8_1",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    21: "IQ3_S",
    22: "IQ2_S",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
    40: "NVFP4",
    41: "Q1_0",
}


def type_name(type_id: int) -> str:
    """A readable name for any type id, supported or not."""
    try:
        return GGMLType(type_id).name
    except ValueError:
        return _OTHER_TYPE_NAMES.get(int(type_id), "unknown")


def to_ggml_type(value: object) -> GGMLType:
    """Accept a GGMLType, a gguf.GGMLQuantizationType, an int id or a name like "Q4_K" / "q4_k"."""
    if isinstance(value, GGMLType):
        return value
    if isinstance(value, str):
        key = value.strip().upper()
        if key in GGMLType.__members__:
            return GGMLType[key]
        raise AtelierError(f"unsupported GGML type {value!r}; supported: {SUPPORTED_TYPE_NAMES}")
    try:
        type_id = int(value)  # IntEnum from the gguf package, numpy ints, plain ints
    except (TypeError, ValueError):
        raise AtelierError(f"not a GGML type: {value!r}; supported: {SUPPORTED_TYPE_NAMES}") from None
    try:
        return GGMLType(type_id)
    except ValueError:
        raise AtelierError(
            f"unsupported GGML type {type_name(type_id)} (id {type_id}); supported: {SUPPORTED_TYPE_NAMES}"
        ) from None


def type_info(value: object) -> TypeInfo:
    return TYPE_INFO[to_ggml_type(value)]


def tensor_nbytes(shape: tuple[int, ...] | list[int], ggml_type: object) -> int:
    """Bytes a tensor of `shape` (torch order: last dim is the row) takes in `ggml_type`."""
    info = type_info(ggml_type)
    n = 1
    for d in shape:
        n *= int(d)
    row = int(shape[-1]) if len(shape) else 1
    if row % info.block_size:
        raise AtelierError(
            f"a row of {row} elements is not a whole number of {info.name} blocks of {info.block_size}; "
            f"use a float type for this tensor"
        )
    return n // info.block_size * info.type_size
