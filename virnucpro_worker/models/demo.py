"""Tiny demo models in the real on-disk formats, built deterministically from a seed.

They let a fresh machine run the whole pipeline offline; their predictions are meaningless.
Each file carries the demo mark inside it (`DEMO_MARK`: a checkpoint entry, a config key, a
classifier attribute or safetensors metadata), so whatever loads them, however it was told to,
marks its results as demo results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from esm.model.esm2 import ESM2

from .classifier import MLPClassifier, save_original_pickle
from .dnabert import build_demo_dnabert, save_dnabert_folder
from .esm2 import save_checkpoint
from .model_files import ModelFiles

DEMO_SEED = 20250224
DEMO_VERSION = "2"  # bump when the demo models change, so caches rebuild
ESM_FILE = "esm2_t2_demo.pt"
DNABERT_DIR = "dnabert_s_demo"
# The demo classifier's virus logit is shifted so that about this share of random frames
# comes out viral: a newcomer sees both calls (the share is not a prediction of anything).
VIRAL_SHARE = 0.3


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
        module.eval()
        _shift_to_viral_share(module, torch.randn(4096, input_dim), VIRAL_SHARE)
        return module


def _shift_to_viral_share(module: MLPClassifier, features: torch.Tensor, share: float) -> None:
    """Move the output bias so that `share` of `features` get P(virus) > P(others)."""
    with torch.no_grad():
        logits = module(features)
        margin = logits[:, 1] - logits[:, 0]
        module.output_layer.bias[1] -= float(torch.quantile(margin, 1 - share))


def write_demo_models(folder: Path, seed: int = DEMO_SEED) -> ModelFiles:
    """Write the demo model folder (the `--models DIR` layout) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    esm = _seeded_esm(seed)
    save_checkpoint(esm, folder / ESM_FILE, demo=True)
    dnabert, tokenizer = build_demo_dnabert(seed)
    save_dnabert_folder(dnabert, tokenizer, folder / DNABERT_DIR, demo=True)
    width = dnabert.config.hidden_size + esm.embed_dim
    for offset, size in enumerate((300, 500)):
        classifier = _seeded_classifier(width, seed + offset)
        save_original_pickle(classifier, folder / f"{size}_model.pth", demo=True)
    return ModelFiles.in_folder(folder)


def cached_demo_models(cache: Path) -> ModelFiles:
    """The demo models, built once into `cache` (atomically, so concurrent runs are safe)."""
    folder = Path(cache) / f"demo-models-v{DEMO_VERSION}"
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
    return ModelFiles.in_folder(folder)
