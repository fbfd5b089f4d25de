"""Twilio through the twilio SDK, with our httpx stack underneath (`twilio.http.HttpClient`).

Attribution: a subaccount -> Daily Usage Records of that subaccount (IncludeSubaccounts=false); phone numbers on
the platform account -> the account's Messages and Calls of each UTC day, listed once for every phone-number tenant
and attributed by number (`owner_of`), or the lists filtered by each number (`numbers_listing`); the tenant's own
account -> Daily Usage Records of that account (IncludeSubaccounts=true: its subaccounts are the tenant's too).

Units, as twilio-oai's UsageRecord defines them: `count` is the number of events (`count_unit`: messages, calls)
and `usage` the billed amount in `usage_unit`, "such as `minutes` for calls or `messages` for SMS". We meter
`usage` in the unit the record gives: SMS in `messages` (the spec's wording and its one example) or `segments`
(an account billed per segment), MMS in `messages`, calls in `minutes`; the day's note says which SMS unit it was
counted in, and a unit neither documented nor known fails that day. A record is one UTC day (`start_date` =
`end_date`): one spanning several days fails the listing, never one day's usage. Prices are in `price_unit`, the
account's currency: a price in anything but USD leaves the day's provider cost unknown with the reason recorded.

Messages and calls (numbers mode), by their `status` (twilio-oai message_enum_status, call_enum_status): a message
that `failed` or was `canceled` is not billed and not counted; one `queued`, `accepted`, `scheduled`, `sending` or
`receiving` is not final (the day is stored provisional and re-collected). A call `queued`, `ringing` or
`in-progress` is not over (its `duration` is empty until it is): the day is provisional; `busy`, `failed`,
`no-answer` and `canceled` calls are over and last 0 minutes. An MMS is a message whose sid starts `MM` (the spec's
mark) or that has `num_media` > 0. A status outside the spec fails the day.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any

from usagectl.config import Config, TenantConfig, TwilioProvider
from usagectl.errors import ConfigError
from usagectl.http import Http, PageGuard, Policy, loads, scrub
from usagectl.periods import Window
from usagectl.providers.base import as_decimal, as_int
from usagectl.records import CheckResult, DayResult, MetricRow, ProviderError
from usagectl.store.directory import Attribution

SOURCE = "twilio"
PAGE_SIZE = 1000  # Twilio's maximum: fewest requests
SMS_UNITS = ("messages", "segments")  # the spec's unit for SMS, and per-segment billing
# category -> (column, the usage_units Twilio may bill it in)
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sms-outbound": ("sms_outbound_count", SMS_UNITS),
    "sms-inbound": ("sms_inbound_count", SMS_UNITS),
    "mms-outbound": ("mms_outbound_count", ("messages",)),
    "mms-inbound": ("mms_inbound_count", ("messages",)),
    "calls-outbound": ("voice_minutes", ("minutes",)),
    "calls-inbound": ("voice_minutes", ("minutes",)),
}
# Message statuses (message_enum_status): billed and final, not billed, not final yet.
BILLED_MESSAGE = {"sent", "delivered", "undelivered", "received", "read", "partially_delivered"}
UNBILLED_MESSAGE = {"failed", "canceled"}
PENDING_MESSAGE = {"queued", "accepted", "scheduled", "sending", "receiving"}
# Call statuses (call_enum_status): over with a duration, over without one (0 minutes), not over yet.
COMPLETED_CALL = {"completed"}
UNANSWERED_CALL = {"busy", "failed", "no-answer", "canceled"}
PENDING_CALL = {"queued", "ringing", "in-progress"}
# The account's whole daily bill, carrier fees and every other product included.
TOTAL_PRICE = "totalprice"
# Call directions (twilio-oai call_enum_direction): SIP trunking calls are metered like any other call.
# trunking-terminating runs from the customer's infrastructure out to the phone network.
OUTBOUND = {"outbound-api", "outbound-dial", "outbound-call", "outbound-reply", "trunking-terminating"}
INBOUND = {"inbound", "trunking-originating"}

log = logging.getLogger(__name__)


def error_message(body: Any, fallback: str) -> str:
    """Twilio errors: {"code": 20003, "message": "Authenticate", "more_info": ..., "status": 401}."""
    if isinstance(body, dict) and body.get("message"):
        code = body.get("code")
        return f"{body['message']}" + (f" (Twilio error {code})" if code else "")
    return fallback


class _SdkHttpClient:
    """Adapter the SDK calls for every request; built lazily so the SDK is imported only when collecting."""

    @staticmethod
    def build(http: Http) -> Any:
        from twilio.http import HttpClient
        from twilio.http.response import Response

        class HttpxClient(HttpClient):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__(log, is_async=False, timeout=http.policy.timeout)

            def request(
                self,
                method: str,
                uri: str,
                params: dict[str, object] | None = None,
                data: dict[str, object] | None = None,
                headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None,
                timeout: float | None = None,
                allow_redirects: bool = False,
            ) -> Any:
                response = http.send(method, uri, params=params, headers=headers, auth=auth)
                return Response(response.status_code, response.text, dict(response.headers))

        return HttpxClient()


class Twilio:
    source = SOURCE

    def __init__(
        self,
        http: Http,
        base_url: str,
        platform: tuple[str, str] | None,
        platform_account: str | None,
        tenant_tokens: dict[str, str],
        token_errors: dict[str, str] | None = None,
        numbers_listing: str = "auto",
    ) -> None:
        self.http = http
        self.base_url = base_url
        self.platform = platform  # (account or API key SID, secret) of the platform account
        self.platform_account = platform_account  # the account SID that owns the platform's resources
        self.tenant_tokens = tenant_tokens  # slug -> the tenant's own auth token
        # slug -> why the tenant's own token could not be read: fails that tenant's tasks only.
        self.token_errors = token_errors or {}
        # Who held which number on which day (store.directory, set by the collector): a number reassigned to
        # another tenant is that tenant's from the day it moved. None: every configured number, every day.
        self.attribution: Attribution | None = None
        self.numbers_listing = numbers_listing  # auto | account | number (config: [providers.twilio])
        # Days of the phone-number listing asked side by side; None: up to the provider's concurrency cap.
        self.parallel_days: int | None = None
        self._sdk_http = _SdkHttpClient.build(http)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def applies_to(self, tenant: TenantConfig) -> bool:
        return tenant.twilio is not None

    def close(self) -> None:
        self.http.close()

    # ---- SDK plumbing --------------------------------------------------------------------------------------

    def _client(self, username: str, password: str, account_sid: str) -> Any:
        with self._lock:
            key = (username, account_sid)
            client = self._clients.get(key)
            if client is None:
                from twilio.rest import Client

                client = Client(username, password, account_sid=account_sid, http_client=self._sdk_http)
                client.api.base_url = self.base_url  # regional endpoint, proxy or sandbox
                self._clients[key] = client
            return client

    def _account(self, tenant: TenantConfig) -> Any:
        """The SDK handle on the account whose resources hold this tenant's usage."""
        tw = tenant.twilio
        assert tw is not None
        if tw.mode == "own":
            assert tw.account_sid is not None
            if tenant.slug in self.token_errors:
                raise ProviderError(f"{SOURCE}: {self.token_errors[tenant.slug]}")
            token = self.tenant_tokens.get(tenant.slug)
            if token is None:  # a directory tenant's own account: its token is named by the directory
                assert tw.auth_token is not None
                try:
                    token = tw.auth_token.resolve(
                        f"tenant {tenant.slug}: twilio_auth_token"
                    ).get_secret_value()
                except ConfigError as exc:
                    raise ProviderError(f"{SOURCE}: {exc}") from None
                self.tenant_tokens[tenant.slug] = token
                self.http.secrets = (*self.http.secrets, token)
            return self._client(tw.account_sid, token, tw.account_sid).api.v2010.accounts(tw.account_sid)
        if self.platform is None:
            raise ProviderError(f"{SOURCE}: [providers.twilio] account_sid and auth_token are not configured")
        user, secret = self.platform
        owner = self.platform_account
        assert owner is not None
        client = self._client(user, secret, owner)
        target = tw.subaccount_sid if tw.mode == "subaccount" else owner
        return client.api.v2010.accounts(target)

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        """One SDK call with its failures as ProviderError (never a credential in the message)."""
        from twilio.base.exceptions import TwilioException

        try:
            return fn()
        except TwilioException as exc:
            raise _provider_error(exc, what, self.http.secrets) from None
        except ValueError as exc:  # the SDK's json.loads on a malformed body
            raise ProviderError(f"{SOURCE}: malformed JSON in the response to {what}: {exc}") from None

    def _pages(self, first: Callable[[], Any], what: str) -> Iterable[dict[str, Any]]:
        """Every record of a list (as the JSON object on the wire, see `_records`), following next_page_uri; a
        pagination that never ends is an error."""
        guard = PageGuard(SOURCE, what)
        page = self._call(first, what)
        while page is not None:
            yield from _records(page, what)
            url = page.next_page_url
            if not url:
                return
            guard.follow(url)
            page = self._call(page.next_page, what)

    # ---- collection ----------------------------------------------------------------------------------------

    def collect_days(self, tenant: TenantConfig, window: Window) -> dict[date, DayResult]:
        tw = tenant.twilio
        assert tw is not None
        account = self._account(tenant)
        if tw.mode == "numbers":
            return self._numbers([tenant], window)[tenant.slug]
        return self._usage_records(account, window, include_subaccounts=tw.mode == "own")

    def batches(self, tenants: Sequence[TenantConfig]) -> list[list[TenantConfig]]:
        """Every phone-number tenant together (the platform account's listings answer for all of them); a
        subaccount or own account alone (its usage records are its own request)."""
        # One pass: `t not in numbers` compared pydantic models pairwise, quadratic in the tenant count.
        numbers: list[TenantConfig] = []
        alone: list[list[TenantConfig]] = []
        for t in tenants:
            if t.twilio is not None and t.twilio.mode == "numbers":
                numbers.append(t)
            else:
                alone.append([t])
        return ([numbers] if numbers else []) + alone

    def collect_batch(
        self, tenants: Sequence[TenantConfig], window: Window
    ) -> dict[str, dict[date, DayResult]]:
        if all(t.twilio is not None and t.twilio.mode == "numbers" for t in tenants):
            try:
                return self._numbers(tenants, window)
            except ProviderError as exc:
                if self.numbers_listing == "number":
                    raise  # a number's own listing failed: the collector splits the batch to find whose
                # The account's listing does not depend on which tenants asked: a smaller batch would fail the
                # same way, so the failure is every tenant's (for each day), not a reason to split.
                return {t.slug: dict.fromkeys(window, exc) for t in tenants}
        return {t.slug: self.collect_days(t, window) for t in tenants}

    def numbers_on(self, tenant: TenantConfig, day: date) -> list[str]:
        """The tenant's numbers on `day`: those the directory says it held that day (Attribution.owner), or,
        without a directory history of its numbers, the configured list."""
        tw = tenant.twilio
        assert tw is not None
        a = self.attribution
        if a is None or not a.knows(tenant.slug, "phone_number"):
            return list(tw.phone_numbers)
        return [
            n for n in tw.phone_numbers if (h := a.owner("phone_number", n, day)) and h.slug == tenant.slug
        ]

    def _usage_records(
        self, account: Any, window: Window, *, include_subaccounts: bool
    ) -> dict[date, DayResult]:
        start, end = window.start, window.last
        counts: dict[date, dict[str, int]] = {d: {} for d in window}
        metered: dict[date, Decimal] = {d: Decimal(0) for d in window}
        total: dict[date, Decimal | None] = dict.fromkeys(window)
        foreign: dict[date, str] = {}  # day -> a currency that is not USD
        failed: dict[date, ProviderError] = {}
        sms_units: dict[date, set[str]] = {d: set() for d in window}
        # One listing of every category (Twilio has hundreds; a page of 1000 holds a few days of them) costs one
        # request where a request per category would cost six.
        what = f"usage records {start}..{end}"
        for rec in self._pages(
            partial(
                account.usage.records.daily.page,
                start_date=start.isoformat(),
                end_date=end.isoformat(),
                include_subaccounts=include_subaccounts,
                page_size=PAGE_SIZE,
            ),
            what,
        ):
            category = rec.get("category")
            day = _record_span(rec, what)
            if day not in counts or (category not in CATEGORIES and category != TOTAL_PRICE):
                continue  # the other totals (sms, calls, ...) and everything we do not meter
            price, price_unit, usage_unit = rec.get("price"), rec.get("price_unit"), rec.get("usage_unit")
            try:
                if category == TOTAL_PRICE:
                    if not _usd(price_unit):
                        foreign[day] = str(price_unit)
                    elif price is not None and price != "":
                        total[day] = abs(as_decimal(price, f"{category} price on {day}"))
                    continue
                column, units = CATEGORIES[category]
                unit = str(usage_unit or "").lower()
                if unit not in units:
                    raise ProviderError(
                        f"{SOURCE}: {category} on {day} is billed in {usage_unit!r}, expected "
                        + " or ".join(repr(u) for u in units)
                    )
                if units is SMS_UNITS:
                    sms_units[day].add(unit)
                # `usage` is what Twilio bills (messages or segments, minutes already rounded up per call);
                # `count` is events (an SMS of 3 segments counts 1).
                usage = rec.get("usage")
                amount = as_decimal(usage, f"{category} usage on {day}")
                if amount < 0:
                    raise ProviderError(f"malformed response: {category} usage on {day} is {usage!r}")
                value = int(amount.to_integral_value(rounding="ROUND_CEILING"))
                counts[day][column] = counts[day].get(column, 0) + value
                if price is not None and price != "":
                    if not _usd(price_unit):
                        foreign[day] = str(price_unit)
                    else:
                        metered[day] += abs(as_decimal(price, f"{category} price on {day}"))
            except ProviderError as exc:
                # One malformed record fails its day, never the listing's other days.
                failed.setdefault(
                    day, exc if str(exc).startswith(SOURCE) else ProviderError(f"{SOURCE}: {exc}")
                )
        out: dict[date, DayResult] = {}
        for d in window:
            if d in failed:
                out[d] = failed[d]
                continue
            cost: Decimal | None
            if d in foreign:
                cost = None
                note = f"provider cost unknown: Twilio priced {d} in {foreign[d]!r}, not USD"
            elif total[d] is not None:
                cost = total[d]
                note = f"provider cost is Twilio's totalprice; messaging and voice part ${metered[d]}"
            elif metered[d] == 0:
                cost, note = Decimal(0), None  # nothing was billed: Twilio lists no totalprice
            else:
                cost = None
                note = "provider cost unknown: Twilio listed no totalprice for a day with priced usage"
            if sms_units[d]:
                counted = f"SMS counted in {' and '.join(sorted(sms_units[d]))}"
                note = f"{counted}; {note}" if note else counted
            out[d] = MetricRow(**counts[d], provider_cost_usd=cost, note=note)  # type: ignore[arg-type]
        return out

    def _ours(
        self, first: Callable[[], Any], what: str, day: date, outbound: bool, seen: set[str], when: str
    ) -> Iterator[Any]:
        """The records of a list filtered by one of our numbers that are ours on `day`, each once. A list by
        `From=` our number also holds inbound records sent *from* it by the other side of a number-to-number
        exchange (and `To=` outbound ones): those belong to whoever received them."""
        stamp = _rfc2822_day(day)
        for r in self._pages(first, what):
            sid: Any = r.get("sid")
            if sid in seen or not _same_day(r.get(when), day, stamp):
                continue
            if _outbound(r.get("direction"), sid) != outbound:
                continue
            seen.add(sid)
            yield r

    def _numbers(self, tenants: Sequence[TenantConfig], window: Window) -> dict[str, dict[date, DayResult]]:
        """The phone-number tenants' days, from the platform account's listings of each day (once, attributed
        locally by number) or from the per-number filters, whichever `numbers_listing` picks. A record the spec
        does not allow fails that tenant's day only; a failed request raises (the collector splits a batch)."""
        account = self._account(tenants[0])
        owners: dict[str, str] = {}  # number -> tenant slug
        for t in tenants:
            assert t.twilio is not None
            for number in t.twilio.phone_numbers:
                owners.setdefault(number, t.slug)
        days = list(window)
        one_day = partial(self._numbers_day, account, tenants, owners, frozenset(t.slug for t in tenants))
        # Each day's listing is a chain of pages (each next_page_uri comes from the page before), so a busy
        # account's night is as long as its days' chains one after the other: the days are listed side by side,
        # in up to `parallel_days` threads (the provider's cap still bounds the requests in flight). A failed day
        # raises as before, whichever finished first.
        width = min(len(days), self.parallel_days or self.http.policy.max_concurrency)
        if width > 1:
            with ThreadPoolExecutor(max_workers=width, thread_name_prefix="twilio-day") as pool:
                per_day = list(pool.map(one_day, days))
        else:
            per_day = [one_day(day) for day in days]
        out: dict[str, dict[date, DayResult]] = {t.slug: {} for t in tenants}
        for day, answers in zip(days, per_day, strict=True):
            for slug, result in answers.items():
                out[slug][day] = result
        return out

    def _numbers_day(
        self,
        account: Any,
        tenants: Sequence[TenantConfig],
        owners: dict[str, str],
        batch: frozenset[str],
        day: date,
    ) -> dict[str, DayResult]:
        """The phone-number tenants' rows of one day (see `_numbers`)."""
        tallies = {t.slug: Tally() for t in tenants}
        failed: dict[str, ProviderError] = {}
        for kind in ("messages", "calls"):
            records = None
            if self.numbers_listing != "number":
                # "auto": worth it while the day's listing takes fewer pages than the per-number filters
                # (From= and To= each number) would take requests; past that it stops, having spent at
                # most that many requests.
                budget = None if self.numbers_listing == "account" else 2 * len(owners)
                records = self._account_day(account, kind, day, budget)
            stream = (
                self._attributed(records, owners, day, kind, batch)
                if records is not None
                else self._by_number(account, tenants, day, kind)
            )
            for slug, outbound, r in stream:
                if slug in failed:
                    continue
                try:
                    if outbound is None:
                        raise r
                    if kind == "messages":
                        tallies[slug].message(r, outbound)
                    else:
                        tallies[slug].call(r)
                except ProviderError as exc:
                    failed[slug] = ProviderError(f"{SOURCE}: {day}: {exc}")
        return {t.slug: failed.get(t.slug) or tallies[t.slug].row(day.isoformat()) for t in tenants}

    def _list(self, account: Any, kind: str, day: date, **by_number: str) -> Callable[[], Any]:
        if kind == "messages":
            return partial(account.messages.page, date_sent=day.isoformat(), page_size=PAGE_SIZE, **by_number)
        return partial(account.calls.page, start_time=day.isoformat(), page_size=PAGE_SIZE, **by_number)

    def _account_day(
        self, account: Any, kind: str, day: date, budget: int | None
    ) -> list[dict[str, Any]] | None:
        """Every message (or call) of the account on `day`, all pages; None once more than `budget` pages."""
        what = f"{kind} of the account on {day}"
        guard = PageGuard(SOURCE, what)
        page = self._call(self._list(account, kind, day), what)
        pages, records = 1, []
        while True:
            records.extend(_records(page, what))
            url = page.next_page_url
            if not url:
                return records
            if budget is not None and pages >= budget:
                return None
            guard.follow(url)
            page = self._call(page.next_page, what)
            pages += 1

    def _attributed(
        self, records: list[Any], owners: dict[str, str], day: date, kind: str, batch: frozenset[str]
    ) -> Iterator[tuple[str, bool | None, Any]]:
        """(tenant, outbound, record) for the account's records of `day` on the tenants' numbers; (tenant, None,
        error) for one that cannot be attributed."""
        when = "date_sent" if kind == "messages" else "start_time"
        stamp = _rfc2822_day(day)
        attribution = self.attribution
        for r in records:
            if not _same_day(r.get(when), day, stamp):
                continue
            # Most of a busy account's records are on numbers of no tenant in the batch: a key test on `owners`
            # rules them out before `owner_of` (which would say None for anything but a str key of it too).
            frm, to = r.get("from"), r.get("to")
            sender = (
                owner_of(owners, frm, day, attribution, batch) if type(frm) is str and frm in owners else None
            )
            receiver = (
                owner_of(owners, to, day, attribution, batch) if type(to) is str and to in owners else None
            )
            if sender is None and receiver is None:
                continue  # nobody's numbers
            try:
                outbound = _outbound(r.get("direction"), r.get("sid"))
            except ProviderError as exc:
                for slug in {sender, receiver} - {None}:
                    assert slug is not None
                    yield slug, None, exc
                continue
            # An outbound record is its sender's, an inbound one its receiver's: a number-to-number exchange
            # between two tenants is two records, one each.
            slug = sender if outbound else receiver
            if slug is not None:
                yield slug, outbound, r

    def _by_number(
        self, account: Any, tenants: Sequence[TenantConfig], day: date, kind: str
    ) -> Iterator[tuple[str, bool | None, Any]]:
        """The same as `_attributed`, from the lists filtered by each number (From= outbound, To= inbound)."""
        when = "date_sent" if kind == "messages" else "start_time"
        for t in tenants:
            assert t.twilio is not None
            seen: set[str] = set()
            for number in self.numbers_on(t, day):
                for outbound, by_number in ((True, {"from_": number}), (False, {"to": number})):
                    side = "outbound" if outbound else "inbound"
                    what = f"{kind} {side} {number} {day}"
                    try:
                        for r in self._ours(
                            self._list(account, kind, day, **by_number), what, day, outbound, seen, when
                        ):
                            yield t.slug, outbound, r
                    except ProviderError as exc:
                        if str(exc).startswith(SOURCE):
                            raise  # the request itself failed
                        yield t.slug, None, exc


def owner_of(
    owners: dict[str, str],
    number: Any,
    day: date,
    attribution: Attribution | None = None,
    batch: frozenset[str] | set[str] = frozenset(),
) -> str | None:
    """The tenant a number belongs to on `day`: the one place phone numbers are attributed. With the directory's
    history (`attribution`, store.directory), the tenant that held it that day if it is one of `batch`; a
    number the history knows but nobody held that day is nobody's. Without history: `owners` (number -> slug)."""
    if not isinstance(number, str) or number not in owners:
        return None
    if attribution is not None and attribution.known("phone_number", number):
        held = attribution.owner("phone_number", number, day)
        return held.slug if held is not None and held.slug in batch else None
    return owners.get(number)


class Tally:
    """One tenant-day of messages and calls, counted as Twilio bills them (see the module docstring)."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(("sms_out", "sms_in", "mms_out", "mms_in", "minutes"), 0)
        self.cost: Decimal | None = Decimal(0)
        self.currency: str | None = None
        self.unsent = 0  # billed messages whose segments are not known yet (0 segments)
        self.pending_messages = 0
        self.pending_calls = 0

    def _price(self, raw: Any, unit: Any, what: str) -> None:
        if raw is None or raw == "":
            self.cost = None  # Twilio has not priced it yet: the day's provider cost is unknown, not lower
        elif not _usd(unit):
            self.cost, self.currency = None, str(unit)
        elif self.cost is not None:
            self.cost += abs(as_decimal(raw, what))

    def message(self, m: dict[str, Any], outbound: bool) -> None:
        """One message as the API lists it (the JSON object)."""
        status = m.get("status")
        if status in UNBILLED_MESSAGE:
            return  # Twilio does not bill a message that failed or was canceled
        if status in PENDING_MESSAGE:
            # Not final: counted when a later run finds it sent (or failed); meanwhile its cost is unknown.
            self.pending_messages += 1
            self.cost = None
            return
        if status not in BILLED_MESSAGE:
            raise ProviderError(f"malformed response: {m.get('sid')} has an unknown status {status!r}")
        sid = str(m.get("sid") or "")
        if sid.startswith("MM") or as_int(m.get("num_media"), f"num_media of {sid}") > 0:
            self.totals["mms_out" if outbound else "mms_in"] += 1
        else:
            segments = as_int(m.get("num_segments"), f"num_segments of {sid}")
            if segments == 0:
                # Sent through a Messaging Service and not sent yet: its segments are not known.
                self.unsent += 1
            self.totals["sms_out" if outbound else "sms_in"] += segments
        self._price(m.get("price"), m.get("price_unit"), f"price of {sid}")

    def call(self, c: dict[str, Any]) -> None:
        """One call as the API lists it (the JSON object)."""
        status = c.get("status")
        sid, duration, price = c.get("sid"), c.get("duration"), c.get("price")
        if status in PENDING_CALL:
            # Its duration is empty until it is over: the day is re-collected until then.
            self.pending_calls += 1
            self.cost = None
            return
        if status in COMPLETED_CALL:
            seconds = as_int(duration, f"duration of {sid}")
        elif status in UNANSWERED_CALL:
            # "empty for busy, failed, unanswered ... calls": over, and 0 minutes when Twilio gives none.
            seconds = 0 if duration in (None, "") else as_int(duration, f"duration of {sid}")
            if seconds == 0 and price in (None, ""):
                return  # nothing billed and nothing to price
        else:
            raise ProviderError(f"malformed response: {sid} has an unknown status {status!r}")
        self.totals["minutes"] += math.ceil(seconds / 60)  # billed per started minute
        self._price(price, c.get("price_unit"), f"price of {sid}")

    def row(self, iso: str) -> MetricRow:
        notes = []
        if self.unsent:
            notes.append(f"not final: {self.unsent} message(s) not sent yet (0 segments)")
        if self.pending_messages:
            notes.append(f"not final: {self.pending_messages} message(s) queued or sending, not counted yet")
        if self.pending_calls:
            notes.append(f"not final: {self.pending_calls} call(s) not over yet, not counted yet")
        if self.currency is not None:
            notes.append(f"provider cost unknown: Twilio priced {iso} in {self.currency!r}, not USD")
        t = self.totals
        return MetricRow(
            sms_outbound_count=t["sms_out"],
            sms_inbound_count=t["sms_in"],
            mms_outbound_count=t["mms_out"],
            mms_inbound_count=t["mms_in"],
            voice_minutes=t["minutes"],
            provider_cost_usd=self.cost,
            final=not (self.unsent or self.pending_messages or self.pending_calls),
            note="; ".join(notes) or None,
        )


def _usd(unit: Any) -> bool:
    return unit == "USD" or str(unit or "").strip().lower() == "usd"


def _outbound(direction: Any, sid: str) -> bool:
    if direction in OUTBOUND:
        return True
    if direction in INBOUND:
        return False
    raise ProviderError(f"malformed response: {sid} has an unknown direction {direction!r}")


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _rfc2822_day(day: date) -> str:
    """The day as it stands in Twilio's RFC 2822 times ("Mon, 30 Nov 2026 09:00:00 +0000"): "30 Nov 2026"."""
    return f"{day.day:02d} {_MONTHS[day.month - 1]} {day.year}"


def _same_day(when: Any, day: date, stamp: str) -> bool:
    """Whether a listed time (RFC 2822, as Twilio gives `date_sent` and `start_time`) falls on the UTC `day`;
    `stamp` is `_rfc2822_day(day)`. Twilio writes every time in UTC ("+0000"): those are compared as text, once
    per record of a page of 1,000; any other offset is parsed and converted. An empty or unreadable time is on no
    day (a message not sent yet has no `date_sent`)."""
    if not isinstance(when, str):
        return False
    if len(when) == 31 and when.endswith(" +0000") and when[3:5] == ", ":
        return when[5:16] == stamp
    try:
        parsed = parsedate_to_datetime(when)
    except (TypeError, ValueError, IndexError):
        return False
    if parsed.tzinfo is None:  # "-0000": UTC with no source zone (RFC 2822)
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).date() == day


def _records(page: Any, what: str) -> list[dict[str, Any]]:
    """A page's records as the JSON objects on the wire. The SDK's `Page` would build an instance of its resource
    class per record (parsing three RFC 2822 dates of each message, for one); the collector reads a few fields of
    every record of the account's day, so it reads them from the page's parsed JSON. The SDK still builds the
    requests, authenticates, pages and raises on errors."""
    try:
        records = page.load_page(page._payload)
    except Exception as exc:  # the SDK's "Page Records can not be deserialized", a payload that is not a dict
        raise ProviderError(f"{SOURCE}: malformed response to {what}: {exc}") from None
    if not isinstance(records, list) or not set(map(type, records)) <= {dict}:
        raise ProviderError(f"{SOURCE}: malformed response to {what}: the records are not a list of objects")
    return records


def _record_span(rec: dict[str, Any], what: str) -> date:
    """The one UTC day a daily usage record covers. A record without a valid `start_date`, or whose `end_date` is
    not that same day (the spec's own example spans years), cannot be one day's usage: the listing fails."""
    category, start_date, end_date = rec.get("category"), rec.get("start_date"), rec.get("end_date")
    if start_date == end_date and type(start_date) is str and len(start_date) == 10:
        try:
            return date.fromisoformat(start_date)  # the usual "2026-11-30": one parse for both ends
        except ValueError:
            pass
    first, last = _record_day(start_date), _record_day(end_date)
    if first is None or last is None:
        raise ProviderError(
            f"{SOURCE}: malformed response to {what}: a {category!r} record without a valid "
            f"start_date/end_date ({start_date!r}, {end_date!r})"
        )
    if first != last:
        raise ProviderError(
            f"{SOURCE}: {what}: a {category!r} record spans {first}..{last}, not one day; "
            "its usage cannot be given to one day"
        )
    return first


def _record_day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _provider_error(exc: Exception, what: str, secrets: tuple[str, ...]) -> ProviderError:
    """The SDK raises TwilioRestException (fetch) or TwilioException("Unable to fetch page", response) (lists)."""
    status = getattr(exc, "status", None)
    message = getattr(exc, "msg", None)
    code = getattr(exc, "code", None)
    if status is None and len(exc.args) > 1 and hasattr(exc.args[1], "status_code"):
        response = exc.args[1]
        status = response.status_code
        try:
            message = error_message(loads(response.text), "")
        except ValueError:
            message = ""
    elif message and code:
        message = f"{message} (Twilio error {code})"
    detail = scrub(str(message or (exc.args[0] if exc.args else type(exc).__name__)), secrets)
    retryable = status in (429, 500, 502, 503, 504)
    return ProviderError(
        f"{SOURCE}: HTTP {status} on {what}: {detail}",
        retryable=retryable,
        status=status if isinstance(status, int) else None,
    )


def _platform(settings: TwilioProvider, cfg: Config) -> tuple[str, str] | None:
    if settings.account_sid is None and settings.auth_token is None:
        return None
    if settings.account_sid is None or settings.auth_token is None:
        raise ConfigError(
            cfg.where() + "providers.twilio: give both account_sid and auth_token_env (or _file)"
        )
    token = settings.auth_token.resolve("providers.twilio.auth_token").get_secret_value()
    return settings.account_sid, token


def make(cfg: Config) -> Twilio | None:
    settings = cfg.providers.twilio
    if settings is None and not any(t.twilio for t in cfg.tenants):
        return None
    settings = settings or TwilioProvider()
    platform = _platform(settings, cfg)
    tokens: dict[str, str] = {}
    token_errors: dict[str, str] = {}
    for i, t in enumerate(cfg.tenants):
        tw = t.twilio
        if tw is None:
            continue
        if tw.mode == "own":
            assert tw.auth_token is not None
            key = f"{cfg.where()}tenants[{i}].twilio.auth_token"
            try:
                tokens[t.slug] = tw.auth_token.resolve(key).get_secret_value()
            except ConfigError as exc:
                # One tenant's secret is that tenant's problem: its tasks fail (exit 3), the others run.
                token_errors[t.slug] = str(exc)
        elif platform is None:
            raise ConfigError(
                f"{cfg.where()}tenants[{i}] ({t.slug}) is attributed through the platform Twilio account, but "
                "[providers.twilio] has no account_sid/auth_token_env"
            )
    http = Http(
        SOURCE,
        settings.base_url,
        Policy.of(settings),
        secrets=tuple(s for s in [platform[1] if platform else "", *tokens.values()] if s),
        busy_header="Twilio-Concurrent-Requests",
        account_limit=settings.account_concurrency_limit,
    )
    # With an API key (SK...) as the username, the resources belong to parent_account_sid.
    owner = settings.parent_account_sid or (platform[0] if platform else None)
    return Twilio(http, settings.base_url, platform, owner, tokens, token_errors, settings.numbers_listing)


def check(cfg: Config) -> list[CheckResult]:
    """Fetch each Twilio account once: the platform account and every tenant's own account."""
    try:
        provider = make(cfg)
    except ConfigError as exc:
        return [CheckResult("twilio", False, str(exc))]
    if provider is None:
        return []
    targets: list[tuple[str, tuple[str, str], str]] = []
    results: list[CheckResult] = []
    if provider.platform is not None and provider.platform_account is not None:
        targets.append(
            (
                f"twilio (platform account {provider.platform_account})",
                provider.platform,
                provider.platform_account,
            )
        )
    for t in cfg.tenants:
        if t.twilio is not None and t.twilio.mode == "own":
            sid = t.twilio.account_sid
            assert sid is not None
            if t.slug in provider.token_errors:
                results.append(CheckResult(f"twilio (tenant {t.slug})", False, provider.token_errors[t.slug]))
                continue
            targets.append(
                (f"twilio (tenant {t.slug}, own account {sid})", (sid, provider.tenant_tokens[t.slug]), sid)
            )
    try:
        for name, (user, secret), sid in targets:
            client = provider._client(user, secret, sid)
            try:
                provider._call(client.api.v2010.accounts(sid).fetch, f"account {sid}")
                results.append(CheckResult(name, True, "credentials accepted"))
            except ProviderError as exc:
                results.append(CheckResult(name, False, str(exc)))
    finally:
        provider.close()
    return results
