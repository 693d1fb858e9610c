"""The two functions RQ may run (messages.ALLOWED_FUNCTIONS), each given one database id.
They run inside a GpuWorker, whose loaded models and database they use."""

from __future__ import annotations

from typing import Any

from .worker import current_worker


def run_shard(shard_id: int) -> dict[str, Any]:
    """Predict one shard and write its results (nothing if the database says it is done,
    cancelled or running elsewhere)."""
    return current_worker().runner.run(shard_id)


def finalize_job(job_id: int) -> str:
    """Settle the job from its shards once they have all ended; returns its state."""
    return current_worker().runner.finalize(job_id)
