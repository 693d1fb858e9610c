"""Residual adds and LayerNorm in one pass over memory (a Triton kernel on CUDA; the same
arithmetic in PyTorch ops elsewhere).

The previous layer's MLP output is added inside this layer's first norm, without storing the
sum, and stored with the attention output added in the second norm: one rounding of the stream
per layer instead of two, and the norms see the unrounded sum (as torch.compile's fusion of the
same ops does). Reads and writes are half those of separate PyTorch ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CUDA builds of PyTorch bring Triton; elsewhere the PyTorch ops run
    triton = None

Deltas = tuple[torch.Tensor | None, ...]


def add_layer_norm(x: torch.Tensor, deltas: Deltas, norm: nn.LayerNorm) -> torch.Tensor:
    """norm(x + the deltas that are not None), rows of x [T, W]; the sum is not kept."""
    return _fused(x, deltas, norm, keep_sum=False)[1]


def residual_add_layer_norm(
    x: torch.Tensor, deltas: Deltas, norm: nn.LayerNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, norm(s)) with s = x + the deltas, s rounded to x's dtype once."""
    return _fused(x, deltas, norm, keep_sum=True)


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
