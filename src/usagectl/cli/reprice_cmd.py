"""usagectl reprice: recompute a window's costs with the current price books and plans."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info


def register(app: typer.Typer) -> None:
    app.command(
        "reprice",
        help=(
            "Recompute the costs of the days from --since to --until with the current price books and plans (each day keeps "
            "the book in effect on that day). Prints per tenant the old cost, the new cost and the difference. "
            "Unsealed days are rewritten; a sealed day keeps its rollup and gets an adjustment (reason "
            "'reprice'). --dry-run writes nothing."
        ),
        epilog="Example: usagectl reprice --since 2026-10-01 --until 2026-10-31 --dry-run",
    )(reprice)


def reprice(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="First UTC day (YYYY-MM-DD, yesterday, -Nd).")],
    until: Annotated[str, typer.Option("--until", help="Last UTC day.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print the old and new costs.")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")] = None,
) -> None:
    from usagectl.periods import resolve_window
    from usagectl.render.table import render_reprice
    from usagectl.reprice import reprice as run_reprice

    state = get_state(ctx)
    window = resolve_window(since=since, until=until)
    result = run_reprice(state.store(), state.config(), window, tenant=tenant, dry_run=dry_run)
    render_reprice(result, sys.stdout)
    if result.dry_run:
        info("dry run: nothing was written", quiet=state.quiet)
    else:
        info(
            f"repriced {result.tenant_days} unsealed tenant-day{'s' if result.tenant_days != 1 else ''} "
            f"({result.changed} row{'s' if result.changed != 1 else ''} changed), "
            f"{result.adjusted} adjustment{'s' if result.adjusted != 1 else ''} posted for sealed days",
            quiet=state.quiet,
        )
