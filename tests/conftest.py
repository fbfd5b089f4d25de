"""Shared fixtures.

Every test runs with its own data dir and no user config. Storage tests take `db_url`, which runs them on SQLite
and, when USAGECTL_TEST_DATABASE_URL is set, on PostgreSQL too, each PostgreSQL test in a schema of its own that
is dropped afterwards. With USAGECTL_REQUIRE_POSTGRES=1 (CI) a missing PostgreSQL fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

PG_ENV = "USAGECTL_TEST_DATABASE_URL"
REQUIRE_PG = os.environ.get("USAGECTL_REQUIRE_POSTGRES") == "1"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("USAGECTL_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for var in ("USAGECTL_CONFIG", "USAGECTL_DATABASE_URL", "NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    return data


def pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if REQUIRE_PG:
            pytest.fail(f"{PG_ENV} is not set but USAGECTL_REQUIRE_POSTGRES=1")
        pytest.skip(f"{PG_ENV} not set")
    return url


@dataclass
class PgSchema:
    """A throw-away PostgreSQL schema; `url` selects it through search_path."""

    base_url: str
    name: str

    @property
    def url(self) -> str:
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options={quote(f'-csearch_path={self.name}')}"

    def _admin(self, sql: str) -> None:
        import psycopg

        try:
            with psycopg.connect(
                self.base_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            ) as conn:
                conn.execute(sql)
        except psycopg.OperationalError as exc:
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL at {PG_ENV} is not reachable: {exc}")
            pytest.skip(f"PostgreSQL not reachable: {exc}")

    def create(self) -> None:
        self._admin(f'CREATE SCHEMA "{self.name}"')

    def drop(self) -> None:
        self._admin(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[PgSchema]:
    schema = PgSchema(pg_base_url(), f"t_{uuid.uuid4().hex[:12]}")
    schema.create()
    try:
        yield schema
    finally:
        schema.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with a migrated, empty schema, on each backend."""
    from usagectl.store import engine as eng

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'usage.db'}"
    else:
        schema = request.getfixturevalue("pg_schema")
        url = schema.url
    e = eng.make_engine(url)
    eng.upgrade(e)
    e.dispose()
    yield url


@pytest.fixture
def store(db_url: str) -> Iterator[object]:
    from usagectl.store.engine import open_store

    s = open_store(db_url)
    yield s
    s.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run usagectl in-process through the real entry point (error funnel included)."""
    from usagectl.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a config file and return its path."""

    def write(text: str, name: str = "config.toml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return write


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A headless Chromium Selenium WebDriver at 1280x800 (tests/browser.py: set_viewport to change it).

    One browser at a time across the xdist workers (a lock file in their shared temp folder): two Chromiums beside
    two server processes on a 2-core machine made one crash under load."""
    import fcntl

    from browser import chromium

    lock = tmp_path_factory.getbasetemp().parent / "usagectl-browser.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with chromium() as driver:
            yield driver
