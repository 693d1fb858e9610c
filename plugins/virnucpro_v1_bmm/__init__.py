"""`v1-bmm`: fair-esm's own ESM-2 forward on padded batches, the reference path.

Batching is the original tool's: fair-esm's length-sorted `get_batch_indices` under a token
budget (2048 by default, as in the original), `<pad>` padding, truncation at 1024 residues.
In fp16/bf16 the rotary tables are built in fp32 (fair-esm would build them in half precision,
which REFERENCE 2.4 shows is badly wrong); in fp32 it is fair-esm unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from esm.data import FastaBatchedDataset

from virnucpro_worker.attention.hookspecs import EncoderSettings, hookimpl
from virnucpro_worker.attention.kernels import AttentionKernel, select_kernel
from virnucpro_worker.models.dnabert import DnabertEncoder, DnabertModel
from virnucpro_worker.models.esm2 import MAX_RESIDUES, Esm2Model, use_fp32_rotary

ORIGINAL_TOKEN_BUDGET = 2048
DNABERT_TOKEN_BUDGET = 8192
KERNEL = "fair-esm-bmm"


def nucleotide_kernel(device: torch.device, dtype: torch.dtype) -> AttentionKernel:
    """The exact padded attention, the reference for DNABERT-S too."""
    return select_kernel(device, dtype, needs_alibi=True, name="sdpa-padded")


class FairEsmEncoder:
    kernel = KERNEL

    def __init__(self, model: Esm2Model, settings: EncoderSettings) -> None:
        self.model = model
        self.settings = settings
        self.token_budget = settings.token_budget or ORIGINAL_TOKEN_BUDGET
        self.convert = model.alphabet.get_batch_converter(truncation_seq_length=MAX_RESIDUES)
        if settings.dtype != torch.float32:
            use_fp32_rotary(model.module)

    @torch.inference_mode()
    def embed(self, sequences: Sequence[str]) -> torch.Tensor:
        module = self.model.module
        out = torch.empty(len(sequences), module.embed_dim)
        labels = [str(i) for i in range(len(sequences))]
        batches = FastaBatchedDataset(labels, list(sequences)).get_batch_indices(
            self.token_budget, extra_toks_per_seq=1
        )
        for batch in batches:
            _, strs, tokens = self.convert([(labels[i], sequences[i]) for i in batch])
            result = module(tokens.to(self.settings.device), repr_layers=[module.num_layers])
            hidden = result["representations"][module.num_layers].float()
            means = [
                hidden[row, 1 : min(MAX_RESIDUES, len(residues)) + 1].mean(0)
                for row, residues in enumerate(strs)
            ]
            out[batch] = torch.stack(means).cpu()
        return out


class V1BmmBackend:
    name = "v1-bmm"
    description = "fair-esm's standard ESM-2 attention on padded batches (reference path)"

    def kernels(self, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
        return KERNEL, nucleotide_kernel(device, dtype).name

    def protein_encoder(self, model: Esm2Model, settings: EncoderSettings) -> FairEsmEncoder:
        return FairEsmEncoder(model, settings)

    def nucleotide_encoder(self, model: DnabertModel, settings: EncoderSettings) -> DnabertEncoder:
        kernel = nucleotide_kernel(settings.device, settings.dtype)
        budget = settings.token_budget or DNABERT_TOKEN_BUDGET
        return DnabertEncoder(model, replace(settings, token_budget=budget), kernel)


@hookimpl
def register_attention_backends(register: Callable[[V1BmmBackend], None]) -> None:
    register(V1BmmBackend())
