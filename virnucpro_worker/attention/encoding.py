"""What an attention backend builds: encoders that embed sequences, and their settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EncoderSettings:
    device: torch.device
    dtype: torch.dtype
    token_budget: int | None = None  # tokens per batch or pack; None: the backend's default


class Encoder(Protocol):
    """Embeds sequences; returns float32 CPU rows in input order."""

    kernel: str  # the attention kernel it runs, recorded with every result
    token_budget: int  # tokens per pack or batch: which sequences share a batch decides bits

    def embed(self, sequences: Sequence[str]) -> torch.Tensor: ...
