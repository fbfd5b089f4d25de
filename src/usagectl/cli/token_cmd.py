"""usagectl token: API tokens for `usagectl serve` (create, list, revoke)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help, info

_LIST_FORMATS = (OutputFormat.TABLE, OutputFormat.JSON)

token_app = typer.Typer(
    help=(
        "API tokens for `usagectl serve`: one tenant's admin, root, or an ingest token for POST /api/events. "
        "Only a hash is stored."
    ),
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")


@token_app.command(
    "create",
    epilog=(
        "Example: usagectl token create --tenant acme --name dashboard --expires 90d "
        "(a service that POSTs events: usagectl token create --ingest --name jobs-service)"
    ),
)
def create(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="The tenant this token may read.")
    ] = None,
    root: Annotated[bool, typer.Option("--root", help="A root-admin token: every tenant.")] = False,
    ingest: Annotated[
        bool,
        typer.Option("--ingest", help="A token that may only POST events to /api/events (it reads nothing)."),
    ] = False,
    name: Annotated[str, typer.Option("--name", help="A label to recognise the token by.")] = "",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 90d, 12h, 2w (default: never).")
    ] = None,
) -> None:
    """Create a token and print it once (it cannot be shown again); the database keeps only its SHA-256."""
    from usagectl.errors import InputError
    from usagectl.store.tokens import create_token, parse_duration

    if (tenant is not None) + root + ingest != 1:
        raise InputError("give exactly one of --tenant SLUG, --root and --ingest")
    if len(name) > 200:
        raise InputError("--name: at most 200 characters")
    lifetime = parse_duration(expires) if expires is not None else None
    state = get_state(ctx)
    token, tok = create_token(state.store(), tenant=tenant, name=name, expires_in=lifetime, ingest=ingest)
    typer.echo(token)
    scope = f"tenant {tok.tenant}" if tok.tenant else tok.scope
    until = f", expires {tok.expires_at:%Y-%m-%d %H:%M} UTC" if tok.expires_at else ""
    info(
        f"created token {tok.prefix}… ({scope}{until}); store it now, it is not shown again",
        quiet=state.quiet,
    )


@token_app.command("list", epilog="Example: usagectl token list --format json")
def list_(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help(_LIST_FORMATS))] = "table",
) -> None:
    """List tokens: prefix, scope, name, created, last used, expires, status (never the token itself)."""
    from usagectl.store.tokens import list_tokens

    chosen = choose_format(fmt, _LIST_FORMATS)
    tokens = list_tokens(get_state(ctx).store())

    def when(d: object) -> str | None:
        return None if d is None else d.isoformat().replace("+00:00", "Z")  # type: ignore[attr-defined]

    rows = [
        {
            "prefix": t.prefix,
            "scope": f"tenant:{t.tenant}" if t.scope == "tenant" else t.scope,
            "name": t.name,
            "created": when(t.created_at),
            "last_used": when(t.last_used_at),
            "expires": when(t.expires_at),
            "status": t.status(),
        }
        for t in tokens
    ]
    if chosen is OutputFormat.JSON:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.table import Table
    from rich.text import Text

    from usagectl.cli.output import stdout_console

    table = Table()
    # The prefix is what `token revoke` takes: never cut it.
    table.add_column("prefix", no_wrap=True, min_width=12)
    for col in ("scope", "name", "created", "last used", "expires", "status"):
        table.add_column(col, overflow="fold")
    for r in rows:
        # Text, not markup; control characters in a name must not reach the terminal.
        table.add_row(*(Text("".join(c if c.isprintable() else "?" for c in str(r[k] or "-"))) for k in r))
    stdout_console().print(table)


@token_app.command("revoke", epilog="Example: usagectl token revoke uct_AbCd1234")
def revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The token's prefix, as `usagectl token list` shows it.")],
) -> None:
    """Revoke a token: it fails from the next request on."""
    from usagectl.errors import InputError
    from usagectl.store.tokens import revoke_token

    state = get_state(ctx)
    if not revoke_token(state.store(), prefix.rstrip("…")):
        raise InputError(f"no active token with prefix {prefix!r}; `usagectl token list` shows them")
    info(f"revoked token {prefix}", quiet=state.quiet)
