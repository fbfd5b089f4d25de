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


@directory_app.command(
    "sync",
    epilog=(
        "Example: usagectl directory sync --dry-run\n\n"
        "Exit codes: 0 synced, 1 the source could not be read (nothing written), 2 config error, 3 some rows were "
        "bad (reported and skipped; the good rows were synced)."
    ),
)
def sync(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; write nothing.")
    ] = False,
) -> None:
    """Sync tenants, their plans and provider mappings from the platform ([directory] in the config): prints each
    tenant added, each field changed (old -> new) and each tenant gone; bad rows are reported and skipped."""
    from usagectl.directory import sync_directory
    from usagectl.errors import PartialFailure
    from usagectl.render import clean_text

    state = get_state(ctx)
    outcome = sync_directory(state.store(), state.config(), dry_run=dry_run)
    d = outcome.diff
    if outcome.unchanged:
        info(
            f"{outcome.rows} rows unchanged since the last sync: nothing to do"
            + (" (dry run: nothing written)" if dry_run else ""),
            quiet=state.quiet,
        )
        return
    lines = [f"added    {slug}" for slug in d.added]
    lines += [f"changed  {c.slug}  {c.field}: {c.old} -> {c.new}" for c in d.changed]
    lines += [f"gone     {slug}" for slug in d.gone]
    if lines and not (state.quiet and not dry_run):
        typer.echo("\n".join(clean_text(line) for line in lines))
    for bad in outcome.bad:
        typer.echo(clean_text(f"usagectl: bad row: {bad}"), err=True)
    tenants = len(d.changed_slugs)
    counts = (
        f"{len(d.added)} added, {len(d.changed)} change{'s' if len(d.changed) != 1 else ''} to {tenants} "
        f"tenant{'s' if tenants != 1 else ''}, {len(d.gone)} gone"
    )
    if dry_run:
        info(f"would write: {counts} (dry run: nothing written)", quiet=state.quiet)
    else:
        info(
            f"synced {outcome.rows} rows: {counts}; {d.rows_written} database rows written", quiet=state.quiet
        )
    if outcome.bad:
        n = len(outcome.bad)
        raise PartialFailure(f"{n} bad row{'s' if n != 1 else ''} skipped (their tenants kept as they were)")
