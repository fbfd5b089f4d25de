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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from usagectl.errors import InputError
from usagectl.periods import Window
from usagectl.render import layout
from usagectl.render.fmt import margin_text, n, usd
from usagectl.render.table import CHART_DAYS
from usagectl.reports import (
    EMPTY_MESSAGE,
    MIN_PROJECTION_DAYS,
    SORT_KEYS,
    TenantReport,
    TenantsReport,
    Totals,
)
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
        month = page_month(params.get("month"), default_month.start) or default_month
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
    series: list[tuple[date, Any]] = report.daily_series()[-CHART_DAYS:]
    # The days in progress (collect --today) after the final ones, marked on every chart.
    in_progress = {p.day.date: p.day for p in report.provisional}
    while series and series[-1][0] in in_progress and series[-1][1] is None:
        series.pop()  # yesterday, not final yet: shown as provisional below
    last = series[-1][0] if series else None
    tail = [(d, row) for d, row in sorted(in_progress.items()) if last is None or d > last]
    series += tail
    marked: dict[str, Any] = {
        "provisional": len(tail),
        "provisional_note": next((p.label for p in reversed(report.provisional)), "provisional"),
    }
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
            **marked,
        ),
        line_chart_svg(
            channels,
            title=f"Messages and voice minutes per day, {span}",
            desc=" ".join(_desc(s.name, s.points, n) for s in channels),
            value_format=_count,
            chart_id="chart-channels",
            **marked,
        ),
        line_chart_svg(
            [Series("AI tokens", ai)],
            title=f"AI tokens per day, {span}",
            desc=_desc("AI tokens per day", ai, n),
            value_format=_count,
            chart_id="chart-ai",
            **marked,
        ),
    ]
    captions = ["Estimated cost per day (USD)", "Messages and voice minutes per day", "AI tokens per day"]
    legends: list[list[tuple[str, str]]] = [[], [(f"s{i}", s.name) for i, s in enumerate(channels)], []]
    return [
        {"svg": svg, "caption": caption, "legend": legend}
        for svg, caption, legend in zip(svgs, captions, legends, strict=True)
    ]


def audience(ctx: PageContext) -> layout.Audience:
    return "root" if ctx.role == "root" else "tenant"


MONTH_HINT = "month must look like 2026-10"


def page_month(text: str | None, today: date) -> Window | None:
    """The Billing & Usage page's `?month=` (None: the current month); InputError in page words otherwise."""
    if not text:
        return None
    import re

    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    # Years 2..9998: the month before and the month after (links, month-over-month) exist too.
    if not m or not 1 <= int(m.group(2)) <= 12 or not 2 <= int(m.group(1)) <= 9998:
        raise InputError(MONTH_HINT)
    return Window.month(int(m.group(1)), int(m.group(2)))


def month_window(month: Window, today: date) -> Window:
    """The days of `month` the page reports on: all of a past month; of the current one, up to yesterday (the
    last complete UTC day), or the 1st alone on the 1st."""
    if month.end <= today:
        return month
    last = max(month.start + timedelta(days=1), today)
    return Window(month.start, min(month.end, last))


def _month_links(ctx: PageContext, month: Window, today: date, slug: str) -> dict[str, Any]:
    prev_start = (month.start - timedelta(days=1)).replace(day=1)
    this_month = today.replace(day=1)
    tenant = slug if ctx.role == "root" else None
    return {
        "prev": ctx.billing_url(tenant, month=prev_start.strftime("%Y-%m")),
        "prev_label": prev_start.strftime("%B %Y"),
        "next": ctx.billing_url(tenant, month=month.end.strftime("%Y-%m"))
        if month.end <= this_month
        else None,
        "next_label": month.end.strftime("%B %Y"),
        # No "This month" link on it, nor when the next month's link already leads there.
        "current": month.start == this_month or month.end == this_month,
        "current_url": ctx.billing_url(tenant),
    }


def render_billing_usage(
    report: TenantReport,
    ctx: PageContext,
    *,
    csv_url: str | None = None,
    chart_report: TenantReport | None = None,
    today: date | None = None,
) -> str:
    """The Billing & Usage page of one tenant for one month. `report` is `reports.tenant_report(...)` over the
    month's window (`month_window`), `chart_report` over the last CHART_DAYS days for the charts (default:
    `report`). The plan charge leads, then usage, the charts and the daily table; every card, cost line and
    column comes from render.layout for the viewer's audience. `csv_url` is the link to the daily rows as CSV
    (billing_usage_csv); default `{base}/admin/billing-usage.csv` (with ?tenant= and ?month=)."""
    ctx = replace(ctx, tenant=report.tenant.slug)
    who = audience(ctx)
    mtd = report.month_to_date
    today = today or report.generated_at.date()
    month_value = mtd.month.start.strftime("%Y-%m")
    if csv_url is None:
        slug = report.tenant.slug if ctx.role == "root" else None
        csv_url = ctx.url(BILLING_PATH + ".csv", {"tenant": slug, "month": month_value})
    common = {
        "report": report,
        "month_name": layout.month_name(report),
        "month_value": month_value,
        "links": _month_links(ctx, mtd.month, today, report.tenant.slug),
        "action": ctx.url(BILLING_PATH),
        "charge_lines": layout.charge_lines(report, who),
    }
    if not report.has_usage:
        return _render("billing_usage.html.j2", ctx, empty=EMPTY_MESSAGE, **common)
    charts_of = chart_report or report
    columns = layout.daily_columns(report, who)
    today_cards = [
        (
            p.label[0].upper() + p.label[1:],
            [
                ("SMS + MMS", n(p.day.sms_total + p.day.mms_total)),
                ("Email", n(p.day.email_total)),
                ("Voice minutes", n(p.day.voice_total_minutes)),
                ("AI tokens", n(p.day.ai_total_tokens)),
                ("Estimated cost", usd(p.day.estimated_cost_usd)),
            ],
        )
        # The charts' report: the recent days reach today whichever month the page shows.
        for p in charts_of.provisional
    ]
    return _render(
        "billing_usage.html.j2",
        ctx,
        empty=None,
        cards=layout.usage_cards(report),
        today_cards=today_cards,
        cost_lines=layout.cost_lines(report, who),
        projection_note=layout.projection_note(report),
        charts=billing_charts(charts_of),
        chart_days=min(CHART_DAYS, charts_of.window.days),
        columns=columns,
        rows=[[(c, c.text(d)) for c in columns] for d in report.days],
        totals=list(zip(columns, layout.daily_totals(report, columns), strict=True)),
        versions=", ".join(sorted({d.pricing_version for d in report.days})) or "none",
        csv_url=csv_url,
        **common,
    )


def billing_usage_csv(report: TenantReport, who: layout.Audience = "tenant") -> str:
    """The page's daily rows as CSV: `usagectl report --format csv` (formula cells neutralised), without the
    provider-reported cost for a tenant admin."""
    from usagectl.render.csv import write_tenant_report_csv

    buf = io.StringIO()
    write_tenant_report_csv(report, buf, audience=who)
    return buf.getvalue()


def system_default_month(today: date) -> Window:
    """System Usage opens on the current month from the 7th; before, on the last complete month (a month of a
    few days ranks nobody usefully)."""
    if today.day < MIN_PROJECTION_DAYS:
        last = today.replace(day=1) - timedelta(days=1)
        return Window.month(last.year, last.month)
    return Window.month(today.year, today.month)


def previous_month(month: Window) -> Window:
    """The calendar month before `month` (the page's month-over-month column)."""
    before = month.start - timedelta(days=1)
    return Window.month(before.year, before.month)


def _ranking_totals(
    columns: Sequence[layout.Column], label: str, tot: Totals, charge: Decimal | None, margin: Decimal | None
) -> list[tuple[layout.Column, str]]:
    return list(zip(columns, layout.tenant_totals(columns, label, tot, charge, margin), strict=True))


def render_system_usage(
    report: TenantsReport,
    query: SystemUsageQuery,
    ctx: PageContext,
    *,
    previous: Mapping[str, Decimal] | None = None,
    today: date | None = None,
) -> str:
    """The root admin's System Usage page. `report` is the page of the ranking the query asks for:
    `reports.tenants_report(store, query.month, sort=query.sort, limit=query.limit, offset=query.offset,
    query=query.q, cfg=...)` (the API's query: sorted, filtered and paged by the database, with the totals over
    all tenants and over the matched ones). `previous` is slug -> the month before's estimated cost of the page's tenants
    (`reports.estimated_costs`), for the month-over-month column. The columns are render.layout's tenant columns
    for a root admin; the template loops over them."""
    if ctx.role != "root":
        raise PermissionError("the System Usage page is for root admins")  # the app answers render_forbidden
    if report.offset != query.offset or (query.q and report.subtotal is None):
        raise ValueError("the report is not the page the query asks for (its offset, or no filter subtotal)")
    shown = report.lines[: query.limit]
    matched = report.matched
    columns = layout.tenant_columns(report, "root", previous=dict(previous) if previous is not None else None)
    heads = []
    for c in columns:
        href = ctx.url(SYSTEM_PATH, query.params(sort=c.sort, offset=0)) if c.sort else None
        heads.append({"column": c, "href": href, "sorted": c.sort == report.sort and c.sort is not None})
    prev_url = next_url = None
    if query.offset > 0:
        prev_url = ctx.url(SYSTEM_PATH, query.params(offset=max(0, query.offset - query.limit)))
    if query.offset + query.limit < matched:
        next_url = ctx.url(SYSTEM_PATH, query.params(offset=query.offset + query.limit))
    today = today or report.generated_at.date()
    this_month = Window.month(today.year, today.month)
    so_far_url = None
    if query.month.end == this_month.start:
        so_far_url = ctx.url(SYSTEM_PATH, query.params(month=this_month, offset=0))
    rows = [
        {"line": t, "href": ctx.billing_url(t.slug), "cells": [(c, c.text(t)) for c in columns[1:]]}
        for t in shown
    ]
    sub = report.subtotal
    subtotal = (
        _ranking_totals(columns, f"Matching ({n(sub.tenant_count)})", sub.totals, sub.plan_charge, sub.margin)
        if sub is not None
        else None
    )
    total = _ranking_totals(
        columns, f"Total, all tenants ({n(report.tenant_count)})", report.total, report.plan_charge_total,
        report.margin_total,
    )  # fmt: skip
    return _render(
        "system_usage.html.j2",
        ctx,
        report=report,
        query=query,
        month_value=query.month.start.strftime("%Y-%m"),
        month_name=query.month.start.strftime("%B %Y"),
        heads=heads,
        rows=rows,
        matched=matched,
        first=query.offset + 1 if shown else 0,
        last=query.offset + len(shown),
        subtotal=subtotal,
        total=total,
        prev_url=prev_url,
        next_url=next_url,
        action=ctx.url(SYSTEM_PATH),
        csv_url=ctx.url(
            SYSTEM_PATH + ".csv",
            {"month": query.month.start.strftime("%Y-%m"), "sort": query.sort, "q": query.q},
        ),
        so_far_url=so_far_url,
        so_far_name=this_month.start.strftime("%B %Y"),
        default_limit=DEFAULT_PAGE_SIZE,
    )


def system_usage_csv(rows: Iterable[Sequence[Any]], query: SystemUsageQuery, *, priced: bool) -> str:
    """The ranking as CSV: `usagectl tenants --format csv` for the month and sort (reports.ranking_rows' rows,
    every tenant), only the tenants matching `query.q` when there is one (the total stays over all); formula
    cells neutralised."""
    from usagectl.render.csv import write_ranking_csv
    from usagectl.reports import ascii_lower

    buf = io.StringIO()
    write_ranking_csv(query.month, rows, buf, priced=priced, needle=ascii_lower(query.q))
    return buf.getvalue()


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
