"""The meter catalogue: every kind of usage usagectl meters, with where it is stored, how it is priced and how it
is shown. The raw and rollup column lists, the rollup's sums and cost lines, the report's totals and export
columns, the plan allowances and the dry-run table are all derived from `METERS`.

Adding a meter: one `Meter` below, a migration adding its columns, and the typed fields of `records.MetricRow`,
`reports.DayRow` and `reports.Totals` (each is checked against this catalogue on import, so a missing field fails
at once with its name). At the bottom of the house: it imports nothing of usagectl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Meter:
    key: str  # the meter's short name (reports' --sort keys, cost lines)
    label: str  # for people: table headers, cards
    unit: str  # what one counts: messages, minutes, emails, tokens, jobs, bytes
    #: `usage_metrics` columns summed (a gauge: the day's largest value) into the rollup column
    raw: tuple[str, ...]
    #: the `usage_rollups_daily` column with the day's total
    rollup: str
    #: the `reports.Totals` attribute with the window's sum (None: not summed over days, e.g. a gauge)
    total: str | None
    #: rollup columns that keep the raw columns apart, one per raw column (the total is their sum)
    parts: tuple[str, ...] = ()
    #: `usage_metrics` columns stored for reference but not rolled up
    unrolled: tuple[str, ...] = ()
    #: the `pricing.UnitPrices` attribute with this meter's unit price (None: not priced)
    unit_price: str | None = None
    #: the `config.Allowances` field with the plan's monthly included amount (None: no allowance)
    allowance: str | None = None
    kind: MetricKind = "counter"
    #: the short header of its raw figures in `collect --dry-run` (two raw columns show as a/b)
    raw_header: str = ""
    #: priced per model first where the book has a model's rate (`usage_metrics_ai_models`), the rest at the unit price
    per_model: bool = False
    #: the usage card it is shown on, for people (render.layout); None: on no card and no daily table
    card: str | None = None
    #: its line on that card ("sent + received"); the daily tables head its column with `label`
    card_label: str = ""

    @property
    def priced(self) -> bool:
        return self.unit_price is not None

    @property
    def cost_column(self) -> str:
        """The rollup (and export) column with this meter's cost, for a priced meter."""
        return f"{self.key}_cost_usd"


METERS: tuple[Meter, ...] = (
    Meter(
        "sms",
        "SMS",
        "messages",
        raw=("sms_outbound_count", "sms_inbound_count"),
        rollup="sms_total",
        total="sms",
        unit_price="sms",
        allowance="sms",
        raw_header="sms out/in",
        card="SMS",
        card_label="sent + received",
    ),
    Meter(
        "mms",
        "MMS",
        "messages",
        raw=("mms_outbound_count", "mms_inbound_count"),
        rollup="mms_total",
        total="mms",
        unit_price="mms",
        allowance="mms",
        raw_header="mms out/in",
        card="SMS",
        card_label="MMS",
    ),
    Meter(
        "voice",
        "Voice min",
        "minutes",
        raw=("voice_minutes",),
        rollup="voice_total_minutes",
        total="voice_minutes",
        unit_price="voice_minute",
        allowance="voice_minutes",
        raw_header="voice min",
        card="Voice",
        card_label="minutes",
    ),
    Meter(
        "email",
        "Emails",
        "emails",
        raw=("emails_sent",),
        unrolled=("emails_delivered",),
        rollup="email_total",
        total="emails",
        unit_price="email",
        allowance="emails",
        raw_header="emails",
        card="Email",
        card_label="sent",
    ),
    Meter(
        "ai",
        "AI tokens",
        "tokens",
        raw=("ai_tokens_in", "ai_tokens_out"),
        parts=("ai_tokens_in", "ai_tokens_out"),
        rollup="ai_total_tokens",
        total="ai_tokens",
        unit_price="ai_token",
        allowance="ai_tokens",
        per_model=True,
        raw_header="AI in/out",
        card="AI",
        card_label="tokens",
    ),
    Meter(
        "jobs",
        "Jobs",
        "jobs",
        raw=("jobs_executed",),
        rollup="jobs_executed",
        total="jobs",
        raw_header="jobs",
    ),
    Meter(
        "storage",
        "Storage",
        "bytes",
        raw=("storage_bytes",),
        rollup="storage_bytes",
        total=None,
        kind="gauge",
    ),
)
BY_KEY = {m.key: m for m in METERS}

COUNTERS = tuple(m for m in METERS if m.kind == "counter")
GAUGES = tuple(m for m in METERS if m.kind == "gauge")
PRICED = tuple(m for m in METERS if m.priced)
WITH_ALLOWANCE = tuple(m for m in METERS if m.allowance is not None)
#: the usage columns of the tenants ranking (`usagectl tenants`, its --sort keys, CSV and page), in their order
RANKED = tuple(BY_KEY[k] for k in ("sms", "email", "voice", "ai"))

#: the cost lines of a tenant-day, in order (pricing.CostBreakdown's fields)
COST_LINES = tuple(m.key for m in PRICED)
#: `usage_rollups_daily` cost columns, in order
COST_COLUMNS = tuple(m.cost_column for m in PRICED)

#: the providers that report what they charged (docs/cost-model.md, "What the provider cost covers"); SendGrid
#: reports no cost, so a margin deducts only these
COST_SOURCES = ("twilio", "openai")
#: (source, its `usage_rollups_daily` columns) per cost source: what a margin needs of each tenant-day, kept by the
#: rollup so that no report reads the raw rows for it: `<source>_collected` 1 when the source has a `usage_metrics`
#: row for the day, else 0; `<source>_reported_cost_usd` the cost it reported (NULL: none, or no row)
SOURCE_COST_COLUMNS = tuple((s, f"{s}_collected", f"{s}_reported_cost_usd") for s in COST_SOURCES)

#: `usage_metrics` count columns (BIGINT NOT NULL DEFAULT 0), in table order; the gauges are nullable apart
RAW_COUNT_COLUMNS = tuple(c for m in COUNTERS for c in (*m.raw, *m.unrolled))
RAW_GAUGE_COLUMNS = tuple(c for m in GAUGES for c in m.raw)
RAW_COLUMNS = RAW_COUNT_COLUMNS + RAW_GAUGE_COLUMNS

#: `usage_rollups_daily` usage columns, in table order (each total, then its parts)
ROLLUP_USAGE_COLUMNS = tuple(c for m in METERS for c in (m.rollup, *m.parts))
#: the same columns in export order (the parts before their total), as docs/export.md documents them
EXPORT_USAGE_COLUMNS = tuple(c for m in METERS for c in (*m.parts, m.rollup))

#: the metrics `usagectl ingest`/`record` accept without configuration: the meters fed by usage events
BUILTIN_EVENT_METRICS: dict[str, MetricKind] = {"jobs_executed": "counter", "storage_bytes": "gauge"}
assert all(any(name in m.raw for m in METERS) for name in BUILTIN_EVENT_METRICS)
#: the longest event metric name (`usage_events.metric`)
MAX_METRIC_CHARS = 64
