"""Renderers: each takes a report object (usagectl.reports) and writes it to a text stream.

table.py (Rich, for people), chart.py (the only plotext import), csv.py and json.py (for machines;
never through Rich, which wraps lines and eats `[brackets]`).
"""

from __future__ import annotations

import os
from typing import TextIO


def use_color(stream: TextIO) -> bool:
    """Colour and styles only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
