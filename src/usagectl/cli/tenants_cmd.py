"""usagectl tenants: every tenant's usage and cost for a month, ranked."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help

FORMATS = (OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
TOP = 50  # the table's default: a terminal is no place for 100,000 rows


def register(app: typer.Typer) -> None:
    app.command(
        "tenants",
        help=(
            "Every tenant with SMS, emails, voice minutes, AI tokens, estimated cost, plan, plan charge (fee + "
            "overage) and margin (plan charge - provider-reported cost, 'incomplete' while a provider cost is "
            "unknown) for a month, highest first, with a total row over all tenants. Default: the current UTC month. "
            f"The table shows the top {TOP} (--limit N, --all); --format csv and json write every tenant (or "
            "--limit N), streamed."
        ),
        epilog="Example: usagectl tenants --sort margin --month 2026-11 --limit 10; "
        "usagectl tenants --month 2026-11 --format csv > tenants.csv",
    )(tenants)


def tenants(
    ctx: typer.Context,
    sort: Annotated[
        str, typer.Option("--sort", "-s", help="cost, sms, email, voice, ai, plan_charge, margin or name.")
    ] = "cost",
    month: Annotated[str | None, typer.Option("--month", help="A calendar month, YYYY-MM.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help=f"Only the first N tenants (table default: {TOP}).")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="The table shows every tenant.")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help(FORMATS))] = "table",
) -> None:
    from usagectl.periods import Window, parse_month, utc_today
    from usagectl.reports import tenants_report

    chosen = choose_format(fmt, FORMATS)
    today = utc_today()
    window = parse_month(month) if month else Window.month(today.year, today.month)
    state = get_state(ctx)
    table = chosen == OutputFormat.TABLE
    if table and limit is None and not show_all:
        limit = TOP
    if chosen == OutputFormat.CSV and limit is None:
        # Every tenant: straight from the ranking's rows (exact figures computed in SQL), no object per tenant.
        from usagectl.render.csv import write_ranking_csv
        from usagectl.reports import ranking_rows

        cfg = state.config()
        rows = ranking_rows(state.store(), window, sort=sort, cfg=cfg, today=today)
        write_ranking_csv(window, rows, sys.stdout, priced=True)
        return
    rep = tenants_report(
        state.store(), window, sort=sort, limit=limit, cfg=state.config(), today=today, stream=not table
    )
    from usagectl.render import write

    write(rep, chosen, sys.stdout)
    if table and rep.more:
        sys.stdout.write(f"and {rep.more:,} more (--limit N, --all, or --format csv)\n")
