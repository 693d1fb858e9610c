"""A model set loaded once, through one attention backend: kept frames in, features and
scores out. `predictor.Predictor` builds whole predictions on it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import torch

from ..attention.encoding import Encoder, EncoderSettings
from ..attention.registry import DEFAULT_BACKEND, get_backend
from ..errors import UserError
from ..models.classifier import ClassifierModel, load_classifier, predict_scores
from ..models.devices import device_description, dtype_name, resolve_device, resolve_dtype
from ..models.dnabert_pretrained import DnabertModel, load_dnabert
from ..models.esm2 import Esm2Model, load_esm2
from ..models.model_files import ModelFiles, ModelSet
from ..sequences.prepare import BLOCK_BASES, check_chunk_size
from ..sequences.translation import KeptFrame
from ..timing import Stopwatch

log = logging.getLogger(__name__)
FRAMES_PER_STEP = 16384  # frames embedded and scored together (the prediction stream's step)


@dataclass(frozen=True)
class ModelChoice:
    """What to load and how to run it, as plain data (a queued job's parameters are JSON)."""

    files: ModelFiles
    attention: str = DEFAULT_BACKEND
    device: str | None = None  # None: CUDA when available, else the CPU
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on the CPU
    block_bases: int = BLOCK_BASES  # bases embedded together: decides the last bits


@dataclass
class LoadedModels:
    """One model set in memory, and the encoders built on it, one pair per attention backend
    (built once: a worker that serves both backends shares the weights)."""

    files: ModelFiles
    esm: Esm2Model
    dnabert: DnabertModel
    classifiers: dict[int, ClassifierModel]  # by chunk size
    device: torch.device
    dtype: torch.dtype
    encoders: dict[str, tuple[Encoder, Encoder]] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, files: ModelFiles, device: torch.device, dtype: torch.dtype) -> LoadedModels:
        log.info("loading models on %s in %s", device, dtype_name(dtype))
        clock = Stopwatch()
        by_path: dict[str, ClassifierModel] = {}
        for path in files.classifiers.values():
            by_path.setdefault(path, load_classifier(path, device))
        clock.lap("classifiers")
        esm = load_esm2(files.esm, device, dtype)
        clock.lap("esm2")
        dnabert = load_dnabert(Path(files.dnabert), device, dtype)
        clock.lap("dnabert_s")
        classifiers = {size: by_path[path] for size, path in files.classifiers.items()}
        seconds = clock.seconds | {f"esm2_{k}": v for k, v in esm.load_seconds.items()}
        log.info(
            "models loaded in %.1f s (%s)",
            sum(clock.seconds.values()),
            ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items()),
        )
        return cls(files, esm, dnabert, classifiers, device, dtype, load_seconds=seconds)

    def encoders_for(self, attention: str) -> tuple[Encoder, Encoder]:
        """(ESM-2 encoder, DNABERT-S encoder) of the named backend."""
        if attention not in self.encoders:
            backend = get_backend(attention)
            settings = EncoderSettings(self.device, self.dtype)
            protein, nucleotide = (
                backend.protein_encoder(self.esm, settings),
                backend.nucleotide_encoder(self.dnabert, settings),
            )
            log.info(  # once per backend: a worker's shards reuse the encoders
                "attention backend %s: ESM-2 through the %s kernel, DNABERT-S through %s",
                attention,
                protein.kernel,
                nucleotide.kernel,
            )
            self.encoders[attention] = (protein, nucleotide)
        return self.encoders[attention]

    @property
    def demo(self) -> bool:
        """Whether any model file carries the demo mark."""
        models = [self.esm, self.dnabert, *self.classifiers.values()]
        return any(model.demo for model in models)


class Scorer:
    """A loaded model set with one attention backend: embeds and scores kept frames."""

    def __init__(
        self,
        models: LoadedModels,
        attention: str = DEFAULT_BACKEND,
        block_bases: int = BLOCK_BASES,
    ) -> None:
        """`block_bases`: the bases of whole records embedded together (settings), for every
        prediction made with this predictor that names no other."""
        self.models, self.attention, self.block_bases = models, attention, block_bases
        self.protein_encoder, self.nucleotide_encoder = models.encoders_for(attention)
        self._check_dimensions()

    @classmethod
    def load(cls, choice: ModelChoice) -> Self:
        get_backend(choice.attention)  # an unknown name fails before minutes of loading
        device = resolve_device(choice.device)
        models = LoadedModels.load(choice.files, device, resolve_dtype(choice.dtype, device))
        return cls(models, choice.attention, choice.block_bases)

    def with_attention(self, attention: str) -> Self:
        """The same loaded models through another attention backend."""
        return type(self)(self.models, attention, self.block_bases)

    @property
    def demo(self) -> bool:
        return self.models.demo

    @property
    def chunk_sizes(self) -> tuple[int, ...]:
        return self.models.files.chunk_sizes

    def classifier_for(self, chunk_size: int) -> ClassifierModel:
        check_chunk_size(chunk_size)
        if chunk_size not in self.models.classifiers:
            raise UserError(
                f"no classifier for {chunk_size} bp chunks in this model set "
                f"(it serves {', '.join(map(str, self.chunk_sizes))})"
            )
        return self.models.classifiers[chunk_size]

    @property
    def feature_widths(self) -> tuple[int, int]:
        """(DNABERT-S, ESM-2) widths of a frame's features: (768, 2560) for the published set."""
        return self.models.dnabert.module.config.hidden_size, self.models.esm.module.embed_dim

    def _check_dimensions(self) -> None:
        nucleotide, protein = self.feature_widths
        for classifier in self.models.classifiers.values():
            expected = classifier.module.hidden_layer.in_features
            if nucleotide + protein != expected:
                raise UserError(
                    f"{classifier.path}: the classifier takes {expected} features, but "
                    f"DNABERT-S ({nucleotide}) + ESM-2 ({protein}) give {nucleotide + protein}"
                )

    def nucleotide_features(self, frames: Sequence[KeptFrame]) -> torch.Tensor:
        return self.nucleotide_encoder.embed([frame.nucleotide for frame in frames])

    def protein_features(self, frames: Sequence[KeptFrame]) -> torch.Tensor:
        return self.protein_encoder.embed([frame.protein for frame in frames])

    def scores(self, features: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """float32 [N, 2]: (P(others), P(virus)) by the classifier for `chunk_size`."""
        return predict_scores(self.classifier_for(chunk_size).module, features)

    def model_set(self, chunk_size: int) -> ModelSet:
        """The identity of the files loaded for `chunk_size` (`ModelFiles.fingerprint`'s)."""
        models = self.models
        classifier = self.classifier_for(chunk_size)
        return ModelSet(models.esm.sha256, dict(models.dnabert.files), classifier.sha256)

    def provenance(self, chunk_size: int) -> dict[str, Any]:
        """The run.json entries that say which models, backend, kernels, dtype and device."""
        models = self.models
        classifier = self.classifier_for(chunk_size)
        return {
            "attention_backend": self.attention,
            "kernels": {
                "esm2": self.protein_encoder.kernel,
                "dnabert_s": self.nucleotide_encoder.kernel,
            },
            # With the kernels, dtype, device and `block_bases`: what decides the last bits.
            "packing": {
                "frames_per_step": FRAMES_PER_STEP,
                "token_budget": {
                    "esm2": self.protein_encoder.token_budget,
                    "dnabert_s": self.nucleotide_encoder.token_budget,
                },
            },
            "dtype": dtype_name(models.dtype),
            "device": device_description(models.device),
            # On the CPU the thread count decides how some matrix products sum (README).
            "cpu_threads": torch.get_num_threads() if models.device.type == "cpu" else None,
            "feature_widths": dict(zip(("dnabert_s", "esm2"), self.feature_widths, strict=True)),
            "demo_models": self.demo,
            "models": {
                "esm2": {
                    "source": models.files.esm,
                    "file": str(models.esm.path),
                    "sha256": models.esm.sha256,
                    "demo": models.esm.demo,
                },
                "dnabert_s": {
                    "folder": str(models.dnabert.folder),
                    "files": models.dnabert.files,
                    "demo": models.dnabert.demo,
                },
                "classifier": {
                    "file": str(classifier.path),
                    "sha256": classifier.sha256,
                    "format": classifier.format,
                    "demo": classifier.demo,
                },
            },
        }
