"""The v1-bmm ESM-2 encoder: fair-esm's own forward on the original's padded batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from esm.data import FastaBatchedDataset

from virnucpro_worker.attention.encoding import EncoderSettings
from virnucpro_worker.attention.kernels import AttentionKernel, select_kernel
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
