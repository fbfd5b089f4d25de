"""The "events" source: a tenant's internal usage events of a UTC day, read back from `usage_events`.

`jobs_executed` (a counter) is the day's sum; `storage_bytes` (a gauge) the day's last reading by `occurred_at`,
ties broken by event id then source (bytewise on both backends), or None when the day has none. Other declared
metrics stay in `usage_events` only: usage_metrics has no column for them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Date, Select, and_, cast, func, literal_column, select

from usagectl.config import Config, TenantConfig
from usagectl.periods import Window
from usagectl.providers.base import Provider
from usagectl.records import MetricRow, ProviderError
from usagectl.store.engine import Store
from usagectl.store.tables import tenants, usage_events

COUNTER = "jobs_executed"
GAUGE = "storage_bytes"


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


class EventsProvider:
    source = "events"

    def __init__(self, store: Store) -> None:
        self.store = store
        # Tenants that ever sent an event: only they get an `events` row per day (zeros on quiet days), so a
        # platform that never pushes events does not grow usage_metrics by a row per tenant-day.
        with store.engine.connect() as conn:
            self._senders = set(
                conn.execute(
                    # One index probe per tenant (usage_events is indexed by tenant_id, occurred_at).
                    select(tenants.c.slug).where(
                        select(usage_events.c.id).where(usage_events.c.tenant_id == tenants.c.id).exists()
                    )
                ).scalars()
            )

    def applies_to(self, tenant: TenantConfig) -> bool:
        return tenant.slug in self._senders

    def _day_expr(self) -> Any:
        e = usage_events.c
        if self.store.dialect == "sqlite":
            # occurred_at is stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC): its first ten characters.
            return func.substr(e.occurred_at, 1, 10)
        return cast(func.timezone("UTC", e.occurred_at), Date)

    def _event_id_key(self) -> Any:
        e = usage_events.c
        return e.event_id if self.store.dialect == "sqlite" else e.event_id.collate("C")

    def _source_key(self) -> Any:
        e = usage_events.c
        return e.source if self.store.dialect == "sqlite" else e.source.collate("C")

    def collect_days(self, tenant: TenantConfig, window: Window) -> dict[date, MetricRow]:
        """Every day of the window, from two aggregate queries (counter sums, last gauge per day)."""
        e = usage_events.c
        try:
            with self.store.engine.connect() as conn:
                tenant_id = conn.execute(select(tenants.c.id).where(tenants.c.slug == tenant.slug)).scalar()
                if tenant_id is None:
                    raise ProviderError(f"tenant {tenant.slug!r} is not in the database")
                span = and_(
                    e.tenant_id == tenant_id,
                    e.occurred_at >= _start(window.start),
                    e.occurred_at < _start(window.end),
                )
                day_col = self._day_expr().label("day")
                sums = conn.execute(
                    select(day_col, func.sum(e.value))
                    .where(span, e.metric == COUNTER)
                    .group_by(literal_column("day"))
                ).all()
                ranked: Select[Any] = select(
                    day_col,
                    e.value,
                    func.row_number()
                    .over(
                        partition_by=self._day_expr(),
                        order_by=(
                            e.occurred_at.desc(),
                            self._event_id_key().desc(),
                            self._source_key().desc(),
                        ),
                    )
                    .label("rn"),
                ).where(span, e.metric == GAUGE)
                sub = ranked.subquery()
                gauges = conn.execute(select(sub.c.day, sub.c.value).where(sub.c.rn == 1)).all()
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"reading usage_events: {type(exc).__name__}: {exc}") from exc
        jobs = {_as_date(d): int(v) for d, v in sums}
        storage = {_as_date(d): int(v) for d, v in gauges}
        return {d: MetricRow(jobs_executed=jobs.get(d, 0), storage_bytes=storage.get(d)) for d in window}

    def close(self) -> None:
        return None


def _as_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def make(cfg: Config, store: Store) -> Provider:
    return EventsProvider(store)
