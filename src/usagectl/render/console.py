"""The rich Console every writer uses, with a closed pipe left to the CLI's error funnel."""

from __future__ import annotations

import errno
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console_class() -> type[Console]:
    """Built on first use: importing rich costs every command start-up time."""
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich's default exits with 1; `usagectl tenants | head -1` is not a failure, so the BrokenPipeError
            # goes on to cli.main, which ends quietly with 0 as other Unix tools do.
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "the reader of the output has gone")

    return PipeAwareConsole
