"""The admin pages (usagectl.web.pages) rendered from real report objects on a real store, SQLite and
PostgreSQL: the figures are the report's, tenant strings are escaped, the chart has a point per known day."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest

from conftest import Priced
from priced import EMAIL, EVIL, OCT, PAGE_TENANTS, SMS_V1, SMS_V2, V2_FROM, micro
from usagectl import config as cfgmod
from usagectl.errors import InputError
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.render.fmt import margin_text, n, usd
from usagectl.reports import EMPTY_MESSAGE, TenantReport, tenant_report, tenants_report
from usagectl.store.engine import Store
from usagectl.web.pages import (
    PageContext,
    SystemUsageQuery,
    billing_usage_csv,
    render_billing_usage,
    render_forbidden,
    render_sign_in,
    render_system_usage,
)
from usagectl.web.svgchart import Series, line_chart_svg

NOV_5 = date(2026, 11, 5)  # "today" for the reports: October is complete
TENANT = PageContext(role="tenant", tenant="acme", csrf_token="tok-123")
ROOT = PageContext(role="root", base_path="/usage", csrf_token="tok-root")


# A tiny DOM from the standard library's parser: enough to read cards, tables and the SVG back.
VOID = {"meta", "link", "input", "br", "img", "hr", "source", "col", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def raw(self) -> str:
        return "".join(c if isinstance(c, str) else c.raw() for c in self.children)

    def text(self) -> str:
        return " ".join(self.raw().split())

    def iter(self, tag: str | None = None, **attrs: str) -> Iterator[Node]:
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and all(
                    v in c.attrs.get(k.rstrip("_"), "").split() or c.attrs.get(k.rstrip("_")) == v
                    for k, v in attrs.items()
                ):
                    yield c
                yield from c.iter(tag, **attrs)

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = list(self.iter(tag, **attrs))
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    b = _Builder()
    b.feed(html)
    b.close()
    assert b.stack == [b.root], "unclosed elements"
    return b.root


def csp_clean(html: str) -> None:
    """What a strict CSP (default-src 'none'; style-src 'self') would block, or an outside resource."""
    assert "<script" not in html.lower()
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)  # event handler attributes
    assert not re.search(r"(href|src)=\"(https?:)?//", html)  # nothing from another origin


def rows(table: Node, section: str = "tbody") -> list[list[str]]:
    return [[c.text() for c in tr.iter() if c.tag in ("th", "td")] for tr in table.one(section).iter("tr")]


def card(doc: Node, name: str) -> dict[str, str]:
    section = doc.one("section", **{"data-card": name})
    return {div.one("dt").text(): div.one("dd").text() for div in section.one("dl").iter("div")}


@pytest.fixture
def env(priced: Callable[..., Priced]) -> Priced:
    return priced(tenants=PAGE_TENANTS)


def _october(env: Priced, skip: Iterable[date] = ()) -> None:
    """The standard October (tests/priced.py: acme 40 SMS and 100 emails a day, over its 500 SMS allowance, and
    a provider cost; globex figures that must never show on acme's page) but for the days in `skip`, and 7 SMS
    on 3 October for evil, whose name is HTML."""
    env.seed("evil", [date(2026, 10, 3)], MetricRow(sms_outbound_count=7))
    env.standard(skip=skip)


def _acme(store: Store, cfg: cfgmod.Config) -> TenantReport:
    return tenant_report(store, cfg, "acme", OCT, today=NOV_5)


def test_billing_usage_page_shows_the_reports_figures(env: Priced, cli: Callable[..., Any]) -> None:
    _october(env)
    store, cfg = env.store, env.cfg
    report = _acme(store, cfg)
    html = render_billing_usage(report, TENANT)
    csp_clean(html)
    doc = parse(html)

    # Cards: the report's totals in the CLI's format (and the figures this data must give).
    sms = card(doc, "SMS")
    assert sms == {"sent + received": n(report.totals.sms), "MMS": "0", "cost": usd(report.totals.sms_cost)}
    assert sms["sent + received"] == "1,240"
    assert (
        card(doc, "Email")
        == {"sent": "3,100", "cost": usd(report.totals.email_cost)}
        == {
            "sent": "3,100",
            "cost": "$1.55",
        }
    )
    assert card(doc, "Voice") == {"minutes": "0", "cost": "$0.00"}
    assert card(doc, "AI") == {"tokens": "0", "cost": "$0.00"}
    cost = card(doc, "Cost")
    # 15 days at $0.61 (price book v1) + 16 at $0.45 (v2); provider: 31 x $0.41.
    v1_day, v2_day = micro(40 * SMS_V1) + micro(100 * EMAIL), micro(40 * SMS_V2) + micro(100 * EMAIL)
    month = (V2_FROM - OCT.start).days * v1_day + (OCT.end - V2_FROM).days * v2_day
    assert (v1_day, v2_day, month) == (Decimal("0.61"), Decimal("0.45"), Decimal("16.35"))
    assert cost["Estimated, this window"] == usd(report.totals.estimated_cost) == usd(month) == "$16.35"
    # A tenant admin never sees the platform's provider cost or margin; a root admin does.
    assert "Provider-reported, this window" not in cost and "Margin" not in card(doc, "Charge")
    root_doc = parse(render_billing_usage(report, ROOT))
    assert card(root_doc, "Cost")["Provider-reported, this window"] == "$12.71"
    assert cost["October 2026 to 31 Oct"] == usd(report.month_to_date.cost) == "$16.35"
    assert cost["Month total"] == "$16.35"  # October is over: not an estimate
    assert "v1, v2" in doc.one("section", **{"data-card": "Cost"}).text()

    # Allowances: one bar each, over-allowance marked.
    allow = {li.attrs["data-metric"]: li for li in doc.iter("li", class_="allowance")}
    assert (
        list(allow)
        == [a.metric for a in report.allowances]
        == ["sms", "voice_minutes", "emails", "ai_tokens"]
    )
    assert "over" in allow["sms"].attrs["class"].split()
    assert allow["sms"].one("meter").attrs["value"] == "100"
    assert allow["sms"].one("span", class_="pct").text() == "248.0% over allowance"
    assert allow["sms"].one("span", class_="figures").text() == "1,240 of 500"
    assert "over" not in allow["emails"].attrs["class"].split()
    assert allow["emails"].one("meter").attrs["value"] == "62.0"
    assert allow["emails"].one("span", class_="pct").text() == "62.0%"

    # The daily table: the report's daily rows, cell for cell, then the totals.
    table = doc.one("table", class_="daily")
    assert [th.attrs.get("scope") for th in table.one("thead").iter("th")] == ["col"] * 7
    body = rows(table)
    assert len(body) == len(report.days) == 31
    for cells, d in zip(body, report.days, strict=True):
        assert cells == [
            d.date.isoformat(), n(d.sms_total), n(d.mms_total), n(d.voice_total_minutes), n(d.email_total),
            n(d.ai_total_tokens), usd(d.estimated_cost_usd),
        ]  # fmt: skip
    assert body[0] == ["2026-10-01", "40", "0", "0", "100", "0", "$0.61"]
    assert body[-1][6] == "$0.45"
    assert rows(table, "tfoot") == [["Total", "1,240", "0", "0", "3,100", "0", "$16.35"]]
    root_table = root_doc.one("table", class_="daily")
    assert rows(root_table)[0] == ["2026-10-01", "40", "0", "0", "100", "0", "$0.61", "$0.41"]
    assert rows(root_table, "tfoot") == [["Total", "1,240", "0", "0", "3,100", "0", "$16.35", "$12.71"]]
    assert all("num" in td.attrs.get("class", "") for td in table.one("tbody").iter("td"))

    # The chart of the last 30 days: a point per day, and a text alternative.
    svg = doc.one("svg", id="chart-cost")
    assert svg.attrs["role"] == "img"
    points = [c.attrs["data-date"] for c in svg.iter("circle")]
    assert points == [d.isoformat() for d in Window(date(2026, 10, 2), date(2026, 11, 1))]
    assert len(svg.one("polyline").attrs["points"].split()) == 30
    assert svg.one("title", id="chart-cost-title").text().startswith("Estimated cost per day (USD)")
    assert "highest $0.61 on 2026-10-02" in svg.one("desc", id="chart-cost-desc").text()

    # Nothing of another tenant; the CSV link and the CSV itself (the CLI's --format csv).
    for needle in ("globex", "987,654", "55,555", "HYPERLINK"):
        assert needle not in html
    assert doc.one("a", class_="download").attrs["href"] == "/admin/billing-usage.csv?month=2026-10"
    operator_csv = cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "csv").out
    assert billing_usage_csv(report, "root") == operator_csv
    # The tenant's CSV: the same rows without the provider-reported cost column.
    tenant_rows = list(csv.DictReader(io.StringIO(billing_usage_csv(report))))
    assert tenant_rows == [
        {k: v for k, v in r.items() if k != "provider_cost_usd"}
        for r in csv.DictReader(io.StringIO(operator_csv))
    ]

    # Navigation: a tenant admin has no System Usage link; the sign-out form carries the CSRF token.
    nav = doc.one("nav", **{"aria-label": "Settings & Administration"})
    assert [a.text() for a in nav.iter("a")] == ["Billing & Usage"]
    assert doc.one("a", **{"aria-current": "page"}).text() == "Billing & Usage"
    signout = doc.one("form", class_="signout")
    assert signout.attrs == {"class": "signout", "method": "post", "action": "/signout"}
    assert signout.one("input").attrs["value"] == "tok-123"


def test_missing_days_are_gaps_in_the_chart_not_zeros(env: Priced, cli: Callable[..., Any]) -> None:
    store, cfg = env.store, env.cfg
    missing = {date(2026, 10, 10), date(2026, 10, 11), date(2026, 10, 20)}
    _october(env, skip=missing)
    report = _acme(store, cfg)
    doc = parse(render_billing_usage(report, TENANT))
    svg = doc.one("svg", id="chart-cost")
    dates = {c.attrs["data-date"] for c in svg.iter("circle")}
    assert len(dates) == 27 and not dates & {d.isoformat() for d in missing}
    lines = [p.attrs["points"].split() for p in svg.iter("polyline")]
    assert [len(pts) for pts in lines] == [8, 8, 11]  # 10-02..10-09, 10-12..10-19, 10-21..10-31
    # No point sits on the zero line: every day drawn has a cost.
    zero_y = {c.attrs["cy"] for c in svg.iter("circle")}
    assert len(zero_y) == 2  # $0.61 days and $0.45 days only
    assert "3 days without data" in svg.one("desc", id="chart-cost-desc").text()
    assert len(rows(doc.one("table", class_="daily"))) == 28  # the table lists only days with data


def test_svg_chart_unit() -> None:
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(30)]
    full = line_chart_svg(
        [Series("a", [(d, i) for i, d in enumerate(days)])],
        title="T <b>", desc="D & E", value_format=lambda v: n(int(v)), chart_id="x",
    )  # fmt: skip
    assert full.count("<circle") == 30 and full.count("<polyline") == 1
    assert '<title id="x-title">T &lt;b&gt;</title>' in full and "D &amp; E" in full
    gaps = line_chart_svg(
        [Series("a", [(d, None if i % 10 == 0 else Decimal("1.5")) for i, d in enumerate(days)])],
        title="t", desc="d", value_format=usd, chart_id="y",
    )  # fmt: skip
    assert gaps.count("<circle") == 27 and gaps.count("<polyline") == 3
    none = line_chart_svg(
        [Series("a", [(d, None) for d in days])], title="t", desc="d", value_format=usd, chart_id="z"
    )
    assert "<circle" not in none and "<polyline" not in none and "<text" in none  # axes still drawn
    alone = line_chart_svg(
        [Series("a", [(d, 5 if i == 3 else None) for i, d in enumerate(days[:7])])],
        title="t", desc="d", value_format=usd, chart_id="v",
    )  # fmt: skip
    assert alone.count("<circle") == 1 and "<polyline" not in alone
    one_day = line_chart_svg(
        [Series("a", [(days[0], 2)])], title="t", desc="d", value_format=usd, chart_id="u"
    )
    assert one_day.count("<circle") == 1 and "01-01" in one_day
    with pytest.raises(ValueError, match="same days"):
        line_chart_svg(
            [Series("a", [(days[0], 1)]), Series("b", [(days[1], 1)])],
            title="t", desc="d", value_format=usd, chart_id="w",
        )  # fmt: skip


def _system(store: Any, query: SystemUsageQuery, cfg: Any = None) -> str:
    """The System Usage page as the app builds it: the page of the ranking the query asks for."""
    report = tenants_report(
        store, query.month, sort=query.sort, limit=query.limit, offset=query.offset, query=query.q, cfg=cfg
    )
    return render_system_usage(report, query, ROOT)


def test_tenant_supplied_strings_are_escaped(env: Priced, cli: Callable[..., Any]) -> None:
    _october(env)
    store, cfg = env.store, env.cfg
    page = render_billing_usage(tenant_report(store, cfg, "evil", OCT, today=NOV_5), ROOT)
    system = _system(store, SystemUsageQuery(OCT, q='"><script>x</script>'))
    for html in (page, system):
        csp_clean(html)  # no <script> at all: the name is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # A root admin looking at a tenant: the links keep the tenant.
    doc = parse(page)
    assert (
        doc.one("a", class_="download").attrs["href"]
        == "/usage/admin/billing-usage.csv?tenant=evil&month=2026-10"
    )
    assert doc.one("a", **{"aria-current": "page"}).attrs["href"] == "/usage/admin/billing-usage?tenant=evil"
    assert parse(page).one("span", class_="tenant-name").text() == EVIL
    assert 'value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in system
    system = _system(store, SystemUsageQuery(OCT, q="alert"))
    assert [r.attrs["data-tenant"] for r in parse(system).iter("tr") if "data-tenant" in r.attrs] == ["evil"]
    assert parse(system).one("span", class_="tenant-name").text() == EVIL


def test_empty_state_sentence(env: Priced, cli: Callable[..., Any]) -> None:
    _october(env)
    store, cfg = env.store, env.cfg
    html = render_billing_usage(tenant_report(store, cfg, "quiet", OCT, today=NOV_5), TENANT)
    csp_clean(html)
    doc = parse(html)
    assert (
        doc.one("p", class_="empty").text()
        == EMPTY_MESSAGE
        == ("Usage metrics will appear here once you begin messaging.")
    )
    assert not list(doc.iter("table")) and not list(doc.iter("svg")) and not list(doc.iter("meter"))


def test_system_usage_page(env: Priced, cli: Callable[..., Any]) -> None:
    _october(env)
    store, cfg = env.store, env.cfg
    report = tenants_report(store, OCT, cfg=cfg)
    html = render_system_usage(report, SystemUsageQuery(OCT), ROOT)
    csp_clean(html)
    doc = parse(html)
    table = doc.one("table", class_="tenants")
    body = rows(table)
    assert (
        [r.attrs["data-tenant"] for r in table.iter("tr") if "data-tenant" in r.attrs]
        == [line.slug for line in report.lines]
        == ["globex", "acme", "evil", "quiet"]
    )  # highest cost first
    for cells, line in zip(body, report.lines, strict=True):
        assert cells[1:] == [
            line.plan_tier, n(line.sms), n(line.emails), n(line.voice_minutes), n(line.ai_tokens),
            usd(line.estimated_cost), usd(line.plan_charge.total if line.plan_charge else None),
            margin_text(line.margin),
        ]  # fmt: skip
    assert body[0][2:5] == ["30,617,274", "0", "1,722,205"]  # 31 x 987,654 SMS, 31 x 55,555 minutes
    tot = report.total
    assert rows(table, "tfoot") == [
        ["Total, all tenants (4)", "", n(tot.sms), n(tot.emails), n(tot.voice_minutes), n(tot.ai_tokens),
         usd(tot.estimated_cost), usd(report.plan_charge_total), margin_text(report.margin_total)],
    ]  # fmt: skip
    # Each tenant links to its page; columns sort by a link keeping the month; the month picker is a GET form.
    link = table.one("tr", **{"data-tenant": "acme"}).one("a").attrs["href"]
    assert link == "/usage/admin/billing-usage?tenant=acme"
    sort_links = {a.text().split()[0]: a.attrs["href"] for a in table.one("thead").iter("a")}
    assert sort_links["SMS"] == "/usage/admin/system-usage?month=2026-10&sort=sms"
    assert set(sort_links) == {"Tenant", "SMS", "Emails", "Voice", "AI", "Est.", "Plan", "Margin"}
    assert table.one("th", **{"aria-sort": "descending"}).text().startswith("Est. cost")
    form = doc.one("form", class_="filters")
    assert form.attrs["method"] == "get" and form.attrs["action"] == "/usage/admin/system-usage"
    assert form.one("input", name="month").attrs["value"] == "2026-10"
    nav = doc.one("nav", **{"aria-label": "Settings & Administration"})
    assert [a.text() for a in nav.iter("a")] == ["Billing & Usage", "System Usage"]

    # Filter by name or slug, with a subtotal of the matches; paging keeps the other parameters.
    doc = parse(_system(store, SystemUsageQuery(OCT, q="CORP"), cfg))
    assert [r[0] for r in rows(doc.one("table"))] == ["Acme Corp acme"]
    assert rows(doc.one("table"), "tfoot")[0][0] == "Matching (1)"
    by_name = tenants_report(store, OCT, sort="name")
    doc = parse(_system(store, SystemUsageQuery(OCT, sort="name", offset=1, limit=2)))
    assert [r[0].split()[-1] for r in rows(doc.one("table"))] == [
        by_name.lines[1].slug,
        by_name.lines[2].slug,
    ]
    pager = {a.text(): a.attrs["href"] for a in doc.one("nav", class_="pager").iter("a")}
    assert pager == {
        "Previous": "/usage/admin/system-usage?month=2026-10&sort=name&limit=2",
        "Next": "/usage/admin/system-usage?month=2026-10&sort=name&offset=3&limit=2",
    }
    assert "tenants 2–3 of 4" in doc.one("p", class_="summary").text()

    with pytest.raises(PermissionError):
        render_system_usage(report, SystemUsageQuery(OCT), TENANT)


def test_system_usage_query_parameters() -> None:
    default = Window.month(2026, 11)
    q = SystemUsageQuery.from_params(
        {"month": "2026-10", "sort": "ai", "q": " acme ", "offset": "50"}, default_month=default
    )
    assert q == SystemUsageQuery(OCT, "ai", "acme", 50, 50)
    assert SystemUsageQuery.from_params({}, default_month=default) == SystemUsageQuery(default)
    for params, message in (
        ({"sort": "plan"}, "sort: 'plan' is not one of"),
        ({"limit": "0"}, "limit: must be from 1 to 500, got 0"),
        ({"limit": "x"}, "limit: 'x' is not a whole number"),
        ({"offset": "-1"}, "offset: must be at least 0"),
        ({"month": "2026-13"}, "month must look like 2026-10"),
    ):
        with pytest.raises(InputError, match=re.escape(message)):
            SystemUsageQuery.from_params(params, default_month=default)


def test_sign_in_and_forbidden_pages() -> None:
    html = render_sign_in(
        PageContext(role=None, base_path="/u", csrf_token="c-1"), error="That token is not valid."
    )
    csp_clean(html)
    doc = parse(html)
    form = doc.one("form", class_="signin")
    assert form.attrs["method"] == "post" and form.attrs["action"] == "/u/signin"
    inputs = {i.attrs["name"]: i.attrs for i in form.iter("input")}
    assert inputs["token"]["type"] == "password" and inputs["csrf_token"]["value"] == "c-1"
    assert doc.one("p", class_="error").text() == "That token is not valid."
    assert not list(doc.iter("form", class_="signout"))  # nobody to sign out yet
    assert doc.one("link").attrs == {"rel": "stylesheet", "href": "/u/static/usage.css"}

    html = render_forbidden(TENANT)
    csp_clean(html)
    doc = parse(html)
    assert doc.one("h1").text() == "Not allowed"
    assert [a.attrs["href"] for a in doc.one("main").iter("a")] == ["/admin/billing-usage"]
    assert "System Usage" not in html
