"""The queries behind the report objects, over `usage_rollups_daily`: one tenant over a window, the tenants
ranking for a month, and the finance export rows.

Every query is served by an index: one tenant over a date range by UNIQUE(tenant_id, date); all tenants for a
month by the (date, tenant_id) index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import BigInteger, Connection, Date, String, and_, bindparam, cast, func, select, type_coerce

from usagectl.config import Config
from usagectl.errors import InputError, did_you_mean
from usagectl.meters import BY_KEY, COUNTERS, PRICED, RANKED, WITH_ALLOWANCE
from usagectl.money import MICRO, from_micros, round_micro
from usagectl.periods import Window, utc_today
from usagectl.pricing import (
    DayUsage,
    PlanCharge,
    UnitPrices,
    book_segments,
    cost_of_day,
    prices_for,
    prorated_plan_charge,
)
from usagectl.records import ModelTokens
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
    ProviderCosts,
    ProvisionalDay,
    ReconcileLine,
    ReconcileReport,
    TenantInfo,
    TenantLine,
    TenantReport,
    TenantsReport,
    Totals,
)
from usagectl.store.directory import plan_periods
from usagectl.store.engine import Store
from usagectl.store.tables import (
    collection_runs,
    tenants,
    usage_adjustments,
    usage_metrics,
    usage_metrics_ai_models,
    usage_rollups_daily,
    usage_rollups_provisional,
)
from usagectl.store.tenants import TenantRow, get_tenant, tenant_ids

r = usage_rollups_daily.c
um = usage_metrics.c

#: the providers that report what they charged (docs/cost-model.md, "What the provider cost covers"); SendGrid
#: reports no cost, so a margin deducts only these
COST_SOURCES = ("twilio", "openai")


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


# The statements of the month's extra figures, built once with bind parameters (as _TENANT_TOTALS below):
# constructing them per request cost more than running them. Each has an all-tenants and a one-tenant (`tid`) form.
_A = usage_adjustments.c
_ADJUSTMENTS = (
    select(
        _A.posted_at,
        _A.date,
        tenants.c.slug,
        tenants.c.name,
        _A.reason,
        _A.pricing_version,
        *(_A[c] for c in ADJUSTMENT_FIGURES),
    )
    .select_from(usage_adjustments.join(tenants, tenants.c.id == _A.tenant_id))
    .where(
        _A.posted_at >= bindparam("p_start", type_=_A.posted_at.type),
        _A.posted_at < bindparam("p_end", type_=_A.posted_at.type),
    )
    .order_by(_A.posted_at, _A.id)
)
_ADJUSTMENTS_ONE = _ADJUSTMENTS.where(_A.tenant_id == bindparam("tid"))


def _scoped(
    all_tenants: Any, one_tenant: Any, tenant_id: int | None, **params: Any
) -> tuple[Any, dict[str, Any]]:
    """The statement and its parameters for every tenant (`tenant_id` None) or one."""
    if tenant_id is None:
        return all_tenants, params
    return one_tenant, {**params, "tid": tenant_id}


def adjustments_posted(
    conn: Connection, window: Window, tenant_id: int | None = None
) -> tuple[Adjustment, ...]:
    """The adjustments posted in `window` (UTC days of `posted_at`), whatever day they adjust, oldest first."""
    q, params = _scoped(
        _ADJUSTMENTS,
        _ADJUSTMENTS_ONE,
        tenant_id,
        p_start=_midnight(window.start),
        p_end=_midnight(window.end),
    )
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
        for row in conn.execute(q, params)
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


_P = usage_rollups_provisional.c
_PROVISIONAL_DAYS = (
    select(*(_P[c.name] if c.table is usage_rollups_daily else c for c in _DAY_COLUMNS), _P.as_of)
    .select_from(usage_rollups_provisional.join(tenants, tenants.c.id == _P.tenant_id))
    .where(_P.tenant_id == bindparam("tid"), _P.date >= _W_START, _P.date < _W_END)
    .order_by(_P.date)
)


def _provisional(conn: Connection, tenant_id: int, window: Window, today: date) -> tuple[ProvisionalDay, ...]:
    """The tenant's days in progress worth showing with `window`: today, and yesterday while it is not final, when
    the window reaches yesterday (a report of an earlier month has none)."""
    first = max(window.start, today - timedelta(days=1))
    if window.end < today or first > today:
        return ()
    rows = conn.execute(
        _PROVISIONAL_DAYS, _tenant_params(tenant_id, Window(first, today + timedelta(days=1)))
    )
    return tuple(ProvisionalDay(_day_row(row[:-1]), row[-1], row[0] == today) for row in rows)


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
        charge = _plan_charges(conn, cfg, mtd_window, {t.id: t.plan_tier}, tenant_id=t.id)[t.id]
        costs = _provider_costs(conn, mtd_window, tenant_id=t.id).get(t.id, _NO_COSTS)
        adjustments = adjustments_posted(conn, window, t.id)
        provisional = _provisional(conn, t.id, window, today)
    mtd_figures = month_projection(month, as_of, mtd.estimated_cost)
    included: dict[str, int | None] = cfg.plan(t.plan_tier).included.model_dump()
    if charge.parts:
        # A month with a plan change: the allowances its plan charge used, each plan's prorated by its days.
        plans = [cfg.plan(p.plan_tier).included.model_dump() for p in charge.parts]
        by_meter = {line.meter: line.included for line in charge.lines}
        for m in WITH_ALLOWANCE:
            if m.allowance and any(p.get(m.allowance) is not None for p in plans):
                included[m.allowance] = by_meter[m.key]
    allowances = tuple(
        Allowance(metric=key, label=label, included=int(n), used=getattr(mtd, attr))
        for key, label, attr in ALLOWANCE_METRICS
        if (n := included.get(key)) is not None
    )
    return TenantReport(
        tenant=TenantInfo(t.slug, t.name, t.plan_tier),
        window=window,
        days=days,
        totals=totals,
        month_to_date=mtd_figures,
        allowances=allowances,
        generated_at=_now(),
        plan_charge=charge,
        provider_costs=costs,
        adjustments=adjustments,
        provisional=provisional,
        projected_charge=projected_charge(cfg, charge, mtd_figures),
    )


def projected_charge(cfg: Config, charge: PlanCharge, mtd: MonthToDate) -> Decimal | None:
    """The month's plan charge if the rest of it goes at the pace so far (an ESTIMATE): each meter's units so far
    / days elapsed x days in the month (whole units, rounded down); the units above what is already used or
    included are priced at the unit price of the last day counted. None for a month that is over (its charge is
    the actual one) and before MIN_PROJECTION_DAYS days of it."""
    if mtd.complete or not mtd.projection_ready:
        return None
    prices = prices_for(cfg, charge.plan_tier, mtd.as_of)
    extra = Decimal(0)
    for line in charge.lines:
        projected = line.used * mtd.month.days // mtd.elapsed_days
        above = projected - max(line.used, line.included)
        if above > 0:
            extra += above * getattr(prices, BY_KEY[line.meter].unit_price or "")
    return charge.total + round_micro(extra)


_NO_COSTS = ProviderCosts(cost=Decimal("0.000000"), days=0, unknown_days=0)


_PLAN_USAGE = (
    select(r.tenant_id, *(_sum(r[m.rollup]).label(m.key) for m in PRICED))
    .where(r.date >= _W_START, r.date < _W_END)
    .group_by(r.tenant_id)
)
_PLAN_USAGE_ONE = _PLAN_USAGE.where(r.tenant_id == bindparam("tid"))


def _plan_usage(conn: Connection, window: Window, tenant_id: int | None) -> Any:
    """Each tenant's (or one tenant's) sums of the priced meters over `window`."""
    q, params = _scoped(_PLAN_USAGE, _PLAN_USAGE_ONE, tenant_id, w_start=window.start, w_end=window.end)
    return conn.execute(q, params)


def _plan_charges(
    conn: Connection, cfg: Config, window: Window, tiers: dict[int, str], *, tenant_id: int | None = None
) -> dict[int, PlanCharge]:
    """Each tenant's (id -> plan tier now) plan charge over `window` (days of one calendar month), by
    pricing.prorated_plan_charge: the plan periods of the month (tenant_plans; a tenant without any has its plan
    now), the usage of each piece of the window cut where a price book or one of these plans takes effect."""
    month = Window.month(window.start.year, window.start.month)
    periods = plan_periods(conn, month.start, month.end, tenant_id)
    pieces: dict[int, list[tuple[str, Window]]] = {}
    cuts: set[date] = set()
    for tid in tiers:
        found = periods.get(tid)
        if not found:
            pieces[tid] = [(tiers[tid], month)]
            continue
        mine = []
        for p in found:
            start = max(p.start, month.start)
            end = month.end if p.end is None else min(p.end, month.end)
            mine.append((p.plan_tier, Window(start, end)))
            if window.start < start < window.end:
                cuts.add(start)
        # Days of the month before the first period (one recorded by hand from a later day) are on its plan.
        first_tier, first = mine[0]
        mine[0] = (first_tier, Window(month.start, first.end))
        pieces[tid] = mine
    segments: list[Window] = []
    for seg in book_segments(window, cfg.pricing):
        inner = sorted(c for c in cuts if seg.start < c < seg.end)
        edges = [seg.start, *inner, seg.end]
        segments.extend(Window(a, b) for a, b in pairwise(edges))
    usage = [
        {
            row.tenant_id: {m.key: int(row._mapping[m.key]) for m in PRICED}
            for row in _plan_usage(conn, seg, tenant_id)
        }
        for seg in segments
    ]
    out: dict[int, PlanCharge] = {}
    prices: dict[tuple[str, date], UnitPrices] = {}
    for tid in tiers:
        out[tid] = prorated_plan_charge(
            cfg, month, pieces[tid], {seg: usage[i].get(tid, {}) for i, seg in enumerate(segments)}, prices
        )
    return out


_C = collection_runs.c
_FAILED = (
    select(_C.tenant_id, _C.source)
    .distinct()
    .where(
        _C.status == "failed",
        _C.date >= bindparam("w_start", type_=_C.date.type),
        _C.date < bindparam("w_end", type_=_C.date.type),
        _C.source.in_(bindparam("sources", expanding=True)),
    )
)
_FAILED_ONE = _FAILED.where(_C.tenant_id == bindparam("tid"))


def _failed_only(
    conn: Connection, window: Window, sources: tuple[str, ...], tenant_id: int | None
) -> set[tuple[int, str]]:
    """(tenant id, source) pairs with a failed collection in `window`: a provider whose every day failed has no
    `usage_metrics` row, yet the tenant uses it, so its days are unknown, not absent."""
    q, params = _scoped(
        _FAILED, _FAILED_ONE, tenant_id, w_start=window.start, w_end=window.end, sources=list(sources)
    )
    return {(row.tenant_id, row.source) for row in conn.execute(q, params) if row.tenant_id is not None}


_COSTS = (
    select(
        um.tenant_id,
        um.source,
        func.count(um.provider_cost_usd).label("known"),
        cast(func.sum(um.provider_cost_usd.cast(BigInteger)), BigInteger).label("cost"),
    )
    .where(
        um.date >= bindparam("w_start", type_=um.date.type),
        um.date < bindparam("w_end", type_=um.date.type),
        um.source.in_(COST_SOURCES),
    )
    .group_by(um.tenant_id, um.source)
)
_COSTS_ONE = _COSTS.where(um.tenant_id == bindparam("tid"))


def _provider_costs(
    conn: Connection, window: Window, *, tenant_id: int | None = None
) -> dict[int, ProviderCosts]:
    """Per tenant, what the cost-reporting providers it used in `window` said they charged, from the raw
    `usage_metrics` rows (one per tenant, day and source): a day without a row or without a cost is unknown. A
    provider counts as used when it has a row or a failed collection in the window."""
    q, params = _scoped(_COSTS, _COSTS_ONE, tenant_id, w_start=window.start, w_end=window.end)
    # tenant id -> source -> (known days, cost in micro-USD)
    found: dict[int, dict[str, tuple[int, int]]] = {}
    for row in conn.execute(q, params):
        found.setdefault(row.tenant_id, {})[row.source] = (int(row.known), int(row.cost or 0))
    for tid, source in _failed_only(conn, window, COST_SOURCES, tenant_id):
        found.setdefault(tid, {}).setdefault(source, (0, 0))
    out: dict[int, ProviderCosts] = {}
    for tid, per_source in found.items():
        out[tid] = ProviderCosts(
            cost=sum((from_micros(cost) for _, cost in per_source.values()), Decimal("0.000000")),
            days=window.days * len(per_source),
            unknown_days=sum(window.days - known for known, _ in per_source.values()),
            sources=tuple(sorted(per_source)),
        )
    return out


def through_yesterday(month: Window, today: date) -> Window:
    """The days of `month` that are over (through yesterday, UTC): what a month-to-date figure covers."""
    last = min(month.last, today - timedelta(days=1))
    return month if last < month.start else Window(month.start, last + timedelta(days=1))


def _by_usage(field: str) -> Callable[[TenantLine], tuple[int, str]]:
    return lambda line: (-getattr(line, field), line.slug)


def _by_money(
    get: Callable[[TenantLine], Decimal | None],
) -> Callable[[TenantLine], tuple[bool, Decimal, str]]:
    # Highest first; an unknown figure (an incomplete margin) after every known one.
    def key(line: TenantLine) -> tuple[bool, Decimal, str]:
        value = get(line)
        return (value is None, -(value or Decimal(0)), line.slug)

    return key


_SORTS: dict[str, Any] = {
    "cost": lambda line: (-line.estimated_cost, line.slug),
    **{m.key: _by_usage(m.total) for m in RANKED if m.total},
    "plan_charge": _by_money(lambda line: line.plan_charge.total if line.plan_charge else None),
    "margin": _by_money(lambda line: line.margin),
    "name": lambda line: (line.name.lower(), line.slug),
}
assert tuple(_SORTS) == SORT_KEYS
# The ranking's usage columns: (rollup column, TenantLine field) per ranked meter.
_RANKED = tuple((m.rollup, m.total) for m in RANKED if m.total)
assert {field for _, field in _RANKED} <= set(TenantLine.__dataclass_fields__)


def tenants_report(
    store: Store,
    month: Window,
    *,
    sort: str = "cost",
    limit: int | None = None,
    cfg: Config | None = None,
    today: date | None = None,
) -> TenantsReport:
    """Every tenant for a month (zeros when it has no usage), sorted highest first, with a total over all. With
    `cfg`, each line has its plan charge and, where the providers' costs are complete, its margin (over the days
    of the month that are over)."""
    if sort in ("plan_charge", "margin") and cfg is None:
        raise InputError(f"--sort {sort} needs the config's plans")
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
                tenants.c.id,
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
        charges: dict[int, PlanCharge] = {}
        costs: dict[int, ProviderCosts] = {}
        if cfg is not None:
            # Both sides of the margin over the same days: the days of the month that are over.
            done = through_yesterday(month, today or utc_today())
            charges = _plan_charges(conn, cfg, done, {row.id: row.plan_tier for row in rows})
            costs = _provider_costs(conn, done)
    lines = [
        TenantLine(
            slug=row.slug,
            name=row.name,
            plan_tier=row.plan_tier,
            active=bool(row.active),
            **{field: int(row._mapping[field] or 0) for _, field in _RANKED},
            estimated_cost=from_micros(int(row.cost or 0)),
            provider_cost=None if row.provider_cost is None else from_micros(int(row.provider_cost)),
            plan_charge=charges.get(row.id),
            provider_costs=costs.get(row.id, _NO_COSTS) if cfg is not None else None,
        )
        for row in rows
        # A tenant removed from the config is listed only for months it has usage in.
        if row.active or row.cost is not None
    ]
    lines.sort(key=_SORTS[sort])
    margins = [line.margin for line in lines]
    return TenantsReport(
        month=month,
        sort=sort,
        lines=tuple(lines[:limit] if limit else lines),
        total=total,
        tenant_count=len(lines),
        generated_at=_now(),
        plan_charge_total=sum(
            (line.plan_charge.total for line in lines if line.plan_charge), Decimal("0.000000")
        ),
        margin_total=(
            sum((m for m in margins if m is not None), Decimal("0.000000"))
            if cfg is not None and lines and None not in margins
            else None
        ),
    )


def whole_months(window: Window) -> list[Window]:
    """The calendar months lying wholly inside `window`, oldest first."""
    out = []
    d = window.start
    while d < window.end:
        month = Window.month(d.year, d.month)
        if month.start >= window.start and month.end <= window.end:
            out.append(month)
        d = month.end
    return out


def export_rows(
    store: Store, window: Window, tenant: str | None = None, *, batch: int = 1000, cfg: Config | None = None
) -> ExportReport:
    """Tenant x day rows of `window` (optionally one tenant), streamed with a server-side cursor in batches:
    memory stays constant however many rows there are. Ordered by date, then tenant id (the index order). With
    `cfg`, the plan charge of each tenant and calendar month wholly inside the window."""
    tenant_id: int | None = None
    charges: list[tuple[str, str, PlanCharge]] = []
    with store.engine.connect() as conn:
        if tenant is not None:
            tenant_id = _tenant(conn, tenant).id
        adjustments = adjustments_posted(conn, window, tenant_id)
        if cfg is not None:
            q = select(tenants.c.id, tenants.c.slug, tenants.c.plan_tier, tenants.c.active).order_by(
                tenants.c.slug
            )
            if tenant_id is not None:
                q = q.where(tenants.c.id == tenant_id)
            people = conn.execute(q).all()
            for month in whole_months(window):
                used = {row.tenant_id for row in _plan_usage(conn, month, tenant_id)}
                # As in `tenants`: a tenant removed from the config only for months it has usage in.
                tiers = {p.id: p.plan_tier for p in people if p.active or p.id in used}
                got = _plan_charges(conn, cfg, month, tiers, tenant_id=tenant_id)
                key = month.start.strftime("%Y-%m")
                charges.extend((key, p.slug, got[p.id]) for p in people if p.id in got)

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
        plan_charges=tuple(charges),
        adjustments=adjustments,
    )


def _day_usage(row: Any, models: tuple[ModelTokens, ...]) -> DayUsage:
    """A `usage_metrics` row's priced usage: a meter kept in parts (AI in/out) by its parts, the others summed."""
    got = row._mapping
    values: dict[str, int] = {}
    for m in PRICED:
        if m.parts:
            values.update((part, int(got[part])) for part in m.parts)
        else:
            values[m.total or ""] = sum(int(got[c]) for c in m.raw)
    return DayUsage(**values, ai_by_model=models)


assert all(p in DayUsage.__dataclass_fields__ for m in PRICED for p in (m.parts or (m.total,)))


def reconcile_report(
    store: Store,
    cfg: Config,
    month: Window,
    sources: Iterable[str],
    *,
    tenant: str | None = None,
    today: date | None = None,
) -> ReconcileReport:
    """Per tenant and provider (`sources`), over the days of `month` that are over: the usage the provider
    reported, our estimate of its cost (each source-day priced like a rollup, with the book of the day and the
    plan the day was rolled up with, else the tenant's plan now) and the cost it reported, with the days it
    reported none."""
    wanted = tuple(sources)
    done = through_yesterday(month, today or utc_today())
    a = usage_metrics_ai_models.c
    with store.engine.connect() as conn:
        tenant_id = _tenant(conn, tenant).id if tenant is not None else None
        where = [um.date >= done.start, um.date < done.end, um.source.in_(wanted)]
        if tenant_id is not None:
            where.append(um.tenant_id == tenant_id)
        rows = conn.execute(
            select(
                um.tenant_id,
                um.date,
                um.source,
                *(um[c] for m in PRICED for c in m.raw),
                um.provider_cost_usd,
                func.coalesce(r.plan_tier, tenants.c.plan_tier).label("plan_tier"),
            )
            .select_from(
                usage_metrics.join(tenants, tenants.c.id == um.tenant_id).outerjoin(
                    usage_rollups_daily, and_(r.tenant_id == um.tenant_id, r.date == um.date)
                )
            )
            .where(*where)
        ).all()
        model_rows = conn.execute(
            select(
                a.tenant_id,
                a.date,
                a.source,
                a.model,
                a.ai_tokens_in,
                a.ai_tokens_out,
                a.ai_tokens_cached_in,
                a.ai_tokens_cache_write_in,
            )
            .where(a.date >= done.start, a.date < done.end, a.source.in_(wanted))
            .where(*([a.tenant_id == tenant_id] if tenant_id is not None else []))
        ).all()
        people = conn.execute(select(tenants.c.id, tenants.c.slug, tenants.c.name, tenants.c.active)).all()
        failed = _failed_only(conn, done, wanted, tenant_id)
    models: dict[tuple[int, date, str], list[ModelTokens]] = {}
    for x in model_rows:
        models.setdefault((x.tenant_id, x.date, x.source), []).append(
            ModelTokens(
                x.model,
                int(x.ai_tokens_in),
                int(x.ai_tokens_out),
                int(x.ai_tokens_cached_in),
                int(x.ai_tokens_cache_write_in),
            )
        )
    acc: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        usage = _day_usage(row, tuple(models.get((row.tenant_id, row.date, row.source), ())))
        cost = cost_of_day(usage, prices_for(cfg, row.plan_tier, row.date)).total
        got = acc.setdefault(
            (row.tenant_id, row.source),
            {
                "usage": dict.fromkeys((m.key for m in PRICED), 0),
                "est": Decimal("0.000000"),
                "cost": None,
                "known": 0,
            },
        )
        for m in PRICED:
            got["usage"][m.key] += getattr(usage, m.total or "")
        got["est"] += cost
        if row.provider_cost_usd is not None:
            got["known"] += 1
            got["cost"] = (got["cost"] or Decimal("0.000000")) + row.provider_cost_usd
    lines = []
    for tid, slug, name, active in sorted(people, key=lambda p: p.slug):
        if tenant_id is not None and tid != tenant_id:
            continue
        used = [s for s in wanted if (tid, s) in acc or (tid, s) in failed]
        if not used and not active:
            continue
        for source in used:
            # A provider whose every day failed: no usage known, its cost unknown on every day.
            got = acc.get((tid, source)) or {
                "usage": dict.fromkeys((m.key for m in PRICED), 0),
                "est": Decimal("0.000000"),
                "cost": None,
                "known": 0,
            }
            lines.append(
                ReconcileLine(
                    tenant=slug,
                    tenant_name=name,
                    provider=source,
                    usage=got["usage"],
                    estimated_cost=got["est"],
                    provider_cost=got["cost"],
                    days=done.days,
                    unknown_days=done.days - got["known"],
                )
            )
    return ReconcileReport(month=month, as_of=done.last, lines=tuple(lines), generated_at=_now())
