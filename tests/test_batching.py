"""Batched provider calls (issue 24): one request set answers for many tenants, each tenant's rows come back apart,
and a batch that fails is split so that one bad tenant fails only its own days. Counted on the sandbox's request
log, over real HTTP, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from usagectl.collector import CollectResult, collect
from usagectl.config import Config, TenantConfig, TenantOpenAI, TenantSendGrid
from usagectl.periods import Window
from usagectl.providers import openai, sendgrid
from usagectl.providers.registry import HTTP_SOURCES, open_providers
from usagectl.sandbox import ModelUsage, Sandbox
from usagectl.store.engine import Store
from usagectl.store.tables import tenants, usage_metrics
from usagectl.store.tenants import sync_tenants

D1 = date(2026, 11, 20)
WINDOW = Window(D1, D1 + timedelta(days=3))


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(synthetic=False) as sandbox:
        yield sandbox


def run(sb: Sandbox, store: Store, tenants_: list[TenantConfig], **overrides: Any) -> CollectResult:
    cfg: Config = sb.config(tenants_, **({"max_retries": 0} | overrides))
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
        return collect(store, cfg, providers, WINDOW, workers=4, today=WINDOW.end)


def stored(store: Store, source: str, column: str) -> dict[tuple[str, date], Any]:
    m = usage_metrics.c
    q = (
        select(tenants.c.slug, m.date, m[column])
        .join(tenants, tenants.c.id == m.tenant_id)
        .where(m.source == source)
    )
    with store.engine.connect() as conn:
        return {(r[0], r[1]): r[2] for r in conn.execute(q)}


def ai_tenants(n: int, projects: int = 1) -> list[TenantConfig]:
    return [
        TenantConfig(
            slug=f"t{i:03d}",
            openai=TenantOpenAI(project_ids=[f"proj_{i:03d}_{j}" for j in range(projects)]),
        )
        for i in range(n)
    ]


def test_openai_asks_once_per_endpoint_for_many_projects(sb: Sandbox, store: Store) -> None:
    ts = ai_tenants(30, projects=2)
    for i, t in enumerate(ts):
        for j, project in enumerate(t.openai.project_ids):  # type: ignore[union-attr]
            sb.world.set_ai_usage(project, D1, [ModelUsage("gpt-4o-mini", 100 * i + j, i)])
            sb.world.set_ai_cost(project, D1, "0.01")
    result = run(sb, store, ts)
    assert result.exit_code == 0, result.failed
    # 60 projects, at most 100 a request: one request per endpoint (3 usage + costs) for the whole night.
    assert len(sb.openai.seen) == 4
    got = stored(store, "openai", "ai_tokens_in")
    assert {slug: got[(slug, D1)] for slug in ("t000", "t007", "t029")} == {
        "t000": 0 + 1, "t007": 700 + 701, "t029": 2900 + 2901,
    }  # fmt: skip
    assert got[("t007", D1 + timedelta(days=1))] == 0
    assert stored(store, "openai", "provider_cost_usd")[("t007", D1)] == Decimal("0.02")


def test_openai_batches_hold_at_most_the_documented_number_of_projects(sb: Sandbox, store: Store) -> None:
    n = openai.MAX_PROJECTS_PER_REQUEST
    ts = ai_tenants(n // 2 + 1, projects=2)  # n + 2 projects: two batches
    result = run(sb, store, ts)
    assert result.exit_code == 0, result.failed
    sizes = [len([v for k, v in s.query if k == "project_ids"]) for s in sb.openai.requests("/costs")]
    assert sorted(sizes) == [2, n]


def test_openai_one_bad_project_fails_only_its_tenant(sb: Sandbox, store: Store) -> None:
    ts = ai_tenants(8)
    ts[5] = TenantConfig(slug="bad", openai=TenantOpenAI(project_ids=["proj_bad"]))
    for t in ts:
        for project in t.openai.project_ids:  # type: ignore[union-attr]
            sb.world.set_ai_usage(project, D1, [ModelUsage("gpt-4o-mini", 7, 1)])
    sb.openai.fault("401", match="proj_bad", times=None)  # the API refuses any request naming it
    result = run(sb, store, ts)
    assert result.exit_code == 3
    assert [o.tenant for o in result.failed] == ["bad"] and "HTTP 401" in result.failed[0].errors[0]
    got = stored(store, "openai", "ai_tokens_in")
    assert {slug for slug, _ in got} == {t.slug for t in ts} - {"bad"}
    assert all(got[(t.slug, D1)] == 7 for t in ts if t.slug != "bad")
    # 8 tenants, halved until the bad one is alone: the good halves answer in one request set each.
    assert len(sb.openai.seen) <= 4 * 2 * 3 + 1


def test_sendgrid_asks_ten_names_a_request(sb: Sandbox, store: Store) -> None:
    subs = [TenantConfig(slug=f"s{i:02d}", sendgrid=TenantSendGrid(subuser=f"sub{i}")) for i in range(25)]
    cats = [TenantConfig(slug=f"c{i:02d}", sendgrid=TenantSendGrid(category=f"cat{i}")) for i in range(12)]
    for i in range(25):
        sb.world.set_email_stats("subuser", f"sub{i}", D1, requests=i)
    for i in range(12):
        sb.world.set_email_stats("category", f"cat{i}", D1, requests=100 + i)
    result = run(sb, store, [*subs, *cats])
    assert result.exit_code == 0, result.failed
    names = [[v for k, v in s.query if k in ("subusers", "categories")] for s in sb.sendgrid.seen]
    assert sorted(len(n) for n in names) == [2, 5, 10, 10, 10]
    assert max(len(n) for n in names) <= sendgrid.MAX_NAMES_PER_REQUEST
    got = stored(store, "sendgrid", "emails_sent")
    assert got[("s13", D1)] == 13 and got[("c07", D1)] == 107 and got[("s13", D1 + timedelta(days=1))] == 0
    assert len(got) == (25 + 12) * 3
