"""Price books, plan tiers and the cost of a tenant-day, exactly.

Each cost line (sms, mms, voice, email, ai) of one tenant-day is rounded once, half-up, to the micro-dollar; a
day's total is the sum of its lines and a month's total the sum of its days, so figures always reconcile.
Money is `Decimal` here and integer micro-USD in the database (see store.tables.Money).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from itertools import pairwise

from usagectl.config import DEFAULT_BOOK, PLAN_TIERS, Config, ModelPrice, PlanConfig, PriceBook, PricingConfig
from usagectl.meters import COST_LINES, PRICED
from usagectl.money import PICOS_PER_USD, from_micros, round_micro, to_micros, to_picos
from usagectl.periods import Window
from usagectl.records import ModelTokens


@dataclass(frozen=True)
class DayUsage:
    """What one tenant used on one UTC day, summed over sources."""

    sms: int = 0
    mms: int = 0
    voice_minutes: int = 0
    emails: int = 0
    ai_tokens_in: int = 0
    ai_tokens_out: int = 0
    # Tokens known per model (a subset of the totals above); priced by the book's per-model rates when it has one.
    ai_by_model: tuple[ModelTokens, ...] = ()

    @property
    def ai_tokens(self) -> int:
        return self.ai_tokens_in + self.ai_tokens_out


@dataclass(frozen=True)
class UnitPrices:
    version: str
    sms: Decimal
    mms: Decimal
    voice_minute: Decimal
    email: Decimal
    ai_token: Decimal
    ai_models: dict[str, ModelPrice] = field(default_factory=dict)


@dataclass(frozen=True)
class CostBreakdown:
    pricing_version: str
    sms: Decimal
    mms: Decimal
    voice: Decimal
    email: Decimal
    ai: Decimal

    @property
    def total(self) -> Decimal:
        return self.sms + self.mms + self.voice + self.email + self.ai

    def lines(self) -> dict[str, Decimal]:
        return {name: getattr(self, name) for name in COST_LINES}


def book_for(day: date, pricing: PricingConfig) -> PriceBook:
    """The book in effect on `day`: the latest whose effective_from is on or before it."""
    current: PriceBook | None = None
    for book in pricing.books:  # sorted by date at validation
        if book.effective_from <= day:
            current = book
    # Before the first book's date the earliest book applies: usage is never left unpriced by a config typo.
    return current or (pricing.books[0] if pricing.books else DEFAULT_BOOK)


def unit_prices(book: PriceBook, plan: PlanConfig) -> UnitPrices:
    o = plan.overrides
    return UnitPrices(
        version=book.version,
        sms=o.sms if o.sms is not None else book.sms,
        mms=o.mms if o.mms is not None else book.mms,
        voice_minute=o.voice_minute if o.voice_minute is not None else book.voice_minute,
        email=o.email if o.email is not None else book.email,
        ai_token=o.ai_token if o.ai_token is not None else book.ai_token,
        ai_models=dict(book.ai_models),
    )


def plan_tiers(cfg: Config) -> tuple[str, ...]:
    """Every plan a tenant can be priced with, from the config alone (never by reading the tenants): each plan
    tier, and '' standing for any tier the config does not know, which `Config.plan` gives the default plan. SQL
    that prices tenants (rollup, the reports' ranking) joins a tenant's tier to these, any other to ''."""
    return (*PLAN_TIERS, "")


def prices_for(cfg: Config, plan_tier: str, day: date) -> UnitPrices:
    return unit_prices(book_for(day, cfg.pricing), cfg.plan(plan_tier))


def _ai_cost(usage: DayUsage, prices: UnitPrices) -> Decimal:
    cost = Decimal(0)
    rest_in, rest_out = usage.ai_tokens_in, usage.ai_tokens_out
    for m in usage.ai_by_model:
        rate = prices.ai_models.get(m.model)
        if rate is None:
            continue
        cached = m.cached_in if rate.cached_input is not None else 0
        written = m.cache_write_in if rate.cache_write_input is not None else 0
        cost += (m.tokens_in - cached - written) * rate.input + m.tokens_out * rate.output
        if rate.cached_input is not None:
            cost += cached * rate.cached_input
        if rate.cache_write_input is not None:
            cost += written * rate.cache_write_input
        rest_in -= m.tokens_in
        rest_out -= m.tokens_out
    if rest_in < 0 or rest_out < 0:
        raise ValueError("per-model AI tokens exceed the day's AI token totals")
    return cost + (rest_in + rest_out) * prices.ai_token


def cost_of_day(usage: DayUsage, prices: UnitPrices) -> CostBreakdown:
    """The cost of one tenant-day: each line exact, then rounded half-up to the micro-dollar."""
    lines = {
        # A meter priced per model first (AI): the models the book has a rate for, the rest at the unit price.
        m.key: round_micro(
            _ai_cost(usage, prices)
            if m.per_model
            else getattr(usage, m.total or "") * getattr(prices, m.unit_price or "")
        )
        for m in PRICED
    }
    return CostBreakdown(pricing_version=prices.version, **lines)


@dataclass(frozen=True)
class OverageLine:
    """One priced meter of a plan charge: the month's use, the plan's allowance and what is charged above it."""

    meter: str  # meters.Meter.key
    used: int
    included: int  # 0 when the plan includes none of it
    overage: int  # units above `included`
    amount: Decimal  # exact, then rounded half-up to the micro-dollar once


@dataclass(frozen=True)
class PlanCharge:
    """What a tenant's plan charges for a month (so far): the monthly fee plus the overage of each priced meter."""

    plan_tier: str  # with a plan change in the month: the plan of its last part
    fee: Decimal
    lines: tuple[OverageLine, ...]
    # A month with a plan change: one part per plan (prorated_plan_charge), `fee` and `lines` their sums.
    parts: tuple[PlanPart, ...] = ()

    @property
    def overage(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.000000"))

    @property
    def total(self) -> Decimal:
        return self.fee + self.overage


def book_segments(window: Window, pricing: PricingConfig) -> list[Window]:
    """`window` cut where a price book takes effect inside it: one price book (per plan) applies to each piece."""
    cuts = sorted({b.effective_from for b in pricing.books if window.start < b.effective_from < window.end})
    edges = [window.start, *cuts, window.end]
    return [Window(a, b) for a, b in pairwise(edges)]


def plan_charge(
    plan_tier: str, plan: PlanConfig, segments: Sequence[tuple[UnitPrices, Mapping[str, int]]]
) -> PlanCharge:
    """The plan charge of one tenant-month from its usage per price-book segment (oldest first; meter key ->
    units). The allowance is used up in date order, so each unit above it is charged at the unit price of the
    day it was used; a meter without an allowance in the plan includes nothing. Each line is summed exactly in
    pico-USD and rounded half-up to the micro-dollar once, like a cost line."""
    lines = []
    for m in PRICED:
        included = getattr(plan.included, m.allowance or "", None) or 0
        left, used, over, picos = included, 0, 0, 0
        for prices, usage in segments:
            units = usage.get(m.key, 0)
            free = min(left, units)
            left -= free
            used += units
            over += units - free
            picos += (units - free) * to_picos(getattr(prices, m.unit_price or ""))
        amount = round_micro(Decimal(picos) / PICOS_PER_USD)
        lines.append(OverageLine(meter=m.key, used=used, included=included, overage=over, amount=amount))
    fee = round_micro(plan.monthly_fee or Decimal(0))
    return PlanCharge(plan_tier=plan_tier, fee=fee, lines=tuple(lines))


@dataclass(frozen=True)
class PlanPart:
    """The days of a month spent on one plan and what they charge: the fee and allowances prorated by days."""

    plan_tier: str
    days: Window  # part of the calendar month
    month_days: int
    charge: PlanCharge


def prorate(amount: int, days: int, month_days: int) -> int:
    """`amount` * days / month_days, rounded half-up to a whole unit (an allowance, or micro-USD of a fee)."""
    return (2 * amount * days + month_days) // (2 * month_days)


def prorated_plan_charge(
    cfg: Config,
    month: Window,
    pieces: Sequence[tuple[str, Window]],
    usage: Mapping[Window, Mapping[str, int]],
    prices: dict[tuple[str, date], UnitPrices] | None = None,
) -> PlanCharge:
    """The plan charge of one tenant-month (Stripe's default proration; docs/cost-model.md, Plan changes).

    `pieces` are the month's days on each plan (oldest first, together the whole calendar month); `usage` the
    priced meters' units per segment of the month so far, each segment wholly inside one piece and one price
    book. Each piece charges its plan's monthly fee times its days over the month's days, and includes its
    plan's allowances prorated the same way (half-up to a whole unit); the units above a piece's allowance, used
    up in date order within the piece, are priced with that piece's plan on the day they were used. An
    allowance does not carry over from one piece to the next."""
    n = month.days
    parts: list[PlanPart] = []
    for tier, piece in pieces:
        plan = cfg.plan(tier)
        segs = sorted(
            (w for w in usage if piece.start <= w.start and w.end <= piece.end), key=lambda w: w.start
        )
        cache = {} if prices is None else prices  # (tier, day) -> unit prices, shared across tenants
        segments = []
        for w in segs:
            if (tier, w.start) not in cache:
                cache[tier, w.start] = prices_for(cfg, tier, w.start)
            segments.append((cache[tier, w.start], usage[w]))
        whole = plan_charge(tier, plan, segments)
        if piece.days == n:
            parts.append(PlanPart(tier, piece, n, whole))
            continue
        included = plan.included.model_copy(
            update={
                k: prorate(v, piece.days, n) for k, v in plan.included.model_dump().items() if v is not None
            }
        )
        fee = from_micros(prorate(to_micros(round_micro(plan.monthly_fee or Decimal(0))), piece.days, n))
        charge = plan_charge(
            tier, plan.model_copy(update={"included": included, "monthly_fee": fee}), segments
        )
        parts.append(PlanPart(tier, piece, n, charge))
    lines = []
    for i, m in enumerate(PRICED):
        of = [p.charge.lines[i] for p in parts]
        lines.append(
            OverageLine(
                meter=m.key,
                used=sum(x.used for x in of),
                included=sum(x.included for x in of),
                overage=sum(x.overage for x in of),
                amount=sum((x.amount for x in of), Decimal("0.000000")),
            )
        )
    if len(parts) == 1:
        return parts[0].charge
    return PlanCharge(
        plan_tier=parts[-1].plan_tier,
        fee=sum((p.charge.fee for p in parts), Decimal("0.000000")),
        lines=tuple(lines),
        parts=tuple(parts),
    )


def plan_summary(charge: PlanCharge) -> str | None:
    """The plans of a month with a change, for people: "Starter 1-14 Nov, Pro from 15 Nov"; None without one."""
    if not charge.parts:
        return None
    return ", ".join((label := part_label(part))[:1].upper() + label[1:] for part in charge.parts)


def part_label(part: PlanPart) -> str:
    """One plan's days of the month: "starter 1-14 Nov", "pro from 15 Nov" (to the month's end), "pro 3 Nov"."""
    w = part.days
    if w.start.day > 1 and w.last.day == part.month_days:
        return f"{part.plan_tier} from {w.start.day} {w.start:%b}"
    if w.days == 1:
        return f"{part.plan_tier} {w.start.day} {w.start:%b}"
    return f"{part.plan_tier} {w.start.day}-{w.last.day} {w.last:%b}"


# A priced meter added to the catalogue needs its quantity on DayUsage and its line on CostBreakdown.
assert all(hasattr(DayUsage, m.total or "") or m.total in DayUsage.__dataclass_fields__ for m in PRICED)
assert set(COST_LINES) <= set(CostBreakdown.__dataclass_fields__)
