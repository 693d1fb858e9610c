"""The per-frame features to reuse: `embeddings.safetensors` (`predict --embeddings`).

One row per kept frame, in the order of `prediction_results.txt`'s rows, keyed by structured
columns rather than the original's text ids:

    record     int64  [N]        the record's ordinal (its row of sequence_summary.tsv, from 0)
    chunk      int32  [N]        the chunk's number in its record, from 1
    frame      int8   [N]        1, 2, 3 for F1-F3; -1, -2, -3 for R1-R3
    dnabert_s  F16/F32 [N, 768]  DNABERT-S mean embedding of the frame's DNA
    esm2       F16/F32 [N, 2560] ESM-2 mean embedding of its protein (docs/ALGORITHM.md 5)

The file is safetensors (a JSON header, then raw little-endian arrays: nothing to unpickle).
The rows arrive a step at a time and go to temporary files, so memory stays flat however many
frames there are; the header is written when the count is known, then the arrays are copied in.

A job asked for embeddings (queued, or `predict --db`) keeps them in the database as
`EmbeddingPart`s (the raw bytes of at most PART_ROWS frames, in the file's dtype), committed
with their block (`BlockFeatures` collects them); its files are written from those parts, the
keys from its frame rows, so they are the bytes `predict` writes.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..errors import UserError
from ..sequences.translation import KeptFrame
from .results import FrameScore

EMBEDDINGS_FILE = "embeddings.safetensors"
EMBEDDING_DTYPES = ("float16", "float32")
FORMAT = "virnucpro-embeddings/1"
_SAFETENSORS_DTYPES = {"float16": "F16", "float32": "F32", "int64": "I64", "int32": "I32"}
_SAFETENSORS_DTYPES["int8"] = "I8"
_COPY_BYTES = 1 << 24
PART_ROWS = 1024  # frames per stored part: 13.6 MB of float32 features (3328 wide)


@dataclass
class FrameEmbeddings:
    """The columns of embeddings.safetensors as numpy arrays (the API's `Prediction.embeddings`)."""

    record: np.ndarray
    chunk: np.ndarray
    frame: np.ndarray
    dnabert_s: np.ndarray
    esm2: np.ndarray

    def __len__(self) -> int:
        return len(self.record)


@dataclass(frozen=True)
class EmbeddingPart:
    """Consecutive frames' features as raw little-endian bytes in the file's dtype: how the
    database keeps a queued job's embeddings."""

    rows: int
    dnabert_s: bytes
    esm2: bytes


def embedding_parts(
    features: torch.Tensor, nucleotide_width: int, dtype: str, rows_per_part: int = PART_ROWS
) -> list[EmbeddingPart]:
    """Merged features [frames, nucleotide width + protein width] as parts of at most
    `rows_per_part` frames, converted as `EmbeddingRecorder.add_features` converts them."""
    kind = np.dtype(check_dtype(dtype))
    parts = []
    for start in range(0, len(features), rows_per_part):
        nucleotide, protein = _columns(features[start : start + rows_per_part], nucleotide_width)
        raw = (nucleotide.astype(kind).tobytes(), protein.astype(kind).tobytes())
        parts.append(EmbeddingPart(len(nucleotide), *raw))
    return parts


class BlockFeatures:
    """The features of the block being computed, as the database keeps them (a job asked for
    embeddings in `dtype`): the stream hands out a block's features before the block."""

    def __init__(self, dtype: str | None, nucleotide_width: int) -> None:
        self.dtype, self.nucleotide_width = dtype, nucleotide_width
        self.parts: list[EmbeddingPart] = []

    def add(self, _frames: Sequence[KeptFrame], features: torch.Tensor) -> None:
        self.parts += embedding_parts(features, self.nucleotide_width, self.dtype)

    def take(self) -> list[EmbeddingPart]:
        parts, self.parts = self.parts, []
        return parts


def _columns(features: torch.Tensor, nucleotide_width: int) -> tuple[np.ndarray, np.ndarray]:
    values = features.detach().to("cpu", torch.float32).numpy()
    nucleotide, protein = np.hsplit(values, [nucleotide_width])
    return nucleotide, protein


def frame_code(strand: str, frame: int) -> int:
    """F1..F3 -> 1..3, R1..R3 -> -1..-3."""
    return frame if strand == "F" else -frame


def check_dtype(dtype: str) -> str:
    if dtype not in EMBEDDING_DTYPES:
        raise UserError(
            f"embeddings dtype must be one of {', '.join(EMBEDDING_DTYPES)}, not {dtype}"
        )
    return dtype


class EmbeddingRecorder:
    """Collects the features of each step (`add_features`, from the prediction stream) and the
    keys of each block's frames (`add_keys`, from its results: the same frames in the same
    order) into temporary files in `directory`; `save` writes the safetensors file, `load` the
    arrays. Close it (or use it with `with`) to remove the temporary files."""

    def __init__(self, directory: Path, dtype: str, widths: tuple[int, int]) -> None:
        """`widths`: of the DNABERT-S and the ESM-2 features (`Predictor.feature_widths`)."""
        self.dtype = np.dtype(check_dtype(dtype))
        self.nucleotide_width, self.protein_width = widths
        self._columns: dict[str, IO[bytes]] = {
            name: tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by `close`)
            for name in ("record", "chunk", "frame", "dnabert_s", "esm2")
        }
        self.featured = self.keyed = 0

    def __enter__(self) -> EmbeddingRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_features(self, features: torch.Tensor) -> None:
        """Rows [frames, nucleotide width + protein width] of the next frames."""
        nucleotide, protein = _columns(features, self.nucleotide_width)
        self._columns["dnabert_s"].write(nucleotide.astype(self.dtype).tobytes())
        self._columns["esm2"].write(protein.astype(self.dtype).tobytes())
        self.featured += len(nucleotide)

    def add_part(self, part: EmbeddingPart) -> None:
        """Features already converted (a queued job's, from the database)."""
        self._columns["dnabert_s"].write(part.dnabert_s)
        self._columns["esm2"].write(part.esm2)
        self.featured += part.rows

    def add_keys(self, frames: Sequence[FrameScore]) -> None:
        keys = {
            "record": np.array([f.record for f in frames], np.int64),
            "chunk": np.array([f.chunk for f in frames], np.int32),
            "frame": np.array([frame_code(f.strand, f.frame) for f in frames], np.int8),
        }
        for name, column in keys.items():
            self._columns[name].write(column.tobytes())
        self.keyed += len(frames)

    def _shapes(self) -> dict[str, tuple[str, list[int]]]:
        if self.featured != self.keyed:
            raise ValueError(f"{self.featured} frames have features but {self.keyed} have keys")
        rows, dtype = self.featured, self.dtype.name
        return {
            "chunk": ("int32", [rows]),
            "dnabert_s": (dtype, [rows, self.nucleotide_width]),
            "esm2": (dtype, [rows, self.protein_width]),
            "frame": ("int8", [rows]),
            "record": ("int64", [rows]),
        }

    def save(self, path: Path, metadata: dict[str, str]) -> None:
        write_safetensors(path, self._shapes(), self._columns, metadata)

    def load(self) -> FrameEmbeddings:
        arrays = {}
        for name, (dtype, shape) in self._shapes().items():
            column = self._columns[name]
            column.flush()
            column.seek(0)
            arrays[name] = np.fromfile(column, dtype).reshape(shape)
        return FrameEmbeddings(**arrays)

    def close(self) -> None:
        for column in self._columns.values():
            column.close()


def write_safetensors(
    path: Path,
    shapes: dict[str, tuple[str, list[int]]],
    sources: dict[str, IO[bytes]],
    metadata: dict[str, str],
) -> None:
    """A safetensors file of the tensors `shapes` names (dtype name, shape), whose raw bytes
    are in the files `sources`, copied in pieces. Tensors are laid out in name order."""
    header: dict[str, Any] = {"__metadata__": {"format": FORMAT, **metadata}}
    offset = 0
    for name in sorted(shapes):
        dtype, shape = shapes[name]
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": shape,
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    # The data starts 8-byte aligned, as safetensors writes it; the padding goes inside the
    # JSON, so that the header still ends with "}" (Galaxy's safetensors sniffer asks for it).
    text = text[:-1] + b" " * (-len(text) % 8) + b"}"
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for name in sorted(shapes):
            source = sources[name]
            source.flush()
            source.seek(0)
            shutil.copyfileobj(source, out, _COPY_BYTES)


def embeddings_metadata(run: dict[str, Any], dtype: str) -> dict[str, str]:
    """What the file says about itself: the dtype, the demo mark, the models' sha256."""
    models = run.get("models", {})
    return {
        "dtype": dtype,
        "demo_models": json.dumps(bool(run.get("demo_models"))),
        "chunk_size": str(run.get("chunk_size", "")),
        "esm2_sha256": str(models.get("esm2", {}).get("sha256", "")),
        "classifier_sha256": str(models.get("classifier", {}).get("sha256", "")),
        "rows": "frames in the order of prediction_results.txt",
        "frame": "1..3: F1..F3; -1..-3: R1..R3",
    }
