"""Models loaded once, then any number of FASTA files turned into VirNucPro predictions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..attention.hookspecs import EncoderSettings
from ..attention.registry import get_backend
from ..errors import UserError
from ..models.classifier import ClassifierModel, load_classifier, predict_scores
from ..models.devices import device_description, dtype_name
from ..models.dnabert import DnabertModel, load_dnabert
from ..models.esm2 import Esm2Model, load_esm2
from ..sequences.translation import KeptFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    esm: str | Path
    dnabert: Path
    classifier: Path
    attention: str
    device: torch.device
    dtype: torch.dtype
    demo: bool = False


class Predictor:
    """ESM-2, DNABERT-S and the classifier, loaded once; embeds and scores kept frames."""

    def __init__(
        self,
        choice: ModelChoice,
        esm: Esm2Model,
        dnabert: DnabertModel,
        classifier: ClassifierModel,
    ) -> None:
        self.choice = choice
        self.esm, self.dnabert, self.classifier = esm, dnabert, classifier
        backend = get_backend(choice.attention)
        settings = EncoderSettings(choice.device, choice.dtype)
        self.protein_encoder = backend.protein_encoder(esm, settings)
        self.nucleotide_encoder = backend.nucleotide_encoder(dnabert, settings)
        self._check_dimensions()
        log.info(
            "attention backend %s: ESM-2 through the %s kernel, DNABERT-S through %s",
            choice.attention,
            self.protein_encoder.kernel,
            self.nucleotide_encoder.kernel,
        )

    @classmethod
    def load(cls, choice: ModelChoice) -> Predictor:
        get_backend(choice.attention)  # an unknown name fails before minutes of loading
        log.info("loading models on %s in %s", choice.device, dtype_name(choice.dtype))
        return cls(
            choice,
            load_esm2(choice.esm, choice.device, choice.dtype),
            load_dnabert(choice.dnabert, choice.device, choice.dtype),
            load_classifier(choice.classifier, choice.device),
        )

    def _check_dimensions(self) -> None:
        nucleotide = self.dnabert.module.config.hidden_size
        protein = self.esm.module.embed_dim
        expected = self.classifier.module.hidden_layer.in_features
        if nucleotide + protein != expected:
            raise UserError(
                f"{self.classifier.path}: the classifier takes {expected} features, but "
                f"DNABERT-S ({nucleotide}) + ESM-2 ({protein}) give {nucleotide + protein}"
            )

    def nucleotide_features(self, frames: Sequence[KeptFrame]) -> torch.Tensor:
        return self.nucleotide_encoder.embed([frame.nucleotide for frame in frames])

    def protein_features(self, frames: Sequence[KeptFrame]) -> torch.Tensor:
        return self.protein_encoder.embed([frame.protein for frame in frames])

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return predict_scores(self.classifier.module, features)

    def provenance(self) -> dict:
        choice = self.choice
        return {
            "attention_backend": choice.attention,
            "kernels": {
                "esm2": self.protein_encoder.kernel,
                "dnabert_s": self.nucleotide_encoder.kernel,
            },
            "dtype": dtype_name(choice.dtype),
            "device": device_description(choice.device),
            "demo_models": choice.demo,
            "models": {
                "esm2": {
                    "source": str(choice.esm),
                    "file": str(self.esm.path),
                    "sha256": self.esm.sha256,
                },
                "dnabert_s": {"folder": str(self.dnabert.folder), "files": self.dnabert.files},
                "classifier": {
                    "file": str(self.classifier.path),
                    "sha256": self.classifier.sha256,
                    "format": self.classifier.format,
                },
            },
        }
