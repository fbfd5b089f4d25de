"""The presentation model: what each audience is shown of a report, decided in one place.

From a report object (usagectl.reports) and an audience it builds the usage cards, the cost lines, the plan
charge lines, the daily columns and the tenant columns. The terminal renderer (render.table), the JSON writer and
the API (render.json, web.api), the CSV writer (render.csv) and the pages (web.pages and their templates, which
loop over these columns instead of naming cells) all consume it, so a card or a column is written once.

Audiences:
- ``tenant``: a tenant admin. Never the platform's provider cost, margin or reconcile figures.
- ``root``: a root admin in the web app or API; sees those too.
- ``operator``: whoever runs the CLI on the platform's host; sees everything a root admin does.

Driven by the meter catalogue: a meter with a ``card`` appears on the cards, in the daily columns of every surface
and in the JSON cards, with no template edit. The catalogue is read when a layout is built (not at import), so a
test can add a meter to a fixture catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from usagectl import meters as catalogue
from usagectl.meters import Meter
from usagectl.pricing import part_label
from usagectl.render.fmt import change_percent, margin_text, n, signed_usd, usd
from usagectl.reports import (
    EXPORT_COLUMNS,
    MIN_PROJECTION_DAYS,
    TenantLine,
    TenantReport,
    TenantsReport,
    Totals,
)

Audience = Literal["tenant", "root", "operator"]
AUDIENCES: tuple[Audience, ...] = ("tenant", "root", "operator")
Kind = Literal["date", "count", "money", "text", "change"]

#: export/JSON fields that are the platform's own figures: never shown to a tenant admin
PLATFORM_FIELDS = frozenset({"provider_cost_usd", "provider_costs", "margin_usd", "difference_usd"})


def sees_platform(audience: Audience) -> bool:
    """Whether this audience may see the platform's provider cost, margin and reconcile figures."""
    return audience != "tenant"


@dataclass(frozen=True)
class Line:
    """One labelled figure: `text` for people, `value` (exact) under `key` for machines."""

    label: str
    text: str
    key: str = ""
    value: Any = None
    note: str = ""  # "projection", "total", ...: a class for the page, a hint for people
    detail: str = ""  # a short qualifier shown between label and figure ("+3,120" units over an allowance)


@dataclass(frozen=True)
class Card:
    key: str  # for machines: "sms", "email", ...
    title: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Column:
    """A table column: `key` is the machine name (the export column), `header` for people."""

    key: str
    header: str
    kind: Kind
    get: Callable[[Any], Any]
    sort: str | None = None  # the ranking's sort key, for a column one can sort by

    @property
    def numeric(self) -> bool:
        return self.kind in ("count", "money", "change")

    def text(self, row: Any) -> str:
        return show(self.kind, self.get(row))


def show(kind: Kind, value: Any) -> str:
    """A cell for people."""
    if kind == "count":
        return n(value)
    if kind == "money":
        return usd(value)
    if kind == "date":
        return str(value.isoformat())
    return "" if value is None else str(value)


def card_meters() -> tuple[Meter, ...]:
    return tuple(m for m in catalogue.METERS if m.card and m.total)


def usage_cards(report: TenantReport) -> tuple[Card, ...]:
    """One card per `Meter.card` of the catalogue, in catalogue order: each meter's units over the window, then
    the card's estimated cost (when one of its meters is priced)."""
    tot = report.totals
    by_card: dict[str, list[Meter]] = {}
    for m in card_meters():
        by_card.setdefault(m.card or "", []).append(m)
    cards = []
    for title, ms in by_card.items():
        lines = [Line(m.card_label or m.label, n(getattr(tot, m.total or "")), m.rollup, getattr(tot, m.total or ""))
                 for m in ms]  # fmt: skip
        priced = [m for m in ms if m.priced]
        if priced:
            cost = sum((getattr(tot, f"{m.key}_cost") for m in priced), Decimal("0.000000"))
            lines.append(Line("cost", usd(cost), "estimated_cost_usd", cost))
        cards.append(Card(title.lower().replace(" ", "_"), title, tuple(lines)))
    return tuple(cards)


def month_name(report: TenantReport) -> str:
    return report.month_to_date.month.start.strftime("%B %Y")


def cost_lines(report: TenantReport, audience: Audience) -> tuple[Line, ...]:
    """The cost card: the window's estimate, (root) the providers' reported cost, adjustments posted in the
    window, the month so far and its total or projection (an estimate, shown from MIN_PROJECTION_DAYS days)."""
    tot, mtd = report.totals, report.month_to_date
    lines = [
        Line("Estimated, this window", usd(tot.estimated_cost), "estimated_cost_usd", tot.estimated_cost)
    ]
    if sees_platform(audience) and tot.provider_cost is not None:
        lines.append(
            Line(
                "Provider-reported, this window",
                usd(tot.provider_cost),
                "provider_cost_usd",
                tot.provider_cost,
            )
        )
    if report.adjustments:
        # Posted in this window for sealed days of earlier ones: their own months' totals stay as they were.
        lines.append(Line(f"Adjustments ({len(report.adjustments)})", usd(report.adjustments_cost)))
        total = tot.estimated_cost + report.adjustments_cost
        lines.append(Line("Window + adjustments", usd(total)))
    lines.append(
        Line(f"{month_name(report)} to {mtd.as_of:%d %b}", usd(mtd.cost), "month_to_date_usd", mtd.cost)
    )
    if mtd.complete:
        lines.append(
            Line("Month total", usd(mtd.projected_cost), "month_total_usd", mtd.projected_cost, "total")
        )
    elif mtd.projection_ready:
        lines.append(
            Line("Month-end projection (estimate)", usd(mtd.projected_cost), "projected_month_cost_usd",
                 mtd.projected_cost, "projection")
        )  # fmt: skip
    return tuple(lines)


def charge_lines(report: TenantReport, audience: Audience) -> tuple[Line, ...]:
    """What the plan charges for the month so far: the fee, each meter above its allowance, the overage, the
    charge so far, what the month comes to at this pace (a projection) and, for the platform, the providers'
    cost and the margin (or why it is not known)."""
    charge = report.plan_charge
    if charge is None:
        return ()
    # A plan change in the month: each plan's days and its fee prorated by them ("Starter 1-14 Nov", "Pro from
    # 15 Nov"; docs/cost-model.md, Plan changes), then the fee they sum to.
    lines = [
        Line(label[:1].upper() + label[1:], usd(p.charge.fee), "", p.charge.fee, detail="fee")
        for p in charge.parts
        if (label := part_label(p))
    ]
    lines.append(Line("Monthly fee", usd(charge.fee), "monthly_fee_usd", charge.fee))
    for ol in charge.lines:
        if ol.overage:
            label = catalogue.BY_KEY[ol.meter].label
            lines.append(Line(label, usd(ol.amount), "", ol.amount, "overage", f"+{n(ol.overage)}"))
    lines.append(Line("Overage so far", usd(charge.overage), "overage_usd", charge.overage))
    mtd = report.month_to_date
    so_far = "Plan charge, month total" if mtd.complete else f"Plan charge to {mtd.as_of:%d %b}"
    lines.append(Line(so_far, usd(charge.total), "plan_charge_usd", charge.total, "total"))
    if report.projected_charge is not None:
        lines.append(
            Line("At this pace (projection)", usd(report.projected_charge), "projected_plan_charge_usd",
                 report.projected_charge, "projection")
        )  # fmt: skip
    if sees_platform(audience):
        costs = report.provider_costs
        if costs is not None and costs.complete:
            lines.append(Line("Provider-reported", usd(costs.cost), "provider_cost_usd", costs.cost))
            lines.append(Line("Margin", margin_text(report.margin), "margin_usd", report.margin))
        else:
            lines.append(Line("Margin", "incomplete", "margin_usd", None))
            if costs is not None and costs.days:
                days = f"{costs.unknown_days} of {costs.days} days"
                lines.append(Line("Provider cost", days, "", None, detail="unknown"))
    return tuple(lines)


def projection_note(report: TenantReport) -> str:
    """Why no projection is shown yet, or what it assumes."""
    mtd = report.month_to_date
    if mtd.complete:
        return ""
    if not mtd.projection_ready:
        return (
            f"No month-end projection before {MIN_PROJECTION_DAYS} days of the month have passed "
            f"({mtd.elapsed_days} so far)."
        )
    return "Projections assume the rest of the month goes at the pace of the days so far; they are estimates."


def daily_columns(report: TenantReport, audience: Audience) -> tuple[Column, ...]:
    """The daily table: the date, each carded meter's units, the estimated cost and (platform, when a provider
    reported one) the provider-reported cost. Date and cost come first on a phone (the stylesheet's job)."""
    cols = [Column("date", "Date", "date", _attr("date"))]
    cols += [Column(m.rollup, m.label, "count", _attr(m.rollup)) for m in card_meters()]
    cols.append(Column("estimated_cost_usd", "Est. cost", "money", _attr("estimated_cost_usd")))
    if sees_platform(audience) and any(d.provider_cost_usd is not None for d in report.days):
        cols.append(Column("provider_cost_usd", "Provider cost", "money", _attr("provider_cost_usd")))
    return tuple(cols)


def daily_totals(report: TenantReport, columns: Sequence[Column]) -> list[str]:
    """The daily table's total row, for `columns` (the window's totals, as the report computed them)."""
    tot = report.totals
    by_rollup = {m.rollup: getattr(tot, m.total or "") for m in card_meters()}
    values = {**by_rollup, "estimated_cost_usd": tot.estimated_cost, "provider_cost_usd": tot.provider_cost}
    return ["Total" if c.key == "date" else show(c.kind, values[c.key]) for c in columns]


def export_columns(audience: Audience) -> tuple[str, ...]:
    """The export's columns (CSV, the API's days) this audience may see."""
    if sees_platform(audience):
        return EXPORT_COLUMNS
    return tuple(c for c in EXPORT_COLUMNS if c not in PLATFORM_FIELDS)


def tenant_columns(
    report: TenantsReport, audience: Audience, *, previous: dict[str, Decimal] | None = None
) -> tuple[Column, ...]:
    """The ranking: tenant, plan, each ranked meter, the estimated cost, (with `previous`, slug -> last month's
    estimated cost) the month-over-month change, and the plan charge and margin when plan charges are known.
    The sort column follows the tenant (a narrow terminal keeps it in view)."""
    cols = [
        Column("tenant", "Tenant", "text", lambda t: t.slug, sort="name"),
        Column("plan_tier", "Plan", "text", lambda t: t.plan_tier),
    ]
    cols += [Column(m.rollup, m.label, "count", _attr(m.total or ""), sort=m.key) for m in catalogue.RANKED]
    cols.append(Column("estimated_cost_usd", "Est. cost", "money", _attr("estimated_cost"), sort="cost"))
    if previous is not None:
        cols.append(
            Column("change_percent", "vs last month", "change",
                   lambda t: change_percent(t.estimated_cost, previous.get(t.slug)))
        )  # fmt: skip
    if any(t.plan_charge is not None for t in report.lines) or report.plan_charge_total:
        cols.append(Column("plan_charge_usd", "Plan charge", "money", _charge, sort="plan_charge"))
        if sees_platform(audience):
            cols.append(
                Column("margin_usd", "Margin", "text", lambda t: margin_text(t.margin), sort="margin")
            )
    return tuple(cols)


def tenant_totals(
    columns: Sequence[Column],
    label: str,
    totals: Totals,
    plan_charge: Decimal | None,
    margin: Decimal | None,
) -> list[str]:
    """A total row under the ranking's `columns`: `label` under the tenant, the sums under their columns, blank
    where a sum means nothing (the plan, the month-over-month change)."""
    values = {
        "tenant": label,
        **{m.rollup: n(getattr(totals, m.total or "")) for m in catalogue.RANKED},
        "estimated_cost_usd": usd(totals.estimated_cost),
        "plan_charge_usd": usd(plan_charge),
        "margin_usd": margin_text(margin),
    }
    return [values.get(c.key, "") for c in columns]


def sort_first(columns: Sequence[Column], sort: str) -> tuple[Column, ...]:
    """`columns` with the sorted column moved next to the tenant (for a narrow terminal)."""
    key = [c for c in columns if c.sort == sort and c.key != "tenant"]
    rest = [c for c in columns if c not in key]
    return (rest[0], *key, *rest[1:])


def _charge(t: TenantLine) -> Decimal | None:
    return t.plan_charge.total if t.plan_charge else None


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda row: getattr(row, name)


__all__ = [
    "AUDIENCES",
    "PLATFORM_FIELDS",
    "Audience",
    "Card",
    "Column",
    "Line",
    "charge_lines",
    "cost_lines",
    "daily_columns",
    "daily_totals",
    "export_columns",
    "sees_platform",
    "show",
    "signed_usd",
    "sort_first",
    "tenant_columns",
    "tenant_totals",
    "usage_cards",
]
