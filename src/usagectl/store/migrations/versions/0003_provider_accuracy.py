"""usage_metrics_ai_models.ai_tokens_cache_write_in; a partial index of provisional collection_runs rows

OpenAI reports input tokens written to the prompt cache (`input_cache_write_tokens`, part of `input_tokens`); a
per-model price may charge them at their own rate, so they are kept per model like cached input tokens.
Every collect looks up the days still stored as provisional; the partial index holds only those rows.

Revision ID: 0003_provider_accuracy
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_provider_accuracy"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_metrics_ai_models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ai_tokens_cache_write_in", sa.BigInteger(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_collection_runs_provisional",
            ["date"],
            unique=False,
            sqlite_where=sa.text("status = 'provisional'"),
            postgresql_where=sa.text("status = 'provisional'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_runs_provisional")
    with op.batch_alter_table("usage_metrics_ai_models", schema=None) as batch_op:
        batch_op.drop_column("ai_tokens_cache_write_in")
