"""`compare-attention`: the whole prediction run twice on the same loaded models, once per
attention backend, and the gap between the two measured frame by frame.

Both runs are the prediction stream, consumed block by block in step. The first backend's
features of a block go to a temporary file as its steps come; the second backend's steps are
compared against them as they come, so memory holds one step, whatever the input.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..sequences.fasta import NO_LIMITS, InputLimits, read_fasta
from ..sequences.translation import KeptFrame
from .predictor import Predictor
from .provenance import comparison_record, input_description, now
from .stream import predict_stream

ACCEPT_ABOVE = 99.0
VALIDATE_FROM = 95.0


def recommendation(agreement_percent: float) -> str:
    if agreement_percent > ACCEPT_ABOVE:
        return "ACCEPT"
    if agreement_percent >= VALIDATE_FROM:
        return "VALIDATE on production data"
    return "use v1-bmm"


class _FeatureSpool:
    """One block's features from the first backend, written as they come, read back in order."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by `close`)
        self.width = 0

    def close(self) -> None:
        self.file.close()

    def add(self, frames: Sequence[KeptFrame], features: torch.Tensor) -> None:
        self.width = features.shape[1]
        self.file.write(features.float().contiguous().numpy().tobytes())

    def take(self, rows: int) -> torch.Tensor:
        data = self.file.read(rows * self.width * 4)
        return torch.from_numpy(np.frombuffer(data, np.float32).reshape(rows, self.width).copy())

    def rewind(self) -> None:
        self.file.seek(0)

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()


class _Gap:
    """Per-frame measures of the difference between the two backends' embeddings."""

    def __init__(self, nucleotide_width: int) -> None:
        self.split = nucleotide_width
        self.columns: dict[str, list[torch.Tensor]] = {
            name: [] for name in ("cosine", "mean_abs", "max_abs", "nucleotide_cosine")
        }

    def add(self, first: torch.Tensor, second: torch.Tensor) -> None:
        protein_a, protein_b = first[:, self.split :], second[:, self.split :]
        difference = (protein_a - protein_b).abs()
        self.columns["cosine"].append(_cosine(protein_a, protein_b))
        self.columns["mean_abs"].append(difference.mean(dim=1))
        self.columns["max_abs"].append(difference.amax(dim=1))
        self.columns["nucleotide_cosine"].append(
            _cosine(first[:, : self.split], second[:, : self.split])
        )

    def column(self, name: str) -> torch.Tensor:
        return torch.cat(self.columns[name]) if self.columns[name] else torch.empty(0)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.double(), b.double(), dim=1)


def compare_backends(
    predictor: Predictor,
    second_backend: str,
    input_path: Path,
    chunk_size: int,
    limits: InputLimits = NO_LIMITS,
) -> dict[str, Any]:
    """Run `input_path` through the predictor's backend and through `second_backend`; report
    per kept frame (the unit that is embedded and classified) how their ESM-2 embeddings,
    virus scores and labels differ."""
    started = now()
    other = predictor.with_attention(second_backend)
    spool = _FeatureSpool()
    gap = _Gap(predictor.models.dnabert.module.config.hidden_size)
    rows: list[tuple[Any, Any]] = []

    def compare_step(frames: Sequence[KeptFrame], features: torch.Tensor) -> None:
        gap.add(spool.take(len(frames)), features)

    first = predict_stream(
        predictor, read_fasta(input_path, limits), chunk_size, on_features=spool.add
    )
    second = predict_stream(
        other, read_fasta(input_path, limits), chunk_size, on_features=compare_step
    )
    try:
        for block_a in first:
            spool.rewind()
            block_b = next(second)
            rows += zip(block_a.frames, block_b.frames, strict=True)
            spool.restart()
    finally:
        spool.close()
    if not rows:
        raise UserError(f"{input_path}: no kept frame to compare")
    report = _report(rows, gap, predictor, other)
    info = input_description(input_path)
    report["provenance"] = comparison_record(predictor, other, info, chunk_size, started)
    return report


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None  # undefined for constant scores
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def _report(rows: list, gap: _Gap, first: Predictor, second: Predictor) -> dict[str, Any]:
    name_a, name_b = first.attention, second.attention
    cosine, mean_abs, max_abs = (gap.column(name) for name in ("cosine", "mean_abs", "max_abs"))
    nucleotide = gap.column("nucleotide_cosine")
    virus_a = torch.tensor([a.virus_score for a, _ in rows])
    virus_b = torch.tensor([b.virus_score for _, b in rows])
    agreement = 100 * sum(a.label == b.label for a, b in rows) / len(rows)
    return {
        "backends": {name_a: first.protein_encoder.kernel, name_b: second.protein_encoder.kernel},
        "frames": len(rows),
        "embedding": {
            "cosine_min": float(cosine.min()),
            "cosine_mean": float(cosine.mean()),
            "mean_abs_diff": float(mean_abs.mean()),
            "max_abs_diff": float(max_abs.max()),
        },
        "nucleotide_embedding": {
            "kernels": {
                name_a: first.nucleotide_encoder.kernel,
                name_b: second.nucleotide_encoder.kernel,
            },
            "cosine_min": float(nucleotide.min()),
            "cosine_mean": float(nucleotide.mean()),
        },
        "prediction": {
            "label_agreement_percent": agreement,
            "virus_score_correlation": _correlation(virus_a, virus_b),
        },
        "recommendation": recommendation(agreement),
        "per_frame": [
            {
                "id": a.id,
                "cosine": float(cosine[i]),
                "mean_abs_diff": float(mean_abs[i]),
                "max_abs_diff": float(max_abs[i]),
                f"label_{name_a}": a.label,
                f"label_{name_b}": b.label,
                f"virus_score_{name_a}": a.virus_score,
                f"virus_score_{name_b}": b.virus_score,
            }
            for i, (a, b) in enumerate(rows)
        ],
    }
