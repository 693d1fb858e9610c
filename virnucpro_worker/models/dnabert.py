"""DNABERT-S, the nucleotide encoder's network (MosaicBERT / DNABERT-2 architecture,
docs/ALGORITHM.md 5.1).

The Hugging Face folder ships remote code that breaks on current Triton, so the architecture is
rebuilt here with state-dict keys equal to the checkpoint's. Two forward paths share the layers:
`forward_packed` runs a packed token stream through an attention kernel, `forward` is the plain
one-sequence path with explicit attention that the original tool computed. Reading and writing
the folder is in dnabert_pretrained.py, the `Encoder` in dnabert_encoder.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.fused_ops import add_layer_norm
from ..attention.kernels import AttentionKernel
from ..attention.packing import Pack
from ..errors import UserError

# attend(q, k, v) with q/k/v shaped (..., tokens, heads, head_dim), same shape back.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DnabertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float = 1e-12
    type_vocab_size: int = 2
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, path: Path) -> DnabertConfig:
        """Read the fields above from a Hugging Face config.json; other keys are ignored."""
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read the model config ({error})") from error
        if not isinstance(values, dict):
            raise UserError(f"{path}: the model config is not a JSON object")
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise UserError(f"{path}: the model config lacks {', '.join(missing)}")
        try:
            return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
        except ValueError as error:
            raise UserError(f"{path}: {error}") from error

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The per-head ALiBi slopes, float32 (heads,), as MosaicBERT computes them."""
    return torch.tensor(_slope_list(num_heads), dtype=torch.float32)


def _slope_list(num_heads: int) -> list[float]:
    if math.log2(num_heads).is_integer():
        start = 2 ** -(2 ** -(math.log2(num_heads) - 3))
        # start * start**i rather than start**(i+1): the same float64 rounding as MosaicBERT.
        return [start * start**i for i in range(num_heads)]
    lower = 2 ** math.floor(math.log2(num_heads))
    return _slope_list(lower) + _slope_list(2 * lower)[0::2][: num_heads - lower]


def require_alibi(kernel: AttentionKernel) -> None:
    if not kernel.supports_alibi:
        raise ValueError(f"attention kernel '{kernel.name}' has no ALiBi bias; DNABERT-S needs it")


class _Embeddings(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # No position embeddings (ALiBi instead); every token has token type 0.
        type_zero = self.token_type_embeddings.weight[0]
        return self.LayerNorm(self.word_embeddings(tokens) + type_zero)


class _SelfAttention(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)


class _AttentionOutput(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class _Attention(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(config)
        self.output = _AttentionOutput(config)
        self.heads = config.num_attention_heads
        self.head_dim = config.head_dim

    def forward(self, hidden: torch.Tensor, attend: Attend) -> torch.Tensor:
        qkv = self.self.Wqkv(hidden).unflatten(-1, (3, self.heads, self.head_dim))
        return self.finish(hidden, attend(*qkv.unbind(-3)))

    def finish(self, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Output projection, then residual and norm in one pass."""
        return _add_norm(hidden, self.output.dense(attended.flatten(-2)), self.output.LayerNorm)


class _GatedMlp(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        gated, linear = self.gated_layers(hidden).chunk(2, dim=-1)
        # F.gelu defaults to the exact erf form, as the original's nn.GELU().
        return _add_norm(hidden, self.wo(F.gelu(gated) * linear), self.layernorm)


def _add_norm(hidden: torch.Tensor, delta: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """norm(hidden + delta) for rows of any leading shape: one Triton pass on CUDA (the sum is
    not rounded before the norm), exactly PyTorch's ops in fp32 elsewhere (attention/fused_ops)."""
    rows = hidden.reshape(-1, hidden.shape[-1])
    return add_layer_norm(rows, (delta.reshape(rows.shape),), norm).view(hidden.shape)


class _Layer(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.attention = _Attention(config)
        self.mlp = _GatedMlp(config)

    def forward(self, hidden: torch.Tensor, attend: Attend) -> torch.Tensor:
        return self.mlp(self.attention(hidden, attend))


class _LayerStack(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, attend: Attend) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, attend)
        return hidden


class DnabertS(nn.Module):
    """Post-LN BERT with fused QKV, ALiBi and a GLU MLP; state-dict keys are the checkpoint's
    without the `bert.` prefix."""

    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _LayerStack(config)
        self.scale = config.head_dim**-0.5

    def forward_packed(self, pack: Pack, kernel: AttentionKernel) -> torch.Tensor:
        """Last hidden layer [T, hidden] of a packed stream (pack on the module's device)."""
        require_alibi(kernel)
        slopes = alibi_slopes(self.config.num_attention_heads).to(pack.tokens.device)

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return kernel.attend(q, k, v, pack, self.scale, slopes)

        return self.encoder(self.embeddings(pack.tokens), attend)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Last hidden layer [B, L, hidden] of unpadded rows [B, L] (the original ran B = 1)."""
        length = input_ids.shape[-1]
        slopes = alibi_slopes(self.config.num_attention_heads).to(input_ids.device)
        position = torch.arange(length, device=input_ids.device)
        distance = (position[None, :] - position[:, None]).abs().float()
        bias = -slopes[:, None, None] * distance  # [heads, L, L]

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            q, k, v = (x.transpose(-3, -2) for x in (q, k, v))  # [B, heads, L, head_dim]
            scores = (q @ k.transpose(-1, -2)) * self.scale + bias
            probabilities = scores.float().softmax(dim=-1).to(v.dtype)
            return (probabilities @ v).transpose(-3, -2)

        return self.encoder(self.embeddings(input_ids), attend)
