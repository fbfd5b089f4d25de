"""usagectl rollup: raw metrics -> daily rollups with cost."""

from __future__ import annotations

from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info


def register(app: typer.Typer) -> None:
    app.command(
        "rollup",
        help=(
            "Recompute daily per-tenant rollups and costs from the raw metrics. Default: yesterday (UTC) "
            "and every day collected since the last rollup. Re-running recomputes, never adds. A sealed day keeps "
            "its rollup: a change to it is posted as an adjustment; days [rollup] seal_after_days old are sealed "
            "after the run."
        ),
        epilog="Example: usagectl rollup --since 2026-11-01 --until 2026-11-30",
    )(rollup)


def rollup(
    ctx: typer.Context,
    on: Annotated[
        str | None, typer.Option("--date", help="One UTC day (YYYY-MM-DD, today, yesterday, -Nd).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="First UTC day of a range.")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last UTC day of a range (default: today).")
    ] = None,
) -> None:
    from usagectl.periods import resolve_window
    from usagectl.rollup import run_rollup

    state = get_state(ctx)
    window = resolve_window(on=on, since=since, until=until) if (on or since or until) else None
    result = run_rollup(state.store(), state.config(), window)
    span = f"{result.days[0]} .. {result.days[-1]}" if result.days else "no days"
    message = (
        f"rolled up {result.tenant_days} tenant-day{'s' if result.tenant_days != 1 else ''} over {span} "
        f"({result.changed} row{'s' if result.changed != 1 else ''} changed)"
    )
    if result.adjusted:
        message += (
            f", {result.adjusted} adjustment{'s' if result.adjusted != 1 else ''} posted for sealed days"
        )
    info(message, quiet=state.quiet)
