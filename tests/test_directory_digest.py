"""An unchanged directory source skips validation and the diff (directory_digests), on SQLite and PostgreSQL:
it writes nothing, a changed row after a skipped run is still applied, and a run with bad rows, a dry run, a plan
recorded by hand or a [[tenants]] slug added since make the next sync a full one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from test_directory_sync import DAY1, DAY2, ROWS
from usagectl import config as cfgmod
from usagectl import directory as dirmod
from usagectl.directory import sync_directory
from usagectl.errors import ConfigError
from usagectl.store.directory import record_plan
from usagectl.store.engine import Store
from usagectl.store.tables import directory_digests, tenant_mappings, tenant_plans, tenants

DAY3 = DAY2.replace(day=20)


def _tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with store.engine.connect() as conn:
        for t in (tenants, tenant_plans, tenant_mappings, directory_digests):
            out[t.name] = [tuple(r) for r in conn.execute(select(t))]
    return out


def _setup(tmp_path: Path, rows: list[dict[str, Any]], extra: str = "") -> tuple[Path, cfgmod.Config]:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"tenants": rows}), encoding="utf-8")
    cfg_path = tmp_path / "usagectl.toml"
    cfg_path.write_text(f'[directory]\nkind = "file"\npath = "{path}"\n{extra}', encoding="utf-8")
    return path, cfgmod.load(cfg_path)


def _no_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> Any:
        raise AssertionError("validated")

    monkeypatch.setattr(dirmod, "validate", refuse)


def _digests(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(directory_digests.c.digest)).scalars())


def test_an_unchanged_second_sync_skips_and_writes_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cfg = _setup(tmp_path, ROWS)
    first = sync_directory(store, cfg, today=DAY1)
    assert not first.unchanged and first.diff.added == ("acme", "globex", "initech")
    assert len(_digests(store)) == 1
    before = _tables(store)
    with monkeypatch.context() as m:
        _no_validation(m)
        again = sync_directory(store, cfg, today=DAY2)
        dry = sync_directory(store, cfg, today=DAY2, dry_run=True)
    assert again.unchanged and dry.unchanged and again.rows == 3
    assert not again.diff.any and again.diff.rows_written == 0 and again.bad == ()
    assert _tables(store) == before


def test_a_changed_row_after_a_skipped_run_is_applied(store: Store, tmp_path: Path) -> None:
    path, cfg = _setup(tmp_path, ROWS)
    sync_directory(store, cfg, today=DAY1)
    assert sync_directory(store, cfg, today=DAY2).unchanged
    changed = [dict(ROWS[0], name="Acme Corp", plan="pro"), *ROWS[1:]]
    path.write_text(json.dumps({"tenants": changed}), encoding="utf-8")
    dry = sync_directory(store, cfg, today=DAY2, dry_run=True)
    assert not dry.unchanged and dry.diff.changed_slugs == ("acme",)
    out = sync_directory(store, cfg, today=DAY2)
    assert not out.unchanged and {c.field for c in out.diff.changed} == {"name", "plan"}
    with store.engine.connect() as conn:
        row = conn.execute(select(tenants.c.name, tenants.c.plan_tier).where(tenants.c.slug == "acme")).one()
    assert tuple(row) == ("Acme Corp", "pro")
    assert sync_directory(store, cfg, today=DAY3).unchanged


def test_a_run_with_bad_rows_records_no_digest(store: Store, tmp_path: Path) -> None:
    path, cfg = _setup(tmp_path, ROWS)
    sync_directory(store, cfg, today=DAY1)
    assert _digests(store)
    bad = [*ROWS, {"slug": "hooli", "plan": "gold"}]
    path.write_text(json.dumps({"tenants": bad}), encoding="utf-8")
    out = sync_directory(store, cfg, today=DAY2)
    assert not out.unchanged and len(out.bad) == 1 and _digests(store) == []
    # The same bad source again: validated again, the bad row reported again.
    again = sync_directory(store, cfg, today=DAY2)
    assert not again.unchanged and [str(b) for b in again.bad] == [str(b) for b in out.bad]
    assert _digests(store) == []


def test_a_dry_run_records_no_digest(store: Store, tmp_path: Path) -> None:
    _, cfg = _setup(tmp_path, ROWS)
    out = sync_directory(store, cfg, today=DAY1, dry_run=True)
    assert out.diff.added and _digests(store) == []
    assert not sync_directory(store, cfg, today=DAY1).unchanged


def test_a_plan_by_hand_or_a_toml_slug_makes_the_next_sync_a_full_one(
    store: Store, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    _, cfg = _setup(tmp_path, ROWS)
    sync_directory(store, cfg, today=DAY1)
    with store.engine.begin() as conn:
        acme = conn.execute(select(tenants.c.id).where(tenants.c.slug == "acme")).scalar_one()
        record_plan(conn, acme, "elite", DAY2, "manual")
    out = sync_directory(store, cfg, today=DAY2)
    assert not out.unchanged and not out.diff.any and out.diff.rows_written == 0
    assert sync_directory(store, cfg, today=DAY2).unchanged
    # A [[tenants]] entry with a directory slug is still refused, though the source did not change.
    _, both = _setup(tmp_path, ROWS, '[[tenants]]\nslug = "acme"\n')
    with pytest.raises(ConfigError, match="'acme' is both"):
        sync_directory(store, both, today=DAY3)
    # Through the CLI: the dry run says so.
    cfg_path = tmp_path / "usagectl.toml"
    url = store.engine.url.render_as_string(hide_password=False)
    cfg_path.write_text(
        f'[database]\nurl = "{url}"\n[directory]\nkind = "file"\npath = "{tmp_path / "t.json"}"\n',
        encoding="utf-8",
    )
    res = cli("-c", str(cfg_path), "directory", "sync", "--dry-run")
    assert res.code == 0 and "3 rows unchanged since the last sync" in res.err + res.out


def test_an_edit_by_hand_in_sql_makes_the_next_sync_a_full_one(store: Store, tmp_path: Path) -> None:
    """Dates and holders of mappings and plan periods edited outside usagectl (plain SQL): the table-state part
    of the digest moves, so the next sync validates and diffs again instead of trusting the recorded digest."""
    _, cfg = _setup(tmp_path, ROWS)
    sync_directory(store, cfg, today=DAY1)
    assert sync_directory(store, cfg, today=DAY2).unchanged

    def edit(sql: str) -> None:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql)

    # A mapping re-dated: the sync has nothing to correct (the source does not say when), but it must look.
    edit("UPDATE tenant_mappings SET valid_from = '2026-11-05' WHERE value = '+15005550006'")
    out = sync_directory(store, cfg, today=DAY2)
    assert not out.unchanged and out.diff.rows_written == 0
    with store.engine.connect() as conn:
        start = conn.execute(
            select(tenant_mappings.c.valid_from).where(tenant_mappings.c.value == "+15005550006")
        ).scalar_one()
    assert str(start) == "2026-11-05"
    assert sync_directory(store, cfg, today=DAY2).unchanged
    # A plan period closed by hand, then a mapping moved to another tenant by hand: full syncs, and the moved
    # number goes back to the tenant the source names.
    edit("UPDATE tenant_plans SET valid_to = '2026-11-30' WHERE id = (SELECT min(id) FROM tenant_plans)")
    assert not sync_directory(store, cfg, today=DAY2).unchanged
    assert sync_directory(store, cfg, today=DAY2).unchanged
    edit(
        "UPDATE tenant_mappings SET tenant_id = (SELECT id FROM tenants WHERE slug = 'globex') "
        "WHERE value = '+15005550007'"
    )
    out = sync_directory(store, cfg, today=DAY3)
    assert not out.unchanged and out.diff.changed_slugs == ("acme", "globex")
    with store.engine.connect() as conn:
        holder = conn.execute(
            select(tenants.c.slug)
            .select_from(tenant_mappings.join(tenants, tenants.c.id == tenant_mappings.c.tenant_id))
            .where(tenant_mappings.c.value == "+15005550007", tenant_mappings.c.valid_to.is_(None))
        ).scalar_one()
    assert holder == "acme"
    assert sync_directory(store, cfg, today=DAY3).unchanged


def test_a_sql_source_is_only_hashed_when_unchanged_and_read_again_when_it_changed(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    platform = tmp_path / "platform.db"
    con = sqlite3.connect(platform)
    con.execute("CREATE TABLE t (slug TEXT, name TEXT, plan TEXT, phone_numbers TEXT)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        [("acme", "Acme", "starter", "+15005550006"), ("globex", "Globex", "pro", "+15005550007")],
    )
    con.commit()
    cfg = cfgmod.parse(
        {
            "directory": {
                "kind": "sql",
                "url": f"sqlite:///{platform}",
                "query": "SELECT * FROM t ORDER BY slug",
            }
        }
    )
    reads: list[bool] = []
    real = dirmod._read

    def counted(*a: Any, **k: Any) -> Any:
        reads.append(k["keep"])
        return real(*a, **k)

    monkeypatch.setattr(dirmod, "_read", counted)
    first = sync_directory(store, cfg, today=DAY1)
    assert first.diff.added == ("acme", "globex") and reads == [True]  # nothing recorded yet: read once, kept
    reads.clear()
    again = sync_directory(store, cfg, today=DAY2)
    assert again.unchanged and again.rows == 2 and reads == [False]  # hashed only
    con.execute("UPDATE t SET plan = 'elite' WHERE slug = 'globex'")
    con.commit()
    reads.clear()
    changed = sync_directory(store, cfg, today=DAY2)
    assert reads == [False, True] and not changed.unchanged  # hashed, differed, read again to validate
    assert [(c.slug, c.field, c.new) for c in changed.diff.changed] == [("globex", "plan", "elite")]
    reads.clear()
    assert sync_directory(store, cfg, today=DAY3).unchanged and reads == [False]
    con.close()
