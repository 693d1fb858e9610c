"""Tiny demo models in the real on-disk formats, built deterministically from a seed.

They let a fresh machine run the whole pipeline offline; their predictions are meaningless.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from esm.model.esm2 import ESM2

from .classifier import MLPClassifier, save_original_pickle
from .dnabert import build_demo_dnabert, save_dnabert_folder
from .esm2 import save_checkpoint

DEMO_SEED = 20250224
DEMO_VERSION = "1"  # bump when the demo architecture changes, so caches rebuild
ESM_FILE = "esm2_t2_demo.pt"
DNABERT_DIR = "dnabert_s_demo"
CLASSIFIER_FILE = "500_model.pth"


@dataclass(frozen=True)
class ModelPaths:
    esm: Path
    dnabert: Path
    classifier: Path

    @classmethod
    def in_dir(cls, folder: Path) -> ModelPaths:
        return cls(folder / ESM_FILE, folder / DNABERT_DIR, folder / CLASSIFIER_FILE)


def _seeded_esm(seed: int) -> ESM2:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ESM2(num_layers=2, embed_dim=64, attention_heads=4).eval()


def _seeded_classifier(input_dim: int, seed: int) -> MLPClassifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = MLPClassifier(input_dim=input_dim, hidden_dim=32, num_class=2)
        # Non-trivial running statistics, as a trained BatchNorm has.
        module.bn1.running_mean.normal_(0.0, 0.1)
        module.bn1.running_var.uniform_(0.5, 1.5)
        return module.eval()


def write_demo_models(folder: Path, seed: int = DEMO_SEED) -> ModelPaths:
    """Write the three demo models into `folder` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = ModelPaths.in_dir(folder)
    esm = _seeded_esm(seed)
    save_checkpoint(esm, paths.esm)
    dnabert, tokenizer = build_demo_dnabert(seed)
    save_dnabert_folder(dnabert, tokenizer, paths.dnabert)
    classifier = _seeded_classifier(dnabert.config.hidden_size + esm.embed_dim, seed)
    save_original_pickle(classifier, paths.classifier)
    return paths


def cache_dir() -> Path:
    root = os.environ.get("VIRNUCPRO_CACHE") or Path.home() / ".cache" / "virnucpro"
    return Path(root) / f"demo-models-v{DEMO_VERSION}"


def cached_demo_models() -> ModelPaths:
    """The demo models, built once into the cache (atomically, so concurrent runs are safe)."""
    folder = cache_dir()
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".building-"))
        try:
            write_demo_models(staging)
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():  # a concurrent run did not win the race either
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ModelPaths.in_dir(folder)
