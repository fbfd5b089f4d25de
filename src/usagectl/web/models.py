"""The API's response models, one per audience (render.layout): what a tenant admin receives has no field for the
platform's provider cost, margin or provider figures, and every tenant model forbids extra fields, so a handler
that put one in would fail (500) rather than leak it. A root admin's models add those fields. They appear in
/openapi.json; docs/api.md describes them.

Money is a decimal string (6 places), as in `usagectl report --format json`. The meter-dependent parts (totals,
days) are built from the meter catalogue, as render.json writes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from usagectl.meters import COUNTERS, PRICED
from usagectl.reports import EXPORT_COLUMNS, MONEY_COLUMNS

Money = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowOut(_Strict):
    start: str = Field(description="First UTC day, YYYY-MM-DD.")
    end: str = Field(description="Last UTC day (inclusive).")
    days: int


class TenantOut(_Strict):
    slug: str
    name: str
    plan_tier: str


class AllowanceOut(_Strict):
    metric: str
    included: int
    used: int
    percent_used: str | None
    over: bool


class OverageOut(_Strict):
    used: int
    included: int
    overage: int
    amount_usd: Money


class PlanPartOut(_Strict):
    plan_tier: str
    from_: str = Field(alias="from", description="First UTC day on this plan in the month.")
    to: str = Field(description="Last UTC day on this plan in the month (inclusive).")
    days: int
    fee: Money = Field(description="The plan's monthly fee prorated by these days.")
    included: dict[str, int] = Field(description="The plan's allowances prorated by these days.")
    overage_usd: Money
    plan_charge_usd: Money


class PlanChargeOut(_Strict):
    plan_tier: str
    monthly_fee_usd: Money
    overage: dict[str, OverageOut] = Field(description="Per priced meter, under its rollup column's name.")
    overage_usd: Money
    plan_charge_usd: Money
    summary: str | None = Field(
        description='A month with a plan change: "Starter 1-14 Nov, Pro from 15 Nov"; null otherwise.'
    )
    parts: list[PlanPartOut] = Field(description="One per plan of a month with a plan change; [] otherwise.")


class ProviderCostsOut(_Strict):
    provider_cost_usd: Money | None
    sources: list[str]
    days: int
    unknown_days: int
    complete: bool


class MonthToDateOut(_Strict):
    month: str
    as_of: str
    estimated_cost_usd: Money
    projected_month_cost_usd: Money
    projection_is_estimate: bool
    days_elapsed: int
    projection_shown: bool = Field(description="false before 7 days of the month: pages show no projection.")
    projected_plan_charge_usd: Money | None = Field(
        description="The plan charge at the pace so far (an estimate); null for a past month or before 7 days."
    )


class AdjustmentsOut(_Strict):
    posted: list[dict[str, Any]]
    estimated_cost_usd: Money
    estimated_cost_with_adjustments_usd: Money


def _money_or_count(column: str) -> Any:
    if column in MONEY_COLUMNS:
        return (Money | None, ...) if column == "provider_cost_usd" else (Money, ...)
    if column in ("date", "tenant", "tenant_name", "plan_tier", "pricing_version"):
        return (str, ...)
    return (int | None, ...)


_TENANT_DAY = tuple(c for c in EXPORT_COLUMNS if c != "provider_cost_usd")
_TOTALS = (*(m.rollup for m in COUNTERS if m.total), *(m.cost_column for m in PRICED), "estimated_cost_usd")

if TYPE_CHECKING:
    TenantDay = BaseModel
    RootDay = BaseModel
    TenantProvisionalDay = BaseModel
    RootProvisionalDay = BaseModel
    TenantTotals = BaseModel
    RootTotals = BaseModel
else:
    _STRICT = ConfigDict(extra="forbid")
    TenantDay = create_model("TenantDay", __config__=_STRICT, **{c: _money_or_count(c) for c in _TENANT_DAY})
    RootDay = create_model("RootDay", __config__=_STRICT, **{c: _money_or_count(c) for c in EXPORT_COLUMNS})
    TenantTotals = create_model(
        "TenantTotals",
        __config__=_STRICT,
        **{c: (Money, ...) if c.endswith("_usd") else (int, ...) for c in _TOTALS},
    )
    RootTotals = create_model("RootTotals", __base__=TenantTotals, provider_cost_usd=(Money | None, ...))
    # The day in progress (`collect --today`): a day's fields, plus what says it is provisional and as of when.
    _MARKS: dict[str, Any] = {
        "provisional": (bool, ...),
        "as_of": (str, Field(description="UTC time the figures are as of (Z).")),
        "label": (str, Field(description='"today so far, as of 14:05 UTC (provisional)"')),
    }
    TenantProvisionalDay = create_model("TenantProvisionalDay", __base__=TenantDay, **_MARKS)
    RootProvisionalDay = create_model("RootProvisionalDay", __base__=RootDay, **_MARKS)


class _Envelope(_Strict):
    schema_version: int
    kind: str
    currency: str
    window: WindowOut
    generated_at: str


class TenantUsageDaily(_Envelope):
    """`/api/admin/usage/daily` for a tenant admin."""

    tenant: TenantOut
    has_usage: bool
    totals: TenantTotals
    month_to_date: MonthToDateOut
    allowances: list[AllowanceOut]
    plan_charge: PlanChargeOut | None
    adjustments: AdjustmentsOut
    provisional_days: list[TenantProvisionalDay] = Field(
        description="Today so far (collect --today), in none of the figures above."
    )
    days: list[TenantDay]


class RootUsageDaily(TenantUsageDaily):
    """`/api/admin/usage/daily` for a root admin (`?tenant=`): adds the providers' reported cost and the margin."""

    totals: RootTotals
    provisional_days: list[RootProvisionalDay]
    days: list[RootDay]
    provider_costs: ProviderCostsOut | None
    margin_usd: Money | None


class TenantCost(_Strict):
    estimated_cost_usd: Money
    breakdown: dict[str, Money]
    month_to_date_usd: Money
    as_of: str
    projected_month_cost_usd: Money
    projection_is_estimate: bool
    projection_shown: bool
    projected_plan_charge_usd: Money | None


class RootCost(TenantCost):
    provider_cost_usd: Money | None


class TenantUsageSummary(_Envelope):
    """`/api/admin/usage/summary` for a tenant admin."""

    month: str
    tenant: TenantOut
    plan_tier: str
    has_usage: bool
    cards: dict[str, dict[str, int]] = Field(description="Per usage card: each meter's units for the month.")
    cost: TenantCost
    allowances: list[AllowanceOut]
    plan_charge: PlanChargeOut | None
    adjustments: AdjustmentsOut
    provisional_days: list[TenantProvisionalDay] = Field(
        description="Today so far (collect --today), in none of the figures above."
    )


class RootUsageSummary(TenantUsageSummary):
    """`/api/admin/usage/summary` for a root admin (`?tenant=`): adds the providers' cost and the margin."""

    cost: RootCost
    provisional_days: list[RootProvisionalDay]
    provider_costs: ProviderCostsOut | None
    margin_usd: Money | None
