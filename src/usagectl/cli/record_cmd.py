"""usagectl record: write one internal usage event."""

from __future__ import annotations

from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info


def register(app: typer.Typer) -> None:
    app.command(
        "record",
        help=(
            "Record one internal usage event for a tenant: a counter (jobs_executed, summed per UTC day) or a "
            "gauge (storage_bytes, the day's last reading). With --id, re-recording the same id is ignored."
        ),
        epilog="Example: usagectl record --tenant acme jobs_executed 3 --id job-4711 --at 2026-11-24T10:00:00Z",
        # `record ... jobs_executed -3` must reach the value check ("must be a non-negative integer"), not be
        # refused as an unknown option "-3".
        context_settings={"ignore_unknown_options": True},
    )(record)


def record(
    ctx: typer.Context,
    metric: Annotated[
        str,
        typer.Argument(
            help="jobs_executed, storage_bytes, or one declared in the config (events.metrics).",
            metavar="METRIC",
        ),
    ],
    value: Annotated[str, typer.Argument(help="A non-negative integer.", metavar="VALUE")],
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The tenant slug.")],
    event_id: Annotated[
        str | None, typer.Option("--id", help="Event id for deduplication (default: a new UUID).")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="When it happened, RFC 3339 with offset (default: now).")
    ] = None,
) -> None:
    from usagectl.events import record as record_event

    state = get_state(ctx)
    done = record_event(
        state.store(), state.config(), tenant=tenant, metric=metric, value=value, event_id=event_id, at=at
    )
    e = done.event
    when = e.occurred_at.isoformat().replace("+00:00", "Z")
    if done.inserted:
        info(f"recorded {e.metric}={e.value} for {e.tenant} at {when} (id {e.event_id})", quiet=state.quiet)
    else:
        info(f"event {e.event_id} was already recorded; nothing changed", quiet=state.quiet)
