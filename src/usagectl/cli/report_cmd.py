"""usagectl report: one tenant's usage and cost over a window."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help

FORMATS = (OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)


def register(app: typer.Typer) -> None:
    app.command(
        "report",
        help=(
            "One tenant's usage and estimated cost: summary cards, month-to-date with a month-end "
            "estimate, plan allowances, a 30-day chart and a daily table (or JSON/CSV). "
            "Default: the 30 days up to yesterday (UTC)."
        ),
        epilog="Example: usagectl report --tenant acme --month 2026-11 --format json",
    )(report)


def report(
    ctx: typer.Context,
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", help="Tenant slug (`usagectl tenants` lists them).")
    ],
    days: Annotated[
        int | None,
        typer.Option("--days", help="The last N UTC days, ending yesterday (the last complete day)."),
    ] = None,
    month: Annotated[str | None, typer.Option("--month", help="A calendar month, YYYY-MM.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help(FORMATS))] = "table",
) -> None:
    from usagectl.periods import Window, resolve_window
    from usagectl.reports import tenant_report

    chosen = choose_format(fmt, FORMATS)
    state = get_state(ctx)
    window = resolve_window(month=month, days=days, default=Window.last_days(30))
    rep = tenant_report(state.store(), state.config(), tenant, window)
    from usagectl.render import write

    write(rep, chosen, sys.stdout)
