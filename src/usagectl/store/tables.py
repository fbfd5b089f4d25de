"""The schema, in SQLAlchemy Core. Alembic migrations (store/migrations) must produce exactly this.

Money columns (`*_usd`) hold integer micro-USD in the database and `Decimal` USD in Python, through `Money`:
exact on SQLite (which has no true NUMERIC) and PostgreSQL alike, and SUM()s in SQL stay integers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import true
from sqlalchemy.types import TypeDecorator

from usagectl.meters import (
    COST_COLUMNS,
    METERS,
    RAW_COUNT_COLUMNS,
    RAW_GAUGE_COLUMNS,
    ROLLUP_USAGE_COLUMNS,
    SOURCE_COST_COLUMNS,
)
from usagectl.money import from_micros, to_micros

SCHEMA_HEAD = (
    "0012_directory_edits"  # the newest Alembic revision; a test keeps it equal to the scripts' head
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Money(TypeDecorator[Decimal]):
    """Decimal USD in Python, BIGINT micro-USD in the database."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, int):
            raise TypeError("Money takes Decimal USD, not int (is this micro-USD already?)")
        return to_micros(Decimal(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return from_micros(int(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite returns text for some expressions (e.g. MAX())
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _count(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False, server_default="0")


tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(63), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("plan_tier", String(16), nullable=False),
    # False once a tenant leaves the config or the directory; its history stays.
    Column("active", Boolean, nullable=False, server_default=true()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Where the tenant is defined: "config" ([[tenants]] in the TOML) or "directory" (`usagectl directory sync`).
    Column("origin", String(16), nullable=False, server_default="config"),
    # The plan its source last said: a sync records a plan period only when this changes, so a plan recorded by
    # hand (`usagectl directory plan`) is not undone by the next sync of an unchanged source.
    Column("source_plan", String(16), nullable=True),
    # The UTC day it left its source (inactive from then on); NULL while active.
    Column("inactive_from", Date, nullable=True),
    # The directory's monthly budget (USD; NULL: the plan's). Config tenants keep theirs in the TOML.
    Column("monthly_budget_usd", Money, nullable=True),
    # The directory's Twilio own-account token reference (the NAME of an environment variable, never the token).
    Column("twilio_auth_token_env", String(200), nullable=True),
    # Or the path of a file holding that token (never the token itself); one of the two.
    Column("twilio_auth_token_file", String(1000), nullable=True),
)

# A tenant's plan over time, in UTC days: each period runs from `valid_from` to the next period's `valid_from`
# (`valid_to`, exclusive; NULL for the current one). The first period starts at 0001-01-01, so a backfill of days
# before the tenant was first synced is priced with its first plan. Rollup prices each tenant-day with the period
# holding it (pricing.py, docs/cost-model.md "Plan changes").
tenant_plans = Table(
    "tenant_plans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("plan_tier", String(16), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("how", String(16), nullable=False),  # config | directory | manual
    Column("recorded_at", UTCDateTime, nullable=False),
    UniqueConstraint("tenant_id", "valid_from"),
)

# Which provider identities a tenant held, and when (UTC days, `valid_to` exclusive, NULL: still held). `kind` is
# one of store.directory.MAPPING_KINDS (phone_number, twilio_subaccount, twilio_account, sendgrid_subuser,
# sendgrid_category, openai_project). A phone number moves from one tenant to another by closing one row and
# opening the next on the same day: collect attributes each day's messages to the row holding that day.
tenant_mappings = Table(
    "tenant_mappings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("value", String(200), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index(None, "kind", "value"),
    Index(None, "tenant_id"),
)

# Raw metrics: one row per tenant x UTC day x source; a re-collection replaces the row.
METRIC_COLUMNS = RAW_COUNT_COLUMNS

usage_metrics = Table(
    "usage_metrics",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("date", Date, nullable=False),
    Column("source", String(32), nullable=False),
    *(_count(c) for c in METRIC_COLUMNS),
    # A gauge: the day's last reading; NULL when this source reported none.
    *(Column(c, BigInteger, nullable=True) for c in RAW_GAUGE_COLUMNS),
    # What the provider itself reported it charged; NULL when it reports nothing.
    Column("provider_cost_usd", Money, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Set on a row of the day in progress (`collect --today`): the time the provider was asked. NULL: final. The
    # nightly collect of the day replaces the row with a final one.
    Column("as_of", UTCDateTime, nullable=True),
    UniqueConstraint("tenant_id", "date", "source"),
    Index(None, "date", "tenant_id"),
    Index(None, "updated_at"),
    # Only the provisional rows (a day or two of them): rollup and seal look them up.
    Index(
        "ix_usage_metrics_provisional",
        "date",
        "tenant_id",
        sqlite_where=text("as_of IS NOT NULL"),
        postgresql_where=text("as_of IS NOT NULL"),
    ),
)

# AI tokens per model, where a source knows the model (OpenAI group_by=model, the AI log); a subset of the
# usage_metrics totals of the same tenant/day/source, replaced together with that row.
usage_metrics_ai_models = Table(
    "usage_metrics_ai_models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("date", Date, nullable=False),
    Column("source", String(32), nullable=False),
    Column("model", String(100), nullable=False),
    _count("ai_tokens_in"),
    _count("ai_tokens_out"),
    _count("ai_tokens_cached_in"),
    _count("ai_tokens_cache_write_in"),  # input tokens written to the prompt cache (part of ai_tokens_in)
    UniqueConstraint("tenant_id", "date", "source", "model"),
)


def _rollup_columns(*after_created: Column[Any]) -> list[Column[Any]]:
    """The columns of a rolled-up tenant-day, the same in usage_rollups_daily and usage_rollups_provisional (one
    rollup statement writes both); `after_created` go between `created_at` and the providers' cost columns."""
    return [
        Column("id", Integer, primary_key=True),
        Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
        Column("date", Date, nullable=False),
        # The meters' day totals (and kept-apart parts); a gauge is NULL when no source reported it.
        *(_count(c) for m in METERS if m.kind == "counter" for c in (m.rollup, *m.parts)),
        *(Column(m.rollup, BigInteger, nullable=True) for m in METERS if m.kind == "gauge"),
        *(Column(c, Money, nullable=False, server_default="0") for c in COST_COLUMNS),
        Column("estimated_cost_usd", Money, nullable=False, server_default="0"),
        Column("provider_cost_usd", Money, nullable=True),
        Column("pricing_version", String(64), nullable=False),
        Column("plan_tier", String(16), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        *after_created,
        # Per cost-reporting provider, what a margin needs of the day (meters.SOURCE_COST_COLUMNS): rankings and
        # margins read these, never the raw rows.
        *(
            col
            for _, collected, cost in SOURCE_COST_COLUMNS
            for col in (
                Column(collected, SmallInteger, nullable=False, server_default="0"),
                Column(cost, Money, nullable=True),
            )
        ),
    ]


usage_rollups_daily = Table(
    "usage_rollups_daily",
    metadata,
    *_rollup_columns(),
    UniqueConstraint("tenant_id", "date"),
    Index(None, "date", "tenant_id"),
    # Rollup: MAX(created_at) for "what changed since the last run", and the rows a run just wrote.
    Index(None, "created_at"),
)

# The rollup of a tenant-day that has a provisional raw row (the day in progress): the same columns as
# usage_rollups_daily plus `as_of`, kept apart so that nothing that reads usage_rollups_daily (month totals, plan
# charges, sealing, alerts, exports) can mix it in. The rollup that finds the day final deletes it.
usage_rollups_provisional = Table(
    "usage_rollups_provisional",
    metadata,
    # `as_of`: the oldest as-of of the day's provisional raw rows.
    *_rollup_columns(Column("as_of", UTCDateTime, nullable=False)),
    UniqueConstraint("tenant_id", "date"),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "event_id"),
    Index(None, "tenant_id", "occurred_at"),
)

collection_runs = Table(
    "collection_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=True),
    Column("source", String(32), nullable=False),
    Column("date", Date, nullable=False),
    Column("status", String(16), nullable=False),  # ok | failed (written with the tenant-day it reports on)
    Column("rows_written", Integer, nullable=False, server_default="0"),
    Column("error", Text, nullable=True),  # never a secret: messages are built from provider error bodies
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Index(None, "run_id"),
    Index(None, "tenant_id", "date"),
    # Only the failed rows (few): a margin looks them up for every tenant (reports.queries._failed_only).
    Index(
        "ix_collection_runs_failed",
        "date",
        sqlite_where=text("status = 'failed'"),
        postgresql_where=text("status = 'failed'"),
    ),
    # Only the provisional rows (few): every collect looks them up (collector.provisional_days).
    Index(
        "ix_collection_runs_provisional",
        "date",
        sqlite_where=text("status = 'provisional'"),
        postgresql_where=text("status = 'provisional'"),
    ),
)

# Per directory origin, the digest of the last sync that completed with no bad row (directory.sync_directory): the
# source's rows, the settings that decide the outcome and the directory tables' state after that sync. Equal next
# time: nothing to validate, diff or write.
directory_digests = Table(
    "directory_digests",
    metadata,
    Column("origin", String(16), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)

# One row (id 1): a count of the updates and deletes made to tenants, tenant_plans and tenant_mappings, kept by
# triggers (migration 0012_directory_edits), so an unchanged directory sync notices any edit, by hand too.
directory_changes = Table(
    "directory_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("changes", BigInteger, nullable=False),
)

# Cross-host job lock for SQLite (PostgreSQL uses advisory locks); a row per held lock.
job_locks = Table(
    "job_locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# API bearer tokens for `usagectl serve`: only the SHA-256 of the secret is kept, with a short visible prefix to
# recognise and revoke it. scope "root" has no tenant; scope "tenant" has exactly one.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("token_sha256", String(64), nullable=False),
    Column("scope", String(8), nullable=False),  # root | tenant
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# The pages' sign-in sessions (store/sessions.py): the SHA-256 of a random session id (the id is only in the
# browser's cookie) and the token it was opened with. Signing out deletes the row; a copy of the cookie then opens
# nothing. Expired rows are deleted when the next session is opened.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sid_sha256", String(64), nullable=False, unique=True),
    Column("token_id", Integer, ForeignKey("api_tokens.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "expires_at"),
)

# Allowance and budget alerts (`usagectl alerts`): one row per tenant x period x meter x threshold, ever. The
# unique constraint is what makes a rerun or a second host fire nothing twice (insert-or-ignore). `payload` is the
# exact JSON body, so every retry of a webhook delivery sends the same bytes.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("period", String(7), nullable=False),  # YYYY-MM
    Column("meter", String(32), nullable=False),  # an allowance (sms, emails...) or "budget"
    Column("threshold", String(16), nullable=False),  # percent, canonical Decimal text ("80", "99.5")
    Column("payload", Text, nullable=False),
    # pending: a webhook delivery is owed; sent: delivered; recorded: no webhook was configured when it fired.
    Column("status", String(16), nullable=False),
    Column("fired_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    # A run delivering this alert holds it until then, so two concurrent runs never both POST it.
    Column("claimed_until", UTCDateTime, nullable=True),
    UniqueConstraint("tenant_id", "period", "meter", "threshold"),
    Index(None, "status"),
)

# Every webhook delivery attempt: when, the HTTP status or the error (never the secret), and whether it succeeded.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("success", Boolean, nullable=False),
    Index(None, "attempted_at"),
)

# Sealing (docs/cost-model.md, Sealed days): a day is sealed once it is on or before the largest `sealed_through`.
# Append-only, one row per seal (by hand or by age at rollup): a later seal only ever moves the line forward, and
# two writers never update the same row (both run under the jobs lock anyway).
seals = Table(
    "seals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sealed_through", Date, nullable=False),
    Column("how", String(16), nullable=False),  # manual | age
    Column("sealed_at", UTCDateTime, nullable=False),
    Index(None, "sealed_through"),
)

# What a sealed tenant-day's figures moved by after it was sealed (a late collect, a reprice): the sealed rollup
# row stays as finance saw it, and the difference is shown in the month the adjustment is posted in. One column per
# rollup usage column and cost column, as deltas (negative when the day went down); a gauge's delta is against 0
# when the sealed day had no reading.
usage_adjustments = Table(
    "usage_adjustments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("date", Date, nullable=False),  # the sealed day adjusted
    Column("reason", String(32), nullable=False),  # late-data | reprice
    Column("posted_at", UTCDateTime, nullable=False),
    *(Column(c, BigInteger, nullable=False, server_default="0") for c in ROLLUP_USAGE_COLUMNS),
    *(Column(c, Money, nullable=False, server_default="0") for c in COST_COLUMNS),
    Column("estimated_cost_usd", Money, nullable=False, server_default="0"),
    Column("pricing_version", String(64), nullable=False),
    Index(None, "tenant_id", "date"),
    Index(None, "posted_at"),
)
