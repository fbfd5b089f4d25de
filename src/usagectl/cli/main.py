"""The root command, global options and the error funnel.

Every expected failure is a `UsagectlError`: one line on stderr and its exit code (errors.py). Anything else is a
bug: one line too, and the traceback only with --debug.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from usagectl import __version__
from usagectl.cli import (
    alerts_cmd,
    collect_cmd,
    config_cmd,
    db_cmd,
    demo_cmd,
    directory_cmd,
    export_cmd,
    ingest_cmd,
    init_cmd,
    reconcile_cmd,
    record_cmd,
    report_cmd,
    reprice_cmd,
    rollup_cmd,
    sandbox_cmd,
    seal_cmd,
    serve_cmd,
    tenants_cmd,
    token_cmd,
)
from usagectl.cli.context import AppState, get_state
from usagectl.errors import EXIT_FAILURE, UsagectlError


class _PipeClosed(Exception):
    """stdout's reader went away (`usagectl tenants | head -1`)."""


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            # Click turns an EPIPE OSError into exit 1; a closed pipe is how `head` says it has enough, so it
            # leaves Click as another exception and ends quietly with 0 in main().
            raise _PipeClosed from exc


app = typer.Typer(
    name="usagectl",
    cls=_Group,
    help="Meter per-tenant usage and cost (Twilio, SendGrid, OpenAI, internal events).",
    epilog="Example: usagectl demo    (sandbox providers, no config needed)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    # Plain Click help: Rich's help panel shows a type placeholder for every option (`--dry-run <bool>`), and
    # its usage errors are a 5-line box; ours are one line like every other error (see main()).
    rich_markup_mode=None,
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


# Each module adds its commands with `register(app)`; this order is the order of `usagectl --help`. A command
# module imports only Typer and the CLI's own helpers at the top (the core is imported inside the command), so
# `usagectl --version` stays as light as a bare Typer app.
COMMANDS = (
    init_cmd,
    db_cmd,
    config_cmd,
    directory_cmd,
    collect_cmd,
    record_cmd,
    ingest_cmd,
    rollup_cmd,
    seal_cmd,
    reprice_cmd,
    report_cmd,
    tenants_cmd,
    reconcile_cmd,
    export_cmd,
    alerts_cmd,
    demo_cmd,
    directory_cmd,
    sandbox_cmd,
    token_cmd,
    serve_cmd,
)
for _module in COMMANDS:
    _module.register(app)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Global options that take a value; the flags are the others of GLOBAL_OPTIONS.
_GLOBAL_WITH_VALUE = ("--config", "-c")
GLOBAL_OPTIONS = ("-q", "--quiet", "--debug", *_GLOBAL_WITH_VALUE)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move -q/--quiet, --debug and --config FILE found after the command name to before it, so that
    `usagectl collect -q` means `usagectl -q collect` (Click only knows a group's options before its command)."""
    front: list[str] = []
    rest: list[str] = []
    seen_command = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if not seen_command:
            if arg in _GLOBAL_WITH_VALUE and i + 1 < len(args):
                front.extend(args[i : i + 2])
                i += 2
                continue
            seen_command = not arg.startswith("-")
            front.append(arg)
        elif arg in ("-q", "--quiet", "--debug"):
            front.insert(0, arg)
        elif arg in _GLOBAL_WITH_VALUE and i + 1 < len(args):
            front[0:0] = args[i : i + 2]
            i += 1
        elif arg.startswith("--config="):
            front.insert(0, arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


# Value placeholders in --help by option name; any other option shows its own name (`--month MONTH`).
_PLACEHOLDERS = {
    "tenant": "SLUG",
    "provider": "NAME",
    "days": "N",
    "lookback": "N",
    "limit": "N",
    "date": "DATE",
    "since": "DATE",
    "until": "DATE",
    "config": "FILE",
    "path": "FILE",
    "output": "FILE",
    "keep": "DIR",
    "at": "TIME",
    "write-config": "FILE",
    "port": "PORT",
}


def _name_placeholders(command: Any) -> None:
    """Give every option a word placeholder (`--tenant SLUG`) instead of Typer's type (`<list[str]>`), and
    arguments none beside their metavar (`METRIC`, not `METRIC <str>`)."""
    for param in getattr(command, "params", ()):
        if param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None
        elif param.metavar is None and not getattr(param, "is_flag", False):
            long = max(param.opts, key=len).lstrip("-")
            param.metavar = _PLACEHOLDERS.get(long, long.upper())
    for child in getattr(command, "commands", {}).values():
        _name_placeholders(child)


def _click_error(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for a Click usage error. Typer vendors Click privately, so the class is
    recognised by name rather than imported."""
    if not any(c.__name__ == "ClickException" for c in type(exc).__mro__):
        return None
    if type(exc).__name__ == "NoArgsIsHelpError":
        # `usagectl db` with no subcommand: the group's help page, as Click shows it.
        exc.show()  # type: ignore[attr-defined]
        return "", 2
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    code = getattr(exc, "exit_code", 2)
    return message + hint, code if isinstance(code, int) else 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this; the console script exits with it)."""
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    try:
        # Not standalone: usage errors come back here to be printed as one line.
        command = typer.main.get_command(app)
        _name_placeholders(command)
        result = command.main(args=args, prog_name="usagectl", standalone_mode=False)
        status = result if isinstance(result, int) else 0
        # A reader that has gone (`| head`) is only noticed on this last flush; it is not an error.
        _flush_stdout()
        return status
    except SystemExit as exc:
        _flush_stdout()
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILURE)
    except typer.Abort:
        print("usagectl: interrupted", file=sys.stderr)
        return 130
    except UsagectlError as exc:
        if debug:
            traceback.print_exc()
        print(f"usagectl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("usagectl: interrupted", file=sys.stderr)
        return 130
    except (BrokenPipeError, _PipeClosed):
        # `usagectl export | head` closes the pipe early; that is not an error.
        _silence_stdout()
        return 0
    except Exception as exc:
        usage = _click_error(exc)
        if usage is not None:
            if usage[0]:
                print(f"usagectl: error: {usage[0]}", file=sys.stderr)
            return usage[1]
        if debug:
            traceback.print_exc()
        print(
            f"usagectl: error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return 0


def _flush_stdout() -> bool:
    """Flush what is still buffered now, while a closed pipe can be handled (False: the reader has gone)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return False
    return True


def _silence_stdout() -> None:
    # Python flushes stdout at exit; on a closed pipe that would print a second error.
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def entry() -> None:
    sys.exit(main())


__all__ = ["AppState", "app", "entry", "main"]
