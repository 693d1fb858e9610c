"""A whole input's predictions as Python objects: what `Predictor.predict` returns."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sequences.sources import Source, records_of
from .outputs import ResultWriter
from .provenance import input_description, now, run_record
from .regions import RegionRule, ViralRegion
from .results import BlockResult, ChunkCall, FrameScore, RecordSummary, RunTotals
from .stream import predict_stream

if TYPE_CHECKING:
    from .predictor import Predictor


@dataclass
class Prediction:
    """Rows in input order: `frames` (every kept frame's scores), `chunks` (the original's
    per-chunk calls), `records` (one summary and call per input record), `regions` (the viral
    regions along the records, docs/ALGORITHM.md 10); `provenance` is the run.json content."""

    frames: list[FrameScore]
    chunks: list[ChunkCall]
    records: list[RecordSummary]
    regions: list[ViralRegion]
    provenance: dict[str, Any]

    def write(self, out_dir: Path | str) -> None:
        """Write the files `virnucpro predict` writes, byte for byte."""
        block = BlockResult(self.records, self.chunks, self.frames, self.regions)
        with ResultWriter(Path(out_dir), demo=self.provenance["demo_models"]) as writer:
            writer.add(block)
            writer.commit(copy.deepcopy(self.provenance))


def predict(
    predictor: Predictor, source: Source, chunk_size: int, regions: RegionRule
) -> Prediction:
    started, totals = now(), RunTotals()
    frames: list[FrameScore] = []
    chunks: list[ChunkCall] = []
    records: list[RecordSummary] = []
    found: list[ViralRegion] = []
    for block in predict_stream(predictor, records_of(source), chunk_size, regions=regions):
        totals.add(block)
        frames += block.frames
        chunks += block.chunks
        records += block.records
        found += block.regions
    info = input_description(source)
    provenance = run_record(predictor, chunk_size, info, totals, started, region_rule=regions)
    return Prediction(frames, chunks, records, found, provenance)
