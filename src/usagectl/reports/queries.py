"""The queries behind the report objects, over `usage_rollups_daily`: one tenant over a window, the tenants
ranking for a month, and the finance export rows.

Every query is served by an index: one tenant over a date range by UNIQUE(tenant_id, date); all tenants for a
month by the (date, tenant_id) index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, Connection, Date, String, and_, bindparam, cast, func, select, type_coerce

from usagectl.config import Config
from usagectl.errors import InputError, did_you_mean
from usagectl.meters import COUNTERS, PRICED, RANKED, WITH_ALLOWANCE
from usagectl.money import MICRO, from_micros
from usagectl.periods import Window, utc_today
from usagectl.reports.objects import (
    ADJUSTMENT_FIGURES,
    EXPORT_COLUMNS,
    KEY_COLUMNS,
    MONEY_COLUMNS,
    SORT_KEYS,
    Adjustment,
    Allowance,
    DayRow,
    ExportReport,
    MonthToDate,
    TenantInfo,
    TenantLine,
    TenantReport,
    TenantsReport,
    Totals,
)
from usagectl.store.engine import Store
from usagectl.store.tables import tenants, usage_adjustments, usage_rollups_daily
from usagectl.store.tenants import TenantRow, get_tenant, tenant_ids

r = usage_rollups_daily.c


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def unknown_tenant(slug: str, known: Iterable[str] = ()) -> InputError:
    return InputError(f"unknown tenant {slug!r}{did_you_mean(slug, known)}; `usagectl tenants` lists them")


def _tenant(conn: Connection, slug: str) -> TenantRow:
    t = get_tenant(conn, slug)
    if t is None:
        raise unknown_tenant(slug, tenant_ids(conn))
    return t


_DAY_COLUMNS = (
    r.date,
    tenants.c.slug.label("tenant"),
    tenants.c.name.label("tenant_name"),
    r.plan_tier,
    r.pricing_version,
    *(r[c] for c in EXPORT_COLUMNS[len(KEY_COLUMNS) :]),
)


def _day_row(row: Any) -> DayRow:
    # _DAY_COLUMNS is in EXPORT_COLUMNS order (checked at import): positional is much faster for big exports.
    return DayRow(*row)


assert tuple(c.name for c in _DAY_COLUMNS) == EXPORT_COLUMNS

# The same columns without result conversion: money stays integer micro-USD, SQLite's date stays ISO text.
_RAW_DAY_COLUMNS = tuple(
    type_coerce(c, BigInteger).label(c.name)
    if c.name in MONEY_COLUMNS
    else type_coerce(c, String).label(c.name)
    if c.name == "date"
    else c
    for c in _DAY_COLUMNS
)


def _in(window: Window) -> Any:
    return and_(r.date >= window.start, r.date < window.end)


def _sum(col: Any) -> Any:
    # PostgreSQL's SUM(bigint) is NUMERIC; keep integers integers.
    return cast(func.coalesce(func.sum(col), 0), BigInteger)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def adjustments_posted(
    conn: Connection, window: Window, tenant_id: int | None = None
) -> tuple[Adjustment, ...]:
    """The adjustments posted in `window` (UTC days of `posted_at`), whatever day they adjust, oldest first."""
    a = usage_adjustments.c
    q = (
        select(
            a.posted_at,
            a.date,
            tenants.c.slug,
            tenants.c.name,
            a.reason,
            a.pricing_version,
            *(a[c] for c in ADJUSTMENT_FIGURES),
        )
        .select_from(usage_adjustments.join(tenants, tenants.c.id == a.tenant_id))
        .where(a.posted_at >= _midnight(window.start), a.posted_at < _midnight(window.end))
        .order_by(a.posted_at, a.id)
    )
    if tenant_id is not None:
        q = q.where(a.tenant_id == tenant_id)
    return tuple(
        Adjustment(
            posted_at=row[0],
            date=row[1],
            tenant=row[2],
            tenant_name=row[3],
            reason=row[4],
            pricing_version=row[5],
            figures=tuple(row[6:]),
        )
        for row in conn.execute(q)
    )


# Each label is the Totals field it fills.
_TOTAL_COUNTS = tuple((m.rollup, m.total) for m in COUNTERS if m.total is not None)
_TOTAL_COSTS = tuple((m.cost_column, f"{m.key}_cost") for m in PRICED)
assert {field for _, field in (*_TOTAL_COUNTS, *_TOTAL_COSTS)} <= set(Totals.__dataclass_fields__)
_TOTALS_SELECT = select(
    *(_sum(r[column]).label(field) for column, field in _TOTAL_COUNTS),
    *(_sum(r[column]).label(field) for column, field in _TOTAL_COSTS),
    _sum(r.estimated_cost_usd).label("estimated_cost"),
    # NULL when no day had a provider cost: unknown, not $0.
    cast(func.sum(r.provider_cost_usd.cast(BigInteger)), BigInteger).label("provider_cost"),
)


def _totals_query(window: Window) -> Any:
    return _TOTALS_SELECT.where(_in(window))


# One tenant's totals over a window, built once: constructing the SUM()s per request cost more than running them.
_W_START = bindparam("w_start", type_=Date)
_W_END = bindparam("w_end", type_=Date)
_TENANT_TOTALS = _TOTALS_SELECT.where(r.tenant_id == bindparam("tid"), r.date >= _W_START, r.date < _W_END)
_TENANT_DAYS = (
    select(*_DAY_COLUMNS)
    .select_from(usage_rollups_daily.join(tenants, tenants.c.id == r.tenant_id))
    .where(r.tenant_id == bindparam("tid"), r.date >= _W_START, r.date < _W_END)
    .order_by(r.date)
)


def _tenant_params(tenant_id: int, window: Window) -> dict[str, Any]:
    return {"tid": tenant_id, "w_start": window.start, "w_end": window.end}


def _totals(row: Any) -> Totals:
    got = row._mapping
    values: dict[str, Any] = {field: int(got[field]) for _, field in _TOTAL_COUNTS}
    values.update((field, from_micros(int(got[field]))) for _, field in _TOTAL_COSTS)
    provider_cost = got["provider_cost"]
    return Totals(
        **values,
        estimated_cost=from_micros(int(got["estimated_cost"])),
        provider_cost=None if provider_cost is None else from_micros(int(provider_cost)),
    )


# (allowance key, label, Totals field of the month's use) per meter with a plan allowance.
ALLOWANCE_METRICS = tuple((m.allowance, m.label, m.total) for m in WITH_ALLOWANCE if m.allowance and m.total)


def month_projection(month: Window, as_of: date, cost: Decimal) -> MonthToDate:
    elapsed = (as_of - month.start).days + 1
    complete = as_of >= month.last
    projected = cost if complete else (cost * month.days / elapsed).quantize(MICRO, rounding=ROUND_HALF_UP)
    return MonthToDate(month=month, as_of=as_of, cost=cost, projected_cost=projected, complete=complete)


def tenant_report(
    store: Store, cfg: Config, slug: str, window: Window, *, today: date | None = None
) -> TenantReport:
    """One tenant over `window`: daily rows, totals, month-to-date with a projection, plan allowances."""
    today = today or utc_today()
    # Month-to-date runs through the last complete UTC day: today is still being collected.
    as_of = min(window.last, today - timedelta(days=1))
    if as_of < window.start:
        as_of = window.last
    month = Window.month(as_of.year, as_of.month)
    mtd_window = Window(month.start, as_of + timedelta(days=1))
    with store.engine.connect() as conn:
        t = _tenant(conn, slug)
        days = tuple(_day_row(row) for row in conn.execute(_TENANT_DAYS, _tenant_params(t.id, window)))
        totals = _totals(conn.execute(_TENANT_TOTALS, _tenant_params(t.id, window)).one())
        mtd = _totals(conn.execute(_TENANT_TOTALS, _tenant_params(t.id, mtd_window)).one())
        adjustments = adjustments_posted(conn, window, t.id)
    included = cfg.plan(t.plan_tier).included
    allowances = tuple(
        Allowance(metric=key, label=label, included=getattr(included, key), used=getattr(mtd, attr))
        for key, label, attr in ALLOWANCE_METRICS
        if getattr(included, key) is not None
    )
    return TenantReport(
        tenant=TenantInfo(t.slug, t.name, t.plan_tier),
        window=window,
        days=days,
        totals=totals,
        month_to_date=month_projection(month, as_of, mtd.estimated_cost),
        allowances=allowances,
        generated_at=_now(),
        adjustments=adjustments,
    )


def _by_usage(field: str) -> Callable[[TenantLine], tuple[int, str]]:
    return lambda line: (-getattr(line, field), line.slug)


_SORTS: dict[str, Any] = {
    "cost": lambda line: (-line.estimated_cost, line.slug),
    **{m.key: _by_usage(m.total) for m in RANKED if m.total},
    "name": lambda line: (line.name.lower(), line.slug),
}
assert tuple(_SORTS) == SORT_KEYS
# The ranking's usage columns: (rollup column, TenantLine field) per ranked meter.
_RANKED = tuple((m.rollup, m.total) for m in RANKED if m.total)
assert {field for _, field in _RANKED} <= set(TenantLine.__dataclass_fields__)


def tenants_report(
    store: Store, month: Window, *, sort: str = "cost", limit: int | None = None
) -> TenantsReport:
    """Every tenant for a month (zeros when it has no usage), sorted highest first, with a total over all."""
    if sort not in _SORTS:
        raise InputError(f"--sort: {sort!r} is not one of {', '.join(SORT_KEYS)}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    per_tenant = (
        select(
            r.tenant_id,
            *(_sum(r[column]).label(field) for column, field in _RANKED),
            _sum(r.estimated_cost_usd).label("cost"),
            cast(func.sum(r.provider_cost_usd.cast(BigInteger)), BigInteger).label("provider_cost"),
        )
        .where(_in(month))
        .group_by(r.tenant_id)
        .subquery("m")
    )
    m = per_tenant.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            # Only the columns a line shows: converting every tenant's created_at/updated_at is wasted work.
            select(
                tenants.c.slug,
                tenants.c.name,
                tenants.c.plan_tier,
                tenants.c.active,
                *(m[field] for _, field in _RANKED),
                m.cost,
                m.provider_cost,
            ).select_from(tenants.outerjoin(per_tenant, m.tenant_id == tenants.c.id))
        ).all()
        total = _totals(conn.execute(_totals_query(month)).one())
    lines = [
        TenantLine(
            slug=row.slug,
            name=row.name,
            plan_tier=row.plan_tier,
            active=bool(row.active),
            **{field: int(row._mapping[field] or 0) for _, field in _RANKED},
            estimated_cost=from_micros(int(row.cost or 0)),
            provider_cost=None if row.provider_cost is None else from_micros(int(row.provider_cost)),
        )
        for row in rows
        # A tenant removed from the config is listed only for months it has usage in.
        if row.active or row.cost is not None
    ]
    lines.sort(key=_SORTS[sort])
    return TenantsReport(
        month=month,
        sort=sort,
        lines=tuple(lines[:limit] if limit else lines),
        total=total,
        tenant_count=len(lines),
        generated_at=_now(),
    )


def export_rows(
    store: Store, window: Window, tenant: str | None = None, *, batch: int = 1000
) -> ExportReport:
    """Tenant x day rows of `window` (optionally one tenant), streamed with a server-side cursor in batches:
    memory stays constant however many rows there are. Ordered by date, then tenant id (the index order)."""
    tenant_id: int | None = None
    with store.engine.connect() as conn:
        if tenant is not None:
            tenant_id = _tenant(conn, tenant).id
        adjustments = adjustments_posted(conn, window, tenant_id)

    def query(columns: Any) -> Any:
        q = select(*columns).select_from(usage_rollups_daily.join(tenants, tenants.c.id == r.tenant_id))
        q = q.where(_in(window))
        if tenant_id is not None:
            return q.where(r.tenant_id == tenant_id).order_by(r.date)
        return q.order_by(r.date, r.tenant_id)

    def stream(q: Any) -> Iterator[Any]:
        with store.engine.connect() as conn:
            yield from conn.execution_options(stream_results=True, yield_per=batch).execute(q)

    def rows() -> Iterator[DayRow]:
        for row in stream(query(_DAY_COLUMNS)):
            yield _day_row(row)

    def raw_rows() -> Iterator[tuple[Any, ...]]:
        # Per-row type conversion (Money -> Decimal, text -> date) dominated a CSV export's time
        # (docs/performance.md, Design decisions).
        yield from stream(query(_RAW_DAY_COLUMNS))

    return ExportReport(
        window=window,
        tenant=tenant,
        generated_at=_now(),
        rows=rows(),
        raw_rows=raw_rows,
        adjustments=adjustments,
    )
