"""usage_metrics.as_of and usage_rollups_provisional: the day in progress (`collect --today`), kept apart

A raw row of the day in progress carries the time it is as of; its tenant-day rolls up into
usage_rollups_provisional, never into usage_rollups_daily, until the nightly collect stores the day final.

Revision ID: 0008_provisional
Revises: 0007_web_sessions
Create Date: 2026-12-03

The columns are written out here, not taken from usagectl.meters: a migration is a snapshot of the schema at its
revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_provisional"
down_revision = "0007_web_sessions"
branch_labels = None
depends_on = None

_COUNTS = (
    "sms_total",
    "mms_total",
    "voice_total_minutes",
    "email_total",
    "ai_total_tokens",
    "ai_tokens_in",
    "ai_tokens_out",
    "jobs_executed",
)
_COSTS = (
    "sms_cost_usd",
    "mms_cost_usd",
    "voice_cost_usd",
    "email_cost_usd",
    "ai_cost_usd",
    "estimated_cost_usd",
)


def upgrade() -> None:
    with op.batch_alter_table("usage_metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("as_of", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_usage_metrics_provisional",
            ["date", "tenant_id"],
            unique=False,
            sqlite_where=sa.text("as_of IS NOT NULL"),
            postgresql_where=sa.text("as_of IS NOT NULL"),
        )
    op.create_table(
        "usage_rollups_provisional",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in _COUNTS),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=True),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in _COSTS),
        sa.Column("provider_cost_usd", sa.BigInteger(), nullable=True),
        sa.Column("pricing_version", sa.String(length=64), nullable=False),
        sa.Column("plan_tier", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_usage_rollups_provisional_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_rollups_provisional")),
        sa.UniqueConstraint("tenant_id", "date", name=op.f("uq_usage_rollups_provisional_tenant_id")),
    )


def downgrade() -> None:
    op.drop_table("usage_rollups_provisional")
    with op.batch_alter_table("usage_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_metrics_provisional")
        batch_op.drop_column("as_of")
