"""initial schema

Money columns (*_usd) are BIGINT micro-USD; see usagectl.store.tables.Money.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
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
        "job_locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_locks")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("plan_tier", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
    )
    op.create_table(
        "collection_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_written", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_collection_runs_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_runs")),
    )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_collection_runs_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_collection_runs_tenant_id_date"), ["tenant_id", "date"], unique=False
        )

    op.create_table(
        "usage_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_usage_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_usage_events_source_event_id")),
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_events_tenant_id_occurred_at"), ["tenant_id", "occurred_at"], unique=False
        )

    op.create_table(
        "usage_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("sms_outbound_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("sms_inbound_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("mms_outbound_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("mms_inbound_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("voice_minutes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("emails_sent", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("emails_delivered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_tokens_in", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_tokens_out", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("jobs_executed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("provider_cost_usd", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_usage_metrics_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_metrics")),
        sa.UniqueConstraint(
            "tenant_id", "date", "source", name=op.f("uq_usage_metrics_tenant_id_date_source")
        ),
    )
    with op.batch_alter_table("usage_metrics", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_metrics_date_tenant_id"), ["date", "tenant_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_usage_metrics_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "usage_metrics_ai_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("ai_tokens_in", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_tokens_out", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_tokens_cached_in", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_usage_metrics_ai_models_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_metrics_ai_models")),
        sa.UniqueConstraint(
            "tenant_id",
            "date",
            "source",
            "model",
            name=op.f("uq_usage_metrics_ai_models_tenant_id_date_source_model"),
        ),
    )
    op.create_table(
        "usage_rollups_daily",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("sms_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("mms_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("voice_total_minutes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("email_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_total_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_tokens_in", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_tokens_out", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("jobs_executed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sms_cost_usd", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("mms_cost_usd", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("voice_cost_usd", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("email_cost_usd", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ai_cost_usd", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("estimated_cost_usd", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("provider_cost_usd", sa.BigInteger(), nullable=True),
        sa.Column("pricing_version", sa.String(length=64), nullable=False),
        sa.Column("plan_tier", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_usage_rollups_daily_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_rollups_daily")),
        sa.UniqueConstraint("tenant_id", "date", name=op.f("uq_usage_rollups_daily_tenant_id_date")),
    )
    with op.batch_alter_table("usage_rollups_daily", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_rollups_daily_date_tenant_id"), ["date", "tenant_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("usage_rollups_daily", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_rollups_daily_date_tenant_id"))

    op.drop_table("usage_rollups_daily")
    op.drop_table("usage_metrics_ai_models")
    with op.batch_alter_table("usage_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_metrics_updated_at"))
        batch_op.drop_index(batch_op.f("ix_usage_metrics_date_tenant_id"))

    op.drop_table("usage_metrics")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_events_tenant_id_occurred_at"))

    op.drop_table("usage_events")
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_collection_runs_tenant_id_date"))
        batch_op.drop_index(batch_op.f("ix_collection_runs_run_id"))

    op.drop_table("collection_runs")
    op.drop_table("tenants")
    op.drop_table("job_locks")
