"""The JSON endpoints. Each handler authenticates, parses its parameters into a `Window`, calls a report
builder of usagectl.reports and renders it with usagectl.render.json: the same figures as
`usagectl report/tenants --format json`. Handlers are plain `def`: FastAPI runs them in its thread pool, so a
slow query never blocks the event loop."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from usagectl.config import SLUG_BODY
from usagectl.errors import InputError
from usagectl.periods import Window, utc_today
from usagectl.render.layout import Audience
from usagectl.reports import SORT_KEYS, tenant_report, tenants_report
from usagectl.web import models
from usagectl.web.auth import AuthError, ForbiddenError, Principal
from usagectl.web.context import ApiError, AppContext, app_context

MAX_DAYS = 366
DEFAULT_DAYS = 30
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="An API token (`usagectl token create`) or a platform JWT.")

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")


def principal(
    ctx: Annotated[AppContext, Depends(app_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The authenticated caller (401 otherwise). Pages of a later issue depend on this too."""
    if credentials is None or not credentials.credentials:
        raise AuthError("missing credentials: send Authorization: Bearer <token>")
    who = ctx.verifier.verify(credentials.credentials)
    if who.is_ingest:
        raise ForbiddenError("an ingest token reads nothing; it may only POST /api/events")
    return who


def require_root(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.is_root:
        raise ForbiddenError("this endpoint is for root admins")
    return who


def _scoped_tenant(who: Principal, tenant: str | None) -> str:
    """The tenant this request reads. A tenant admin asking for another tenant gets 403 whether or not that
    tenant exists: the answer must not tell."""
    if who.is_root:
        if tenant is None:
            raise ApiError(400, "a root admin names the tenant: ?tenant=SLUG", "tenant")
        return tenant
    assert who.tenant is not None
    if tenant is not None and tenant != who.tenant:
        raise ForbiddenError("forbidden")
    return who.tenant


def _date(text: str, parameter: str) -> date:
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError
        d = date.fromisoformat(text)
        if d.year < 1 or d.year > 9998:
            raise ValueError
        return d
    except ValueError:
        raise ApiError(422, f"{parameter}: {text!r} is not a date (YYYY-MM-DD)", parameter) from None


def _month(text: str | None) -> Window:
    if text is None:
        today = utc_today()
        return Window.month(today.year, today.month)
    m = _MONTH_RE.fullmatch(text)
    if not m or not 1 <= int(m.group(2)) <= 12 or not 1 <= int(m.group(1)) <= 9998:
        raise ApiError(422, f"month: {text!r} is not a month (YYYY-MM)", "month")
    return Window.month(int(m.group(1)), int(m.group(2)))


def _report(ctx: AppContext, slug: str, window: Window) -> Any:
    try:
        return tenant_report(ctx.store, ctx.config, slug, window)
    except InputError:
        # Only reached for a root admin's ?tenant= or a tenant admin's own (unsynced) tenant: no leak.
        raise ApiError(404, f"unknown tenant {slug!r}", "tenant") from None


TenantParam = Annotated[
    str | None,
    Query(
        description="Root admins: the tenant's slug. Tenant admins: their own slug or nothing.",
        # pydantic-core's regex (Rust) has no \Z, and its `$` matches only at the very end.
        pattern=f"^{SLUG_BODY}$",
    ),
]


def _audience(who: Principal) -> Audience:
    """A root admin viewing a tenant gets the root models; a tenant admin (also with ?tenant= of itself) the
    tenant models, which have no field for the platform's provider cost or margin."""
    return "root" if who.is_root else "tenant"


def _respond(model: type[BaseModel], body: dict[str, Any]) -> JSONResponse:
    # Validated against the audience's model (extra fields forbidden): a field the audience may not see fails
    # here, as a 500, instead of reaching it.
    return JSONResponse(model.model_validate(body).model_dump(mode="json", by_alias=True))


@router.get(
    "/api/admin/usage/daily",
    tags=["tenant admin"],
    summary="One row per day of a tenant's usage",
    response_model=models.TenantUsageDaily | models.RootUsageDaily,
)
def usage_daily(
    ctx: Annotated[AppContext, Depends(app_context)],
    who: Annotated[Principal, Depends(principal)],
    from_: Annotated[str | None, Query(alias="from", description="First UTC day, YYYY-MM-DD.")] = None,
    to: Annotated[str | None, Query(description="Last UTC day, YYYY-MM-DD (inclusive).")] = None,
    tenant: TenantParam = None,
) -> JSONResponse:
    """Every rollup column per day and the cost breakdown; for a root admin also the provider-reported cost and
    the margin (`RootUsageDaily`), never for a tenant admin (`TenantUsageDaily`). Default: the last 30 complete
    UTC days; at most 366 days."""
    from usagectl.render.json import tenant_report_dict

    slug = _scoped_tenant(who, tenant)
    last = _date(to, "to") if to is not None else utc_today() - timedelta(days=1)
    # The default window stops at the calendar's first day rather than overflowing it (`to=0001-01-01`).
    default_first = last - timedelta(days=min(DEFAULT_DAYS - 1, (last - date.min).days))
    first = _date(from_, "from") if from_ is not None else default_first
    if first > last:
        raise ApiError(400, f"from {first} is after to {last}", "from")
    if (last - first).days + 1 > MAX_DAYS:
        raise ApiError(
            400, f"from..to: at most {MAX_DAYS} days per request, asked for {(last - first).days + 1}", "from"
        )
    window = Window(first, last + timedelta(days=1))
    audience = _audience(who)
    model = models.RootUsageDaily if audience == "root" else models.TenantUsageDaily
    return _respond(model, tenant_report_dict(_report(ctx, slug, window), audience))


@router.get(
    "/api/admin/usage/summary",
    tags=["tenant admin"],
    summary="A tenant's month in cards",
    response_model=models.TenantUsageSummary | models.RootUsageSummary,
)
def usage_summary(
    ctx: Annotated[AppContext, Depends(app_context)],
    who: Annotated[Principal, Depends(principal)],
    month: Annotated[str | None, Query(description="YYYY-MM; default: the current UTC month.")] = None,
    tenant: TenantParam = None,
) -> JSONResponse:
    """SMS, email, voice and AI cards; estimated cost, month to date and a month-end projection (an estimate);
    plan tier and charge; allowances with % used. A root admin (`RootUsageSummary`) also gets the
    provider-reported cost and the margin; a tenant admin (`TenantUsageSummary`) never does."""
    from usagectl.render.json import tenant_summary_dict

    slug = _scoped_tenant(who, tenant)
    audience = _audience(who)
    model = models.RootUsageSummary if audience == "root" else models.TenantUsageSummary
    return _respond(model, tenant_summary_dict(_report(ctx, slug, _month(month)), audience))


@router.get("/api/root-admin/usage/tenants", tags=["root admin"], summary="Every tenant's month, ranked")
def usage_tenants(
    ctx: Annotated[AppContext, Depends(app_context)],
    who: Annotated[Principal, Depends(require_root)],
    month: Annotated[str | None, Query(description="YYYY-MM; default: the current UTC month.")] = None,
    sort: Annotated[
        str, Query(description=", ".join(SORT_KEYS), pattern=f"^({'|'.join(SORT_KEYS)})$")
    ] = "cost",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Tenants per page.")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=10**9, description="Tenants to skip.")] = 0,
) -> JSONResponse:
    """SMS, emails, voice minutes, AI tokens, estimated cost and plan per tenant, highest first; `total` is over
    every tenant, not just this page."""
    from usagectl.render.json import tenants_dict

    # The database sorts and pages: a page costs a page, whatever the number of tenants.
    rep = tenants_report(ctx.store, _month(month), sort=sort, limit=limit, offset=offset, cfg=ctx.config)
    body = tenants_dict(rep)
    body["limit"] = limit
    body["offset"] = offset
    return JSONResponse(body)


@router.get("/healthz", tags=["operations"], summary="Database reachable and schema at head")
def healthz(ctx: Annotated[AppContext, Depends(app_context)]) -> JSONResponse:
    """No authentication. 200 when the database answers and its schema is the one this version needs; 503
    otherwise."""
    from usagectl.errors import UsagectlError
    from usagectl.store.engine import current_revision
    from usagectl.store.tables import SCHEMA_HEAD

    try:
        rev = current_revision(ctx.store.engine)
    except (UsagectlError, Exception):
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    if rev != SCHEMA_HEAD:
        return JSONResponse(
            {"status": "error", "database": "ok", "schema": rev, "schema_head": SCHEMA_HEAD}, status_code=503
        )
    return JSONResponse({"status": "ok", "database": "ok", "schema": rev})
