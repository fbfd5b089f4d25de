"""Rich output for people: summary cards, a cost card, the 30-day chart and the daily table; at 80 or 60
columns figures are never truncated (print_fitted).

No colour or styles when the stream is not a terminal or NO_COLOR is set (see render.use_color).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from usagectl.meters import BY_KEY
from usagectl.render import clean_text, layout, use_color
from usagectl.render.fmt import exact_usd, n, signed_usd, usd
from usagectl.reports import (
    EMPTY_MESSAGE,
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


def _card(title: str, lines: Sequence[tuple[str, str]] | Sequence[layout.Line]) -> RenderableType:
    """A titled panel of label/figure rows; layout lines with a detail get a middle column for it."""
    from rich.panel import Panel
    from rich.table import Table

    rows = [(x.label, x.detail, x.text) if isinstance(x, layout.Line) else (x[0], "", x[1]) for x in lines]
    with_detail = any(detail for _, detail, _ in rows)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    if with_detail:
        grid.add_column(justify="right", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    for label, detail, text in rows:
        grid.add_row(label, detail, text) if with_detail else grid.add_row(label, text)
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
    right: Sequence[bool] | None = None,
) -> None:
    """A table whose figures are never truncated. When all columns do not fit the console, the columns are split
    into several narrower tables, one under the other, each repeating the first `keys` (identifying) columns; a
    table that still does not fit is printed at its full width and left to the terminal to wrap.

    Columns before index `left` (default: `keys`) are left-aligned, the others right-aligned; `right` (one flag
    per column) says it column by column instead."""
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
                justify=("right" if right[i] else "left")
                if right is not None
                else ("left" if i < left else "right"),
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
    _print_chart(console, report, color=use_color(stream))
    _print_daily_table(console, report)


def _print_header(console: Console, report: TenantReport) -> None:
    from rich.text import Text

    t, w = report.tenant, report.window
    # Rich passes ESC through (it strips only a few controls): a name's escape sequence would reach the terminal.
    header = clean_text(f"{t.name} ({t.slug}) - plan {t.plan_tier}")
    console.print(Text(f"{header} - {w.label()} UTC", style="bold"))


def _print_cards(console: Console, report: TenantReport) -> None:
    """The usage cards, then the cost card, the plan charge and the plan's allowances for the month, as
    render.layout gives them to an operator."""
    from rich.columns import Columns
    from rich.table import Table
    from rich.text import Text

    cards = [
        _card(c.title, [(line.label, line.text) for line in c.lines]) for c in layout.usage_cards(report)
    ]
    console.print(Columns(cards, padding=(0, 1)))

    cards2: list[RenderableType] = [_card("Cost (USD)", layout.cost_lines(report, "operator"))]
    charge = layout.charge_lines(report, "operator")
    if charge:
        cards2.append(_card(f"Plan charge to {report.month_to_date.as_of:%d %b}", charge))
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

        title = f"Plan {clean_text(report.tenant.plan_tier)}: {layout.month_name(report)}"
        cards2.append(Panel(allow, title=title, title_align="left", expand=False))
    console.print(Columns(cards2, padding=(0, 1)))
    note = layout.projection_note(report)
    if note:
        console.print(note)


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
    columns = layout.daily_columns(report, "operator")
    headers = [c.header for c in columns]
    rows = [[c.text(d) for c in columns] for d in report.days]
    totals = layout.daily_totals(report, columns)
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


def _fits(console: Console, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """Whether a print_fitted table of these cells fits the console in one piece."""
    from rich.cells import cell_len

    widths = [max(cell_len(h), *(cell_len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    return sum(widths) + 2 * (len(widths) - 1) + 1 <= console.width


def render_tenants(report: TenantsReport, stream: TextIO, *, width: int | None = None) -> None:
    """The tenants ranking for a month, with a total row over all tenants. The sort column follows the tenant
    and plan when the table does not fit in one piece (at 60 columns), so it stays in the first table."""

    console = _console(stream, width)
    month = report.month.start.strftime("%B %Y")
    shown = len(report.lines)
    more = f", top {shown} of {report.tenant_count}" if shown < report.tenant_count else ""

    def cells_of(columns: Sequence[layout.Column]) -> tuple[list[list[str]], list[str]]:
        rows = []
        for line in report.lines:
            cells = [clean_text(c.text(line)) for c in columns]
            if not line.active:
                cells[0] += " (inactive)"
            rows.append(cells)
        label = f"total ({report.tenant_count})"
        totals = layout.tenant_totals(
            columns, label, report.total, report.plan_charge_total, report.margin_total
        )
        return rows, totals

    columns = layout.tenant_columns(report, "operator")
    rows, totals = cells_of(columns)
    if not _fits(console, [c.header for c in columns], [*rows, totals]):
        # Split over several tables: the sort column moves beside the tenant so it stays in the first one.
        columns = layout.sort_first(columns, report.sort)
        rows, totals = cells_of(columns)
    print_fitted(
        console,
        [c.header.lower() if c.key in ("tenant", "plan_tier") else c.header for c in columns],
        rows,
        title=f"Tenants - {month} (UTC) - by {report.sort}{more}",
        totals=totals,
        keys=1 if columns[1].key == "plan_tier" else 2,
        right=[c.numeric or c.key == "margin_usd" for c in columns],
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
        # Every split table repeats the tenant and the provider: a row of figures is never anonymous.
        keys=2,
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
    return exact_usd(amount)
