"""Residual adds and LayerNorm in one pass over memory, and the exact GELU by table lookup
(Triton kernels on CUDA; PyTorch ops elsewhere).

The previous layer's MLP output is added inside this layer's first norm, without storing the
sum, and stored with the attention output added in the second norm: one rounding of the stream
per layer instead of two, and the norms see the unrounded sum (as torch.compile's fusion of the
same ops does). Reads and writes are half those of separate PyTorch ops.

PyTorch's exact (erf) GELU spends time and power on erf arithmetic, and the GPU is at its power
limit through ESM-2: what the GELU draws, the GEMMs lose in clock. A 16-bit input has only 65,536
values, so the GELU kernel looks each one up in PyTorch's own results for all of them, held in
shared memory: bit for bit what `F.gelu` returns, with no arithmetic at all (0.3-0.75 points of
MFU in ESM-2 3B, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CUDA builds of PyTorch bring Triton; elsewhere the PyTorch ops run
    triton = None

Deltas = tuple[torch.Tensor | None, ...]
GELU_TABLE_BYTES = 2**16 * 2  # every 16-bit pattern's result, in one program's shared memory
# One program per SM (the table takes 128 KiB of its shared memory), measured on an H200 with
# fc1's output of ESM-2 3B (benchmarks/RESULTS.md).
GELU_TILE = {"BLOCK": 32768, "num_warps": 16}


def add_layer_norm(x: torch.Tensor, deltas: Deltas, norm: nn.LayerNorm) -> torch.Tensor:
    """norm(x + the deltas that are not None), rows of x [T, W]; the sum is not kept."""
    return _fused(x, deltas, norm, keep_sum=False)[1]


def residual_add_layer_norm(
    x: torch.Tensor, deltas: Deltas, norm: nn.LayerNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, norm(s)) with s = x + the deltas, s rounded to x's dtype once."""
    return _fused(x, deltas, norm, keep_sum=True)


def exact_gelu(x: torch.Tensor) -> torch.Tensor:
    """`F.gelu(x)` (the erf form, docs/ALGORITHM.md 5.3) bit for bit; contiguous bf16/fp16 CUDA
    tensors are overwritten with it."""
    if not _gelu_kernel_applies(x):
        return F.gelu(x)
    programs = torch.cuda.get_device_properties(x.device).multi_processor_count
    grid = (min(programs, triton.cdiv(x.numel(), GELU_TILE["BLOCK"])),)
    with torch.cuda.device_of(x):  # Triton launches on the current device, not x's
        _gelu_in_place[grid](x, _gelu_table(x.device, x.dtype), x.numel(), **GELU_TILE)
    return x


def _gelu_kernel_applies(x: torch.Tensor) -> bool:
    if not (x.is_cuda and triton is not None and x.is_contiguous()):
        return False
    if x.dtype not in (torch.bfloat16, torch.float16):
        return False
    if not 0 < x.numel() <= 2**31 - GELU_TILE["BLOCK"]:  # the kernel counts in 32 bits
        return False
    properties = torch.cuda.get_device_properties(x.device)
    return getattr(properties, "shared_memory_per_block_optin", 0) >= GELU_TABLE_BYTES


def every_16_bit_value(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """All 65,536 values of a 16-bit dtype, in the order of their bit patterns read as int16."""
    patterns = torch.arange(-(2**15), 2**15, dtype=torch.int32, device=device)
    return patterns.to(torch.int16).view(dtype)


@functools.cache
def _gelu_table(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """F.gelu of every value of a 16-bit dtype, indexed by its bit pattern as int16 + 2^15."""
    return F.gelu(every_16_bit_value(dtype, device))


def _fused(
    x: torch.Tensor, deltas: Deltas, norm: nn.LayerNorm, keep_sum: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    present = [delta for delta in deltas if delta is not None]
    if x.is_cuda and triton is not None:
        return _triton_fused(x, present, norm, keep_sum)
    summed = x.float()
    for delta in present:
        summed = summed + delta.float()
    weight, bias = norm.weight.float(), norm.bias.float()
    normalized = F.layer_norm(summed, norm.normalized_shape, weight, bias, norm.eps)
    return summed.to(x.dtype), normalized.to(x.dtype)


def _triton_fused(
    x: torch.Tensor, deltas: list[torch.Tensor], norm: nn.LayerNorm, keep_sum: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if len(deltas) > 2:
        raise ValueError("the fused norm adds at most two deltas")
    x = x.contiguous()
    rows, width = x.shape
    summed = torch.empty_like(x) if keep_sum else x
    normalized = torch.empty_like(x)
    block = triton.next_power_of_2(width)
    first, second = ([delta.contiguous() for delta in deltas] + [x, x])[:2]  # x: never read
    with torch.cuda.device_of(x):  # Triton launches on the current device, not x's
        _add_layer_norm[(rows,)](
            x,
            first,
            second,
            norm.weight,
            norm.bias,
            summed,
            normalized,
            width,
            norm.eps,
            DELTAS=len(deltas),
            KEEP_SUM=keep_sum,
            BLOCK=block,
            num_warps=min(max(block // 512, 1), 16),
        )
    return summed, normalized


if triton is not None:

    @triton.jit
    def _add_layer_norm(
        x_ptr,
        first_ptr,
        second_ptr,
        weight_ptr,
        bias_ptr,
        summed_ptr,
        out_ptr,
        width,
        eps,
        DELTAS: tl.constexpr,
        KEEP_SUM: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64) * width
        columns = tl.arange(0, BLOCK)
        inside = columns < width
        x = tl.load(x_ptr + row + columns, mask=inside, other=0.0).to(tl.float32)
        if DELTAS >= 1:
            x += tl.load(first_ptr + row + columns, mask=inside, other=0.0).to(tl.float32)
        if DELTAS >= 2:
            x += tl.load(second_ptr + row + columns, mask=inside, other=0.0).to(tl.float32)
        if KEEP_SUM:
            tl.store(summed_ptr + row + columns, x.to(summed_ptr.dtype.element_ty), mask=inside)
        mean = tl.sum(x, 0) / width
        centered = tl.where(inside, x - mean, 0.0)
        inverse_std = 1.0 / tl.sqrt(tl.sum(centered * centered, 0) / width + eps)
        weight = tl.load(weight_ptr + columns, mask=inside, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + columns, mask=inside, other=0.0).to(tl.float32)
        out = centered * inverse_std * weight + bias
        tl.store(out_ptr + row + columns, out.to(out_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _gelu_in_place(x_ptr, table_ptr, count, BLOCK: tl.constexpr):
        table = tl.load(table_ptr + tl.arange(0, 65536))
        for first in range(tl.program_id(0) * BLOCK, count, tl.num_programs(0) * BLOCK):
            at = first + tl.arange(0, BLOCK)
            inside = at < count
            x = tl.load(x_ptr + at, mask=inside, other=0.0)
            pattern = x.to(tl.int16, bitcast=True).to(tl.int32) + 2**15
            tl.store(x_ptr + at, tl.gather(table, pattern, 0), mask=inside)
