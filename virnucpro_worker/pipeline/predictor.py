"""Models loaded once, then any number of inputs turned into VirNucPro predictions."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..sequences.sources import Source, records_of
from .prediction import Prediction, predict
from .regions import RegionRule
from .results import BlockResult
from .scorer import Scorer
from .stream import StreamProgress, predict_stream


class Predictor(Scorer):
    """A loaded model set with one attention backend, for whole inputs.

    `predict` returns a whole `Prediction`; `predict_stream` yields block results for inputs
    too large to hold. Both take a path, an open text stream or an iterable of (id, sequence).
    """

    def predict(
        self,
        source: Source,
        chunk_size: int = 500,
        *,
        regions: RegionRule = RegionRule(),  # noqa: B008 (frozen: one shared default is safe)
        embeddings: str | None = None,
    ) -> Prediction:
        """Every result of `source` as Python objects; `regions` is the viral-region rule;
        `embeddings` ("float16" or "float32") also returns every frame's features as arrays
        (`Prediction.embeddings`), held in memory: 6.5 kB a frame in float16."""
        return predict(self, source, chunk_size, regions, embeddings)

    def predict_stream(
        self,
        source: Source,
        chunk_size: int = 500,
        *,
        on_progress: Callable[[StreamProgress], None] | None = None,
        regions: RegionRule = RegionRule(),  # noqa: B008 (frozen: one shared default is safe)
    ) -> Iterator[BlockResult]:
        return predict_stream(
            self, records_of(source), chunk_size, on_progress=on_progress, regions=regions
        )
