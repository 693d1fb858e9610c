"""A whole input's predictions as Python objects: what `Predictor.predict` returns."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sequences.sources import Source, records_of
from .embeddings import EmbeddingRecorder, FrameEmbeddings, check_dtype
from .outputs import ResultWriter
from .provenance import input_description, now, run_record
from .regions import RegionRule, ViralRegion
from .results import BlockResult, ChunkCall, FrameScore, RecordSummary, RunTotals
from .scorer import Scorer
from .stream import predict_stream


@dataclass(repr=False)
class Prediction:
    """Rows in input order: `frames` (every kept frame's scores), `chunks` (the original's
    per-chunk calls), `records` (one summary and call per input record), `regions` (the viral
    regions along the records, docs/ALGORITHM.md 10); `provenance` is the run.json content;
    `embeddings`, when asked for, every frame's features (rows in the order of `frames`)."""

    frames: list[FrameScore]
    chunks: list[ChunkCall]
    records: list[RecordSummary]
    regions: list[ViralRegion]
    provenance: dict[str, Any]
    embeddings: FrameEmbeddings | None = None

    def __repr__(self) -> str:
        """One line: the counts and calls (the rows are in `frames`, `chunks`, `records`)."""
        viral = sum(record.call == "virus" for record in self.records)
        demo = ", DEMO MODELS" if self.provenance.get("demo_models") else ""
        return (
            f"<Prediction: {len(self.records)} records, {len(self.chunks)} scored chunks, "
            f"{len(self.frames)} kept frames; {viral} records called virus{demo}>"
        )

    def write(self, out_dir: Path | str) -> None:
        """Write the files `virnucpro predict` writes (with `--embeddings` when the prediction
        holds them), byte for byte."""
        block = BlockResult(self.records, self.chunks, self.frames, self.regions)
        features = None
        if self.embeddings is not None:
            widths = (self.embeddings.dnabert_s.shape[1], self.embeddings.esm2.shape[1])
            features = (self.embeddings.dnabert_s.dtype.name, widths)
        demo = self.provenance["demo_models"]
        with ResultWriter(Path(out_dir), demo=demo, embeddings=features) as writer:
            if self.embeddings is not None:
                writer.add_embeddings(self.embeddings)
            writer.add(block)
            writer.commit(copy.deepcopy(self.provenance))


def predict(
    predictor: Scorer,
    source: Source,
    chunk_size: int,
    regions: RegionRule,
    embeddings: str | None = None,
) -> Prediction:
    started, totals = now(), RunTotals()
    frames: list[FrameScore] = []
    chunks: list[ChunkCall] = []
    records: list[RecordSummary] = []
    found: list[ViralRegion] = []
    arrays = None
    with tempfile.TemporaryDirectory(prefix="virnucpro-embeddings-") as scratch:
        recorder = None
        if embeddings is not None:
            widths = predictor.feature_widths
            recorder = EmbeddingRecorder(Path(scratch), check_dtype(embeddings), widths)
        blocks = predict_stream(
            predictor,
            records_of(source),
            chunk_size,
            regions=regions,
            on_features=None if recorder is None else lambda _, x: recorder.add_features(x),
        )
        for block in blocks:
            totals.add(block)
            frames += block.frames
            chunks += block.chunks
            records += block.records
            found += block.regions
            if recorder is not None:
                recorder.add_keys(block.frames)
        if recorder is not None:
            with recorder:
                arrays = recorder.load()
    info = input_description(source)
    provenance = run_record(predictor, chunk_size, info, totals, started, region_rule=regions)
    return Prediction(frames, chunks, records, found, provenance, arrays)
