"""The flash-varlen encoders: ESM-2 on packed sequences (cu_seqlens) through a varlen kernel.
DNABERT-S shares `models.dnabert_encoder.DnabertEncoder` with the other backend, with its own
kernel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from esm.data import Alphabet

from virnucpro_worker.attention.encoding import EncoderSettings
from virnucpro_worker.attention.kernels import AttentionKernel, select_kernel
from virnucpro_worker.attention.packing import (
    MeansInInputOrder,
    build_pack,
    plan_packs,
    segment_mean,
)
from virnucpro_worker.models.esm2 import MAX_RESIDUES, Esm2Model

from .packed_esm2 import PackedEsm2

ESM_TOKEN_BUDGET = 65536  # large packs: large GEMMs (measured on an H200, benchmarks/)
DNABERT_TOKEN_BUDGET = 65536  # larger packs: fewer, larger kernels (DNABERT-S is small)
# On the CPU the exact padded attention holds each pack's whole attention matrix: small packs
# keep memory near the v1-bmm path's (1 Mbp with the demo models: README, "Memory").
CPU_TOKEN_BUDGET = 8192


def token_budget(settings: EncoderSettings, gpu_budget: int) -> int:
    if settings.token_budget:
        return settings.token_budget
    return CPU_TOKEN_BUDGET if settings.device.type == "cpu" else gpu_budget


def protein_kernel(device: torch.device, dtype: torch.dtype) -> AttentionKernel:
    return select_kernel(device, dtype)


def nucleotide_kernel(device: torch.device, dtype: torch.dtype) -> AttentionKernel:
    return select_kernel(device, dtype, needs_alibi=True)  # DNABERT-S attends with ALiBi


class ProteinTokenizer:
    """One token per residue with <cls>/<eos> around it, truncated to 1024 residues, as the
    original's fair-esm batch converter does."""

    def __init__(self, alphabet: Alphabet) -> None:
        self.lookup = np.full(256, alphabet.unk_idx, dtype=np.int64)
        for token, index in alphabet.tok_to_idx.items():
            if len(token) == 1:
                self.lookup[ord(token)] = index
        self.cls, self.eos = alphabet.cls_idx, alphabet.eos_idx

    def __call__(self, protein: str) -> np.ndarray:
        residues = self.lookup[np.frombuffer(protein[:MAX_RESIDUES].encode("ascii"), np.uint8)]
        return np.concatenate(([self.cls], residues, [self.eos]))


class PackedEsmEncoder:
    def __init__(
        self, model: Esm2Model, settings: EncoderSettings, attention: AttentionKernel | None = None
    ) -> None:
        """`attention`: a kernel other than the preferred one."""
        self.settings = settings
        self.token_budget = token_budget(settings, ESM_TOKEN_BUDGET)
        self.attention = attention or protein_kernel(settings.device, settings.dtype)
        self.kernel = self.attention.name
        self.tokenize = ProteinTokenizer(model.alphabet)
        self.network = PackedEsm2(model.module)
        self.dim = model.module.embed_dim

    @torch.inference_mode()
    def embed(self, sequences: Sequence[str]) -> torch.Tensor:
        """The host never waits for the GPU until the end: it tokenizes and packs the next pack
        while the GPU runs this one, and the means come back by asynchronous copies."""
        device = self.settings.device
        lengths = [min(len(protein), MAX_RESIDUES) + 2 for protein in sequences]
        means = MeansInInputOrder(len(sequences), self.dim)
        for order in plan_packs(lengths, self.token_budget):
            tokens = {index: self.tokenize(sequences[index]) for index in order}
            pack = build_pack(order, tokens, pin=device.type == "cuda").to(device)
            hidden = self.network(pack, self.attention)
            length = torch.diff(pack.cu_seqlens)[pack.sequence_index]
            residue = (pack.positions > 0) & (pack.positions < length - 1)  # no BOS, no EOS
            means.add(order, segment_mean(hidden, pack, residue))
        return means.result()
