"""usagectl config: show the resolved config (secrets redacted) and check it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from usagectl.cli.context import get_state
from usagectl.cli.output import OutputFormat, choose_format, format_help, info

_SHOW_FORMATS = (OutputFormat.TOML, OutputFormat.JSON)

if TYPE_CHECKING:
    from usagectl.config import Config

config_app = typer.Typer(
    help="Show or check the configuration.",
    epilog="Example: usagectl config check --online",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show", epilog="Example: usagectl config show --format json")
def show(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help(_SHOW_FORMATS))] = "toml",
) -> None:
    """Print the resolved config, with every secret shown only as where it comes from."""
    from usagectl.config import redacted

    state = get_state(ctx)
    cfg = state.config()
    data = redacted(cfg)
    if choose_format(fmt, _SHOW_FORMATS) is OutputFormat.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        import tomli_w

        typer.echo(f"# source: {cfg.source or '(built-in defaults)'}")
        typer.echo(tomli_w.dumps(_drop_none(data)), nl=False)


def _drop_none(obj: Any) -> Any:
    # TOML has no null.
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


@config_app.command("check", epilog="Example: usagectl config check --online")
def check(
    ctx: typer.Context,
    online: Annotated[
        bool,
        typer.Option(
            "--online", help="Also try each provider credential with one cheap request (exit 1 if any fails)."
        ),
    ] = False,
) -> None:
    """Validate the config and resolve every secret reference (without printing any)."""
    state = get_state(ctx)
    cfg = state.config()
    cfg.database_url()  # a bad $USAGECTL_DATABASE_URL is a config error too
    secrets = cfg.resolve_secrets()
    where = cfg.source or "(built-in defaults)"
    info(
        f"{where}: ok ({len(cfg.tenants)} tenant{'s' if len(cfg.tenants) != 1 else ''}, "
        f"{len(cfg.pricing.books)} price book{'s' if len(cfg.pricing.books) != 1 else ''}, "
        f"{len(secrets)} secret{'s' if len(secrets) != 1 else ''} resolved)",
        quiet=state.quiet,
    )
    if online:
        _check_online(cfg, quiet=state.quiet)


def _check_online(cfg: Config, *, quiet: bool) -> None:
    from usagectl.errors import ConfigError, UsagectlError
    from usagectl.providers.registry import HTTP_SOURCES, check_credentials

    results = check_credentials(cfg)
    if not results:
        sections = ", ".join(f"[providers.{s}]" for s in HTTP_SOURCES)
        raise ConfigError(f"--online: no provider is configured ({sections})")
    failed = [r for r in results if not r.ok]
    if not quiet or failed:
        for r in results:
            typer.echo(f"{'ok    ' if r.ok else 'FAILED'}  {r.name}: {r.detail}")
    if failed:
        raise UsagectlError(f"{len(failed)} of {len(results)} credential checks failed")
