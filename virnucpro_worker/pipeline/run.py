"""`predict` into files: the prediction stream written block by block into an output folder."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..sequences.fasta import NO_LIMITS, FastaRecord, InputLimits, fasta_stem, read_fasta
from .calls import VIRUS
from .embeddings import EmbeddingPart
from .outputs import DEMO_WARNING, ResultWriter
from .predictor import Predictor
from .provenance import input_description, now, run_record
from .regions import RegionRule
from .results import BlockResult, RunTotals
from .stream import StreamProgress, predict_stream

if TYPE_CHECKING:
    import torch

    from ..sequences.translation import KeptFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputSummary:
    records: int
    bases: int


@dataclass
class Committed:
    """What an interrupted run of the same job committed: the results of the input's first
    `records` records (`blocks`, read back), what they add up to (`totals`) and, for a run
    asked for embeddings, their frames' features (`embeddings`, in order)."""

    records: int
    blocks: Iterable[BlockResult]
    totals: RunTotals
    embeddings: Iterable[EmbeddingPart] = ()


def scan_input(path: Path, limits: InputLimits = NO_LIMITS) -> InputSummary:
    """Validate the whole input before any model work, so bad input fails in seconds."""
    records = bases = 0
    for record in read_fasta(path, limits):
        records += 1
        bases += len(record.sequence)
    return InputSummary(records, bases)


def predict_file(
    predictor: Predictor,
    input_path: Path,
    chunk_size: int,
    out_dir: Path,
    *,
    keep_intermediate: bool = False,
    viral_fasta: bool = False,
    on_progress: Callable[[StreamProgress], None] | None = None,
    on_block: Callable[[BlockResult, RunTotals], None] | None = None,
    on_features: Callable[[Sequence[KeptFrame], torch.Tensor], None] | None = None,
    limits: InputLimits = NO_LIMITS,
    block_bases: int | None = None,
    input_info: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    regions: RegionRule = RegionRule(),  # noqa: B008 (frozen, so one shared default is safe)
    embeddings: str | None = None,
    committed: Committed | None = None,
) -> dict[str, Any]:
    """Write the result files (outputs.py names them) into `out_dir`, replacing an earlier
    run's; return the run.json content. `on_block` sees each block once it is written, with
    the totals so far (the database records them). `input_info` describes the input in
    run.json (default: the path, size and sha256 of `input_path`); `extra` adds entries to
    run.json; `regions` is the viral-region rule; `embeddings` a dtype (float16, float32) to
    also write embeddings.safetensors; `on_features` sees each step's features, before the
    block that holds them (the database keeps them). `committed`: what an interrupted run of
    the same job committed, written as it is before the rest of the input is predicted (not
    with `keep_intermediate`, which needs every block's features as computed)."""
    if committed is not None and keep_intermediate:
        raise ValueError("the committed blocks have no features for the intermediate files")
    started = now()
    if predictor.demo:
        log.warning(DEMO_WARNING)
    _warn_on_size_mismatch(predictor.classifier_for(chunk_size).path, chunk_size)
    intermediates = (fasta_stem(input_path), chunk_size) if keep_intermediate else None
    totals = committed.totals if committed else RunTotals()
    records: Iterator[FastaRecord] = iter(read_fasta(input_path, limits))
    features = (embeddings, predictor.feature_widths) if embeddings else None
    with ResultWriter(
        out_dir,
        demo=predictor.demo,
        viral_fasta=viral_fasta,
        intermediates=intermediates,
        embeddings=features,
    ) as writer:
        if committed is not None:
            _rewrite(writer, committed, records, viral_fasta)

        def features(frames: Sequence[KeptFrame], step_features: torch.Tensor) -> None:
            writer.add_features(frames, step_features)
            if on_features is not None:
                on_features(frames, step_features)

        blocks = predict_stream(
            predictor,
            records,
            chunk_size,
            on_progress=on_progress,
            on_features=features if keep_intermediate or embeddings or on_features else None,
            first_index=committed.records if committed else 0,
            block_bases=block_bases,
            regions=regions,
        )
        for block in blocks:
            start = time.perf_counter()
            writer.add(block)
            totals.add(block)
            if on_block is not None:
                on_block(block, totals)
            totals.add_seconds({"write": time.perf_counter() - start})
        if totals.kept_frames == 0:
            log.warning(
                "%s: no stop-free frame in any chunk; result files are header-only", input_path
            )
        info = input_info or input_description(input_path)
        run = run_record(
            predictor,
            chunk_size,
            info,
            totals,
            started,
            extra,
            block_bases,
            region_rule=regions,
        )
        writer.commit(run)
    return run


def _rewrite(
    writer: ResultWriter,
    committed: Committed,
    records: Iterator[FastaRecord],
    viral_fasta: bool,
) -> None:
    """Write the committed blocks' rows, reading past their records in the input (the viral
    FASTA takes its sequences from there): the stream goes on from the next record."""
    done = 0
    for block in committed.blocks:
        read = list(itertools.islice(records, len(block.records)))
        if [record.id for record in read] != [summary.id for summary in block.records]:
            raise UserError("the input differs from the one the job's results were computed on")
        done += len(read)
        if viral_fasta:
            block.viral_sequences = {
                summary.index: record.sequence
                for summary, record in zip(block.records, read, strict=True)
                if summary.call == VIRUS
            }
        writer.add(block)
    if writer.writes_embeddings:
        for part in committed.embeddings:
            writer.add_embedding_part(part)
    if done != committed.records:
        raise ValueError(f"{done} records committed, not {committed.records}")


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
