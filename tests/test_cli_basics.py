from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from usagectl.store.tables import SCHEMA_HEAD

HEAVY = (
    "sqlalchemy", "alembic", "twilio", "plotext", "httpx", "tiktoken", "psycopg",
    "fastapi", "starlette", "uvicorn", "jwt",
)  # fmt: skip


def test_version_imports_no_heavy_module() -> None:
    code = (
        "import sys; from usagectl.cli.main import main; rc = main(['--version']);"
        f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("usagectl ")
    assert json.loads(lines[-1]) == []


def test_help_lists_commands_and_has_an_example(cli: Callable[..., Any]) -> None:
    r = cli("--help")
    assert r.code == 0
    for name in ("init", "db", "config"):
        assert name in r.out
    assert "Example:" in r.out


def test_unknown_option_is_a_usage_error(cli: Callable[..., Any]) -> None:
    r = cli("db", "current", "--bogus")
    assert r.code == 2
    assert "--bogus" in r.err


def test_init_then_db_current_on_sqlite(cli: Callable[..., Any], tmp_path: Path, isolated_env: Path) -> None:
    cfg = tmp_path / "c" / "config.toml"
    r = cli("init", "--path", str(cfg))
    assert r.code == 0, r.err
    assert cfg.is_file() and (isolated_env / "usage.db").is_file()
    r = cli("--config", str(cfg), "db", "current")
    assert r.code == 0 and r.out.strip().endswith("(head)")
    r = cli("--config", str(cfg), "db", "path")
    assert r.out.strip() == str(isolated_env / "usage.db")
    r = cli("init", "--path", str(cfg))
    assert r.code == 2 and "already exists; use --force" in r.err
    assert cli("-q", "init", "--path", str(cfg), "--force").code == 0


@pytest.mark.postgres
def test_db_upgrade_and_current_on_postgres(
    cli: Callable[..., Any], pg_schema: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGECTL_DATABASE_URL", pg_schema.url)
    r = cli("db", "current")
    assert r.code == 1 and "db upgrade" in r.err
    r = cli("db", "upgrade")
    assert r.code == 0 and f"-> {SCHEMA_HEAD}" in r.err
    assert cli("db", "current").out.strip() == f"{SCHEMA_HEAD} (head)"
    assert "already at schema" in cli("db", "upgrade").err


def test_errors_are_one_line_and_debug_shows_traceback(
    cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    path = write_config('[database]\nurl = "mysql://x@y/z"\n')
    r = cli("--config", str(path), "db", "current")
    assert r.code == 2 and r.err.count("\n") == 1 and "database.url: unsupported database 'mysql'" in r.err
    r = cli("--debug", "--config", str(path), "db", "current")
    assert "Traceback" in r.err
