"""DNABERT-S as an `Encoder` (attention/encoding.py): packed token streams through an
attention kernel, one mean embedding per sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..attention.encoding import EncoderSettings
from ..attention.kernels import AttentionKernel
from ..attention.packing import MeansInInputOrder, build_pack, plan_packs, segment_mean
from .dnabert import require_alibi
from .dnabert_pretrained import DnabertModel


class DnabertEncoder:
    """The `Encoder` for nucleotide slices: mean of the last layer over all tokens, [CLS] and
    [SEP] included (docs/ALGORITHM.md 5.1)."""

    def __init__(
        self, model: DnabertModel, settings: EncoderSettings, kernel: AttentionKernel
    ) -> None:
        require_alibi(kernel)
        self.model = model
        self.settings = settings
        self.kernel = kernel.name
        self.token_budget = settings.token_budget
        self._attention = kernel
        model.module.to(device=settings.device, dtype=settings.dtype)

    def embed(self, sequences: Sequence[str]) -> torch.Tensor:
        """Float32 CPU rows [N, hidden] in input order."""
        hidden = self.model.module.config.hidden_size
        token_lists = [
            encoding.ids for encoding in self.model.tokenizer.encode_batch(list(sequences))
        ]
        device = self.settings.device
        means = MeansInInputOrder(len(token_lists), hidden)
        with torch.inference_mode():
            for order in plan_packs([len(t) for t in token_lists], self.token_budget):
                pack = build_pack(order, token_lists, pin=device.type == "cuda").to(device)
                states = self.model.module.forward_packed(pack, self._attention)
                means.add(order, segment_mean(states, pack))
        return means.result()
