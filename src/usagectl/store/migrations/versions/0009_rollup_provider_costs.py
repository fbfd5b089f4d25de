"""usage_rollups_daily (and usage_rollups_provisional) keep, per cost-reporting provider, whether it has a raw row for the tenant-day and the cost
it reported; a partial index of the failed collection_runs rows

Revision ID: 0009_rollup_provider_costs
Revises: 0008_provisional
Create Date: 2026-12-03

The margin (plan charge - the providers' reported cost) used to read the raw usage_metrics rows of every tenant
for the month; the rollup now keeps what it needs with each tenant-day. Existing rollup rows are filled from the
raw rows they were rolled up from. The columns are written out here, not taken from usagectl.meters: a migration
is a snapshot of the schema at its revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_rollup_provider_costs"
down_revision = "0008_provisional"
branch_labels = None
depends_on = None

_SOURCES = ("twilio", "openai")


def upgrade() -> None:
    # The day in progress (usage_rollups_provisional) is written by the same rollup, so it gets the same columns.
    for table in ("usage_rollups_daily", "usage_rollups_provisional"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for source in _SOURCES:
                batch_op.add_column(
                    sa.Column(f"{source}_collected", sa.SmallInteger(), server_default="0", nullable=False)
                )
                batch_op.add_column(sa.Column(f"{source}_reported_cost_usd", sa.BigInteger(), nullable=True))
    # Each rollup row from its raw rows (one per tenant, day and source: the unique index serves each lookup).
    for source in _SOURCES:
        raw = (
            "FROM usage_metrics m WHERE m.tenant_id = usage_rollups_daily.tenant_id "
            f"AND m.date = usage_rollups_daily.date AND m.source = '{source}'"
        )
        op.execute(
            f"UPDATE usage_rollups_daily SET {source}_collected = (SELECT COUNT(*) {raw}), "
            f"{source}_reported_cost_usd = (SELECT MAX(m.provider_cost_usd) {raw})"
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_collection_runs_failed",
            ["date"],
            unique=False,
            sqlite_where=sa.text("status = 'failed'"),
            postgresql_where=sa.text("status = 'failed'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_runs_failed")
    for table in ("usage_rollups_provisional", "usage_rollups_daily"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for source in reversed(_SOURCES):
                batch_op.drop_column(f"{source}_reported_cost_usd")
                batch_op.drop_column(f"{source}_collected")
