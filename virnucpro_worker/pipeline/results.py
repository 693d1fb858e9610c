"""The result files, written block by block as scores arrive.

`prediction_results.txt` and `prediction_results_highestscore.csv` keep the original tool's exact
format (REFERENCE 1.4) so that existing downstream parsers keep working; `sequence_summary.tsv`
is ours: one call per input record. All files appear together, and only when the writer closes
without error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TextIO

import numpy as np
from torch import Tensor

from ..errors import UserError
from ..files import atomic_write
from ..sequences.prepare import RecordInfo
from ..sequences.translation import KeptFrame

PREDICTIONS_FILE = "prediction_results.txt"
HIGHEST_SCORE_FILE = "prediction_results_highestscore.csv"
SUMMARY_FILE = "sequence_summary.tsv"
DEMO_NOTICE_FILE = "DEMO_MODELS_PREDICTIONS_ARE_MEANINGLESS.txt"

PREDICTIONS_HEADER = "Sequence_ID\tPrediction\tscore1\tscore2"
HIGHEST_SCORE_HEADER = "Modified_ID\tIs_Virus"
SUMMARY_HEADER = (
    "record_id\tlength\tchunks\tkept_frames\tscored_chunks\tmax_virus_score"
    "\tviral_chunk_fraction\tcall"
)
DEMO_BANNER = "# DEMO MODELS: predictions are meaningless"
DEMO_NOTICE = """\
These results were computed with DEMO models (random or tiny stand-in weights), not the
published VirNucPro classifier and embedding models. Every score and every virus/others call
in this directory is meaningless. prediction_results.txt and prediction_results_highestscore.csv
keep the original column format, so they carry no mark of their own: this file and the first
line of sequence_summary.tsv are the warning.
"""
VIRAL_FRACTION_CALL = 0.5  # a record is called virus when at least half its scored chunks are


def format_score(x: float) -> str:
    """The original's score text: shortest round-trip float32 representation."""
    return str(np.float32(x))


def chunk_id_of(frame_id: str) -> str:
    """The original's Modified_ID: the frame id without its F1..R3 suffix."""
    return frame_id[:-2]


def is_virus(max_score1: float, max_score2: float) -> bool:
    """The original's per-chunk rule; ties go to virus (unlike the per-frame label)."""
    return bool(max_score2 >= max_score1)


class ResultWriter:
    """Writes the result files of one run into `out_dir`; use it as a context manager.

    Call `add` once per block (whole records, their kept frames in order, one score row per
    frame). The per-frame and per-record rows are streamed out; only the per-chunk virus call is
    kept, because the highest-score file is sorted by chunk id over the whole input.

    `records`, `chunks`, `frames`, `scored_chunks` and `viral_chunks` count what was written
    (for run.json); chunks are all chunks of the records, scored ones those with a kept frame.
    """

    def __init__(self, out_dir: Path, demo: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.demo = demo
        self._chunk_calls: dict[str, bool] = {}
        self.records = self.chunks = self.frames = self.viral_chunks = 0
        self._stack: contextlib.ExitStack | None = None

    @property
    def scored_chunks(self) -> int:
        return len(self._chunk_calls)

    def __enter__(self) -> ResultWriter:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            self._predictions = self._open(stack, PREDICTIONS_FILE)
            self._highest = self._open(stack, HIGHEST_SCORE_FILE)
            self._summary = self._open(stack, SUMMARY_FILE)
            self._notice = self._open(stack, DEMO_NOTICE_FILE) if self.demo else None
            self._stack = stack.pop_all()
        self._predictions.write(PREDICTIONS_HEADER + "\n")
        if self.demo:
            self._summary.write(DEMO_BANNER + "\n")
        self._summary.write(SUMMARY_HEADER + "\n")
        return self

    def _open(self, stack: contextlib.ExitStack, name: str) -> TextIO:
        return stack.enter_context(atomic_write(self.out_dir / name))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._stack is not None
        stack, self._stack = self._stack, None
        if exc_type is not None:
            stack.__exit__(exc_type, exc, traceback)  # no file is renamed into place
            return
        with stack:  # an error while finishing also leaves no file behind
            write_highest_scores(self._highest, sorted(self._chunk_calls.items()))
            if self._notice is not None:
                self._notice.write(DEMO_NOTICE)
        if not self.demo:
            # A notice left by an earlier demo run would mislabel these real results.
            (self.out_dir / DEMO_NOTICE_FILE).unlink(missing_ok=True)

    def add(
        self, records: Sequence[RecordInfo], frames: Sequence[KeptFrame], scores: Tensor
    ) -> None:
        """Record one block's results; `scores[i]` = (P(others), P(virus)) of `frames[i]`."""
        if self._stack is None:
            raise RuntimeError("ResultWriter.add needs an open writer (use it with `with`)")
        if tuple(scores.shape) != (len(frames), 2):
            raise ValueError(f"scores must be [{len(frames)}, 2], not {list(scores.shape)}")
        values = scores.detach().float().cpu().numpy()
        maxima = self._write_frames(frames, values)
        self._write_summaries(records, frames, values, self._add_chunk_calls(maxima))
        self.records += len(records)
        self.chunks += sum(record.chunks for record in records)
        self.frames += len(frames)

    def _write_frames(
        self, frames: Sequence[KeptFrame], values: np.ndarray
    ) -> dict[str, tuple[np.float32, np.float32]]:
        """Write the per-frame rows; return each chunk's (max score1, max score2)."""
        maxima: dict[str, tuple[np.float32, np.float32]] = {}
        lines = []
        for frame, (score1, score2) in zip(frames, values, strict=True):
            # argmax as the original takes it: a tie gives index 0, `others`
            label = "virus" if score2 > score1 else "others"
            lines.append(f"{frame.id}\t{label}\t{format_score(score1)}\t{format_score(score2)}\n")
            chunk = chunk_id_of(frame.id)
            best1, best2 = maxima.get(chunk, (score1, score2))
            maxima[chunk] = (max(best1, score1), max(best2, score2))
        self._predictions.writelines(lines)
        return maxima

    def _add_chunk_calls(self, maxima: dict[str, tuple[np.float32, np.float32]]) -> dict[str, bool]:
        calls = {chunk: is_virus(best1, best2) for chunk, (best1, best2) in maxima.items()}
        # A block holds whole records, so a chunk's frames never span two blocks; if they did,
        # its call would have been made on part of its frames.
        repeated = next((chunk for chunk in calls if chunk in self._chunk_calls), None)
        if repeated is not None:
            raise ValueError(f"chunk {repeated} has frames in two blocks")
        self._chunk_calls.update(calls)
        self.viral_chunks += sum(calls.values())
        return calls

    def _write_summaries(
        self,
        records: Sequence[RecordInfo],
        frames: Sequence[KeptFrame],
        values: np.ndarray,
        calls: dict[str, bool],
    ) -> None:
        per_record: dict[str, _RecordTally] = {record.id: _RecordTally() for record in records}
        for frame, score2 in zip(frames, values[:, 1], strict=True):
            tally = per_record.get(frame.record_id)
            if tally is None:
                raise ValueError(f"frame {frame.id} belongs to no record of its block")
            tally.add_frame(chunk_id_of(frame.id), score2)
        self._summary.writelines(
            _summary_row(record, per_record[record.id], calls) for record in records
        )


@dataclass(slots=True)
class _RecordTally:
    frames: int = 0
    max_virus_score: np.float32 | None = None
    chunks: set[str] = field(default_factory=set)  # the record's scored chunks

    def add_frame(self, chunk: str, score2: np.float32) -> None:
        self.frames += 1
        if self.max_virus_score is None or score2 > self.max_virus_score:
            self.max_virus_score = score2
        self.chunks.add(chunk)


def _summary_row(record: RecordInfo, tally: _RecordTally, calls: dict[str, bool]) -> str:
    """One `sequence_summary.tsv` row; a record with no kept frame is `unscored`."""
    if not tally.chunks:
        fields = [record.id, record.length, record.chunks, 0, 0, "", "", "unscored"]
    else:
        viral = sum(calls[chunk] for chunk in tally.chunks)
        fraction = viral / len(tally.chunks)
        fields = [
            record.id,
            record.length,
            record.chunks,
            tally.frames,
            len(tally.chunks),
            format_score(tally.max_virus_score),
            f"{fraction:.4f}",
            "virus" if fraction >= VIRAL_FRACTION_CALL else "others",
        ]
    return "\t".join(map(str, fields)) + "\n"


def write_highest_scores(handle: TextIO, calls: Iterable[tuple[str, bool]]) -> None:
    handle.write(HIGHEST_SCORE_HEADER + "\n")
    handle.writelines(f"{chunk}\t{call}\n" for chunk, call in calls)


def read_prediction_results(path: Path | str) -> list[tuple[str, str, float, float]]:
    """Rows (Sequence_ID, Prediction, score1, score2) of a `prediction_results.txt`."""
    path = Path(path)
    with path.open() as handle:
        header = handle.readline().rstrip("\n")
        if header != PREDICTIONS_HEADER:
            raise UserError(f"{path}: not a prediction_results.txt (header {header!r})")
        return [_prediction_row(path, number, line) for number, line in enumerate(handle, 2)]


def _prediction_row(path: Path, number: int, line: str) -> tuple[str, str, float, float]:
    fields = line.rstrip("\n").split("\t")
    try:
        sequence_id, label, score1, score2 = fields
        return sequence_id, label, float(score1), float(score2)
    except ValueError:
        raise UserError(
            f"{path}:{number}: expected 4 tab-separated fields: id, label, score1, score2"
        ) from None


def highest_scores_from(rows: Iterable[tuple[str, str, float, float]]) -> list[tuple[str, bool]]:
    """The original's highest-score table from per-frame rows: (Modified_ID, Is_Virus), sorted."""
    maxima: dict[str, tuple[float, float]] = {}
    for sequence_id, _label, score1, score2 in rows:
        chunk = chunk_id_of(sequence_id)
        best1, best2 = maxima.get(chunk, (score1, score2))
        maxima[chunk] = (max(best1, score1), max(best2, score2))
    return sorted((chunk, is_virus(*best)) for chunk, best in maxima.items())
