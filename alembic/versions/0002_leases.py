"""Leases the database owns: every shard's lease expiry, and each job's attempts per shard.

A running shard is leased to its worker until `lease_expires_at` (renewed by its heartbeats); a
queued one to its message for a grace period (then any worker's sweep checks the message is
still waiting in Redis). The attempts a shard may take are stored with its job at submit.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(
            sa.Column("shard_attempts", sa.Integer(), nullable=False, server_default="3")
        )
    with op.batch_alter_table("shards") as shards:
        shards.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        shards.drop_index("ix_shards_state_heartbeat_at")
        shards.create_index("ix_shards_state_lease_expires_at", ["state", "lease_expires_at"])
    # Running shards of the previous version: their lease ends with their last heartbeat (the
    # workers were stopped for the upgrade); queued ones (NULL) are checked at the first sweep.
    op.execute("UPDATE shards SET lease_expires_at = heartbeat_at WHERE state = 'running'")


def downgrade() -> None:
    with op.batch_alter_table("shards") as shards:
        shards.drop_index("ix_shards_state_lease_expires_at")
        shards.create_index("ix_shards_state_heartbeat_at", ["state", "heartbeat_at"])
        shards.drop_column("lease_expires_at")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("shard_attempts")
