"""Exact money: Decimal USD in Python, integer micro-USD in the database, integer pico-USD for unit prices in SQL.

At the bottom of the house, so the store's column types and the pricing rules share one definition of rounding.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICRO = Decimal("0.000001")
MICROS_PER_USD = 1_000_000
PICOS_PER_USD = 10**12
PICOS_PER_MICRO = 10**6


def round_micro(amount: Decimal) -> Decimal:
    return amount.quantize(MICRO, rounding=ROUND_HALF_UP)


def to_micros(amount: Decimal) -> int:
    """USD -> integer micro-USD; refuses to round silently."""
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount} USD is not a whole number of micro-dollars")
    return int(micros)


def from_micros(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_USD).quantize(MICRO)


def to_picos(price: Decimal) -> int:
    """A unit price as integer pico-USD, so SQL can price with integer arithmetic and round like Python."""
    picos = price * PICOS_PER_USD
    if picos != picos.to_integral_value():
        raise ValueError(f"unit price {price} has more than 12 decimal places")
    return int(picos)
