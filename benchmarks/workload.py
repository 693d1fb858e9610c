"""Shared benchmark workloads: realistic protein and DNA mixes, ESM-2 3B's shape."""

from __future__ import annotations

import random
import threading
import time

import torch
from esm.model.esm2 import ESM2

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
ESM2_3B_SHAPE = {"num_layers": 36, "embed_dim": 2560, "attention_heads": 40}


def protein_lengths(count: int, seed: int = 0) -> list[int]:
    """Kept-frame lengths of six-frame translations: 500 bp chunks (165-166 aa), 300 bp chunks
    (99-100 aa), and short reads or short last chunks (20-166 aa)."""
    rng = random.Random(seed)
    lengths = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.6:
            lengths.append(rng.choice((165, 166)))
        elif kind < 0.85:
            lengths.append(rng.choice((99, 100)))
        else:
            lengths.append(rng.randint(20, 166))
    return lengths


def random_proteins(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed + 1)
    return ["".join(rng.choices(AMINO_ACIDS, k=n)) for n in protein_lengths(count, seed)]


def esm2_3b_random(device: torch.device, seed: int = 0) -> ESM2:
    """ESM-2 3B's architecture with random weights, built directly on `device` in fp32."""
    torch.manual_seed(seed)
    with device:
        return ESM2(**ESM2_3B_SHAPE).eval()


def matmul_tflops(device: torch.device, size: int = 8192, repeats: int = 20) -> float:
    """The bf16 GEMM ceiling of this card, on random data: by default a 30 ms burst, at the
    clocks a card holds before its power limit pulls them down."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000 / repeats
    return 2 * size**3 / seconds / 1e12


class GpuSampler:
    """Samples the GPU's utilisation, SM clock and power draw (NVML, through torch.cuda) in a
    thread while the block runs. Without NVML (nvidia-ml-py) the means are NaN."""

    def __init__(self, period: float = 0.1) -> None:
        self.device, self.period = torch.cuda.current_device(), period
        self.samples: list[tuple[float, float, float]] = []  # (busy %, SM MHz, W)
        self.seconds = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        cuda, device = torch.cuda, self.device
        try:
            while not self.stop.wait(self.period):
                watts = cuda.power_draw(device) / 1000
                self.samples.append((cuda.utilization(device), cuda.clock_rate(device), watts))
        except Exception as error:  # no NVML, or a query this card does not answer
            print(f"(no GPU samples: {error})")

    def __enter__(self) -> GpuSampler:
        self.started = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.seconds = time.perf_counter() - self.started

    def mean(self, column: int) -> float:
        if not self.samples:
            return float("nan")
        return sum(sample[column] for sample in self.samples) / len(self.samples)

    @property
    def busy(self) -> float:
        return self.mean(0) / 100

    @property
    def sm_mhz(self) -> float:
        return self.mean(1)

    @property
    def watts(self) -> float:
        return self.mean(2)
