"""The prediction stream: records in, block results out. Everything that runs the models (the
result files, `--keep-intermediate`, compare-attention, the Python API, the queue worker)
consumes this one function.

Blocks of about 2 Mbp of whole records are prepared on the CPU in a background thread while
the models embed the previous block; a block's frames are embedded FRAMES_PER_STEP at a time,
so one long contig never holds all its features at once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..sequences.fasta import FastaRecord
from ..sequences.prepare import PreparedBlock, prepared_blocks
from ..sequences.translation import KeptFrame
from .background import in_background
from .regions import RegionRule
from .results import BlockResult, block_result
from .scorer import FRAMES_PER_STEP, Scorer

FeatureSink = Callable[[Sequence[KeptFrame], torch.Tensor], None]


@dataclass(frozen=True)
class StreamProgress:
    """Done so far: records, their chunks and kept frames."""

    records: int
    chunks: int
    frames: int


def predict_stream(
    predictor: Scorer,
    records: Iterable[FastaRecord],
    chunk_size: int,
    *,
    on_progress: Callable[[StreamProgress], None] | None = None,
    on_features: FeatureSink | None = None,
    first_index: int = 0,
    block_bases: int | None = None,
    regions: RegionRule = RegionRule(),  # noqa: B008 (frozen, so one shared default is safe)
) -> Iterator[BlockResult]:
    """Block results for `records` (already checked, e.g. by sequences.sources.records_of),
    in input order, in blocks of whole records of about `block_bases` (default: the
    predictor's, 2 Mbp unless the settings say otherwise). Record ordinals start
    at `first_index` (a shard's first record); `regions` is the viral-region rule.

    `on_progress` is called after each block; `on_features(frames, features)` with each step's
    merged features [frames, 768 + 2560] (DNABERT-S first, as the original), before the block
    that holds them is yielded."""
    predictor.classifier_for(chunk_size)  # no classifier for this size: fail before any work
    index = first_index
    done = StreamProgress(0, 0, 0)
    prepared_stream = prepared_blocks(records, chunk_size, block_bases or predictor.block_bases)
    for prepared, prepare_seconds in in_background(_timed(prepared_stream)):
        seconds: dict[str, float] = defaultdict(float, prepare=prepare_seconds)
        steps = [np.empty((0, 2), np.float32)]
        for start in range(0, len(prepared.frames), FRAMES_PER_STEP):
            frames = prepared.frames[start : start + FRAMES_PER_STEP]
            features, scores = _score(predictor, frames, chunk_size, seconds)
            steps.append(scores.numpy())
            if on_features is not None:
                on_features(frames, features)
        block = block_result(prepared, np.concatenate(steps), index, chunk_size, regions)
        block.stage_seconds = dict(seconds)
        index += len(block.records)
        done = StreamProgress(
            done.records + len(block.records),
            done.chunks + len(prepared.chunks),
            done.frames + len(block.frames),
        )
        if on_progress is not None:
            on_progress(done)
        yield block


def _timed(blocks: Iterator[PreparedBlock]) -> Iterator[tuple[PreparedBlock, float]]:
    while True:
        start = time.perf_counter()
        block = next(blocks, None)
        if block is None:
            return
        yield block, time.perf_counter() - start


def _score(
    predictor: Scorer, frames: Sequence[KeptFrame], chunk_size: int, seconds: dict[str, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    start = time.perf_counter()
    nucleotide = predictor.nucleotide_features(frames)
    middle = time.perf_counter()
    protein = predictor.protein_features(frames)
    end = time.perf_counter()
    features = torch.cat([nucleotide, protein], dim=1)  # nucleotide first, as the original
    scores = predictor.scores(features, chunk_size)
    seconds["dnabert_s"] += middle - start
    seconds["esm2"] += end - middle
    seconds["classify"] += time.perf_counter() - end
    return features, scores
