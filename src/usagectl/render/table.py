"""Rich output for people: summary cards, a cost card, the 30-day chart and the daily table,
80 columns friendly.

No colour or styles when the stream is not a terminal or NO_COLOR is set (see render.use_color).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from usagectl.pricing import format_usd
from usagectl.render import use_color
from usagectl.reports import EMPTY_MESSAGE, TenantReport, TenantsReport

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


def render_tenant_report(report: TenantReport, stream: TextIO, *, width: int | None = None) -> None:
    """The report for people: header, cards, cost card with allowances, chart, daily table."""
    from rich import box
    from rich.columns import Columns
    from rich.table import Table
    from rich.text import Text

    from usagectl.render.chart import line_chart

    if not report.has_usage:
        # Exactly this line and nothing else: it is what a tenant's own dashboard shows before any usage.
        stream.write(EMPTY_MESSAGE + "\n")
        return
    console = _console(stream, width)
    t, w = report.tenant, report.window
    console.print(Text(f"{t.name} ({t.slug}) - plan {t.plan_tier} - {w.label()} UTC", style="bold"))
    tot = report.totals
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
    cost_lines.append((f"{month_name} to {mtd.as_of:%d %b}", usd(mtd.cost)))
    if mtd.complete:
        cost_lines.append(("month total", usd(mtd.projected_cost)))
    else:
        cost_lines.append(("month-end (estimate)", usd(mtd.projected_cost)))
    cards2: list[RenderableType] = [_card("Cost (USD)", cost_lines)]
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

    series = report.daily_series()[-CHART_DAYS:]
    if len(series) >= 2:
        labels = [d.strftime("%m-%d") for d, _ in series]
        # Floats only to place points on the chart; every figure printed elsewhere is exact.
        values = [float(row.estimated_cost_usd) if row else 0.0 for _, row in series]
        chart = line_chart(
            labels, values, width=console.width, title="Estimated cost per day (USD)", color=use_color(stream)
        )
        console.print(Text.from_ansi(chart), no_wrap=True, overflow="crop")

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
    # No vertical rules, and each column as wide as its widest cell: Rich would otherwise squeeze the table
    # to the terminal by truncating numbers ("41,6..."), which must never happen to a figure.
    table = Table(
        title="Daily usage (UTC days)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
    )
    for i, name in enumerate(headers):
        widest = max(len(name), *(len(r[i]) for r in [*rows, totals]))
        # Two spaces between columns (the rule's one plus one here): 8 columns of real figures fit 80.
        table.add_column(
            name, justify="left" if i == 0 else "right", no_wrap=True, min_width=widest + (i > 0)
        )
    for cells in rows:
        table.add_row(*cells)
    table.add_section()
    table.add_row(*totals, style="bold")
    console.print(table)
    versions = sorted({d.pricing_version for d in report.days})
    console.print(
        f"Priced with price book {', '.join(versions)}; costs are estimates from usagectl's price book."
    )


def render_tenants(report: TenantsReport, stream: TextIO, *, width: int | None = None) -> None:
    """The tenants ranking for a month, with a total row over all tenants."""
    from rich.table import Table

    console = _console(stream, width)
    month = report.month.start.strftime("%B %Y")
    shown = len(report.lines)
    more = f", top {shown} of {report.tenant_count}" if shown < report.tenant_count else ""
    table = Table(
        title=f"Tenants - {month} (UTC) - by {report.sort}{more}",
        title_justify="left",
        header_style="bold",
    )
    for name in ("tenant", "plan", "SMS", "emails", "voice min", "AI tokens", "est. cost"):
        table.add_column(
            name, justify="left" if name in ("tenant", "plan") else "right", no_wrap=name != "tenant"
        )
    for line in report.lines:
        table.add_row(
            line.slug + ("" if line.active else " (inactive)"),
            line.plan_tier,
            n(line.sms),
            n(line.emails),
            n(line.voice_minutes),
            n(line.ai_tokens),
            usd(line.estimated_cost),
        )
    tot = report.total
    table.add_section()
    table.add_row(
        f"total ({report.tenant_count})",
        "",
        n(tot.sms),
        n(tot.emails),
        n(tot.voice_minutes),
        n(tot.ai_tokens),
        usd(tot.estimated_cost),
        style="bold",
    )
    console.print(table)
    if not report.lines:
        console.print("No tenants configured yet: add [[tenants]] to the config (see `usagectl init`).")
