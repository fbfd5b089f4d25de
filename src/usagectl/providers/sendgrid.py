"""SendGrid: daily email stats of a subuser or a category (v3 Stats API). emails_sent = `requests`.

SendGrid answers one entry per requested day, zeros included, in pages (`limit`/`offset`): we page until every
requested day is present. A day still missing after the last page is an error for that day, never a zero: an
empty or short answer must not overwrite the usage stored for it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx

from usagectl.config import Config, SendGridProvider, TenantConfig
from usagectl.errors import ConfigError
from usagectl.http import Http, bearer_http, check_endpoint
from usagectl.periods import Window
from usagectl.providers.base import as_int
from usagectl.records import CheckResult, DayResult, MetricRow, ProviderError

SOURCE = "sendgrid"
PAGE_LIMIT = 500  # entries (days) per page


def error_message(response: httpx.Response) -> str:
    """SendGrid errors: {"errors": [{"field": ..., "message": ...}]}."""
    body = response.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        parts = []
        for e in errors:
            if isinstance(e, dict):
                field = e.get("field")
                parts.append(f"{field}: {e.get('message')}" if field else str(e.get("message")))
        return "; ".join(parts)
    return response.reason_phrase


def _http(settings: SendGridProvider, cfg: Config) -> Http:
    return bearer_http(
        SOURCE, settings, settings.api_key, "providers.sendgrid.api_key", cfg, error_message=error_message
    )


class SendGrid:
    source = SOURCE

    def __init__(self, http: Http) -> None:
        self.http = http

    def applies_to(self, tenant: TenantConfig) -> bool:
        return tenant.sendgrid is not None

    def close(self) -> None:
        self.http.close()

    def collect_days(self, tenant: TenantConfig, window: Window) -> dict[date, DayResult]:
        sg = tenant.sendgrid
        assert sg is not None
        if sg.subuser is not None:
            path, param, kind, name = "/v3/subusers/stats", "subusers", "subuser", sg.subuser
        else:
            assert sg.category is not None
            path, param, kind, name = "/v3/categories/stats", "categories", "category", sg.category
        params = [
            (param, name),
            ("start_date", window.start.isoformat()),
            ("end_date", window.last.isoformat()),
            ("aggregated_by", "day"),
            ("limit", str(PAGE_LIMIT)),
        ]
        found: dict[date, MetricRow] = {}
        wanted = set(window)
        offset = 0
        # One entry per day, and SendGrid may serve fewer than `limit` a page: each page but the last holds at
        # least one day, so more pages than days in the range means the paging is not advancing.
        pages_left = window.days + 1
        while not wanted <= found.keys() and pages_left > 0:
            pages_left -= 1
            body = self.http.get_json(path, [*params, ("offset", str(offset))])
            found.update(_parse_stats(body, kind, name))
            if not body:
                break  # past the last page
            offset += len(body)
        # SendGrid lists every day, with zeros when there was no traffic: a day it left out is not a zero.
        return {
            d: found[d]
            if d in found
            else ProviderError(f"{SOURCE}: the stats of {kind} {name!r} have no entry for {d}")
            for d in window
        }


def _parse_stats(body: Any, kind: str, name: str) -> dict[date, MetricRow]:
    if not isinstance(body, list):
        raise ProviderError(
            f"{SOURCE}: malformed response: expected a list of days, got {type(body).__name__}"
        )
    out: dict[date, MetricRow] = {}
    for i, entry in enumerate(body):
        try:
            day = date.fromisoformat(entry["date"])
            stats = entry["stats"]
        except (TypeError, KeyError, ValueError):
            raise ProviderError(f"{SOURCE}: malformed response: entry {i} has no valid date/stats") from None
        sent = delivered = 0
        for s in stats if isinstance(stats, list) else []:
            # Only this tenant's own entry counts, whatever else the API returns (isolation).
            if not isinstance(s, dict) or s.get("type") != kind or s.get("name") != name:
                continue
            metrics = s.get("metrics") or {}
            sent += as_int(metrics.get("requests", 0), f"{day} requests")
            delivered += as_int(metrics.get("delivered", 0), f"{day} delivered")
        out[day] = MetricRow(emails_sent=sent, emails_delivered=delivered)
    return out


def make(cfg: Config) -> SendGrid | None:
    settings = cfg.providers.sendgrid
    if settings is None:
        if any(t.sendgrid for t in cfg.tenants):
            raise ConfigError(
                cfg.where() + "tenants use SendGrid but [providers.sendgrid] is missing (api_key_env = ...)"
            )
        return None
    return SendGrid(_http(settings, cfg))


def check(cfg: Config) -> list[CheckResult]:
    settings = cfg.providers.sendgrid
    if settings is None:
        return []
    return check_endpoint(
        f"sendgrid ({settings.base_url})",
        lambda: _http(settings, cfg),
        "/v3/scopes",
        None,
        ok="API key accepted",
    )
