"""The queries behind the report objects, over `usage_rollups_daily`: one tenant over a window, the tenants
ranking for a month, and the finance export rows.

Every query is served by an index: one tenant over a date range by UNIQUE(tenant_id, date); all tenants for a
month by the (date, tenant_id) index.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)

from usagectl.config import Config
from usagectl.errors import InputError, did_you_mean
from usagectl.meters import (
    BY_KEY,
    COST_SOURCES,
    COUNTERS,
    PRICED,
    RANKED,
    SOURCE_COST_COLUMNS,
    WITH_ALLOWANCE,
)
from usagectl.money import MICRO, PICOS_PER_MICRO, from_micros, round_micro, to_micros, to_picos
from usagectl.periods import Window, utc_today
from usagectl.pricing import (
    DayUsage,
    PlanCharge,
    UnitPrices,
    book_segments,
    cost_of_day,
    plan_tiers,
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
    Subtotal,
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
_PLAN_USAGE_IN = _PLAN_USAGE.where(r.tenant_id.in_(bindparam("tids", expanding=True)))


def _plan_usage(
    conn: Connection, window: Window, tenant_id: int | None, tenant_ids: Sequence[int] | None = None
) -> Any:
    """Each tenant's (or one tenant's, or some tenants') sums of the priced meters over `window`."""
    q, params = _scoped_in(
        _PLAN_USAGE,
        _PLAN_USAGE_ONE,
        _PLAN_USAGE_IN,
        tenant_id,
        tenant_ids,
        w_start=window.start,
        w_end=window.end,
    )
    return conn.execute(q, params)


def _plan_charges(
    conn: Connection,
    cfg: Config,
    window: Window,
    tiers: dict[int, str],
    *,
    tenant_id: int | None = None,
    tenant_ids: Sequence[int] | None = None,
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
            for row in _plan_usage(conn, seg, tenant_id, tenant_ids)
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
_FAILED_IN = _FAILED.where(_C.tenant_id.in_(bindparam("tids", expanding=True)))


def _scoped_in(
    all_tenants: Any,
    one_tenant: Any,
    some_tenants: Any,
    tenant_id: int | None,
    tenant_ids: Sequence[int] | None,
    **params: Any,
) -> tuple[Any, dict[str, Any]]:
    """As `_scoped`, and a third form for a list of tenants (`tenant_ids`: a page of a ranking)."""
    if tenant_ids is not None:
        return some_tenants, {**params, "tids": list(tenant_ids)}
    return _scoped(all_tenants, one_tenant, tenant_id, **params)


def _failed_only(
    conn: Connection,
    window: Window,
    sources: tuple[str, ...],
    tenant_id: int | None,
    tenant_ids: Sequence[int] | None = None,
) -> set[tuple[int, str]]:
    """(tenant id, source) pairs with a failed collection in `window`: a provider whose every day failed has no
    `usage_metrics` row, yet the tenant uses it, so its days are unknown, not absent. (The failed rows are few and
    have their own partial index.)"""
    q, params = _scoped_in(
        _FAILED,
        _FAILED_ONE,
        _FAILED_IN,
        tenant_id,
        tenant_ids,
        w_start=window.start,
        w_end=window.end,
        sources=list(sources),
    )
    return {(row.tenant_id, row.source) for row in conn.execute(q, params) if row.tenant_id is not None}


def _micros(col: Any) -> Any:
    """A Money column as its stored integer micro-USD (no Decimal conversion)."""
    return type_coerce(col, BigInteger)


# Per tenant and cost source over a window, from the rollups (meters.SOURCE_COST_COLUMNS): the days it has a row,
# the days its cost is known, and the sum of the known costs.
_COSTS = (
    select(
        r.tenant_id,
        *(
            col
            for source, collected, cost in SOURCE_COST_COLUMNS
            for col in (
                _sum(r[collected]).label(f"{source}_rows"),
                func.count(r[cost]).label(f"{source}_known"),
                _sum(_micros(r[cost])).label(f"{source}_cost"),
            )
        ),
    )
    .where(r.date >= _W_START, r.date < _W_END)
    .group_by(r.tenant_id)
)
_COSTS_ONE = _COSTS.where(r.tenant_id == bindparam("tid"))
_COSTS_IN = _COSTS.where(r.tenant_id.in_(bindparam("tids", expanding=True)))


def _provider_costs(
    conn: Connection,
    window: Window,
    *,
    tenant_id: int | None = None,
    tenant_ids: Sequence[int] | None = None,
) -> dict[int, ProviderCosts]:
    """Per tenant, what the cost-reporting providers it used in `window` said they charged, from what the rollup
    keeps of each tenant-day (no raw rows): a day without a row or without a cost is unknown. A provider counts as
    used when it has a row or a failed collection in the window."""
    q, params = _scoped_in(
        _COSTS, _COSTS_ONE, _COSTS_IN, tenant_id, tenant_ids, w_start=window.start, w_end=window.end
    )
    # tenant id -> source -> (known days, cost in micro-USD)
    found: dict[int, dict[str, tuple[int, int]]] = {}
    for row in conn.execute(q, params):
        got = row._mapping
        for source in COST_SOURCES:
            if got[f"{source}_rows"]:
                found.setdefault(row.tenant_id, {})[source] = (
                    int(got[f"{source}_known"]),
                    int(got[f"{source}_cost"]),
                )
    for tid, source in _failed_only(conn, window, COST_SOURCES, tenant_id, tenant_ids):
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


# The ranking (`usagectl tenants`, the root API and the System Usage page), in SQL: one row per tenant with the
# month's figures, its plan charge and margin as integer micro-USD, sorted, filtered and paged by the database, and
# one aggregate over the same rows for the totals. Nothing in Python grows with the number of tenants: the exact
# PlanCharge and ProviderCosts objects are built for the page's tenants only, with pricing.plan_charge (the SQL
# figures decide the order and the totals; tests/test_ranking.py checks both agree).

# The Totals fields, each summed per tenant over the month: (rollup column, field), then the estimated cost.
_LINE_SUMS = (*_TOTAL_COUNTS, *_TOTAL_COSTS, ("estimated_cost_usd", "estimated_cost"))
# Each sort key: the ranking column it orders by, highest first (name: A to Z). Ties go by slug.
_SORT_COLUMNS = {
    "cost": "estimated_cost",
    **{m.key: m.total for m in RANKED if m.total},
    "plan_charge": "charge",
    "margin": "margin",
    "name": "name",
}
assert tuple(_SORT_COLUMNS) == SORT_KEYS
# The ranking's usage columns: (rollup column, TenantLine field) per ranked meter.
_RANKED = tuple((m.rollup, m.total) for m in RANKED if m.total)
assert {field for _, field in _RANKED} <= set(TenantLine.__dataclass_fields__)
_HALF = PICOS_PER_MICRO // 2
_ASCII = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """The ranking's case folding (name sort and filter): ASCII letters only, as SQLite's lower() does."""
    return text.translate(_ASCII)


def _fold(col: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.translate(col, string.ascii_uppercase, string.ascii_lowercase)
    return func.lower(col)


def _bytewise(col: Any, dialect: str) -> Any:
    # Code-point order on both backends (SQLite's BINARY collation is; PostgreSQL's database collation may not be).
    return col.collate("C") if dialect == "postgresql" else col


def _int(value: int) -> Any:
    return cast(literal(value, BigInteger), BigInteger)


def _positive(expr: Any) -> Any:
    return case((expr > 0, expr), else_=_int(0))


def _plan_table(cfg: Config, segments: Sequence[Window]) -> Any:
    """Per plan tier (and '' for a tier the config does not know, which gets the default plan, as cfg.plan gives
    it): the monthly fee in micro-USD, each priced meter's allowance, and its unit price in each price-book segment
    split as (micro-USD, pico remainder), so that overage x price stays far from the 64-bit limit."""
    rows = []
    for tier in plan_tiers(cfg):
        plan = cfg.plan(tier)
        cols = [
            cast(literal(tier, String), String).label("tier"),
            _int(to_micros(round_micro(plan.monthly_fee or Decimal(0)))).label("fee"),
        ]
        for m in PRICED:
            cols.append(_int(getattr(plan.included, m.allowance or "", None) or 0).label(f"inc_{m.key}"))
            for i, seg in enumerate(segments):
                picos = to_picos(getattr(prices_for(cfg, tier, seg.start), m.unit_price or ""))
                cols.append(_int(picos // PICOS_PER_MICRO).label(f"q{i}_{m.key}"))
                cols.append(_int(picos % PICOS_PER_MICRO).label(f"r{i}_{m.key}"))
        rows.append(select(*cols))
    return union_all(*rows).subquery("plans")


def _charge(plans: Any, usage: Any, n_segments: int) -> Any:
    """The plan charge in micro-USD, as pricing.plan_charge computes it: the allowance used up in date order, each
    line's picos rounded half-up to the micro-dollar once, plus the fee."""
    total = plans.c.fee
    for m in PRICED:
        included = plans.c[f"inc_{m.key}"]
        whole: Any = _int(0)
        rest: Any = _int(0)
        used: Any = _int(0)
        above_before: Any = _int(0)
        for i in range(n_segments):
            used = used + func.coalesce(usage.c[f"u{i}_{m.key}"], 0)
            above = _positive(used - included)
            over = (above - above_before).self_group()
            whole = whole + over * plans.c[f"q{i}_{m.key}"]
            rest = rest + over * plans.c[f"r{i}_{m.key}"]
            above_before = above
        rounded = (rest + _int(_HALF)).self_group().op("/", return_type=BigInteger)(_int(PICOS_PER_MICRO))
        total = total + whole + rounded.self_group()
    return total


def _exact_table(exact: Mapping[int, int]) -> Any:
    """(tenant id, plan charge in micro-USD) rows, as a subquery to join."""
    rows = [
        select(_int(tid).label("tenant_id"), _int(micros).label("charge"))
        for tid, micros in sorted(exact.items())
    ]
    return (union_all(*rows) if len(rows) > 1 else rows[0]).subquery("exact")


def _ranking(
    cfg: Config | None, month: Window, done: Window, dialect: str, exact: Mapping[int, int] | None = None
) -> Any:
    """One row per listed tenant (active, or with usage in the month): its month's sums, and with `cfg` its plan
    charge and margin over `done` (the days of the month that are over) in micro-USD, the margin NULL unless every
    day of every cost-reporting provider it used is known. `exact` (tenant id -> micro-USD) replaces the plan
    charge of the tenants whose plan changes during or after the month (plan_changes): the SQL figure prices the
    whole month with the plan a tenant has now, without the proration."""
    in_done = and_(r.date >= done.start, r.date < done.end)
    segments = book_segments(done, cfg.pricing) if cfg is not None else []
    sums = [
        *(
            _sum(_micros(r[col]) if col.endswith("_usd") else r[col]).label(field)
            for col, field in _LINE_SUMS
        ),
        cast(func.sum(_micros(r.provider_cost_usd)), BigInteger).label("provider_cost"),
    ]
    for i, seg in enumerate(segments):
        in_seg = and_(r.date >= seg.start, r.date < seg.end)
        sums += [_sum(case((in_seg, r[m.rollup]), else_=_int(0))).label(f"u{i}_{m.key}") for m in PRICED]
    if cfg is not None:
        for source, collected, cost in SOURCE_COST_COLUMNS:
            sums += [
                _sum(case((in_done, r[collected]), else_=0)).label(f"{source}_rows"),
                func.count(case((in_done, r[cost]))).label(f"{source}_known"),
                _sum(case((in_done, _micros(r[cost])))).label(f"{source}_cost"),
            ]
    usage = select(r.tenant_id, *sums).where(_in(month)).group_by(r.tenant_id).subquery("u")
    t, u = tenants.c, usage.c
    cols: list[Any] = [
        t.id,
        t.slug,
        t.name,
        t.plan_tier,
        t.active,
        *(func.coalesce(u[field], 0).label(field) for _, field in _LINE_SUMS),
        u.provider_cost,
    ]
    from_: Any = tenants.outerjoin(usage, u.tenant_id == t.id)
    if cfg is not None:
        plans = _plan_table(cfg, segments)
        known = plan_tiers(cfg)
        tier = case((t.plan_tier.in_([x for x in known if x]), t.plan_tier), else_="")
        failed = (
            select(
                _C.tenant_id,
                *(func.max(case((_C.source == s, 1), else_=0)).label(f"{s}_failed") for s in COST_SOURCES),
            )
            .where(
                _C.status == "failed",
                _C.date >= done.start,
                _C.date < done.end,
                _C.source.in_(COST_SOURCES),
                _C.tenant_id.is_not(None),
            )
            .group_by(_C.tenant_id)
            .subquery("f")
        )
        from_ = from_.join(plans, plans.c.tier == tier).outerjoin(failed, failed.c.tenant_id == t.id)
        charge = _charge(plans, usage, len(segments))
        if exact:
            fixed = _exact_table(exact)
            from_ = from_.outerjoin(fixed, fixed.c.tenant_id == t.id)
            charge = func.coalesce(fixed.c.charge, charge)
        used = {
            s: or_(func.coalesce(u[f"{s}_rows"], 0) > 0, func.coalesce(failed.c[f"{s}_failed"], 0) == 1)
            for s in COST_SOURCES
        }
        # A tenant that used none of them cost the platform nothing there: known, $0 (ProviderCosts.complete).
        complete = and_(
            *(or_(~used[s], func.coalesce(u[f"{s}_known"], 0) == done.days) for s in COST_SOURCES),
        )
        reported: Any = _int(0)
        for s in COST_SOURCES:
            reported = reported + func.coalesce(u[f"{s}_cost"], 0)
        cols += [charge.label("charge"), case((complete, charge - reported)).label("margin")]
    return (
        select(*cols)
        .select_from(from_)
        # A tenant removed from the config is listed only for months it has usage in.
        .where(or_(t.active == true(), u.tenant_id.is_not(None)))
        .subquery("ranking")
    )


def _order(k: Any, sort: str, dialect: str) -> list[Any]:
    slug = _bytewise(k.slug, dialect)
    if sort == "name":
        return [_bytewise(_fold(k.name, dialect), dialect), slug]
    col = k[_SORT_COLUMNS[sort]]
    if sort == "margin":
        # An unknown margin (incomplete provider costs) after every known one.
        return [case((col.is_(None), 1), else_=0), col.desc(), slug]
    return [col.desc(), slug]


def _matches(k: Any, needle: str, dialect: str) -> Any:
    """`needle` (folded) in the slug or the name, folded the same way; LIKE's wildcards in it match themselves."""
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(
        _fold(k.slug, dialect).like(pattern, escape="\\"), _fold(k.name, dialect).like(pattern, escape="\\")
    )


_DETAIL_BATCH = 1000


def plan_changes(conn: Connection, cfg: Config | None, month: Window, done: Window) -> dict[int, int]:
    """The exact plan charge over `done` (micro-USD, pricing.prorated_plan_charge) of each tenant whose plan
    changes during `month` or after it: the few whose charge the ranking's SQL cannot price from tenants.plan_tier
    alone. Empty without `cfg`."""
    if cfg is None:
        return {}
    ids = sorted(plan_periods(conn, month.start, month.end))
    out: dict[int, int] = {}
    for i in range(0, len(ids), _DETAIL_BATCH):
        part = ids[i : i + _DETAIL_BATCH]
        tiers = {
            int(tid): tier
            for tid, tier in conn.execute(
                select(tenants.c.id, tenants.c.plan_tier).where(tenants.c.id.in_(part))
            )
        }
        for tid, charge in _plan_charges(conn, cfg, done, tiers, tenant_ids=part).items():
            out[tid] = to_micros(charge.total)
    return out


def _lines(conn: Connection, cfg: Config | None, done: Window, rows: Sequence[Any]) -> tuple[TenantLine, ...]:
    """Ranking rows as report lines, with the exact plan charge and provider costs of these tenants."""
    if len(rows) > _DETAIL_BATCH:
        # The whole ranking at once (no limit): the details in batches, as a bound IN list must stay short.
        return tuple(
            line
            for i in range(0, len(rows), _DETAIL_BATCH)
            for line in _lines(conn, cfg, done, rows[i : i + _DETAIL_BATCH])
        )
    charges: dict[int, PlanCharge] = {}
    costs: dict[int, ProviderCosts] = {}
    if cfg is not None and rows:
        ids = [row.id for row in rows]
        charges = _plan_charges(conn, cfg, done, {row.id: row.plan_tier for row in rows}, tenant_ids=ids)
        costs = _provider_costs(conn, done, tenant_ids=ids)
    return tuple(
        TenantLine(
            slug=row.slug,
            name=row.name,
            plan_tier=row.plan_tier,
            active=bool(row.active),
            **{field: int(row._mapping[field]) for _, field in _RANKED},
            estimated_cost=from_micros(int(row.estimated_cost)),
            provider_cost=None if row.provider_cost is None else from_micros(int(row.provider_cost)),
            plan_charge=charges.get(row.id),
            provider_costs=costs.get(row.id, _NO_COSTS) if cfg is not None else None,
        )
        for row in rows
    )


def ranking_statements(
    cfg: Config | None,
    month: Window,
    done: Window,
    dialect: str,
    sort: str,
    limit: int | None,
    offset: int,
    needle: str,
    exact: Mapping[int, int] | None = None,
) -> tuple[Any, Any]:
    """The ranking's two statements: the page (sorted, filtered by `needle`, already folded, and paged) and the
    one aggregate of its totals (and the filter's subtotals). `exact`: plan_changes'. bench/bench_ranking.py
    runs the same SQL bare."""
    k = _ranking(cfg, month, done, dialect, exact).c
    matches = _matches(k, needle, dialect) if needle else true()
    page = select(k).where(matches).order_by(*_order(k, sort, dialect)).offset(offset or None)
    if limit is not None:
        page = page.limit(limit)
    aggregates: list[Any] = [
        func.count().label("tenant_count"),
        *(_sum(k[field]).label(field) for _, field in _LINE_SUMS),
        cast(func.sum(k.provider_cost), BigInteger).label("provider_cost"),
    ]
    if cfg is not None:
        aggregates += [
            _sum(k.charge).label("charge"),
            # NULL unless every tenant's margin is known.
            case((func.count(k.margin) == func.count(), cast(func.sum(k.margin), BigInteger))).label(
                "margin"
            ),
        ]
    if needle:
        aggregates += [
            _sum(case((matches, 1), else_=0)).label("matched"),
            *(
                _sum(case((matches, k[f]), else_=0)).label(f"q_{f}")
                for _, f in (*_RANKED, ("", "estimated_cost"))
            ),
        ]
        if cfg is not None:
            aggregates += [
                _sum(case((matches, k.charge), else_=0)).label("q_charge"),
                case(
                    (
                        func.count(case((matches, k.margin))) == _sum(case((matches, 1), else_=0)),
                        cast(func.sum(case((matches, k.margin))), BigInteger),
                    )
                ).label("q_margin"),
            ]
    return page, select(*aggregates)


def tenants_report(
    store: Store,
    month: Window,
    *,
    sort: str = "cost",
    limit: int | None = None,
    offset: int = 0,
    query: str = "",
    cfg: Config | None = None,
    today: date | None = None,
    stream: bool = False,
    batch: int = 1000,
) -> TenantsReport:
    """The tenants for a month (zeros when one has no usage), sorted highest first, `limit` of them from
    `offset` (all without a limit), with totals over all. With `cfg`, each line has its plan charge and, where the
    providers' costs are complete, its margin (over the days of the month that are over). `query` keeps only the
    tenants whose slug or name contains it (ASCII letters case-insensitively), and adds their count and subtotals.
    The database sorts, filters and pages: the cost does not grow with the number of tenants beyond its own
    aggregate. With `stream`, `lines` is empty and `report.stream()` yields the lines in order, `batch` at a time
    (consume it once, while the store is open)."""
    if sort in ("plan_charge", "margin") and cfg is None:
        raise InputError(f"--sort {sort} needs the config's plans")
    if sort not in SORT_KEYS:
        raise InputError(f"--sort: {sort!r} is not one of {', '.join(SORT_KEYS)}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    if offset < 0:
        raise InputError(f"offset must be at least 0, got {offset}")
    done = through_yesterday(month, today or utc_today())
    needle = ascii_lower(query.strip())
    with store.engine.connect() as conn:
        exact = plan_changes(conn, cfg, month, done)
        page, totals = ranking_statements(cfg, month, done, store.dialect, sort, limit, offset, needle, exact)
        rows = [] if stream else conn.execute(page).all()
        agg_row = conn.execute(totals).one()
        agg = agg_row._mapping
        lines = _lines(conn, cfg, done, rows)

    def streamed() -> Iterator[TenantLine]:
        # The whole ranking in batches from a server-side cursor; each batch's plan charges and provider costs
        # on a second connection. Memory holds one batch, whatever the number of tenants.
        with store.engine.connect() as cursor, store.engine.connect() as conn:
            result = cursor.execution_options(stream_results=True, yield_per=batch).execute(page)
            for part in result.partitions():
                yield from _lines(conn, cfg, done, part)

    count = int(agg["tenant_count"])
    margin_total = agg["margin"] if cfg is not None and count else None
    subtotal = None
    if needle:
        matched = int(agg["matched"])
        subtotals: dict[str, Any] = {f: int(agg[f"q_{f}"]) for _, f in _RANKED}
        subtotals["estimated_cost"] = from_micros(int(agg["q_estimated_cost"]))
        subtotal = Subtotal(
            tenant_count=matched,
            totals=Totals(**subtotals),
            plan_charge=from_micros(int(agg["q_charge"])) if cfg is not None else Decimal("0.000000"),
            margin=(
                from_micros(int(agg["q_margin"]))
                if cfg is not None and matched and agg["q_margin"] is not None
                else None
            ),
        )
    return TenantsReport(
        month=month,
        sort=sort,
        lines=lines,
        total=_totals(agg_row),
        tenant_count=count,
        generated_at=_now(),
        plan_charge_total=from_micros(int(agg["charge"])) if cfg is not None else Decimal("0.000000"),
        margin_total=None if margin_total is None else from_micros(int(margin_total)),
        offset=offset,
        query=query.strip(),
        subtotal=subtotal,
        stream=streamed if stream else None,
    )


# The ranking's CSV columns, in order, as ranking_rows yields them.
RANKING_ROW = (
    "slug", "name", "plan_tier", "active", *(f for _, f in _RANKED), "estimated_cost", "provider_cost", "charge",
    "margin",
)  # fmt: skip


def ranking_rows_statement(
    cfg: Config | None,
    month: Window,
    done: Window,
    dialect: str,
    sort: str,
    exact: Mapping[int, int] | None = None,
) -> Any:
    """Every tenant of the ranking, in order, with only the CSV's columns (RANKING_ROW; money in micro-USD, the
    plan charge and margin NULL without `cfg`). bench/bench_ranking.py copies the same statement with psql."""
    k = _ranking(cfg, month, done, dialect, exact).c
    figures = (k.charge, k.margin) if cfg is not None else (null(), null())
    cols = (
        k.slug,
        k.name,
        k.plan_tier,
        k.active,
        *(k[f] for _, f in _RANKED),
        k.estimated_cost,
        k.provider_cost,
    )
    return select(*cols, *figures).order_by(*_order(k, sort, dialect))


def ranking_rows(
    store: Store,
    month: Window,
    *,
    sort: str = "cost",
    cfg: Config | None = None,
    today: date | None = None,
    batch: int = 2000,
) -> Iterator[tuple[Any, ...]]:
    """The whole ranking as plain tuples (RANKING_ROW), in order, from a server-side cursor: the figures the
    ranking's SQL computes exactly (the plan charge as pricing.plan_charge, the margin, integer micro-USD), no
    report object per tenant. For the CSV of every tenant (render.csv.write_ranking_csv); memory holds one batch.
    Consume it once, while the store is open."""
    if sort in ("plan_charge", "margin") and cfg is None:
        raise InputError(f"--sort {sort} needs the config's plans")
    if sort not in SORT_KEYS:
        raise InputError(f"--sort: {sort!r} is not one of {', '.join(SORT_KEYS)}")
    done = through_yesterday(month, today or utc_today())

    def rows() -> Iterator[tuple[Any, ...]]:
        # A generator apart: a bad --sort is refused before the caller writes anything.
        with store.engine.connect() as conn:
            exact = plan_changes(conn, cfg, month, done)
            stmt = ranking_rows_statement(cfg, month, done, store.dialect, sort, exact)
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
            for part in result.partitions():
                yield from part

    return rows()


def estimated_costs_statement(month: Window, slugs: Sequence[str]) -> Any:
    """`estimated_costs`' statement (bench/bench_ranking.py runs it bare)."""
    t = tenants.c
    ids = select(t.id).where(t.slug.in_(list(slugs))).scalar_subquery()
    usage = (
        select(r.tenant_id, _sum(_micros(r.estimated_cost_usd)).label("cost"))
        .where(_in(month), r.tenant_id.in_(ids))
        .group_by(r.tenant_id)
        .subquery("u")
    )
    return (
        select(t.slug, usage.c.cost)
        .select_from(tenants.outerjoin(usage, usage.c.tenant_id == t.id))
        .where(t.slug.in_(list(slugs)), or_(t.active == true(), usage.c.tenant_id.is_not(None)))
    )


def estimated_costs(store: Store, month: Window, slugs: Sequence[str]) -> dict[str, Decimal]:
    """slug -> estimated cost over `month`, of these tenants as the month's ranking lists them (an inactive tenant
    without usage in the month is not listed): the System Usage page's month-over-month column reads the month
    before for its page of tenants only."""
    if not slugs:
        return {}
    with store.engine.connect() as conn:
        rows = conn.execute(estimated_costs_statement(month, slugs))
        return {slug: from_micros(int(cost or 0)) for slug, cost in rows}


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
