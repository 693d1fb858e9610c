"""The job queue: submissions stored in the database as shards, run by GPU workers through RQ.

`Client` submits and follows jobs; `GpuWorker` runs them (`virnucpro worker`, or `rq worker -w
virnucpro_worker.interfaces.rq_worker.GpuWorker`). Both load on first use, so importing this
package is light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Client": ".client", "JobStatus": ".client", "GpuWorker": ".worker"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'virnucpro_worker.queue' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
