"""usagectl db: schema migrations and where the database is."""

from __future__ import annotations

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info

db_app = typer.Typer(
    help="Database schema: upgrade, current revision, location.",
    epilog="Example: usagectl db upgrade",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("upgrade", epilog="Example: USAGECTL_DATABASE_URL=postgresql://u@host/db usagectl db upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Migrate the database schema to this version of usagectl (run once per release on PostgreSQL)."""
    from usagectl.config import redact_url
    from usagectl.store import engine as eng

    state = get_state(ctx)
    e = eng.make_engine(state.config().database_url())
    try:
        before = eng.current_revision(e)
        eng.upgrade(e)
        after = eng.current_revision(e)
    finally:
        e.dispose()
    where = redact_url(str(e.url))
    if before == after:
        info(f"{where}: already at schema {after}", quiet=state.quiet)
    else:
        info(f"{where}: upgraded schema {before or '(empty)'} -> {after}", quiet=state.quiet)


@db_app.command("current", epilog="Example: usagectl db current")
def current(ctx: typer.Context) -> None:
    """Print the database's schema revision and whether it is up to date; exit 1 if it is behind."""
    from usagectl.errors import SchemaError
    from usagectl.store import engine as eng
    from usagectl.store.tables import SCHEMA_HEAD

    state = get_state(ctx)
    e = eng.make_engine(state.config().database_url())
    try:
        eng.migrate_new_sqlite(e)
        rev = eng.current_revision(e)
    finally:
        e.dispose()
    if rev == SCHEMA_HEAD:
        typer.echo(f"{rev} (head)")
        return
    typer.echo(f"{rev or 'none'} (head is {SCHEMA_HEAD})")
    raise SchemaError("schema is behind; run: usagectl db upgrade")


@db_app.command("path", epilog="Example: usagectl db path")
def path(ctx: typer.Context) -> None:
    """Print the database URL in use (password hidden); for SQLite, the file path."""
    from usagectl.config import redact_url
    from usagectl.store.engine import sqlite_path

    url = get_state(ctx).config().database_url()
    typer.echo(sqlite_path(url) or redact_url(url))
