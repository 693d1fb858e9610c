"""`flash-varlen`: ESM-2 and DNABERT-S on packed sequences (cu_seqlens) through varlen kernels.

Kernel choice, reported with every result: on CUDA in fp16/bf16 our Triton kernel (rotary and
ALiBi inside it), else flash-attn's `flash_attn_varlen_func` when installed, else PyTorch's
`varlen_attn` (ESM-2 only: no ALiBi); elsewhere an exact padded attention (CPU, fp32).

This module only registers the backend: the encoders (and torch) load when one is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from virnucpro_worker.attention.hookspecs import EncoderSettings, hookimpl

if TYPE_CHECKING:
    import torch

    from virnucpro_worker.models.dnabert_encoder import DnabertEncoder
    from virnucpro_worker.models.dnabert_pretrained import DnabertModel
    from virnucpro_worker.models.esm2 import Esm2Model

    from .encoders import PackedEsmEncoder


class FlashVarlenBackend:
    name = "flash-varlen"
    description = "packed sequences (cu_seqlens) through varlen attention kernels (Triton first)"

    def kernels(self, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
        from .encoders import nucleotide_kernel, protein_kernel

        return protein_kernel(device, dtype).name, nucleotide_kernel(device, dtype).name

    def protein_encoder(self, model: Esm2Model, settings: EncoderSettings) -> PackedEsmEncoder:
        from .encoders import PackedEsmEncoder

        return PackedEsmEncoder(model, settings)

    def nucleotide_encoder(self, model: DnabertModel, settings: EncoderSettings) -> DnabertEncoder:
        from virnucpro_worker.models.dnabert_encoder import DnabertEncoder

        from .encoders import DNABERT_TOKEN_BUDGET, nucleotide_kernel, token_budget

        kernel = nucleotide_kernel(settings.device, settings.dtype)
        budget = token_budget(settings, DNABERT_TOKEN_BUDGET)
        return DnabertEncoder(model, replace(settings, token_budget=budget), kernel)


@hookimpl
def register_attention_backends(register: Callable[[FlashVarlenBackend], None]) -> None:
    register(FlashVarlenBackend())
