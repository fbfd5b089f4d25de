"""`usagectl token create/list/revoke`: the secret is printed once and never stored or listed."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from usagectl.store.engine import open_store
from usagectl.store.tables import api_tokens
from usagectl.store.tokens import verify_token

TOKEN_RE = re.compile(r"uct_[A-Za-z0-9_-]{43}")


@pytest.fixture
def env(db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> str:
    path = write_config(
        '[[tenants]]\nslug = "acme"\nplan = "pro"\n[[tenants]]\nslug = "globex"\nplan = "pro"\n'
    )
    monkeypatch.setenv("USAGECTL_CONFIG", str(path))
    monkeypatch.setenv("USAGECTL_DATABASE_URL", db_url)
    return db_url


def test_create_prints_once_stores_only_the_hash(env: str, cli: Callable[..., Any]) -> None:
    r = cli("token", "create", "--tenant", "acme", "--name", "dash", "--expires", "90d")
    assert r.code == 0, r.err
    token = r.out.strip()
    assert TOKEN_RE.fullmatch(token)
    assert token not in r.err and token[:12] in r.err and "expires" in r.err
    store = open_store(env)
    try:
        with store.engine.connect() as conn:
            rows = [tuple(row) for row in conn.execute(select(api_tokens))]
        assert len(rows) == 1
        assert all(token not in str(v) for v in rows[0])
        assert hashlib.sha256(token.encode()).hexdigest() in rows[0]
        scope = verify_token(store, token)
        assert scope is not None and scope.tenant == "acme"
    finally:
        store.close()
    listed = cli("token", "list")
    assert listed.code == 0 and token[:12] in listed.out and token not in listed.out
    js = json.loads(cli("token", "list", "--format", "json").out)
    assert js[0]["prefix"] == token[:12] and js[0]["scope"] == "tenant:acme" and js[0]["name"] == "dash"
    assert (
        js[0]["status"] == "active" and js[0]["expires"] and js[0]["last_used"]
    )  # verify_token above used it


def test_root_token_and_revoke(env: str, cli: Callable[..., Any]) -> None:
    token = cli("-q", "token", "create", "--root").out.strip()
    assert TOKEN_RE.fullmatch(token)
    store = open_store(env)
    try:
        scope = verify_token(store, token)
        assert scope is not None and scope.is_root
        r = cli("token", "revoke", token[:12])
        assert r.code == 0 and "revoked" in r.err
        assert verify_token(store, token) is None
    finally:
        store.close()
    assert json.loads(cli("token", "list", "--format", "json").out)[0]["status"] == "revoked"
    again = cli("token", "revoke", token[:12])
    assert again.code == 2 and "no active token" in again.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("token", "create"), "exactly one of --tenant SLUG, --root and --ingest"),
        (("token", "create", "--root", "--tenant", "acme"), "exactly one of"),
        (("token", "create", "--tenant", "nope"), "unknown tenant 'nope'"),
        (("token", "create", "--root", "--expires", "soon"), "--expires: 'soon' is not a duration"),
        (("token", "create", "--root", "--expires", "0d"), "--expires"),
        (("token", "list", "--format", "csv"), "--format"),
        (("token", "revoke", "uct_nothing"), "no active token with prefix 'uct_nothing'"),
    ],
)
def test_errors_are_one_line_exit_2(
    env: str, cli: Callable[..., Any], args: tuple[str, ...], message: str
) -> None:
    r = cli(*args)
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and message in r.err
