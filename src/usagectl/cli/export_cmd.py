"""usagectl export: tenant x day rollups for finance, streamed as CSV or JSON."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help, info

FORMATS = (OutputFormat.CSV, OutputFormat.JSON)


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        help=(
            "Export one row per tenant x UTC day with every rollup column and the cost breakdown (columns in "
            "docs/export.md), streamed. Default window: the current UTC month."
        ),
        epilog="Example: usagectl export --format csv --month 2026-10 -o october.csv",
    )(export)


def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help(FORMATS))],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")] = None,
    month: Annotated[str | None, typer.Option("--month", help="A calendar month, YYYY-MM.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="First UTC day.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last UTC day (default: today).")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to FILE (atomically) instead of stdout.", dir_okay=False),
    ] = None,
) -> None:
    from usagectl.periods import Window, resolve_window, utc_today
    from usagectl.reports import export_rows

    chosen = choose_format(fmt, FORMATS)
    today = utc_today()
    window = resolve_window(
        month=month, since=since, until=until, default=Window.month(today.year, today.month), today=today
    )
    state = get_state(ctx)
    # The JSON export carries each whole month's plan charges; CSV keeps its per-day columns (`tenants --format
    # csv` has them per month).
    cfg = state.config() if chosen == "json" else None
    rows = export_rows(state.store(), window, tenant, cfg=cfg)
    from usagectl.render import write

    if output is None:
        write(rows, chosen, sys.stdout)
        return
    # A half-written file never replaces a good one: write beside it, then rename.
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            count = write(rows, chosen, f)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    info(f"wrote {count} row{'s' if count != 1 else ''} to {output}", quiet=state.quiet)
