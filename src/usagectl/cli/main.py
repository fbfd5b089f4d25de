"""The root command, global options and the error funnel.

Every expected failure is a `UsagectlError`: one line on stderr and its exit code (design.md). Anything else is a
bug: one line too, and the traceback only with --debug.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from usagectl import __version__
from usagectl.cli.context import AppState, get_state
from usagectl.errors import EXIT_FAILURE, UsagectlError

# Each module has `register(app)`; the order is the order of `usagectl --help`.
COMMAND_MODULES = (
    "usagectl.cli.init_cmd",
    "usagectl.cli.db_cmd",
    "usagectl.cli.config_cmd",
    "usagectl.cli.collect_cmd",
    "usagectl.cli.record_cmd",
    "usagectl.cli.ingest_cmd",
    "usagectl.cli.rollup_cmd",
    "usagectl.cli.report_cmd",
    "usagectl.cli.tenants_cmd",
    "usagectl.cli.export_cmd",
    "usagectl.cli.demo_cmd",
    "usagectl.cli.token_cmd",
    "usagectl.cli.serve_cmd",
)

app = typer.Typer(
    name="usagectl",
    help="Meter per-tenant usage and cost (Twilio, SendGrid, OpenAI, internal events).",
    epilog="Example: usagectl demo    (sandbox providers, no config needed)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"usagectl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (else $USAGECTL_CONFIG, the user config dir, /etc/usagectl).",
            dir_okay=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    state = get_state(ctx)
    state.config_path = config
    state.quiet = quiet
    state.debug = debug
    ctx.call_on_close(state.close)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this; the console script exits with it)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # Standalone mode: Typer prints usage errors itself (exit 2) and always ends in SystemExit.
        app(args=args, prog_name="usagectl")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_FAILURE)
    except UsagectlError as exc:
        if debug:
            traceback.print_exc()
        print(f"usagectl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("usagectl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `usagectl export | head` closes the pipe early; that is not an error.
        _silence_stdout()
        return 0
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(
            f"usagectl: error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return 0


def _silence_stdout() -> None:
    # Python flushes stdout at exit; on a closed pipe that would print a second error.
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def entry() -> None:
    sys.exit(main())


__all__ = ["AppState", "app", "entry", "main"]
