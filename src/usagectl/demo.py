"""`usagectl demo`: the real collect -> rollup -> report pipeline against the built-in sandbox providers.

No config, no credentials, no network: the sandbox servers listen on 127.0.0.1 and the database is a temporary
SQLite file (kept only with --keep). Prices and plan tiers (overrides, allowances) are those of the starter config,
config.example.toml, so the report shows what a configured deployment shows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from usagectl.collector import CollectResult, collect
from usagectl.config import Config, DatabaseConfig, TenantConfig, parse
from usagectl.config_files import starter_config_text
from usagectl.periods import Window, utc_today
from usagectl.providers.registry import HTTP_SOURCES, open_providers
from usagectl.reports import TenantReport, TenantsReport, tenant_report, tenants_report
from usagectl.rollup import RollupResult, run_rollup
from usagectl.store.engine import open_store
from usagectl.store.tenants import sync_tenants

if TYPE_CHECKING:
    from usagectl.sandbox import Sandbox

DEMO_DAYS = 45


@dataclass(frozen=True)
class DemoResult:
    database: Path
    collected: CollectResult
    rolled_up: RollupResult
    ranking: TenantsReport
    report: TenantReport


def example_pricing() -> dict[str, object]:
    """The price books and plan tiers of config.example.toml, validated, as Config fields."""
    import tomllib

    data = tomllib.loads(starter_config_text())
    cfg = parse({k: data[k] for k in ("pricing", "plans") if k in data}, "config.example.toml")
    return {"pricing": cfg.pricing, "plans": cfg.plans}


@contextmanager
def _database_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="usagectl-demo-") as tmp:
        yield Path(tmp)


def run_demo(
    *,
    days: int = DEMO_DAYS,
    keep: Path | None = None,
    today: date | None = None,
    step: Callable[[str], None] = lambda _msg: None,
    then: Callable[[DemoResult, Config], None] | None = None,
) -> DemoResult:
    """Collect, roll up and report `days` days of sandbox usage. `then(result, config)` runs while the demo's
    database still exists (`demo --serve` serves it), after the sandbox providers have stopped."""
    from usagectl.sandbox import Sandbox, demo_tenants

    end = today or utc_today()
    window = Window(end - timedelta(days=days), end)
    tenants = demo_tenants()
    with _database_dir(keep) as folder:
        with Sandbox() as sandbox:
            # The last day's final seconds still in flight (a message sending, a call ringing): a provisional day.
            sandbox.world.in_flight_day = window.last
            result, cfg = _pipeline(sandbox, tenants, folder, window, days, end, step)
        if then is not None:
            then(result, cfg)
        return result


def _pipeline(
    sandbox: Sandbox,
    tenants: list[TenantConfig],
    folder: Path,
    window: Window,
    days: int,
    end: date,
    step: Callable[[str], None],
) -> tuple[DemoResult, Config]:
    db = (folder / "usage.db").resolve()
    sandbox_cfg = sandbox.config(tenants)
    url = f"sqlite:///{db}"
    cfg: Config = sandbox_cfg.model_copy(update={"database": DatabaseConfig(url=url), **example_pricing()})
    # The demo's own file, never cfg.database_url(): that prefers $USAGECTL_DATABASE_URL, and the demo must
    # not write sample tenants and usage into a real database.
    store = open_store(url)
    try:
        sync_tenants(store, cfg.tenants)
        step(f"collecting {len(tenants)} tenants x {days} days from the sandbox providers over HTTP")
        with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
            collected = collect(store, cfg, providers, window)
        step(f"rolling up {window.label()}")
        rolled = run_rollup(store, cfg, window)
        # The month of the last complete day, so the ranking is never an empty first-of-the-month.
        month = Window.month(window.last.year, window.last.month)
        ranking = tenants_report(store, month, cfg=cfg, today=end)
        top = ranking.lines[0].slug if ranking.lines else tenants[0].slug
        report = tenant_report(store, cfg, top, Window.last_days(30, end), today=end)
    finally:
        store.close()
    return DemoResult(db, collected, rolled, ranking, report), cfg


def demo_tokens(cfg: Config, tenant: str) -> tuple[str, str]:
    """A root token and one tenant's token on the demo database (for `demo --serve`'s sign-in)."""
    from usagectl.store.tokens import create_token

    store = open_store(cfg.database.url or "")
    try:
        root, _ = create_token(store, tenant=None, name="demo root")
        own, _ = create_token(store, tenant=tenant, name="demo tenant")
    finally:
        store.close()
    return root, own
