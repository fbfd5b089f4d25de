"""usagectl demo: the whole pipeline against the built-in sandbox providers, no config needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        help=(
            "Start the sandbox providers (local fake Twilio, SendGrid and OpenAI servers), create a temporary "
            "SQLite database with three sample tenants (one per plan tier), run the real collect and rollup over "
            "HTTP for 45 days, and print the tenants ranking and one tenant report. Needs no config and no network."
        ),
        epilog="Example: usagectl demo --keep ./demo-data",
    )(demo)


def demo(
    ctx: typer.Context,
    days: Annotated[
        int, typer.Option("--days", min=1, max=400, help="Days of sample usage to collect.")
    ] = 45,
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Keep the demo database in this folder (default: a temporary folder).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    from usagectl.demo import run_demo
    from usagectl.errors import UsagectlError
    from usagectl.render import write

    state = get_state(ctx)
    result = run_demo(days=days, keep=keep, step=lambda msg: info(msg, quiet=state.quiet))
    failed = result.collected.failed
    if failed:
        raise UsagectlError(f"demo: {len(failed)} sandbox collections failed: {failed[0].errors[0]}")
    info(
        f"collected {len(result.collected.written)} rows, rolled up {result.rolled_up.tenant_days} tenant-days",
        quiet=state.quiet,
    )
    write(result.ranking, "table", sys.stdout)
    sys.stdout.write("\n")
    write(result.report, "table", sys.stdout)
    if keep is not None:
        info(
            f"kept the demo database: USAGECTL_DATABASE_URL=sqlite:///{result.database} usagectl tenants",
            quiet=state.quiet,
        )
