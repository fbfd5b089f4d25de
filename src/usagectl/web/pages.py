"""HTML pages of the admin area, as pure functions: a report object (usagectl.reports) plus a PageContext in,
an HTML string out. No I/O, no database, no web framework: the app builds the report, calls one of these and
sends the string with its headers (a strict CSP: the pages have no script, no inline style, and load nothing but
STYLESHEET from the app itself).

Rendered by Jinja2 with autoescape on: every tenant-supplied string (name, slug, plan) is escaped. Figures are
formatted by the CLI's own helpers (usagectl.render.table), so a page shows what `usagectl report` prints.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from usagectl.errors import InputError
from usagectl.meters import RANKED
from usagectl.periods import Window, parse_month
from usagectl.render.table import CHART_DAYS, margin_text, n, usd
from usagectl.reports import EMPTY_MESSAGE, SORT_KEYS, TenantReport, TenantsReport
from usagectl.web.svgchart import Series, line_chart_svg

Role = Literal["tenant", "root"]

STATIC_DIR = Path(__file__).parent / "static"
STYLESHEET = "usage.css"  # served from STATIC_DIR at {base_path}/static/usage.css
BILLING_PATH = "/admin/billing-usage"
SYSTEM_PATH = "/admin/system-usage"
SIGN_IN_PATH = "/signin"
SIGN_OUT_PATH = "/signout"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class PageContext:
    """Who is looking and where the app is mounted.

    role: None on the sign-in page (nobody signed in yet). tenant: the tenant the page is about (a tenant
    admin's own; for a root admin the one being viewed, if any). csrf_token: put into every POST form (the
    sign-out and sign-in forms) as `csrf_field`. sign_out: False hides the sign-out form (JWT mode: the host
    platform owns the session)."""

    role: Role | None
    tenant: str | None = None
    base_path: str = ""
    csrf_token: str | None = None
    csrf_field: str = "csrf_token"
    sign_out: bool = True

    def url(self, path: str, params: Mapping[str, object] | None = None) -> str:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        return self.base_path.rstrip("/") + path + ("?" + urlencode(query) if query else "")

    def billing_url(self, tenant: str | None = None, **params: object) -> str:
        slug = tenant or (self.tenant if self.role == "root" else None)
        return self.url(BILLING_PATH, {"tenant": slug, **params})


@dataclass(frozen=True)
class SystemUsageQuery:
    """The System Usage page's GET parameters: month (YYYY-MM), sort (reports.SORT_KEYS), q (a filter on slug
    or name, case-insensitive substring), offset and limit (paging)."""

    month: Window
    sort: str = "cost"
    q: str = ""
    offset: int = 0
    limit: int = DEFAULT_PAGE_SIZE

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, default_month: Window) -> SystemUsageQuery:
        """Parse query parameters; a bad one raises InputError naming it (the app answers 400)."""
        month = parse_month(params["month"]) if params.get("month") else default_month
        sort = params.get("sort") or "cost"
        if sort not in SORT_KEYS:
            raise InputError(f"sort: {sort!r} is not one of {', '.join(SORT_KEYS)}")
        offset = _int_param(params, "offset", 0, 0, None)
        limit = _int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        return cls(month, sort, (params.get("q") or "").strip()[:200], offset, limit)

    def params(self, **changes: object) -> dict[str, object]:
        q = replace(self, **changes)  # type: ignore[arg-type]
        return {
            "month": q.month.start.strftime("%Y-%m"),
            "sort": q.sort,
            "q": q.q,
            "offset": q.offset or None,
            "limit": q.limit if q.limit != DEFAULT_PAGE_SIZE else None,
        }


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = params.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{name}: {text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise InputError(f"{name}: must be {bound}, got {value}")
    return value


@functools.cache
def _env() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("usagectl.web", "templates"),
        autoescape=True,  # every template is HTML
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = n
    env.filters["usd"] = usd
    env.filters["margin"] = margin_text
    return env


def _render(template: str, ctx: PageContext, **values: Any) -> str:
    nav = []
    if ctx.role is not None:
        nav.append(("Billing & Usage", ctx.billing_url(), template == "billing_usage.html.j2"))
        if ctx.role == "root":
            nav.append(("System Usage", ctx.url(SYSTEM_PATH), template == "system_usage.html.j2"))
    html: str = (
        _env()
        .get_template(template)
        .render(
            ctx=ctx,
            nav=nav,
            stylesheet=ctx.url("/static/" + STYLESHEET),
            sign_out_action=ctx.url(SIGN_OUT_PATH),
            **values,
        )
    )
    return html


def _count(v: Decimal) -> str:
    return n(int(v))


def _desc(name: str, points: Sequence[tuple[date, Decimal | int | None]], fmt: Any) -> str:
    known = [(d, v) for d, v in points if v is not None]
    missing = len(points) - len(known)
    text = f"{name}, {points[0][0].isoformat()} to {points[-1][0].isoformat()}: "
    if not known:
        return text + "no data."
    peak_day, peak = max(known, key=lambda p: p[1])
    total = sum((v for _, v in known), Decimal(0) if isinstance(peak, Decimal) else 0)
    text += f"total {fmt(total)}, highest {fmt(peak)} on {peak_day.isoformat()}"
    return text + (f"; {missing} day{'s' if missing > 1 else ''} without data." if missing else ".")


def billing_charts(report: TenantReport) -> list[dict[str, Any]]:
    """The last CHART_DAYS days of the report's window: estimated cost, messages per channel, AI tokens."""
    series = report.daily_series()[-CHART_DAYS:]
    cost = [(d, row.estimated_cost_usd if row else None) for d, row in series]
    sms = [(d, row.sms_total + row.mms_total if row else None) for d, row in series]
    email = [(d, row.email_total if row else None) for d, row in series]
    voice = [(d, row.voice_total_minutes if row else None) for d, row in series]
    ai = [(d, row.ai_total_tokens if row else None) for d, row in series]
    span = f"{series[0][0].isoformat()} to {series[-1][0].isoformat()} (UTC)"
    channels = [Series("SMS+MMS", sms), Series("Email", email), Series("Voice min", voice)]
    svgs = [
        line_chart_svg(
            [Series("Estimated cost", cost)],
            title=f"Estimated cost per day (USD), {span}",
            desc=_desc("Estimated cost per day", cost, usd),
            value_format=usd,
            chart_id="chart-cost",
        ),
        line_chart_svg(
            channels,
            title=f"Messages and voice minutes per day, {span}",
            desc=" ".join(_desc(s.name, s.points, n) for s in channels),
            value_format=_count,
            chart_id="chart-channels",
        ),
        line_chart_svg(
            [Series("AI tokens", ai)],
            title=f"AI tokens per day, {span}",
            desc=_desc("AI tokens per day", ai, n),
            value_format=_count,
            chart_id="chart-ai",
        ),
    ]
    captions = ["Estimated cost per day (USD)", "Messages and voice minutes per day", "AI tokens per day"]
    legends: list[list[tuple[str, str]]] = [[], [(f"s{i}", s.name) for i, s in enumerate(channels)], []]
    return [
        {"svg": svg, "caption": caption, "legend": legend}
        for svg, caption, legend in zip(svgs, captions, legends, strict=True)
    ]


def render_billing_usage(report: TenantReport, ctx: PageContext, *, csv_url: str | None = None) -> str:
    """The Billing & Usage page of one tenant. `report` is `reports.tenant_report(...)` over the window to show
    (the app's default: the last 30 complete UTC days). `csv_url` is the link to the daily rows as CSV
    (billing_usage_csv); default `{base}/admin/billing-usage.csv` (with ?tenant= for a root admin)."""
    ctx = replace(ctx, tenant=report.tenant.slug)
    if csv_url is None:
        slug = report.tenant.slug if ctx.role == "root" else None
        csv_url = ctx.url(BILLING_PATH + ".csv", {"tenant": slug})
    if not report.has_usage:
        return _render("billing_usage.html.j2", ctx, report=report, empty=EMPTY_MESSAGE)
    tot = report.totals
    cards = [
        (
            "SMS",
            [
                ("sent + received", n(tot.sms)),
                ("MMS", n(tot.mms)),
                ("cost", usd(tot.sms_cost + tot.mms_cost)),
            ],
        ),
        ("Email", [("sent", n(tot.emails)), ("cost", usd(tot.email_cost))]),
        ("Voice", [("minutes", n(tot.voice_minutes)), ("cost", usd(tot.voice_cost))]),
        ("AI", [("tokens", n(tot.ai_tokens)), ("cost", usd(tot.ai_cost))]),
    ]
    mtd = report.month_to_date
    month_name = mtd.month.start.strftime("%B %Y")
    cost_lines = [("Estimated, this window", usd(tot.estimated_cost))]
    if tot.provider_cost is not None:
        cost_lines.append(("Provider-reported, this window", usd(tot.provider_cost)))
    cost_lines.append((f"{month_name} to {mtd.as_of:%d %b}", usd(mtd.cost)))
    cost_lines.append(
        ("Month total" if mtd.complete else "Month-end projection (estimate)", usd(mtd.projected_cost))
    )
    charge = report.plan_charge
    if charge is not None:
        cost_lines.append((f"Plan charge, {month_name} to {mtd.as_of:%d %b}", usd(charge.total)))
        if ctx.role == "root":
            # The platform's margin is for its operators, not for the tenant's admins.
            cost_lines.append(("Margin (plan charge - provider-reported)", margin_text(report.margin)))
    return _render(
        "billing_usage.html.j2",
        ctx,
        report=report,
        empty=None,
        cards=cards,
        cost_lines=cost_lines,
        month_name=month_name,
        charts=billing_charts(report),
        chart_days=min(CHART_DAYS, report.window.days),
        show_provider=any(d.provider_cost_usd is not None for d in report.days),
        versions=", ".join(sorted({d.pricing_version for d in report.days})),
        csv_url=csv_url,
    )


def billing_usage_csv(report: TenantReport) -> str:
    """The page's daily rows as CSV: exactly `usagectl report --format csv` (formula cells neutralised)."""
    from usagectl.render.csv import write_tenant_report_csv

    buf = io.StringIO()
    write_tenant_report_csv(report, buf)
    return buf.getvalue()


SYSTEM_COLUMNS = (
    # (sort key or None, header, numeric)
    ("name", "Tenant", False),
    (None, "Plan", False),
    *((m.key, m.label, True) for m in RANKED),
    ("cost", "Est. cost", True),
    ("plan_charge", "Plan charge", True),
    ("margin", "Margin", True),
)


def render_system_usage(report: TenantsReport, query: SystemUsageQuery, ctx: PageContext) -> str:
    """The root admin's System Usage page. `report` is `reports.tenants_report(store, query.month,
    sort=query.sort, limit=query.limit, offset=query.offset, query=query.q, cfg=...)`: the database filtered,
    sorted and paged it (`report.lines` is the page), with the totals and the filter's subtotal."""
    if ctx.role != "root":
        raise PermissionError("the System Usage page is for root admins")  # the app answers render_forbidden
    shown = report.lines
    sub = report.subtotal
    columns = []
    for key, label, numeric in SYSTEM_COLUMNS:
        href = ctx.url(SYSTEM_PATH, query.params(sort=key, offset=0)) if key else None
        columns.append(
            {"key": key, "label": label, "numeric": numeric, "href": href, "sorted": key == report.sort}
        )
    prev_url = next_url = None
    if query.offset > 0:
        prev_url = ctx.url(SYSTEM_PATH, query.params(offset=max(0, query.offset - query.limit)))
    if report.more:
        next_url = ctx.url(SYSTEM_PATH, query.params(offset=query.offset + query.limit))
    return _render(
        "system_usage.html.j2",
        ctx,
        report=report,
        query=query,
        month_value=query.month.start.strftime("%Y-%m"),
        month_name=query.month.start.strftime("%B %Y"),
        columns=columns,
        lines=[(t, ctx.billing_url(t.slug)) for t in shown],
        matched=report.matched,
        first=report.offset + 1 if shown else 0,
        last=report.offset + len(shown),
        subtotal=sub.totals if sub is not None else None,
        subtotal_charge=sub.plan_charge if sub is not None else Decimal("0.000000"),
        subtotal_margin=sub.margin if sub is not None else None,
        prev_url=prev_url,
        next_url=next_url,
        action=ctx.url(SYSTEM_PATH),
        default_limit=DEFAULT_PAGE_SIZE,
    )


def render_sign_in(ctx: PageContext, *, error: str | None = None) -> str:
    """The token sign-in form: POSTs `token` (and the CSRF field) to {base}/signin. `error` is shown as is
    (escaped): keep it generic, never echo the token."""
    return _render("sign_in.html.j2", replace(ctx, role=None), error=error, action=ctx.url(SIGN_IN_PATH))


def render_forbidden(ctx: PageContext, *, message: str | None = None) -> str:
    """The 403 page (send it with status 403)."""
    return _render(
        "forbidden.html.j2",
        ctx,
        message=message or "Your account cannot open this page.",
        home=ctx.billing_url() if ctx.role else ctx.url(SIGN_IN_PATH),
    )


def render_error(ctx: PageContext, *, heading: str, message: str) -> str:
    """An error page (a bad parameter, an unknown tenant, a page that needs a signed-in session): send it with
    the status it describes. `message` is escaped; name the parameter, never echo a credential."""
    return _render(
        "error.html.j2",
        ctx,
        heading=heading,
        message=message,
        home=ctx.billing_url()
        if ctx.role == "tenant"
        else ctx.url(SYSTEM_PATH if ctx.role else SIGN_IN_PATH),
    )
