"""`usagectl directory sync` from each kind of source (a separate "platform" database, a paged JSON endpoint over
real HTTP, JSON/JSONL/CSV files), on SQLite and PostgreSQL: bad rows reported and skipped, dry runs that write
nothing (tables compared row for row), an unchanged source that writes nothing, tenants gone and numbers moved."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import create_engine, select, text

from conftest import send_json
from usagectl import config as cfgmod
from usagectl.directory import sync_directory
from usagectl.errors import ConfigError
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.reports import tenant_report
from usagectl.rollup import run_rollup
from usagectl.store.engine import Store, open_store
from usagectl.store.metrics import upsert_metric
from usagectl.store.tables import tenant_mappings, tenant_plans, tenants

SUB = "AC" + "1" * 32
DAY1 = date(2026, 11, 1)
DAY2 = date(2026, 11, 15)

ROWS: list[dict[str, Any]] = [
    {"slug": "acme", "name": "Acme", "plan": "starter", "phone_numbers": ["+15005550006", "+15005550007"]},
    {
        "slug": "globex",
        "name": "Globex",
        "plan": "pro",
        "twilio_subaccount_sid": SUB,
        "sendgrid_subuser": "globex",
    },
    {
        "slug": "initech",
        "plan": "elite",
        "openai_project_ids": ["proj_a", "proj_b"],
        "monthly_budget": "250.5",
    },
]


def _tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with store.engine.connect() as conn:
        for t in (tenants, tenant_plans, tenant_mappings):
            out[t.name] = [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))]
    return out


def _cfg(tmp_path: Path, body: str, extra: str = "") -> cfgmod.Config:
    p = tmp_path / "usagectl.toml"
    p.write_text(body + "\n" + extra, encoding="utf-8")
    return cfgmod.load(p)


def _write_file(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        path.write_text(json.dumps({"tenants": rows}), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        cols = ["slug", "name", "plan", "phone_numbers", "twilio_subaccount_sid", "sendgrid_subuser"]
        cols += ["openai_project_ids", "monthly_budget"]
        lines = [",".join(cols)]
        for r in rows:
            cells = []
            for c in cols:
                v = r.get(c, "")
                cells.append('"' + (",".join(v) if isinstance(v, list) else str(v)) + '"')
            lines.append(",".join(cells))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _mappings(store: Store) -> set[tuple[str, str, str, date, date | None]]:
    m, t = tenant_mappings.c, tenants.c
    with store.engine.connect() as conn:
        q = select(t.slug, m.kind, m.value, m.valid_from, m.valid_to).join(tenants, t.id == m.tenant_id)
        return {tuple(r) for r in conn.execute(q)}  # type: ignore[misc]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_file_sources_sync_the_same_directory(store: Store, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"tenants.{fmt}"
    _write_file(path, ROWS, fmt)
    cfg = _cfg(tmp_path, f'[directory]\nkind = "file"\npath = "{path}"')
    out = sync_directory(store, cfg, today=DAY1)
    assert out.bad == () and out.diff.added == ("acme", "globex", "initech")
    early = date(1, 1, 1)
    assert _mappings(store) == {
        ("acme", "phone_number", "+15005550006", early, None),
        ("acme", "phone_number", "+15005550007", early, None),
        ("globex", "twilio_subaccount", SUB, early, None),
        ("globex", "sendgrid_subuser", "globex", early, None),
        ("initech", "openai_project", "proj_a", early, None),
        ("initech", "openai_project", "proj_b", early, None),
    }
    with store.engine.connect() as conn:
        budget = conn.execute(
            select(tenants.c.monthly_budget_usd).where(tenants.c.slug == "initech")
        ).scalar_one()
    assert budget == Decimal("250.5")
    # A second sync of the same source writes nothing.
    before = _tables(store)
    again = sync_directory(store, cfg, today=DAY2)
    assert not again.diff.any and again.diff.rows_written == 0 and _tables(store) == before


def test_changes_dry_run_gone_and_a_number_that_moves(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    _write_file(path, ROWS, "json")
    cfg = _cfg(tmp_path, f'[directory]\nkind = "file"\npath = "{path}"')
    sync_directory(store, cfg, today=DAY1)
    with store.engine.begin() as conn:
        initech = conn.execute(select(tenants.c.id).where(tenants.c.slug == "initech")).scalar_one()
        upsert_metric(conn, initech, date(2026, 10, 5), "openai", MetricRow(ai_tokens_in=1000))
    run_rollup(store, cfg, Window.month(2026, 10), today=DAY1, seal_by_age=False)
    october = tenant_report(store, cfg, "initech", Window.month(2026, 10), today=DAY1)

    # acme upgrades and hands +15005550007 to globex (which leaves its subaccount for numbers); initech leaves.
    changed = [
        {"slug": "acme", "name": "Acme", "plan": "pro", "phone_numbers": ["+15005550006"]},
        {"slug": "globex", "name": "Globex Inc", "plan": "pro", "phone_numbers": ["+15005550007"],
         "sendgrid_subuser": "globex"},
    ]  # fmt: skip
    _write_file(path, changed, "json")
    before = _tables(store)
    dry = sync_directory(store, cfg, dry_run=True, today=DAY2)
    assert _tables(store) == before  # row for row
    assert dry.diff.gone == ("initech",) and dry.diff.added == ()
    shown = {(c.slug, c.field, c.old, c.new) for c in dry.diff.changed}
    assert shown == {
        ("acme", "plan", "starter", "pro"),
        ("acme", "phone_number", "+15005550006,+15005550007", "+15005550006"),
        ("globex", "name", "Globex", "Globex Inc"),
        ("globex", "phone_number", "-", "+15005550007"),
        ("globex", "twilio_subaccount", SUB, "-"),
    }
    real = sync_directory(store, cfg, today=DAY2)
    assert real.diff == dry.diff.__class__(
        dry.diff.added, dry.diff.changed, dry.diff.gone, real.diff.rows_written
    )
    maps = _mappings(store)
    early = date(1, 1, 1)
    assert ("acme", "phone_number", "+15005550007", early, DAY2) in maps
    assert ("globex", "phone_number", "+15005550007", DAY2, None) in maps
    assert ("globex", "twilio_subaccount", SUB, early, DAY2) in maps
    assert ("initech", "openai_project", "proj_a", early, DAY2) in maps
    p, t = tenant_plans.c, tenants.c
    with store.engine.connect() as conn:
        plans = conn.execute(
            select(p.plan_tier, p.valid_from, p.valid_to)
            .join(tenants, t.id == p.tenant_id)
            .where(t.slug == "acme")
        ).all()
        gone = conn.execute(select(t.active, t.inactive_from).where(t.slug == "initech")).one()
    assert sorted(tuple(r) for r in plans) == [("pro", DAY2, None), ("starter", early, DAY2)]
    assert tuple(gone) == (False, DAY2)
    # Gone, not deleted: its past month reports as before.
    again = tenant_report(store, cfg, "initech", Window.month(2026, 10), today=DAY2)
    assert (again.totals, again.plan_charge) == (october.totals, october.plan_charge)
    # And an unchanged source writes nothing, also for a tenant that is gone.
    assert sync_directory(store, cfg, today=date(2026, 11, 20)).diff.rows_written == 0


def test_bad_rows_are_reported_and_cost_no_good_row(
    store: Store, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    path = tmp_path / "t.jsonl"
    _write_file(path, ROWS[:2], "jsonl")
    cfg = _cfg(tmp_path, f'[directory]\nkind = "file"\npath = "{path}"')
    sync_directory(store, cfg, today=DAY1)
    rows = [
        {"slug": "acme", "plan": "gold"},  # unknown plan: acme keeps its state (not gone)
        {"slug": "globex", "plan": "pro", "twilio_subaccount_sid": "AC123"},  # malformed SID
        {"slug": "hooli", "plan": "pro", "phone_numbers": ["5550006"]},  # not E.164
        {"slug": "a1", "plan": "pro", "phone_numbers": ["+15005550009"]},
        {"slug": "a2", "plan": "pro", "phone_numbers": ["+15005550009"]},  # held by two active tenants
        {"slug": "dup", "plan": "pro"},
        {"slug": "dup", "plan": "starter"},  # duplicate slug
        {"slug": "good", "plan": "elite", "phone_numbers": ["+15005550010"]},
    ]
    _write_file(path, rows, "jsonl")
    out = sync_directory(store, cfg, today=DAY2)
    reasons = [str(b) for b in out.bad]
    assert reasons == [
        "row 1 (acme): unknown plan 'gold' (one of starter, pro, elite)",
        "row 2 (globex): twilio_subaccount_sid 'AC123' is not a Twilio account SID (AC + 32 hex digits)",
        "row 3 (hooli): phone number '5550006' is not in E.164 form (+15551234567)",
        "row 7 (dup): duplicate slug 'dup' (also row 6)",
        "row 4 (a1): phone_number +15005550009 is also held by a2",
        "row 5 (a2): phone_number +15005550009 is also held by a1",
    ]
    assert out.diff.added == ("good",) and out.diff.gone == () and out.diff.changed == ()
    with store.engine.connect() as conn:
        slugs = {s: a for s, a in conn.execute(select(tenants.c.slug, tenants.c.active))}
    assert slugs == {"acme": True, "globex": True, "good": True}
    # Through the CLI: the same lines, exit 3.
    cfg_path = tmp_path / "usagectl.toml"
    cfg_path.write_text(
        f'[database]\nurl = "{store.engine.url.render_as_string(hide_password=False)}"\n'
        f'[directory]\nkind = "file"\npath = "{path}"\n',
        encoding="utf-8",
    )
    res = cli("-c", str(cfg_path), "directory", "sync", "--dry-run")
    assert (
        res.code == 3 and "row 1 (acme): unknown plan 'gold'" in res.err and "6 bad rows skipped" in res.err
    )


def test_a_slug_in_the_toml_and_the_directory_is_a_config_error(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    _write_file(path, ROWS, "json")
    cfg = _cfg(tmp_path, f'[directory]\nkind = "file"\npath = "{path}"', '[[tenants]]\nslug = "acme"\n')
    with pytest.raises(ConfigError, match="'acme' is both in \\[\\[tenants\\]\\] and in the directory"):
        sync_directory(store, cfg, today=DAY1)
    # The other way round: a directory tenant that then appears in the TOML.
    from usagectl.store.tenants import sync_tenants

    sync_directory(store, _cfg(tmp_path, f'[directory]\nkind = "file"\npath = "{path}"'), today=DAY1)
    with pytest.raises(ConfigError, match="'acme' is both"):
        sync_tenants(store, cfg.tenants, today=DAY2)


def test_sql_source_is_a_separate_platform_database(store: Store, tmp_path: Path) -> None:
    platform = tmp_path / "platform.db"
    eng = create_engine(f"sqlite:///{platform}")
    with eng.begin() as conn:
        conn.execute(
            text("CREATE TABLE accounts (handle TEXT, title TEXT, tier TEXT, numbers TEXT, live INTEGER)")
        )
        conn.execute(
            text("INSERT INTO accounts VALUES (:h, :t, :tier, :n, :live)"),
            [
                {"h": "acme", "t": "Acme", "tier": "starter", "n": "+15005550006;+15005550007", "live": 1},
                {"h": "globex", "t": "Globex", "tier": "pro", "n": "", "live": 1},
                {"h": "hooli", "t": "Hooli", "tier": "pro", "n": None, "live": 0},
            ],
        )
    eng.dispose()
    cfg = _cfg(
        tmp_path,
        f'[directory]\nkind = "sql"\nurl = "sqlite:///{platform}"\nlist_separator = ";"\n'
        'query = "SELECT handle, title, tier, numbers, live FROM accounts"\n'
        '[directory.columns]\nslug = "handle"\nname = "title"\nplan = "tier"\nphone_numbers = "numbers"\n'
        'active = "live"\n',
    )
    out = sync_directory(store, cfg, today=DAY1)
    assert out.bad == () and out.diff.added == ("acme", "globex") and out.rows == 3
    assert {(s, v) for s, k, v, _, _ in _mappings(store)} == {
        ("acme", "+15005550006"),
        ("acme", "+15005550007"),
    }
    assert sync_directory(store, cfg, today=DAY2).diff.rows_written == 0


def test_sql_source_refuses_a_password_in_its_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password_env or password_file") as err:
        _cfg(tmp_path, '[directory]\nkind = "sql"\nurl = "postgresql://u:secret@h/db"\nquery = "SELECT 1"')
    assert "secret" not in str(err.value)


class _Platform(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, dict[str, Any]]] = {}
    token = "s3cret-token"

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._send(401, {"error": "unauthorized"})
            return
        page = self.pages.get(self.path)
        self._send(200 if page is not None else 404, page or {"error": "no such page"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        send_json(self, status, body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def platform() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Platform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Platform.pages = {
        "/tenants": {"tenants": ROWS[:2], "next": f"{base}/tenants?page=2"},
        "/tenants?page=2": {"tenants": ROWS[2:], "next": None},
    }
    yield base
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_source_is_paged_with_a_bearer_token(
    store: Store, tmp_path: Path, platform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_TOKEN", _Platform.token)
    cfg = _cfg(
        tmp_path, f'[directory]\nkind = "http"\nurl = "{platform}/tenants"\ntoken_env = "PLATFORM_TOKEN"'
    )
    out = sync_directory(store, cfg, today=DAY1)
    assert out.bad == () and out.diff.added == ("acme", "globex", "initech") and out.rows == 3
    assert sync_directory(store, cfg, today=DAY2).diff.rows_written == 0
    # A wrong token: the source cannot be read, nothing is written, and the token is never echoed.
    monkeypatch.setenv("PLATFORM_TOKEN", "wrong-token")
    before = _tables(store)
    from usagectl.directory import DirectorySourceError

    with pytest.raises(DirectorySourceError, match="HTTP 401") as err:
        sync_directory(store, cfg, today=DAY2)
    assert "wrong-token" not in str(err.value) and _tables(store) == before


def test_directory_tenants_are_read_back_by_a_fresh_store(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    _write_file(path, ROWS, "json")
    cfg = _cfg(tmp_path, f'[directory]\nkind = "file"\npath = "{path}"')
    s = open_store(db_url)
    try:
        sync_directory(s, cfg, today=DAY1)
        # Commands with a TOML of no [[tenants]] leave the directory's tenants alone (not gone).
        from usagectl.store.tenants import sync_tenants

        assert sync_tenants(s, [], today=DAY2).deactivated == ()
    finally:
        s.close()


def test_a_directory_tenants_budget_fires_its_alert(store: Store, tmp_path: Path) -> None:
    from usagectl.alerts import run_alerts

    path = tmp_path / "t.json"
    _write_file(path, [{"slug": "acme", "plan": "starter", "monthly_budget": "1"}], "json")
    cfg = _cfg(tmp_path, f'[directory]\nkind = "file"\npath = "{path}"')
    sync_directory(store, cfg, today=DAY1)
    with store.engine.begin() as conn:
        acme = conn.execute(select(tenants.c.id).where(tenants.c.slug == "acme")).scalar_one()
        upsert_metric(
            conn, acme, DAY1, "twilio", MetricRow(sms_outbound_count=100)
        )  # $1.40 at the book's price
    run_rollup(store, cfg, Window.day(DAY1), today=DAY2, seal_by_age=False)
    out = run_alerts(store, cfg, month=Window.month(2026, 11), dry_run=True, today=DAY2)
    assert {(a.tenant, a.meter) for a in out.fired} == {("acme", "budget")}


@pytest.mark.postgres
def test_sql_source_on_postgresql_with_an_array_column_and_a_password_from_the_environment(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from conftest import PgSchema, pg_base_url

    platform = PgSchema(pg_base_url(), f"platform_{uuid.uuid4().hex[:10]}")
    platform.create()
    try:
        eng = create_engine(platform.url.replace("postgresql://", "postgresql+psycopg://", 1))
        with eng.begin() as conn:
            conn.execute(text("CREATE TABLE accounts (slug text, tier text, numbers text[], project text)"))
            conn.execute(
                text(
                    "INSERT INTO accounts VALUES ('acme', 'pro', ARRAY['+15005550006','+15005550007'], 'proj_1')"
                )
            )
        eng.dispose()
        monkeypatch.setenv("PLATFORM_DB_PASSWORD", "not-checked-by-trust-auth")
        cfg = _cfg(
            tmp_path,
            f'[directory]\nkind = "sql"\nurl = "{platform.url}"\npassword_env = "PLATFORM_DB_PASSWORD"\n'
            'query = "SELECT slug, tier AS plan, numbers AS phone_numbers, project AS openai_project_ids '
            'FROM accounts"\n',
        )
        out = sync_directory(store, cfg, today=DAY1)
        assert out.bad == () and out.diff.added == ("acme",)
        assert {(k, v) for _, k, v, _, _ in _mappings(store)} == {
            ("phone_number", "+15005550006"),
            ("phone_number", "+15005550007"),
            ("openai_project", "proj_1"),
        }
    finally:
        platform.drop()
