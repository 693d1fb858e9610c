"""ESM-2 forward on a packed token stream, equivalent to fair-esm's padded forward.

Every detail in docs/ALGORITHM.md 5.3 matters: token-dropout scaling, rotary in fp32 with positions
restarting at each BOS, q scaled before rotary (the kernels see to both), exact GELU,
`emb_layer_norm_after` before the last layer's output, pooling over residues only.
"""

from __future__ import annotations

import torch
from esm.model.esm2 import ESM2
from torch import nn

from virnucpro_worker.attention.fused_ops import (
    add_layer_norm,
    exact_gelu,
    residual_add_layer_norm,
)
from virnucpro_worker.attention.kernels import AttentionKernel
from virnucpro_worker.attention.packing import Pack, segment_sum
from virnucpro_worker.attention.rotary import rotary_tables

MASK_RATIO_TRAIN = 0.15 * 0.8  # fair-esm's token-dropout constant, applied even in eval


class PackedLayer(nn.Module):
    """One ESM-2 transformer layer with q, k and v fused into a single projection."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        attention = layer.self_attn
        self.heads = attention.num_heads
        self.head_dim = attention.head_dim
        self.scaling = attention.scaling
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        weight = torch.cat([projection.weight for projection in projections]).detach()
        bias = torch.cat([projection.bias for projection in projections]).detach()
        self.qkv = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
        self.qkv.weight = nn.Parameter(weight, requires_grad=False)
        self.qkv.bias = nn.Parameter(bias, requires_grad=False)
        # fair-esm's own projections become views of the fused weights: one copy in memory.
        width = attention.embed_dim
        for index, projection in enumerate(projections):
            rows = slice(index * width, (index + 1) * width)
            projection.weight = nn.Parameter(weight[rows], requires_grad=False)
            projection.bias = nn.Parameter(bias[rows], requires_grad=False)
        self.out_proj = attention.out_proj
        self.attention_norm = layer.self_attn_layer_norm
        self.final_norm = layer.final_layer_norm
        self.fc1, self.fc2 = layer.fc1, layer.fc2

    def forward(
        self,
        x: torch.Tensor,
        mlp_output: torch.Tensor | None,
        rotary: tuple[torch.Tensor, torch.Tensor],
        pack: Pack,
        kernel: AttentionKernel,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual stream, this layer's MLP output). The previous layer's MLP output arrives
        as `mlp_output` and joins the stream with this layer's attention output, in the second
        norm (fused_ops says why)."""
        normalized = add_layer_norm(x, (mlp_output,), self.attention_norm)
        q, k, v = self.qkv(normalized).view(-1, 3, self.heads, self.head_dim).unbind(1)
        attended = self.out_proj(
            kernel.attend(q, k, v, pack, self.scaling, rotary=rotary).flatten(1)
        )
        x, normalized = residual_add_layer_norm(x, (mlp_output, attended), self.final_norm)
        return x, self.fc2(exact_gelu(self.fc1(normalized)))


class PackedEsm2(nn.Module):
    """fair-esm ESM2 weights, shared with the fair-esm module, run on `Pack`s."""

    def __init__(self, esm: ESM2) -> None:
        super().__init__()
        self.embed_tokens = esm.embed_tokens
        self.embed_scale = esm.embed_scale
        self.token_dropout = esm.token_dropout
        self.mask_idx = esm.mask_idx
        self.layers = nn.ModuleList(PackedLayer(layer) for layer in esm.layers)
        self.final_norm = esm.emb_layer_norm_after
        self.head_dim = self.layers[0].head_dim

    def embed(self, pack: Pack) -> torch.Tensor:
        x = self.embed_scale * self.embed_tokens(pack.tokens)
        if not self.token_dropout:
            return x
        is_mask = pack.tokens == self.mask_idx
        x = x.masked_fill(is_mask[:, None], 0.0)
        lengths = torch.diff(pack.cu_seqlens).float()
        masked = segment_sum(is_mask.float(), pack)
        scale = (1 - MASK_RATIO_TRAIN) / (1 - masked / lengths)
        return (x * scale[pack.sequence_index, None]).to(x.dtype)

    def forward(self, pack: Pack, kernel: AttentionKernel) -> torch.Tensor:
        """Last-layer representation [T, embed_dim], after emb_layer_norm_after."""
        x, mlp_output = self.embed(pack), None
        positions = torch.arange(pack.max_seqlen, device=x.device)
        rotary = rotary_tables(positions, self.head_dim)
        for layer in self.layers:
            x, mlp_output = layer(x, mlp_output, rotary, pack, kernel)
        return add_layer_norm(x, (mlp_output,), self.final_norm)
