"""The memory-bound steps around ESM-2's matrix products, fused into them or into one another
(Triton kernels on CUDA; the same arithmetic in PyTorch ops elsewhere).

- Residual adds and LayerNorm in one pass over memory. The previous layer's MLP output is added
  inside this layer's first norm, without storing the sum, and stored with the attention output
  added in the second norm: one rounding of the stream per layer instead of two, and the norms
  see the unrounded sum (as torch.compile's fusion of the same ops does).
- fc1, its bias and the exact (erf) GELU in one GEMM: the GELU runs on each output tile before
  it is stored, instead of a pass over a [tokens, 10240] tensor that is compute-bound on erf.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # CUDA builds of PyTorch bring Triton; elsewhere the PyTorch ops run
    triton = None

# fc1 + GELU tiles, measured on an H200 at ESM-2 3B's fc1 shape (benchmarks/fc1_gelu.py).
GEMM_TILE = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "num_warps": 8, "num_stages": 4}
GROUP_M = 8  # output tiles sharing a row block run together, so its inputs stay in L2


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


def linear_gelu(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """gelu(linear(x)), exact GELU, for rows of x [T, K]; the linear's output is rounded to x's
    dtype before the GELU, as the unfused ops do."""
    if _tma_gemm_usable(x, linear):
        return _triton_linear_gelu(x, linear)
    return F.gelu(linear(x))


def _tma_gemm_usable(x: torch.Tensor, linear: nn.Linear) -> bool:
    """Hopper or newer (tensor-memory copies), half precision, 16-byte aligned rows."""
    return (
        x.is_cuda
        and triton is not None
        and torch.cuda.get_device_capability(x.device) >= (9, 0)
        and x.dtype in (torch.float16, torch.bfloat16)
        and linear.bias is not None
        and x.shape[1] % 8 == 0
        and linear.out_features % 8 == 0
    )


def _triton_linear_gelu(
    x: torch.Tensor, linear: nn.Linear, tile: dict[str, int] = GEMM_TILE, programs: int = 0
) -> torch.Tensor:
    """`programs`: how many persistent programs (default: one per streaming multiprocessor)."""
    x = x.contiguous()
    rows, out_features = x.shape[0], linear.out_features
    out = torch.empty(rows, out_features, device=x.device, dtype=x.dtype)
    blocks = {name: tile[name] for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K")}
    tiles = triton.cdiv(rows, blocks["BLOCK_M"]) * triton.cdiv(out_features, blocks["BLOCK_N"])
    programs = min(
        programs or torch.cuda.get_device_properties(x.device).multi_processor_count, tiles
    )
    half_n = blocks["BLOCK_N"] // 2  # each output tile is stored in two halves (fewer registers)
    _linear_gelu[(programs,)](
        TensorDescriptor.from_tensor(x, [blocks["BLOCK_M"], blocks["BLOCK_K"]]),
        TensorDescriptor.from_tensor(linear.weight, [blocks["BLOCK_N"], blocks["BLOCK_K"]]),
        TensorDescriptor.from_tensor(out, [blocks["BLOCK_M"], half_n]),
        linear.bias,
        rows,
        out_features,
        x.shape[1],
        PROGRAMS=programs,
        GROUP_M=GROUP_M,
        **tile,
    )
    return out


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
    def _gelu(x):
        return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))

    @triton.jit
    def _bias_gelu(acc, bias_ptr, columns, dtype):
        """Round acc + bias to the output dtype (what a plain linear returns), then GELU."""
        x = acc + tl.load(bias_ptr + columns).to(tl.float32)[None, :]
        return _gelu(x.to(dtype).to(tl.float32)).to(dtype)

    # Not specialised on the row count: one compilation serves every pack size.
    @triton.jit(do_not_specialize=["rows"])
    def _linear_gelu(
        x_desc,
        weight_desc,
        out_desc,
        bias_ptr,
        rows,
        out_features,
        in_features,
        PROGRAMS: tl.constexpr,
        GROUP_M: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        """Persistent: each program walks output tiles PROGRAMS apart, grouped GROUP_M row
        blocks at a time; operands arrive by tensor-memory copies (TMA)."""
        row_blocks = tl.cdiv(rows, BLOCK_M)
        column_blocks = tl.cdiv(out_features, BLOCK_N)
        per_group = GROUP_M * column_blocks
        dtype = out_desc.dtype
        for tile in tl.range(tl.program_id(0), row_blocks * column_blocks, PROGRAMS, flatten=True):
            first_row_block = (tile // per_group) * GROUP_M
            group_rows = min(row_blocks - first_row_block, GROUP_M)
            row = (first_row_block + (tile % per_group) % group_rows) * BLOCK_M
            column = ((tile % per_group) // group_rows) * BLOCK_N
            acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
            for k in range(0, in_features, BLOCK_K):
                acc = tl.dot(x_desc.load([row, k]), weight_desc.load([column, k]).T, acc)
            left, right = tl.split(
                tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
            )
            half = column + tl.arange(0, BLOCK_N // 2)
            out_desc.store([row, column], _bias_gelu(left, bias_ptr, half, dtype))
            out_desc.store(
                [row, column + BLOCK_N // 2],
                _bias_gelu(right, bias_ptr, half + BLOCK_N // 2, dtype),
            )
