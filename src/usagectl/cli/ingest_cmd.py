"""usagectl ingest: load newline-delimited JSON usage events from a file or stdin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info


def register(app: typer.Typer) -> None:
    app.command(
        "ingest",
        help=(
            "Load internal usage events, one JSON object per line (id, source, subject = tenant slug, "
            "type = metric, time, data.value). Events already stored (same source and id) are skipped. "
            "Bad lines are reported as FILE:LINE: reason and the others written (exit 3); with --strict "
            "nothing is written if any line is bad (exit 2)."
        ),
        epilog="Example: usagectl ingest events-2026-11-24.jsonl    (or: produce-events | usagectl ingest -)",
    )(ingest)


def ingest(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A .jsonl file, or - for stdin.", metavar="FILE|-")],
    strict: Annotated[
        bool, typer.Option("--strict", help="All or nothing: write nothing if any line is bad.")
    ] = False,
) -> None:
    from usagectl.errors import InputError, PartialFailure
    from usagectl.events import LineError
    from usagectl.events import ingest as run_ingest

    state = get_state(ctx)
    cfg = state.config()
    store = state.store()

    def report(err: LineError) -> None:
        print(err, file=sys.stderr)

    if file == "-":
        result = run_ingest(store, cfg, sys.stdin.buffer, name="-", strict=strict, on_reject=report)
    else:
        path = Path(file)
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise InputError(f"{file}: cannot read: {exc.strerror}") from None
        with handle:
            result = run_ingest(store, cfg, handle, name=file, strict=strict, on_reject=report)
    info(result.summary(), quiet=state.quiet)
    if result.rejected:
        lines = f"{result.rejected:,} line{'s' if result.rejected != 1 else ''}"
        if not result.committed:
            raise InputError(f"{file}: {lines} rejected; nothing was written (--strict)")
        raise PartialFailure(f"{file}: {lines} rejected; the other lines were written")
