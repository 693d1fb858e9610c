"""VirNucPro as a service: identical input preparation, packed ESM-2 embeddings, classification.

    import virnucpro_worker
    predictor = virnucpro_worker.load_models(demo=True)
    prediction = predictor.predict("contigs.fa", chunk_size=500)
    prediction.records[0].call

The names below load on first use, so `import virnucpro_worker` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "load_models": "virnucpro_worker.interfaces.api",
    "Predictor": "virnucpro_worker.pipeline.predictor",
    "ModelChoice": "virnucpro_worker.pipeline.scorer",
    "Prediction": "virnucpro_worker.pipeline.prediction",
    "predict_stream": "virnucpro_worker.pipeline.stream",
    "StreamProgress": "virnucpro_worker.pipeline.stream",
    "BlockResult": "virnucpro_worker.pipeline.results",
    "FrameScore": "virnucpro_worker.pipeline.results",
    "ChunkCall": "virnucpro_worker.pipeline.results",
    "RecordSummary": "virnucpro_worker.pipeline.results",
    "RegionRule": "virnucpro_worker.pipeline.regions",
    "ViralRegion": "virnucpro_worker.pipeline.regions",
    "FrameEmbeddings": "virnucpro_worker.pipeline.embeddings",
    "ModelFiles": "virnucpro_worker.models.model_files",
    "UserError": "virnucpro_worker.errors",
    "InputError": "virnucpro_worker.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'virnucpro_worker' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
