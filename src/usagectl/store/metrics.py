"""Writing raw metrics: one row per tenant x day x source, replaced whole on re-collection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert

from usagectl.money import round_micro
from usagectl.records import MetricRow
from usagectl.store.tables import METRIC_COLUMNS, usage_metrics, usage_metrics_ai_models, utcnow

_UPDATED = (*METRIC_COLUMNS, "storage_bytes", "provider_cost_usd", "updated_at", "as_of")


@cache
def _statements(dialect: str) -> tuple[Any, Any, Any]:
    """Built once per dialect and executed with parameters: building and cache-keying a fresh upsert per
    tenant-day cost more CPU than the write itself (bench/bench_collect.py)."""
    from sqlalchemy.dialects import postgresql, sqlite

    ins: Any = (postgresql if dialect == "postgresql" else sqlite).insert(usage_metrics)
    # One native upsert (SQLite and PostgreSQL both have ON CONFLICT): the unique key makes a racing writer
    # update the same row instead of double counting.
    upsert = ins.on_conflict_do_update(
        index_elements=[usage_metrics.c.tenant_id, usage_metrics.c.date, usage_metrics.c.source],
        set_={k: ins.excluded[k] for k in _UPDATED},
    )
    m = usage_metrics_ai_models.c
    clear_models = delete(usage_metrics_ai_models).where(
        (m.tenant_id == bindparam("k_tenant"))
        & (m.date == bindparam("k_date"))
        & (m.source == bindparam("k_source"))
    )
    return upsert, clear_models, insert(usage_metrics_ai_models)


def upsert_metric(
    conn: Connection, tenant_id: int, day: date, source: str, row: MetricRow, *, as_of: datetime | None = None
) -> None:
    """Replace the (tenant, day, source) row and its per-model AI rows. Call inside the caller's transaction,
    so a failure leaves the previous row intact. `as_of`: the row is the day in progress as of then
    (provisional); None: final."""
    upsert_metrics(conn, [(tenant_id, day, source, row, as_of)])


MetricWrite = tuple[int, date, str, MetricRow, datetime | None]  # tenant id, day, source, row, as_of


def upsert_metrics(conn: Connection, writes: Sequence[MetricWrite]) -> None:
    """`upsert_metric` for many tenant-days in the caller's transaction, as one executemany per statement: a
    statement per tenant-day cost more CPU in SQLAlchemy's execution than SQLite spent writing the rows."""
    if not writes:
        return
    upsert, clear_models, insert_models = _statements(conn.dialect.name)
    now = utcnow()
    metrics: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    for tenant_id, day, source, row, as_of in writes:
        cost = row.provider_cost_usd
        if cost is not None:
            # Providers report amounts finer than we store (OpenAI sends long floats): round half-up to the
            # micro-dollar.
            cost = round_micro(cost)
        metrics.append(
            {
                "tenant_id": tenant_id,
                "date": day,
                "source": source,
                **row.counts(),
                "provider_cost_usd": cost,
                "created_at": now,
                "updated_at": now,
                "as_of": as_of,
            }
        )
        models.extend(
            {
                "tenant_id": tenant_id,
                "date": day,
                "source": source,
                "model": t.model,
                "ai_tokens_in": t.tokens_in,
                "ai_tokens_out": t.tokens_out,
                "ai_tokens_cached_in": t.cached_in,
                "ai_tokens_cache_write_in": t.cache_write_in,
            }
            for t in row.ai_models
        )
    conn.execute(upsert, metrics)
    conn.execute(
        clear_models, [{"k_tenant": t, "k_date": d, "k_source": src} for t, d, src, _row, _as_of in writes]
    )
    if models:
        conn.execute(insert_models, models)
