"""The values that cross layers: what a provider reports for a tenant-day, and how a provider call fails.

Near the bottom of the house (it imports only the meter catalogue), so the HTTP stack, the store and the providers can
all use these types without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter

from usagectl.meters import RAW_COLUMNS


@dataclass(frozen=True)
class ModelTokens:
    model: str
    tokens_in: int
    tokens_out: int
    cached_in: int = 0
    cache_write_in: int = 0  # part of tokens_in, like cached_in


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
        """The meters' raw columns (`meters.RAW_COLUMNS`) and their values."""
        return dict(zip(RAW_COLUMNS, _raw_values(self), strict=True))


class ProviderError(Exception):
    """A provider call failed. The message is safe to show and store: it never contains a credential."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status  # the HTTP status of the answer that failed, if there was one

    @property
    def server_side(self) -> str | None:
        """What failed on the provider's side, for an error no tenant of the request caused: "HTTP 503" (a 5xx, or
        a 429 still there after the retries) or "no answer" (connection refused or reset, a timeout); None for
        anything else (a 4xx, a malformed answer)."""
        if self.status is not None:
            return f"HTTP {self.status}" if self.status >= 500 or self.status == 429 else None
        return "no answer" if self.retryable else None


#: what `collect_days` returns per day: the row, or the reason that day could not be collected (the other days of
#: the same answer are still good; the failed day's stored row stays as it was).
DayResult = MetricRow | ProviderError


@dataclass(frozen=True)
class CheckResult:
    """One credential tried by `config check --online`."""

    name: str  # e.g. "twilio (platform account AC12...)"
    ok: bool
    detail: str


_raw_values = attrgetter(*RAW_COLUMNS)  # one C call per row written, for every column

# A meter added to the catalogue needs its raw columns here as typed fields.
assert all(c in MetricRow.__dataclass_fields__ for c in RAW_COLUMNS), "MetricRow lacks a meter's raw column"
