"""A whole input's predictions as Python objects: what `Predictor.predict` returns."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sequences.sources import Source, records_of
from .outputs import ResultWriter
from .provenance import input_description, now, run_record
from .results import BlockResult, ChunkCall, FrameScore, RecordSummary, RunTotals
from .stream import predict_stream

if TYPE_CHECKING:
    from .predictor import Predictor


@dataclass(repr=False)
class Prediction:
    """Rows in input order: `frames` (every kept frame's scores), `chunks` (the original's
    per-chunk calls), `records` (one summary and call per input record); `provenance` is the
    run.json content."""

    frames: list[FrameScore]
    chunks: list[ChunkCall]
    records: list[RecordSummary]
    provenance: dict[str, Any]

    def __repr__(self) -> str:
        """One line: the counts and calls (the rows are in `frames`, `chunks`, `records`)."""
        viral = sum(record.call == "virus" for record in self.records)
        demo = ", DEMO MODELS" if self.provenance.get("demo_models") else ""
        return (
            f"<Prediction: {len(self.records)} records, {len(self.chunks)} scored chunks, "
            f"{len(self.frames)} kept frames; {viral} records called virus{demo}>"
        )

    def write(self, out_dir: Path | str) -> None:
        """Write the files `virnucpro predict` writes, byte for byte."""
        block = BlockResult(self.records, self.chunks, self.frames)
        with ResultWriter(Path(out_dir), demo=self.provenance["demo_models"]) as writer:
            writer.add(block)
            writer.commit(copy.deepcopy(self.provenance))


def predict(predictor: Predictor, source: Source, chunk_size: int) -> Prediction:
    started, totals = now(), RunTotals()
    frames: list[FrameScore] = []
    chunks: list[ChunkCall] = []
    records: list[RecordSummary] = []
    for block in predict_stream(predictor, records_of(source), chunk_size):
        totals.add(block)
        frames += block.frames
        chunks += block.chunks
        records += block.records
    provenance = run_record(predictor, chunk_size, input_description(source), totals, started)
    return Prediction(frames, chunks, records, provenance)
