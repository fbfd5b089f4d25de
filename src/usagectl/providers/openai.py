"""OpenAI: organization completions usage per project and model, daily buckets; the Costs API as provider cost.

ai_tokens_in = input_tokens (which include cached input tokens; those are kept per model for pricing),
ai_tokens_out = output_tokens. Only results whose project_id is the tenant's are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx

from usagectl.config import Config, OpenAIProvider, TenantConfig
from usagectl.errors import ConfigError
from usagectl.http import Http, PageGuard, bearer_http, check_endpoint
from usagectl.pricing import ModelTokens
from usagectl.providers.base import CheckResult, MetricRow, ProviderError, as_decimal, as_int

SOURCE = "openai"
USAGE_PATH = "/v1/organization/usage/completions"
COSTS_PATH = "/v1/organization/costs"
MAX_USAGE_LIMIT = 31  # buckets per page for bucket_width=1d
MAX_COSTS_LIMIT = 180

log = logging.getLogger(__name__)


def error_message(response: httpx.Response) -> str:
    """OpenAI errors: {"error": {"message", "type", "param", "code"}}."""
    body = response.json()
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        code = err.get("code") or err.get("type")
        return f"{err['message']}" + (f" ({code})" if code else "")
    return response.reason_phrase


def _http(settings: OpenAIProvider, cfg: Config) -> Http:
    org = {"OpenAI-Organization": settings.organization} if settings.organization else None
    return bearer_http(
        SOURCE,
        settings,
        settings.admin_key,
        "providers.openai.admin_key",
        cfg,
        error_message=error_message,
        headers=org,
    )


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=UTC).timestamp())


class OpenAI:
    source = SOURCE

    def __init__(self, http: Http) -> None:
        self.http = http

    def applies_to(self, tenant: TenantConfig) -> bool:
        return tenant.openai is not None and bool(tenant.openai.project_ids)

    def close(self) -> None:
        self.http.close()

    def collect_day(self, tenant: TenantConfig, day: date) -> MetricRow:
        return self.collect_days(tenant, [day])[day]

    def _buckets(self, path: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Every bucket of every page (has_more / next_page)."""
        guard = PageGuard(SOURCE, path)
        page: str | None = None
        while True:
            body = self.http.get_json(path, params + ([("page", page)] if page else []))
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise ProviderError(f"{SOURCE}: malformed response from {path}: no data list")
            for bucket in body["data"]:
                if not isinstance(bucket, dict):
                    raise ProviderError(f"{SOURCE}: malformed response from {path}: bucket is not an object")
                yield bucket
            if not body.get("has_more"):
                return
            page = body.get("next_page")
            if not isinstance(page, str) or not page:
                raise ProviderError(f"{SOURCE}: {path}: has_more without next_page")
            guard.follow(page)

    def _results(
        self, path: str, params: list[tuple[str, str]], wanted: set[date], projects: Sequence[str]
    ) -> Iterator[tuple[date, dict[str, Any]]]:
        """(day, result) for the wanted days, only results of the tenant's own projects: another project's
        usage or cost is never this tenant's, whatever the API returns."""
        for bucket in self._buckets(path, params):
            day = _bucket_day(bucket)
            if day not in wanted:
                continue
            for r in bucket.get("results") or []:
                if isinstance(r, dict) and r.get("project_id") in projects:
                    yield day, r

    def collect_days(self, tenant: TenantConfig, days: Sequence[date]) -> dict[date, MetricRow]:
        assert tenant.openai is not None
        projects = tenant.openai.project_ids
        wanted = set(days)
        base = [
            ("start_time", str(_epoch(min(days)))),
            ("end_time", str(_epoch(max(days) + timedelta(days=1)))),
            ("bucket_width", "1d"),
            *(("project_ids", p) for p in projects),
            ("group_by", "project_id"),
        ]
        per_model: dict[date, dict[str, list[int]]] = {d: {} for d in days}
        usage_params = [*base, ("group_by", "model"), ("limit", str(MAX_USAGE_LIMIT))]
        for day, r in self._results(USAGE_PATH, usage_params, wanted, projects):
            model = str(r.get("model") or "unknown")
            agg = per_model[day].setdefault(model, [0, 0, 0])
            agg[0] += as_int(r.get("input_tokens", 0), f"{day} input_tokens")
            agg[1] += as_int(r.get("output_tokens", 0), f"{day} output_tokens")
            agg[2] += as_int(r.get("input_cached_tokens") or 0, f"{day} input_cached_tokens")
        costs = self._costs(base, wanted, projects)
        out: dict[date, MetricRow] = {}
        for d in days:
            models = tuple(
                ModelTokens(model, tokens_in=a[0], tokens_out=a[1], cached_in=a[2])
                for model, a in sorted(per_model[d].items())
            )
            tokens_in = sum(m.tokens_in for m in models)
            tokens_out = sum(m.tokens_out for m in models)
            cost = costs.get(d) if costs is not None else None
            if cost is None and costs is not None and not models:
                cost = Decimal(0)  # no usage and no cost line: nothing was charged
            out[d] = MetricRow(
                ai_tokens_in=tokens_in, ai_tokens_out=tokens_out, ai_models=models, provider_cost_usd=cost
            )
        return out

    def _costs(
        self, base: list[tuple[str, str]], wanted: set[date], projects: Sequence[str]
    ) -> dict[date, Decimal] | None:
        """What OpenAI says it charged per day, or None when the Costs API is unavailable to this key. A day
        with usage but no cost line yet is left unknown (None), never $0."""
        try:
            out: dict[date, Decimal] = {}
            costs_params = [*base, ("limit", str(MAX_COSTS_LIMIT))]
            for day, r in self._results(COSTS_PATH, costs_params, wanted, projects):
                amount = r.get("amount") or {}
                value = as_decimal(amount.get("value"), f"{day} cost amount")
                out[day] = out.get(day, Decimal(0)) + value
            return out
        except ProviderError as exc:
            log.warning("openai: costs unavailable, provider cost left unknown: %s", exc)
            return None


def _bucket_day(bucket: dict[str, Any]) -> date:
    try:
        return datetime.fromtimestamp(int(bucket["start_time"]), UTC).date()
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ProviderError(f"{SOURCE}: malformed response: bucket without a valid start_time") from None


def make(cfg: Config) -> OpenAI | None:
    settings = cfg.providers.openai
    if settings is None:
        if any(t.openai and t.openai.project_ids for t in cfg.tenants):
            raise ConfigError(
                cfg.where()
                + "tenants have OpenAI project_ids but [providers.openai] is missing (admin_key_env = ...)"
            )
        return None
    return OpenAI(_http(settings, cfg))


def check(cfg: Config) -> list[CheckResult]:
    settings = cfg.providers.openai
    if settings is None:
        return []
    return check_endpoint(
        f"openai ({settings.base_url})",
        lambda: _http(settings, cfg),
        "/v1/organization/projects",
        [("limit", "1")],
        ok="admin key accepted",
    )
