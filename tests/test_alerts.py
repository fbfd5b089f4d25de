"""`usagectl alerts`: allowance and budget thresholds fire once (reruns, concurrent runs), a signed webhook over
real HTTP with retries and a delivery log, and the secret kept out of everything."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from conftest import Priced
from priced import OCT, PRO_BUDGET, SMS_V1, SMS_V2, V2_FROM, micro
from usagectl import config as cfgmod
from usagectl.alerts import SIGNATURE_HEADER, TIMESTAMP_HEADER, run_alerts, verify
from usagectl.records import MetricRow
from usagectl.store.engine import Store, open_store
from usagectl.store.tables import alert_deliveries, alerts

SECRET = "whsec-TOP-secret-4242"

# Both on pro (500 SMS included, a $5.55 budget); globex with a budget of its own.
TENANTS = (("acme", "Acme", "pro"), ("globex", "Globex", "pro", 'monthly_budget = "1000"'))
ACME_SMS, GLOBEX_SMS = 15, 1000  # a day, all October
# acme: 465 SMS (93.0% of 500: the 80% threshold), costing exactly its plan's budget (80, 95, 100 %).
# globex: 31,000 SMS (6200%: all three), costing $370, under its own $1000 budget (the plan's does not apply).
# Each meter's highest threshold crossed fires (is sent); the lower ones it passed at once are recorded, not sent.
EXPECTED = {
    ("acme", "sms", "80"),
    ("acme", "budget", "100"),
    ("globex", "sms", "100"),
}
PASSED = {
    ("acme", "budget", "80"),
    ("acme", "budget", "95"),
    ("globex", "sms", "80"),
    ("globex", "sms", "95"),
}


def webhook_toml(url: str) -> str:
    return f'\n[alerts.webhook]\nurl = "{url}"\nsecret_env = "ALERT_SECRET"\nbackoff_seconds = 0\n'


@dataclass
class Receiver:
    """A webhook receiver over real HTTP; answers with `codes` in turn (then 200), records what it got."""

    codes: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[dict[str, Any]]:
        """The payloads answered with 2xx."""
        return [json.loads(body) for headers, body in self.got if headers.get("x-answer") == "200"]


def _serve(receiver: Receiver, port: int = 0) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                code = receiver.codes.pop(0) if receiver.codes else 200
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-answer"] = str(code)
                receiver.got.append((headers, body))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server, thread = _serve(rec)
    yield rec
    server.shutdown()
    server.server_close()
    thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def setup(
    priced: Callable[..., Priced], monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], tuple[Store, cfgmod.Config]]:
    """Write the config (the shared one + extra), sync tenants, collect October and roll it up."""
    monkeypatch.setenv("ALERT_SECRET", SECRET)

    def make(extra: str = "") -> tuple[Store, cfgmod.Config]:
        env = priced(tenants=TENANTS, extra=extra)
        env.seed("acme", OCT, MetricRow(sms_outbound_count=ACME_SMS))
        env.seed("globex", OCT, MetricRow(sms_outbound_count=GLOBEX_SMS))
        env.rollup()
        return env.store, env.cfg

    return make


def _month_cost(sms_a_day: int) -> Decimal:
    """October's cost of `sms_a_day` SMS a day on pro (no SMS override): 15 days at v1's price, 16 at v2's."""
    return (V2_FROM - OCT.start).days * micro(sms_a_day * SMS_V1) + (OCT.end - V2_FROM).days * micro(
        sms_a_day * SMS_V2
    )


def test_the_hand_computation_itself() -> None:
    assert _month_cost(ACME_SMS) == Decimal("5.55") == PRO_BUDGET  # 15 x $0.21 + 16 x $0.15
    assert _month_cost(GLOBEX_SMS) == Decimal("370")  # 37% of globex's $1000


def _keys(fired: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(f["tenant"], f["meter"], f["threshold_percent"]) for f in fired}


def _rows(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return conn.execute(select(alerts).order_by(alerts.c.id)).all()


def _dump(store: Store) -> str:
    """Every value of the two alert tables, as text."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(alerts)).all() + conn.execute(select(alert_deliveries)).all()
    return repr([tuple(r) for r in rows])


def test_thresholds_fire_once_across_two_runs(setup: Any, cli: Callable[..., Any]) -> None:
    store, _ = setup()
    first = cli("alerts", "--month", "2026-10", "--format", "json")
    assert first.code == 0, first.err
    doc = json.loads(first.out)
    assert doc["period"] == "2026-10" and doc["dry_run"] is False and doc["webhook"] is None
    assert _keys(doc["fired"]) == EXPECTED and _keys(doc["passed"]) == PASSED
    acme_sms = next(f for f in doc["fired"] if f["tenant"] == "acme" and f["meter"] == "sms")
    # The report's own allowance figures: 465 of 500, 93.0%.
    rep = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    assert acme_sms["used"] == "465" and acme_sms["limit"] == "500" and acme_sms["percent_used"] == "93.0"
    allowance = next(x for x in rep["allowances"] if x["metric"] == "sms")
    assert (allowance["used"], allowance["included"], allowance["percent_used"]) == (465, 500, "93.0")
    budget = next(f for f in doc["fired"] if f["meter"] == "budget" and f["threshold_percent"] == "100")
    assert Decimal(budget["used"]) == _month_cost(ACME_SMS) == PRO_BUDGET == Decimal(budget["limit"])
    assert budget["percent_used"] == "100.0" and budget["as_of"] == "2026-10-31"
    second = cli("alerts", "--month", "2026-10", "--format", "json")
    assert second.code == 0 and json.loads(second.out)["fired"] == []
    rows = _rows(store)
    assert sorted(r.status for r in rows) == ["passed"] * 4 + ["recorded"] * 3
    table = cli("alerts", "--month", "2026-10")
    assert table.code == 0 and table.out == "" and "0 alerts fired for 2026-10" in table.err


def test_dry_run_records_nothing(setup: Any, cli: Callable[..., Any], receiver: Receiver) -> None:
    store, _ = setup(webhook_toml(receiver.url))
    dry = cli("alerts", "--month", "2026-10", "--dry-run", "--format", "json")
    assert dry.code == 0, dry.err
    assert _keys(json.loads(dry.out)["fired"]) == EXPECTED
    assert _keys(json.loads(dry.out)["passed"]) == PASSED
    assert _rows(store) == [] and receiver.got == []
    table = cli("alerts", "--month", "2026-10", "--dry-run")
    assert table.code == 0 and "Would fire" in table.out and "globex" in table.out
    # The common table style: thousands separators, no box.
    assert "31,000" in table.out and "31000" not in table.out and "│" not in table.out
    assert _rows(store) == [] and receiver.got == []
    assert cli("alerts", "--month", "2026-10").code == 0
    assert len(_rows(store)) == 7 and len(receiver.got) == 3
    again = cli("alerts", "--month", "2026-10", "--dry-run", "--format", "json")
    assert json.loads(again.out)["fired"] == []


def test_budget_tracks_the_tenant_override_and_the_plan(setup: Any, cli: Callable[..., Any]) -> None:
    # globex's own budget ($1000, 37% used) replaces the plan's: no budget alert for it. A lower override fires.
    setup()
    doc = json.loads(cli("alerts", "--month", "2026-10", "--format", "json").out)
    assert not [f for f in doc["fired"] if f["tenant"] == "globex" and f["meter"] == "budget"]
    setup('\n[alerts]\nthresholds = ["30", 99.5]\n')
    doc = json.loads(cli("alerts", "--month", "2026-10", "--format", "json").out)
    # New thresholds below one already fired (80/100) are recorded as passed, not sent; globex's budget (37%)
    # reaches its first threshold and fires.
    assert _keys(doc["fired"]) == {("globex", "budget", "30")}
    assert _keys(doc["passed"]) == {
        ("acme", "sms", "30"),
        ("acme", "budget", "30"),
        ("acme", "budget", "99.5"),
        ("globex", "sms", "30"),
        ("globex", "sms", "99.5"),
    }


def test_webhook_signature_verifies(setup: Any, cli: Callable[..., Any], receiver: Receiver) -> None:
    store, _ = setup(webhook_toml(receiver.url))
    res = cli("alerts", "--month", "2026-10")
    assert res.code == 0, res.err
    assert "webhook: 3 delivered, 0 failed" in res.err
    assert "4 lower thresholds passed (recorded, not sent)" in res.err
    assert len(receiver.got) == 3
    for headers, body in receiver.got:
        ts = headers[TIMESTAMP_HEADER.lower()]
        sig = headers[SIGNATURE_HEADER.lower()]
        # Independently of usagectl's code: HMAC-SHA256 over "<timestamp>.<body>".
        mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert sig == f"sha256={mac}"
        assert verify(SECRET, ts, body, sig)
        assert not verify("wrong", ts, body, sig)
        assert not verify(SECRET, ts, body + b" ", sig)
        assert not verify(SECRET, str(int(ts) - 3600), body, sig)  # a replayed old timestamp
        assert headers["content-type"] == "application/json"
    payloads = [json.loads(b) for _, b in receiver.got]
    assert {(p["tenant"], p["meter"], p["threshold_percent"]) for p in payloads} == EXPECTED
    assert all(p["schema_version"] == 1 and p["period"] == "2026-10" for p in payloads)
    assert {r.status for r in _rows(store)} == {"sent", "passed"}
    assert cli("alerts", "--month", "2026-10").code == 0
    assert len(receiver.got) == 3  # nothing sent twice


def test_receiver_failing_twice_then_succeeding(
    setup: Any, cli: Callable[..., Any], receiver: Receiver
) -> None:
    store, _ = setup(webhook_toml(receiver.url))
    receiver.codes = [500, 503]
    res = cli("alerts", "--month", "2026-10")
    assert res.code == 0, res.err
    assert len(receiver.got) == 5  # 2 failures + 3 successes
    first_three = [json.loads(b)["alert"] for _, b in receiver.got[:3]]
    assert len(set(first_three)) == 1  # the same alert, retried within the run
    assert receiver.got[0][1] == receiver.got[2][1]  # the exact same body
    assert {r.status for r in _rows(store)} == {"sent", "passed"}
    log = json.loads(cli("alerts", "log", "--format", "json", "--limit", "100").out)
    assert len(log) == 5
    attempts = [x for x in reversed(log) if x["alert"] == first_three[0]]
    assert [(x["status_code"], x["success"]) for x in attempts] == [(500, False), (503, False), (200, True)]
    assert len(json.loads(cli("alerts", "log", "--format", "json", "-n", "2").out)) == 2
    table = cli("alerts", "log")
    assert table.code == 0 and "500" in table.out and "acme/2026-10" in table.out


def test_receiver_down_then_back(setup: Any, cli: Callable[..., Any]) -> None:
    port = _free_port()
    store, _ = setup(webhook_toml(f"http://127.0.0.1:{port}/hook"))
    res = cli("alerts", "--month", "2026-10", "--format", "json")
    assert res.code == 3
    doc = json.loads(res.out)
    assert len(doc["fired"]) == 3 and doc["webhook"] == {"delivered": 0, "failed": 3}
    assert "3 webhook deliveries failed" in res.err
    rows = _rows(store)
    assert sorted(r.status for r in rows) == ["passed"] * 4 + ["pending"] * 3 and {
        r.sent_at for r in rows
    } == {None}
    log = json.loads(cli("alerts", "log", "--format", "json", "--limit", "1000").out)
    # The first alert got 1 + max_retries (3) attempts and no answer: the other two wait for the next run.
    assert len(log) == 4 and len({x["alert"] for x in log}) == 1
    assert all(not x["success"] and x["status_code"] is None and x["error"] for x in log)
    assert "ConnectError" in log[0]["error"]
    rec = Receiver()
    server, thread = _serve(rec, port)
    try:
        again = cli("alerts", "--month", "2026-10", "--format", "json")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert again.code == 0, again.err
    doc = json.loads(again.out)
    assert doc["fired"] == [] and doc["webhook"] == {"delivered": 3, "failed": 0}
    assert {(p["tenant"], p["meter"], p["threshold_percent"]) for p in rec.delivered()} == EXPECTED
    sent = [r for r in _rows(store) if r.status == "sent"]
    assert len(sent) == 3 and None not in {r.sent_at for r in sent}


def test_two_concurrent_runs_fire_and_deliver_once(setup: Any, db_url: str, receiver: Receiver) -> None:
    _, cfg = setup(webhook_toml(receiver.url))
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        store = open_store(db_url)
        try:
            barrier.wait()
            results.append(run_alerts(store, cfg, month=OCT, secret=SecretStr(SECRET)))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fired = [(x.tenant, x.meter, str(x.threshold)) for r in results for x in r.fired]
    assert len(fired) == 3 and set(fired) == EXPECTED  # each fired by exactly one of the two runs
    assert sum(r.delivered for r in results) == 3 and sum(r.failed for r in results) == 0
    sent = [p["alert"] for p in receiver.delivered()]
    assert len(sent) == 3 == len(set(sent))  # each POSTed exactly once


def test_secret_never_appears(setup: Any, cli: Callable[..., Any], receiver: Receiver) -> None:
    store, _ = setup(webhook_toml(receiver.url))
    receiver.codes = [500] * 4  # one alert fails for good this run
    outputs = [
        cli("alerts", "--month", "2026-10", "--dry-run"),
        cli("--debug", "alerts", "--month", "2026-10", "--format", "json"),
        cli("alerts", "--month", "2026-10"),
        cli("alerts", "log"),
        cli("alerts", "log", "--format", "json"),
        cli("config", "show"),
    ]
    assert outputs[1].code == 3
    for res in outputs:
        assert SECRET not in res.out and SECRET not in res.err
    assert SECRET not in _dump(store)
    with store.engine.connect() as conn:
        everything = repr(conn.execute(text("SELECT * FROM alerts")).all())
    assert SECRET not in everything
    assert all(SECRET.encode() not in body and SECRET not in repr(h) for h, body in receiver.got)


def test_missing_secret_is_a_config_error_naming_the_key(
    setup: Any, cli: Callable[..., Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = setup(webhook_toml(receiver.url))
    monkeypatch.delenv("ALERT_SECRET")
    res = cli("alerts", "--month", "2026-10")
    assert res.code == 2
    assert "alerts.webhook.secret: environment variable ALERT_SECRET is not set" in res.err
    assert _rows(store) == [] and receiver.got == []
    # A dry run sends nothing, so it needs no secret.
    assert cli("alerts", "--month", "2026-10", "--dry-run").code == 0


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        ("[alerts]\nthresholds = [0, 80]\n", "alerts.thresholds", "not a percentage"),
        ("[alerts]\nthresholds = []\n", "alerts.thresholds", "at least one threshold"),
        ("[alerts]\nthresholds = [80, 80.0]\n", "alerts.thresholds", "appears twice"),
        ('[alerts]\nthresholds = ["lots"]\n', "alerts.thresholds[0]", "decimal"),
        ('[alerts.webhook]\nurl = "https://h.example/x"\n', "alerts.webhook", "secret_env or secret_file"),
        ('[alerts.webhook]\nurl = "ftp://h/x"\nsecret_env = "S"\n', "alerts.webhook.url", "not an http"),
        ('[alerts.webhook]\nurl = "https://h/x"\nsecret = "inline"\n', "alerts.webhook", "must not hold"),
        ('[plans.pro]\nmonthly_budget = "-1"\n', "plans.pro.monthly_budget", "greater than or equal"),
        ('[plans.pro]\nmonthly_budget = "1.0000000000001"\n', "plans.pro.monthly_budget", "decimal places"),
        ('[[tenants]]\nslug = "a"\nmonthly_budget = "abc"\n', "tenants[0].monthly_budget", "decimal"),
    ],
)
def test_config_errors_name_the_key(
    toml: str,
    key: str,
    message: str,
    write_config: Callable[[str], Path],
    cli: Callable[..., Any],
) -> None:
    path = write_config(toml)
    res = cli("--config", str(path), "alerts", "--dry-run")
    assert res.code == 2
    assert f"{path}: {key}: " in res.err and message in res.err
    assert len(res.err.strip().splitlines()) == 1


def test_usage_errors(setup: Any, cli: Callable[..., Any]) -> None:
    setup()
    empty = cli("alerts", "log")
    assert empty.code == 0 and empty.out == "" and "no webhook delivery attempts yet" in empty.err
    assert json.loads(cli("alerts", "log", "--format", "json").out) == []
    assert cli("alerts", "--format", "csv").code == 2
    res = cli("alerts", "log", "--limit", "0")
    assert res.code == 2 and "--limit" in res.err
    res = cli("alerts", "--month", "2026-13")
    assert res.code == 2 and "--month" in res.err


def test_a_claimed_alert_is_left_to_its_holder_until_the_claim_lapses(
    setup: Any, cli: Callable[..., Any], receiver: Receiver
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from usagectl.alerts import claim_seconds

    store, cfg = setup(webhook_toml(receiver.url))
    assert cfg.alerts.webhook is not None
    # 4 attempts x 10 s timeout + 0 s backoff + the margin: longer than a whole retry cycle.
    assert claim_seconds(cfg.alerts.webhook) == 4 * 10 + 60
    assert cli("alerts", "--month", "2026-10", "--dry-run").code == 0
    receiver.codes = [404]  # not retried within the run; the alert stays pending
    assert cli("alerts", "--month", "2026-10").code == 3
    with store.engine.begin() as conn:
        conn.execute(update(alerts).values(claimed_until=datetime.now(UTC) + timedelta(hours=1)))
    held = json.loads(cli("alerts", "--month", "2026-10", "--format", "json").out)
    assert held["webhook"] == {"delivered": 0, "failed": 0} and len(receiver.got) == 3
    with store.engine.begin() as conn:
        conn.execute(update(alerts).values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))
    lapsed = json.loads(cli("alerts", "--month", "2026-10", "--format", "json").out)
    assert lapsed["webhook"] == {"delivered": 1, "failed": 0} and len(receiver.got) == 4
    assert {r.status for r in _rows(store)} == {"sent", "passed"}
