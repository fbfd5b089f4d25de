"""Start-up: several processes on one new database at once, concurrent ingests, a closed stdout pipe, a database
directory that does not exist (issue 11, items 5 and 11)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from usagectl import config as cfgmod
from usagectl.events import ingest
from usagectl.store import engine as eng
from usagectl.store.engine import open_store
from usagectl.store.tables import SCHEMA_HEAD, tenants, usage_events
from usagectl.store.tenants import sync_tenants

PROCESSES = 8
TENANTS = ("acme", "globex", "initech")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all: a SQLite file not created yet, or an empty PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
    else:
        yield request.getfixturevalue("pg_schema").url


def _config(write_config: Callable[..., Path], url: str) -> Path:
    body = "".join(f'\n[[tenants]]\nslug = "{slug}"\n' for slug in TENANTS)
    return write_config(f'[database]\nurl = "{url}"\n{body}')


# Each process imports the heavy modules, then waits at a file barrier until all are ready, so their first use of
# the database really is at the same moment (process start-up alone staggers them by a second or more), then runs
# the real entry point with its arguments.
_RACER = """
import os, sys, time
import alembic.command, sqlalchemy, usagectl.cli.main as cli, usagectl.events, usagectl.store.engine
barrier, n = sys.argv[1], int(sys.argv[2])
open(os.path.join(barrier, str(os.getpid())), "w").close()
while len(os.listdir(barrier)) < n:
    time.sleep(0.005)
sys.argv = ["usagectl", *sys.argv[3:]]
cli.entry()
"""


def _at_once(barrier: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run every command at the same moment, racing for the same database."""
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(barrier), str(len(commands)), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for cmd in commands
    ]
    done = []
    for cmd, p in zip(commands, procs, strict=True):
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(cmd, p.returncode, out.decode(), err.decode()))
    return done


@pytest.mark.slow
def test_processes_starting_together_on_a_new_database_all_succeed(
    new_db_url: str, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = _config(write_config, new_db_url)
    if not new_db_url.startswith("sqlite"):
        # PostgreSQL is only migrated by `db upgrade`: eight at once, one migrates, the others wait.
        for r in _at_once(tmp_path / "upgrade", *[["-c", str(cfg), "db", "upgrade"]] * PROCESSES):
            assert r.returncode == 0, r.stderr
    # SQLite: the first use migrates the new file; everywhere: the first use adds the config's tenants.
    for r in _at_once(tmp_path / "first-use", *[["-c", str(cfg), "tenants", "-f", "csv"]] * PROCESSES):
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    store = open_store(new_db_url)
    try:
        assert eng.current_revision(store.engine) == SCHEMA_HEAD
        with store.engine.connect() as conn:
            assert sorted(conn.execute(select(tenants.c.slug)).scalars()) == list(TENANTS)
    finally:
        store.close()


@pytest.mark.slow
def test_concurrent_first_tenant_sync_adds_each_tenant_once(
    db_url: str, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # A migrated database with no tenants yet: every process finds the config's tenants missing and adds them.
    cfg = _config(write_config, db_url)
    for r in _at_once(tmp_path / "sync", *[["-c", str(cfg), "tenants", "-f", "csv"]] * PROCESSES):
        assert r.returncode == 0, r.stderr
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            assert sorted(conn.execute(select(tenants.c.slug)).scalars()) == list(TENANTS)
    finally:
        store.close()


def _inserted(summary: str) -> int:
    m = re.search(r"inserted ([\d,]+)", summary)
    assert m is not None, summary
    return int(m[1].replace(",", ""))


@pytest.mark.slow
def test_concurrent_ingests_of_the_same_events_in_different_orders(
    db_url: str, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = _config(write_config, db_url)
    store = open_store(db_url)
    sync_tenants(store, cfgmod.load(cfg).tenants)
    events = [
        json.dumps(
            {
                "id": f"evt-{i}",
                "source": f"worker-{i % 3}",
                "subject": TENANTS[i % 3],
                "type": "jobs_executed",
                "time": "2026-11-24T10:00:00Z",
                "data": {"value": 1},
            }
        )
        for i in range(3_000)
    ]
    files = []
    for seed in range(PROCESSES):
        random.Random(seed).shuffle(events)
        files.append(tmp_path / f"events-{seed}.jsonl")
        files[-1].write_text("".join(f"{e}\n" for e in events), encoding="utf-8")
    results = _at_once(tmp_path / "barrier", *[["-c", str(cfg), "ingest", str(f)] for f in files])
    for r in results:
        assert r.returncode == 0, r.stderr
    inserted = sum(_inserted(r.stderr) for r in results)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(usage_events)).scalar_one() == 3_000
    finally:
        store.close()
    assert inserted == 3_000


def test_a_closed_stdout_pipe_ends_quietly_with_0(write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = _config(write_config, f"sqlite:///{tmp_path / 'usage.db'}")
    # `usagectl tenants | head -1` once head has exited: the reading end of stdout is closed.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "usagectl", "-c", str(cfg), "tenants"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (p.returncode, p.stderr) == (0, "")


def test_a_database_directory_that_does_not_exist_is_not_created(
    cli: Callable[..., Any], tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USAGECTL_DATABASE_URL", "sqlite:///missing-dir/x.db")
    r = cli("tenants")
    assert r.code == 2
    assert r.err.strip() == (
        "usagectl: error: database URL 'sqlite:///missing-dir/x.db': "
        "the directory 'missing-dir' does not exist (create it first)"
    )
    assert not (tmp_path / "missing-dir").exists()
    # The default database in the data dir still works from nothing: that folder is created on first use.
    monkeypatch.delenv("USAGECTL_DATABASE_URL")
    assert not isolated_env.exists()
    r = cli("tenants", "-f", "csv")
    assert r.code == 0, r.err
    assert (isolated_env / "usage.db").is_file()


def test_concurrent_strict_and_plain_ingests_of_many_batches(
    db_url: str, write_config: Callable[..., Path]
) -> None:
    """--strict keeps every batch until one commit: sorting each batch alone would not stop it deadlocking with
    another run on PostgreSQL. Threads, each with its own connection, on small batches."""
    cfg = cfgmod.load(_config(write_config, db_url))
    store = open_store(db_url)
    sync_tenants(store, cfg.tenants)
    lines = [
        json.dumps(
            {
                "id": f"evt-{i}",
                "source": "w",
                "subject": "acme",
                "type": "jobs_executed",
                "time": "2026-11-24T10:00:00Z",
                "data": {"value": 1},
            }
        )
        for i in range(600)
    ]
    orders = []
    for seed in range(PROCESSES):
        random.Random(seed).shuffle(lines)
        orders.append(list(lines))
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            ingest(store, cfg, orders[i], name=str(i), strict=i % 2 == 0, batch_rows=50)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(PROCESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(usage_events)).scalar_one() == 600
    finally:
        store.close()
    assert errors == []


def test_a_process_arriving_mid_migration_waits_for_it(new_db_url: str) -> None:
    """Each revision is recorded as it completes, so a process starting while another migrates can read an older
    revision than head: it must wait for the migration, not report the schema as behind (seen with 8 processes)."""
    first = eng.make_engine(new_db_url)
    try:
        eng.upgrade(first, "0003_provider_accuracy")
        holding, release = threading.Event(), threading.Event()

        def migrating() -> None:
            with eng.migration_lock(first):
                holding.set()
                release.wait(30)
                eng._alembic_upgrade(first)

        worker = threading.Thread(target=migrating)
        worker.start()
        assert holding.wait(30)
        opened: list[str] = []

        def arriving() -> None:
            store = open_store(new_db_url)
            opened.append(eng.current_revision(store.engine) or "")
            store.close()

        late = threading.Thread(target=arriving)
        late.start()
        late.join(0.5)
        assert late.is_alive() and not opened  # waiting for the migration, not failing
        release.set()
        worker.join(60)
        late.join(60)
        assert opened == [SCHEMA_HEAD]
    finally:
        first.dispose()
