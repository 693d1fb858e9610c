"""The plugin contract: one collecting hook, as in tox 4 and llm.

A backend builds two encoders on loaded models: one for ESM-2 (a `models.esm2.Esm2Model`)
and one for DNABERT-S (a `models.dnabert_pretrained.DnabertModel`). Discovering backends imports
neither the models nor torch: a plugin module should import its heavy parts inside those methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from .encoding import Encoder, EncoderSettings

if TYPE_CHECKING:
    import torch

__all__ = ["AttentionBackend", "Encoder", "EncoderSettings", "hookimpl", "hookspec"]

PROJECT = "virnucpro"
ENTRY_POINT_GROUP = "virnucpro.attention"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class AttentionBackend(Protocol):
    name: str
    description: str

    def kernels(self, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
        """The attention kernels it would use on `device` in `dtype`: (ESM-2, DNABERT-S)."""

    def protein_encoder(self, model: Any, settings: EncoderSettings) -> Encoder:
        """An encoder for the loaded ESM-2 `model`, on the device and in the dtype it has."""

    def nucleotide_encoder(self, model: Any, settings: EncoderSettings) -> Encoder:
        """An encoder for the loaded DNABERT-S `model`."""


class AttentionBackendSpec:
    @hookspec
    def register_attention_backends(self, register: Callable[[AttentionBackend], None]) -> None:
        """Call `register(backend)` once for each attention backend the plugin provides."""
