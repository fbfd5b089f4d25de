"""usagectl reconcile: per tenant and provider, our estimate against what the provider reported it charged."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help
from usagectl.providers.registry import HTTP_SOURCES

FORMATS = (OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)


def register(app: typer.Typer) -> None:
    app.command(
        "reconcile",
        help=(
            f"Per tenant and provider ({', '.join(HTTP_SOURCES)}) for a month: the usage, usagectl's estimated cost, "
            "the provider-reported cost and the difference in $ and %. A provider cost unknown for some days "
            "says so, with how many days, and has no difference. Default: the current UTC month, through "
            "yesterday."
        ),
        epilog="Example: usagectl reconcile --month 2026-10 --tenant acme --format csv",
    )(reconcile)


def reconcile(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option("--month", help="A calendar month, YYYY-MM.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant (slug).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help(FORMATS))] = "table",
) -> None:
    from usagectl.periods import Window, parse_month, utc_today
    from usagectl.reports import reconcile_report

    chosen = choose_format(fmt, FORMATS)
    today = utc_today()
    window = parse_month(month) if month else Window.month(today.year, today.month)
    state = get_state(ctx)
    rep = reconcile_report(state.store(), state.config(), window, HTTP_SOURCES, tenant=tenant, today=today)
    from usagectl.render import write

    write(rep, chosen, sys.stdout)
