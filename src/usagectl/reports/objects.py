"""Report objects: pure data, built by usagectl.reports.queries and turned into tables, charts, CSV, JSON and
HTML by usagectl.render and usagectl.web. Money is `Decimal` USD throughout."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from usagectl.meters import COST_COLUMNS, COUNTERS, EXPORT_USAGE_COLUMNS, RANKED
from usagectl.periods import Window
from usagectl.pricing import PlanCharge

SCHEMA_VERSION = 1
CURRENCY = "USD"
# Days of a month that must have passed before a month-end projection is shown to people.
MIN_PROJECTION_DAYS = 7
EMPTY_MESSAGE = "Usage metrics will appear here once you begin messaging."
SORT_KEYS = ("cost", *(m.key for m in RANKED), "plan_charge", "margin", "name")

# Export / CSV columns, in order. Stable: documented in docs/export.md; a change bumps SCHEMA_VERSION.
KEY_COLUMNS = ("date", "tenant", "tenant_name", "plan_tier", "pricing_version")
EXPORT_COLUMNS = (
    *KEY_COLUMNS,
    *EXPORT_USAGE_COLUMNS,
    *COST_COLUMNS,
    "estimated_cost_usd",
    "provider_cost_usd",
)
MONEY_COLUMNS = frozenset(c for c in EXPORT_COLUMNS if c.endswith("_usd"))
# An adjustment's figures (deltas against the sealed day), in export order; documented in docs/export.md.
ADJUSTMENT_FIGURES = (*EXPORT_USAGE_COLUMNS, *COST_COLUMNS, "estimated_cost_usd")
ADJUSTMENT_COLUMNS = (
    "posted_at",
    "date",
    "tenant",
    "tenant_name",
    "reason",
    "pricing_version",
    *ADJUSTMENT_FIGURES,
)


@dataclass(frozen=True)
class DayRow:
    """One tenant-day rollup (`usage_rollups_daily`), with the names of the export columns."""

    date: date
    tenant: str
    tenant_name: str
    plan_tier: str
    pricing_version: str
    sms_total: int
    mms_total: int
    voice_total_minutes: int
    email_total: int
    ai_tokens_in: int
    ai_tokens_out: int
    ai_total_tokens: int
    jobs_executed: int
    storage_bytes: int | None
    sms_cost_usd: Decimal
    mms_cost_usd: Decimal
    voice_cost_usd: Decimal
    email_cost_usd: Decimal
    ai_cost_usd: Decimal
    estimated_cost_usd: Decimal
    provider_cost_usd: Decimal | None  # None: no provider reported a cost (unknown, not $0)

    def as_dict(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in EXPORT_COLUMNS}


@dataclass(frozen=True)
class Adjustment:
    """What a sealed tenant-day moved by after it was sealed, posted at `posted_at` (docs/cost-model.md, Sealed
    days): shown in the window `posted_at` falls in, never in the sealed day's own month."""

    posted_at: datetime
    date: date  # the sealed day adjusted
    tenant: str
    tenant_name: str
    reason: str  # late-data | reprice
    pricing_version: str
    figures: tuple[Any, ...]  # ADJUSTMENT_FIGURES: usage deltas (int), then cost deltas (Decimal USD)

    @property
    def estimated_cost(self) -> Decimal:
        cost: Decimal = self.figures[-1]
        return cost

    def as_dict(self) -> dict[str, Any]:
        head = (self.posted_at, self.date, self.tenant, self.tenant_name, self.reason, self.pricing_version)
        return dict(zip(ADJUSTMENT_COLUMNS, (*head, *self.figures), strict=True))


def adjustments_cost(adjustments: Iterable[Adjustment]) -> Decimal:
    return sum((a.estimated_cost for a in adjustments), Decimal("0.000000"))


@dataclass(frozen=True)
class Totals:
    sms: int = 0
    mms: int = 0
    voice_minutes: int = 0
    emails: int = 0
    ai_tokens: int = 0
    jobs: int = 0
    sms_cost: Decimal = Decimal("0.000000")
    mms_cost: Decimal = Decimal("0.000000")
    voice_cost: Decimal = Decimal("0.000000")
    email_cost: Decimal = Decimal("0.000000")
    ai_cost: Decimal = Decimal("0.000000")
    estimated_cost: Decimal = Decimal("0.000000")
    provider_cost: Decimal | None = None  # None: no provider reported a cost in the window

    @property
    def has_usage(self) -> bool:
        return any(getattr(self, m.total) for m in COUNTERS if m.total is not None)


@dataclass(frozen=True)
class Allowance:
    """A plan's monthly included amount against the month's usage so far."""

    metric: str  # the meter's allowance key (meters.Meter.allowance): sms | mms | voice_minutes | emails | ai_tokens
    label: str
    included: int
    used: int

    @property
    def percent(self) -> Decimal | None:
        """Share used, one decimal; None when nothing is included (any use is over)."""
        if self.included == 0:
            return None
        return (Decimal(self.used) * 100 / self.included).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)

    @property
    def over(self) -> bool:
        return self.used > self.included


@dataclass(frozen=True)
class MonthToDate:
    """The calendar month of the report's last complete day, up to that day, and a linear projection (an
    estimate)."""

    month: Window
    as_of: date
    cost: Decimal
    projected_cost: Decimal  # an ESTIMATE: month-to-date cost / days elapsed x days in month
    complete: bool  # the month is over: the projection is the actual figure

    @property
    def elapsed_days(self) -> int:
        return (self.as_of - self.month.start).days + 1

    @property
    def projection_ready(self) -> bool:
        """Enough of the month has passed for a projection to mean something (on the 3rd, two days would be
        multiplied by 15): people are shown it from MIN_PROJECTION_DAYS on, or the total of a month that is over."""
        return self.complete or self.elapsed_days >= MIN_PROJECTION_DAYS


@dataclass(frozen=True)
class ProviderCosts:
    """What the cost-reporting providers (queries.COST_SOURCES) said they charged one tenant over a window:
    the sum of the known days, and how many source-days are unknown (no row, or a row without a cost)."""

    cost: Decimal
    days: int  # days of the window x the cost-reporting sources the tenant used in it
    unknown_days: int
    sources: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every day of every cost-reporting source the tenant used is known. A tenant that used none (no Twilio
        or OpenAI attribution, or no usage there) cost the platform nothing with them: known, $0."""
        return self.unknown_days == 0


def margin_of(charge: PlanCharge | None, costs: ProviderCosts | None) -> Decimal | None:
    """Plan charge minus the providers' reported cost; None (not $0) unless the provider costs are complete."""
    if charge is None or costs is None or not costs.complete:
        return None
    return charge.total - costs.cost


@dataclass(frozen=True)
class TenantInfo:
    slug: str
    name: str
    plan_tier: str


@dataclass(frozen=True)
class ProvisionalDay:
    """A day in progress (`collect --today`) as of some time: shown apart, never in `totals`, the month to date,
    the plan charge or the allowances."""

    day: DayRow
    as_of: datetime  # aware, UTC
    is_today: bool  # False: yesterday, whose nightly collect has not made it final yet

    @property
    def label(self) -> str:
        head = "today so far" if self.is_today else f"{self.day.date:%d %b} so far"
        return f"{head}, as of {self.as_of:%H:%M} UTC (provisional)"


@dataclass(frozen=True)
class TenantReport:
    tenant: TenantInfo
    window: Window
    days: tuple[DayRow, ...]  # only days with a rollup row, oldest first
    totals: Totals
    month_to_date: MonthToDate
    allowances: tuple[Allowance, ...]
    generated_at: datetime
    # The month-to-date's plan charge and the providers' cost over the same days (None: not computed)
    plan_charge: PlanCharge | None = None
    provider_costs: ProviderCosts | None = None

    @property
    def margin(self) -> Decimal | None:
        return margin_of(self.plan_charge, self.provider_costs)

    # Posted in the window (for sealed days of earlier windows): not in `totals`, which are the window's days.
    adjustments: tuple[Adjustment, ...] = ()
    # Today so far (and yesterday until the nightly run makes it final), oldest first: not in any total above.
    provisional: tuple[ProvisionalDay, ...] = ()
    # What the month's plan charge comes to if the rest of it goes at the pace so far (an ESTIMATE); None for a
    # month that is over, or before MIN_PROJECTION_DAYS days of it.
    projected_charge: Decimal | None = None

    @property
    def has_usage(self) -> bool:
        return (
            self.totals.has_usage
            or self.month_to_date.cost > 0
            or bool(self.adjustments)
            or any(p.day.estimated_cost_usd > 0 or p.day.sms_total > 0 for p in self.provisional)
        )

    @property
    def adjustments_cost(self) -> Decimal:
        return adjustments_cost(self.adjustments)

    def daily_series(self) -> list[tuple[date, DayRow | None]]:
        """Every day of the window, None where no rollup exists (for the chart)."""
        by_day = {d.date: d for d in self.days}
        return [(d, by_day.get(d)) for d in self.window]

    @property
    def missing_days(self) -> list[date]:
        """Days of the window without a rollup (not collected or not rolled up yet): unknown, not zero."""
        have = {d.date for d in self.days}
        return [d for d in self.window if d not in have]


@dataclass(frozen=True)
class TenantLine:
    slug: str
    name: str
    plan_tier: str
    active: bool
    sms: int
    emails: int
    voice_minutes: int
    ai_tokens: int
    estimated_cost: Decimal
    provider_cost: Decimal | None
    plan_charge: PlanCharge | None = None
    provider_costs: ProviderCosts | None = None

    @property
    def margin(self) -> Decimal | None:
        return margin_of(self.plan_charge, self.provider_costs)


@dataclass(frozen=True)
class Subtotal:
    """The tenants a ranking's filter (`TenantsReport.query`) matched, all of them, not just the page's."""

    tenant_count: int
    totals: Totals  # the ranked meters and the estimated cost only
    plan_charge: Decimal = Decimal("0.000000")
    margin: Decimal | None = None  # None unless every matched tenant's margin is known


@dataclass(frozen=True)
class TenantsReport:
    month: Window
    sort: str
    lines: tuple[TenantLine, ...]  # sorted; one page: `offset` lines skipped, at most the limit asked for
    total: Totals  # over ALL tenants, also those cut by --limit
    tenant_count: int
    generated_at: datetime
    plan_charge_total: Decimal = Decimal("0.000000")  # over ALL tenants
    margin_total: Decimal | None = None  # over ALL tenants; None unless every tenant's margin is known
    offset: int = 0  # the page's first line is the (offset+1)th of the ranking (or of the matched tenants)
    query: str = ""  # the filter (slug or name contains it, ASCII letters case-insensitively); "" for none
    subtotal: Subtotal | None = None  # the matched tenants, with a filter
    # Set when the lines are streamed (`tenants_report(stream=True)`, `lines` empty): yields them in order; consume
    # it once, while the store is open.
    stream: Callable[[], Iterator[TenantLine]] | None = field(default=None, compare=False)

    def iter_lines(self) -> Iterator[TenantLine]:
        return self.stream() if self.stream is not None else iter(self.lines)

    @property
    def matched(self) -> int:
        """The tenants the page is a part of: those the filter matched, else all."""
        return self.subtotal.tenant_count if self.subtotal is not None else self.tenant_count

    @property
    def more(self) -> int:
        """How many come after this page (0 when streamed)."""
        if self.stream is not None:
            return 0
        return max(0, self.matched - self.offset - len(self.lines))


@dataclass(frozen=True)
class ReconcileLine:
    """One tenant and provider for a month: the usage it reported, our estimate of its cost (priced per source-day
    like a rollup), and what it said it charged."""

    tenant: str
    tenant_name: str
    provider: str
    usage: dict[str, int]  # meter key -> units, every priced meter
    estimated_cost: Decimal
    provider_cost: Decimal | None  # the sum of the known days; None when no day is known
    days: int
    unknown_days: int

    @property
    def difference(self) -> Decimal | None:
        """Provider cost minus our estimate; None unless the provider cost is known for every day."""
        if self.unknown_days or self.provider_cost is None:
            return None
        return self.provider_cost - self.estimated_cost

    @property
    def difference_percent(self) -> Decimal | None:
        """The difference in percent of our estimate, one decimal; None when unknown or the estimate is 0."""
        diff = self.difference
        if diff is None or self.estimated_cost == 0:
            return None
        return (diff * 100 / self.estimated_cost).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class ReconcileReport:
    month: Window
    as_of: date  # the last day compared (yesterday for the current month)
    lines: tuple[ReconcileLine, ...]  # by tenant, then provider
    generated_at: datetime


@dataclass(frozen=True)
class ExportReport:
    window: Window
    tenant: str | None
    generated_at: datetime
    rows: Iterator[DayRow] = field(compare=False)  # streamed: consume once, inside the store's lifetime
    # Posted in the window (for sealed days, whatever their month), oldest first.
    adjustments: tuple[Adjustment, ...] = ()
    # The same rows as plain tuples in EXPORT_COLUMNS order, for bulk writers: money as integer micro-USD, the
    # date as ISO text on SQLite (a `date` on PostgreSQL), no DayRow or Decimal per row. Consume either this or
    # `rows`, once.
    raw_rows: Callable[[], Iterator[tuple[Any, ...]]] | None = field(default=None, compare=False)
    # (month YYYY-MM, tenant slug, plan charge) for each calendar month wholly inside the window
    plan_charges: tuple[tuple[str, str, PlanCharge], ...] = ()


@dataclass(frozen=True)
class RepriceLine:
    """One tenant over a reprice window: the estimated cost as shown now (rollups plus the adjustments posted for
    those days) and as the current price books and plans give it."""

    slug: str
    name: str
    old_cost: Decimal
    new_cost: Decimal

    @property
    def difference(self) -> Decimal:
        return self.new_cost - self.old_cost


@dataclass(frozen=True)
class RepriceReport:
    window: Window
    dry_run: bool
    lines: tuple[RepriceLine, ...]  # tenants with a rollup or raw metrics in the window, by slug
    # What the run wrote (all 0 for a dry run): unsealed tenant-days rolled up, rows changed, adjustments posted.
    tenant_days: int = 0
    changed: int = 0
    adjusted: int = 0

    @property
    def old_total(self) -> Decimal:
        return sum((line.old_cost for line in self.lines), Decimal("0.000000"))

    @property
    def new_total(self) -> Decimal:
        return sum((line.new_cost for line in self.lines), Decimal("0.000000"))


# A meter added to the catalogue needs its typed fields on DayRow (in export order) and Totals.
assert tuple(DayRow.__dataclass_fields__) == EXPORT_COLUMNS, "DayRow's fields are not meters.EXPORT_COLUMNS"
assert {m.total for m in COUNTERS if m.total} <= set(Totals.__dataclass_fields__), "Totals lacks a meter"
