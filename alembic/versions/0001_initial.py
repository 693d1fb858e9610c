"""The first schema: jobs, shards and their inputs, predictions, provenance.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("model_set", sa.JSON(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("input_name", sa.Text(), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("input_bytes", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("bases", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.BigInteger(), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("shards_done", sa.Integer(), nullable=False),
        sa.Column("records_done", sa.BigInteger(), nullable=False),
        sa.Column("frames_done", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_state"), "jobs", ["state"])

    op.create_table(
        "chunk_predictions",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("record", sa.BigInteger(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("kept_frames", sa.SmallInteger(), nullable=False),
        sa.Column("max_others_score", sa.REAL(), nullable=False),
        sa.Column("max_virus_score", sa.REAL(), nullable=False),
        sa.Column("is_virus", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "record", "chunk", name=op.f("pk_chunk_predictions")),
    )
    op.create_table(
        "frame_predictions",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("record", sa.BigInteger(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("strand", sa.String(length=1), nullable=False),
        sa.Column("frame", sa.SmallInteger(), nullable=False),
        sa.Column("others_score", sa.REAL(), nullable=False),
        sa.Column("virus_score", sa.REAL(), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint(
            "job_id", "record", "chunk", "strand", "frame", name=op.f("pk_frame_predictions")
        ),
    )
    op.create_table(
        "provenance",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("run_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_provenance_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_provenance")),
    )
    op.create_table(
        "record_predictions",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("record", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("kept_frames", sa.Integer(), nullable=False),
        sa.Column("scored_chunks", sa.Integer(), nullable=False),
        sa.Column("viral_chunks", sa.Integer(), nullable=False),
        sa.Column("max_virus_score", sa.REAL(), nullable=True),
        sa.Column("viral_chunk_fraction", sa.Double(), nullable=True),
        sa.Column("call", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "record", name=op.f("pk_record_predictions")),
    )
    op.create_index("ix_record_predictions_job_id_call", "record_predictions", ["job_id", "call"])

    op.create_table(
        "shards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("first_record", sa.BigInteger(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("bases", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("frames_done", sa.BigInteger(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("device", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_shards_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shards")),
        sa.UniqueConstraint("job_id", "index", name=op.f("uq_shards_job_id")),
    )
    op.create_index("ix_shards_state_heartbeat_at", "shards", ["state", "heartbeat_at"])

    op.create_table(
        "shard_inputs",
        sa.Column("shard_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shard_id"],
            ["shards.id"],
            name=op.f("fk_shard_inputs_shard_id_shards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shard_id", "part", name=op.f("pk_shard_inputs")),
    )


def downgrade() -> None:
    op.drop_table("shard_inputs")
    op.drop_index("ix_shards_state_heartbeat_at", "shards")

    op.drop_table("shards")
    op.drop_index("ix_record_predictions_job_id_call", "record_predictions")

    op.drop_table("record_predictions")
    op.drop_table("provenance")
    op.drop_table("frame_predictions")
    op.drop_table("chunk_predictions")
    op.drop_index(op.f("ix_jobs_state"), "jobs")

    op.drop_table("jobs")
