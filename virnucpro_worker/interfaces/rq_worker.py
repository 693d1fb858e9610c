"""`rq worker -w virnucpro_worker.interfaces.rq_worker.GpuWorker --url REDIS QUEUE ...`: RQ's
own command line builds the worker itself, so here, at the edge, it reads its settings from the
VIRNUCPRO_* variables and the config file and loads its models, as `virnucpro worker` does."""

from __future__ import annotations

import os
from typing import Any

from ..queue.worker import GpuWorker as QueueWorker
from ..settings import load_settings
from .loading import load_predictor


class GpuWorker(QueueWorker):
    def __init__(self, queues: Any = None, *args: Any, **kwargs: Any) -> None:
        settings = load_settings({}, os.environ)
        predictor = load_predictor(settings, warm_up=True)
        super().__init__(queues, *args, settings=settings, predictor=predictor, **kwargs)
