"""Allowance and budget alerts: evaluate, record once, deliver to a signed webhook (docs/alerts.md).

The figures come from `reports.tenant_report`, the object `usagectl report` renders, so an alert and the report
always agree. A threshold fires when `used x 100 >= threshold x limit`, compared exactly in Decimal.

Recording is insert-or-ignore on UNIQUE(tenant_id, period, meter, threshold): whichever run (or host) inserts the
row fired the alert; every other run sees it already there. A webhook delivery is owed until one attempt succeeds;
a run claims an alert (a conditional UPDATE) before POSTing it, so two concurrent runs never both send it.

The webhook client is a small httpx client of its own, not usagectl.http: that layer refuses everything but GET so
that `collect` is read-only towards the providers by construction; the one POST usagectl makes lives here.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from usagectl import __version__
from usagectl.config import AlertWebhookConfig, Config
from usagectl.periods import Window, utc_today
from usagectl.reports import TenantReport, tenant_report
from usagectl.store.directory import directory_tenants
from usagectl.store.engine import Store
from usagectl.store.tables import alert_deliveries, alerts, tenants

PAYLOAD_SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Usagectl-Signature"
TIMESTAMP_HEADER = "X-Usagectl-Timestamp"
ALERT_ID_HEADER = "X-Usagectl-Alert"
BUDGET = "budget"
# A run holds an alert it is delivering for its retry cycle plus this; past it, another run may take it over
# (the holder crashed).
CLAIM_MARGIN_SECONDS = 60
MAX_BACKOFF_SECONDS = 30.0
MAX_ERROR_CHARS = 500

a = alerts.c
d = alert_deliveries.c


@dataclass(frozen=True)
class Alert:
    """One threshold crossed by one tenant's meter (or budget) in one month."""

    tenant: str
    tenant_name: str
    plan: str
    period: str  # YYYY-MM
    meter: str  # an allowance metric (sms, emails, ...) or "budget"
    label: str
    threshold: Decimal  # percent
    used: Decimal  # units, or USD for the budget
    limit: Decimal  # included units, or the budget in USD
    percent_used: Decimal | None  # one decimal; None when the limit is 0
    as_of: date  # the last day counted

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.period}/{self.meter}/{self.threshold}"

    def payload(self, fired_at: datetime) -> dict[str, Any]:
        return {
            "schema_version": PAYLOAD_SCHEMA_VERSION,
            "type": "budget" if self.meter == BUDGET else "allowance",
            "alert": self.key,
            "tenant": self.tenant,
            "tenant_name": self.tenant_name,
            "plan": self.plan,
            "period": self.period,
            "meter": self.meter,
            "threshold_percent": str(self.threshold),
            "used": str(self.used),
            "limit": str(self.limit),
            "percent_used": None if self.percent_used is None else str(self.percent_used),
            "unit": "USD" if self.meter == BUDGET else self.meter,
            "as_of": self.as_of.isoformat(),
            "fired_at": fired_at.isoformat(),
        }


@dataclass(frozen=True)
class DeliveryAttempt:
    alert: str
    attempted_at: datetime
    status_code: int | None
    error: str | None
    success: bool


@dataclass(frozen=True)
class AlertsResult:
    period: str
    dry_run: bool
    fired: tuple[Alert, ...]  # new this run (with --dry-run: would fire)
    webhook: bool
    delivered: int
    failed: int  # alerts still owed a delivery after this run
    # Thresholds newly passed below a higher one that fired (or had fired): recorded as `passed`, never sent.
    passed: tuple[Alert, ...] = ()


def _percent(used: Decimal, limit: Decimal) -> Decimal | None:
    """As reports.Allowance.percent: one decimal, half-up; None for a limit of 0."""
    if limit == 0:
        return None
    return (used * 100 / limit).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _crossed(used: Decimal, limit: Decimal, threshold: Decimal) -> bool:
    # Nothing used never alerts; with a limit of 0, any use crosses every threshold.
    return used > 0 and used * 100 >= threshold * limit


def evaluate(cfg: Config, rep: TenantReport) -> list[Alert]:
    """Every threshold the report's month-to-date figures have crossed (fired before or not)."""
    mtd = rep.month_to_date
    period = f"{mtd.month.start:%Y-%m}"
    t = rep.tenant
    # The report's own Allowance objects and their % used: an alert and `usagectl report` show the same figures.
    limits: list[tuple[str, str, Decimal, Decimal, Decimal | None]] = [
        (al.metric, al.label, Decimal(al.used), Decimal(al.included), al.percent) for al in rep.allowances
    ]
    tenant_cfg = cfg.tenant(t.slug)
    budget = tenant_cfg.monthly_budget if tenant_cfg is not None else None
    if budget is None:
        budget = cfg.plan(t.plan_tier).monthly_budget
    if budget is not None:
        limits.append((BUDGET, "Budget (USD)", mtd.cost, budget, _percent(mtd.cost, budget)))
    out: list[Alert] = []
    for meter, label, used, limit, percent in limits:
        for threshold in cfg.alerts.thresholds:
            if _crossed(used, limit, threshold):
                out.append(
                    Alert(
                        tenant=t.slug,
                        tenant_name=t.name,
                        plan=t.plan_tier,
                        period=period,
                        meter=meter,
                        label=label,
                        threshold=threshold,
                        used=used,
                        limit=limit,
                        percent_used=percent,
                        as_of=mtd.as_of,
                    )
                )
    return out


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(secret: SecretStr, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 over `<timestamp>.<body>` (docs/alerts.md)."""
    mac = hmac.new(
        secret.get_secret_value().encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256"
    )
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300) -> bool:
    """What a receiver does (docs/alerts.md): recompute, compare in constant time, refuse stale timestamps."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    expected = sign(SecretStr(secret), timestamp, body)
    return age <= tolerance and hmac.compare_digest(expected, signature)


def _insert_ignore(dialect: str) -> Any:
    mod: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        mod.insert(alerts)
        .on_conflict_do_nothing(index_elements=["tenant_id", "period", "meter", "threshold"])
        .returning(a.id)
    )


def _fired_keys(conn: Connection, tenant_id: int, period: str) -> set[tuple[str, str]]:
    rows = conn.execute(
        select(a.meter, a.threshold).where(a.tenant_id == tenant_id, a.period == period)
    ).all()
    return {(row.meter, row.threshold) for row in rows}


def _now() -> datetime:
    return datetime.now(UTC)


def run_alerts(
    store: Store,
    cfg: Config,
    *,
    month: Window | None = None,
    dry_run: bool = False,
    secret: SecretStr | None = None,
    today: date | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> AlertsResult:
    """Evaluate every configured tenant for `month` (default: the month of the last complete UTC day), record
    what newly fired, then deliver every alert still owed to the webhook. `secret` is needed when a webhook is
    configured and this is not a dry run."""
    today = today or utc_today()
    if month is None:
        yesterday = today - timedelta(days=1)
        month = Window.month(yesterday.year, yesterday.month)
    period = f"{month.start:%Y-%m}"
    webhook = cfg.alerts.webhook
    fired: list[Alert] = []
    passed: list[Alert] = []
    with store.engine.connect() as conn:
        ids = {row.slug: row.id for row in conn.execute(select(tenants.c.slug, tenants.c.id))}
        # The directory's tenants too (`usagectl directory sync`), with their budgets.
        listed = directory_tenants(conn, month.start, month.end)
    if listed:
        cfg = cfg.model_copy(update={"tenants": [*cfg.tenants, *listed]})
    for tcfg in cfg.tenants:
        tenant_id = ids.get(tcfg.slug)
        if tenant_id is None:
            continue  # not synced into this database (a run on built-in defaults)
        rep = tenant_report(store, cfg, tcfg.slug, month, today=today)
        candidates = evaluate(cfg, rep)
        if not candidates:
            continue
        with store.engine.connect() as conn:
            done = _fired_keys(conn, tenant_id, period)
        top, lower = highest_only(candidates, done)
        if dry_run:
            fired.extend(c for c in top if (c.meter, str(c.threshold)) not in done)
            passed.extend(c for c in lower if (c.meter, str(c.threshold)) not in done)
            continue
        fired.extend(_record(store, tenant_id, top, status="pending" if webhook is not None else "recorded"))
        passed.extend(_record(store, tenant_id, lower, status="passed"))
    delivered = failed = 0
    if webhook is not None and not dry_run:
        if secret is None:
            raise ValueError("a configured webhook needs its secret")
        delivered, failed = deliver_pending(store, webhook, secret, sleep=sleep)
    return AlertsResult(
        period=period,
        dry_run=dry_run,
        fired=tuple(fired),
        webhook=webhook is not None,
        delivered=delivered,
        failed=failed,
        passed=tuple(passed),
    )


def highest_only(
    candidates: Sequence[Alert],
    done: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[Alert], list[Alert]]:
    """Each meter's highest crossed threshold, and the lower ones. A month that is already past several
    thresholds (a first run late in the month, a big day) alerts once, for the highest: three messages saying
    80%, 90% and 100% at the same moment tell nothing the last one does not. The lower ones are recorded as
    passed, so they never fire later either; so is a threshold below one already recorded (`done`: (meter,
    threshold text) of the month's alerts, e.g. a threshold added to the config after a higher one fired)."""
    top: dict[str, Alert] = {}
    for c in candidates:
        if c.meter not in top or c.threshold > top[c.meter].threshold:
            top[c.meter] = c
    recorded: dict[str, Decimal] = {}
    for meter, threshold in done:
        recorded[meter] = max(recorded.get(meter, Decimal(0)), Decimal(threshold))
    highest = {id(c) for m, c in top.items() if m not in recorded or c.threshold > recorded[m]}
    return [c for c in candidates if id(c) in highest], [c for c in candidates if id(c) not in highest]


def _record(store: Store, tenant_id: int, candidates: Sequence[Alert], *, status: str) -> list[Alert]:
    """Insert-or-ignore each candidate with `status` (pending: a delivery is owed; recorded: no webhook;
    passed: below a higher threshold, never sent); the ones this call inserted are the ones new now."""
    stmt = _insert_ignore(store.dialect)
    new: list[Alert] = []
    now = _now()
    with store.engine.begin() as conn:
        for c in candidates:
            row = conn.execute(
                stmt,
                {
                    "tenant_id": tenant_id,
                    "period": c.period,
                    "meter": c.meter,
                    "threshold": str(c.threshold),
                    "payload": body_bytes(c.payload(now)).decode("utf-8"),
                    "status": status,
                    "fired_at": now,
                },
            ).first()
            if row is not None:
                new.append(c)
    return new


def _backoff(hook: AlertWebhookConfig, retry: int) -> float:
    return float(min(hook.backoff_seconds * 2 ** (retry - 1), MAX_BACKOFF_SECONDS))


def claim_seconds(hook: AlertWebhookConfig) -> float:
    """Longer than one alert's whole retry cycle can take, so a claim never lapses while its run still sends."""
    waits = sum(_backoff(hook, n) for n in range(1, hook.max_retries + 1))
    return (hook.max_retries + 1) * hook.timeout + waits + CLAIM_MARGIN_SECONDS


def _claim(store: Store, alert_id: int, lease: float) -> bool:
    now = _now()
    with store.engine.begin() as conn:
        result = conn.execute(
            update(alerts)
            .where(
                a.id == alert_id,
                a.status == "pending",
                or_(a.claimed_until.is_(None), a.claimed_until < now),
            )
            .values(claimed_until=now + timedelta(seconds=lease))
        )
        return bool(result.rowcount == 1)


def _error_text(exc: Exception, secret: SecretStr) -> str:
    # httpx's messages name the failure, not the URL or headers; the secret is scrubbed all the same.
    text = f"{type(exc).__name__}: {exc}".replace(secret.get_secret_value(), "***")
    return text[:MAX_ERROR_CHARS]


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _post(
    client: httpx.Client,
    hook: AlertWebhookConfig,
    secret: SecretStr,
    alert_key: str,
    body: bytes,
    sleep: Callable[[float], None],
) -> list[DeliveryAttempt]:
    """POST once, then retry (exponential backoff, bounded) on a transport error, 429 or 5xx."""
    attempts: list[DeliveryAttempt] = []
    for n in range(hook.max_retries + 1):
        if n:
            sleep(_backoff(hook, n))
        # A fresh timestamp per attempt: the receiver's replay window counts from when it was sent.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"usagectl/{__version__}",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            ALERT_ID_HEADER: alert_key,
        }
        at = _now()
        try:
            resp = client.post(hook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            attempts.append(DeliveryAttempt(alert_key, at, None, _error_text(exc, secret), False))
            continue
        ok = 200 <= resp.status_code < 300
        attempts.append(
            DeliveryAttempt(alert_key, at, resp.status_code, None if ok else f"HTTP {resp.status_code}", ok)
        )
        if ok or not _retryable(resp.status_code):
            break
    return attempts


def deliver_pending(
    store: Store,
    hook: AlertWebhookConfig,
    secret: SecretStr,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:
    """Deliver every alert still owed (this run's and earlier failed ones), oldest first. Returns (delivered,
    still owed). Every attempt is logged; an alert is marked sent only after a 2xx answer. When one alert gets no
    HTTP answer at all through its retries, the rest are not tried this run."""
    with store.engine.connect() as conn:
        pending = conn.execute(
            select(a.id, a.payload).where(a.status == "pending").order_by(a.fired_at, a.id)
        ).all()
    delivered = failed = 0
    unreachable = False
    with httpx.Client(timeout=hook.timeout, follow_redirects=False) as client:
        for row in pending:
            if unreachable:
                # The receiver gave no answer through a whole retry cycle: the others wait for the next run
                # rather than each spending its own (the run's length stays bounded when the receiver is down).
                failed += 1
                continue
            if not _claim(store, row.id, claim_seconds(hook)):
                continue  # another run is delivering it, or already did
            key = json.loads(row.payload)["alert"]
            attempts = _post(client, hook, secret, key, row.payload.encode("utf-8"), sleep)
            ok = attempts[-1].success
            with store.engine.begin() as conn:
                conn.execute(
                    insert(alert_deliveries),
                    [
                        {
                            "alert_id": row.id,
                            "attempted_at": t.attempted_at,
                            "status_code": t.status_code,
                            "error": t.error,
                            "success": t.success,
                        }
                        for t in attempts
                    ],
                )
                values: dict[str, Any] = {"claimed_until": None}
                if ok:
                    values.update(status="sent", sent_at=_now())
                conn.execute(update(alerts).where(a.id == row.id).values(**values))
            if ok:
                delivered += 1
            else:
                failed += 1
                unreachable = all(t.status_code is None for t in attempts)
    return delivered, failed


@dataclass(frozen=True)
class LogLine:
    attempted_at: datetime
    tenant: str
    alert: str
    status_code: int | None
    error: str | None
    success: bool


def delivery_log(store: Store, *, limit: int = 50) -> list[LogLine]:
    """The newest delivery attempts first."""
    q = (
        select(d.attempted_at, d.status_code, d.error, d.success, a.payload, tenants.c.slug)
        .select_from(
            alert_deliveries.join(alerts, a.id == d.alert_id).join(tenants, tenants.c.id == a.tenant_id)
        )
        .order_by(d.attempted_at.desc(), d.id.desc())
        .limit(limit)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return [
        LogLine(
            attempted_at=row.attempted_at,
            tenant=row.slug,
            alert=json.loads(row.payload)["alert"],
            status_code=row.status_code,
            error=row.error,
            success=bool(row.success),
        )
        for row in rows
    ]


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "type": "budget" if alert.meter == BUDGET else "allowance",
        "tenant": alert.tenant,
        "tenant_name": alert.tenant_name,
        "period": alert.period,
        "meter": alert.meter,
        "threshold_percent": str(alert.threshold),
        "used": str(alert.used),
        "limit": str(alert.limit),
        "percent_used": None if alert.percent_used is None else str(alert.percent_used),
        "as_of": alert.as_of.isoformat(),
    }
