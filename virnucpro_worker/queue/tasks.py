"""The one function RQ may run (messages.ALLOWED_FUNCTIONS), given one database id. It runs
inside a GpuWorker, whose loaded models and database it uses."""

from __future__ import annotations

from typing import Any

from .worker import current_worker


def run_shard(shard_id: int) -> dict[str, Any]:
    """Predict one shard and write its results (nothing if the database says it has ended,
    was cancelled or is leased to another worker). A failed attempt is recorded in the
    database, not raised: RQ neither retries it nor logs it twice."""
    return current_worker().runner.run(shard_id)
