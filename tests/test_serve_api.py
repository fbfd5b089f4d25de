"""The usage API in-process (FastAPI TestClient over httpx), on SQLite and PostgreSQL: every endpoint, both
roles, the error paths, and the figures against `report`/`tenants --format json`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Self

import pytest
from fastapi.testclient import TestClient

from conftest import Priced
from priced import EMAIL, OCT, SMS_V1, SMS_V2, V2_FROM, micro
from usagectl import config as cfgmod
from usagectl.periods import utc_today
from usagectl.render.layout import PLATFORM_FIELDS
from usagectl.store.engine import Store
from usagectl.store.tables import SCHEMA_HEAD
from usagectl.store.tokens import create_token, revoke_token
from usagectl.web.app import ServeSettings, create_app

DAILY = "/api/admin/usage/daily"
SUMMARY = "/api/admin/usage/summary"
TENANTS = "/api/root-admin/usage/tenants"


@dataclass
class Api:
    client: TestClient
    store: Store
    cfg: cfgmod.Config
    acme: str
    globex: str
    root: str

    @classmethod
    def open(cls, store: Store, cfg: cfgmod.Config, **client: Any) -> Self:
        """The app in-process over `store`, with a token for acme, one for globex and a root token."""
        acme, _ = create_token(store, tenant="acme")
        globex, _ = create_token(store, tenant="globex")
        root, _ = create_token(store, tenant=None)
        app = create_app(ServeSettings(cfg, store=store, access_log=False))
        return cls(TestClient(app, **client), store, cfg, acme, globex, root)

    def get(self, url: str, token: str | None, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(url, params=params, headers=headers)


@pytest.fixture
def api(seeded: Priced) -> Iterator[Api]:
    api = Api.open(seeded.store, seeded.cfg)
    yield api
    api.client.close()


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "generated_at"}


def _tenant_view(value: Any) -> Any:
    """`report --format json` as a tenant admin may see it: without the platform's own figures."""
    if isinstance(value, dict):
        return {k: _tenant_view(v) for k, v in value.items() if k not in PLATFORM_FIELDS}
    if isinstance(value, list):
        return [_tenant_view(v) for v in value]
    return value


def test_daily_equals_report_json_for_the_same_window(api: Api, cli: Callable[..., Any]) -> None:
    window = {"from": "2026-10-01", "to": "2026-10-31"}
    r = api.get(DAILY, api.acme, **window)
    assert r.status_code == 200
    body = r.json()
    expected = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    # A tenant admin: the operator's report without provider cost and margin; a root admin: all of it.
    assert _strip(body) == _strip(_tenant_view(expected))
    assert _strip(api.get(DAILY, api.root, tenant="acme", **window).json()) == _strip(expected)
    assert len(body["days"]) == 31
    day = body["days"][0]
    # The standard day (tests/priced.py): 30 + 10 SMS at v1's price, 100 emails.
    assert day["tenant"] == "acme" and day["sms_total"] == 40
    assert day["sms_cost_usd"] == str(micro(40 * SMS_V1)) == "0.560000"
    assert "provider_cost_usd" not in day and day["email_cost_usd"] == str(micro(100 * EMAIL)) == "0.050000"
    assert expected["days"][0]["provider_cost_usd"] == "0.410000"
    v1_days, v2_days = (V2_FROM - OCT.start).days, (OCT.end - V2_FROM).days
    month = v1_days * micro(40 * SMS_V1) + v2_days * micro(40 * SMS_V2) + 31 * micro(100 * EMAIL)
    assert body["totals"]["estimated_cost_usd"] == str(month) == "16.350000"


def test_daily_defaults_to_the_last_30_complete_days(api: Api) -> None:
    body = api.get(DAILY, api.acme).json()
    yesterday = utc_today() - timedelta(days=1)
    assert body["window"] == {
        "start": (yesterday - timedelta(days=29)).isoformat(),
        "end": yesterday.isoformat(),
        "days": 30,
    }


def test_summary_equals_report_json_for_the_month(api: Api, cli: Callable[..., Any]) -> None:
    r = api.get(SUMMARY, api.acme, month="2026-10")
    assert r.status_code == 200
    s = r.json()
    rep = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    t = rep["totals"]
    assert s["kind"] == "tenant_summary" and s["month"] == "2026-10" and s["plan_tier"] == "starter"
    assert s["cards"]["sms"] == {"sms_total": 1240, "mms_total": 0} and t["sms_total"] == 1240
    assert s["cards"]["email"]["email_total"] == t["email_total"] == 3100
    assert s["cards"]["voice"]["voice_total_minutes"] == t["voice_total_minutes"]
    assert s["cards"]["ai"]["ai_total_tokens"] == t["ai_total_tokens"]
    assert s["cost"]["estimated_cost_usd"] == t["estimated_cost_usd"]
    assert "provider_cost_usd" not in s["cost"] and "margin_usd" not in s and "provider_costs" not in s
    root = api.get(SUMMARY, api.root, month="2026-10", tenant="acme").json()
    assert root["cost"]["provider_cost_usd"] == t["provider_cost_usd"] == "12.710000"
    assert root["margin_usd"] == rep["margin_usd"] and root["provider_costs"] == rep["provider_costs"]
    assert s["cost"]["month_to_date_usd"] == rep["month_to_date"]["estimated_cost_usd"]
    assert s["cost"]["projected_month_cost_usd"] == rep["month_to_date"]["projected_month_cost_usd"]
    assert s["allowances"] == rep["allowances"]
    sms = next(a for a in s["allowances"] if a["metric"] == "sms")
    assert sms == {"metric": "sms", "included": 500, "used": 1240, "percent_used": "248.0", "over": True}


def test_summary_defaults_to_the_current_month(api: Api) -> None:
    today = utc_today()
    assert api.get(SUMMARY, api.acme).json()["month"] == f"{today.year:04d}-{today.month:02d}"


def test_tenants_equals_tenants_json_and_pages(api: Api, cli: Callable[..., Any]) -> None:
    expected = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    r = api.get(TENANTS, api.root, month="2026-10")
    assert r.status_code == 200
    body = r.json()
    assert body["limit"] == 100 and body["offset"] == 0
    assert _strip({k: v for k, v in body.items() if k not in ("limit", "offset")}) == _strip(expected)
    assert [t["tenant"] for t in body["tenants"]] == ["globex", "acme", "quiet"]
    page = api.get(TENANTS, api.root, month="2026-10", limit=1, offset=1).json()
    assert [t["tenant"] for t in page["tenants"]] == ["acme"]
    assert page["total"] == body["total"] and page["tenant_count"] == 3
    by_name = api.get(TENANTS, api.root, month="2026-10", sort="name").json()
    assert [t["tenant"] for t in by_name["tenants"]] == ["acme", "globex", "quiet"]


def test_root_reads_any_tenant_and_must_name_one(api: Api) -> None:
    r = api.get(DAILY, api.root, **{"from": "2026-10-01", "to": "2026-10-02", "tenant": "globex"})
    assert r.status_code == 200 and r.json()["tenant"]["slug"] == "globex"
    assert api.get(SUMMARY, api.root, month="2026-10", tenant="acme").json()["tenant"]["slug"] == "acme"
    missing = api.get(DAILY, api.root)
    assert missing.status_code == 400 and missing.json()["parameter"] == "tenant"
    unknown = api.get(SUMMARY, api.root, tenant="nope")
    assert unknown.status_code == 404 and unknown.json()["parameter"] == "tenant"


def test_tenant_admin_gets_403_for_any_other_tenant_existing_or_not(api: Api) -> None:
    for url in (DAILY, SUMMARY):
        other = api.get(url, api.acme, tenant="globex")
        ghost = api.get(url, api.acme, tenant="no-such-tenant")
        assert other.status_code == ghost.status_code == 403
        assert other.json() == ghost.json()  # no hint whether the slug exists
        assert "987654" not in other.text
        assert api.get(url, api.acme, tenant="acme").status_code == 200
    assert api.get(TENANTS, api.acme).status_code == 403


def test_missing_bad_revoked_and_expired_tokens_get_401(api: Api) -> None:
    r = api.get(SUMMARY, None)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="usagectl"'
    bad = api.get(SUMMARY, api.acme[:-1] + ("A" if api.acme[-1] != "A" else "B"))
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert api.acme[:-1] not in bad.text
    basic = api.client.get(SUMMARY, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401
    assert api.get(SUMMARY, api.acme).status_code == 200
    prefix = api.acme[:12]
    assert revoke_token(api.store, prefix)
    assert api.get(SUMMARY, api.acme).status_code == 401
    short, _ = create_token(api.store, tenant="acme", expires_in=timedelta(seconds=-1))
    assert api.get(SUMMARY, short).status_code == 401


@pytest.mark.parametrize(
    ("url", "params", "status", "parameter"),
    [
        (DAILY, {"from": "2026-13-01"}, 422, "from"),
        (DAILY, {"to": "yesterday"}, 422, "to"),
        (DAILY, {"from": "2026-10-05", "to": "2026-10-01"}, 400, "from"),
        (DAILY, {"from": "2024-01-01", "to": "2026-01-01"}, 400, "from"),
        (DAILY, {"tenant": "Not A Slug"}, 422, "tenant"),
        (DAILY, {"tenant": "acme\n"}, 422, "tenant"),
        (DAILY, {"to": "9999-12-31"}, 422, "to"),
        (DAILY, {"from": "0001-01-01", "to": "0001-01-02"}, 200, None),
        (DAILY, {"to": "0001-01-01"}, 200, None),
        (SUMMARY, {"month": "2026-13"}, 422, "month"),
        (SUMMARY, {"month": "0000-01"}, 422, "month"),
        (TENANTS, {"sort": "bogus"}, 422, "sort"),
        (TENANTS, {"limit": "0"}, 422, "limit"),
        (TENANTS, {"limit": "many"}, 422, "limit"),
        (TENANTS, {"offset": "-1"}, 422, "offset"),
        (TENANTS, {"month": "9999-12"}, 422, "month"),
    ],
)
def test_bad_parameters_are_named(
    api: Api, url: str, params: dict[str, str], status: int, parameter: str | None
) -> None:
    r = api.get(url, api.root if url == TENANTS else api.acme, **params)
    assert r.status_code == status, r.text
    if parameter is not None:
        assert r.json()["parameter"] == parameter
        assert parameter in r.json()["error"]


def test_366_days_is_allowed(api: Api) -> None:
    assert api.get(DAILY, api.acme, **{"from": "2025-11-01", "to": "2026-11-01"}).status_code == 200


def test_headers_on_every_response(api: Api) -> None:
    for r in (
        api.get(SUMMARY, api.acme),
        api.get(SUMMARY, None),
        api.get(DAILY, api.acme, **{"from": "x"}),
        api.client.get("/healthz"),
        api.client.get("/nope"),
    ):
        assert r.headers["cache-control"] == "private, no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-type"].startswith("application/json")


def test_healthz_docs_and_openapi(api: Api) -> None:
    h = api.client.get("/healthz")
    assert h.status_code == 200 and h.json() == {
        "status": "ok",
        "database": "ok",
        "schema": SCHEMA_HEAD,
    }
    spec = api.client.get("/openapi.json").json()
    assert {DAILY, SUMMARY, TENANTS, "/healthz"} <= set(spec["paths"])
    assert any(p["name"] == "from" for p in spec["paths"][DAILY]["get"]["parameters"])
    assert api.client.get("/docs").status_code == 200


def test_healthz_reports_a_schema_behind(api: Api) -> None:
    from sqlalchemy import text

    with api.store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    h = api.client.get("/healthz")
    assert h.status_code == 503 and h.json()["schema"] == "0002"


def test_last_used_is_recorded(api: Api) -> None:
    from usagectl.store.tokens import list_tokens

    assert api.get(SUMMARY, api.globex).status_code == 200
    used = {t.prefix: t.last_used_at for t in list_tokens(api.store)}
    assert used[api.globex[:12]] is not None and used[api.acme[:12]] is None


def test_a_database_gone_is_503_not_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    import usagectl.web.api as web_api

    def down(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(web_api, "tenant_report", down)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    r = client.get(SUMMARY, headers={"Authorization": f"Bearer {api.acme}"})
    assert r.status_code == 503 and r.json() == {"error": "database unavailable"}
    assert r.headers["cache-control"] == "private, no-store"
