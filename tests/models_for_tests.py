"""Small random models in the real formats, built by the tests themselves."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from esm.model.esm2 import ESM2
from torch import nn

from virnucpro_worker.models.demo import write_demo_models

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def random_esm2(layers: int = 2, dim: int = 64, heads: int = 4, seed: int = 0) -> ESM2:
    """fair-esm ESM2 with every weight perturbed, so layer norms and biases matter too."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ESM2(num_layers=layers, embed_dim=dim, attention_heads=heads).eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def random_proteins(lengths: list[int], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AMINO_ACIDS) for _ in range(n)) for n in lengths]


@dataclass(frozen=True)
class DemoModels:
    """A demo model folder and its files, as paths."""

    folder: Path
    esm: Path
    dnabert: Path
    classifier: Path  # the 500 bp one
    classifier_300: Path

    @classmethod
    def write(cls, folder: Path) -> DemoModels:
        files = write_demo_models(folder)
        return cls(
            folder,
            Path(files.esm),
            Path(files.dnabert),
            Path(files.classifiers[500]),
            Path(files.classifiers[300]),
        )


def model_args(models: DemoModels) -> list[str]:
    """The command-line options that select `models` explicitly."""
    return [
        "--esm",
        str(models.esm),
        "--dnabert",
        str(models.dnabert),
        "--classifier",
        str(models.classifier),
    ]


CONFORMANCE = Path(__file__).parent / "data" / "conformance"


def norm_inputs(width: int, deltas: int, dtype: torch.dtype, device: str = "cpu"):
    """A LayerNorm with random affine weights, an off-centre input and `deltas` to add."""
    torch.manual_seed(0)
    norm = nn.LayerNorm(width)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(7, width) * 3 + 1
    added = [torch.randn(7, width).to(device, dtype) for _ in range(deltas)]
    return norm.to(device, dtype), x.to(device, dtype), added


def every_16_bit_value(dtype: torch.dtype, device: str = "cpu") -> torch.Tensor:
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32, device=device)
    return bits.to(torch.int16).view(dtype)


def assert_same_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal bit for bit, except that any NaN matches any NaN."""
    nan = expected.isnan()
    assert torch.equal(actual.isnan(), nan)
    assert torch.equal(actual[~nan].view(torch.int16), expected[~nan].view(torch.int16))


# --------------------------------------------------------------------------------------------
# Real shapes, random weights: what the GPU tests and benchmarks run (no weights can be fetched)
# --------------------------------------------------------------------------------------------

SENSE_CODONS = [
    a + b + c
    for a in "ACGT"
    for b in "ACGT"
    for c in "ACGT"
    if a + b + c not in ("TAA", "TAG", "TGA")
]


def coding_fasta(path: Path, chunks: int, seed: int = 0) -> int:
    """Records of 1-4 kb made of sense codons (an open frame on a random strand), plus short
    reads: nearly every chunk keeps one or two frames. Returns the number of 500 bp chunks."""
    rng = random.Random(seed)
    written = 0
    with path.open("w") as out:
        record = 0
        while written < chunks:
            length = rng.choice((150, 1000, 2000, 4000))
            sequence = "".join(rng.choices(SENSE_CODONS, k=length // 3))
            if rng.random() < 0.5:
                sequence = sequence.translate(str.maketrans("ACGT", "TGCA"))[::-1]
            out.write(f">contig_{record}\n{sequence}\n")
            written += -(-len(sequence) // 500)
            record += 1
    return written


def bpe_tokenizer(fasta: Path):
    """A 4096-token BPE like DNABERT-2's, trained on the FASTA's own sequences."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    from virnucpro_worker.sequences.fasta import read_fasta

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator((r.sequence[:2000] for r in read_fasta(fasta)), trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tokenizer


def write_real_shape_models(folder: Path, tokenizer_fasta: Path, esm_layers: int = 36) -> Path:
    """A model folder in the published layouts and shapes, random (seeded) weights: ESM-2 3B's
    width (2560, 40 heads; 36 layers unless fewer are asked for) as an fp16 checkpoint as
    published, DNABERT-S (12 x 768, GLU 3072) with a 4096-token BPE trained on
    `tokenizer_fasta`, and the 3328-512-2 MLP for both chunk sizes. Built on the GPU when
    there is one; a folder already complete is reused."""
    from virnucpro_worker.models.classifier import MLPClassifier, save_classifier_safetensors
    from virnucpro_worker.models.dnabert import DnabertConfig, DnabertS
    from virnucpro_worker.models.dnabert_pretrained import save_dnabert_folder
    from virnucpro_worker.models.esm2 import save_checkpoint

    folder = Path(folder)
    complete = folder / ".complete"
    if complete.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with device:
            esm = ESM2(num_layers=esm_layers, embed_dim=2560, attention_heads=40).eval()
        save_checkpoint(esm.half().cpu(), folder / f"esm2_t{esm_layers}_3B_UR50D.pt")
        del esm
        config = DnabertConfig(4096, 768, 12, 12, 3072)
        with device:
            dnabert = DnabertS(config).eval()
        save_dnabert_folder(dnabert.cpu(), bpe_tokenizer(tokenizer_fasta), folder / "DNABERT-S")
        classifier = MLPClassifier(input_dim=768 + 2560, hidden_dim=512).eval()
        for size in (300, 500):
            save_classifier_safetensors(classifier, folder / f"{size}_model.safetensors")
    complete.touch()
    return folder
