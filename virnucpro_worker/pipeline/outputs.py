"""The result files: every name and format, and the writer that turns block results into them.

`prediction_results.txt` and `prediction_results_highestscore.csv` keep the original tool's exact
format (docs/ALGORITHM.md 8) so that existing downstream parsers keep working;
`sequence_summary.tsv`, `run.json`, `viral_regions.bed`, `viral_regions.gff3` and
`viral_sequences.fa` are ours. A run's files appear together, and only when it succeeds
(files.StagedFolder).
"""

from __future__ import annotations

import dataclasses
import json
import string
import tempfile
from collections.abc import Iterable, Sequence
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, TextIO

import numpy as np
import torch

from ..errors import UserError
from ..files import StagedFolder
from ..sequences.prepare import PreparedFiles, chunk_text, frame_texts, wrapped
from ..sequences.translation import KeptFrame
from .calls import UNSCORED, VIRUS, chunk_is_virus, chunk_maxima
from .embeddings import (
    EMBEDDINGS_FILE,
    EmbeddingPart,
    EmbeddingRecorder,
    FrameEmbeddings,
    embeddings_metadata,
)
from .multiqc import CALLS_FILE, GENERAL_STATS_FILE, multiqc_files
from .regions import ViralRegion
from .report import REPORT_FILE, ReportBuilder
from .results import BlockResult, FrameScore, RecordSummary

PREDICTIONS_FILE = "prediction_results.txt"
HIGHEST_SCORE_FILE = "prediction_results_highestscore.csv"
SUMMARY_FILE = "sequence_summary.tsv"
RUN_FILE = "run.json"
VIRAL_FASTA_FILE = "viral_sequences.fa"
REGIONS_BED_FILE = "viral_regions.bed"
REGIONS_GFF3_FILE = "viral_regions.gff3"
DEMO_NOTICE_FILE = "DEMO_MODELS_PREDICTIONS_ARE_MEANINGLESS.txt"
# Names every predict run owns in its folder, whether or not this run writes them.
RESULT_FILES = (
    PREDICTIONS_FILE,
    HIGHEST_SCORE_FILE,
    SUMMARY_FILE,
    REGIONS_BED_FILE,
    REGIONS_GFF3_FILE,
    GENERAL_STATS_FILE,
    CALLS_FILE,
    REPORT_FILE,
    VIRAL_FASTA_FILE,
)
OWNED_FILES = (*RESULT_FILES, EMBEDDINGS_FILE, DEMO_NOTICE_FILE, RUN_FILE)

# The original's two formats, fixed.
PREDICTIONS_COLUMNS = ("Sequence_ID", "Prediction", "score1", "score2")
HIGHEST_SCORE_COLUMNS = ("Modified_ID", "Is_Virus")
# sequence_summary.tsv: a column per RecordSummary field, in the dataclass's order (so a new
# field goes last, and readers of the earlier columns keep working), but for these two; the
# record's `id` is `record_id`.
SUMMARY_LEFT_OUT = ("index", "viral_chunks")
SUMMARY_FIELDS = tuple(
    field.name for field in dataclasses.fields(RecordSummary) if field.name not in SUMMARY_LEFT_OUT
)
SUMMARY_COLUMNS = tuple("record_id" if name == "id" else name for name in SUMMARY_FIELDS)
PREDICTIONS_HEADER = "\t".join(PREDICTIONS_COLUMNS)
HIGHEST_SCORE_HEADER = "\t".join(HIGHEST_SCORE_COLUMNS)
SUMMARY_HEADER = "\t".join(SUMMARY_COLUMNS)
DEMO_BANNER = "# DEMO MODELS: predictions are meaningless"
DEMO_WARNING = "DEMO MODELS: these predictions are meaningless (random weights)"
DEMO_NOTICE = """\
These results were computed with DEMO models (random or tiny stand-in weights), not the
published VirNucPro classifier and embedding models. Every score and every virus/others call
in this directory is meaningless. prediction_results.txt and prediction_results_highestscore.csv
keep the original column format, so they carry no mark of their own: this file, the first
line of sequence_summary.tsv and "demo_models" in run.json are the warning.
"""


def format_score(x: float) -> str:
    """The original's score text: shortest round-trip float32 representation."""
    return str(np.float32(x))


def prediction_line(frame: FrameScore) -> str:
    others, virus = format_score(frame.others_score), format_score(frame.virus_score)
    return f"{frame.id}\t{frame.label}\t{others}\t{virus}\n"


def _fraction(value: float) -> str:
    return f"{value:.4f}"


# How summary fields other than text and counts are written; None (unscored) is empty.
_SUMMARY_FORMATS = {"max_virus_score": format_score, "viral_chunk_fraction": _fraction}
_summary_values = attrgetter(*SUMMARY_FIELDS)
_summary_formats = [_SUMMARY_FORMATS.get(name, str) for name in SUMMARY_FIELDS]


def summary_line(record: RecordSummary) -> str:
    """One `sequence_summary.tsv` row; an unscored record has empty score columns."""
    values = zip(_summary_formats, _summary_values(record), strict=True)
    return "\t".join("" if value is None else write(value) for write, value in values) + "\n"


# The viral region files, BED and GFF3 (docs/ALGORITHM.md 10).
GFF3_HEADER = "##gff-version 3"
GFF3_SOURCE = "VirNucPro"
GFF3_TYPE = "region"  # SO:0000001; the attributes say what kind
# GFF3's seqid may hold these unescaped; every other character is %-escaped (GFF3 spec).
_SEQID_SAFE = frozenset(string.ascii_letters + string.digits + ".:^*$@!+_?-|")
# Characters with a meaning in GFF3's column 9, %-escaped in attribute values.
_ATTRIBUTE_RESERVED = frozenset(";=&,%")


def _percent(character: str) -> str:
    return "".join(f"%{byte:02X}" for byte in character.encode())


def gff3_seqid(record_id: str) -> str:
    return "".join(c if c in _SEQID_SAFE else _percent(c) for c in record_id)


def gff3_value(text: str) -> str:
    return "".join(_percent(c) if c in _ATTRIBUTE_RESERVED else c for c in text)


def bed_line(region: ViralRegion) -> str:
    """BED6: 0-based half-open bases; the score is the mean P(virus) x 1000, as BED wants
    an integer from 0 to 1000; no strand (frames of both strands vote)."""
    score = round(region.mean_virus_score * 1000)
    return f"{region.record_id}\t{region.start}\t{region.end}\t{region.id}\t{score}\t.\n"


def gff3_lines(region: ViralRegion) -> str:
    """The region as a GFF3 feature (1-based, closed), preceded by its record's
    ##sequence-region pragma when it is the record's first region."""
    seqid = gff3_seqid(region.record_id)
    attributes = {
        "ID": gff3_value(region.id),
        "Name": gff3_value(region.id),
        "chunks": f"{region.first_chunk}-{region.last_chunk}",
        "viral_chunks": str(region.viral_chunks),
        "scored_chunks": str(region.scored_chunks),
        "mean_virus_score": format_score(region.mean_virus_score),
        "max_virus_score": format_score(region.max_virus_score),
        "record_fraction": f"{region.record_fraction:.4f}",
    }
    column9 = ";".join(f"{key}={value}" for key, value in attributes.items())
    fields = [seqid, GFF3_SOURCE, GFF3_TYPE, region.start + 1, region.end]
    feature = "\t".join(map(str, [*fields, format_score(region.mean_virus_score), ".", "."]))
    pragma = f"##sequence-region {seqid} 1 {region.record_length}\n" if region.number == 1 else ""
    return f"{pragma}{feature}\t{column9}\n"


def write_highest_scores(handle: TextIO, calls: Iterable[tuple[str, bool]]) -> None:
    """The per-chunk file; `calls` are (Modified_ID, Is_Virus), already sorted by id."""
    handle.write(HIGHEST_SCORE_HEADER + "\n")
    handle.writelines(f"{chunk}\t{call}\n" for chunk, call in calls)


def run_json_text(run: dict) -> str:
    """run.json's exact text (the database keeps the same bytes)."""
    return json.dumps(run, indent=2) + "\n"


def fasta_entry(record_id: str, sequence: str) -> str:
    return f">{record_id}\n{wrapped(sequence)}\n"


def intermediate_files(stem: str, chunk_size: int) -> tuple[PreparedFiles, str]:
    """The original tool's intermediates (`--keep-intermediate`): the three `prepare` files
    and the merged features, `STEM_merged.pt`."""
    return PreparedFiles.in_dir(Path(), stem, chunk_size), f"{stem}_merged.pt"


class ResultWriter:
    """Writes one run's files into `out_dir`; use it as a context manager.

    Call `add` once per block result, in input order, then `commit` with the run's provenance.
    Per-frame and per-record rows stream out; only the per-chunk calls are kept, because the
    highest-score file is sorted by chunk id over the whole input. The counters (records,
    chunks, frames, scored_chunks, viral_chunks, viral_records, unscored_records, regions) are
    what the files hold.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        demo: bool = False,
        viral_fasta: bool = False,
        intermediates: tuple[str, int] | None = None,
        embeddings: tuple[str, tuple[int, int]] | None = None,
    ) -> None:
        """`intermediates`: (stem, chunk size) to also write the original's intermediates;
        `embeddings`: (dtype, (DNABERT-S width, ESM-2 width)) to also write
        embeddings.safetensors."""
        self.demo, self.viral_fasta = demo, viral_fasta
        self.staged = StagedFolder(Path(out_dir), RUN_FILE)
        self.intermediates = intermediates
        self._chunk_calls: dict[str, bool] = {}
        self.records = self.chunks = self.frames = self.viral_chunks = self.regions = 0
        self.viral_records = self.unscored_records = 0
        self._files: dict[str, TextIO] = {}
        self._merged: _MergedFeatures | None = None
        self._embeddings: EmbeddingRecorder | None = None
        self._embeddings_options = embeddings
        self._report = ReportBuilder()

    @property
    def scored_chunks(self) -> int:
        return len(self._chunk_calls)

    def __enter__(self) -> ResultWriter:
        self.staged.__enter__()
        names = [PREDICTIONS_FILE, SUMMARY_FILE, REGIONS_BED_FILE, REGIONS_GFF3_FILE]
        if self.viral_fasta:
            names.append(VIRAL_FASTA_FILE)
        if self.intermediates:
            prepared, merged = intermediate_files(*self.intermediates)
            names += [prepared.chunks.name, prepared.nucleotide.name, prepared.protein.name]
            self._merged = _MergedFeatures(self.staged.file(merged))
        if self._embeddings_options:
            dtype, widths = self._embeddings_options
            folder = self.staged.file(EMBEDDINGS_FILE).parent
            self._embeddings = EmbeddingRecorder(folder, dtype, widths)
        self._files = {name: self.staged.open(name) for name in names}
        self._files[PREDICTIONS_FILE].write(PREDICTIONS_HEADER + "\n")
        if self.demo:
            self._files[SUMMARY_FILE].write(DEMO_BANNER + "\n")
        self._files[SUMMARY_FILE].write(SUMMARY_HEADER + "\n")
        self._files[REGIONS_GFF3_FILE].write(GFF3_HEADER + "\n")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handle in self._files.values():
            handle.close()
        if self._merged is not None:
            self._merged.close()
        if self._embeddings is not None:
            self._embeddings.close()
        self.staged.__exit__(exc_type, exc, traceback)

    def add(self, block: BlockResult) -> None:
        """Write one block's rows."""
        if not self._files:
            raise RuntimeError("ResultWriter.add needs an open writer (use it with `with`)")
        self._files[PREDICTIONS_FILE].writelines(map(prediction_line, block.frames))
        self._files[SUMMARY_FILE].writelines(map(summary_line, block.records))
        self._files[REGIONS_BED_FILE].writelines(map(bed_line, block.regions))
        self._files[REGIONS_GFF3_FILE].writelines(map(gff3_lines, block.regions))
        for call in block.chunks:
            # A block holds whole records, so a chunk's frames never span two blocks; if they
            # did, its call would have been made on part of its frames.
            if call.id in self._chunk_calls:
                raise ValueError(f"chunk {call.id} has frames in two blocks")
            self._chunk_calls[call.id] = call.is_virus
        self.viral_chunks += sum(call.is_virus for call in block.chunks)
        self.records += len(block.records)
        self.viral_records += sum(record.call == VIRUS for record in block.records)
        self.unscored_records += sum(record.call == UNSCORED for record in block.records)
        self.regions += len(block.regions)
        self.chunks += sum(record.chunks for record in block.records)
        self.frames += len(block.frames)
        if self.viral_fasta:
            self._write_viral(block)
        if self._embeddings is not None:
            self._embeddings.add_keys(block.frames)
        self._report.add(block)
        if self.intermediates:
            self._write_intermediates(block)

    def _write_viral(self, block: BlockResult) -> None:
        if block.viral_sequences is None:
            raise ValueError("the viral FASTA needs the viral records' sequences")
        self._files[VIRAL_FASTA_FILE].writelines(
            fasta_entry(record.id, block.viral_sequences[record.index])
            for record in block.records
            if record.call == VIRUS
        )

    def _write_intermediates(self, block: BlockResult) -> None:
        if block.prepared is None:
            raise ValueError("the intermediate files need the prepared block")
        prepared, _ = intermediate_files(*self.intermediates)
        nucleotide, protein = frame_texts(block.prepared.frames)
        self._files[prepared.chunks.name].write(chunk_text(block.prepared.chunks))
        self._files[prepared.nucleotide.name].write(nucleotide)
        self._files[prepared.protein.name].write(protein)

    def add_features(self, frames: Sequence[KeptFrame], features: torch.Tensor) -> None:
        """The merged features of `frames` (for `STEM_merged.pt` and embeddings.safetensors),
        as the stream computes them, before the block that holds them is added."""
        if self._merged is not None:
            self._merged.add(frames, features)
        if self._embeddings is not None:
            self._embeddings.add_features(features)

    def add_embeddings(self, embeddings: FrameEmbeddings) -> None:
        """Features already computed (a `Prediction`'s), in the order of the frames added."""
        if self._embeddings is not None:
            both = np.hstack([embeddings.dnabert_s, embeddings.esm2])
            self._embeddings.add_features(torch.from_numpy(both))

    @property
    def writes_embeddings(self) -> bool:
        return self._embeddings is not None

    def add_embedding_part(self, part: EmbeddingPart) -> None:
        """Features as the database keeps them (a queued job's), in the order of the frames."""
        if self._embeddings is None:
            raise RuntimeError("this writer writes no embeddings")
        self._embeddings.add_part(part)

    def counts(self) -> dict[str, int]:
        """What the files written so far hold (the MultiQC files report these)."""
        return {
            "records": self.records,
            "viral_records": self.viral_records,
            "unscored_records": self.unscored_records,
            "scored_chunks": self.scored_chunks,
            "viral_chunks": self.viral_chunks,
            "viral_regions": self.regions,
        }

    def commit(self, run: dict) -> None:
        """Finish every file, write `run` as run.json (with the list of outputs), and move
        them all into the output folder."""
        with self.staged.open(HIGHEST_SCORE_FILE) as handle:
            write_highest_scores(handle, sorted(self._chunk_calls.items()))
        for name, text in multiqc_files(run, self.counts()).items():
            self.staged.file(name).write_text(text)
        names = [*self._files, HIGHEST_SCORE_FILE, GENERAL_STATS_FILE, CALLS_FILE]
        names += [REPORT_FILE, RUN_FILE]
        for handle in self._files.values():
            handle.close()
        if self.demo:
            self.staged.file(DEMO_NOTICE_FILE).write_text(DEMO_NOTICE)
            names.append(DEMO_NOTICE_FILE)
        if self._merged is not None:
            names.append(self._merged.save())
        if self._embeddings is not None:
            metadata = embeddings_metadata(run, self._embeddings.dtype.name)
            self._embeddings.save(self.staged.file(EMBEDDINGS_FILE), metadata)
            names.append(EMBEDDINGS_FILE)
        run["outputs"] = sorted(names)
        self.staged.file(REPORT_FILE).write_text(self._report.render(run))
        with self.staged.open(RUN_FILE) as handle:
            handle.write(run_json_text(run))
        self.staged.commit(names, owned=OWNED_FILES)


class _MergedFeatures:
    """`STEM_merged.pt` in the original's {'ids': [...], 'data': Tensor[N, 3328]} layout.

    Features go to a raw float32 file as steps arrive; the .pt is written from a memory map of
    it at the end, so memory does not grow with the number of frames.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = tempfile.TemporaryFile(dir=path.parent)  # noqa: SIM115 (closed by `close`)
        self.ids: list[str] = []
        self.width = 0

    def add(self, frames: Sequence[KeptFrame], features: torch.Tensor) -> None:
        self.width = features.shape[1]
        self.ids.extend(frame.id for frame in frames)
        self.raw.write(features.float().contiguous().numpy().tobytes())

    def save(self) -> str:
        self.raw.flush()
        shape = (len(self.ids), self.width)
        data = (
            torch.from_numpy(np.memmap(self.raw, np.float32, "c", shape=shape))
            if self.ids
            else torch.empty(shape)
        )
        with self.path.open("wb") as handle:
            torch.save({"ids": self.ids, "data": data}, handle)
        return self.path.name

    def close(self) -> None:
        self.raw.close()


class PredictionRow(NamedTuple):
    """A row of `prediction_results.txt`, as read back."""

    sequence_id: str
    prediction: str
    score1: float
    score2: float


def read_prediction_results(path: Path | str) -> list[PredictionRow]:
    """The rows of a `prediction_results.txt`."""
    path = Path(path)
    with path.open() as handle:
        header = handle.readline().rstrip("\n")
        if header != PREDICTIONS_HEADER:
            raise UserError(f"{path}: not a prediction_results.txt (header {header!r})")
        return [_prediction_row(path, number, line) for number, line in enumerate(handle, 2)]


def _prediction_row(path: Path, number: int, line: str) -> PredictionRow:
    fields = line.rstrip("\n").split("\t")
    try:
        sequence_id, label, score1, score2 = fields
        return PredictionRow(sequence_id, label, float(score1), float(score2))
    except ValueError:
        raise UserError(
            f"{path}:{number}: expected 4 tab-separated fields: id, label, score1, score2"
        ) from None


def highest_scores_from(rows: Iterable[PredictionRow]) -> list[tuple[str, bool]]:
    """The original's highest-score table recomputed from per-frame rows as read back from
    the text (as the original did): (Modified_ID, Is_Virus), sorted."""
    scores: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        chunk = row.sequence_id[:-2]  # strip F1..R3
        scores.setdefault(chunk, []).append((row.score1, row.score2))
    return sorted((chunk, chunk_is_virus(*chunk_maxima(pairs))) for chunk, pairs in scores.items())
