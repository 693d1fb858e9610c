"""A queued job's per-frame features, when it was submitted with `--embeddings`
(pipeline/embeddings.py).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "frame_embeddings",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("record", sa.BigInteger(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("dnabert_s", sa.LargeBinary(), nullable=False),
        sa.Column("esm2", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "record", "part", name=op.f("pk_frame_embeddings")),
    )


def downgrade() -> None:
    op.drop_table("frame_embeddings")
