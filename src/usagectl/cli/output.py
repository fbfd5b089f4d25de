"""Where the CLI writes: data to stdout, progress and diagnostics to stderr. Rich honours NO_COLOR itself."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


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
