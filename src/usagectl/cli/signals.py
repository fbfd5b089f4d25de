"""SIGTERM and SIGHUP stop a long-running command the way Ctrl-C does, so its `finally` blocks run.

Python's default for these signals ends the process on the spot: no `finally`, no context manager exit. For
`usagectl demo --serve` and `usagectl sandbox` that left their temporary folder behind, with the sample database
and the fake credential files the written config points at. Inside `stop_like_ctrl_c()` the two signals raise
KeyboardInterrupt instead, which the commands already treat as "stop": clean up, then exit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_like_ctrl_c() -> Iterator[None]:
    """For the `with` block, SIGTERM and SIGHUP raise KeyboardInterrupt (as SIGINT does); restored afterwards."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
