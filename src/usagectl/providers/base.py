"""The one interface every usage source implements, and the value it returns.

A provider turns (tenant, window of UTC days) into one `MetricRow` per day, or the `ProviderError` of a day it could
not collect; the collector writes each row with `store.metrics.upsert_metric`, which replaces whatever that source
wrote for that tenant-day before (idempotent re-collection). The value types live in usagectl.records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Protocol, TypeGuard

from usagectl.config import TenantConfig
from usagectl.periods import Window
from usagectl.records import DayResult, ProviderError


class Provider(Protocol):
    """A usage source. Implementations must be safe to call from several worker threads at once."""

    #: the `usage_metrics.source` value this provider writes
    source: str

    def applies_to(self, tenant: TenantConfig) -> bool:
        """Whether this tenant is attributed through this source at all."""
        ...

    def collect_days(self, tenant: TenantConfig, window: Window) -> Mapping[date, DayResult]:
        """The tenant's usage on each UTC day of the window: a row, or the error of a day that could not be
        collected (the other days stay good). Raises ProviderError when nothing could be collected."""
        ...

    def close(self) -> None: ...


class BatchProvider(Provider, Protocol):
    """A source that answers for several tenants with one request set (tenants sharing an account: OpenAI
    projects of one organization, SendGrid subusers or categories of one key, Twilio numbers of the platform
    account). The collector hands it the tenants that need the same days; it groups them into `batches`, and a
    batch whose `collect_batch` raises is split and asked again, so failures stay per tenant."""

    def batches(self, tenants: Sequence[TenantConfig]) -> list[list[TenantConfig]]:
        """The tenants, grouped so that each group can be asked at once (same account, within the API's
        limits); a tenant that cannot be batched is a group of its own."""
        ...

    def collect_batch(
        self, tenants: Sequence[TenantConfig], window: Window
    ) -> Mapping[str, Mapping[date, DayResult]]:
        """Per tenant slug, what `collect_days` would answer for it. Raises ProviderError when the request set
        failed as a whole (the collector then splits the batch)."""
        ...


def is_batched(provider: Provider) -> TypeGuard[BatchProvider]:
    return callable(getattr(provider, "collect_batch", None)) and callable(getattr(provider, "batches", None))


def as_int(value: object, where: str) -> int:
    """A provider count (often a string on the wire) as an int; anything else is a malformed response."""
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)  # the usual "3": called for every message of a listing
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
        if type(value) is str:
            return Decimal(value)
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
