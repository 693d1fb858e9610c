"""Which model files make a model set: plain strings, so that a queued job's parameters are JSON.

A model folder (`--models DIR`) holds one of each, found by name:

    DIR/esm2_t36_3B_UR50D.pt      one `esm2_*.pt` file (a fair-esm checkpoint)
    DIR/DNABERT-S/                one sub-folder holding config.json (Hugging Face layout)
    DIR/300_model.pth             the classifier for 300 bp chunks (or 300_model.safetensors)
    DIR/500_model.pth             the classifier for 500 bp chunks (or 500_model.safetensors)

A set serves the chunk sizes it has a classifier for. One classifier given on its own serves
both sizes (the user chose it); a name saying otherwise is flagged where it is used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..files import sha256_of
from ..sequences.chunking import CHUNK_SIZES

CLASSIFIER_SUFFIXES = (".pth", ".safetensors")
# A DNABERT-S folder as Hugging Face lays it out (the weights in either format).
CONFIG_FILE, TOKENIZER_FILE = "config.json", "tokenizer.json"
SAFETENSORS_FILE, PYTORCH_FILE = "model.safetensors", "pytorch_model.bin"
# Inside every demo model file (a checkpoint entry, a config.json key, a classifier attribute
# or safetensors metadata), so that results computed with one are always marked.
DEMO_MARK = "virnucpro_demo"


@dataclass(frozen=True)
class ModelSet:
    """The identity of the model files one chunk size runs on: their sha256, not their paths
    (which differ by host). A job pinned to files runs only where `ModelSet`s are equal."""

    esm2: str
    dnabert_s: Mapping[str, str]  # file name -> sha256
    classifier: str

    @property
    def key(self) -> str:
        """A queue-name-sized name for the set."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return {"esm2": self.esm2, "dnabert_s": dict(self.dnabert_s), "classifier": self.classifier}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelSet:
        return cls(str(data["esm2"]), dict(data["dnabert_s"]), str(data["classifier"]))

    @classmethod
    def of_run(cls, models: Mapping[str, Any]) -> ModelSet:
        """The set a run.json `models` entry describes (as a job's pinned model set keeps it)."""
        return cls(
            models["esm2"]["sha256"],
            dict(models["dnabert_s"]["files"]),
            models["classifier"]["sha256"],
        )


@dataclass(frozen=True)
class ModelFiles:
    esm: str  # a checkpoint file, or a fair-esm model name looked up in the torch hub cache
    dnabert: str  # a folder
    classifiers: Mapping[int, str]  # chunk size -> classifier file

    @property
    def chunk_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.classifiers))

    @classmethod
    def explicit(cls, esm: str | Path, dnabert: str | Path, classifier: str | Path) -> ModelFiles:
        """Three paths (or a model name for ESM-2); the classifier serves both chunk sizes."""
        return cls(str(esm), str(dnabert), {size: str(classifier) for size in CHUNK_SIZES})

    @classmethod
    def in_folder(cls, folder: str | Path) -> ModelFiles:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"model folder {folder}: no such folder")
        esm = _only(folder, sorted(folder.glob("esm2_*.pt")), "an esm2_*.pt checkpoint")
        dnabert = _only(
            folder,
            sorted(p for p in folder.iterdir() if (p / "config.json").is_file()),
            "a DNABERT-S sub-folder (holding config.json)",
        )
        classifiers = {
            size: str(path)
            for size in CHUNK_SIZES
            for path in (folder / f"{size}_model{suffix}" for suffix in CLASSIFIER_SUFFIXES)
            if path.is_file()
        }
        if not classifiers:
            raise UserError(f"model folder {folder}: no 300_model.pth or 500_model.pth")
        return cls(str(esm), str(dnabert), classifiers)

    def fingerprint(self, chunk_size: int) -> ModelSet:
        """The identity of the files the set uses for `chunk_size`, as a worker that loaded
        them reports it (a job submitted with model files runs only where they are loaded)."""
        esm = Path(self.esm)
        if not esm.is_file():
            raise UserError(f"ESM-2 {self.esm}: give a checkpoint file to pin a job's models")
        if chunk_size not in self.classifiers:
            raise UserError(f"no classifier for {chunk_size} bp chunks in this model set")
        return ModelSet(
            esm2=sha256_of(esm),
            dnabert_s={path.name: sha256_of(path) for path in dnabert_files(Path(self.dnabert))},
            classifier=sha256_of(Path(self.classifiers[chunk_size])),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "esm": self.esm,
            "dnabert": self.dnabert,
            "classifiers": {str(size): path for size, path in sorted(self.classifiers.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelFiles:
        classifiers = {int(size): str(path) for size, path in data["classifiers"].items()}
        return cls(str(data["esm"]), str(data["dnabert"]), classifiers)


def dnabert_files(folder: Path) -> tuple[Path, Path, Path]:
    """(config.json, the weights, tokenizer.json) of a DNABERT-S folder; safetensors first."""
    folder = Path(folder)
    weights = [
        folder / name for name in (SAFETENSORS_FILE, PYTORCH_FILE) if (folder / name).is_file()
    ]
    if not weights:
        raise UserError(f"DNABERT-S folder {folder}: no {SAFETENSORS_FILE} or {PYTORCH_FILE}")
    for name in (CONFIG_FILE, TOKENIZER_FILE):
        if not (folder / name).is_file():
            raise UserError(f"DNABERT-S folder {folder}: no {name}")
    return folder / CONFIG_FILE, weights[0], folder / TOKENIZER_FILE


def _only(folder: Path, found: list[Path], what: str) -> Path:
    if len(found) != 1:
        names = ", ".join(path.name for path in found) or "none"
        raise UserError(f"model folder {folder}: needs exactly one {what}, found {names}")
    return found[0]
