"""POST /api/events with ingest tokens: in-process (TestClient) and over a real `usagectl serve` process, on
SQLite and PostgreSQL. Per-event answers, exactly the good events stored, a retried request changing nothing,
the scopes (403 both ways), and the caps (413 with nothing stored)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from test_serve_process import _start, free_port
from usagectl import config as cfgmod
from usagectl.store.engine import Store, open_store
from usagectl.store.tables import usage_events
from usagectl.store.tenants import sync_tenants
from usagectl.store.tokens import create_token
from usagectl.web.app import ServeSettings, create_app

CONFIG = """
[serve]
events_max_bytes = 4096
events_max_per_request = 20

[events]
metrics = { api_calls = "counter" }

[[tenants]]
slug = "acme"
plan = "pro"

[[tenants]]
slug = "globex"
plan = "pro"
"""

EVENTS = "/api/events"


def event(i: int, *, tenant: str = "acme", metric: str = "jobs_executed", value: Any = 1) -> dict[str, Any]:
    return {
        "id": f"evt-{i}",
        "source": "jobs-service",
        "subject": tenant,
        "type": metric,
        "time": "2026-11-24T10:00:00Z",
        "data": {"value": value},
    }


def mixed_batch() -> list[Any]:
    return [
        event(1),  # 0 accepted
        event(2, tenant="nobody"),  # 1 rejected: unknown tenant
        event(3, value=-4),  # 2 rejected: negative
        event(4, tenant="globex", metric="api_calls", value=7),  # 3 accepted: a declared metric
        event(1),  # 4 duplicate of 0 in the same request
        "not an object",  # 5 rejected
        event(5, metric="no_such_metric"),  # 6 rejected
        event(6, value=5),  # 7 accepted
    ]


EXPECTED = ["accepted", "rejected", "rejected", "accepted", "duplicate", "rejected", "rejected", "accepted"]


def stored(store: Store) -> list[tuple[str, str, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(usage_events.c.event_id, usage_events.c.metric, usage_events.c.value).order_by(
                usage_events.c.event_id
            )
        ).all()
    return [(r.event_id, r.metric, r.value) for r in rows]


def count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(usage_events)).scalar_one())


GOOD = [("evt-1", "jobs_executed", 1), ("evt-4", "api_calls", 7), ("evt-6", "jobs_executed", 5)]


def check_mixed(answer: Any) -> None:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["status"] for r in body["results"]] == EXPECTED
    assert [r["index"] for r in body["results"]] == list(range(8))
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (8, 3, 1, 4)
    reasons = {r["index"]: r["reason"] for r in body["results"] if r["status"] == "rejected"}
    assert reasons[1] == "unknown tenant 'nobody'"
    assert reasons[2] == "value -4 is negative"
    assert reasons[5] == "not a JSON object"
    assert reasons[6].startswith("unknown metric 'no_such_metric'")


def check_retry(answer: Any) -> None:
    body = answer.json()
    assert answer.status_code == 200
    # Every event stored before is now a duplicate; the bad ones are still rejected; nothing new.
    assert [r["status"] for r in body["results"]] == ["duplicate" if s == "accepted" else s for s in EXPECTED]
    assert body["accepted"] == 0


# --- in-process ----------------------------------------------------------------------------------------------


class Api:
    def __init__(self, client: TestClient, store: Store, ingest: str, read: str, root: str) -> None:
        self.client, self.store, self.ingest, self.read, self.root = client, store, ingest, read, root

    def post(self, token: str | None, content: bytes | str, **headers: str) -> Any:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post(EVENTS, content=content, headers=headers)


@pytest.fixture
def api(db_url: str, write_config: Callable[[str], Path]) -> Iterator[Api]:
    cfg = cfgmod.load(write_config(CONFIG))
    store = open_store(db_url)
    sync_tenants(store, cfg.tenants)
    ingest, _ = create_token(store, tenant=None, ingest=True, name="jobs")
    read, _ = create_token(store, tenant="acme")
    root, _ = create_token(store, tenant=None)
    client = TestClient(create_app(ServeSettings(cfg, store=store, access_log=False)))
    yield Api(client, store, ingest, read, root)
    client.close()
    store.close()


def test_a_mixed_json_array_stores_exactly_the_good_events_and_a_retry_changes_nothing(api: Api) -> None:
    body = json.dumps(mixed_batch())
    check_mixed(api.post(api.ingest, body, **{"Content-Type": "application/json"}))
    assert stored(api.store) == GOOD
    check_retry(api.post(api.ingest, body, **{"Content-Type": "application/json"}))
    assert stored(api.store) == GOOD


def test_ndjson_answers_like_the_array_with_a_bad_line_rejected_alone(api: Api) -> None:
    lines = [json.dumps(e) for e in mixed_batch()]
    lines[5] = '{"id": "evt-9", "source": '  # not JSON at all: one rejected event, not a bad request
    body = "\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n"  # a blank line is skipped
    r = api.post(api.ingest, body, **{"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == EXPECTED
    assert results[5]["reason"].startswith("invalid JSON")
    assert stored(api.store) == GOOD


def test_api_events_equal_usagectl_ingest_of_the_same_lines(
    api: Api, db_url: str, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    from usagectl.events import ingest

    lines = [json.dumps(e) for e in mixed_batch()]
    assert api.post(api.ingest, "\n".join(lines)).status_code == 200
    via_api = stored(api.store)
    with api.store.engine.begin() as conn:
        conn.execute(usage_events.delete())
    result = ingest(api.store, cfgmod.load(write_config(CONFIG)), lines, name="f")
    assert (result.inserted, result.duplicates, result.rejected) == (3, 1, 4)
    assert stored(api.store) == via_api


def test_scopes_are_403_both_ways_and_a_missing_token_401(api: Api) -> None:
    body = json.dumps([event(1)])
    for token in (api.read, api.root):
        r = api.post(token, body)
        assert r.status_code == 403 and "ingest token" in r.json()["error"]
    assert api.post(None, body).status_code == 401
    assert api.post("uct_" + "x" * 43, body).status_code == 401
    assert count(api.store) == 0
    auth = {"Authorization": f"Bearer {api.ingest}"}
    for url in ("/api/admin/usage/summary", "/api/admin/usage/daily", "/api/root-admin/usage/tenants"):
        r = api.client.get(url, headers=auth, params={"tenant": "acme"} if "root" not in url else {})
        assert r.status_code == 403 and "reads nothing" in r.json()["error"], url


def test_an_ingest_token_cannot_sign_in_to_the_pages(api: Api) -> None:
    from test_web_app import _csrf

    r = api.client.post(
        "/signin", data={"token": api.ingest, "csrf_token": _csrf(api.client)}, follow_redirects=False
    )
    assert r.status_code == 401
    assert "usagectl_session" not in r.cookies
    # The same form with a read token signs in (the form itself is right).
    r = api.client.post(
        "/signin", data={"token": api.read, "csrf_token": _csrf(api.client)}, follow_redirects=False
    )
    assert r.status_code == 303


def test_oversized_bodies_and_too_many_events_are_413_with_nothing_stored(api: Api) -> None:
    big = json.dumps([event(i) for i in range(60)])  # over 4096 bytes
    assert len(big) > 4096
    r = api.post(api.ingest, big)
    assert r.status_code == 413 and "events_max_bytes" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for i in range(0, len(big), 500):
            yield big[i : i + 500].encode()

    r = api.client.post(EVENTS, content=chunks(), headers={"Authorization": f"Bearer {api.ingest}"})
    assert r.status_code == 413
    many = "\n".join(json.dumps({"id": str(i)}) for i in range(21))  # 21 short events, under the byte cap
    r = api.post(api.ingest, many)
    assert r.status_code == 413 and "events_max_per_request" in r.json()["error"]
    assert count(api.store) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [("", "empty body"), ("  \n", "empty body"), ("[1, 2", "not a JSON array"), (b"[\xff]", "not UTF-8")],
)
def test_an_unreadable_body_is_400(api: Api, body: str | bytes, message: str) -> None:
    r = api.post(api.ingest, body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_token_cli_creates_and_lists_an_ingest_token(
    cli: Callable[..., Any], write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    monkeypatch.setenv("USAGECTL_CONFIG", str(write_config(CONFIG)))
    monkeypatch.setenv("USAGECTL_DATABASE_URL", db_url)
    made = cli("token", "create", "--ingest", "--name", "jobs-service")
    assert made.code == 0 and made.out.startswith("uct_")
    listed = json.loads(cli("token", "list", "--format", "json").out)
    assert [(t["scope"], t["name"]) for t in listed] == [("ingest", "jobs-service")]
    both = cli("token", "create", "--ingest", "--root")
    assert both.code != 0 and "exactly one of" in both.err


# --- a real `usagectl serve` process -------------------------------------------------------------------------


@pytest.mark.slow
def test_post_events_over_a_real_serve_process(
    db_url: str, write_config: Callable[[str], Path], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(CONFIG)
    monkeypatch.setenv("USAGECTL_CONFIG", str(path))
    monkeypatch.setenv("USAGECTL_DATABASE_URL", db_url)
    assert cli("-q", "config", "check").code in (0, 1)
    ingest = cli("-q", "token", "create", "--ingest").out.strip()
    read = cli("-q", "token", "create", "--tenant", "acme").out.strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = _start(["serve", "--host", "127.0.0.1", "--port", str(port)], env, base)
    store = open_store(db_url)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            auth = {"Authorization": f"Bearer {ingest}"}
            body = json.dumps(mixed_batch())
            check_mixed(c.post(EVENTS, content=body, headers=auth))
            assert stored(store) == GOOD
            check_retry(c.post(EVENTS, content=body, headers=auth))
            assert stored(store) == GOOD
            assert (
                c.post(EVENTS, content=body, headers={"Authorization": f"Bearer {read}"}).status_code == 403
            )
            assert c.get("/api/admin/usage/summary", headers=auth).status_code == 403
            big = json.dumps([event(100 + i) for i in range(60)])
            assert c.post(EVENTS, content=big, headers=auth).status_code == 413
            assert stored(store) == GOOD
    finally:
        import signal

        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except Exception:
            proc.kill()
            _, err = proc.communicate()
        store.close()
    assert ingest not in err and read not in err
    assert '"POST /api/events" 200' in err and '"POST /api/events" 413' in err
