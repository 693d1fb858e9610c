"""Residual adds and LayerNorm in one pass over memory, and the exact GELU by table lookup
(Triton kernels on CUDA; PyTorch ops elsewhere).

The previous layer's MLP output is added inside this layer's first norm, without storing the
sum, and stored with the attention output added in the second norm: one rounding of the stream
per layer instead of two, and the norms see the unrounded sum (as torch.compile's fusion of the
same ops does). Reads and writes are half those of separate PyTorch ops.

PyTorch's exact (erf) GELU is bound by its erf arithmetic, not by memory. A bf16 input has only
65,536 values, so the GELU kernel looks each one up in PyTorch's own results for the values that
occur (magnitudes 2^-47 to 2^17), bit for bit what PyTorch returns; outside that range PyTorch's
formula reduces to closed forms (x/2, x, -0 or NaN), which the kernel applies.
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
GELU_LOW_EXPONENT = 80  # bf16 exponents 80-143 are looked up: 2^-47 <= |x| < 2^17
GELU_EXPONENTS = 64
GELU_TABLE_SIZE = 2 * GELU_EXPONENTS * 128  # sign x exponent x 7-bit mantissa
GELU_BLOCK = 16384  # per program and step: 16 warps x 32 values, two programs per SM


def add_layer_norm(x: torch.Tensor, deltas: Deltas, norm: nn.LayerNorm) -> torch.Tensor:
    """norm(x + the deltas that are not None), rows of x [T, W]; the sum is not kept."""
    return _fused(x, deltas, norm, keep_sum=False)[1]


def residual_add_layer_norm(
    x: torch.Tensor, deltas: Deltas, norm: nn.LayerNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, norm(s)) with s = x + the deltas, s rounded to x's dtype once."""
    return _fused(x, deltas, norm, keep_sum=True)


def exact_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * Phi(x) (the erf form, REFERENCE 2), equal bit for bit to `F.gelu(x)`; contiguous bf16
    CUDA tensors are overwritten with the result."""
    if not (x.is_cuda and triton is not None and x.dtype == torch.bfloat16 and x.is_contiguous()):
        return F.gelu(x)
    if x.numel() > 2**31 - GELU_BLOCK:  # the kernel counts elements in 32 bits
        return F.gelu(x)
    table = _gelu_table(x.device)
    programs = 2 * torch.cuda.get_device_properties(x.device).multi_processor_count
    grid = (min(programs, triton.cdiv(x.numel(), GELU_BLOCK)),)
    with torch.cuda.device_of(x):  # Triton launches on the current device, not x's
        _gelu_in_place[grid](
            x, table, x.numel(), GELU_LOW_EXPONENT, GELU_EXPONENTS, GELU_BLOCK, num_warps=16
        )
    return x


@functools.cache
def _gelu_table(device: torch.device) -> torch.Tensor:
    """F.gelu of every bf16 value whose exponent the kernel looks up, by its index there."""
    index = torch.arange(GELU_TABLE_SIZE, device=device, dtype=torch.int32)
    sign = (index >= GELU_TABLE_SIZE // 2).int()
    exponent = (index // 128) % GELU_EXPONENTS + GELU_LOW_EXPONENT
    bits = sign * 0x8000 + exponent * 128 + index % 128
    signed = torch.where(bits >= 0x8000, bits - 0x10000, bits).to(torch.int16)
    return F.gelu(signed.view(torch.bfloat16))


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
    def _gelu_in_place(
        x_ptr, table_ptr, count, LOW: tl.constexpr, EXPONENTS: tl.constexpr, BLOCK: tl.constexpr
    ):
        table = tl.load(table_ptr + tl.arange(0, 2 * EXPONENTS * 128))
        for first in range(tl.program_id(0) * BLOCK, count, tl.num_programs(0) * BLOCK):
            at = first + tl.arange(0, BLOCK)
            inside = at < count
            x = tl.load(x_ptr + at, mask=inside, other=1.0)
            bits = x.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
            row = ((bits >> 7) & 0xFF) - LOW
            looked_up = (row >= 0) & (row < EXPONENTS)
            index = (bits >> 15) * (EXPONENTS * 128) + row * 128 + (bits & 0x7F)
            y = tl.gather(table, tl.where(looked_up, index, 0), 0)
            # Outside the table PyTorch's formula reduces to: x / 2 below 2^-47 (1 + erf(x/sqrt2)
            # rounds to 1), x or -0 from 2^17 up (erf rounds to +-1), NaN for NaN and -inf.
            wide = x.to(tl.float32)
            huge = tl.where(wide > 0, wide, tl.where(wide > float("-inf"), -0.0, float("nan")))
            y = tl.where(looked_up, y, tl.where(row < 0, wide * 0.5, huge).to(x.dtype))
            tl.store(x_ptr + at, y, mask=inside)
