"""usagectl serve: the usage API over HTTP (FastAPI on uvicorn, imported only here)."""

from __future__ import annotations

from typing import Annotated

import typer

from usagectl.cli.context import get_state


def register(app: typer.Typer) -> None:
    app.command(
        "serve",
        help=(
            "Serve the usage API (tenant-admin and root-admin endpoints, /healthz, /docs) over HTTP. "
            "Reads the same database as the CLI; writes only token bookkeeping. Put TLS in a reverse proxy."
        ),
        epilog="Example: usagectl serve --host 127.0.0.1 --port 8080 --workers 2",
    )(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default [serve].host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=1, max=65535, help="Port (default [serve].port, 8080).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, max=64, help="Worker processes (default [serve].workers, 1)."),
    ] = None,
) -> None:
    import os

    from usagectl import config as cfgmod

    state = get_state(ctx)
    cfg = state.config()
    serve_cfg = cfg.serve
    # Fail here, with one line and exit 2, rather than in every worker: a bad key file, a missing secret.
    from usagectl.web.auth import make_verifier

    store = state.store(sync_tenants=False)
    make_verifier(serve_cfg.auth, store)
    state.close()

    import uvicorn

    # Worker processes rebuild the app from the same config file and database.
    if cfg.source is not None:
        os.environ[cfgmod.ENV_CONFIG] = str(cfg.source.resolve())
    if serve_cfg.session_secret is None:
        import secrets

        from usagectl.web.session import ENV_PROCESS_SECRET

        # One random secret for all this run's workers, so a session works whichever worker answers.
        os.environ[ENV_PROCESS_SECRET] = secrets.token_urlsafe(32)
    else:
        from usagectl.web.session import session_secret

        session_secret(serve_cfg)  # a missing or short secret: exit 2 here, not in every worker
    os.environ["USAGECTL_SERVE_ACCESS_LOG"] = "1" if serve_cfg.access_log and not state.quiet else "0"
    uvicorn.run(
        "usagectl.web.app:app_from_env",
        factory=True,
        host=host or serve_cfg.host,
        port=port or serve_cfg.port,
        workers=workers or serve_cfg.workers,
        # uvicorn's own access line carries the query string; ours (usagectl.access) never does.
        access_log=False,
        log_level="warning" if state.quiet else "info",
        log_config=_log_config(),
        proxy_headers=True,
        # Longer than a reverse proxy's or client pool's idle timeout (60 s is common): with uvicorn's 5 s, a
        # client reusing a connection just as the server closes it got a reset (seen in the soak benchmark).
        timeout_keep_alive=75,
        server_header=False,
    )


def serve_app(app: object, *, host: str, port: int, quiet: bool) -> None:
    """Serve an app object in this process until Ctrl-C, SIGTERM or SIGHUP (`usagectl demo --serve`)."""
    import signal

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host,
            port=port,
            access_log=False,
            log_level="warning" if quiet else "info",
            log_config=_log_config(),
            server_header=False,
        )
    )
    # uvicorn shuts down gracefully on SIGINT and SIGTERM; SIGHUP (the terminal closed) is made to do the same.
    hangup = getattr(signal, "SIGHUP", None)
    previous = signal.signal(hangup, lambda _s, f: server.handle_exit(signal.SIGTERM, f)) if hangup else None
    try:
        server.run()
    except KeyboardInterrupt:
        # After its shutdown uvicorn raises the signal again for the handler it replaced (under
        # cli.signals.stop_like_ctrl_c, a KeyboardInterrupt): the stop that was asked for, not an error.
        pass
    finally:
        if hangup:
            signal.signal(hangup, previous)


def _log_config() -> dict[str, object]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "usagectl.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }
