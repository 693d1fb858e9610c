"""`predict`: FASTA -> kept frames -> features -> scores -> result files, streamed in blocks."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..files import atomic_write, sha256_of
from ..sequences.fasta import fasta_stem, read_fasta
from ..sequences.prepare import (
    PreparedBlock,
    PreparedFiles,
    check_chunk_size,
    chunk_text,
    frame_texts,
    prepared_blocks,
)
from ..sequences.translation import KeptFrame
from .background import in_background
from .predictor import Predictor
from .progress import progress_bar
from .provenance import code_version, now, software
from .results import ResultWriter

log = logging.getLogger(__name__)
DEMO_WARNING = "DEMO MODELS: these predictions are meaningless (random weights)"
# Frames embedded per step: a block is whole records, so one long contig can make a block of
# any size; its features are never all held at once.
FRAMES_PER_STEP = 16384


@dataclass(frozen=True)
class InputSummary:
    records: int
    bases: int


def scan_input(path: Path) -> InputSummary:
    """Validate the whole input before any model work, so bad input fails in seconds."""
    records = bases = 0
    for record in read_fasta(path):
        records += 1
        bases += len(record.sequence)
    return InputSummary(records, bases)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


class _Intermediates(contextlib.ExitStack):
    """The original tool's intermediate files, kept on request (--keep-intermediate).

    Features go to a raw float32 file as blocks arrive; `STEM_merged.pt` is written from a
    memory map of it at the end, so memory does not grow with the number of frames.
    """

    def __init__(self, out_dir: Path, stem: str, chunk_size: int) -> None:
        super().__init__()
        self.files = PreparedFiles.in_dir(out_dir, stem, chunk_size)
        self.merged = out_dir / f"{stem}_merged.pt"
        self.ids: list[str] = []
        self.width = 0

    def __enter__(self) -> _Intermediates:
        super().__enter__()
        self.chunks = self.enter_context(atomic_write(self.files.chunks))
        self.nucleotide = self.enter_context(atomic_write(self.files.nucleotide))
        self.protein = self.enter_context(atomic_write(self.files.protein))
        self.features = self.enter_context(tempfile.TemporaryFile(dir=self.merged.parent))
        return self

    def __exit__(self, *exc_info) -> bool:
        if exc_info[0] is not None:
            return super().__exit__(*exc_info)
        try:
            self._save_merged()
        except BaseException as error:  # unwind the partial files, then report this error
            if not super().__exit__(type(error), error, error.__traceback__):
                raise
            return False
        return super().__exit__(None, None, None)

    def add_block(self, block: PreparedBlock) -> None:
        nucleotide, protein = frame_texts(block.frames)
        self.chunks.write(chunk_text(block.chunks))
        self.nucleotide.write(nucleotide)
        self.protein.write(protein)
        self.ids.extend(frame.id for frame in block.frames)

    def add_features(self, features: torch.Tensor) -> None:
        self.width = features.shape[1]
        self.features.write(features.float().contiguous().numpy().tobytes())

    def _save_merged(self) -> None:
        self.features.flush()
        shape = (len(self.ids), self.width)
        data = (
            torch.from_numpy(np.memmap(self.features, np.float32, "c", shape=shape))
            if self.ids
            else torch.empty(shape)
        )
        with atomic_write(self.merged, "wb") as handle:  # the original's {'ids', 'data'} layout
            torch.save({"ids": self.ids, "data": data}, handle)


def predict_file(
    predictor: Predictor,
    input_path: Path,
    chunk_size: int,
    out_dir: Path,
    keep_intermediate: bool = False,
    show_progress: bool = False,
    summary: InputSummary | None = None,
) -> dict:
    """Write prediction_results.txt, prediction_results_highestscore.csv, sequence_summary.tsv
    and run.json into `out_dir`; return the run.json content. `summary` is `scan_input`'s,
    when the caller checked the input already (before loading the models, as the CLI does)."""
    check_chunk_size(chunk_size)
    started = now()
    timer = _Timer()
    if summary is None:
        with timer.stage("validate"):
            summary = scan_input(input_path)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").unlink(missing_ok=True)  # never leave an older run's provenance
    demo = predictor.choice.demo
    if demo:
        log.warning(DEMO_WARNING)
    else:
        _warn_on_size_mismatch(predictor.classifier.path, chunk_size)
    intermediates = (
        _Intermediates(out_dir, fasta_stem(input_path), chunk_size) if keep_intermediate else None
    )
    with (
        ResultWriter(out_dir, demo=demo) as writer,
        intermediates or contextlib.nullcontext(),
        progress_bar(show_progress, summary.records) as progress,
    ):
        for block in in_background(_timed_blocks(input_path, chunk_size, timer)):
            scores = []
            for start in range(0, max(1, len(block.frames)), FRAMES_PER_STEP):
                frames = block.frames[start : start + FRAMES_PER_STEP]
                features, step_scores = _score_frames(predictor, frames, timer)
                scores.append(step_scores)
                if intermediates:
                    intermediates.add_features(features)
            with timer.stage("write"):
                writer.add(block.records, block.frames, torch.cat(scores))
                if intermediates:
                    intermediates.add_block(block)
            progress.advance(len(block.records), len(block.frames))
    if writer.frames == 0:
        log.warning("%s: no stop-free frame in any chunk; result files are header-only", input_path)
    run = _run_record(predictor, input_path, chunk_size, summary, writer, timer, started)
    with atomic_write(out_dir / "run.json") as handle:
        json.dump(run, handle, indent=2)
        handle.write("\n")
    return run


def _warn_on_size_mismatch(classifier: Path, chunk_size: int) -> None:
    """The published classifiers are named for the chunk size they were trained on."""
    trained_for = classifier.name.split("_", 1)[0]
    if trained_for in ("300", "500") and int(trained_for) != chunk_size:
        log.warning(
            "%s was trained on %s bp chunks, but --chunk-size is %d",
            classifier,
            trained_for,
            chunk_size,
        )


def _timed_blocks(input_path: Path, chunk_size: int, timer: _Timer) -> Iterator[PreparedBlock]:
    blocks = prepared_blocks(read_fasta(input_path), chunk_size)
    while True:
        with timer.stage("prepare"):
            block = next(blocks, None)
        if block is None:
            return
        yield block


def _score_frames(
    predictor: Predictor, frames: Sequence[KeptFrame], timer: _Timer
) -> tuple[torch.Tensor, torch.Tensor]:
    with timer.stage("dnabert_s"):
        nucleotide = predictor.nucleotide_features(frames)
    with timer.stage("esm2"):
        protein = predictor.protein_features(frames)
    features = torch.cat([nucleotide, protein], dim=1)  # nucleotide first, as the original
    with timer.stage("classify"):
        scores = predictor.scores(features)
    return features, scores


def _run_record(
    predictor: Predictor,
    input_path: Path,
    chunk_size: int,
    summary: InputSummary,
    writer: ResultWriter,
    timer: _Timer,
    started: str,
) -> dict:
    record = {
        "tool": "virnucpro-worker",
        "code_version": code_version(),
        "software": software(),
        "started": started,
        "finished": now(),
        "input": {"path": str(input_path), "sha256": sha256_of(input_path)},
        "chunk_size": chunk_size,
        **predictor.provenance(),
        "counts": {
            "records": summary.records,
            "bases": summary.bases,
            "chunks": writer.chunks,
            "kept_frames": writer.frames,
            "scored_chunks": writer.scored_chunks,
            "viral_chunks": writer.viral_chunks,
        },
        "stage_seconds": {name: round(value, 3) for name, value in timer.seconds.items()},
    }
    if predictor.choice.demo:
        record["warning"] = DEMO_WARNING
    return record
