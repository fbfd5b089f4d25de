"""directory digests: the SHA-256 of the directory source's rows (and of what else decides a sync's outcome) as of
the last sync that completed with no bad row, so an unchanged second sync skips validating and diffing

Revision ID: 0011_directory_digests
Revises: 0010_tenant_directory
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_directory_digests"
down_revision = "0010_tenant_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_digests",
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_directory_digests")),
    )


def downgrade() -> None:
    op.drop_table("directory_digests")
