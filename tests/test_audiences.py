"""What a tenant admin sees and what only the platform sees (render.layout audiences), on SQLite and PostgreSQL.

Every tenant-scope response (the API's summary and daily, also with ?tenant= of itself; the Billing & Usage page's
text; its CSV download) for this month and the last one is walked for a provider-cost or margin field, word or
figure; the figures looked for are the ones a root admin gets for the same requests, so the test knows they exist.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest

import test_web_app
from test_web_app import BILLING, Site, sign_in
from usagectl.periods import utc_today
from usagectl.render.fmt import signed_usd, usd
from usagectl.render.layout import PLATFORM_FIELDS

SUMMARY = "/api/admin/usage/summary"
DAILY = "/api/admin/usage/daily"
site = test_web_app.site  # the signed-in site's fixture, shared
FORBIDDEN_WORDS = re.compile(r"provider|margin|reconcil", re.IGNORECASE)


def _months() -> list[tuple[str, date, date]]:
    """(YYYY-MM, first day, last day to ask the API for) for this month and the last one."""
    today = utc_today()
    this = today.replace(day=1)
    last = (this - timedelta(days=1)).replace(day=1)
    return [
        (f"{last:%Y-%m}", last, this - timedelta(days=1)),
        (f"{this:%Y-%m}", this, max(this, today - timedelta(days=1))),
    ]


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (key path, leaf) of a JSON document."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _walk(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _walk(v, f"{path}[{i}]")]
    return [(path, value)]


def _figures(root_doc: Any) -> set[str]:
    """The platform's figures in a root admin's answer, in every form a surface writes them."""
    out: set[str] = set()
    for path, leaf in _walk(root_doc):
        key = re.sub(r"\[\d+\]", "", path).split(".")[-1]
        if key in PLATFORM_FIELDS and isinstance(leaf, str):
            amount = Decimal(leaf)
            out |= {leaf, signed_usd(amount), usd(abs(amount))} if amount else set()
    return out


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # Attribute values are surface too (data-key="margin_usd" would tell).
        self.parts.extend(v for _, v in attrs if v)


def _page_text(html: str) -> str:
    p = _Text()
    p.feed(html)
    return " ".join(p.parts)


def _clean(surface: str, text: str, figures: set[str]) -> None:
    assert not FORBIDDEN_WORDS.search(text), (surface, FORBIDDEN_WORDS.search(text))
    for figure in figures:
        # A figure, not a digit run inside a longer one ("$0.41" must not match "$10.41").
        assert not re.search(rf"(?<![\d.,]){re.escape(figure)}(?![\d])", text), (surface, figure)


@pytest.mark.parametrize("tenant_param", [None, "acme"])
def test_tenant_scope_never_shows_provider_cost_or_margin(site: Site, tenant_param: str | None) -> None:
    api = site.fresh()
    auth = {"Authorization": f"Bearer {site.acme}"}
    root = {"Authorization": f"Bearer {site.root}"}
    assert sign_in(site.client, site.acme).status_code == 303
    own = {"tenant": tenant_param} if tenant_param else {}
    seen_figures = 0
    for month, first, last in _months():
        window = {"from": first.isoformat(), "to": last.isoformat()}
        root_summary = api.get(SUMMARY, params={"month": month, "tenant": "acme"}, headers=root).json()
        root_daily = api.get(DAILY, params={**window, "tenant": "acme"}, headers=root).json()
        figures = _figures(root_summary) | _figures(root_daily)
        seen_figures += len(figures)

        summary = api.get(SUMMARY, params={"month": month, **own}, headers=auth)
        daily = api.get(DAILY, params={**window, **own}, headers=auth)
        for name, r in (("summary", summary), ("daily", daily)):
            assert r.status_code == 200, (name, r.text)
            for path, _ in _walk(r.json()):
                assert not FORBIDDEN_WORDS.search(path), (name, month, path)
            _clean(f"{name} {month}", json.dumps(r.json()), figures)
        assert daily.json()["days"], month  # there is something to leak

        page = site.client.get(BILLING, params={"month": month, **own})
        assert page.status_code == 200
        _clean(f"page {month}", _page_text(page.text), figures)

        download = site.client.get(BILLING + ".csv", params={"month": month, **own})
        assert download.status_code == 200
        header = next(csv.reader(io.StringIO(download.text)))
        assert not [c for c in header if FORBIDDEN_WORDS.search(c)], header
        _clean(f"csv {month}", download.text, figures)
    # The root admin's answers hold provider costs (31 x $0.41 ...): the checks above had something to find.
    assert seen_figures


def test_root_viewing_a_tenant_gets_the_root_models(site: Site) -> None:
    api = site.fresh()
    root = {"Authorization": f"Bearer {site.root}"}
    month, first, last = _months()[0]
    summary = api.get(SUMMARY, params={"month": month, "tenant": "acme"}, headers=root).json()
    daily = api.get(
        DAILY, params={"from": first.isoformat(), "to": last.isoformat(), "tenant": "acme"}, headers=root
    )
    assert {"provider_costs", "margin_usd"} <= set(summary) and "provider_cost_usd" in summary["cost"]
    assert all("provider_cost_usd" in d for d in daily.json()["days"])
    assert Decimal(daily.json()["totals"]["provider_cost_usd"]) == Decimal("0.41") * len(daily.json()["days"])


def test_openapi_has_a_model_per_audience(site: Site) -> None:
    spec = site.fresh().get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for tenant_model, root_model in (
        ("TenantUsageSummary", "RootUsageSummary"),
        ("TenantUsageDaily", "RootUsageDaily"),
    ):
        assert "margin_usd" not in schemas[tenant_model]["properties"]
        assert "provider_costs" not in schemas[tenant_model]["properties"]
        assert schemas[tenant_model].get("additionalProperties") is False
        assert {"margin_usd", "provider_costs"} <= set(schemas[root_model]["properties"])
    for model in ("TenantCost", "TenantTotals", "TenantDay"):
        assert not [p for p in schemas[model]["properties"] if FORBIDDEN_WORDS.search(p)], model
    assert "provider_cost_usd" in schemas["RootDay"]["properties"]
    ok = spec["paths"][SUMMARY]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    refs = {x["$ref"].rsplit("/", 1)[1] for x in ok["anyOf"]}
    assert refs == {"TenantUsageSummary", "RootUsageSummary"}
