"""Tiny demo models in the real on-disk formats, built deterministically from a seed.

They let a fresh machine run the whole pipeline offline; their predictions are meaningless.
Each file carries the demo mark inside it (`DEMO_MARK`: a checkpoint entry, a config key, a
classifier attribute or safetensors metadata), so whatever loads them, however it was told to,
marks its results as demo results.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import tokenizers
import torch
from esm.model.esm2 import ESM2
from tokenizers import models, pre_tokenizers, processors
from torch import nn

from ..sequences.fasta import FastaRecord
from ..sequences.prepare import prepare_block
from .classifier import MLPClassifier, save_original_pickle
from .dnabert import DnabertConfig, DnabertS
from .dnabert_pretrained import save_dnabert_folder
from .esm2 import save_checkpoint
from .model_files import ModelFiles

DEMO_SEED = 20250224
DEMO_VERSION = "3"  # bump when the demo models change, so caches rebuild
ESM_FILE = "esm2_t2_demo.pt"
DNABERT_DIR = "dnabert_s_demo"
# The demo classifier's virus logit is shifted so that about this share of random frames
# comes out viral: a newcomer sees both calls (the share is not a prediction of anything).
VIRAL_SHARE = 0.3
CALIBRATION_RECORDS = 100


def _seeded_esm(seed: int) -> ESM2:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ESM2(num_layers=2, embed_dim=64, attention_heads=4).eval()


_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_DEMO_LETTERS = "ACGTNRYSWKMBDHV"
_DEMO_MERGES = [(a, b) for a in "ACGT" for b in "ACGT"] + [
    ("AA", "AA"),
    ("TT", "TT"),
    ("AC", "GT"),
    ("CA", "TG"),
    ("GG", "CC"),
]


def build_demo_dnabert(
    seed: int, *, num_attention_heads: int = 4
) -> tuple[DnabertS, tokenizers.Tokenizer]:
    """A tiny DNABERT-S with random weights and a hand-made BPE tokenizer, for tests and demos.
    The same seed gives the same bytes."""
    tokenizer = _demo_tokenizer()
    hidden = 8 * num_attention_heads
    config = DnabertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=num_attention_heads,
        intermediate_size=2 * hidden,
    )
    # The default initialisation draws from the global generator: leave it as it was.
    with torch.random.fork_rng(devices=[]):
        module = DnabertS(config)
    _randomize(module, torch.Generator().manual_seed(seed))
    return module.eval().requires_grad_(False), tokenizer


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Weights of a realistic scale, so that attention is far from uniform and a bug shows."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith(("LayerNorm.weight", "layernorm.weight")):
                value = 1 + 0.1 * noise
            elif name.endswith("bias"):
                value = 0.1 * noise
            elif "embeddings" in name:
                value = noise
            else:  # a Linear weight: unit-variance inputs give unit-variance outputs
                value = noise * parameter.shape[1] ** -0.5
            parameter.copy_(value)


def _demo_tokenizer() -> tokenizers.Tokenizer:
    """Laid out like DNABERT-2's tokenizer.json: BPE, [UNK] for unknown letters, and a
    post-processor wrapping every sequence in [CLS] ... [SEP]."""
    merged = [a + b for a, b in _DEMO_MERGES]
    vocab = {token: i for i, token in enumerate([*_SPECIAL_TOKENS, *_DEMO_LETTERS, *merged])}
    tokenizer = tokenizers.Tokenizer(models.BPE(vocab, _DEMO_MERGES, unk_token="[UNK]"))
    tokenizer.add_special_tokens(list(_SPECIAL_TOKENS))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(token, vocab[token]) for token in ("[CLS]", "[SEP]")],
    )
    return tokenizer


def _seeded_classifier(features: torch.Tensor, seed: int) -> MLPClassifier:
    """A random classifier whose virus logit is shifted so that VIRAL_SHARE of `features`
    (the demo encoders' embeddings of random coding frames) come out viral."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = MLPClassifier(input_dim=features.shape[1], hidden_dim=32, num_class=2)
        # Non-trivial running statistics, as a trained BatchNorm has.
        module.bn1.running_mean.normal_(0.0, 0.1)
        module.bn1.running_var.uniform_(0.5, 1.5)
    module.eval()
    with torch.no_grad():
        logits = module(features)
        margin = logits[:, 1] - logits[:, 0]
        module.output_layer.bias[1] -= float(torch.quantile(margin, 1 - VIRAL_SHARE))
    return module


def _calibration_features(
    esm: ESM2, dnabert: DnabertS, tokenizer, chunk_size: int, seed: int
) -> torch.Tensor:
    """The demo encoders' features (DNABERT-S first) of the kept frames of random coding DNA
    cut into `chunk_size` chunks, by the reference forward paths, one frame at a time."""
    rng = random.Random(seed)
    codons = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
    sense = [codon for codon in codons if codon not in ("TAA", "TAG", "TGA")]
    records = [
        FastaRecord(f"r{i}", "".join(rng.choices(sense, k=rng.randint(40, 2 * chunk_size // 3))))
        for i in range(CALIBRATION_RECORDS)
    ]
    frames = prepare_block(records, chunk_size).frames
    convert = esm.alphabet.get_batch_converter()
    rows = []
    with torch.no_grad():
        for frame in frames:
            _, _, tokens = convert([("frame", frame.protein)])
            hidden = esm(tokens, repr_layers=[esm.num_layers])["representations"][esm.num_layers]
            protein = hidden[0, 1 : len(frame.protein) + 1].mean(0)
            ids = torch.tensor([tokenizer.encode(frame.nucleotide).ids])
            rows.append(torch.cat([dnabert(ids)[0].mean(0), protein]))
    return torch.stack(rows)


def write_demo_models(folder: Path, seed: int = DEMO_SEED) -> ModelFiles:
    """Write the demo model folder (the `--models DIR` layout) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    esm = _seeded_esm(seed)
    save_checkpoint(esm, folder / ESM_FILE, demo=True)
    dnabert, tokenizer = build_demo_dnabert(seed)
    save_dnabert_folder(dnabert, tokenizer, folder / DNABERT_DIR, demo=True)
    for offset, size in enumerate((300, 500)):
        features = _calibration_features(esm, dnabert, tokenizer, size, seed)
        classifier = _seeded_classifier(features, seed + offset)
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
