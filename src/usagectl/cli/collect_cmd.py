"""usagectl collect: poll the providers for each tenant and day and write raw metrics."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info, stderr_console, stdout_console
from usagectl.providers.registry import HTTP_SOURCES, SOURCES

if TYPE_CHECKING:
    from usagectl.collector import CollectResult
    from usagectl.config import Config, TenantConfig


def register(app: typer.Typer) -> None:
    app.command(
        "collect",
        help=(
            "Poll the providers for each tenant and UTC day and write raw metrics (idempotent: re-collecting a day "
            "replaces it). Default: yesterday plus the configured lookback. --today: the day in progress, stored "
            "provisional until the nightly collect of that day. Exit 3 if some tenant or provider failed."
        ),
        epilog="Example: usagectl collect --since 2026-11-01 --until 2026-11-23 --tenant acme --provider twilio",
    )(collect)


def collect(
    ctx: typer.Context,
    on: Annotated[
        str | None, typer.Option("--date", help="One UTC day (YYYY-MM-DD, today, yesterday, -Nd).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="First day of a backfill.")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last day of a backfill (default: today).")
    ] = None,
    lookback: Annotated[
        int | None, typer.Option("--lookback", min=0, max=60, help="Days before yesterday to re-collect.")
    ] = None,
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", "-t", help="Only this tenant (repeatable).")
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", "-p", help=f"Only this provider (repeatable): {', '.join(SOURCES)}."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Fetch and print what would be written; write nothing.")
    ] = False,
    today: Annotated[
        bool,
        typer.Option(
            "--today",
            help="The UTC day in progress, stored provisional with the time it is as of (hourly cron).",
        ),
    ] = False,
) -> None:
    from usagectl.collector import collect as run_collect
    from usagectl.collector import default_window, with_directory
    from usagectl.errors import ConfigError, InputError
    from usagectl.periods import resolve_window
    from usagectl.providers.registry import open_providers, validate_sources

    state = get_state(ctx)
    cfg = state.config()
    if lookback is not None and (on or since or until):
        raise InputError("--lookback goes with the default window, not with --date or --since/--until")
    if today and (on or since or until or lookback is not None):
        raise InputError(
            "--today is the day in progress alone: not with --date, --since/--until or --lookback"
        )
    if today:
        on = "today"
    _refuse_future_days(on=on, since=since, until=until)
    window = resolve_window(on=on, since=since, until=until, default=default_window(cfg, lookback))
    store = state.store()
    cfg = with_directory(store, cfg, window)  # the directory's tenants too (`usagectl directory sync`)
    selected = _select_tenants(cfg, tenant or [])
    validate_sources(provider)
    with open_providers(cfg, store, only=provider) as providers:
        if not providers:
            raise ConfigError(
                "no provider is configured: add " + " or ".join(f"[providers.{s}]" for s in HTTP_SOURCES)
            )
        if not any(p.applies_to(t) for p in providers for t in selected):
            raise ConfigError(
                "no configured provider applies to the selected tenants (check their attribution)"
            )
        result = _run(
            state.quiet,
            lambda progress, on_start: run_collect(
                store,
                cfg,
                providers,
                window,
                tenants=selected,
                dry_run=dry_run,
                progress=progress,
                on_start=on_start,
            ),
        )
    if dry_run:
        _print_dry_run(result)
    _print_summary(result, quiet=state.quiet)
    if result.exit_code:
        raise _failure(result)


def _refuse_future_days(**options: str | None) -> None:
    """A day after today (UTC) has no usage yet: collecting it would write empty rows for the future."""
    from usagectl.errors import InputError
    from usagectl.periods import parse_date, utc_today

    today = utc_today()
    for name, value in options.items():
        option = "date" if name == "on" else name
        if value is not None and (day := parse_date(value, option, today)) > today:
            raise InputError(
                f"--{option} {value}: {day} is after today ({today}, UTC); usage can only be collected up to today"
            )


def _failure(result: CollectResult) -> Exception:
    from usagectl.errors import EXIT_PARTIAL, PartialFailure, UsagectlError

    total, failed = len(result.outcomes), len(result.failed)
    if result.exit_code == EXIT_PARTIAL:
        return PartialFailure(
            f"{failed} of {total} tenant/provider collections failed; the others were written"
        )
    return UsagectlError(f"all {total} tenant/provider collections failed; nothing was written")


def _select_tenants(cfg: Config, slugs: list[str]) -> list[TenantConfig]:
    from usagectl.errors import ConfigError, InputError, did_you_mean

    if not cfg.tenants:
        raise ConfigError(
            "no tenants are configured; add [[tenants]] to the config (usagectl init writes an example) or a "
            "[directory] and run `usagectl directory sync`"
        )
    if not slugs:
        return list(cfg.tenants)
    out = []
    for slug in dict.fromkeys(slugs):
        t = cfg.tenant(slug)
        if t is None:
            raise InputError(
                f"--tenant: unknown tenant {slug!r}{did_you_mean(slug, (t.slug for t in cfg.tenants))}; "
                "`usagectl tenants` or `usagectl config show` lists them"
            )
        out.append(t)
    return out


def _run(quiet: bool, run: Callable[[Any, Any], CollectResult]) -> CollectResult:
    """Run the collection with a progress bar on a TTY (stderr), silently otherwise."""
    if quiet or not sys.stderr.isatty():
        return run(None, None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("collecting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("collect", total=None)

        def on_start(n: int) -> None:
            bar.update(task, total=n)

        def progress(_tenant: str, _source: str) -> None:
            bar.advance(task)

        return run(progress, on_start)


def _print_dry_run(result: CollectResult) -> None:
    from usagectl.meters import METERS
    from usagectl.render.table import print_fitted

    headers = ("tenant", "date", "source", *(m.raw_header for m in METERS), "provider $")
    rows = []
    for w in result.written:
        counts = w.row.counts()
        cost = w.row.provider_cost_usd
        rows.append(
            (
                w.tenant,
                w.day.isoformat(),
                w.source,
                # A meter's raw figures side by side (out/in); an unreported gauge is "-", not 0.
                *("/".join("-" if (v := counts[c]) is None else f"{v:,}" for c in m.raw) for m in METERS),
                "-" if cost is None else str(cost),
            )
        )
    # Figures are never truncated: at 80 columns the table is split into narrower ones, each repeating
    # tenant, date and source.
    title = f"dry run: would write {len(result.written)} rows ({result.window.label()})"
    print_fitted(stdout_console(), headers, rows, title=title, keys=3)


def _print_summary(result: CollectResult, *, quiet: bool) -> None:
    """tenant x provider status on stderr; shown even under -q when something failed (cron mails it).

    Not a terminal (cron mail, a log): one plain line per task, `tenant provider days: reason`, so that a long
    provider message (a URL) stays on its line. A terminal: a table."""
    if quiet and not result.failed:
        return
    shown = [o for o in result.outcomes if not (quiet and o.ok)]
    console = stderr_console()
    if not sys.stderr.isatty():
        for o in shown:
            days = o.days_failed if not o.ok else o.days_ok
            status = "; ".join(o.errors) if not o.ok else ("would write" if result.dry_run else "ok")
            line = f"{o.tenant} {o.source} {days} day{'s' if days != 1 else ''}: {status}"
            console.print(line, markup=False, soft_wrap=True, highlight=False)
    else:
        from usagectl.render.table import print_fitted

        verb = "would write" if result.dry_run else "written"
        rows = [
            (
                o.tenant,
                o.source,
                "ok" if o.ok else "FAILED",
                str(o.days_ok),
                str(o.days_failed),
                "; ".join(o.errors),
            )
            for o in shown
        ]
        headers = ("tenant", "provider", "status", f"days {verb}", "days failed", "error")
        print_fitted(console, headers, rows, title=f"collect {result.window.label()} (UTC)", keys=2, left=3)
    for report in result.backoffs:
        # Not a failure, but the operator should know the account was crowded (and maybe lower the cap).
        info(f"{report.describe()}", quiet=quiet)
    ok = sum(1 for o in result.outcomes if o.ok)
    info(f"{ok} of {len(result.outcomes)} tenant/provider collections ok; run {result.run_id}", quiet=quiet)
