"""Date windows over UTC days. Inclusive on the command line, half-open [start, end) inside."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from usagectl.errors import EventError, InputError


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Window:
    start: date  # inclusive
    end: date  # exclusive

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InputError(f"empty date window: {self.start} .. {self.end - timedelta(days=1)}")

    @classmethod
    def covering(cls, days: Iterable[date]) -> Window:
        """The smallest window holding every one of `days` (and the days between them)."""
        listed = list(days)
        return cls(min(listed), max(listed) + timedelta(days=1))

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def __iter__(self) -> Iterator[date]:
        d = self.start
        while d < self.end:
            yield d
            d += timedelta(days=1)

    def __contains__(self, d: object) -> bool:
        return isinstance(d, date) and self.start <= d < self.end

    def label(self) -> str:
        return f"{self.start.isoformat()} .. {self.last.isoformat()}"

    @classmethod
    def day(cls, d: date) -> Window:
        return cls(d, d + timedelta(days=1))

    @classmethod
    def month(cls, year: int, month: int) -> Window:
        start = date(year, month, 1)
        end = date(year + (month == 12), month % 12 + 1, 1)
        return cls(start, end)

    @classmethod
    def last_days(cls, n: int, today: date | None = None) -> Window:
        """The n days ending with yesterday, the last complete UTC day: today is still being collected and is
        never rolled up, so a window through today would end on an empty day."""
        if n < 1:
            raise InputError(f"--days must be at least 1, got {n}")
        end = today or utc_today()
        return cls(end - timedelta(days=n), end)


def parse_date(text: str, option: str = "date", today: date | None = None) -> date:
    """YYYY-MM-DD, 'today', 'yesterday' or '-Nd' (N days ago)."""
    t = text.strip().lower()
    base = today or utc_today()
    if t == "today":
        return base
    if t == "yesterday":
        return base - timedelta(days=1)
    m = re.fullmatch(r"-(\d{1,4})d", t)
    if m:
        return base - timedelta(days=int(m.group(1)))
    try:
        return date.fromisoformat(t)
    except ValueError:
        raise InputError(
            f"--{option}: {text!r} is not a date (YYYY-MM-DD, today, yesterday or -Nd)"
        ) from None


def parse_month(text: str) -> Window:
    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise InputError(f"--month: {text!r} is not a month (YYYY-MM)")
    return Window.month(int(m.group(1)), int(m.group(2)))


def resolve_window(
    *,
    on: str | None = None,
    since: str | None = None,
    until: str | None = None,
    month: str | None = None,
    days: int | None = None,
    default: Window | None = None,
    today: date | None = None,
) -> Window:
    """One window from the mutually exclusive --date / --since --until / --month / --days options."""
    given = [n for n, v in (("--date", on), ("--since/--until", since or until), ("--month", month)) if v]
    if days is not None:
        given.append("--days")
    if len(given) > 1:
        raise InputError(f"use only one of {', '.join(given)}")
    if on:
        return Window.day(parse_date(on, "date", today))
    if since or until:
        if not since:
            raise InputError("--until needs --since")
        start = parse_date(since, "since", today)
        last = parse_date(until, "until", today) if until else (today or utc_today())
        if last < start:
            raise InputError(f"--until {last} is before --since {start}")
        return Window(start, last + timedelta(days=1))
    if month:
        return parse_month(month)
    if days is not None:
        return Window.last_days(days, today)
    if default is None:
        raise InputError("give a date window (--date, --since/--until or --month)")
    return default


# RFC 3339 section 5.6 (a space for the T as its note allows). datetime.fromisoformat alone also takes ISO 8601
# forms RFC 3339 does not (20250310T100000Z, week dates, +01:00:30 offsets).
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?", re.ASCII
).fullmatch
SHOWN_CHARS = 60


def show_value(text: str) -> str:
    """A value for a one-line reason: repr, cut short (a bad line can be megabytes)."""
    return repr(text) if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]!r}... ({len(text):,} characters)"


def parse_time(text: Any) -> datetime:
    """An RFC 3339 timestamp with an offset ('Z' or +HH:MM) -> an aware UTC datetime."""
    if not isinstance(text, str):
        raise EventError("time must be an RFC 3339 string")
    m = RFC3339(text)
    if m is None or m["offset"] is None:
        try:
            naive = datetime.fromisoformat(text).tzinfo is None
        except ValueError:
            naive = False
        if naive:
            raise EventError(f"time {show_value(text)} has no UTC offset (add Z or +HH:MM)")
        raise EventError(f"time {show_value(text)} is not an RFC 3339 timestamp (like 2026-11-24T10:00:00Z)")
    try:
        # RFC 3339 allows lower-case t/z, fromisoformat does not.
        dt = datetime.fromisoformat(text.upper())
    except ValueError:
        raise EventError(f"time {show_value(text)} is not a valid date and time") from None
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is in year 0 in UTC, 9999-12-31T23:59:59-01:00 in year 10000.
        raise EventError(f"time {show_value(text)} is out of range once converted to UTC") from None
