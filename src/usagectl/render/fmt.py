"""How numbers and money read for people, in one place: the terminal (render.table), the layout (render.layout)
and the pages (web) all format through here, so a figure reads the same everywhere. Machines (JSON, CSV) get
exact decimal strings instead (render.json, render.csv).

At the bottom of the house like meters.py: it imports nothing of usagectl."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def format_usd(amount: Decimal | None, places: int = 2) -> str:
    """Display form. Unknown (unpriced) stays visible as such, never as $0."""
    if amount is None:
        return "unknown"
    q = Decimal(1).scaleb(-places)
    shown = amount.quantize(q, rounding=ROUND_HALF_UP)
    if shown == 0 and amount != 0:
        return f"<${q}"
    return f"${shown:,}"


def n(value: int | None) -> str:
    """A count with thousands separators; None (no reading) as "unknown", never 0."""
    return "unknown" if value is None else f"{value:,}"


def usd(amount: Decimal | None) -> str:
    return format_usd(amount)


def signed_usd(amount: Decimal) -> str:
    """A margin or difference: "-$1.50" below zero (format_usd alone would show "$-1.50")."""
    return "-" + usd(-amount) if amount < 0 else usd(amount)


def margin_text(margin: Decimal | None) -> str:
    """A margin, or "incomplete" while some provider cost of the month is unknown (never $0)."""
    return "incomplete" if margin is None else signed_usd(margin)


def exact_usd(amount: Decimal) -> str:
    """To the micro-dollar, for figures finance compares exactly (reprice)."""
    return format_usd(amount, 6)


def change_percent(now: Decimal, before: Decimal | None) -> str:
    """Month-over-month change: "+12.5%", "-3.0%", "new" (nothing before), "n/a" (unknown before)."""
    if before is None:
        return "n/a"
    if before == 0:
        return "new" if now else "0.0%"
    pct = ((now - before) * 100 / before).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{pct:+}%"
