"""seals and usage_adjustments: sealed days, and the adjustments posted for them instead of changing their rollups

Revision ID: 0006_sealed_days
Revises: 0005_alerts
Create Date: 2026-11-26

The columns are written out here, not taken from usagectl.meters: a migration is a snapshot of the schema at its
revision, and a meter added later brings its own migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_sealed_days"
down_revision = "0005_alerts"
branch_labels = None
depends_on = None

_USAGE = (
    "sms_total",
    "mms_total",
    "voice_total_minutes",
    "email_total",
    "ai_total_tokens",
    "ai_tokens_in",
    "ai_tokens_out",
    "jobs_executed",
    "storage_bytes",
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
    op.create_table(
        "seals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sealed_through", sa.Date(), nullable=False),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seals")),
    )
    op.create_index(op.f("ix_seals_sealed_through"), "seals", ["sealed_through"], unique=False)
    op.create_table(
        "usage_adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in _USAGE),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in _COSTS),
        sa.Column("pricing_version", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_usage_adjustments_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_adjustments")),
    )
    op.create_index(
        op.f("ix_usage_adjustments_tenant_id_date"), "usage_adjustments", ["tenant_id", "date"], unique=False
    )
    op.create_index(op.f("ix_usage_adjustments_posted_at"), "usage_adjustments", ["posted_at"], unique=False)


def downgrade() -> None:
    op.drop_table("usage_adjustments")
    op.drop_table("seals")
