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
    values: Sequence[float | None],
    *,
    width: int,
    height: int = 12,
    title: str = "",
    color: bool = False,
) -> str:
    """A line chart of `values` (one per label) at most `width` columns wide; plain text unless `color`.

    None is a day without data: a gap in the line, never a point at 0."""
    import plotext as plt

    width = max(width, MIN_WIDTH)
    plt.clf()
    plt.plotsize(width, height)
    plt.theme("pro" if color else "clear")
    xs = list(range(1, len(values) + 1))
    marker = "braille" if color else "dot"
    for run in _runs(values):
        ys = [values[i - 1] for i in run]
        if len(run) == 1:
            plt.scatter(run, ys, marker=marker, color="blue")
        else:
            plt.plot(run, ys, marker=marker, color="blue")
    plt.xlim(1, max(len(values), 2))
    top = max((v for v in values if v is not None), default=0)
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


def _runs(values: Sequence[float | None]) -> list[list[int]]:
    """The 1-based x positions of each stretch of consecutive known values."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, v in enumerate(values, start=1):
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs
