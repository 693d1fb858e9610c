"""Viral regions along records (docs/ALGORITHM.md 10).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "viral_regions",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("record", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("first_chunk", sa.Integer(), nullable=False),
        sa.Column("last_chunk", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("viral_chunks", sa.Integer(), nullable=False),
        sa.Column("scored_chunks", sa.Integer(), nullable=False),
        sa.Column("mean_virus_score", sa.REAL(), nullable=False),
        sa.Column("max_virus_score", sa.REAL(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "record", "number", name=op.f("pk_viral_regions")),
    )


def downgrade() -> None:
    op.drop_table("viral_regions")
