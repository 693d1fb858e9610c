"""The call rules, in one place: per kept frame, per chunk (the original's), per input record.

Pure functions of scores. The result files, the Python API and the database all call these;
docs/ALGORITHM.md 7 states them in words.
"""

from __future__ import annotations

from collections.abc import Iterable

VIRUS, OTHERS, UNSCORED = "virus", "others", "unscored"
# A record is called virus when at least this share of its scored chunks are viral.
VIRAL_FRACTION_CALL = 0.5


def frame_label(others_score: float, virus_score: float) -> str:
    """The original's per-frame label: argmax of the two scores, a tie giving `others`."""
    return VIRUS if virus_score > others_score else OTHERS


def chunk_is_virus(max_others_score: float, max_virus_score: float) -> bool:
    """The original's per-chunk call (`Is_Virus`) from the maxima over the chunk's kept frames;
    a tie gives virus, unlike the per-frame label."""
    return bool(max_virus_score >= max_others_score)


def record_call(scored_chunks: int, viral_chunks: int) -> str:
    """Ours: `virus` when at least half the record's scored chunks are viral, `unscored` when
    no chunk kept a frame. It counts chunks, not scores: one very viral chunk among many
    others-called ones leaves the record `others` whatever its `max_virus_score`."""
    if scored_chunks == 0:
        return UNSCORED
    return VIRUS if viral_chunks / scored_chunks >= VIRAL_FRACTION_CALL else OTHERS


def chunk_maxima(scores: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """(max others score, max virus score) over a chunk's kept frames, taken separately."""
    others, virus = zip(*scores, strict=True)
    return max(others), max(virus)
