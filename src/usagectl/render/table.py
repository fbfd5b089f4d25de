"""Rich output for people: summary cards, a cost card, the 30-day chart and the daily table; at 80 or 60
columns figures are never truncated (print_fitted).

No colour or styles when the stream is not a terminal or NO_COLOR is set (see render.use_color).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from usagectl.meters import BY_KEY
from usagectl.pricing import format_usd
from usagectl.render import clean_text, use_color
from usagectl.reports import (
    EMPTY_MESSAGE,
    ProviderCosts,
    ReconcileReport,
    RepriceReport,
    TenantReport,
    TenantsReport,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

MAX_WIDTH = 100
CHART_DAYS = 30


def make_console(stream: TextIO, width: int | None = None) -> Console:
    from usagectl.render.console import console_class

    color = use_color(stream)
    return console_class()(
        file=stream,
        width=width,
        color_system="auto" if color else None,
        force_terminal=color or None,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,
    )


def _console(stream: TextIO, width: int | None) -> Console:
    console = make_console(stream, width)
    if width is None and console.width > MAX_WIDTH:
        console = make_console(stream, MAX_WIDTH)
    return console


def n(value: int) -> str:
    return f"{value:,}"


def usd(amount: Decimal | None) -> str:
    return format_usd(amount)


def _card(title: str, lines: Sequence[tuple[str, str]]) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    for k, v in lines:
        grid.add_row(k, v)
    return Panel(grid, title=title, title_align="left", expand=False)


def print_fitted(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    keys: int = 1,
    totals: Sequence[str] | None = None,
    left: int | None = None,
) -> None:
    """A table whose figures are never truncated. When all columns do not fit the console, the columns are split
    into several narrower tables, one under the other, each repeating the first `keys` (identifying) columns; a
    table that still does not fit is printed at its full width and left to the terminal to wrap.

    Columns before index `left` (default: `keys`) are left-aligned, the others right-aligned."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table

    left = keys if left is None else left
    body = [list(r) for r in rows] + ([list(totals)] if totals is not None else [])
    widths = [max(cell_len(h), *(cell_len(r[i]) for r in body)) for i, h in enumerate(headers)]
    gap = 2  # between columns: SIMPLE_HEAD's blank rule plus one space of padding

    def width_of(cols: list[int]) -> int:
        return sum(widths[i] for i in cols) + gap * (len(cols) - 1)

    groups: list[list[int]] = []
    current = list(range(keys))
    for i in range(keys, len(headers)):
        if len(current) > keys and width_of([*current, i]) > console.width:
            groups.append(current)
            current = list(range(keys))
        current.append(i)
    groups.append(current)

    for n_group, cols in enumerate(groups):
        if n_group:
            console.print()
        table = Table(
            title=title if n_group == 0 else None,
            title_justify="left",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            padding=(0, 0),
            show_edge=False,
        )
        for i in cols:
            table.add_column(
                headers[i],
                justify="left" if i < left else "right",
                no_wrap=True,
                min_width=widths[i] + (i > 0),
            )
        for r in rows:
            table.add_row(*(r[i] for i in cols))
        if totals is not None:
            table.add_section()
            table.add_row(*(totals[i] for i in cols), style="bold")
        needed = width_of(cols) + 1
        if needed > console.width:
            # Even one figure column beside the key columns is too wide: print in full and let the terminal wrap.
            console.print(table, width=needed, crop=False)
        else:
            console.print(table)


def render_tenant_report(report: TenantReport, stream: TextIO, *, width: int | None = None) -> None:
    """The report for people: header, cards, cost card with allowances, chart, daily table."""
    if not report.has_usage:
        # Exactly this line and nothing else: it is what a tenant's own dashboard shows before any usage.
        stream.write(EMPTY_MESSAGE + "\n")
        return
    console = _console(stream, width)
    _print_header(console, report)
    _print_cards(console, report)
    _print_provisional(console, report)
    _print_chart(console, report, color=use_color(stream))
    _print_daily_table(console, report)


def _print_header(console: Console, report: TenantReport) -> None:
    from rich.text import Text

    t, w = report.tenant, report.window
    # Rich passes ESC through (it strips only a few controls): a name's escape sequence would reach the terminal.
    header = clean_text(f"{t.name} ({t.slug}) - plan {t.plan_tier}")
    console.print(Text(f"{header} - {w.label()} UTC", style="bold"))


def _print_cards(console: Console, report: TenantReport) -> None:
    """The usage cards, then the cost card and the plan's allowances for the month."""
    from rich.columns import Columns
    from rich.table import Table
    from rich.text import Text

    t, tot = report.tenant, report.totals
    cards = [
        _card(
            "SMS",
            [("sent+recv", n(tot.sms)), ("MMS", n(tot.mms)), ("cost", usd(tot.sms_cost + tot.mms_cost))],
        ),
        _card("Email", [("sent", n(tot.emails)), ("cost", usd(tot.email_cost))]),
        _card("Voice", [("minutes", n(tot.voice_minutes)), ("cost", usd(tot.voice_cost))]),
        _card("AI", [("tokens", n(tot.ai_tokens)), ("cost", usd(tot.ai_cost))]),
    ]
    console.print(Columns(cards, padding=(0, 1)))

    mtd = report.month_to_date
    month_name = mtd.month.start.strftime("%B %Y")
    cost_lines = [("estimated, window", usd(tot.estimated_cost))]
    if tot.provider_cost is not None:
        cost_lines.append(("provider-reported", usd(tot.provider_cost)))
    if report.adjustments:
        # Posted in this window for sealed days of earlier ones: their own months' totals stay as they were.
        count = len(report.adjustments)
        cost_lines.append((f"adjustments ({count})", usd(report.adjustments_cost)))
        cost_lines.append(("window + adjustments", usd(tot.estimated_cost + report.adjustments_cost)))
    cost_lines.append((f"{month_name} to {mtd.as_of:%d %b}", usd(mtd.cost)))
    if mtd.complete:
        cost_lines.append(("month total", usd(mtd.projected_cost)))
    else:
        cost_lines.append(("month-end (estimate)", usd(mtd.projected_cost)))
    cards2: list[RenderableType] = [_card("Cost (USD)", cost_lines)]
    if report.plan_charge is not None:
        cards2.append(_charge_card(report, f"Plan charge to {mtd.as_of:%d %b}"))
    if report.allowances:
        allow = Table(box=None, padding=(0, 1), show_header=True, header_style=None)
        allow.add_column("included", no_wrap=True)
        allow.add_column("used", justify="right", no_wrap=True)
        allow.add_column("of", justify="right", no_wrap=True)
        allow.add_column("%", justify="right", no_wrap=True)
        for a in report.allowances:
            pct = "n/a" if a.percent is None else f"{a.percent}%"
            style = "bold red" if a.over else None
            allow.add_row(
                a.label, n(a.used), n(a.included), Text(pct + (" over" if a.over else ""), style=style or "")
            )
        from rich.panel import Panel

        cards2.append(
            Panel(allow, title=f"Plan {t.plan_tier}: {month_name}", title_align="left", expand=False)
        )
    console.print(Columns(cards2, padding=(0, 1)))


def _print_provisional(console: Console, report: TenantReport) -> None:
    """Today so far (collect --today), in a card of its own titled with its as-of time: in none of the totals
    above."""
    from rich.columns import Columns

    cards = []
    for p in report.provisional:
        d = p.day
        lines = [
            ("SMS+MMS", n(d.sms_total + d.mms_total)),
            ("emails", n(d.email_total)),
            ("voice min", n(d.voice_total_minutes)),
            ("AI tokens", n(d.ai_total_tokens)),
            ("estimated", usd(d.estimated_cost_usd)),
        ]
        cards.append(_card(p.label[0].upper() + p.label[1:], lines))
    if cards:
        console.print(Columns(cards, padding=(0, 1)))


def unknown_days(costs: ProviderCosts | None) -> str:
    """Why a margin is not shown: "unknown for 3 of 30 days"."""
    if costs is None or costs.days == 0:
        return "no provider cost"
    return f"unknown for {costs.unknown_days} of {costs.days} days"


def signed_usd(amount: Decimal) -> str:
    """A margin or difference: "-$1.50" below zero (format_usd alone would show "$-1.50")."""
    return "-" + usd(-amount) if amount < 0 else usd(amount)


def margin_text(margin: Decimal | None) -> str:
    """A margin, or "incomplete" while some provider cost of the month is unknown (never $0)."""
    return "incomplete" if margin is None else signed_usd(margin)


def _charge_card(report: TenantReport, title: str) -> RenderableType:
    """The plan charge: the fee, each meter's units above its allowance and their amount, the total, the margin
    (or how many provider-cost days are unknown). Three narrow columns: it fits beside the cost card at 60."""
    from rich.panel import Panel
    from rich.table import Table

    charge = report.plan_charge
    assert charge is not None
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_row("monthly fee", "", usd(charge.fee))
    for line in charge.lines:
        if line.overage:
            grid.add_row(BY_KEY[line.meter].label, "+" + n(line.overage), usd(line.amount))
    grid.add_row("plan charge", "", usd(charge.total))
    costs = report.provider_costs
    if costs is not None and costs.complete:
        grid.add_row("provider-reported", "", usd(costs.cost))
        grid.add_row("margin", "", margin_text(report.margin))
    else:
        grid.add_row("margin", "", "incomplete")
        if costs is not None and costs.days:
            grid.add_row("provider cost", "unknown", f"{costs.unknown_days} of {costs.days} days")
    return Panel(grid, title=title, title_align="left", expand=False)


def _print_chart(console: Console, report: TenantReport, *, color: bool) -> None:
    """The estimated cost per day of the last CHART_DAYS days (none for a single day)."""
    from rich.text import Text

    from usagectl.render.chart import line_chart

    series = report.daily_series()[-CHART_DAYS:]
    if len(series) < 2:
        return
    labels = [d.strftime("%m-%d") for d, _ in series]
    # Floats only to place points on the chart; every figure printed elsewhere is exact.
    # A day without a rollup is a gap, not $0.
    values = [float(row.estimated_cost_usd) if row else None for _, row in series]
    chart = line_chart(labels, values, width=console.width, title="Estimated cost per day (USD)", color=color)
    console.print(Text.from_ansi(chart), no_wrap=True, overflow="crop")


def _print_daily_table(console: Console, report: TenantReport) -> None:
    """One row per day with a rollup, the totals, the missing days and the price books used."""
    tot = report.totals
    show_provider = any(d.provider_cost_usd is not None for d in report.days)
    headers = ["date", "SMS", "MMS", "voice min", "email", "AI tokens", "est. cost"]
    if show_provider:
        headers.append("provider $")
    rows = []
    for d in report.days:
        cells = [
            d.date.isoformat(),
            n(d.sms_total),
            n(d.mms_total),
            n(d.voice_total_minutes),
            n(d.email_total),
            n(d.ai_total_tokens),
            usd(d.estimated_cost_usd),
        ]
        if show_provider:
            cells.append(usd(d.provider_cost_usd))
        rows.append(cells)
    totals = ["total", n(tot.sms), n(tot.mms), n(tot.voice_minutes), n(tot.emails), n(tot.ai_tokens)]
    totals.append(usd(tot.estimated_cost))
    if show_provider:
        totals.append(usd(tot.provider_cost))
    # Each column as wide as its widest cell, split into narrower tables when the console is narrow: Rich would
    # otherwise squeeze the table by truncating numbers ("$18"), which must never happen to a figure.
    print_fitted(console, headers, rows, title="Daily usage (UTC days)", totals=totals)
    missing = report.missing_days
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
        console.print(f"No rollup (missing, not zero) for {len(missing)} day(s) of the window: {shown}")
    versions = sorted({clean_text(d.pricing_version) for d in report.days})
    console.print(
        f"Priced with price book {', '.join(versions)}; costs are estimates from usagectl's price book."
    )


def render_tenants(report: TenantsReport, stream: TextIO, *, width: int | None = None) -> None:
    """The tenants ranking for a month, with a total row over all tenants."""

    console = _console(stream, width)
    month = report.month.start.strftime("%B %Y")
    shown = len(report.lines)
    more = f", top {shown} of {report.tenant_count}" if shown < report.tenant_count else ""
    with_charge = any(line.plan_charge is not None for line in report.lines)
    rows = [
        [
            clean_text(line.slug) + ("" if line.active else " (inactive)"),
            line.plan_tier,
            n(line.sms),
            n(line.emails),
            n(line.voice_minutes),
            n(line.ai_tokens),
            usd(line.estimated_cost),
            *(
                (usd(line.plan_charge.total if line.plan_charge else None), margin_text(line.margin))
                if with_charge
                else ()
            ),
        ]
        for line in report.lines
    ]
    tot = report.total
    totals = [
        f"total ({report.tenant_count})",
        "",
        n(tot.sms),
        n(tot.emails),
        n(tot.voice_minutes),
        n(tot.ai_tokens),
        usd(tot.estimated_cost),
        *((usd(report.plan_charge_total), margin_text(report.margin_total)) if with_charge else ()),
    ]
    print_fitted(
        console,
        (
            "tenant",
            "plan",
            "SMS",
            "emails",
            "voice min",
            "AI tokens",
            "est. cost",
            *(("plan charge", "margin") if with_charge else ()),
        ),
        rows,
        title=f"Tenants - {month} (UTC) - by {report.sort}{more}",
        totals=totals,
        left=2,
    )
    if not report.lines:
        console.print("No tenants configured yet: add [[tenants]] to the config (see `usagectl init`).")


def render_reconcile(report: ReconcileReport, stream: TextIO, *, width: int | None = None) -> None:
    """Per tenant and provider: usage, our estimate, the provider's reported cost and the difference."""
    console = _console(stream, width)
    rows = []
    for line in report.lines:
        used = ", ".join(f"{n(v)} {BY_KEY[k].label}" for k, v in line.usage.items() if v) or "none"
        if line.unknown_days == 0:
            reported = usd(line.provider_cost)
        elif line.provider_cost is None:
            reported = f"unknown for {line.unknown_days} of {line.days} days"
        else:
            reported = f"{usd(line.provider_cost)} (unknown for {line.unknown_days} of {line.days} days)"
        diff = line.difference
        pct = line.difference_percent
        rows.append(
            [
                clean_text(line.tenant),
                line.provider,
                used,
                usd(line.estimated_cost),
                reported,
                "unknown" if diff is None else ("+" if diff > 0 else "") + signed_usd(diff),
                "n/a" if pct is None else f"{pct:+}%",
            ]
        )
    month = report.month.start.strftime("%B %Y")
    print_fitted(
        console,
        ("tenant", "provider", "usage", "estimate", "provider-reported", "difference", "%"),
        rows,
        title=f"Reconcile - {month} (UTC) to {report.as_of:%d %b}",
        left=3,
    )
    if not report.lines:
        console.print("No provider usage stored for this month: run `usagectl collect` first.")


def render_reprice(report: RepriceReport, stream: TextIO, *, width: int | None = None) -> None:
    """Per tenant: the estimated cost of the window as shown now, as repriced, and the difference."""
    console = _console(stream, width)
    rows = [
        [clean_text(line.slug), _exact(line.old_cost), _exact(line.new_cost), _signed(line.difference)]
        for line in report.lines
    ]
    totals = [
        "total",
        _exact(report.old_total),
        _exact(report.new_total),
        _signed(report.new_total - report.old_total),
    ]
    what = "dry run, nothing written" if report.dry_run else "written"
    print_fitted(
        console,
        ("tenant", "old cost", "new cost", "difference"),
        rows,
        title=f"Reprice - {report.window.label()} UTC ({what})",
        totals=totals,
    )
    if not report.lines:
        console.print("No rollups or raw metrics in this window.")


def _signed(amount: Decimal) -> str:
    return ("+" if amount > 0 else "") + _exact(amount)


def _exact(amount: Decimal) -> str:
    # Finance compares these to the micro-dollar: no rounding to cents.
    return format_usd(amount, 6)
