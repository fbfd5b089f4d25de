"""Renderers: each takes a report object (usagectl.reports) and writes it to a text stream.

table.py (Rich, for people), chart.py (the only plotext import), csv.py and json.py (for machines;
never through Rich, which wraps lines and eats `[brackets]`).
"""

from __future__ import annotations

import os
import re
from typing import TextIO

from usagectl.config import CONTROL_CHARS


def _replace(m: re.Match[str]) -> str:
    return " " if m.group() in "\t\n\r\u2028\u2029" else ""


def clean_text(text: str) -> str:
    """Tenant-supplied text fit for a terminal or a CSV cell: line breaks and tabs become spaces, every other
    control character (an escape sequence's ESC, a bidi override) is dropped. The config refuses such names; this
    covers names already in a database, on every output, terminal or not."""
    if text.isprintable():  # the common case, in C
        return text
    return CONTROL_CHARS.sub(_replace, text)


def use_color(stream: TextIO) -> bool:
    """Colour and styles only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def write(report: object, fmt: str, stream: TextIO) -> int | None:
    """Render any report object (TenantReport, TenantsReport, ReconcileReport, ExportReport) as table, json or csv.

    Returns the row count for an export, None otherwise."""
    from usagectl.errors import InputError
    from usagectl.reports import ExportReport, ReconcileReport, TenantReport, TenantsReport

    if isinstance(report, ExportReport):
        if fmt == "csv":
            from usagectl.render.csv import write_export_csv

            return write_export_csv(report, stream)
        if fmt == "json":
            from usagectl.render.json import write_export_json

            return write_export_json(report, stream)
        raise InputError(f"--format: {fmt!r} is not one of csv, json")
    if fmt not in ("table", "json", "csv"):
        raise InputError(f"--format: {fmt!r} is not one of table, json, csv")
    if isinstance(report, TenantReport):
        from usagectl.render import csv, json, table

        {"table": table.render_tenant_report, "json": json.write_tenant_report_json,
         "csv": csv.write_tenant_report_csv}[fmt](report, stream)  # fmt: skip
        return None
    if isinstance(report, ReconcileReport):
        from usagectl.render import csv, json, table

        {"table": table.render_reconcile, "json": json.write_reconcile_json,
         "csv": csv.write_reconcile_csv}[fmt](report, stream)  # fmt: skip
        return None
    if isinstance(report, TenantsReport):
        from usagectl.render import csv, json, table

        {"table": table.render_tenants, "json": json.write_tenants_json,
         "csv": csv.write_tenants_csv}[fmt](report, stream)  # fmt: skip
        return None
    raise TypeError(f"no renderer for {type(report).__name__}")
