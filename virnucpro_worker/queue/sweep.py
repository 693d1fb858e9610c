"""The sweep: what makes every job end by itself. Any worker runs it (one at a time, every
lease or so), `Client.recover` runs it at once.

The database says which shards need a message (store/shards.py `sweep`: a running shard whose
lease ran out, a queued one whose message had its grace period); Redis says which messages still
wait in a queue; the shards that need one and have none get a fresh message on the queue of
their job's model set. A duplicate message costs a lookup (the claim decides), a missing one
would stall the job: the sweep errs on the side of sending.
"""

from __future__ import annotations

import redis

from ..settings import Settings
from ..store.shards import postpone
from ..store.shards import sweep as sweep_database
from ..store.store import Store
from . import messages


def sweep(
    store: Store, connection: redis.Redis, settings: Settings, every_queued: bool = False
) -> int:
    """Act on the leases that ran out and settle the jobs whose shards have all ended; queue a
    message for each queued shard that needs one (`every_queued`: whatever its grace period);
    returns how many were queued."""
    due = store.transaction(lambda session: sweep_database(session, every_queued))
    by_queue: dict[str, list[int]] = {}
    first_queues = set()  # before a job's model set is pinned, its messages went there
    for delivery in due:
        name = messages.job_queue_name(settings.queue, delivery.parameters, delivery.model_set)
        by_queue.setdefault(name, []).append(delivery.shard_id)
        first_queues.add(messages.job_queue_name(settings.queue, delivery.parameters, None))
    present = messages.waiting(connection, first_queues | set(by_queue))
    queued: list[int] = []
    for name, shard_ids in by_queue.items():
        missing = [shard_id for shard_id in shard_ids if shard_id not in present]
        messages.deliver(connection, name, missing, fresh=True)
        queued += missing
    store.transaction(lambda session: postpone(session, queued, settings.lease_seconds))
    return len(queued)
