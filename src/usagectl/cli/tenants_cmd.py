"""usagectl tenants: every tenant's usage and cost for a month, ranked."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help

FORMATS = (OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)


def register(app: typer.Typer) -> None:
    app.command(
        "tenants",
        help=(
            "Every tenant with SMS, emails, voice minutes, AI tokens, estimated cost, plan, plan charge (fee + "
            "overage) and margin (plan charge - provider-reported cost, 'incomplete' while a provider cost is "
            "unknown) for a month, highest first, with a total row. Default: the current UTC month."
        ),
        epilog="Example: usagectl tenants --sort margin --month 2026-11 --limit 10",
    )(tenants)


def tenants(
    ctx: typer.Context,
    sort: Annotated[
        str, typer.Option("--sort", "-s", help="cost, sms, email, voice, ai, plan_charge, margin or name.")
    ] = "cost",
    month: Annotated[str | None, typer.Option("--month", help="A calendar month, YYYY-MM.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Show only the first N tenants.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help(FORMATS))] = "table",
) -> None:
    from usagectl.periods import Window, parse_month, utc_today
    from usagectl.reports import tenants_report

    chosen = choose_format(fmt, FORMATS)
    today = utc_today()
    window = parse_month(month) if month else Window.month(today.year, today.month)
    state = get_state(ctx)
    rep = tenants_report(state.store(), window, sort=sort, limit=limit, cfg=state.config(), today=today)
    from usagectl.render import write

    write(rep, chosen, sys.stdout)
