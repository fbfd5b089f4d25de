"""The 30-day line chart as inline SVG, drawn on the server: it renders without scripts, prints, and passes a
strict Content-Security-Policy (colours come from CSS classes in static/usage.css, never from style attributes).

Values are exact (Decimal or int); they become floats only to place a point in pixels. Axis labels are computed
in Decimal and formatted by the caller's formatter, so a figure shown on the chart is the figure of the table.
A day without data (None) is a gap in the line, never a zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal

from markupsafe import Markup, escape

Value = Decimal | int
MAX_SERIES_CLASSES = 6  # s0..s5 in usage.css
# usage.css draws chart text at most 24 user units high (a phone); digits are about 0.6 em wide.
LABEL_CHAR_WIDTH = 14
LABEL_GAP = 14


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[date, Value | None]]  # one per day, oldest first; None: no data that day


@dataclass(frozen=True)
class _Box:
    width: int
    height: int
    left: int = 64
    right: int = 14
    top: int = 14
    bottom: int = 34

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom


def nice_ticks(top: Value, *, integral: bool, count: int = 4) -> list[Decimal]:
    """0 up to a round number >= `top` in `count` equal 1/2/5 x 10^k steps (Decimal: exact labels)."""
    high = Decimal(top)
    if high <= 0:
        # Nothing to scale to: one step above the zero line, so a flat line sits at the bottom.
        return [Decimal(0), Decimal(1)]
    raw = high / count
    base = Decimal(1).scaleb(raw.adjusted())
    step = next(m * base for m in (Decimal(1), Decimal(2), Decimal(5), Decimal(10)) if m * base >= raw)
    if integral and step < 1:
        step = Decimal(1)
    steps = int((high / step).to_integral_value(rounding=ROUND_CEILING))
    return [step * i for i in range(max(steps, 1) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def line_chart_svg(
    series: Sequence[Series],
    *,
    title: str,
    desc: str,
    value_format: Callable[[Decimal], str],
    chart_id: str,
    width: int = 720,
    height: int = 240,
    provisional: int = 0,
    provisional_note: str = "provisional",
) -> Markup:
    """An accessible SVG line chart (role=img with <title> and <desc>), one polyline per unbroken run of days
    per series and a circle per known day (with its own <title>, a hover tooltip without scripts).

    All series share the x axis (the dates of the first series) and one y axis from 0. The last `provisional`
    days are the day in progress: drawn apart (a dashed line into a hollow circle, class "provisional"), their
    tooltip and x label saying so."""
    if not series or not series[0].points:
        raise ValueError("a chart needs at least one series with at least one day")
    days = [d for d, _ in series[0].points]
    for s in series:
        if [d for d, _ in s.points] != days:
            raise ValueError(f"series {s.name!r} does not cover the same days as {series[0].name!r}")
    known = [v for s in series for _, v in s.points if v is not None]
    integral = all(isinstance(v, int) for v in known)
    ticks = nice_ticks(max(known, default=0), integral=integral)
    tick_labels = [value_format(t) for t in ticks]
    # Room for the longest y label at the largest font usage.css gives chart text (on a phone).
    box = _Box(width, height, left=LABEL_GAP + LABEL_CHAR_WIDTH * max(len(t) for t in tick_labels))
    top = float(ticks[-1])
    n = len(days)

    def x(i: int) -> float:
        return box.left + (box.plot_w * i / (n - 1) if n > 1 else box.plot_w / 2)

    def y(v: Value) -> float:
        # Floats only for pixel positions.
        return box.top + box.plot_h * (1 - float(v) / top)

    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    out: list[str] = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(desc)}</desc>',
        '<g class="grid" aria-hidden="true">',
    ]
    for t in ticks:
        ty = _fmt(y(t))
        out.append(f'<line x1="{box.left}" y1="{ty}" x2="{box.left + box.plot_w}" y2="{ty}"/>')
    out.append("</g>")
    out.append('<g class="axis" aria-hidden="true">')
    bottom = box.top + box.plot_h
    out.append(f'<line x1="{box.left}" y1="{box.top}" x2="{box.left}" y2="{bottom}"/>')
    out.append(f'<line x1="{box.left}" y1="{bottom}" x2="{box.left + box.plot_w}" y2="{bottom}"/>')
    for t, label in zip(ticks, tick_labels, strict=True):
        out.append(f'<text class="ylabel" x="{box.left - 6}" y="{_fmt(y(t) + 4)}">{escape(label)}</text>')
    # About five date labels, always the first and the last day.
    step = max(1, (n - 1) // 4) if n > 1 else 1
    labelled = list(range(0, n, step))
    if labelled[-1] != n - 1:
        if n - 1 - labelled[-1] < step:
            labelled.pop()  # it would run into the last day's label
        labelled.append(n - 1)
    first_provisional = n - provisional
    for i in labelled:
        # The first and last labels stay inside the chart instead of running past its edges.
        cls = "xlabel end" if i == n - 1 and n > 1 else "xlabel start" if i == 0 and n > 1 else "xlabel"
        label = f"{days[i]:%m-%d}"
        if i >= first_provisional:
            cls += " provisional"
            label += "*"
        out.append(f'<text class="{cls}" x="{_fmt(x(i))}" y="{height - 8}">{label}</text>')
    out.append("</g>")

    for k, s in enumerate(series):
        cls = f"series s{k % MAX_SERIES_CLASSES}"
        out.append(f'<g class="{cls}" data-series="{escape(s.name)}">')
        run: list[str] = []
        runs: list[list[str]] = []
        for i, (_, v) in enumerate(s.points[:first_provisional]):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{_fmt(x(i))},{_fmt(y(v))}")
        if run:
            runs.append(run)
        for r in runs:
            if len(r) > 1:  # a day alone between gaps is its circle only
                out.append(f'<polyline points="{" ".join(r)}"/>')
        if provisional:
            # From the last final day (if it is known) into the days in progress, dashed.
            start = max(first_provisional - 1, 0)
            tail = [
                f"{_fmt(x(i))},{_fmt(y(v))}"
                for i, (_, v) in enumerate(s.points)
                if i >= start and v is not None
            ]
            if len(tail) > 1:
                out.append(f'<polyline class="provisional" points="{" ".join(tail)}"/>')
        for i, (d, v) in enumerate(s.points):
            if v is not None:
                extra = f" ({provisional_note})" if i >= first_provisional else ""
                cls = ' class="provisional"' if i >= first_provisional else ""
                out.append(
                    f'<circle{cls} cx="{_fmt(x(i))}" cy="{_fmt(y(v))}" r="2.5" data-date="{d.isoformat()}">'
                    f"<title>{escape(s.name)} {d.isoformat()}: {escape(value_format(Decimal(v)))}"
                    f"{escape(extra)}</title></circle>"
                )
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))
