"""The one interface every usage source implements, and the value it returns.

A provider turns (tenant, UTC day) into one `MetricRow`; the collector writes it with `store.metrics.upsert_metric`,
which replaces whatever that source wrote for that tenant-day before (idempotent re-collection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from usagectl.config import TenantConfig
from usagectl.pricing import ModelTokens


@dataclass(frozen=True)
class MetricRow:
    """What one source reports for one tenant on one UTC day (a `usage_metrics` row)."""

    sms_outbound_count: int = 0
    sms_inbound_count: int = 0
    mms_outbound_count: int = 0
    mms_inbound_count: int = 0
    voice_minutes: int = 0
    emails_sent: int = 0
    emails_delivered: int = 0
    ai_tokens_in: int = 0
    ai_tokens_out: int = 0
    jobs_executed: int = 0
    storage_bytes: int | None = None
    provider_cost_usd: Decimal | None = None
    ai_models: tuple[ModelTokens, ...] = field(default=())
    # False when the provider says part of the day is still in flight (a Twilio message not yet sent counts 0
    # segments): the day is stored, marked provisional, and re-collected by later runs until it is final.
    final: bool = True
    # Why a figure is unknown or what it leaves out (e.g. a price in another currency); stored on the day's
    # collection_runs row so an operator can see it.
    note: str | None = None

    def counts(self) -> dict[str, int | None]:
        return {
            "sms_outbound_count": self.sms_outbound_count,
            "sms_inbound_count": self.sms_inbound_count,
            "mms_outbound_count": self.mms_outbound_count,
            "mms_inbound_count": self.mms_inbound_count,
            "voice_minutes": self.voice_minutes,
            "emails_sent": self.emails_sent,
            "emails_delivered": self.emails_delivered,
            "ai_tokens_in": self.ai_tokens_in,
            "ai_tokens_out": self.ai_tokens_out,
            "jobs_executed": self.jobs_executed,
            "storage_bytes": self.storage_bytes,
        }


class ProviderError(Exception):
    """A provider call failed. The message is safe to show and store: it never contains a credential."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


#: what `collect_days` returns per day: the row, or the reason that day could not be collected (the other days of
#: the same answer are still good; the failed day's stored row stays as it was).
DayResult = MetricRow | ProviderError


class Provider(Protocol):
    """A usage source. Implementations must be safe to call from several worker threads at once."""

    #: the `usage_metrics.source` value this provider writes
    source: str

    def applies_to(self, tenant: TenantConfig) -> bool:
        """Whether this tenant is attributed through this source at all."""
        ...

    def collect_day(self, tenant: TenantConfig, day: date) -> MetricRow:
        """The tenant's usage on one UTC day. Raises ProviderError on failure."""
        ...

    def close(self) -> None: ...


def one_day(results: dict[date, DayResult], day: date) -> MetricRow:
    """`collect_day` from `collect_days`: a failed day raises its error."""
    got = results[day]
    if isinstance(got, ProviderError):
        raise got
    return got


@dataclass(frozen=True)
class CheckResult:
    """One credential tried by `config check --online`."""

    name: str  # e.g. "twilio (platform account AC12...)"
    ok: bool
    detail: str


def as_int(value: object, where: str) -> int:
    """A provider count (often a string on the wire) as an int; anything else is a malformed response."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            if value < 0:
                raise ValueError
            return value
        if isinstance(value, str | Decimal):
            number = Decimal(value)
            if number != number.to_integral_value() or number < 0:
                raise ValueError
            return int(number)
    except (ValueError, ArithmeticError):
        pass
    raise ProviderError(f"malformed response: {where} is {value!r}, not a count")


def as_decimal(value: object, where: str) -> Decimal:
    """A money amount, exactly: strings and JSON numbers (already Decimal via http.loads) alike."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, Decimal | int | str):
            return Decimal(value)
        if isinstance(value, float):
            # Only from a parser that did not keep decimals (the twilio SDK): its repr is the wire text.
            return Decimal(repr(value))
    except (ValueError, ArithmeticError):
        pass
    raise ProviderError(f"malformed response: {where} is {value!r}, not an amount")
