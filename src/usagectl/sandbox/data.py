"""What the sandbox providers report: scripted usage (tests) over deterministic synthetic usage (the demo).

Synthetic figures are a pure function of (seed, key, day), where the key is what the provider attributes usage
by (a Twilio account SID or phone number, a SendGrid subuser or category, an OpenAI project id). Scripted data
replaces the synthetic data for its key entirely, so a test states exactly what the provider holds.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

TWILIO_CATEGORIES = (
    "sms-outbound",
    "sms-inbound",
    "mms-outbound",
    "mms-inbound",
    "calls-outbound",
    "calls-inbound",
)
# Carrier fees are billed in categories of their own, beside the messages they are charged on.
TWILIO_FEES = ("sms-messages-carrierfees", "mms-messages-carrierfees")
# Twilio's totals categories: the sandbox serves them too, so a collector that sums every category double counts.
TWILIO_TOTALS = {
    "sms": ("sms-outbound", "sms-inbound"),
    "mms": ("mms-outbound", "mms-inbound"),
    "calls": ("calls-outbound", "calls-inbound"),
}
# The account's whole bill of the day: every category's price, carrier fees included.
TWILIO_TOTAL_PRICE = "totalprice"


def twilio_units(category: str) -> tuple[str, str]:
    """(count_unit, usage_unit) as Twilio reports them: an SMS is counted in messages and billed in segments."""
    if category.startswith("calls"):
        return "calls", "minutes"
    if category.startswith("sms-") and category not in TWILIO_FEES:
        return "messages", "segments"
    return "messages", "messages"


OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1")
_MODEL_RATES = {  # USD per 1M tokens (input, output): only to make synthetic costs plausible
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
}


@dataclass(frozen=True)
class UsageRecord:
    count: int  # events: messages, calls
    usage: Decimal  # what is billed: segments for SMS, messages for MMS, minutes for calls
    price: Decimal  # positive, in the account's price unit
    usage_unit: str | None = None  # None: the category's usual unit (twilio_units)


@dataclass(frozen=True)
class Message:
    sid: str
    account_sid: str
    from_: str
    to: str
    direction: str  # inbound | outbound-api | outbound-call | outbound-reply
    date_sent: datetime
    num_segments: int = 1
    num_media: int = 0
    price: Decimal | None = None  # negative, as Twilio reports it
    status: str | None = None  # None: received (inbound), accepted (0 segments) or delivered


@dataclass(frozen=True)
class Call:
    sid: str
    account_sid: str
    from_: str
    to: str
    direction: str  # inbound | outbound-api | outbound-dial
    start_time: datetime
    duration: int  # seconds
    price: Decimal | None = None
    # completed; busy, failed, no-answer, canceled (over, no duration); queued, ringing, in-progress (not over:
    # no duration, no price)
    status: str = "completed"


@dataclass(frozen=True)
class ModelUsage:
    model: str
    input_tokens: int
    output_tokens: int
    input_cached_tokens: int = 0
    num_model_requests: int = 1
    input_cache_write_tokens: int = 0  # part of input_tokens, as input_cached_tokens
    endpoint: str = "completions"  # or "embeddings" / "moderations" (input tokens only)


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _scale(seed: int, key: str, day: date) -> float:
    """A tenant's size (stable per key) times a weekly rhythm and a little daily noise."""
    size = 0.4 + _rng(seed, "size", key).random() * 2.6
    weekday = 0.55 if day.weekday() >= 5 else 1.0
    trend = 1.0 + 0.004 * (day.toordinal() % 90)
    return size * weekday * trend * (0.85 + 0.3 * _rng(seed, "noise", key, day).random())


def _sid(prefix: str, *parts: object) -> str:
    return prefix + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:32]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass
class World:
    """Everything the three fake providers know. Thread-safe: the servers read while a test writes."""

    seed: int = 0
    synthetic: bool = True
    # The day whose last seconds are still in flight when the night's collect runs (the demo's yesterday): each
    # synthetic number has a message still sending and a call still ringing on it, so the day is provisional.
    in_flight_day: date | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _records: dict[tuple[str, date], dict[str, UsageRecord]] = field(default_factory=dict, repr=False)
    _scripted_accounts: set[str] = field(default_factory=set, repr=False)
    _price_units: dict[str, str] = field(default_factory=dict, repr=False)
    _messages: list[Message] = field(default_factory=list, repr=False)
    _calls: list[Call] = field(default_factory=list, repr=False)
    _scripted_numbers: set[str] = field(default_factory=set, repr=False)
    _account_numbers: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _version: int = field(default=0, repr=False)

    @property
    def version(self) -> tuple[int, date | None]:
        """Changes whenever what the Twilio listings hold may have (a scripted message, call or number)."""
        return self._version, self.in_flight_day

    _email: dict[tuple[str, str, date], dict[str, int]] = field(default_factory=dict, repr=False)
    _scripted_email: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _ai: dict[tuple[str, date], list[ModelUsage]] = field(
        default_factory=lambda: defaultdict(list), repr=False
    )
    _ai_cost: dict[tuple[str, date], Decimal | str] = field(default_factory=dict, repr=False)
    _scripted_projects: set[str] = field(default_factory=set, repr=False)

    # ---- scripting (tests) -------------------------------------------------------------------------------

    def set_usage_record(
        self,
        account_sid: str,
        day: date,
        category: str,
        count: int,
        *,
        usage: Decimal | int | None = None,
        price: Decimal | str = "0",
        usage_unit: str | None = None,
    ) -> None:
        """`usage` (segments, messages, minutes) defaults to `count`. The account's `totalprice` is the sum of
        every category's price unless set as a category of its own."""
        with self._lock:
            self._scripted_accounts.add(account_sid)
            self._records.setdefault((account_sid, day), {})[category] = UsageRecord(
                count, Decimal(count if usage is None else usage), Decimal(price), usage_unit
            )

    def set_price_unit(self, account_sid: str, unit: str) -> None:
        """The currency an account is billed in (`price_unit` on its records, messages and calls); USD if unset."""
        with self._lock:
            self._price_units[account_sid] = unit
            self._version += 1

    def price_unit(self, account_sid: str) -> str:
        with self._lock:
            return self._price_units.get(account_sid, "USD")

    def script_account(self, account_sid: str) -> None:
        """Make an account report nothing but what is scripted (zero usage on other days)."""
        with self._lock:
            self._scripted_accounts.add(account_sid)

    def add_message(
        self,
        account_sid: str,
        *,
        from_: str,
        to: str,
        direction: str,
        date_sent: datetime,
        num_segments: int = 1,
        num_media: int = 0,
        price: Decimal | str | None = None,
        status: str | None = None,
    ) -> Message:
        with self._lock:
            msg = Message(
                _sid("SM", account_sid, len(self._messages), from_, to, date_sent),
                account_sid,
                from_,
                to,
                direction,
                date_sent.astimezone(UTC),
                num_segments,
                num_media,
                None if price is None else Decimal(price),
                status,
            )
            self._messages.append(msg)
            self._version += 1
            self._scripted_numbers.update((from_, to))
            return msg

    def add_call(
        self,
        account_sid: str,
        *,
        from_: str,
        to: str,
        direction: str,
        start_time: datetime,
        duration: int,
        price: Decimal | str | None = None,
        status: str = "completed",
    ) -> Call:
        with self._lock:
            call = Call(
                _sid("CA", account_sid, len(self._calls), from_, to, start_time),
                account_sid,
                from_,
                to,
                direction,
                start_time.astimezone(UTC),
                duration,
                None if price is None else Decimal(price),
                status,
            )
            self._calls.append(call)
            self._version += 1
            self._scripted_numbers.update((from_, to))
            return call

    def add_account_numbers(self, account_sid: str, numbers: list[str]) -> None:
        """Numbers the account owns: a listing of the account without a From/To filter carries their synthetic
        traffic too."""
        with self._lock:
            self._account_numbers.setdefault(account_sid, set()).update(numbers)
            self._version += 1

    def account_numbers(self, account_sid: str) -> list[str]:
        with self._lock:
            return sorted(self._account_numbers.get(account_sid, ()))

    def script_numbers(self, *numbers: str) -> None:
        with self._lock:
            self._scripted_numbers.update(numbers)
            self._version += 1

    def set_email_stats(
        self, kind: str, name: str, day: date, *, requests: int, delivered: int | None = None
    ) -> None:
        """kind: 'subuser' or 'category'."""
        with self._lock:
            self._scripted_email.add((kind, name))
            self._email[(kind, name, day)] = {
                "requests": requests,
                "processed": requests,
                "delivered": requests if delivered is None else delivered,
                "bounces": requests - (requests if delivered is None else delivered),
            }

    def script_email(self, kind: str, name: str) -> None:
        with self._lock:
            self._scripted_email.add((kind, name))

    def set_ai_usage(self, project_id: str, day: date, usage: list[ModelUsage]) -> None:
        with self._lock:
            self._scripted_projects.add(project_id)
            self._ai[(project_id, day)] = list(usage)

    def set_ai_cost(self, project_id: str, day: date, value: Decimal | str) -> None:
        """`value` as a Decimal is sent as a JSON number, as a str as a JSON string (the API does both)."""
        with self._lock:
            self._scripted_projects.add(project_id)
            self._ai_cost[(project_id, day)] = value

    # ---- reading (the servers) ---------------------------------------------------------------------------

    def usage_records(self, account_sid: str, day: date) -> dict[str, UsageRecord]:
        """Every category with usage that day, totals included."""
        with self._lock:
            scripted = account_sid in self._scripted_accounts
            records = dict(self._records.get((account_sid, day), {}))
        if not scripted and self.synthetic:
            records = self._synthetic_records(account_sid, day)
        billed = sum((r.price for r in records.values()), Decimal(0))
        for total, parts in TWILIO_TOTALS.items():
            got = [records[p] for p in parts if p in records]
            if got and total not in records:
                records[total] = UsageRecord(
                    sum(r.count for r in got),
                    sum((r.usage for r in got), Decimal(0)),
                    sum((r.price for r in got), Decimal(0)),
                )
        if billed and TWILIO_TOTAL_PRICE not in records:
            records[TWILIO_TOTAL_PRICE] = UsageRecord(0, billed, billed)
        return records

    def _synthetic_records(self, account_sid: str, day: date) -> dict[str, UsageRecord]:
        s = _scale(self.seed, account_sid, day)
        rng = _rng(self.seed, "twilio-records", account_sid, day)
        sms_out = int(380 * s * rng.uniform(0.9, 1.1))
        sms_in = int(sms_out * rng.uniform(0.2, 0.4))
        mms_out = int(sms_out * rng.uniform(0.03, 0.08))
        mms_in = int(mms_out * rng.uniform(0.1, 0.5))
        calls_out = int(14 * s * rng.uniform(0.8, 1.2))
        calls_in = int(calls_out * rng.uniform(0.5, 0.9))
        minutes_out = sum(rng.randint(1, 9) for _ in range(calls_out))
        minutes_in = sum(rng.randint(1, 6) for _ in range(calls_in))
        # A long SMS is billed per segment: segments outnumber messages. About a third of the accounts report SMS
        # usage in `messages`, as the spec describes it, where usage is the count.
        seg_out = sms_out + int(sms_out * rng.uniform(0.1, 0.4))
        seg_in = sms_in + int(sms_in * rng.uniform(0.0, 0.2))
        sms_unit = "messages" if _rng(self.seed, "sms-unit", account_sid).random() < 1 / 3 else None
        if sms_unit:
            seg_out, seg_in = sms_out, sms_in
        return {
            "sms-outbound": UsageRecord(sms_out, Decimal(seg_out), Decimal("0.0079") * seg_out, sms_unit),
            "sms-inbound": UsageRecord(sms_in, Decimal(seg_in), Decimal("0.0079") * seg_in, sms_unit),
            "sms-messages-carrierfees": UsageRecord(sms_out, Decimal(sms_out), Decimal("0.0030") * sms_out),
            "mms-outbound": UsageRecord(mms_out, Decimal(mms_out), Decimal("0.0200") * mms_out),
            "mms-inbound": UsageRecord(mms_in, Decimal(mms_in), Decimal("0.0100") * mms_in),
            "calls-outbound": UsageRecord(calls_out, Decimal(minutes_out), Decimal("0.0140") * minutes_out),
            "calls-inbound": UsageRecord(calls_in, Decimal(minutes_in), Decimal("0.0085") * minutes_in),
        }

    def messages(self, account_sid: str) -> list[Message]:
        with self._lock:
            return [m for m in self._messages if m.account_sid == account_sid]

    def synthetic_messages(self, account_sid: str, number: str, day: date) -> list[Message]:
        """The synthetic traffic of one of our numbers on one day (empty for scripted numbers)."""
        with self._lock:
            if not self.synthetic or number in self._scripted_numbers:
                return []
        rng = _rng(self.seed, "messages", number, day)
        n = int(24 * _scale(self.seed, number, day))
        out: list[Message] = []
        for i in range(n):
            inbound = rng.random() < 0.3
            media = 1 if rng.random() < 0.08 else 0
            segments = 1 if media else rng.choice((1, 1, 1, 2, 3))
            other = f"+1555{rng.randint(0, 9999999):07d}"
            price: Decimal | None = Decimal("-0.0200") if media else Decimal("-0.0079") * segments
            # A few outbound messages fail (unbilled, unpriced); an MMS has an MM sid.
            failed = not inbound and rng.random() < 0.03
            out.append(
                Message(
                    _sid("MM" if media else "SM", number, day, i),
                    account_sid,
                    other if inbound else number,
                    number if inbound else other,
                    "inbound" if inbound else rng.choice(("outbound-api", "outbound-api", "outbound-reply")),
                    _midnight(day) + timedelta(seconds=rng.randint(0, 86399)),
                    segments,
                    media,
                    None if failed else price,
                    "failed" if failed else None,
                )
            )
        if day == self.in_flight_day:
            out.append(
                Message(
                    _sid("SM", number, day, "sending"),
                    account_sid,
                    number,
                    f"+1555{rng.randint(0, 9999999):07d}",
                    "outbound-api",
                    _midnight(day) + timedelta(seconds=86399),
                    1,
                    0,
                    None,
                    "sending",
                )
            )
        return out

    def calls(self, account_sid: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.account_sid == account_sid]

    def synthetic_calls(self, account_sid: str, number: str, day: date) -> list[Call]:
        with self._lock:
            if not self.synthetic or number in self._scripted_numbers:
                return []
        rng = _rng(self.seed, "calls", number, day)
        out: list[Call] = []
        for i in range(int(4 * _scale(self.seed, number, day))):
            inbound = rng.random() < 0.4
            duration = rng.randint(3, 900)
            other = f"+1555{rng.randint(0, 9999999):07d}"
            minutes = -(-duration // 60)
            out.append(
                Call(
                    _sid("CA", number, day, i),
                    account_sid,
                    other if inbound else number,
                    number if inbound else other,
                    "inbound" if inbound else "outbound-api",
                    _midnight(day) + timedelta(seconds=rng.randint(0, 86399)),
                    duration,
                    Decimal("-0.0085" if inbound else "-0.0140") * minutes,
                )
            )
        if day == self.in_flight_day:
            start = _midnight(day) + timedelta(seconds=86390)
            out.append(Call(_sid("CA", number, day, "ringing"), account_sid, number,
                            f"+1555{rng.randint(0, 9999999):07d}", "outbound-api", start, 0, None, "ringing"))  # fmt: skip
        return out

    def email_stats(self, kind: str, name: str, day: date) -> dict[str, int]:
        zero = {"requests": 0, "processed": 0, "delivered": 0, "bounces": 0}
        with self._lock:
            if (kind, name) in self._scripted_email:
                return dict(self._email.get((kind, name, day), zero))
        if not self.synthetic:
            return zero
        rng = _rng(self.seed, "email", kind, name, day)
        requests = int(900 * _scale(self.seed, f"{kind}:{name}", day))
        bounces = int(requests * rng.uniform(0.005, 0.03))
        return {
            "requests": requests,
            "processed": requests,
            "delivered": requests - bounces,
            "bounces": bounces,
        }

    def ai_usage(self, project_id: str, day: date) -> list[ModelUsage]:
        with self._lock:
            if project_id in self._scripted_projects:
                return list(self._ai.get((project_id, day), []))
        if not self.synthetic:
            return []
        rng = _rng(self.seed, "openai", project_id, day)
        s = _scale(self.seed, project_id, day)
        out = []
        for model, weight in zip(OPENAI_MODELS, (1.0, 0.25), strict=True):
            tokens_in = int(60_000 * s * weight * rng.uniform(0.7, 1.3))
            out.append(
                ModelUsage(
                    model,
                    tokens_in,
                    int(tokens_in * rng.uniform(0.15, 0.35)),
                    int(tokens_in * rng.uniform(0.0, 0.2)),
                    max(1, tokens_in // 1500),
                )
            )
        return out

    def ai_cost(self, project_id: str, day: date) -> Decimal | str | None:
        with self._lock:
            if project_id in self._scripted_projects:
                return self._ai_cost.get((project_id, day))
        usage = self.ai_usage(project_id, day)
        if not usage:
            return None
        total = Decimal(0)
        for u in usage:
            rate_in, rate_out = _MODEL_RATES.get(u.model, (Decimal(1), Decimal(4)))
            total += (rate_in * u.input_tokens + rate_out * u.output_tokens) / 1_000_000
        return total.quantize(Decimal("0.000001"))
