"""Attention over packed sequences, shape (total_tokens, heads, head_dim).

Four kernels, in order of preference: our Triton kernel with rotary embeddings inside it,
FlashAttention's varlen kernel (flash-attn package), PyTorch's own varlen kernel, and an exact
padded fallback that runs anywhere (CPU, fp32). All but PyTorch's accept an ALiBi bias. Where a
kernel does not apply rotary itself, `attend` applies it first, exactly as fair-esm does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .packing import Pack
from .rotary import apply_rotary

try:
    from flash_attn import flash_attn_varlen_func
except ImportError:  # the optional `flash` extra
    flash_attn_varlen_func = None
try:
    from .triton_varlen import varlen_attention as triton_varlen_attention
except ImportError:  # no Triton: CUDA builds of PyTorch bring it
    triton_varlen_attention = None

HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class AttentionKernel:
    name: str
    supports_alibi: bool
    usable: Callable[[torch.device, torch.dtype], bool]
    run: Callable[..., torch.Tensor]
    """run(q, k, v, pack, scale, alibi_slopes=None[, rotary]) -> (T, H, D)"""
    applies_rotary: bool = False
    """`run` takes the rotary tables and q, k, v as strided views of one projection"""

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pack: Pack,
        scale: float,
        alibi_slopes: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """softmax(rot(scale * q) rot(k)^T + alibi) v within each sequence of the pack.

        `rotary` is (cos, sin) by position inside a sequence, [positions, head_dim], fp32.
        """
        if self.applies_rotary:
            return self.run(q, k, v, pack, scale, alibi_slopes, rotary)
        if rotary is not None:  # fair-esm scales q before rotary, then attends with scale 1
            cos, sin = (table[pack.positions, None, :] for table in rotary)
            q, k, scale = apply_rotary(q * scale, cos, sin), apply_rotary(k, cos, sin), 1.0
        return self.run(q, k, v.contiguous(), pack, scale, alibi_slopes)


def _flash_attn_usable(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cuda" and dtype in HALF_DTYPES and flash_attn_varlen_func is not None


def _flash_attn(q, k, v, pack: Pack, scale: float, alibi_slopes=None) -> torch.Tensor:
    return flash_attn_varlen_func(
        q,
        k,
        v,
        pack.cu_seqlens,
        pack.cu_seqlens,
        pack.max_seqlen,
        pack.max_seqlen,
        softmax_scale=scale,
        alibi_slopes=alibi_slopes,
    )


def _triton_usable(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cuda" and dtype in HALF_DTYPES and triton_varlen_attention is not None


def _torch_varlen_usable(device: torch.device, dtype: torch.dtype) -> bool:
    # PyTorch >= 2.9. Imported only when it runs: importing it imports torch._dynamo and the
    # compiler, seconds that a run through any other kernel should not wait for.
    if device.type != "cuda" or dtype not in HALF_DTYPES:
        return False
    return importlib.util.find_spec("torch.nn.attention.varlen") is not None


def _torch_varlen(q, k, v, pack: Pack, scale: float, alibi_slopes=None) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    if alibi_slopes is not None:
        raise ValueError("torch-varlen has no ALiBi bias")
    return varlen_attn(
        q, k, v, pack.cu_seqlens, pack.cu_seqlens, pack.max_seqlen, pack.max_seqlen, scale=scale
    )


def _padded_bias(pack: Pack, alibi_slopes: torch.Tensor | None, dtype: torch.dtype):
    """Additive attention bias [rows, heads or 1, width, width]: -inf on padding keys, plus
    ALiBi's -slope*|i-j| when given."""
    width, device = pack.max_seqlen, pack.tokens.device
    lengths = torch.diff(pack.cu_seqlens).to(device)
    key_is_padding = torch.arange(width, device=device) >= lengths[:, None]
    bias = torch.zeros(len(pack.lengths), 1, 1, width, device=device)
    bias = bias.masked_fill(key_is_padding[:, None, None, :], float("-inf"))
    if alibi_slopes is not None:
        position = torch.arange(width, device=device)
        distance = (position[None, :] - position[:, None]).abs().float()
        bias = bias - alibi_slopes.float()[None, :, None, None] * distance
    return bias.to(dtype)


def _sdpa_padded(q, k, v, pack: Pack, scale: float, alibi_slopes=None) -> torch.Tensor:
    """Scatter the stream into a padded batch, mask the padding keys, attend, gather back."""
    rows, width = len(pack.lengths), pack.max_seqlen
    heads, head_dim = q.shape[1], q.shape[2]
    index = (pack.sequence_index, pack.positions)
    key = f"sdpa-padded bias {q.dtype} {'alibi' if alibi_slopes is not None else ''}"
    bias = pack.cached(key, lambda: _padded_bias(pack, alibi_slopes, q.dtype))

    def padded(x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(rows, width, heads, head_dim)
        out[index] = x
        return out.transpose(1, 2)

    attended = F.scaled_dot_product_attention(
        padded(q), padded(k), padded(v), attn_mask=bias, scale=scale
    )
    return attended.transpose(1, 2)[index]


KERNELS = (
    # Ours first: with rotary inside, it costs less than the others plus a rotary pass (H200).
    AttentionKernel("triton-varlen", True, _triton_usable, triton_varlen_attention, True),
    AttentionKernel("flash-attn", True, _flash_attn_usable, _flash_attn),
    AttentionKernel("torch-varlen", False, _torch_varlen_usable, _torch_varlen),
    AttentionKernel("sdpa-padded", True, lambda device, dtype: True, _sdpa_padded),
)


def usable_kernels(device: torch.device, dtype: torch.dtype) -> list[AttentionKernel]:
    return [kernel for kernel in KERNELS if kernel.usable(device, dtype)]


def select_kernel(
    device: torch.device, dtype: torch.dtype, needs_alibi: bool = False, name: str | None = None
) -> AttentionKernel:
    """The preferred usable kernel, or the one named (an error if it is not usable here)."""
    candidates = [k for k in usable_kernels(device, dtype) if k.supports_alibi or not needs_alibi]
    if name is None:
        return candidates[0]
    for kernel in candidates:
        if kernel.name == name:
            return kernel
    available = ", ".join(k.name for k in candidates)
    raise ValueError(f"attention kernel '{name}' is not usable here (usable: {available})")
