"""Where the CLI writes: data to stdout, progress and diagnostics to stderr. Rich honours NO_COLOR itself."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from usagectl.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console


class OutputFormat(StrEnum):
    """Every `--format` value of every command; each command accepts its own subset, in its own order."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    TOML = "toml"


def format_help(allowed: Sequence[OutputFormat]) -> str:
    """`--format`'s help: "table, json or csv."."""
    *first, last = [str(f) for f in allowed]
    return f"{', '.join(first)} or {last}." if first else f"{last}."


def choose_format(value: str, allowed: Sequence[OutputFormat]) -> OutputFormat:
    """The `--format` value as an OutputFormat, or a usage error naming the values this command accepts."""
    if value in allowed:
        return OutputFormat(value)
    raise InputError(f"--format: {value!r} is not one of {', '.join(allowed)}")


def stderr_console() -> Console:
    from usagectl.render.console import console_class

    return console_class()(file=sys.stderr, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    from usagectl.render.console import console_class

    return console_class()(file=sys.stdout, highlight=False)


def info(message: str, *, quiet: bool = False) -> None:
    """A diagnostic line on stderr; silent under -q."""
    if not quiet:
        stderr_console().print(message, markup=False)


def warn(message: str) -> None:
    """A warning on stderr, shown even under -q (cron should mail it)."""
    stderr_console().print(f"usagectl: warning: {message}", markup=False)
