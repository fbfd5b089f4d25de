"""OpenAI: organization usage per project and model, daily buckets; the Costs API as provider cost.

Tokens come from every usage endpoint OpenAI's cost covers that reports tokens: completions, embeddings and
moderations (openai-openapi `/organization/usage/*`), so tokens and provider cost describe the same usage.
ai_tokens_in = input_tokens (which include cached and cache-write tokens; both are kept per model for pricing),
ai_tokens_out = output_tokens. Only results whose project_id is the tenant's are counted.

Every requested day comes back as a bucket; a day missing from an answer, a result without its required token
counts, or a failed Costs call, fails that day (its stored row stays as it was) rather than storing zeros or an
unknown cost over known figures. A cost line without an amount or a currency (both optional in CostsResult), or
in another currency than USD, leaves that day's provider cost unknown with the reason noted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import httpx

from usagectl.config import Config, OpenAIProvider, TenantConfig
from usagectl.errors import ConfigError
from usagectl.http import Http, PageGuard, bearer_http, check_endpoint
from usagectl.periods import Window
from usagectl.providers.base import as_decimal, as_int
from usagectl.records import CheckResult, DayResult, MetricRow, ModelTokens, ProviderError

SOURCE = "openai"
USAGE_PATH = "/v1/organization/usage/completions"
# Token usage OpenAI bills that is not a completion: input tokens only.
INPUT_ONLY_PATHS = ("/v1/organization/usage/embeddings", "/v1/organization/usage/moderations")
COSTS_PATH = "/v1/organization/costs"
MAX_USAGE_LIMIT = 31  # buckets per page for bucket_width=1d
MAX_COSTS_LIMIT = 180
# Project ids per request. openai-openapi gives `project_ids` as an array without a maximum; what bounds a request
# is its URL (about 40 bytes per `project_ids=proj_...` pair, 100 of them about 4 KiB, half the 8 KiB request line
# common servers and proxies accept). Every bucket holds a result per project and model, so a page of 31 daily
# buckets of 100 projects stays a few hundred KB.
MAX_PROJECTS_PER_REQUEST = 100

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
        self,
        path: str,
        params: list[tuple[str, str]],
        wanted: set[date],
        projects: Mapping[str, str],
        seen: set[date] | None = None,
    ) -> Iterator[tuple[date, dict[str, Any]]]:
        """(day, result) for the wanted days, only results of the tenant's own projects: another project's
        usage or cost is never this tenant's, whatever the API returns. `seen` collects the days that came
        back as a bucket (OpenAI answers one per day, empty or not)."""
        for bucket in self._buckets(path, params):
            day = _bucket_day(bucket)
            if day not in wanted:
                continue
            if seen is not None:
                seen.add(day)
            for r in bucket.get("results") or []:
                if isinstance(r, dict) and r.get("project_id") in projects:
                    yield day, r

    def collect_days(self, tenant: TenantConfig, window: Window) -> dict[date, DayResult]:
        return self._collect([tenant], window, whole=False)[tenant.slug]

    def batches(self, tenants: Sequence[TenantConfig]) -> list[list[TenantConfig]]:
        """Tenants in groups of at most MAX_PROJECTS_PER_REQUEST project ids (a tenant's own list is never
        split: its days must come from one answer)."""
        out: list[list[TenantConfig]] = []
        size = 0
        for t in tenants:
            n = len(t.openai.project_ids) if t.openai else 0
            if not out or size + n > MAX_PROJECTS_PER_REQUEST:
                out.append([])
                size = 0
            out[-1].append(t)
            size += n
        return out

    def collect_batch(
        self, tenants: Sequence[TenantConfig], window: Window
    ) -> dict[str, dict[date, DayResult]]:
        return self._collect(tenants, window, whole=True)

    def _collect(
        self, tenants: Sequence[TenantConfig], window: Window, *, whole: bool
    ) -> dict[str, dict[date, DayResult]]:
        """Every tenant's days from one request set over all their projects, grouped by project so each
        result is given to the tenant whose project it is. `whole`: a failed Costs call raises (the collector
        splits the batch) instead of failing every day."""
        owner: dict[str, str] = {}  # project id -> tenant slug
        for t in tenants:
            assert t.openai is not None
            for project in t.openai.project_ids:
                owner.setdefault(project, t.slug)
        slugs = [t.slug for t in tenants]
        wanted = set(window)
        base = [
            ("start_time", str(_epoch(window.start))),
            ("end_time", str(_epoch(window.end))),
            ("bucket_width", "1d"),
            *(("project_ids", p) for p in owner),
            ("group_by", "project_id"),
        ]
        # slug -> day -> model -> [input, output, cached input, cache-write input]
        per_model: dict[str, dict[date, dict[str, list[int]]]] = {s: {d: {} for d in window} for s in slugs}
        missing: dict[str, dict[date, str]] = {s: {} for s in slugs}
        usage_params = [*base, ("group_by", "model"), ("limit", str(MAX_USAGE_LIMIT))]
        for path in (USAGE_PATH, *INPUT_ONLY_PATHS):
            seen: set[date] = set()
            for day, r in self._results(path, usage_params, wanted, owner, seen):
                slug = owner[r["project_id"]]
                try:
                    tokens = _tokens(r, path, day)
                except ProviderError as exc:
                    # A result without its required counts fails its day, never read as 0 tokens.
                    missing[slug].setdefault(day, f"{SOURCE}: {path}: {exc}")
                    continue
                model = str(r.get("model") or "unknown")
                agg = per_model[slug][day].setdefault(model, [0, 0, 0, 0])
                for i, n in enumerate(tokens):
                    agg[i] += n
            for d in wanted - seen:
                for slug in slugs:
                    missing[slug].setdefault(d, f"{SOURCE}: {path} has no bucket for {d}")
        costs, cost_seen, unknown = self._costs(base, wanted, owner)
        if whole and isinstance(costs, ProviderError):
            raise costs
        out: dict[str, dict[date, DayResult]] = {}
        for slug in slugs:
            days: dict[date, DayResult] = {}
            for d in window:
                if d in missing[slug]:
                    days[d] = ProviderError(missing[slug][d])
                    continue
                if isinstance(costs, ProviderError):
                    days[d] = costs
                    continue
                models = tuple(
                    ModelTokens(model, tokens_in=a[0], tokens_out=a[1], cached_in=a[2], cache_write_in=a[3])
                    for model, a in sorted(per_model[slug][d].items())
                )
                cost = costs.get((slug, d))
                note = None
                if (slug, d) in unknown:
                    note = f"provider cost unknown: {unknown[slug, d]}"
                elif cost is None and not models and d in cost_seen:
                    cost = Decimal(0)  # no usage and no cost line: nothing was charged
                elif cost is None:
                    note = "provider cost unknown: OpenAI has no cost line for this day yet"
                days[d] = MetricRow(
                    ai_tokens_in=sum(m.tokens_in for m in models),
                    ai_tokens_out=sum(m.tokens_out for m in models),
                    ai_models=models,
                    provider_cost_usd=cost,
                    note=note,
                )
            out[slug] = days
        return out

    def _costs(
        self, base: list[tuple[str, str]], wanted: set[date], owner: Mapping[str, str]
    ) -> tuple[dict[tuple[str, date], Decimal] | ProviderError, set[date], dict[tuple[str, date], str]]:
        """What OpenAI says it charged per tenant and day (a day with usage but no cost line yet is left unknown,
        never $0), or the error that stopped the Costs call: then every day fails and keeps its stored figures,
        since storing NULL over a known cost would lose it silently."""
        seen: set[date] = set()
        unknown: dict[tuple[str, date], str] = {}
        try:
            out: dict[tuple[str, date], Decimal] = {}
            costs_params = [*base, ("limit", str(MAX_COSTS_LIMIT))]
            for day, r in self._results(COSTS_PATH, costs_params, wanted, owner, seen):
                key = (owner[r["project_id"]], day)
                # `amount` and both its fields are optional in CostsResult: a line without them is not $0 and
                # not dollars by default; the day's cost is unknown, with the reason.
                amount = r.get("amount")
                if not isinstance(amount, dict) or amount.get("value") is None:
                    unknown.setdefault(key, f"OpenAI gave a cost line of {day} without an amount")
                    continue
                currency = amount.get("currency")
                value = as_decimal(amount["value"], f"{day} cost amount")
                if not isinstance(currency, str) or not currency:
                    unknown.setdefault(key, f"OpenAI gave {day}'s cost without a currency")
                elif currency.lower() != "usd":
                    unknown.setdefault(key, f"OpenAI reported {day}'s cost in {currency.lower()!r}, not USD")
                out[key] = out.get(key, Decimal(0)) + value
            for key in unknown:
                out.pop(key, None)  # unknown: never a sum of another currency read as dollars
            return out, seen, unknown
        except ProviderError as exc:
            log.warning("openai: costs unavailable, the stored days are kept: %s", exc)
            return (
                ProviderError(
                    f"{SOURCE}: costs unavailable, stored usage and cost kept: {exc}",
                    retryable=exc.retryable,
                    status=exc.status,
                ),
                seen,
                unknown,
            )


def _tokens(r: dict[str, Any], path: str, day: date) -> tuple[int, int, int, int]:
    """(input, output, cached input, cache-write input) of one result. `input_tokens` is required in every usage
    result and `output_tokens` in a completions result (openai-openapi): missing, the answer is malformed. The
    cache counts are optional (older results lack them): absent means none were reported. Embeddings and
    moderations define no output tokens."""
    if "input_tokens" not in r:
        raise ProviderError(f"malformed response: a result of {day} has no input_tokens")
    tokens_in = as_int(r["input_tokens"], f"{day} input_tokens")
    if path != USAGE_PATH:
        return tokens_in, 0, 0, 0
    if "output_tokens" not in r:
        raise ProviderError(f"malformed response: a result of {day} has no output_tokens")
    return (
        tokens_in,
        as_int(r["output_tokens"], f"{day} output_tokens"),
        as_int(r.get("input_cached_tokens") or 0, f"{day} input_cached_tokens"),
        as_int(r.get("input_cache_write_tokens") or 0, f"{day} input_cache_write_tokens"),
    )


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
