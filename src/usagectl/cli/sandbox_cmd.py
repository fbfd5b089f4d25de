"""usagectl sandbox: serve the fake providers until Ctrl-C, with a config pointing at them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info
from usagectl.cli.signals import stop_like_ctrl_c

if TYPE_CHECKING:
    from usagectl.sandbox.interactive import Running


def register(app: typer.Typer) -> None:
    app.command(
        "sandbox",
        help=(
            "Serve the sandbox providers (fake Twilio, SendGrid and OpenAI on 127.0.0.1, with three sample tenants "
            "and the plans of config.example.toml) until Ctrl-C, and write a config pointing at them, so that "
            "`usagectl --config FILE collect`, `rollup` and `report` can be tried by hand. The config's secret "
            "files exist only while this command runs."
        ),
        epilog=(
            "Example: usagectl sandbox --write-config sandbox.toml    then, in another shell: "
            "usagectl --config sandbox.toml collect --since -7d && usagectl --config sandbox.toml rollup "
            "--since -7d && usagectl --config sandbox.toml report --tenant acme"
        ),
    )(sandbox)


def sandbox(
    ctx: typer.Context,
    port: Annotated[
        int,
        typer.Option(
            "--port", help="Twilio on PORT, SendGrid on PORT+1, OpenAI on PORT+2 (default: free ports)."
        ),
    ] = 0,
    write_config: Annotated[
        Path | None,
        typer.Option(
            "--write-config",
            help="Write the config here (default: a file in the sandbox's temporary folder).",
            dir_okay=False,
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", help="Database URL for that config (default: FILE with .db, SQLite)."),
    ] = None,
) -> None:
    from usagectl.sandbox.interactive import serve

    state = get_state(ctx)

    def ready(running: Running) -> None:
        cfg = running.config_path
        for name, url in running.urls.items():
            info(f"sandbox {name}: {url}", quiet=state.quiet)
        info(f"tenants {', '.join(running.tenants)}; database {running.database_url}", quiet=state.quiet)
        # The config path on stdout (the one line a script needs), the rest on stderr.
        typer.echo(str(cfg))
        info(
            f"try: usagectl --config {cfg} collect --since -7d && usagectl --config {cfg} rollup --since -7d "
            f"&& usagectl --config {cfg} report --tenant acme",
            quiet=state.quiet,
        )
        info("serving until Ctrl-C", quiet=state.quiet)

    try:
        with stop_like_ctrl_c():
            serve(port=port, config_path=write_config, database_url=database, on_ready=ready)
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM, SIGHUP) is how this command ends: not an error. The temporary folder is gone.
        info("sandbox stopped; its secret files are removed", quiet=state.quiet)
