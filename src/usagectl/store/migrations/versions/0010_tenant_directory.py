"""tenant directory: dated plan periods (tenant_plans), dated provider mappings (tenant_mappings), and the
tenants' origin, source plan, inactive-from day, directory budget and own-account token reference

Revision ID: 0010_tenant_directory
Revises: 0009_rollup_provider_costs
Create Date: 2026-12-03

Every existing tenant gets one plan period, from 0001-01-01, with its current plan: what the rollup priced it with
until now.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010_tenant_directory"
down_revision = "0009_rollup_provider_costs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=16), server_default="config", nullable=False))
        batch.add_column(sa.Column("source_plan", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("inactive_from", sa.Date(), nullable=True))
        batch.add_column(sa.Column("monthly_budget_usd", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("twilio_auth_token_env", sa.String(length=200), nullable=True))
    plans = op.create_table(
        "tenant_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("plan_tier", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_plans_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_plans")),
        sa.UniqueConstraint("tenant_id", "valid_from", name=op.f("uq_tenant_plans_tenant_id_valid_from")),
    )
    op.create_table(
        "tenant_mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_mappings_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_mappings")),
    )
    op.create_index(op.f("ix_tenant_mappings_kind_value"), "tenant_mappings", ["kind", "value"], unique=False)
    op.create_index(op.f("ix_tenant_mappings_tenant_id"), "tenant_mappings", ["tenant_id"], unique=False)
    conn = op.get_bind()
    tenants = sa.table(
        "tenants",
        sa.column("id", sa.Integer()),
        sa.column("plan_tier", sa.String()),
        sa.column("source_plan"),
    )
    rows = conn.execute(sa.select(tenants.c.id, tenants.c.plan_tier)).all()
    now = datetime.now(UTC)
    if conn.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    if rows:
        op.bulk_insert(
            plans,
            [
                {
                    "tenant_id": tid,
                    "plan_tier": tier,
                    "valid_from": date(1, 1, 1),
                    "valid_to": None,
                    "how": "config",
                    "recorded_at": now,
                }
                for tid, tier in rows
            ],
        )
        conn.execute(sa.update(tenants).values(source_plan=tenants.c.plan_tier))


def downgrade() -> None:
    op.drop_table("tenant_mappings")
    op.drop_table("tenant_plans")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("twilio_auth_token_env")
        batch.drop_column("monthly_budget_usd")
        batch.drop_column("inactive_from")
        batch.drop_column("source_plan")
        batch.drop_column("origin")
