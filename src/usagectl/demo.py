"""`usagectl demo`: the real collect -> rollup -> report pipeline against the built-in sandbox providers.

No config, no credentials, no network: the sandbox servers listen on 127.0.0.1 and the database is a temporary
SQLite file (kept only with --keep). Prices and plan tiers (overrides, allowances) are those of the starter config,
config.example.toml, so the report shows what a configured deployment shows.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from usagectl.collector import CollectResult, collect, with_directory
from usagectl.config import Config, DatabaseConfig, DirectoryConfig, TenantConfig, parse
from usagectl.config_files import starter_config_text
from usagectl.directory import sync_directory
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
    # The tenant the directory upgraded mid-month (its plan charge in parts), and what the directory changed.
    upgraded: TenantReport
    directory_changes: tuple[str, ...]


UPGRADED = "initech"  # starter -> pro mid-month, in the demo's directory file
MOVED = "+15005550010"  # initech's second number, given to hooli on the same day
MIN_PART_DAYS = 4  # the fewest days each side of the demo's plan change


def _previous(day: date) -> tuple[int, int]:
    """The year and month before `day`'s."""
    return (day.year - 1, 12) if day.month == 1 else (day.year, day.month - 1)


def _directory_rows(tenants: list[TenantConfig], *, after: bool) -> list[dict[str, object]]:
    """The demo's directory file (what a platform exports), before and after the mid-month sync: initech
    upgrades to pro and hands one of its numbers to a new tenant, hooli. globex (its own Twilio account and
    token) stays in [[tenants]], so the demo runs on both sources of tenants."""
    rows: list[dict[str, object]] = []
    for t in tenants:
        if t.slug == "globex":
            continue
        row: dict[str, object] = {"slug": t.slug, "name": t.display_name, "plan": t.plan}
        if t.twilio is not None and t.twilio.subaccount_sid:
            row["twilio_subaccount_sid"] = t.twilio.subaccount_sid
        if t.twilio is not None and t.twilio.phone_numbers:
            numbers = list(t.twilio.phone_numbers)
            row["phone_numbers"] = [n for n in numbers if n != MOVED] if after else numbers
        if t.sendgrid is not None:
            row["sendgrid_subuser" if t.sendgrid.subuser else "sendgrid_category"] = (
                t.sendgrid.subuser or t.sendgrid.category
            )
        if t.openai is not None:
            row["openai_project_ids"] = list(t.openai.project_ids)
        if after and t.slug == UPGRADED:
            row["plan"] = "pro"
        rows.append(row)
    if after:
        rows.append({"slug": "hooli", "name": "Hooli Bakery", "plan": "starter", "phone_numbers": [MOVED]})
    return rows


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
    directory_file = (folder / "directory.json").resolve()
    cfg: Config = sandbox_cfg.model_copy(
        update={
            "database": DatabaseConfig(url=url),
            "tenants": [t for t in sandbox_cfg.tenants if t.slug == "globex"],
            "directory": DirectoryConfig(kind="file", path=directory_file),
            **example_pricing(),
        }
    )
    # The month of the last complete day, so the ranking is never an empty first-of-the-month. The directory
    # changes in the middle of that month so far, or, early in a month (fewer than MIN_PART_DAYS days on each
    # side), in the middle of the month before: either way both plan parts have several days.
    month = Window.month(window.last.year, window.last.month)
    if window.last.day >= 2 * MIN_PART_DAYS:
        change_month = month
        change = month.start + timedelta(days=window.last.day // 2)
    else:
        change_month = Window.month(*_previous(month.start))
        change = change_month.start + timedelta(days=change_month.days // 2)
    # The demo's own file, never cfg.database_url(): that prefers $USAGECTL_DATABASE_URL, and the demo must
    # not write sample tenants and usage into a real database.
    store = open_store(url)
    try:
        first = min(window.start, change_month.start)
        sync_tenants(store, cfg.tenants, today=first)
        directory_file.write_text(
            json.dumps(_directory_rows(tenants, after=False), indent=1), encoding="utf-8"
        )
        sync_directory(store, cfg, today=first)
        directory_file.write_text(
            json.dumps(_directory_rows(tenants, after=True), indent=1), encoding="utf-8"
        )
        synced = sync_directory(store, cfg, today=change).diff
        changes = tuple(
            [f"{change}: {slug} added" for slug in synced.added]
            + [f"{change}: {c.slug} {c.field} {c.old} -> {c.new}" for c in synced.changed]
        )
        run_cfg = with_directory(store, cfg, window)
        step(f"collecting {len(run_cfg.tenants)} tenants x {days} days from the sandbox providers over HTTP")
        with open_providers(run_cfg, store, only=HTTP_SOURCES) as providers:
            collected = collect(store, run_cfg, providers, window)
        step(f"rolling up {window.label()}")
        rolled = run_rollup(store, cfg, window)
        ranking = tenants_report(store, month, cfg=cfg, today=end)
        top = ranking.lines[0].slug if ranking.lines else tenants[0].slug
        report = tenant_report(store, cfg, top, Window.last_days(30, end), today=end)
        # The upgraded tenant over the month of its upgrade: its plan charge in two parts.
        upgraded = tenant_report(
            store,
            cfg,
            UPGRADED,
            Window.last_days(30, end) if change_month == month else change_month,
            today=end,
        )
    finally:
        store.close()
    return DemoResult(db, collected, rolled, ranking, report, upgraded, changes), cfg


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
