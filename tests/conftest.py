"""Shared fixtures.

Every test runs with its own data dir and no user config. Storage tests take `db_url`, which runs them on SQLite
and, when USAGECTL_TEST_DATABASE_URL is set, on PostgreSQL too, each PostgreSQL test in a schema of its own that
is dropped afterwards. With USAGECTL_REQUIRE_POSTGRES=1 (CI) a missing PostgreSQL fails instead of skipping.

A test that needs prices takes `priced` (the one priced config of tests/priced.py, written out, with a migrated
store whose tenants are synced) or `seeded` (the same with the standard October collected and rolled up).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from priced import OCT, TENANTS, V2_FROM, priced_toml, seed, seed_standard

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


def send_json(handler: Any, status: int, body: Any) -> None:
    """Answer a request of a test's fake HTTP server (a BaseHTTPRequestHandler) with `body` as JSON."""
    import json

    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture
def providers_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """[providers] for Twilio (its token in T_TOKEN) and SendGrid (its key in a file), the secrets in place: the
    tests that check a secret never shows look for "secret-token-value" and "super-secret"."""
    key = tmp_path / "sg.key"
    key.write_text("SG.super-secret-sendgrid-key\n")
    monkeypatch.setenv("T_TOKEN", "twilio-secret-token-value")
    return (
        '\n[providers.twilio]\naccount_sid = "AC00000000000000000000000000000000"\nauth_token_env = "T_TOKEN"\n'
        f'\n[providers.sendgrid]\napi_key_file = "{key}"\n'
    )


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


@dataclass
class Priced:
    """A store under the shared priced config; USAGECTL_CONFIG and USAGECTL_DATABASE_URL point at both."""

    store: Any
    cfg: Any
    path: Path
    url: str
    cli: Callable[..., CliResult] = field(repr=False)

    def seed(self, slug: str, days: Iterable[date], row: Any, source: str = "twilio") -> None:
        seed(self.store, slug, days, row, source)

    def rollup(self, days: Any = OCT) -> None:
        """`usagectl -q rollup` over `days` (a Window), through the CLI like an operator: silent, exit 0."""
        res = self.cli("-q", "rollup", "--since", days.start.isoformat(), "--until", days.last.isoformat())
        assert (res.code, res.out, res.err) == (0, "", ""), res.err

    def standard(self, days: Any = OCT, *, skip: Iterable[date] = ()) -> None:
        """The standard usage (tests/priced.py, seed_standard) on each of `days` (a Window) but those in `skip`,
        then `days` rolled up."""
        left_out = set(skip)
        seed_standard(self.store, [d for d in days if d not in left_out])
        self.rollup(days)


def open_priced(
    url: str,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., CliResult],
    *,
    v2: date | None = V2_FROM,
    tenants: Sequence[tuple[str, ...]] = TENANTS,
    extra: str = "",
) -> Priced:
    """Write the shared config (tests/priced.py: priced_toml's parameters), point the CLI at it and at `url`,
    open the store and sync its tenants. The caller closes the store (the fixtures below do)."""
    from usagectl.config import load
    from usagectl.store.engine import open_store
    from usagectl.store.tenants import sync_tenants

    path = write_config(priced_toml(v2=v2, tenants=tenants, extra=extra))
    monkeypatch.setenv("USAGECTL_CONFIG", str(path))
    monkeypatch.setenv("USAGECTL_DATABASE_URL", url)
    cfg = load(path)
    store = open_store(url)
    try:
        sync_tenants(store, cfg.tenants)
    except BaseException:
        store.close()
        raise
    return Priced(store, cfg, path, url, cli)


@pytest.fixture
def priced(
    db_url: str,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., CliResult],
) -> Iterator[Callable[..., Priced]]:
    """A factory: `priced(v2=..., tenants=..., extra=...)` (tests/priced.py, priced_toml) on `db_url`, on each
    backend. It may be called again (a changed config over the same database); every store is closed after."""
    opened: list[Priced] = []

    def make(**kw: Any) -> Priced:
        env = open_priced(db_url, write_config, monkeypatch, cli, **kw)
        opened.append(env)
        return env

    yield make
    for env in opened:
        env.store.close()


@pytest.fixture
def seeded(priced: Callable[..., Priced]) -> Priced:
    """The default priced config with the standard October (tests/priced.py, seed_standard) rolled up."""
    env = priced()
    env.standard()
    return env
