"""SendGrid: daily email stats of a subuser or a category (v3 Stats API). emails_sent = `requests`.

SendGrid answers one entry per requested day, zeros included. `/v3/subusers/stats` pages by `limit`/`offset`: we
page until every requested day is present. `/v3/categories/stats` defines no paging parameters (tsg_stats_v3), so
none are sent: a long window is asked in spans of CATEGORY_SPAN_DAYS days, each answered whole. A day still missing
after the last page is an error for that day, never a zero: an empty or short answer must not overwrite the usage
stored for it. So is a day whose entry lacks the tenant's own stats, or whose metrics lack `requests` or
`delivered` (every metric is a required integer in the spec). Only the entry named for the tenant's own subuser or
category is counted, whatever else the answer holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import httpx

from usagectl.config import Config, SendGridProvider, TenantConfig
from usagectl.errors import ConfigError
from usagectl.http import Http, bearer_http, check_endpoint
from usagectl.periods import Window
from usagectl.providers.base import as_int
from usagectl.records import CheckResult, DayResult, MetricRow, ProviderError

SOURCE = "sendgrid"
PAGE_LIMIT = 500  # entries (days) per page of /v3/subusers/stats
# /v3/categories/stats has no limit/offset: each request covers at most this many days (one entry each), a span
# no default page of the API is known to cut short; the every-day-present check still catches one that was.
CATEGORY_SPAN_DAYS = 31
# Both stats endpoints take up to 10 `subusers` / `categories` a request (tsg_subusers_v3, tsg_stats_v3).
MAX_NAMES_PER_REQUEST = 10


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
        return self.collect_batch([tenant], window)[tenant.slug]

    def batches(self, tenants: Sequence[TenantConfig]) -> list[list[TenantConfig]]:
        """Subusers and categories apart (two endpoints), at most MAX_NAMES_PER_REQUEST of each a request."""
        # One pass: `t not in subusers` compared pydantic models pairwise, quadratic in the tenant count.
        subusers: list[TenantConfig] = []
        categories: list[TenantConfig] = []
        for t in tenants:
            (subusers if t.sendgrid and t.sendgrid.subuser is not None else categories).append(t)
        return [
            group[i : i + MAX_NAMES_PER_REQUEST]
            for group in (subusers, categories)
            for i in range(0, len(group), MAX_NAMES_PER_REQUEST)
        ]

    def collect_batch(
        self, tenants: Sequence[TenantConfig], window: Window
    ) -> dict[str, dict[date, DayResult]]:
        """One request (set) for up to 10 subusers or categories: every day's entry holds a stats entry per
        name, and each tenant gets only its own."""
        names: dict[str, str] = {}  # name -> slug
        kinds = set()
        for t in tenants:
            sg = t.sendgrid
            assert sg is not None
            kind, name = ("subuser", sg.subuser) if sg.subuser is not None else ("category", sg.category)
            assert name is not None
            kinds.add(kind)
            names[name] = t.slug
        (kind,) = kinds  # a batch is of one kind (see `batches`)
        if len(names) > MAX_NAMES_PER_REQUEST:
            raise ValueError(f"at most {MAX_NAMES_PER_REQUEST} {kind} names a request")
        bodies = self._paged(window, list(names)) if kind == "subuser" else self._spans(window, list(names))
        out: dict[str, dict[date, DayResult]] = {}
        for name, slug in names.items():
            found: dict[date, DayResult] = {}
            for body in bodies:
                found.update(_parse_stats(body, kind, name))
            # SendGrid lists every day, with zeros when there was no traffic: a day it left out is not a zero.
            out[slug] = {
                d: found[d]
                if d in found
                else ProviderError(f"{SOURCE}: the stats of {kind} {name!r} have no entry for {d}")
                for d in window
            }
        return out

    def _spans(self, window: Window, names: list[str]) -> list[Any]:
        bodies = []
        for span in _spans(window, CATEGORY_SPAN_DAYS):
            params = [*(("categories", n) for n in names), *_dates(span)]
            bodies.append(_as_list(self.http.get_json("/v3/categories/stats", params)))
        return bodies

    def _paged(self, window: Window, names: list[str]) -> list[Any]:
        params = [*(("subusers", n) for n in names), *_dates(window), ("limit", str(PAGE_LIMIT))]
        bodies: list[Any] = []
        found: set[str] = set()
        wanted = {d.isoformat() for d in window}
        offset = 0
        # One entry per day, and SendGrid may serve fewer than `limit` a page: each page but the last holds at
        # least one day, so more pages than days in the range means the paging is not advancing.
        pages_left = window.days + 1
        while not wanted <= found and pages_left > 0:
            pages_left -= 1
            body = _as_list(self.http.get_json("/v3/subusers/stats", [*params, ("offset", str(offset))]))
            bodies.append(body)
            found.update(e["date"] for e in body if isinstance(e, dict) and isinstance(e.get("date"), str))
            if not body:
                break  # past the last page
            offset += len(body)
        return bodies


def _as_list(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise ProviderError(
            f"{SOURCE}: malformed response: expected a list of days, got {type(body).__name__}"
        )
    return body


def _dates(window: Window) -> list[tuple[str, str]]:
    return [
        ("start_date", window.start.isoformat()),
        ("end_date", window.last.isoformat()),
        ("aggregated_by", "day"),
    ]


def _spans(window: Window, days: int) -> list[Window]:
    out = []
    start = window.start
    while start < window.end:
        end = min(start + timedelta(days=days), window.end)
        out.append(Window(start, end))
        start = end
    return out


def _parse_stats(body: Any, kind: str, name: str) -> dict[date, DayResult]:
    if not isinstance(body, list):
        raise ProviderError(
            f"{SOURCE}: malformed response: expected a list of days, got {type(body).__name__}"
        )
    out: dict[date, DayResult] = {}
    for i, entry in enumerate(body):
        try:
            day = date.fromisoformat(entry["date"])
            stats = entry["stats"]
            if not isinstance(stats, list):
                raise TypeError
        except (TypeError, KeyError, ValueError):
            raise ProviderError(f"{SOURCE}: malformed response: entry {i} has no valid date/stats") from None
        # Only this tenant's own entry counts, whatever else the API returns (isolation).
        own = [s for s in stats if isinstance(s, dict) and s.get("type") == kind and s.get("name") == name]
        try:
            if not own:
                raise ProviderError(
                    f"malformed response: the entry for {day} has no stats of {kind} {name!r}"
                )
            sent = delivered = 0
            for s in own:
                metrics = s.get("metrics")
                if not isinstance(metrics, dict) or "requests" not in metrics or "delivered" not in metrics:
                    raise ProviderError(
                        f"malformed response: the {kind} {name!r} stats of {day} lack requests/delivered"
                    )
                sent += as_int(metrics["requests"], f"{day} requests")
                delivered += as_int(metrics["delivered"], f"{day} delivered")
            out[day] = MetricRow(emails_sent=sent, emails_delivered=delivered)
        except ProviderError as exc:
            # A malformed day fails alone: its stored row stays, the answer's other days are good.
            out[day] = ProviderError(f"{SOURCE}: {exc}")
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
