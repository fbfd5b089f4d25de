"""The 30-day line chart. The ONLY module that imports plotext
(pinned <6: plotext 6 is a rewrite with another API).

plotext 5.x keeps global figure state, so every call clears it first; `build()` returns the chart as text
instead of printing it, which lets us place it inside Rich output and strip colour when it is not wanted.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_WIDTH = 30


def line_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    width: int,
    height: int = 12,
    title: str = "",
    color: bool = False,
) -> str:
    """A line chart of `values` (one per label) at most `width` columns wide; plain text unless `color`."""
    import plotext as plt

    width = max(width, MIN_WIDTH)
    plt.clf()
    plt.plotsize(width, height)
    plt.theme("pro" if color else "clear")
    xs = list(range(1, len(values) + 1))
    plt.plot(xs, list(values), marker="braille" if color else "dot")
    top = max(values, default=0)
    plt.ylim(0, top * 1.05 if top > 0 else 1)
    # Around five date ticks: readable in 80 columns.
    step = max(1, len(labels) // 5)
    ticks = [i for i in xs if (i - 1) % step == 0]
    plt.xticks(ticks, [labels[i - 1] for i in ticks])
    if title:
        plt.title(title)
    text: str = plt.build()
    plt.clf()
    if not color:
        text = plt.uncolorize(text)
    return "\n".join(line.rstrip() for line in text.splitlines())
