"""usagectl export: tenant x day rollups for finance, streamed as CSV or JSON."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help, info

if TYPE_CHECKING:
    from usagectl.reports import ExportReport

FORMATS = (OutputFormat.CSV, OutputFormat.JSON)


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        help=(
            "Export one row per tenant x UTC day with every rollup column and the cost breakdown (columns in "
            "docs/export.md), streamed. Default window: the current UTC month. --adjustments exports instead the "
            "adjustments posted in the window for sealed days (JSON exports always carry them beside the rows)."
        ),
        epilog=(
            "Example: usagectl export --format csv --month 2026-10 -o october.csv\n\n"
            "usagectl export --format csv --month 2026-11 --adjustments -o november-adjustments.csv"
        ),
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
    adjustments: Annotated[
        bool,
        typer.Option(
            "--adjustments",
            help="Export the adjustments posted in the window (for sealed days, whatever their month) instead.",
        ),
    ] = False,
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

    def write(report: ExportReport, fmt: str, stream: TextIO) -> int | None:
        if not adjustments:
            from usagectl.render import write as write_rows

            return write_rows(report, fmt, stream)
        if fmt == "csv":
            from usagectl.render.csv import write_adjustments_csv

            return write_adjustments_csv(report, stream)
        from usagectl.render.json import write_adjustments_json

        return write_adjustments_json(report, stream)

    if rows.adjustments and not adjustments and chosen == OutputFormat.CSV:
        # The CSV has one row shape: the adjustments posted in this window are another export.
        posted = len(rows.adjustments)
        info(
            f"{posted} adjustment{'s' if posted != 1 else ''} for sealed days posted in this window are not in "
            "these rows: add --adjustments to export them",
            quiet=state.quiet,
        )
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
    what = "adjustment" if adjustments else "row"
    info(f"wrote {count} {what}{'s' if count != 1 else ''} to {output}", quiet=state.quiet)
