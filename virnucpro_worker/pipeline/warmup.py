"""A worker's first shard as fast as its others: before it takes work, a few synthetic records
run through every chunk size it serves, so that every Triton kernel a run uses is compiled (or
read from Triton's cache), and cuBLAS and the memory pools are set up. On the CPU there is
nothing to compile, and nothing runs."""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .predictor import Predictor

log = logging.getLogger(__name__)

_CODONS = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
_SENSE_CODONS = [codon for codon in _CODONS if codon not in ("TAA", "TAG", "TGA")]
# Whole chunks, short last chunks and records shorter than a chunk, in both chunk sizes: kept
# frames of every length class the attention kernels specialise on.
_LENGTHS = (90, 150, 240, 330, 480, 600, 999, 1500, 2100)
_RECORDS = 60


def warm_up(predictor: Predictor) -> float:
    """Seconds spent running the synthetic records through each chunk size (0 on the CPU)."""
    if predictor.models.device.type != "cuda":
        return 0.0
    start = time.perf_counter()
    for chunk_size in predictor.chunk_sizes:
        for _ in predictor.predict_stream(synthetic_records(), chunk_size):
            pass
    seconds = time.perf_counter() - start
    log.info("kernels warmed up in %.1f s", seconds)
    return seconds


def synthetic_records(seed: int = 0) -> list[tuple[str, str]]:
    """Open reading frames (sense codons only) of mixed lengths, some reverse-complemented."""
    rng = random.Random(seed)
    records = []
    for index in range(_RECORDS):
        codons = rng.choice(_LENGTHS) // 3
        sequence = "".join(rng.choices(_SENSE_CODONS, k=codons))
        if index % 2:
            sequence = sequence[::-1].translate(str.maketrans("ACGT", "TGCA"))
        records.append((f"warm_up_{index}", sequence))
    return records
