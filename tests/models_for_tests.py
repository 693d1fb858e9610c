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
