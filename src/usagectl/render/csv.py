"""CSV for spreadsheets and finance tools. Column names are stable (docs/export.md).

Money is a decimal string with 6 places (micro-USD), an unknown value (no provider cost reported, no storage
reading) is an empty cell, and a text cell starting with = + - @ is prefixed with ' so that a
spreadsheet never runs it as a formula. Control characters in text cells are neutralised (render.clean_text): the
writer leaves a lone CR unquoted, which split a row in two for every CSV reader. Numbers are never escaped: only a
margin, a difference or an adjustment's delta can be negative, and a number is never run as a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TextIO

from usagectl.meters import PRICED, RANKED
from usagectl.money import MICROS_PER_USD, from_micros
from usagectl.periods import Window
from usagectl.render import clean_text
from usagectl.render.layout import Audience, export_columns
from usagectl.reports import (
    ADJUSTMENT_COLUMNS,
    EXPORT_COLUMNS,
    MONEY_COLUMNS,
    DayRow,
    ExportReport,
    ReconcileReport,
    TenantReport,
    TenantsReport,
)

_RANKED_FIELDS = tuple(m.total for m in RANKED if m.total)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

TENANTS_COLUMNS = (
    "month",
    "tenant",
    "tenant_name",
    "plan_tier",
    "active",
    *(m.rollup for m in RANKED),
    "estimated_cost_usd",
    "provider_cost_usd",
    "plan_charge_usd",
    "margin_usd",
)

RECONCILE_COLUMNS = (
    "month",
    "as_of",
    "tenant",
    "tenant_name",
    "provider",
    *(m.rollup for m in PRICED),
    "estimated_cost_usd",
    "provider_cost_usd",
    "days",
    "provider_cost_unknown_days",
    "difference_usd",
    "difference_percent",
)


def cell(value: Any) -> str:
    if type(value) is int or type(value) is Decimal:  # the common case first: it runs per cell
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    text = clean_text(str(value))
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _write(stream: TextIO, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([cell(v) for v in row])


def _day_cells(rows: Iterable[DayRow]) -> Iterable[list[Any]]:
    for d in rows:
        yield [getattr(d, c) for c in EXPORT_COLUMNS]


def micros_text(micros: int) -> str:
    """Integer micro-USD as the money cell `str(money.from_micros(micros))` gives, without a Decimal."""
    assert MICROS_PER_USD == 1_000_000  # _write_raw inlines it
    if micros < 0:
        return str(from_micros(micros))
    whole, frac = divmod(micros, MICROS_PER_USD)
    return f"{whole}.{frac:06d}"


_MONEY_AT = tuple(i for i, c in enumerate(EXPORT_COLUMNS) if c in MONEY_COLUMNS)
_TEXT_AT = tuple(
    i for i, c in enumerate(EXPORT_COLUMNS) if c in ("tenant", "tenant_name", "plan_tier", "pricing_version")
)
_DATE_AT = EXPORT_COLUMNS.index("date")


def _write_raw(stream: TextIO, rows: Iterable[Sequence[Any]]) -> int:
    """The export from raw tuples (reports.ExportReport.raw_rows): the same cells as `cell()` gives for the
    DayRow values, at a third of the cost. Integers are written by csv itself, None as an empty cell."""
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    count = 0
    for row in rows:
        cells = list(row)
        for i in _MONEY_AT:
            v = cells[i]
            if v is not None:  # micros_text(v), inlined: it runs six times per row
                cells[i] = f"{v // 1_000_000}.{v % 1_000_000:06d}" if v >= 0 else micros_text(v)
        for i in _TEXT_AT:
            v = cells[i]
            if not v.isprintable():
                v = cells[i] = clean_text(v)
            if v.startswith(FORMULA_PREFIXES):
                cells[i] = "'" + v
        d = cells[_DATE_AT]
        if type(d) is not str:
            cells[_DATE_AT] = d.isoformat()
        w.writerow(cells)
        count += 1
    return count


def write_export_csv(export: ExportReport, stream: TextIO) -> int:
    """Stream the export rows; returns how many were written."""
    if export.raw_rows is not None:
        return _write_raw(stream, export.raw_rows())
    count = 0

    def counted() -> Iterable[list[Any]]:
        nonlocal count
        for cells in _day_cells(export.rows):
            count += 1
            yield cells

    _write(stream, EXPORT_COLUMNS, counted())
    return count


def write_adjustments_csv(export: ExportReport, stream: TextIO) -> int:
    """The adjustments posted in the export's window, one row each (docs/export.md); returns how many."""
    rows = [list(a.as_dict().values()) for a in export.adjustments]
    for row in rows:
        row[0] = row[0].isoformat().replace("+00:00", "Z")  # posted_at, as in JSON
    _write(stream, ADJUSTMENT_COLUMNS, rows)
    return len(rows)


def write_tenant_report_csv(report: TenantReport, stream: TextIO, *, audience: Audience = "operator") -> None:
    """The report's daily rows, with the export's columns this audience may see (render.layout)."""
    columns = export_columns(audience)
    _write(stream, columns, ([getattr(d, c) for c in columns] for d in report.days))


def write_tenants_csv(report: TenantsReport, stream: TextIO) -> None:
    """One row per tenant, then a total row (tenant = "TOTAL") over all tenants. A streamed report's rows are
    written as they come."""
    month = report.month.start.strftime("%Y-%m")
    priced = False

    def rows() -> Iterator[list[Any]]:
        nonlocal priced
        for t in report.iter_lines():
            priced = priced or t.plan_charge is not None
            yield [
                month,
                t.slug,
                t.name,
                t.plan_tier,
                t.active,
                *(getattr(t, f) for f in _RANKED_FIELDS),
                t.estimated_cost,
                t.provider_cost,
                t.plan_charge.total if t.plan_charge else None,
                t.margin,
            ]
        tot = report.total
        yield [
            month,
            "TOTAL",
            "",
            "",
            "",
            *(getattr(tot, f) for f in _RANKED_FIELDS),
            tot.estimated_cost,
            tot.provider_cost,
            report.plan_charge_total if priced else None,
            report.margin_total,
        ]

    _write(stream, TENANTS_COLUMNS, rows())


def _money_cell(micros: int | None) -> str:
    if micros is None:
        return ""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}" if micros >= 0 else micros_text(micros)


def _text_cell(text: str) -> str:
    if not text.isprintable():
        text = clean_text(text)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def write_ranking_csv(
    month: Window, rows: Iterable[Sequence[Any]], stream: TextIO, *, priced: bool, needle: str = ""
) -> int:
    """`write_tenants_csv`'s document from reports.ranking_rows' tuples (every tenant, in order; money in
    micro-USD), the same bytes without a report object per tenant; the TOTAL row is summed here as the rows pass
    (over every tenant, as the ranking's aggregate would be). `priced`: the rows carry the plan charge and margin
    (a config). `needle` (folded as reports.ascii_lower) writes only the tenants whose slug or name contains it;
    the total stays over all. Returns the tenant rows written."""
    from usagectl.reports.queries import RANKING_ROW, ascii_lower

    assert RANKING_ROW[4 : 4 + len(_RANKED_FIELDS)] == _RANKED_FIELDS
    label = month.start.strftime("%Y-%m")
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(TENANTS_COLUMNS)
    n_ranked = len(_RANKED_FIELDS)
    sums = [0] * n_ranked
    cost = 0
    provider: int | None = None
    charge = 0
    margin: int | None = 0
    count = written = 0
    for row in rows:
        slug, name, tier, active = row[0], row[1], row[2], row[3]
        usage = row[4 : 4 + n_ranked]
        est, prov, plan, mar = row[4 + n_ranked :]
        count += 1
        for i, v in enumerate(usage):
            sums[i] += v
        cost += est
        if prov is not None:
            provider = prov if provider is None else provider + prov
        if priced:
            charge += plan
            margin = None if margin is None or mar is None else margin + mar
        if needle and needle not in ascii_lower(slug) and needle not in ascii_lower(name):
            continue
        written += 1
        w.writerow(
            [
                label, _text_cell(slug), _text_cell(name), _text_cell(tier), "true" if active else "false",
                *usage, _money_cell(est), _money_cell(prov), _money_cell(plan), _money_cell(mar),
            ]
        )  # fmt: skip
    w.writerow(
        [
            label, "TOTAL", "", "", "", *sums, _money_cell(cost), _money_cell(provider),
            _money_cell(charge if priced and written else None), _money_cell(margin if priced and count else None),
        ]
    )  # fmt: skip
    return written


def write_reconcile_csv(report: ReconcileReport, stream: TextIO) -> None:
    """One row per tenant and provider; an unknown provider cost or difference is an empty cell."""
    month = report.month.start.strftime("%Y-%m")
    rows = [
        [
            month,
            report.as_of,
            line.tenant,
            line.tenant_name,
            line.provider,
            *(line.usage[m.key] for m in PRICED),
            line.estimated_cost,
            line.provider_cost,
            line.days,
            line.unknown_days,
            line.difference,
            line.difference_percent,
        ]
        for line in report.lines
    ]
    _write(stream, RECONCILE_COLUMNS, rows)
