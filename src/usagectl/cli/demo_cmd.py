"""usagectl demo: the whole pipeline against the built-in sandbox providers, no config needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import info
from usagectl.cli.signals import stop_like_ctrl_c

if TYPE_CHECKING:
    from usagectl.config import Config


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        help=(
            "Start the sandbox providers (local fake Twilio, SendGrid and OpenAI servers), create a temporary "
            "SQLite database with three sample tenants (one per plan tier), run the real collect and rollup over "
            "HTTP for 45 days, and print the tenants ranking and one tenant report. Needs no config and no network."
        ),
        epilog="Example: usagectl demo --keep ./demo-data    or, to see the web pages: usagectl demo --serve --port 8080",
    )(demo)


def demo(
    ctx: typer.Context,
    days: Annotated[
        int, typer.Option("--days", min=1, max=400, help="Days of sample usage to collect.")
    ] = 45,
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Keep the demo database in this folder (default: a temporary folder).",
            file_okay=False,
        ),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Then serve the admin pages on the demo database at 127.0.0.1 and print sign-in tokens; "
            "Ctrl-C stops it.",
        ),
    ] = False,
    port: Annotated[
        int, typer.Option("--port", "-p", min=1, max=65535, help="Port for --serve (on 127.0.0.1).")
    ] = 8080,
) -> None:
    from usagectl.demo import DemoResult, demo_tokens, run_demo
    from usagectl.errors import UsagectlError
    from usagectl.render import write

    state = get_state(ctx)
    if port != 8080 and not serve:
        raise typer.BadParameter("--port is for --serve", param_hint="--port")

    def check(result: DemoResult) -> None:
        failed = result.collected.failed
        if failed:
            raise UsagectlError(f"demo: {len(failed)} sandbox collections failed: {failed[0].errors[0]}")

    def serve_pages(result: DemoResult, cfg: Config) -> None:
        from usagectl.cli.serve_cmd import serve_app
        from usagectl.store.engine import open_store
        from usagectl.web.app import ServeSettings, create_app

        check(result)
        _print(result)
        slug = result.report.tenant.slug
        root, tenant = demo_tokens(cfg, slug)
        if keep is not None:
            info(f"the demo database: {result.database}", quiet=state.quiet)
        store = open_store(cfg.database.url or "")  # the demo's file, never $USAGECTL_DATABASE_URL
        try:
            app = create_app(ServeSettings(cfg, store=store, access_log=not state.quiet))
            base = f"http://127.0.0.1:{port}"
            sys.stdout.write(
                f"\nThe admin pages: sign in at {base}/signin with\n"
                f"  root admin (System Usage): {root}\n"
                f"  tenant admin of {slug}: {tenant}\n"
                "Ctrl-C stops the server.\n"
            )
            sys.stdout.flush()
            serve_app(app, host="127.0.0.1", port=port, quiet=state.quiet)
        finally:
            store.close()

    def _print(result: DemoResult) -> None:
        info(
            f"collected {len(result.collected.written)} rows, rolled up {result.rolled_up.tenant_days} tenant-days",
            quiet=state.quiet,
        )
        for w in result.collected.written:
            if not w.row.final:  # a day the next collect finishes (usage still in flight at the provider)
                info(f"provisional: {w.tenant} {w.source} {w.day} ({w.row.note})", quiet=state.quiet)
        write(result.ranking, "table", sys.stdout)
        sys.stdout.write("\n")
        write(result.report, "table", sys.stdout)
        # What the demo's directory file changed mid-month, and the upgraded tenant's prorated plan charge.
        sys.stdout.write("\nThe tenant directory (usagectl directory sync) changed mid-month:\n")
        sys.stdout.write("".join(f"  {line}\n" for line in result.directory_changes))
        sys.stdout.write("\n")
        write(result.upgraded, "table", sys.stdout)

    # Stopped by a signal, the demo still removes its temporary folder (the database) on the way out.
    with stop_like_ctrl_c():
        result = run_demo(
            days=days,
            keep=keep,
            step=lambda msg: info(msg, quiet=state.quiet),
            then=serve_pages if serve else None,
        )
    if serve:
        return
    check(result)
    _print(result)
    if keep is not None:
        info(
            f"kept the demo database: USAGECTL_DATABASE_URL=sqlite:///{result.database} usagectl tenants",
            quiet=state.quiet,
        )
