"""JSON for machines: `schema_version`, the window (inclusive first and last UTC day), `currency: "USD"`,
money as decimal strings (6 places), unknown values as null. Written directly to the stream,
never through Rich."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

from usagectl.meters import BY_KEY, COST_COLUMNS, COUNTERS, PRICED
from usagectl.periods import Window
from usagectl.pricing import PlanCharge, plan_summary
from usagectl.render.layout import PLATFORM_FIELDS, Audience, sees_platform, usage_cards
from usagectl.reports import (
    CURRENCY,
    SCHEMA_VERSION,
    Adjustment,
    DayRow,
    ExportReport,
    ProviderCosts,
    ReconcileReport,
    TenantLine,
    TenantReport,
    TenantsReport,
    Totals,
)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _window(w: Window) -> dict[str, Any]:
    return {"start": w.start.isoformat(), "end": w.last.isoformat(), "days": w.days}


def _envelope(kind: str, window: Window, generated_at: datetime) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "currency": CURRENCY,
        "window": _window(window),
        "generated_at": _plain(generated_at),
    }


def _totals(t: Totals, audience: Audience = "operator") -> dict[str, Any]:
    # Each summed meter's total under its rollup column's name, then each priced meter's cost.
    out: dict[str, Any] = _plain(
        {
            **{m.rollup: getattr(t, m.total) for m in COUNTERS if m.total},
            **{m.cost_column: getattr(t, f"{m.key}_cost") for m in PRICED},
            "estimated_cost_usd": t.estimated_cost,
            "provider_cost_usd": t.provider_cost,
        }
    )
    return _for(out, audience)


def _for(obj: dict[str, Any], audience: Audience) -> dict[str, Any]:
    """`obj` without the platform's own figures unless the audience may see them (layout.PLATFORM_FIELDS)."""
    if sees_platform(audience):
        return obj
    return {k: v for k, v in obj.items() if k not in PLATFORM_FIELDS}


def plan_charge_dict(charge: PlanCharge | None) -> dict[str, Any] | None:
    """The plan charge: the fee, each priced meter's overage (under its rollup column's name) and the total."""
    if charge is None:
        return None
    out: dict[str, Any] = _plain(
        {
            "plan_tier": charge.plan_tier,
            "monthly_fee_usd": charge.fee,
            "overage": {
                BY_KEY[line.meter].rollup: {
                    "used": line.used,
                    "included": line.included,
                    "overage": line.overage,
                    "amount_usd": line.amount,
                }
                for line in charge.lines
            },
            "overage_usd": charge.overage,
            "plan_charge_usd": charge.total,
            # A month with a plan change: its parts (docs/cost-model.md, Plan changes); none otherwise.
            "summary": plan_summary(charge),
            "parts": [
                {
                    "plan_tier": part.plan_tier,
                    "from": part.days.start,
                    "to": part.days.last,
                    "days": part.days.days,
                    "fee": part.charge.fee,
                    "included": {BY_KEY[line.meter].rollup: line.included for line in part.charge.lines},
                    "overage_usd": part.charge.overage,
                    "plan_charge_usd": part.charge.total,
                }
                for part in charge.parts
            ],
        }
    )
    return out


def provider_costs_dict(costs: ProviderCosts | None) -> dict[str, Any] | None:
    """The cost-reporting providers' figures behind a margin; `complete` false means the margin is null."""
    if costs is None:
        return None
    return {
        "provider_cost_usd": str(costs.cost) if costs.days else None,
        "sources": list(costs.sources),
        "days": costs.days,
        "unknown_days": costs.unknown_days,
        "complete": costs.complete,
    }


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def day_dict(d: DayRow, audience: Audience = "operator") -> dict[str, Any]:
    out: dict[str, Any] = _plain(d.as_dict())
    return _for(out, audience)


def adjustment_dict(a: Adjustment) -> dict[str, Any]:
    out: dict[str, Any] = _plain(a.as_dict())
    return out


def _adjustments(report: TenantReport) -> dict[str, Any]:
    """The adjustments posted in the window (for sealed days of earlier months) beside the window's own total."""
    return {
        "posted": [adjustment_dict(a) for a in report.adjustments],
        "estimated_cost_usd": str(report.adjustments_cost),
        "estimated_cost_with_adjustments_usd": str(report.totals.estimated_cost + report.adjustments_cost),
    }


def _dump(obj: Any, stream: TextIO) -> None:
    json.dump(obj, stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def tenant_report_dict(report: TenantReport, audience: Audience = "operator") -> dict[str, Any]:
    """The report with its days. A tenant admin (`audience="tenant"`) gets no provider cost, margin or provider
    figures (render.layout)."""
    return {**_report_head(report, audience), "days": [day_dict(d, audience) for d in report.days]}


def _report_head(report: TenantReport, audience: Audience = "operator") -> dict[str, Any]:
    """Everything of the tenant report but its days."""
    mtd = report.month_to_date
    head = {
        **_envelope("tenant_report", report.window, report.generated_at),
        "tenant": {
            "slug": report.tenant.slug,
            "name": report.tenant.name,
            "plan_tier": report.tenant.plan_tier,
        },
        "has_usage": report.has_usage,
        "totals": _totals(report.totals, audience),
        "month_to_date": {
            "month": mtd.month.start.strftime("%Y-%m"),
            "as_of": mtd.as_of.isoformat(),
            "estimated_cost_usd": str(mtd.cost),
            "projected_month_cost_usd": str(mtd.projected_cost),
            # A linear projection (cost so far / days elapsed x days in month), not a bill.
            "projection_is_estimate": not mtd.complete,
            "days_elapsed": mtd.elapsed_days,
            # People are shown a projection only from MIN_PROJECTION_DAYS days of the month on.
            "projection_shown": mtd.projection_ready,
            "projected_plan_charge_usd": _money(report.projected_charge),
        },
        "allowances": [
            {
                "metric": a.metric,
                "included": a.included,
                "used": a.used,
                "percent_used": None if a.percent is None else str(a.percent),
                "over": a.over,
            }
            for a in report.allowances
        ],
        # Over the month-to-date's days; the margin is null unless the provider costs of those days are complete.
        "plan_charge": plan_charge_dict(report.plan_charge),
        "provider_costs": provider_costs_dict(report.provider_costs),
        "margin_usd": _money(report.margin),
        "adjustments": _adjustments(report),
        # The day in progress, apart: in none of the figures above (not totals, month to date, allowances or plan
        # charge). Empty until `collect --today` has run.
        "provisional_days": [
            {
                **day_dict(p.day, audience),
                "provisional": True,
                "as_of": _plain(p.as_of),
                "label": p.label,
            }
            for p in report.provisional
        ],
    }
    return _for(head, audience)


def tenant_summary_dict(report: TenantReport, audience: Audience = "operator") -> dict[str, Any]:
    """The summary cards of a month (the API's /usage/summary): the figures of `tenant_report_dict`, grouped as
    the report's cards are (render.layout.usage_cards)."""
    full = _report_head(report, "operator")
    t = full["totals"]
    mtd = full["month_to_date"]
    out = {
        **_envelope("tenant_summary", report.window, report.generated_at),
        "month": report.window.start.strftime("%Y-%m"),
        "tenant": full["tenant"],
        "plan_tier": report.tenant.plan_tier,
        "has_usage": full["has_usage"],
        "cards": {
            card.key: {line.key: line.value for line in card.lines if line.key != "estimated_cost_usd"}
            for card in usage_cards(report)
        },
        "cost": {
            "estimated_cost_usd": t["estimated_cost_usd"],
            "provider_cost_usd": t["provider_cost_usd"],
            "breakdown": {k: t[k] for k in COST_COLUMNS},
            "month_to_date_usd": mtd["estimated_cost_usd"],
            "as_of": mtd["as_of"],
            "projected_month_cost_usd": mtd["projected_month_cost_usd"],
            "projection_is_estimate": mtd["projection_is_estimate"],
            "projection_shown": mtd["projection_shown"],
            "projected_plan_charge_usd": mtd["projected_plan_charge_usd"],
        },
        "allowances": full["allowances"],
        "plan_charge": full["plan_charge"],
        "provider_costs": full["provider_costs"],
        "margin_usd": full["margin_usd"],
        "adjustments": full["adjustments"],
        "provisional_days": [_for(d, audience) for d in full["provisional_days"]],
    }
    if not sees_platform(audience):
        out["cost"] = _for(out["cost"], audience)
    return _for(out, audience)


def write_tenant_report_json(report: TenantReport, stream: TextIO) -> None:
    _dump(tenant_report_dict(report), stream)


def tenant_line_dict(t: TenantLine) -> dict[str, Any]:
    line: dict[str, Any] = _plain(
        {
            "tenant": t.slug,
            "tenant_name": t.name,
            "plan_tier": t.plan_tier,
            "active": t.active,
            "sms_total": t.sms,
            "email_total": t.emails,
            "voice_total_minutes": t.voice_minutes,
            "ai_total_tokens": t.ai_tokens,
            "estimated_cost_usd": t.estimated_cost,
            "provider_cost_usd": t.provider_cost,
            # The CSV's columns so far; then the details behind the plan charge and the margin.
            "plan_charge_usd": t.plan_charge.total if t.plan_charge else None,
            "margin_usd": t.margin,
            "plan_charge": plan_charge_dict(t.plan_charge),
            "provider_costs": provider_costs_dict(t.provider_costs),
        }
    )
    return line


def _tenants_head(report: TenantsReport) -> dict[str, Any]:
    return {
        **_envelope("tenants", report.month, report.generated_at),
        "month": report.month.start.strftime("%Y-%m"),
        "sort": report.sort,
        "tenant_count": report.tenant_count,
    }


def _tenants_total(report: TenantsReport) -> dict[str, Any]:
    return {
        **_totals(report.total),
        "plan_charge_usd": str(report.plan_charge_total),
        "margin_usd": _money(report.margin_total),
    }


def tenants_dict(report: TenantsReport) -> dict[str, Any]:
    return {
        **_tenants_head(report),
        "tenants": [tenant_line_dict(t) for t in report.iter_lines()],
        "total": _tenants_total(report),
    }


def write_tenants_json(report: TenantsReport, stream: TextIO) -> None:
    """The same document as `tenants_dict`, written one tenant at a time (a streamed report is never held)."""
    text = json.dumps(_tenants_head(report), indent=2, ensure_ascii=False)
    stream.write(text[:-2] + ',\n  "tenants": [')
    count = 0
    for t in report.iter_lines():
        line = json.dumps(tenant_line_dict(t), indent=2, ensure_ascii=False).replace("\n", "\n    ")
        stream.write(("\n    " if count == 0 else ",\n    ") + line)
        count += 1
    stream.write("\n  ]," if count else "],")
    total = json.dumps(_tenants_total(report), indent=2, ensure_ascii=False)
    stream.write('\n  "total": ' + total.replace("\n", "\n  ") + "\n}\n")


def write_export_json(export: ExportReport, stream: TextIO) -> int:
    """Stream `{"schema_version": ..., "rows": [...]}` one row at a time; returns the row count."""
    head = {
        **_envelope("export", export.window, export.generated_at),
        "tenant": export.tenant,
        # One per tenant and calendar month lying wholly inside the window (a plan charge is per month).
        "plan_charges": [
            {"month": month, "tenant": slug, **(plan_charge_dict(charge) or {})}
            for month, slug, charge in export.plan_charges
        ],
    }
    text = json.dumps(head, indent=2, ensure_ascii=False)
    stream.write(text[:-2] + ',\n  "rows": [')
    count = 0
    for d in export.rows:
        stream.write(("\n    " if count == 0 else ",\n    ") + json.dumps(day_dict(d), ensure_ascii=False))
        count += 1
    stream.write("\n  ]," if count else "],")
    posted = json.dumps([adjustment_dict(a) for a in export.adjustments], indent=2, ensure_ascii=False)
    stream.write('\n  "adjustments": ' + posted.replace("\n", "\n  ") + "\n}\n")
    return count


def reconcile_dict(report: ReconcileReport) -> dict[str, Any]:
    window = Window(report.month.start, report.as_of + timedelta(days=1))
    return {
        **_envelope("reconcile", window, report.generated_at),
        "month": report.month.start.strftime("%Y-%m"),
        "lines": [
            _plain(
                {
                    "tenant": line.tenant,
                    "tenant_name": line.tenant_name,
                    "provider": line.provider,
                    "usage": {BY_KEY[k].rollup: v for k, v in line.usage.items()},
                    "estimated_cost_usd": line.estimated_cost,
                    # The known days' sum; with unknown_days > 0 it is not the whole month's.
                    "provider_cost_usd": line.provider_cost,
                    "days": line.days,
                    "unknown_days": line.unknown_days,
                    "difference_usd": line.difference,
                    "difference_percent": line.difference_percent,
                }
            )
            for line in report.lines
        ],
    }


def write_reconcile_json(report: ReconcileReport, stream: TextIO) -> None:
    _dump(reconcile_dict(report), stream)


def write_adjustments_json(export: ExportReport, stream: TextIO) -> int:
    """`{"kind": "adjustments", ..., "adjustments": [...]}`: the adjustments posted in the window."""
    _dump(
        {
            **_envelope("adjustments", export.window, export.generated_at),
            "tenant": export.tenant,
            "adjustments": [adjustment_dict(a) for a in export.adjustments],
        },
        stream,
    )
    return len(export.adjustments)
