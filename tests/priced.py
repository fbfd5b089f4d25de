"""The one priced config the tests share, its unit prices as Decimals for the hand computations, and the seeding
helpers (conftest.py's `priced` fixture writes the config and opens the store; tests/priced.py holds what a test
module imports at import time).

The config: price book v1 from 2026-01-01 and v2 from V2_FROM (SMS from $0.014 to $0.010, every other price the
same), so an October straddles a price change; three plans that each exercise something:
- starter: a monthly fee and an allowance on every meter (sms 500, emails 5,000, voice 100 min, AI 200,000 tokens);
- pro: a fee, unit-price overrides that need rounding (voice $0.0123457/min, email $0.0004), SMS 500 and
  emails 1,000 included, and a monthly budget of $5.55 (what 15 SMS a day cost over an October: test_alerts);
- elite: no section at all, so no fee, nothing included, every unit at the book's price.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.store.engine import Store
from usagectl.store.metrics import upsert_metric
from usagectl.store.tenants import get_tenant

OCT = Window.month(2026, 10)
V2_FROM = date(2026, 10, 16)  # October: 15 days at v1, 16 at v2
# v1's unit prices; v2 changes the SMS price only.
SMS_V1, SMS_V2 = Decimal("0.014"), Decimal("0.010")
MMS, VOICE, EMAIL, AI_TOKEN = Decimal("0.02"), Decimal("0.015"), Decimal("0.0005"), Decimal("0.000002")
# starter's and pro's monthly fees; pro's overrides and budget.
STARTER_FEE, PRO_FEE = Decimal("49"), Decimal("99")
PRO_VOICE, PRO_EMAIL, PRO_BUDGET = Decimal("0.0123457"), Decimal("0.0004"), Decimal("5.55")

FORMULA_NAME = '=HYPERLINK("http://evil")'  # a tenant name a spreadsheet would run
# (slug, name, plan): the tenants of `priced_toml` unless a test names its own.
TENANTS: tuple[tuple[str, str, str], ...] = (
    ("acme", "Acme Corp", "starter"),
    ("globex", "Globex", "pro"),
    ("quiet", "Quiet Ltd", "elite"),
)
# The same with globex named as a spreadsheet formula (the CSV and page tests).
FORMULA_TENANTS = (TENANTS[0], ("globex", FORMULA_NAME, "pro"), TENANTS[2])
EVIL = "<script>alert(1)</script>"  # a tenant name that is HTML
# The pages' tenants: FORMULA_TENANTS and evil.
PAGE_TENANTS = (*FORMULA_TENANTS, ("evil", EVIL, "starter"))

_BOOK = """
[[pricing.books]]
version = "{version}"
effective_from = "{start}"
sms = "{sms}"
mms = "{MMS}"
voice_minute = "{VOICE}"
email = "{EMAIL}"
ai_token = "{AI_TOKEN}"
"""

_PLANS = f"""
[plans.starter]
monthly_fee = "{STARTER_FEE}"
included = {{ sms = 500, emails = 5000, voice_minutes = 100, ai_tokens = 200000 }}

[plans.pro]
monthly_fee = "{PRO_FEE}"
monthly_budget = "{PRO_BUDGET}"
overrides = {{ email = "{PRO_EMAIL}", voice_minute = "{PRO_VOICE}" }}
included = {{ sms = 500, emails = 1000 }}
"""


def _toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tenants_toml(tenants: Iterable[tuple[str, ...]]) -> str:
    """(slug, name, plan) triples, or with a fourth item: more keys of that tenant (TOML lines)."""
    return "".join(
        f"\n[[tenants]]\nslug = {_toml_string(slug)}\nname = {_toml_string(name)}\nplan = {_toml_string(plan)}\n"
        + "".join(f"{line}\n" for line in more)
        for slug, name, plan, *more in tenants
    )


def priced_toml(
    *, v2: date | None = V2_FROM, tenants: Sequence[tuple[str, ...]] = TENANTS, extra: str = ""
) -> str:
    """The shared config. `v2`: when book v2 starts (None: v1 only; another date: the books as a test edits them);
    `tenants`: (slug, name, plan) triples, or with more keys (tenants_toml); `extra`: more TOML tables (a
    webhook, [serve], [rollup], [providers] ...)."""
    prices = {"MMS": MMS, "VOICE": VOICE, "EMAIL": EMAIL, "AI_TOKEN": AI_TOKEN}
    books = _BOOK.format(version="v1", start="2026-01-01", sms=SMS_V1, **prices)
    if v2 is not None:
        books += _BOOK.format(version="v2", start=v2.isoformat(), sms=SMS_V2, **prices)
    return books + _PLANS + extra + "\n" + tenants_toml(tenants)


def micro(x: Decimal) -> Decimal:
    """A money figure as the code stores it: half-up to the micro-dollar."""
    return x.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def seed(store: Store, slug: str, days: Iterable[date], row: MetricRow, source: str = "twilio") -> None:
    """One source's row for one tenant on each of `days`, as a collect would store it."""
    seed_rows(store, ((slug, d, source, row) for d in days))


def seed_rows(store: Store, rows: Iterable[tuple[str, date, str, MetricRow]]) -> None:
    """(tenant slug, day, source, row) rows, in one transaction."""
    ids: dict[str, int] = {}
    with store.engine.begin() as conn:
        for slug, d, source, row in rows:
            if slug not in ids:
                ids[slug] = get_tenant(conn, slug).id  # type: ignore[union-attr]
            upsert_metric(conn, ids[slug], d, source, row)


# The standard month every page and report test reads: acme 30 SMS out and 10 in, 100 emails a day and a
# Twilio cost of $0.41 a day; globex distinctive figures (through SendGrid) that must never show on acme's
# output.
ACME_DAY = MetricRow(
    sms_outbound_count=30, sms_inbound_count=10, emails_sent=100, provider_cost_usd=Decimal("0.41")
)
GLOBEX_DAY = MetricRow(sms_outbound_count=987_654, voice_minutes=55_555)


def seed_standard(store: Store, days: Iterable[date] = OCT) -> None:
    days = list(days)
    seed(store, "acme", days, ACME_DAY)
    seed(store, "globex", days, GLOBEX_DAY, "sendgrid")
