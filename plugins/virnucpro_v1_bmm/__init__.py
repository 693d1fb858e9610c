"""`v1-bmm`: fair-esm's own ESM-2 forward on padded batches, the reference path.

Batching is the original tool's: fair-esm's length-sorted `get_batch_indices` under a token
budget (2048 by default, as in the original), `<pad>` padding, truncation at 1024 residues.
In fp16/bf16 the rotary tables are built in fp32 (fair-esm would build them in half precision,
which docs/ALGORITHM.md 5.3 says is badly wrong); in fp32 it is fair-esm unchanged.

This module only registers the backend: the encoder (and torch) load when one is built.
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

    from .encoder import FairEsmEncoder


class V1BmmBackend:
    name = "v1-bmm"
    description = "fair-esm's standard ESM-2 attention on padded batches (reference path)"

    def kernels(self, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
        from .encoder import KERNEL, nucleotide_kernel

        return KERNEL, nucleotide_kernel(device, dtype).name

    def protein_encoder(self, model: Esm2Model, settings: EncoderSettings) -> FairEsmEncoder:
        from .encoder import FairEsmEncoder

        return FairEsmEncoder(model, settings)

    def nucleotide_encoder(self, model: DnabertModel, settings: EncoderSettings) -> DnabertEncoder:
        from virnucpro_worker.models.dnabert_encoder import DnabertEncoder

        from .encoder import DNABERT_TOKEN_BUDGET, nucleotide_kernel

        kernel = nucleotide_kernel(settings.device, settings.dtype)
        budget = settings.token_budget or DNABERT_TOKEN_BUDGET
        return DnabertEncoder(model, replace(settings, token_budget=budget), kernel)


@hookimpl
def register_attention_backends(register: Callable[[V1BmmBackend], None]) -> None:
    register(V1BmmBackend())
