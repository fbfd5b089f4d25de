"""Writing raw metrics: one row per tenant x day x source, replaced whole on re-collection."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, delete, insert, select, update

from usagectl.pricing import round_micro
from usagectl.providers.base import MetricRow
from usagectl.store.tables import usage_metrics, usage_metrics_ai_models, utcnow


def upsert_metric(conn: Connection, tenant_id: int, day: date, source: str, row: MetricRow) -> None:
    """Replace the (tenant, day, source) row and its per-model AI rows. Call inside the caller's transaction,
    one tenant-day per transaction, so a failure leaves the previous row intact."""
    now = utcnow()
    key = (
        (usage_metrics.c.tenant_id == tenant_id)
        & (usage_metrics.c.date == day)
        & (usage_metrics.c.source == source)
    )
    cost = row.provider_cost_usd
    if cost is not None:
        # Providers report amounts finer than we store (OpenAI sends long floats): round half-up to the micro-dollar.
        cost = round_micro(cost)
    values = {**row.counts(), "provider_cost_usd": cost, "updated_at": now}
    # A portable upsert: update, insert when nothing matched. The unique key makes a racing second insert fail
    # (and its transaction roll back) instead of double counting.
    existing = conn.execute(select(usage_metrics.c.id).where(key)).scalar()
    if existing is None:
        conn.execute(
            insert(usage_metrics).values(
                tenant_id=tenant_id, date=day, source=source, created_at=now, **values
            )
        )
    else:
        conn.execute(update(usage_metrics).where(usage_metrics.c.id == existing).values(**values))
    m = usage_metrics_ai_models.c
    conn.execute(
        delete(usage_metrics_ai_models).where(
            (m.tenant_id == tenant_id) & (m.date == day) & (m.source == source)
        )
    )
    if row.ai_models:
        conn.execute(
            insert(usage_metrics_ai_models),
            [
                {
                    "tenant_id": tenant_id,
                    "date": day,
                    "source": source,
                    "model": t.model,
                    "ai_tokens_in": t.tokens_in,
                    "ai_tokens_out": t.tokens_out,
                    "ai_tokens_cached_in": t.cached_in,
                }
                for t in row.ai_models
            ],
        )
