"""Attention over packed sequences in one Triton kernel, with rotary embeddings applied inside it.

ESM-2's sequences here are short (at most 168 tokens from a 500 bp chunk), so attention is a small
share of the FLOPs but, through a generic kernel, a large share of the time: the q/k/v split,
scaling and rotary each cost a pass over memory before the kernel starts. This kernel reads q, k
and v as strided views straight out of the fused qkv projection, scales q, applies rotary in fp32
(docs/ALGORITHM.md 5.3) and, for DNABERT-S, ALiBi, and runs an online-softmax attention per
sequence.
Short sequences (all of VirNucPro's) go to a kernel that rotates each sequence's keys once and
keeps them for all its queries, launched once per number of key chunks; longer ones to a general
kernel.

On a host without a GPU, `TRITON_INTERPRET=1` runs it on the CPU (the tests do, in fp32).
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from .packing import Pack

LOG2_E = tl.constexpr(1.4426950408889634)
# Tiles measured on an H200 with ESM-2 3B's and DNABERT-S's sequence mixes
# (benchmarks/attention_kernels.py). Capping registers at 128 lets four programs share an SM
# instead of two or three: 848 vs 1007 us per ESM-2 3B layer (benchmarks/RESULTS.md).
SHORT_TILE = {"BLOCK_M": 64, "CHUNK": 64, "num_warps": 4, "num_stages": 1, "maxnreg": 128}
MAX_CHUNKS = 4  # the short kernel holds at most four chunks of keys; longer: the general one
LONG_TILE = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 1, "maxnreg": 128}
TUNED_HEAD_DIM = 64  # the register cap is measured for this head size only


@triton.jit
def _load_rotated(
    at,
    row_stride,
    rows,
    length,
    cos_ptr,
    sin_ptr,
    scale,
    HEAD_DIM: tl.constexpr,
    ROTARY: tl.constexpr,
    HALF_PAD: tl.constexpr,
):
    """The two halves of one head's vectors for `rows` of a sequence starting at `at`, in fp32,
    times `scale`, rotated by fair-esm's rotate_half convention (the tables repeat their first
    half, which is all that is read). Rows past the sequence's end are zero."""
    HALF: tl.constexpr = HEAD_DIM // 2
    half = tl.arange(0, HALF_PAD)
    mask = (rows < length)[:, None] & (half < HALF)[None, :]
    at = at + rows[:, None] * row_stride + half[None, :]
    x1 = tl.load(at, mask=mask, other=0.0).to(tl.float32) * scale
    x2 = tl.load(at + HALF, mask=mask, other=0.0).to(tl.float32) * scale
    if ROTARY:
        table = rows[:, None] * HEAD_DIM + half[None, :]
        cos = tl.load(cos_ptr + table, mask=mask, other=0.0)
        sin = tl.load(sin_ptr + table, mask=mask, other=0.0)
        x1, x2 = x1 * cos - x2 * sin, x2 * cos + x1 * sin
    return x1, x2


@triton.jit
def _load_values(at, row_stride, rows, length, HEAD_DIM: tl.constexpr, PAD: tl.constexpr):
    dims = tl.arange(0, PAD)
    mask = (rows < length)[:, None] & (dims < HEAD_DIM)[None, :]
    return tl.load(at + rows[:, None] * row_stride + dims[None, :], mask=mask, other=0.0)


@triton.jit
def _load_keys(
    k_at,
    v_at,
    k_row_stride,
    v_row_stride,
    cols,
    length,
    cos_ptr,
    sin_ptr,
    HEAD_DIM: tl.constexpr,
    ROTARY: tl.constexpr,
    HALF_PAD: tl.constexpr,
):
    """Rotated keys (two halves) and values for `cols`, in the inputs' dtype."""
    k1, k2 = _load_rotated(
        k_at, k_row_stride, cols, length, cos_ptr, sin_ptr, 1.0, HEAD_DIM, ROTARY, HALF_PAD
    )
    dtype = v_at.dtype.element_ty
    v = _load_values(v_at, v_row_stride, cols, length, HEAD_DIM, 2 * HALF_PAD)
    return k1.to(dtype), k2.to(dtype), v


@triton.jit
def _softmax_step(
    q1, q2, k1, k2, v, rows, cols, valid, slope, best, total, acc,
    ALIBI: tl.constexpr, PRECISION: tl.constexpr, MASKED: tl.constexpr,
):  # fmt: skip
    """One block of keys of an online softmax: (running max, running sum, running output); the
    scores and the max are in log2 units. Where MASKED, only the block's first `valid` keys
    belong to the sequence; the others get no weight."""
    scores = tl.dot(q1, tl.trans(k1), input_precision=PRECISION)
    scores = tl.dot(q2, tl.trans(k2), scores, input_precision=PRECISION)
    if ALIBI:
        scores -= slope * tl.abs(rows[:, None] - cols[None, :]).to(tl.float32)
    scores *= LOG2_E
    if MASKED:
        inside = tl.arange(0, scores.shape[1]) < valid
        scores = tl.where(inside[None, :], scores, float("-inf"))
    new_best = tl.maximum(best, tl.max(scores, 1))
    rescale = tl.exp2(best - new_best)
    weights = tl.exp2(scores - new_best[:, None])
    total = total * rescale + tl.sum(weights, 1)
    acc = tl.dot(weights.to(v.dtype), v, acc * rescale[:, None], input_precision=PRECISION)
    return new_best, total, acc


@triton.jit
def _store(at, row_stride, rows, length, out, HEAD_DIM: tl.constexpr, PAD: tl.constexpr):
    dims = tl.arange(0, PAD)
    mask = (rows < length)[:, None] & (dims < HEAD_DIM)[None, :]
    tl.store(
        at + rows[:, None] * row_stride + dims[None, :], out.to(at.dtype.element_ty), mask=mask
    )


@triton.jit(do_not_specialize=["first"])  # one compilation per chunk count, not per bucket
def _short_attention(
    q_ptr, k_ptr, v_ptr, out_ptr, cu_seqlens_ptr, sequences_ptr, cos_ptr, sin_ptr, alibi_ptr,
    scale, q_row_stride, k_row_stride, v_row_stride, out_row_stride, heads, first,
    HEAD_DIM: tl.constexpr, ROTARY: tl.constexpr, ALIBI: tl.constexpr,
    PRECISION: tl.constexpr, HALF_PAD: tl.constexpr, BLOCK_M: tl.constexpr, CHUNK: tl.constexpr,
    CHUNKS: tl.constexpr,
):  # fmt: skip
    """Sequences of exactly CHUNKS chunks of keys, listed from `first` in `sequences_ptr`: one
    program per (sequence, head) rotates its keys once, in chunks it keeps for all its blocks of
    queries. Only the last chunk can hold keys past the sequence's end."""
    tl.static_assert(CHUNKS <= 4, "the short kernel has code for four chunks of keys")
    head = tl.program_id(0) % heads
    sequence = tl.load(sequences_ptr + first + tl.program_id(0) // heads)
    start = tl.load(cu_seqlens_ptr + sequence)
    length = tl.load(cu_seqlens_ptr + sequence + 1) - start
    in_last = length - (CHUNKS - 1) * CHUNK  # keys of the sequence in its last chunk
    q_at = q_ptr + start * q_row_stride + head * HEAD_DIM
    k_at = k_ptr + start * k_row_stride + head * HEAD_DIM
    v_at = v_ptr + start * v_row_stride + head * HEAD_DIM
    cols = tl.arange(0, CHUNK)
    # Triton has no arrays of tiles: one name per chunk, the unused ones compiled away.
    k1_a, k2_a, v_a = _load_keys(
        k_at, v_at, k_row_stride, v_row_stride, cols, length, cos_ptr, sin_ptr,
        HEAD_DIM, ROTARY, HALF_PAD,
    )  # fmt: skip
    if CHUNKS > 1:
        k1_b, k2_b, v_b = _load_keys(
            k_at, v_at, k_row_stride, v_row_stride, cols + CHUNK, length, cos_ptr, sin_ptr,
            HEAD_DIM, ROTARY, HALF_PAD,
        )  # fmt: skip
    if CHUNKS > 2:
        k1_c, k2_c, v_c = _load_keys(
            k_at, v_at, k_row_stride, v_row_stride, cols + 2 * CHUNK, length, cos_ptr, sin_ptr,
            HEAD_DIM, ROTARY, HALF_PAD,
        )  # fmt: skip
    if CHUNKS > 3:
        k1_d, k2_d, v_d = _load_keys(
            k_at, v_at, k_row_stride, v_row_stride, cols + 3 * CHUNK, length, cos_ptr, sin_ptr,
            HEAD_DIM, ROTARY, HALF_PAD,
        )  # fmt: skip
    slope = tl.load(alibi_ptr + head).to(tl.float32) if ALIBI else 0.0
    dtype = q_ptr.dtype.element_ty
    out_at = out_ptr + start * out_row_stride + head * HEAD_DIM
    for first_row in range(0, length, BLOCK_M):
        rows = first_row + tl.arange(0, BLOCK_M)
        q1, q2 = _load_rotated(
            q_at, q_row_stride, rows, length, cos_ptr, sin_ptr, scale, HEAD_DIM, ROTARY, HALF_PAD
        )
        q1, q2 = q1.to(dtype), q2.to(dtype)
        best = tl.full([BLOCK_M], float("-inf"), tl.float32)
        total = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, 2 * HALF_PAD], tl.float32)
        best, total, acc = _softmax_step(
            q1, q2, k1_a, k2_a, v_a, rows, cols, in_last, slope, best, total, acc,
            ALIBI, PRECISION, CHUNKS == 1,
        )  # fmt: skip
        if CHUNKS > 1:
            best, total, acc = _softmax_step(
                q1, q2, k1_b, k2_b, v_b, rows, cols + CHUNK, in_last, slope, best, total, acc,
                ALIBI, PRECISION, CHUNKS == 2,
            )  # fmt: skip
        if CHUNKS > 2:
            best, total, acc = _softmax_step(
                q1, q2, k1_c, k2_c, v_c, rows, cols + 2 * CHUNK, in_last, slope, best, total,
                acc, ALIBI, PRECISION, CHUNKS == 3,
            )  # fmt: skip
        if CHUNKS > 3:
            best, total, acc = _softmax_step(
                q1, q2, k1_d, k2_d, v_d, rows, cols + 3 * CHUNK, in_last, slope, best, total,
                acc, ALIBI, PRECISION, CHUNKS == 4,
            )  # fmt: skip
        _store(out_at, out_row_stride, rows, length, acc / total[:, None], HEAD_DIM, 2 * HALF_PAD)


@triton.jit(do_not_specialize=["blocks"])  # one compilation for every longest sequence
def _long_attention(
    q_ptr, k_ptr, v_ptr, out_ptr, cu_seqlens_ptr, cos_ptr, sin_ptr, alibi_ptr, scale,
    q_row_stride, k_row_stride, v_row_stride, out_row_stride, heads, blocks,
    HEAD_DIM: tl.constexpr, ROTARY: tl.constexpr, ALIBI: tl.constexpr,
    PRECISION: tl.constexpr, HALF_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Any length: one program per (sequence, head, block of queries), online softmax over
    blocks of keys; neighbouring programs share their keys in L2."""
    program = tl.program_id(0)
    block = program % blocks
    head = (program // blocks) % heads
    sequence = program // (blocks * heads)
    start = tl.load(cu_seqlens_ptr + sequence)
    length = tl.load(cu_seqlens_ptr + sequence + 1) - start
    if block * BLOCK_M >= length:
        return
    q_at = q_ptr + start * q_row_stride + head * HEAD_DIM
    k_at = k_ptr + start * k_row_stride + head * HEAD_DIM
    v_at = v_ptr + start * v_row_stride + head * HEAD_DIM
    dtype = q_ptr.dtype.element_ty
    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
    q1, q2 = _load_rotated(
        q_at, q_row_stride, rows, length, cos_ptr, sin_ptr, scale, HEAD_DIM, ROTARY, HALF_PAD
    )
    q1, q2 = q1.to(dtype), q2.to(dtype)
    slope = tl.load(alibi_ptr + head).to(tl.float32) if ALIBI else 0.0
    best = tl.full([BLOCK_M], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, 2 * HALF_PAD], tl.float32)
    for first_col in range(0, length, BLOCK_N):
        cols = first_col + tl.arange(0, BLOCK_N)
        k1, k2, v = _load_keys(
            k_at, v_at, k_row_stride, v_row_stride, cols, length, cos_ptr, sin_ptr,
            HEAD_DIM, ROTARY, HALF_PAD,
        )  # fmt: skip
        best, total, acc = _softmax_step(
            q1, q2, k1, k2, v, rows, cols, length - first_col, slope, best, total, acc,
            ALIBI, PRECISION, True,
        )  # fmt: skip
    out_at = out_ptr + start * out_row_stride + head * HEAD_DIM
    _store(out_at, out_row_stride, rows, length, acc / total[:, None], HEAD_DIM, 2 * HALF_PAD)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pack: Pack,
    scale: float,
    alibi_slopes: torch.Tensor | None = None,
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """softmax(rot(scale * q) rot(k)^T + alibi) v per sequence of the pack, (T, H, D) each.

    q, k and v may be strided views (of a fused qkv projection, say) as long as each row holds
    the heads side by side. `rotary` is (cos, sin) by position in the sequence, [positions, D],
    fp32 (`rotary.rotary_tables`).
    """
    tokens, heads, head_dim = q.shape
    if head_dim % 2:
        raise ValueError(f"varlen_attention needs an even head dimension, not {head_dim}")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v differ in dtype: {q.dtype}, {k.dtype}, {v.dtype}")
    for x in (q, k, v):
        if x.stride(2) != 1 or x.stride(1) != head_dim:
            raise ValueError("varlen_attention needs rows of (heads, head_dim), dims contiguous")
        if not offsets_fit_int32(tokens, x.stride(0)):
            raise ValueError(f"a pack of {tokens} tokens is too large here: use smaller packs")
    if rotary is not None and (rotary[0].shape[1] != head_dim or not rotary[0].is_contiguous()):
        raise ValueError("rotary tables must be contiguous [positions, head_dim]")
    cos, sin = rotary if rotary is not None else (q, q)  # q: a placeholder, never read
    out = torch.empty(tokens, heads, head_dim, device=q.device, dtype=q.dtype)
    # The short kernel takes its list of sequences between these two.
    leading = [q, k, v, out, pack.cu_seqlens]
    trailing = [
        cos, sin, alibi_slopes if alibi_slopes is not None else q,
        scale, q.stride(0), k.stride(0), v.stride(0), out.stride(0), heads,
    ]  # fmt: skip
    options = {
        "HEAD_DIM": head_dim,
        "ROTARY": rotary is not None,
        "ALIBI": alibi_slopes is not None,
        "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
        "HALF_PAD": max(16, triton.next_power_of_2(head_dim // 2)),
    }
    short = _tile(SHORT_TILE, head_dim)
    with torch.cuda.device_of(q):  # Triton launches on the current device, not q's
        if triton.cdiv(pack.max_seqlen, short["CHUNK"]) <= MAX_CHUNKS:
            sequences, counts = _by_chunk_count(pack, short["CHUNK"])
            first = 0
            for chunks, count in enumerate(counts):
                if chunks and count:
                    _short_attention[(count * heads,)](
                        *leading, sequences, *trailing, first, CHUNKS=chunks, **options, **short
                    )
                first += count
        else:
            tile = _tile(LONG_TILE, head_dim)
            blocks = triton.cdiv(pack.max_seqlen, tile["BLOCK_M"])
            grid = (len(pack.lengths) * heads * blocks,)
            _long_attention[grid](*leading, *trailing, blocks, **options, **tile)
    return out


def _by_chunk_count(pack: Pack, chunk: int) -> tuple[torch.Tensor, list[int]]:
    """The pack's sequences ordered by their number of key chunks (on the pack's device), and
    how many have 0, 1, ... MAX_CHUNKS. Each count gets its own kernel, which knows at compile
    time which chunk is the last: a branch per chunk cost layout conversions and register spills
    (889 vs 748 us per ESM-2 3B layer on an H100, benchmarks/RESULTS.md)."""

    def group() -> tuple[torch.Tensor, list[int]]:
        chunks = -(-np.asarray(pack.lengths) // chunk)
        sequences = torch.from_numpy(np.argsort(chunks, kind="stable").astype(np.int32))
        if pack.cu_seqlens.is_cuda:  # from pinned memory, the copy does not wait for the GPU
            sequences = sequences.pin_memory().to(pack.cu_seqlens.device, non_blocking=True)
        return sequences, np.bincount(chunks, minlength=MAX_CHUNKS + 1).tolist()

    return pack.cached(f"triton-varlen sequences by chunks of {chunk}", group)


def _tile(tile: dict, head_dim: int) -> dict:
    """Larger heads need more registers than the cap measured for 64-dim ones."""
    if head_dim <= TUNED_HEAD_DIM:
        return tile
    return {name: value for name, value in tile.items() if name != "maxnreg"}


def offsets_fit_int32(rows: int, row_stride: int) -> bool:
    """The kernels address rows with 32-bit offsets, the start of a pack's last sequence being
    the largest (65,536-token packs of ESM-2 3B's fused projection reach about 2^29)."""
    return rows * row_stride < 2**31
