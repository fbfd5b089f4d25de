"""usagectl directory: the tenant directory (sync from the platform; plan changes recorded by hand)."""

from __future__ import annotations

from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info

directory_app = typer.Typer(
    help=(
        "The tenant directory: tenants, their plans over time and their provider mappings, synced from the "
        "platform ([directory] in the config) and from [[tenants]]."
    ),
    epilog="Example: usagectl directory sync --dry-run",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(directory_app, name="directory")


@directory_app.command(
    "plan",
    epilog="Example: usagectl directory plan acme pro --from 2026-11-15",
)
def plan(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant's slug.")],
    tier: Annotated[str, typer.Argument(help="The plan from that day on: starter, pro or elite.")],
    from_: Annotated[
        str,
        typer.Option("--from", help="The first UTC day on the new plan (YYYY-MM-DD, today, yesterday, -Nd)."),
    ],
) -> None:
    """Record a plan change by hand (for [[tenants]] set-ups): TIER from --from on. The rollup prices each day
    with the plan in effect that day; run `usagectl reprice --from DAY` to reprice days already rolled up."""
    from usagectl.config import PLAN_TIERS
    from usagectl.errors import InputError, did_you_mean
    from usagectl.periods import parse_date
    from usagectl.store.directory import record_plan
    from usagectl.store.tenants import get_tenant, tenant_ids

    if tier not in PLAN_TIERS:
        raise InputError(
            f"TIER: unknown plan {tier!r}{did_you_mean(tier, PLAN_TIERS)} (one of {', '.join(PLAN_TIERS)})"
        )
    day = parse_date(from_, "--from")
    state = get_state(ctx)
    store = state.store()
    with store.engine.begin() as conn:
        t = get_tenant(conn, slug)
        if t is None:
            known = tenant_ids(conn)
            raise InputError(f"SLUG: unknown tenant {slug!r}{did_you_mean(slug, known)}")
        written = record_plan(conn, t.id, tier, day, "manual")
    if written:
        info(
            f"{slug}: {tier} from {day}; run `usagectl reprice --from {day}` to reprice days already rolled up",
            quiet=state.quiet,
        )
    else:
        info(f"{slug}: already on {tier} on {day}: nothing to do", quiet=state.quiet)
