"""usagectl seal: seal days by hand (their rollups become what finance saw; later changes post adjustments)."""

from __future__ import annotations

from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info


def register(app: typer.Typer) -> None:
    app.command(
        "seal",
        help=(
            "Seal every UTC day up to and including --until: its rollup row is kept as it is, and a later collect "
            "or reprice that changes it posts an adjustment instead, shown in the month it is posted in. "
            "`usagectl rollup` also seals days [rollup] seal_after_days old. Run `usagectl rollup` first: a day "
            "collected but not rolled up when it is sealed gets an adjustment at the next rollup."
        ),
        epilog="Example: usagectl seal --until 2026-10-31",
    )(seal)


def seal(
    ctx: typer.Context,
    until: Annotated[
        str,
        typer.Option("--until", help="The last UTC day to seal (YYYY-MM-DD, yesterday, -Nd); a past day."),
    ],
) -> None:
    from usagectl.periods import parse_date
    from usagectl.rollup import seal as seal_days

    state = get_state(ctx)
    day = parse_date(until, "until")
    result = seal_days(state.store(), day)
    if result.moved:
        message = f"sealed every day through {result.sealed_through}"
    else:
        message = f"already sealed through {result.sealed_through}: nothing to do"
    if result.pending:
        message += (
            f"; {result.pending} sealed day{'s' if result.pending != 1 else ''} collected since the last rollup "
            "will get adjustments at the next `usagectl rollup`"
        )
    info(message, quiet=state.quiet)
