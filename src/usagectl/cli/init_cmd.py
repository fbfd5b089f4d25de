"""usagectl init: write a starter config and create the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info


def register(app: typer.Typer) -> None:
    app.command(
        "init",
        help="Write a commented starter config.toml and create the database.",
        epilog="Example: usagectl init --path ./config.toml",
    )(init)


def init(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", "-p", help="Where to write the config (default: the user config dir).", dir_okay=False
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
) -> None:
    from usagectl import config as cfgmod
    from usagectl.config_files import write_starter_config

    state = get_state(ctx)
    target = path or state.config_path or cfgmod.user_config_path()
    write_starter_config(target, force=force)
    info(f"wrote {target}", quiet=state.quiet)
    state.config_path = target
    store = state.store()
    info(f"database ready: {cfgmod.redact_url(str(store.engine.url))}", quiet=state.quiet)
