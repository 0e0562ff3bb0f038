"""Fused GGML dequantization in Triton: one kernel launch per tensor, raw blocks in, final dtype out.

The torch decoders in `dequant.py` launch a dozen small kernels per tensor and write float32 intermediates; here a
single kernel reads the stored bytes and writes bf16 / fp16 / fp32 directly. Every value is computed with the same
float32 operations in the same order as `dequant.py` (and so as ggml): `d * sc` is rounded before it multiplies the
quant, `d * q - m` is a multiply then a subtract. Kernels are launched with `enable_fp_fusion=False`, so the GPU
compiler cannot contract a multiply and an add into an FMA (which rounds once instead of twice).

The float32 -> bfloat16 cast is done by hand on the bits (round to nearest even, NaN -> 0x7FC0, as torch's CPU
`.to()` does): Triton's interpreter truncates on that cast, and the integer form gives the same bits everywhere.
The float32 -> float16 cast is the native one (round to nearest even on the GPU and in the interpreter's numpy).

Bytes are loaded one at a time as uint8 and widened to int32 before any shift, so the kernels need no alignment (a
memory-mapped tensor at an odd storage offset is read in place) and no sub-word integer semantics. The fp16 scale
fields are assembled from their two little-endian bytes and bitcast.

Public: `dequantize_triton(raw, ggml_type, shape, dtype)`, `available(device)`, `SUPPORTED_TYPES`. Importing this
module never fails: without a usable Triton, `available()` is False. Under `TRITON_INTERPRET=1` (set before this
module is first imported) the kernels run in Triton's interpreter on CPU tensors, which is how the tests check them
on machines without a GPU.
"""

import contextlib
from collections.abc import Sequence

import torch

from ..errors import AtelierError
from .blocks import check_raw, const
from .types import GGMLType, to_ggml_type

try:
    import triton
    import triton.language as tl
except Exception as exc:  # not installed, or a broken install: the torch path serves either way
    triton = None
    tl = None
    _IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    _IMPORT_ERROR = None

SUPPORTED_TYPES: frozenset[GGMLType] = frozenset(
    {
        GGMLType.Q4_0,
        GGMLType.Q4_1,
        GGMLType.Q5_0,
        GGMLType.Q5_1,
        GGMLType.Q8_0,
        GGMLType.Q2_K,
        GGMLType.Q3_K,
        GGMLType.Q4_K,
        GGMLType.Q5_K,
        GGMLType.Q6_K,
        GGMLType.IQ4_NL,
        GGMLType.IQ4_XS,
    }
)

# Output dtypes the kernel writes itself; any other float dtype is written as float32 and cast by torch.
_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Blocks per program: ~2048 output elements per program for both block sizes (32 and 256 elements).
_BLOCKS_PER_PROGRAM = {32: 64, 256: 8}


if triton is not None:

    @triton.jit
    def _byte(ptr, mask):
        """The byte at `ptr`, zero-extended to int32 (all bit arithmetic below is on int32)."""
        return tl.load(ptr, mask=mask, other=0).to(tl.int32)

    @triton.jit
    def _sbyte(ptr, mask):
        """The byte at `ptr` read as int8, sign-extended to int32 (no pointer bitcast needed)."""
        return (_byte(ptr, mask) ^ 0x80) - 0x80

    @triton.jit
    def _f16(ptr, mask):
        """The little-endian fp16 at `ptr` (any alignment), as float32 (exact: every fp16 is a float32)."""
        bits = _byte(ptr, mask) | (_byte(ptr + 1, mask) << 8)
        return bits.to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)

    # Each decoder gets `base`, the (blocks, 1) pointers to the first byte of each block, `e`, the (1, block_size)
    # element indices within a block, and the (blocks, 1) mask of real blocks; it returns the (blocks, block_size)
    # float32 values, with the byte/bit arithmetic of the matching `dequant_*` in dequant.py written per element.

    @triton.jit
    def _q4_0(base, e, mask):
        d = _f16(base, mask)
        q = ((_byte(base + 2 + (e & 15), mask) >> ((e >> 4) * 4)) & 0x0F) - 8  # low nibbles first
        return d * q.to(tl.float32)

    @triton.jit
    def _q4_1(base, e, mask):
        d = _f16(base, mask)
        m = _f16(base + 2, mask)
        q = (_byte(base + 4 + (e & 15), mask) >> ((e >> 4) * 4)) & 0x0F
        return d * q.to(tl.float32) + m

    @triton.jit
    def _q5_0(base, e, mask):
        d = _f16(base, mask)
        hb = (_byte(base + 2 + (e >> 3), mask) >> (e & 7)) & 1  # bit e of the little-endian u32 at byte 2
        ql = (_byte(base + 6 + (e & 15), mask) >> ((e >> 4) * 4)) & 0x0F
        q = (ql | (hb << 4)) - 16
        return d * q.to(tl.float32)

    @triton.jit
    def _q5_1(base, e, mask):
        d = _f16(base, mask)
        m = _f16(base + 2, mask)
        hb = (_byte(base + 4 + (e >> 3), mask) >> (e & 7)) & 1
        ql = (_byte(base + 8 + (e & 15), mask) >> ((e >> 4) * 4)) & 0x0F
        q = ql | (hb << 4)
        return d * q.to(tl.float32) + m

    @triton.jit
    def _q8_0(base, e, mask):
        d = _f16(base, mask)
        q = _sbyte(base + 2 + e, mask)
        return q.to(tl.float32) * d

    @triton.jit
    def _q2_k(base, e, mask):
        # element e = 128*h + 32*j + i: bits 2j..2j+1 of qs[32*h + i]; 16 sub-blocks of 16 with 4-bit scale/min
        h = e >> 7
        j = (e >> 5) & 3
        i = e & 31
        s = e >> 4
        d = _f16(base + 80, mask)
        dmin = _f16(base + 82, mask)
        sc = _byte(base + s, mask)
        dl = d * (sc & 0x0F).to(tl.float32)
        ml = dmin * (sc >> 4).to(tl.float32)
        q = (_byte(base + 16 + 32 * h + i, mask) >> (2 * j)) & 3
        return dl * q.to(tl.float32) - ml

    @triton.jit
    def _q3_k(base, e, mask):
        h = e >> 7
        j = (e >> 5) & 3
        i = e & 31
        s = e >> 4
        d = _f16(base + 108, mask)
        # 6-bit signed scale of sub-block s: low 4 bits from sc[s % 8], high 2 bits from sc[8 + s % 4]
        low = (_byte(base + 96 + (s & 7), mask) >> (4 * (s >> 3))) & 0x0F
        high = (_byte(base + 104 + (s & 3), mask) >> (2 * (s >> 2))) & 3
        dl = d * ((low | (high << 4)) - 32).to(tl.float32)
        ql = (_byte(base + 32 + 32 * h + i, mask) >> (2 * j)) & 3
        # the high bit is bit 4h + j of hmask[i]; a clear bit means "subtract 4"
        hb = (_byte(base + i, mask) >> (4 * h + j)) & 1
        q = ql - ((hb ^ 1) << 2)
        return dl * q.to(tl.float32)

    @triton.jit
    def _k4_dl_ml(base, s, mask):
        """Q4_K / Q5_K: sub-block s's scale d * sc and offset dmin * mn (each product rounded, as in ggml), from
        d, dmin and the 6-bit codes in the 12 bytes a|b|c after them."""
        d = _f16(base, mask)
        dmin = _f16(base + 2, mask)
        a = _byte(base + 4 + (s & 3), mask)
        b = _byte(base + 8 + (s & 3), mask)
        c = _byte(base + 12 + (s & 3), mask)
        scale = tl.where(s < 4, a & 63, (c & 0x0F) | ((a >> 6) << 4))
        mn = tl.where(s < 4, b & 63, (c >> 4) | ((b >> 6) << 4))
        return d * scale.to(tl.float32), dmin * mn.to(tl.float32)

    @triton.jit
    def _q4_k(base, e, mask):
        s = e >> 5  # 8 sub-blocks of 32; sub-blocks 2c and 2c+1 are the low and high nibbles of qs[32c : 32c+32]
        i = e & 31
        dl, ml = _k4_dl_ml(base, s, mask)
        q = (_byte(base + 16 + 32 * (s >> 1) + i, mask) >> (4 * (s & 1))) & 0x0F
        return dl * q.to(tl.float32) - ml

    @triton.jit
    def _q5_k(base, e, mask):
        s = e >> 5
        i = e & 31
        dl, ml = _k4_dl_ml(base, s, mask)
        ql = (_byte(base + 48 + 32 * (s >> 1) + i, mask) >> (4 * (s & 1))) & 0x0F
        hb = (_byte(base + 16 + i, mask) >> s) & 1  # the fifth bit of sub-block s is bit s of qh[i]
        q = ql | (hb << 4)
        return dl * q.to(tl.float32) - ml

    @triton.jit
    def _q6_k(base, e, mask):
        # element e = 128*h + 32*g + i: low 4 bits from ql[64h + 32(g%2) + i] nibble g//2, high 2 from qh[32h + i]
        h = e >> 7
        g = (e >> 5) & 3
        i = e & 31
        s = e >> 4
        d = _f16(base + 208, mask)
        dl = d * _sbyte(base + 192 + s, mask).to(tl.float32)
        low = (_byte(base + 64 * h + 32 * (g & 1) + i, mask) >> (4 * (g >> 1))) & 0x0F
        high = (_byte(base + 128 + 32 * h + i, mask) >> (2 * g)) & 3
        q = (low | (high << 4)) - 32
        return dl * q.to(tl.float32)

    @triton.jit
    def _iq4_nl(base, e, mask, table):
        d = _f16(base, mask)
        idx = (_byte(base + 2 + (e & 15), mask) >> ((e >> 4) * 4)) & 0x0F
        return d * tl.load(table + idx)  # 16 floats, always in range (masked blocks read index 0)

    @triton.jit
    def _iq4_xs(base, e, mask, table):
        s = e >> 5
        i = e & 31
        d = _f16(base, mask)
        scales_h = _byte(base + 2, mask) | (_byte(base + 3, mask) << 8)  # little-endian u16
        low = (_byte(base + 4 + (s >> 1), mask) >> (4 * (s & 1))) & 0x0F  # sub-block 2i: low nibble, 2i+1: high
        high = (scales_h >> (2 * s)) & 3
        dl = d * ((low | (high << 4)) - 32).to(tl.float32)
        idx = (_byte(base + 8 + 16 * s + (i & 15), mask) >> (4 * (i >> 4))) & 0x0F
        return dl * tl.load(table + idx)

    @triton.jit
    def _f32_to_bf16(x):
        """float32 -> bfloat16, round to nearest even on the bits; NaN becomes 0x7FC0 like torch's CPU cast."""
        bits = x.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # unsigned: wraps only for NaN, replaced below
        rounded = tl.where(x != x, 0x7FC0, rounded)
        return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)

    @triton.jit
    def _dequant_kernel(  # noqa: C901 (one branch per GGML type, resolved at compile time: TYPE is constexpr)
        raw_ptr,
        out_ptr,
        table_ptr,
        n_blocks,
        TYPE: tl.constexpr,
        TYPE_SIZE: tl.constexpr,
        BLOCK_SIZE: tl.constexpr,
        BLOCKS: tl.constexpr,
        OUT_BF16: tl.constexpr,
    ):
        # int64 block index: the byte offset of a large tensor can pass 2**31
        blk = tl.program_id(0).to(tl.int64) * BLOCKS + tl.arange(0, BLOCKS)[:, None]  # (BLOCKS, 1)
        mask = blk < n_blocks
        base = raw_ptr + blk * TYPE_SIZE
        e = tl.arange(0, BLOCK_SIZE)[None, :]  # (1, BLOCK_SIZE)
        # TYPE is a compile-time constant: only one branch is compiled into each specialization
        if TYPE == 2:
            x = _q4_0(base, e, mask)
        elif TYPE == 3:
            x = _q4_1(base, e, mask)
        elif TYPE == 6:
            x = _q5_0(base, e, mask)
        elif TYPE == 7:
            x = _q5_1(base, e, mask)
        elif TYPE == 8:
            x = _q8_0(base, e, mask)
        elif TYPE == 10:
            x = _q2_k(base, e, mask)
        elif TYPE == 11:
            x = _q3_k(base, e, mask)
        elif TYPE == 12:
            x = _q4_k(base, e, mask)
        elif TYPE == 13:
            x = _q5_k(base, e, mask)
        elif TYPE == 14:
            x = _q6_k(base, e, mask)
        elif TYPE == 20:
            x = _iq4_nl(base, e, mask, table_ptr)
        else:
            tl.static_assert(TYPE == 23, "unsupported GGML type")
            x = _iq4_xs(base, e, mask, table_ptr)
        out = out_ptr + blk * BLOCK_SIZE + e
        if OUT_BF16:
            tl.store(out, _f32_to_bf16(x), mask=mask)
        else:
            tl.store(out, x.to(out_ptr.dtype.element_ty), mask=mask)


def _interpreted() -> bool:
    """Whether the kernels were built for Triton's interpreter (TRITON_INTERPRET=1 when this module was imported)."""
    return triton is not None and type(_dequant_kernel).__name__ == "InterpretedFunction"


def available(device: torch.device | str) -> bool:
    """Whether `dequantize_triton` can run on tensors of `device`.

    A CUDA (or ROCm, which torch also calls "cuda") device with Triton installed; any device when the kernels run in
    Triton's interpreter, which copies the arguments to the host.
    """
    if triton is None:
        return False
    device_type = torch.device(device).type
    if _interpreted():
        return device_type in ("cpu", "cuda")
    return device_type == "cuda"


def unavailable_reason() -> str | None:
    """Why Triton could not be imported (None when it was)."""
    return _IMPORT_ERROR


def dequantize_triton(
    raw: torch.Tensor, ggml_type: object, shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Decode the stored bytes of one quantized tensor into a `shape` tensor of `dtype` with one kernel launch.

    Bit-identical to `dequant.dequantize` (float32 computed as ggml does, then cast with round to nearest even).
    `raw` is the uint8 bytes of the whole tensor, on a device `available()` accepts; any storage offset and any
    strides (a non-contiguous `raw` is copied first).
    """
    if triton is None:
        raise AtelierError(f"Triton is not usable here ({_IMPORT_ERROR}); use dequant.dequantize")
    t = to_ggml_type(ggml_type)
    if t not in SUPPORTED_TYPES:
        raise AtelierError(f"no Triton dequantizer for {t.name}; use dequant.dequantize")

    info, shape, n = check_raw(raw, t, shape)
    out_dtype = dtype if dtype in _OUT_DTYPES else torch.float32
    out = torch.empty(n, dtype=out_dtype, device=raw.device)
    n_blocks = n // info.block_size
    if n_blocks:
        # byte loads need no alignment, but the pointer arithmetic assumes one contiguous run of bytes
        flat = raw.reshape(-1).contiguous()
        table = const("iq4nl_values", raw.device)
        blocks = _BLOCKS_PER_PROGRAM[info.block_size]
        grid = (triton.cdiv(n_blocks, blocks),)
        # launch on raw's GPU, not on whichever one is current
        with torch.cuda.device(raw.device) if raw.device.type == "cuda" else contextlib.nullcontext():
            _dequant_kernel[grid](
                flat,
                out,
                table,
                n_blocks,
                TYPE=int(t),
                TYPE_SIZE=info.type_size,
                BLOCK_SIZE=info.block_size,
                BLOCKS=blocks,
                OUT_BF16=out_dtype == torch.bfloat16,
                enable_fp_fusion=False,  # no FMA contraction: d * q + m must round twice, as on the CPU
            )
    out = out.reshape(shape)
    return out if out_dtype == dtype else out.to(dtype)
