"""ESM-2 forward on a packed token stream, equivalent to fair-esm's padded forward.

Every detail in REFERENCE section 2 matters: token-dropout scaling, rotary in fp32 with positions
restarting at each BOS, q scaled before rotary (so the kernel runs with scale 1.0), exact GELU,
`emb_layer_norm_after` before the last layer's output, pooling over residues only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from esm.model.esm2 import ESM2
from torch import nn

from virnucpro_worker.attention.kernels import AttentionKernel
from virnucpro_worker.attention.packing import Pack
from virnucpro_worker.models.esm2 import apply_rotary, rotary_tables

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
        cos: torch.Tensor,
        sin: torch.Tensor,
        pack: Pack,
        kernel: AttentionKernel,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual stream, this layer's MLP output). The previous layer's MLP output arrives
        as `mlp_output` and is added here, so that the add fuses with this layer's norm."""
        if mlp_output is not None:
            x = x + mlp_output
        q, k, v = self.qkv(self.attention_norm(x)).view(-1, 3, self.heads, self.head_dim).unbind(1)
        q = q * self.scaling  # before rotary, as fair-esm: the kernel then runs with scale 1.0
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attended = kernel.attend(q, k, v.contiguous(), pack, scale=1.0)
        x = x + self.out_proj(attended.reshape(x.shape))
        return x, self.fc2(F.gelu(self.fc1(self.final_norm(x))))  # exact (erf) GELU


class PackedEsm2(nn.Module):
    """fair-esm ESM2 weights, shared with the fair-esm module, run on `Pack`s."""

    def __init__(self, esm: ESM2, compile_layers: bool = False) -> None:
        super().__init__()
        self.embed_tokens = esm.embed_tokens
        self.embed_scale = esm.embed_scale
        self.token_dropout = esm.token_dropout
        self.mask_idx = esm.mask_idx
        self.layers = nn.ModuleList(PackedLayer(layer) for layer in esm.layers)
        self.final_norm = esm.emb_layer_norm_after
        self.head_dim = self.layers[0].head_dim
        if compile_layers:  # fuses the elementwise work around the GEMMs and the kernel call
            # Tuning the fused kernels' block sizes gave +3.5% on an H200 (benchmarks/).
            options = {"coordinate_descent_tuning": True}
            for layer in self.layers:
                layer.forward = torch.compile(layer.forward, dynamic=True, options=options)

    def embed(self, pack: Pack) -> torch.Tensor:
        x = self.embed_scale * self.embed_tokens(pack.tokens)
        if not self.token_dropout:
            return x
        is_mask = pack.tokens == self.mask_idx
        x = x.masked_fill(is_mask[:, None], 0.0)
        rows = len(pack.lengths)
        lengths = torch.diff(pack.cu_seqlens).float()
        masked = torch.zeros(rows, device=x.device).index_add_(
            0, pack.sequence_index, is_mask.float()
        )
        scale = (1 - MASK_RATIO_TRAIN) / (1 - masked / lengths)
        return (x * scale[pack.sequence_index, None]).to(x.dtype)

    def forward(self, pack: Pack, kernel: AttentionKernel) -> torch.Tensor:
        """Last-layer representation [T, embed_dim], after emb_layer_norm_after."""
        x, mlp_output = self.embed(pack), None
        cos, sin = (table[:, None, :] for table in rotary_tables(pack.positions, self.head_dim))
        for layer in self.layers:
            x, mlp_output = layer(x, mlp_output, cos, sin, pack, kernel)
        return self.final_norm(x + mlp_output)
