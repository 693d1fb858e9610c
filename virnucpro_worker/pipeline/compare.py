"""`compare-attention`: run two attention backends on the same kept frames and measure the gap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..attention.hookspecs import EncoderSettings
from ..attention.registry import get_backend
from ..errors import UserError
from ..sequences.fasta import read_fasta
from ..sequences.prepare import prepared_blocks
from .predictor import Predictor

ACCEPT_ABOVE = 99.0
VALIDATE_FROM = 95.0


@dataclass
class _Rows:
    ids: list[str]
    cosine: list[torch.Tensor]
    mean_abs: list[torch.Tensor]
    max_abs: list[torch.Tensor]
    virus_a: list[torch.Tensor]
    virus_b: list[torch.Tensor]
    label_a: list[torch.Tensor]
    label_b: list[torch.Tensor]


def recommendation(agreement_percent: float) -> str:
    if agreement_percent > ACCEPT_ABOVE:
        return "ACCEPT"
    if agreement_percent >= VALIDATE_FROM:
        return "VALIDATE on production data"
    return "use v1-bmm"


def compare_backends(
    predictor: Predictor, second_backend: str, input_path: Path, chunk_size: int
) -> dict:
    """Embed every kept frame of `input_path` with the predictor's backend and with
    `second_backend`; classify both with the same nucleotide features. The report's per-frame
    rows are per kept frame (the unit that is embedded and classified)."""
    choice = predictor.choice
    other = get_backend(second_backend).protein_encoder(
        predictor.esm, EncoderSettings(choice.device, choice.dtype)
    )
    rows = _Rows(*([] for _ in range(8)))
    for block in prepared_blocks(read_fasta(input_path), chunk_size):
        if not block.frames:
            continue
        proteins = [frame.protein for frame in block.frames]
        first, second = predictor.protein_encoder.embed(proteins), other.embed(proteins)
        nucleotide = predictor.nucleotide_features(block.frames)
        scores_a = predictor.scores(torch.cat([nucleotide, first], dim=1))
        scores_b = predictor.scores(torch.cat([nucleotide, second], dim=1))
        difference = (first - second).abs()
        rows.ids.extend(frame.id for frame in block.frames)
        rows.cosine.append(F.cosine_similarity(first.double(), second.double(), dim=1))
        rows.mean_abs.append(difference.mean(dim=1))
        rows.max_abs.append(difference.amax(dim=1))
        rows.virus_a.append(scores_a[:, 1])
        rows.virus_b.append(scores_b[:, 1])
        rows.label_a.append(scores_a.argmax(dim=1))
        rows.label_b.append(scores_b.argmax(dim=1))
    if not rows.ids:
        raise UserError(f"{input_path}: no kept frame to compare")
    return _report(
        rows, choice.attention, second_backend, predictor.protein_encoder.kernel, other.kernel
    )


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None  # undefined for constant scores
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def _report(rows: _Rows, name_a: str, name_b: str, kernel_a: str, kernel_b: str) -> dict:
    cosine, mean_abs, max_abs = (torch.cat(x) for x in (rows.cosine, rows.mean_abs, rows.max_abs))
    virus_a, virus_b = torch.cat(rows.virus_a), torch.cat(rows.virus_b)
    label_a, label_b = torch.cat(rows.label_a), torch.cat(rows.label_b)
    agreement = float((label_a == label_b).double().mean() * 100)
    labels = ("others", "virus")
    return {
        "backends": {name_a: kernel_a, name_b: kernel_b},
        "frames": len(rows.ids),
        "embedding": {
            "cosine_min": float(cosine.min()),
            "cosine_mean": float(cosine.mean()),
            "mean_abs_diff": float(mean_abs.mean()),
            "max_abs_diff": float(max_abs.max()),
        },
        "prediction": {
            "label_agreement_percent": agreement,
            "virus_score_correlation": _correlation(virus_a, virus_b),
        },
        "recommendation": recommendation(agreement),
        "per_frame": [
            {
                "id": frame_id,
                "cosine": float(cosine[i]),
                "mean_abs_diff": float(mean_abs[i]),
                "max_abs_diff": float(max_abs[i]),
                f"label_{name_a}": labels[int(label_a[i])],
                f"label_{name_b}": labels[int(label_b[i])],
                f"virus_score_{name_a}": float(virus_a[i]),
                f"virus_score_{name_b}": float(virus_b[i]),
            }
            for i, frame_id in enumerate(rows.ids)
        ],
    }
