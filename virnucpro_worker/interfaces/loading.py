"""The model set that settings name, loaded: what the command line, the Python API and RQ's own
command line (`rq_worker.py`) share; the queue's workers are given what they load. Light to
import: the models and torch load on the call."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:
    from ..pipeline.predictor import Predictor


def load_predictor(settings: Settings, warm_up: bool = False) -> Predictor:
    """The model set `settings` name, loaded; with `warm_up`, its kernels compiled before it
    returns (a worker, before it takes work)."""
    from ..pipeline.predictor import Predictor
    from ..pipeline.scorer import ModelChoice
    from ..pipeline.warmup import warm_up as run_warm_up

    if settings.triton_cache:  # Triton reads its cache folder from the environment only
        os.environ["TRITON_CACHE_DIR"] = settings.triton_cache
    files = settings.model_files()
    choice = ModelChoice(
        files, settings.attention, settings.device, settings.dtype, settings.block_bases
    )
    predictor = Predictor.load(choice)
    if warm_up:
        run_warm_up(predictor)
    return predictor
