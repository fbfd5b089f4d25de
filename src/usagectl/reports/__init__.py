"""Reports: the objects (objects.py, pure data) and the queries that build them (queries.py)."""

from usagectl.reports.objects import (
    CURRENCY,
    EMPTY_MESSAGE,
    EXPORT_COLUMNS,
    MONEY_COLUMNS,
    SCHEMA_VERSION,
    SORT_KEYS,
    Allowance,
    DayRow,
    ExportReport,
    MonthToDate,
    TenantInfo,
    TenantLine,
    TenantReport,
    TenantsReport,
    Totals,
)
from usagectl.reports.queries import (
    export_rows,
    month_projection,
    tenant_report,
    tenants_report,
    unknown_tenant,
)

__all__ = [
    "CURRENCY",
    "EMPTY_MESSAGE",
    "EXPORT_COLUMNS",
    "MONEY_COLUMNS",
    "SCHEMA_VERSION",
    "SORT_KEYS",
    "Allowance",
    "DayRow",
    "ExportReport",
    "MonthToDate",
    "TenantInfo",
    "TenantLine",
    "TenantReport",
    "TenantsReport",
    "Totals",
    "export_rows",
    "month_projection",
    "tenant_report",
    "tenants_report",
    "unknown_tenant",
]
