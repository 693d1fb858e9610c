"""The plugin contract: one collecting hook, as in tox 4 and llm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pluggy
import torch

if TYPE_CHECKING:
    from ..models.dnabert import DnabertModel
    from ..models.esm2 import Esm2Model

PROJECT = "virnucpro"
ENTRY_POINT_GROUP = "virnucpro.attention"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class EncoderSettings:
    device: torch.device
    dtype: torch.dtype
    token_budget: int | None = None  # tokens per batch or pack; None: the backend's default


class Encoder(Protocol):
    """Embeds sequences; returns float32 CPU rows in input order."""

    kernel: str

    def embed(self, sequences: Sequence[str]) -> torch.Tensor: ...


class AttentionBackend(Protocol):
    name: str
    description: str

    def kernels(self, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
        """The attention kernels it would use on `device` in `dtype`: (ESM-2, DNABERT-S)."""

    def protein_encoder(self, model: Esm2Model, settings: EncoderSettings) -> Encoder: ...

    def nucleotide_encoder(self, model: DnabertModel, settings: EncoderSettings) -> Encoder: ...


class AttentionBackendSpec:
    @hookspec
    def register_attention_backends(self, register: Callable[[AttentionBackend], None]) -> None:
        """Call `register(backend)` once for each attention backend the plugin provides."""
