"""Raw metrics -> daily rollups with cost, in one SQL statement per run.

`usage_metrics` rows of all sources are summed per tenant and UTC day and written to `usage_rollups_daily`
with `INSERT ... SELECT ... GROUP BY ... ON CONFLICT (tenant_id, date) DO UPDATE`: a re-run recomputes the
same row, never adds to it, and a row whose figures did not change is not touched at all.

Costs are computed in SQL with integer arithmetic that gives exactly `pricing.cost_of_day`:
unit prices become integer pico-USD (`pricing.to_picos`), a line is `count * price_picos` (exact), and it is
rounded half-up to micro-USD as `(picos + 500000) / 1000000` with integer division (all operands are
non-negative).

Limits: every product `count * price_picos` (and a day's AI pico total) must stay below 2**63 - 1 (9.2e18):
e.g. 658 million SMS for one tenant on one day at $0.014, or 4.6e12 AI tokens at $0.000002. Such a window is
refused with nothing written: `check_written` checks the day totals the upsert wrote, in its transaction, and
rolls it back (SQLite silently switches to floating point on overflow); PostgreSQL raises "bigint out of range"
mid-statement (SQLite "integer overflow" for a SUM past 64 bits), and `check_range` then names the line from the
raw metrics, summed in Python so that a day total past 2**63 is shown exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Select,
    SmallInteger,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.exc import DataError, OperationalError

from usagectl.config import PLAN_TIERS, Config
from usagectl.errors import InputError, UsagectlError
from usagectl.meters import (
    COST_COLUMNS,
    COUNTERS,
    GAUGES,
    METERS,
    PRICED,
    ROLLUP_USAGE_COLUMNS,
    SOURCE_COST_COLUMNS,
)
from usagectl.money import PICOS_PER_MICRO, from_micros, to_picos
from usagectl.periods import Window, utc_today
from usagectl.pricing import plan_tiers, unit_prices
from usagectl.store.engine import Store
from usagectl.store.locks import job_lock
from usagectl.store.tables import (
    UTCDateTime,
    seals,
    tenant_plans,
    tenants,
    usage_adjustments,
    usage_metrics,
    usage_metrics_ai_models,
    usage_rollups_daily,
    usage_rollups_provisional,
    utcnow,
)

HALF_MICRO_PICOS = PICOS_PER_MICRO // 2
# First and last dates a price-book range can span (the first book also covers every day before its date).
_EARLIEST = date(1, 1, 1)
_LATEST = date(9999, 12, 31)

# The rollup columns that carry figures (everything but id, the key and created_at).
DATA_COLUMNS = (
    *ROLLUP_USAGE_COLUMNS,
    *COST_COLUMNS,
    "estimated_cost_usd",
    "provider_cost_usd",
    "pricing_version",
    "plan_tier",
    *(c for _, collected, cost in SOURCE_COST_COLUMNS for c in (collected, cost)),
)


@dataclass(frozen=True)
class RollupResult:
    """What one rollup run did."""

    days: tuple[date, ...]  # the UTC days recomputed
    tenant_days: int  # tenant-days with raw metrics in the unsealed ones (= rollup rows in those days)
    changed: int  # rollup rows inserted or updated (0 when a re-run found nothing new)
    adjusted: int = 0  # adjustments posted for sealed tenant-days whose figures moved
    sealed_through: date | None = None  # the last sealed day after the run (None: nothing sealed)


def _ranges(days: Iterable[date]) -> list[Window]:
    """Contiguous runs of days as half-open windows, so the SQL filter stays a few range conditions."""
    out: list[Window] = []
    for d in sorted(set(days)):
        if out and out[-1].end == d:
            out[-1] = Window(out[-1].start, d + timedelta(days=1))
        else:
            out.append(Window.day(d))
    return out


def in_days(col: Any, windows: Sequence[Window]) -> ColumnElement[bool]:
    if not windows:
        return false()
    return or_(*(and_(col >= w.start, col < w.end) for w in windows))


def _newest_rollup(conn: Connection) -> datetime | None:
    newest: datetime | None = conn.execute(select(func.max(usage_rollups_daily.c.created_at))).scalar()
    return newest


def pending_days(conn: Connection) -> set[date]:
    """Days with raw metrics written since the newest rollup row was written (uses the updated_at index)."""
    newest = _newest_rollup(conn)
    q = select(usage_metrics.c.date).distinct()
    if newest is not None:
        # Not a plain WHERE updated_at > ...: for the DISTINCT, SQLite would walk the whole (date, tenant_id)
        # index (millions of entries at full size) instead of reading the few rows written since the last run
        # from the updated_at index. The IN (subquery) form makes it use the latter (docs/performance.md).
        # PostgreSQL is the other way round: the IN (subquery) form is a semi-join over every id written (7 s for
        # 400,000 rows at 100,000 tenants), the plain WHERE an index range scan (0.4 s).
        if conn.dialect.name == "postgresql":
            q = q.where(usage_metrics.c.updated_at > newest)
        else:
            written = select(usage_metrics.c.id).where(usage_metrics.c.updated_at > newest)
            q = q.where(usage_metrics.c.id.in_(written))
    return {r for (r,) in conn.execute(q)}


def _before_oldest_write(conn: Connection, days: set[date]) -> datetime:
    """Just before the oldest raw-metric write on `days` since the newest rollup: a rollup stamped so leaves
    those days pending."""
    m = usage_metrics.c
    q = select(func.min(m.updated_at)).where(m.date.in_(sorted(days)))
    newest = _newest_rollup(conn)
    if newest is not None:
        q = q.where(m.updated_at > newest)
    oldest: datetime = conn.execute(q).scalar_one()
    return oldest - timedelta(microseconds=1)


def _big(value: int) -> ColumnElement[int]:
    return cast(literal(value, BigInteger), BigInteger)


def _date(value: date, dialect: str) -> ColumnElement[Any]:
    # SQLite stores dates as ISO text: a CAST(... AS DATE) there would turn '2026-11-01' into the number 2026.
    if dialect == "sqlite":
        return literal(value, Date)
    return cast(literal(value, Date), Date)


def _book_ranges(cfg: Config) -> list[tuple[date, date, Any]]:
    books = cfg.pricing.books
    out = []
    for i, book in enumerate(books):
        start = _EARLIEST if i == 0 else book.effective_from
        end = books[i + 1].effective_from if i + 1 < len(books) else _LATEST
        out.append((start, end, book))
    return out


def _price_table(cfg: Config, tiers: Iterable[str], dialect: str) -> Select[Any]:
    """(from, to, tier, version, unit prices in picos) for every book x plan tier,
    as UNION ALL of literals."""
    rows = []
    for start, end, book in _book_ranges(cfg):
        for tier in sorted(set(tiers)):
            p = unit_prices(book, cfg.plan(tier))
            rows.append(
                select(
                    _date(start, dialect).label("p_from"),
                    _date(end, dialect).label("p_to"),
                    cast(literal(tier, String), String).label("tier"),
                    cast(literal(p.version, String), String).label("version"),
                    *(_big(to_picos(getattr(p, m.unit_price or ""))).label(m.key) for m in PRICED),
                )
            )
    return union_all(*rows) if len(rows) > 1 else rows[0]  # type: ignore[return-value]


def _model_price_table(cfg: Config, dialect: str) -> Select[Any] | None:
    """(from, to, model, input/output/cached picos) for every per-model rate; None when no book has one.
    A model without a cached rate charges cached tokens at the input rate, as `pricing._ai_cost` does."""
    rows = []
    for start, end, book in _book_ranges(cfg):
        for model, rate in sorted(book.ai_models.items()):
            cached = rate.cached_input if rate.cached_input is not None else rate.input
            written = rate.cache_write_input if rate.cache_write_input is not None else rate.input
            rows.append(
                select(
                    _date(start, dialect).label("p_from"),
                    _date(end, dialect).label("p_to"),
                    cast(literal(model, String), String).label("model"),
                    _big(to_picos(rate.input)).label("p_in"),
                    _big(to_picos(rate.output)).label("p_out"),
                    _big(to_picos(cached)).label("p_cached"),
                    _big(to_picos(written)).label("p_written"),
                )
            )
    if not rows:
        return None
    return union_all(*rows) if len(rows) > 1 else rows[0]  # type: ignore[return-value]


def _round(picos: ColumnElement[Any]) -> ColumnElement[int]:
    # Integer division on both backends (operands are BIGINT): half-up to the micro-dollar.
    summed = (picos + _big(HALF_MICRO_PICOS)).self_group()
    return summed.op("/", return_type=BigInteger)(_big(PICOS_PER_MICRO)).self_group()


def _total(*cols: str) -> ColumnElement[int]:
    m = usage_metrics.c
    expr: ColumnElement[Any] = m[cols[0]]
    for c in cols[1:]:
        expr = expr + m[c]
    # PostgreSQL's SUM(bigint) is NUMERIC: back to BIGINT so the divisions below are integer divisions.
    return cast(func.sum(expr), BigInteger)


def _aggregate(windows: Sequence[Window], tenant_id: int | None = None) -> Select[Any]:
    """Raw metrics summed per tenant and day over all sources, one column per meter (a meter kept in parts: one
    per part), named as the rollup column; a gauge's largest reading of the day."""
    m = usage_metrics.c
    sums: list[ColumnElement[Any]] = []
    for meter in COUNTERS:
        if meter.parts:
            sums += [_total(raw).label(part) for raw, part in zip(meter.raw, meter.parts, strict=True)]
        else:
            sums.append(_total(*meter.raw).label(meter.rollup))
    return (
        select(
            m.tenant_id,
            m.date,
            *sums,
            *(func.max(m[g.raw[0]]).label(g.rollup) for g in GAUGES),
            # SUM over only NULLs is NULL: no source reported a cost.
            cast(func.sum(m.provider_cost_usd.cast(BigInteger)), BigInteger).label("provider_cost"),
            # Not NULL: some source's row is the day in progress; the whole tenant-day is provisional, as of the
            # oldest such row.
            func.min(m.as_of).label("as_of"),
            # Per cost source (one raw row per tenant, day and source at most): its row, and what it reported.
            *(
                col
                for source, collected, cost in SOURCE_COST_COLUMNS
                for col in (
                    cast(func.sum(case((m.source == source, 1), else_=0)), SmallInteger).label(collected),
                    cast(
                        func.max(case((m.source == source, m.provider_cost_usd.cast(BigInteger)))), BigInteger
                    ).label(cost),
                )
            ),
        )
        .where(in_days(m.date, windows), true() if tenant_id is None else m.tenant_id == tenant_id)
        .group_by(m.tenant_id, m.date)
    )


def rollup_select(
    cfg: Config,
    windows: Sequence[Window],
    now: datetime,
    dialect: str,
    tenant_id: int | None = None,
    *,
    provisional: bool = False,
) -> tuple[dict[str, ColumnElement[Any]], Select[Any]]:
    """The rollup rows of `windows` (optionally one tenant's) as the raw metrics and the current price books give
    them, without writing: the column expressions by rollup column name, and the SELECT of them. Only the final
    tenant-days, or with `provisional` only those with a row of the day in progress (with their `as_of`)."""
    tiers = plan_tiers(cfg)
    agg = _aggregate(windows, tenant_id).subquery("agg")
    prices = _price_table(cfg, tiers, dialect).subquery("prices")
    a, p, t = agg.c, prices.c, tenants.c

    model_prices = _model_price_table(cfg, dialect)
    ai_priced_in: ColumnElement[Any] = _big(0)
    ai_priced_out: ColumnElement[Any] = _big(0)
    ai_model_picos: ColumnElement[Any] = _big(0)
    # The plan in effect on the day (tenant_plans; a tenant without a period there has its plan of now). The
    # plans come from the config: a tier the config does not know is priced with the default plan ('').
    tp = tenant_plans.c
    dated = func.coalesce(tp.plan_tier, t.plan_tier)
    tier = case((dated.in_([x for x in tiers if x]), dated), else_="")
    from_clause: Any = (
        agg.join(tenants, t.id == a.tenant_id)
        .outerjoin(
            tenant_plans,
            and_(
                tp.tenant_id == a.tenant_id,
                tp.valid_from <= a.date,
                or_(tp.valid_to.is_(None), tp.valid_to > a.date),
            ),
        )
        .join(prices, and_(p.tier == tier, a.date >= p.p_from, a.date < p.p_to))
    )
    if model_prices is not None:
        mp = model_prices.subquery("model_prices")
        mm = usage_metrics_ai_models.c
        priced = (
            select(
                mm.tenant_id,
                mm.date,
                cast(func.sum(mm.ai_tokens_in), BigInteger).label("tin"),
                cast(func.sum(mm.ai_tokens_out), BigInteger).label("tout"),
                cast(
                    func.sum(
                        (mm.ai_tokens_in - mm.ai_tokens_cached_in - mm.ai_tokens_cache_write_in) * mp.c.p_in
                        + mm.ai_tokens_cached_in * mp.c.p_cached
                        + mm.ai_tokens_cache_write_in * mp.c.p_written
                        + mm.ai_tokens_out * mp.c.p_out
                    ),
                    BigInteger,
                ).label("picos"),
            )
            .select_from(
                usage_metrics_ai_models.join(
                    mp, and_(mp.c.model == mm.model, mm.date >= mp.c.p_from, mm.date < mp.c.p_to)
                )
            )
            # Naming the tenants lets the UNIQUE(tenant_id, date, ...) index serve the date ranges (no scan). A
            # subquery, not a list of every id: thousands of bound parameters are slow on PostgreSQL
            # (docs/performance.md, Design decisions).
            .where(mm.tenant_id.in_(select(tenants.c.id)), in_days(mm.date, windows))
            .group_by(mm.tenant_id, mm.date)
            .subquery("priced")
        )
        from_clause = from_clause.outerjoin(
            priced, and_(priced.c.tenant_id == a.tenant_id, priced.c.date == a.date)
        )
        ai_priced_in = func.coalesce(priced.c.tin, 0)
        ai_priced_out = func.coalesce(priced.c.tout, 0)
        ai_model_picos = func.coalesce(priced.c.picos, 0)

    usage: dict[str, ColumnElement[Any]] = {}
    for meter in METERS:
        if meter.parts:
            parts: list[ColumnElement[Any]] = [a[part] for part in meter.parts]
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            usage[meter.rollup] = total
            usage.update((part, a[part]) for part in meter.parts)
        else:
            usage[meter.rollup] = a[meter.rollup]
    costs: dict[str, ColumnElement[Any]] = {}
    for meter in PRICED:
        if meter.per_model:
            unpriced = usage[meter.rollup] - ai_priced_in - ai_priced_out
            costs[meter.cost_column] = _round(ai_model_picos + unpriced * p[meter.key])
        else:
            costs[meter.cost_column] = _round(usage[meter.rollup] * p[meter.key])
    estimated = list(costs.values())
    estimated_cost = estimated[0]
    for cost in estimated[1:]:
        estimated_cost = estimated_cost + cost
    cols = {
        "tenant_id": a.tenant_id,
        "date": a.date,
        **usage,
        **costs,
        "estimated_cost_usd": estimated_cost,
        "provider_cost_usd": a.provider_cost,
        "pricing_version": p.version,
        "plan_tier": dated,
        **{c: a[c] for _, collected, cost in SOURCE_COST_COLUMNS for c in (collected, cost)},
        "created_at": literal(now, UTCDateTime),
    }
    if provisional:
        cols["as_of"] = a.as_of
    # SQLite needs a WHERE in INSERT ... SELECT ... ON CONFLICT to parse the upsert unambiguously.
    body = (
        select(*(v.label(k) for k, v in cols.items()))
        .select_from(from_clause)
        .where(a.tenant_id.is_not(None), a.as_of.is_not(None) if provisional else a.as_of.is_(None))
    )
    return cols, body


def rollup_statement(
    cfg: Config,
    windows: Sequence[Window],
    now: datetime,
    dialect: str,
    tenant_id: int | None = None,
    *,
    provisional: bool = False,
) -> Any:
    """The upsert for `windows` (optionally one tenant's). With `provisional`, of the tenant-days in progress into
    usage_rollups_provisional instead."""
    cols, body = rollup_select(cfg, windows, now, dialect, tenant_id, provisional=provisional)

    from sqlalchemy.dialects import postgresql, sqlite

    table = usage_rollups_provisional if provisional else usage_rollups_daily
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    ins = ins.from_select(list(cols), body)
    r = table.c
    data = (*DATA_COLUMNS, "as_of") if provisional else DATA_COLUMNS
    changed = or_(*(r[c].is_distinct_from(ins.excluded[c]) for c in data))
    return ins.on_conflict_do_update(
        index_elements=[r.tenant_id, r.date],
        set_={c: ins.excluded[c] for c in (*data, "created_at")},
        where=changed,
    )


INT64_MAX = 2**63 - 1

# The lines `_range_error` checks (the counters: jobs are not priced, but their day total is stored), their raw
# columns and their rollup columns.
_LINES = tuple(m.key for m in COUNTERS)
_LINE_COLUMNS = tuple(m.raw for m in COUNTERS)
_LINE_ROLLUPS = tuple(m.rollup for m in COUNTERS)


def _largest_prices(cfg: Config) -> dict[str, int]:
    """The largest unit price in picos any book or plan has for each line."""
    plans = [cfg.plan(tier) for tier in PLAN_TIERS] + [cfg.plan("")]
    prices: dict[str, list[int]] = {m.key: [] for m in PRICED}
    for book in cfg.pricing.books:
        for plan in plans:
            p = unit_prices(book, plan)
            for m in PRICED:
                prices[m.key].append(to_picos(getattr(p, m.unit_price or "")))
        for rate in book.ai_models.values():
            prices[next(m.key for m in PRICED if m.per_model)] += [
                to_picos(rate.input),
                to_picos(rate.output),
                to_picos(rate.cached_input or Decimal(0)),
                to_picos(rate.cache_write_input or Decimal(0)),
            ]
    return {line: max(values) for line, values in prices.items()}


def _range_error(cfg: Config, top: Sequence[Any]) -> UsagectlError | None:
    """`top`: the largest daily sms, mms, voice, email, AI-token and jobs counts. Conservative: each against the
    largest unit price any book or plan has for it (jobs are not priced, but their total is stored)."""
    prices = _largest_prices(cfg)
    for line, count in zip(_LINES, top, strict=True):
        if not count:
            continue
        if int(count) > INT64_MAX:
            return UsagectlError(
                f"rollup: a tenant-day's {line} count ({int(count):,}) exceeds the 64-bit integer range "
                "(see docs/cost-model.md, Limits); nothing was written"
            )
        if int(count) * prices.get(line, 0) + HALF_MICRO_PICOS > INT64_MAX:
            return UsagectlError(
                f"rollup: a tenant-day's {line} count ({int(count):,}) is too large to price in 64-bit "
                "integers (see docs/cost-model.md, Limits); nothing was written"
            )
    return None


def check_range(conn: Connection, cfg: Config, windows: Sequence[Window]) -> None:
    """Refuse a window whose costs would overflow 64-bit integers, from the raw metrics. The day totals are
    summed here in Python, not in SQL: a total past 2**63 is exactly what SQL cannot hold (PostgreSQL raises
    "bigint out of range", SQLite "integer overflow" or a rounded float), and the message must give the true
    figure. Only run when the rollup found or hit an overflow (see `check_written`, run_rollup)."""
    m = usage_metrics.c
    names = [c for cols in _LINE_COLUMNS for c in cols]
    totals: dict[tuple[int, date], list[int]] = {}
    rows = conn.execute(select(m.tenant_id, m.date, *(m[c] for c in names)).where(in_days(m.date, windows)))
    for tenant_id, day, *values in rows:
        acc = totals.setdefault((tenant_id, day), [0] * len(_LINE_COLUMNS))
        it = iter(values)
        for i, cols in enumerate(_LINE_COLUMNS):
            for _ in cols:
                acc[i] += int(next(it) or 0)
    top = [max((t[i] for t in totals.values()), default=0) for i in range(len(_LINE_COLUMNS))]
    err = _range_error(cfg, top)
    if err is not None:
        raise err


def check_written(
    conn: Connection,
    cfg: Config,
    windows: Sequence[Window],
    tenant_id: int | None = None,
    *,
    table: Any = usage_rollups_daily,
    check: bool = True,
) -> int:
    """The same check on the rollup rows of `windows`, inside the rollup's transaction, after its upsert: raising
    rolls the transaction back, so nothing is written, and reading the rollup rows (one per tenant-day) is a
    fraction of aggregating the raw rows again. SQLite does not fail on the overflow (it switches to floating
    point), so the counts, which are exact, are checked; PostgreSQL raises before this (see run_rollup).

    Returns the number of rollup rows in `windows` (of `tenant_id`, when the run was one tenant's): after the
    upsert, one per tenant-day with raw metrics (final ones; `table` usage_rollups_provisional: the others).
    `check=False` (PostgreSQL, which raised already if a figure did not fit) only counts them, from the
    (date, tenant_id) index."""
    r = table.c
    scope = (in_days(r.date, windows), true() if tenant_id is None else r.tenant_id == tenant_id)
    if not check:
        return int(conn.execute(select(func.count()).select_from(table).where(*scope)).scalar_one())
    *top, rows = conn.execute(
        select(
            *(func.max(r[c]) for c in _LINE_ROLLUPS),
            func.count(),
        ).where(*scope)
    ).one()
    err = _range_error(cfg, top)
    if err is not None:
        # SQLite keeps a total past 2**63 as a rounded float (clamped to 2**63 - 1 in the column): name the exact
        # figure from the raw rows.
        check_range(conn, cfg, windows)
        raise err
    return int(rows)


# The figures an adjustment carries: every rollup usage column and cost column, and the estimated total.
ADJUSTED_COLUMNS = (*ROLLUP_USAGE_COLUMNS, *COST_COLUMNS, "estimated_cost_usd")
_MONEY_ADJUSTED = frozenset((*COST_COLUMNS, "estimated_cost_usd"))


def sealed_through(conn: Connection) -> date | None:
    """The last sealed day (every day on or before it is sealed), None when nothing is sealed."""
    last: date | None = conn.execute(select(func.max(seals.c.sealed_through))).scalar()
    return last


def first_provisional_day(conn: Connection) -> date | None:
    """The first day with a raw row of the day in progress (`collect --today`) not yet made final; read from the
    partial index of those rows."""
    m = usage_metrics.c
    first: date | None = conn.execute(select(func.min(m.date)).where(m.as_of.is_not(None))).scalar()
    return first


def _seal(conn: Connection, through: date, how: str) -> bool:
    """Move the seal line to `through` if that is later than where it is; True if it moved. Never over a day
    with a provisional figure: the line stops the day before it (the nightly collect makes it final first)."""
    provisional = first_provisional_day(conn)
    if provisional is not None and through >= provisional:
        through = provisional - timedelta(days=1)
    current = sealed_through(conn)
    if current is not None and current >= through:
        return False
    conn.execute(seals.insert().values(sealed_through=through, how=how, sealed_at=utcnow()))
    return True


@dataclass(frozen=True)
class SealResult:
    sealed_through: date
    moved: bool  # False: those days were sealed already
    pending: int  # sealed days with raw metrics not rolled up yet (they will become adjustments)


def seal(store: Store, until: date, *, today: date | None = None, lock_wait: float = 10.0) -> SealResult:
    """Seal every day up to and including `until` by hand. A day still going on (today, UTC) or in the future
    cannot be sealed: its figures are not final even for the platform."""
    today = today or utc_today()
    if until >= today:
        raise InputError(f"--until: {until} is not over yet (UTC today is {today}); seal a past day")
    with job_lock(store, wait=lock_wait), store.engine.begin() as conn:
        provisional = first_provisional_day(conn)
        if provisional is not None and until >= provisional:
            raise InputError(
                f"--until: {provisional} has provisional figures (collected with --today; the nightly collect "
                f"makes them final); seal up to {provisional - timedelta(days=1)} now"
            )
        moved = _seal(conn, until, "manual")
        pending = sum(1 for d in pending_days(conn) if d <= until)
        last = sealed_through(conn)
    assert last is not None
    return SealResult(sealed_through=last, moved=moved, pending=pending)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def post_adjustments(
    conn: Connection,
    cfg: Config,
    windows: Sequence[Window],
    now: datetime,
    dialect: str,
    *,
    reason: str,
    tenant_id: int | None = None,
) -> int:
    """For the sealed days of `windows`: an adjustment per tenant-day whose figures, as the raw metrics and price
    books give them now, differ from its sealed rollup plus the adjustments already posted for it. So a rerun
    posts nothing twice, and the sealed rollup rows are never written. Returns the number posted."""
    if not windows:
        return 0
    _, body = rollup_select(cfg, windows, now, dialect, tenant_id)
    computed = conn.execute(body).mappings().all()
    if not computed:
        return 0
    r, adj = usage_rollups_daily.c, usage_adjustments.c
    scope = [in_days(r.date, windows)]
    if tenant_id is not None:
        scope.append(r.tenant_id == tenant_id)
    shown: dict[tuple[int, date], list[int]] = {}
    for tid, day, *values in conn.execute(
        select(r.tenant_id, r.date, *(cast(r[c], BigInteger) for c in ADJUSTED_COLUMNS)).where(*scope)
    ):
        shown[(tid, day)] = [_int(v) for v in values]
    adj_scope = [in_days(adj.date, windows)]
    if tenant_id is not None:
        adj_scope.append(adj.tenant_id == tenant_id)
    for tid, day, *values in conn.execute(
        select(
            adj.tenant_id,
            adj.date,
            *(cast(func.sum(cast(adj[c], BigInteger)), BigInteger) for c in ADJUSTED_COLUMNS),
        )
        .where(*adj_scope)
        .group_by(adj.tenant_id, adj.date)
    ):
        base = shown.setdefault((tid, day), [0] * len(ADJUSTED_COLUMNS))
        shown[(tid, day)] = [b + _int(v) for b, v in zip(base, values, strict=True)]
    rows = []
    for row in computed:
        before = shown.get((row["tenant_id"], row["date"]), [0] * len(ADJUSTED_COLUMNS))
        deltas = {c: _int(row[c]) - b for c, b in zip(ADJUSTED_COLUMNS, before, strict=True)}
        if not any(deltas.values()):
            continue
        rows.append(
            {
                "tenant_id": row["tenant_id"],
                "date": row["date"],
                "reason": reason,
                "posted_at": now,
                "pricing_version": row["pricing_version"],
                **{c: from_micros(v) if c in _MONEY_ADJUSTED else v for c, v in deltas.items()},
            }
        )
    if rows:
        conn.execute(usage_adjustments.insert(), rows)
    return len(rows)


def _roll_provisional(
    conn: Connection,
    cfg: Config,
    windows: Sequence[Window],
    now: datetime,
    dialect: str,
    tenant_id: int | None,
) -> int:
    """The tenant-days in progress of `windows` into usage_rollups_provisional; a provisional row whose day is
    final now (or gone) is deleted, and so is a final rollup row of a day that is provisional again (re-collected
    with --today). `windows` holds no sealed day. Returns how many provisional rows `windows` holds."""
    if not windows:
        return 0
    conn.execute(rollup_statement(cfg, windows, now, dialect, tenant_id, provisional=True))
    p, m, d = usage_rollups_provisional.c, usage_metrics.c, usage_rollups_daily.c
    mine = true() if tenant_id is None else p.tenant_id == tenant_id
    in_progress = (
        select(m.id).where(m.tenant_id == p.tenant_id, m.date == p.date, m.as_of.is_not(None)).exists()
    )
    conn.execute(usage_rollups_provisional.delete().where(in_days(p.date, windows), mine, ~in_progress))
    again = select(p.id).where(p.tenant_id == d.tenant_id, p.date == d.date).exists()
    conn.execute(
        usage_rollups_daily.delete().where(
            in_days(d.date, windows), true() if tenant_id is None else d.tenant_id == tenant_id, again
        )
    )
    return check_written(conn, cfg, windows, tenant_id, table=usage_rollups_provisional)


def refresh_source_costs(conn: Connection, windows: Sequence[Window], tenant_id: int | None = None) -> None:
    """On sealed days, bring what the providers reported (meters.SOURCE_COST_COLUMNS) up to date from the raw
    rows. A seal keeps usage and our estimate as finance saw them; the providers' own cost of a day is their
    statement, and a margin deducts what they say now (a cost that arrives late completes it)."""
    if not windows:
        return
    r, m = usage_rollups_daily.c, usage_metrics.c
    values: dict[str, Any] = {}
    for source, collected, cost in SOURCE_COST_COLUMNS:
        raw = and_(m.tenant_id == r.tenant_id, m.date == r.date, m.source == source)
        values[collected] = select(func.count()).where(raw).scalar_subquery()
        values[cost] = select(func.max(m.provider_cost_usd)).where(raw).scalar_subquery()
    scope = [in_days(r.date, windows)]
    if tenant_id is not None:
        scope.append(r.tenant_id == tenant_id)
    conn.execute(usage_rollups_daily.update().where(*scope).values(values))


def run_rollup(
    store: Store,
    cfg: Config,
    window: Window | None = None,
    *,
    today: date | None = None,
    lock_wait: float = 10.0,
    tenant_id: int | None = None,
    reason: str = "late-data",
    seal_by_age: bool = True,
    before: Callable[[Connection], None] | None = None,
) -> RollupResult:
    """Recompute the rollups of `window`, or by default of yesterday (UTC) and every day with raw metrics
    written since the last rollup. Days re-collected since the last rollup are always included, so an explicit
    backfill never hides them from the next default run. Holds the jobs lock (shared with collect).

    A sealed day's rollup row is never rewritten: where its figures moved, an adjustment (`reason`) is posted
    instead. After the run, days `[rollup] seal_after_days` old are sealed (`seal_by_age`). `tenant_id` limits the
    run to one tenant (`usagectl reprice --tenant`). `before(conn)` runs under the lock, in the run's transaction,
    before anything is written: what it reads is what this run replaces (`usagectl reprice`'s old costs)."""
    today = today or utc_today()
    with job_lock(store, wait=lock_wait):
        now = utcnow()
        # `now` may be moved back below (the stamp that keeps days pending); an adjustment is posted at the real
        # time, which decides the month that shows it.
        posted_at = now
        windows: list[Window] = []
        adjusted = 0
        try:
            with store.engine.begin() as conn:
                if before is not None:
                    before(conn)
                days = pending_days(conn)
                if window is None:
                    days.add(today - timedelta(days=1))
                else:
                    # The range given and nothing else. Days collected since the last rollup that lie outside
                    # it (or, for one tenant, all of them: other tenants' writes there are not rolled up) must
                    # stay pending for the next default run: this run's rows are stamped just before the oldest
                    # such write, so "written since the newest rollup" still finds them.
                    outside = set(days) if tenant_id is not None else days.difference(window)
                    days = set(window)
                    if outside:
                        now = min(now, _before_oldest_write(conn, outside))
                last_sealed = sealed_through(conn)
                closed = {d for d in days if last_sealed is not None and d <= last_sealed}
                windows = _ranges(days - closed)
                upserted = conn.execute(
                    rollup_statement(cfg, windows, now, store.dialect, tenant_id),
                    execution_options={"preserve_rowcount": True},
                )
                provisional = _roll_provisional(conn, cfg, windows, now, store.dialect, tenant_id)
                # Raising rolls the upsert back. Every tenant-day with raw metrics in `windows` has its rollup row
                # now, so their count is the rollup rows' (a DISTINCT over the raw rows is far slower, on PostgreSQL
                # above all: docs/performance.md, Design decisions).
                # PostgreSQL stops the upsert itself at a figure past 64 bits (bigint out of range, below).
                tenant_days = (
                    check_written(conn, cfg, windows, tenant_id, check=store.dialect != "postgresql")
                    + provisional
                )
                if store.dialect == "postgresql":
                    # Its rowcount of an upsert is the rows inserted or updated (not those its WHERE skipped).
                    changed = upserted.rowcount
                else:
                    # Rows written by this run carry its timestamp (SQLite's rowcount of INSERT ... SELECT ... ON
                    # CONFLICT is not that).
                    changed = conn.execute(
                        select(func.count())
                        .select_from(usage_rollups_daily)
                        .where(usage_rollups_daily.c.created_at == now)
                    ).scalar_one()
                adjusted = post_adjustments(
                    conn,
                    cfg,
                    _ranges(closed),
                    posted_at,
                    store.dialect,
                    reason=reason,
                    tenant_id=tenant_id,
                )
                refresh_source_costs(conn, _ranges(closed), tenant_id)
                # Sealing by age comes last, so that what this run just rolled up is what gets sealed.
                if seal_by_age and cfg.rollup.seal_after_days:
                    _seal(conn, today - timedelta(days=cfg.rollup.seal_after_days), "age")
                last_sealed = sealed_through(conn)
        except (DataError, OperationalError) as exc:
            # PostgreSQL stops the upsert at a bigint overflow ("bigint out of range"), SQLite at a SUM past 64 bits
            # ("integer overflow"); either rolled it back: name the line from the raw metrics.
            if isinstance(exc, OperationalError) and "integer overflow" not in str(exc.orig):
                raise
            with store.engine.connect() as conn:
                check_range(conn, cfg, windows)
            raise UsagectlError(
                "rollup: a cost exceeded the 64-bit integer range (see docs/cost-model.md, limits)"
            ) from exc
        return RollupResult(
            days=tuple(sorted(days)),
            tenant_days=tenant_days,
            changed=changed,
            adjusted=adjusted,
            sealed_through=last_sealed,
        )
