"""usagectl alerts: allowance and budget alerts (fire once, deliver to a signed webhook), and their delivery log."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info, warn

FORMATS = ("table", "json")

alerts_app = typer.Typer(
    help=(
        "Allowance and budget alerts, for cron after `rollup`: each [alerts] threshold (default 80, 95, 100 %) "
        "of each plan allowance and of the monthly budget fires once per tenant, meter and month, recorded in "
        "the database, printed, and POSTed to [alerts.webhook] signed with HMAC-SHA256. A failed delivery is "
        "retried on the next run. Exit 3 when some deliveries failed."
    ),
    epilog="Example: usagectl collect && usagectl rollup && usagectl alerts --format json",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")


def _check_format(fmt: str) -> None:
    from usagectl.errors import InputError

    if fmt not in FORMATS:
        raise InputError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")


def _figure(value: Decimal, meter: str) -> str:
    """Used or limit: whole units with thousands separators; the budget in dollars."""
    from usagectl.alerts import BUDGET
    from usagectl.render.fmt import n, usd

    if meter == BUDGET:
        return usd(value)
    return n(int(value)) if value == value.to_integral_value() else f"{value:,}"


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    month: Annotated[
        str | None,
        typer.Option("--month", help="The month to evaluate, YYYY-MM (default: that of yesterday, UTC)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would fire; record and send nothing.")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from usagectl.alerts import alert_json, run_alerts
    from usagectl.errors import PartialFailure
    from usagectl.periods import resolve_window

    _check_format(fmt)
    state = get_state(ctx)
    cfg = state.config()
    window = resolve_window(month=month) if month else None
    secret = None
    hook = cfg.alerts.webhook
    if hook is not None and not dry_run:
        assert hook.secret is not None  # the config refuses a webhook without one
        secret = hook.secret.resolve(f"{cfg.where()}alerts.webhook.secret")
    result = run_alerts(state.store(), cfg, month=window, dry_run=dry_run, secret=secret)
    if fmt == "json":
        doc = {
            "period": result.period,
            "dry_run": result.dry_run,
            "fired": [alert_json(x) for x in result.fired],
            "passed": [alert_json(x) for x in result.passed],
            "webhook": {"delivered": result.delivered, "failed": result.failed} if result.webhook else None,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif result.fired:
        from usagectl.render import clean_text
        from usagectl.render.table import make_console, print_fitted

        rows = [
            [
                clean_text(x.tenant),
                clean_text(x.label),
                f"{x.threshold}%",
                _figure(x.used, x.meter),
                _figure(x.limit, x.meter),
                "n/a" if x.percent_used is None else f"{x.percent_used}%",
                x.as_of.isoformat(),
            ]
            for x in result.fired
        ]
        print_fitted(
            make_console(sys.stdout),
            ("tenant", "meter", "threshold", "used", "limit", "% used", "as of"),
            rows,
            title=f"{'Would fire' if dry_run else 'Fired'} ({result.period})",
            keys=2,
        )
    verb = "would fire" if dry_run else "fired"
    info(
        f"{len(result.fired)} alert{'s' if len(result.fired) != 1 else ''} {verb} for {result.period}",
        quiet=state.quiet,
    )
    if result.passed:
        info(
            f"{len(result.passed)} lower threshold{'s' if len(result.passed) != 1 else ''} passed "
            f"{'(would be recorded, not sent)' if dry_run else '(recorded, not sent)'}: only the highest alerts",
            quiet=state.quiet,
        )
    if result.webhook and not dry_run:
        info(f"webhook: {result.delivered} delivered, {result.failed} failed", quiet=state.quiet)
    if result.failed:
        warn("see `usagectl alerts log`; failed deliveries are retried on the next run")
        raise PartialFailure(
            f"{result.failed} webhook deliver{'ies' if result.failed != 1 else 'y'} failed "
            "(recorded; retried on the next run)"
        )


@alerts_app.command("log", epilog="Example: usagectl alerts log --limit 20 --format json")
def log(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many attempts, newest first.")] = 50,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """The webhook delivery log: each attempt's time, HTTP status or error, and whether it succeeded."""
    from usagectl.alerts import delivery_log
    from usagectl.errors import InputError

    _check_format(fmt)
    if limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    lines = delivery_log(get_state(ctx).store(), limit=limit)
    if fmt == "json":
        doc = [
            {
                "attempted_at": x.attempted_at.isoformat(),
                "tenant": x.tenant,
                "alert": x.alert,
                "status_code": x.status_code,
                "error": x.error,
                "success": x.success,
            }
            for x in lines
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    if not lines:
        info("no webhook delivery attempts yet", quiet=get_state(ctx).quiet)
        return
    from usagectl.render import clean_text
    from usagectl.render.table import make_console, print_fitted

    rows = [
        [
            x.attempted_at.strftime("%Y-%m-%d %H:%M:%S"),
            clean_text(x.alert),
            clean_text(str(x.status_code) if x.status_code is not None else (x.error or "-")),
            "yes" if x.success else "no",
        ]
        for x in lines
    ]
    print_fitted(make_console(sys.stdout), ("attempted at", "alert", "status", "ok"), rows, keys=2, left=3)
