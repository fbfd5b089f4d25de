"""The three fake provider APIs, over real HTTP on 127.0.0.1, speaking each provider's wire format.

Paths, query parameters, auth headers, pagination, error bodies and units follow the providers' published
specifications (twilio/twilio-oai, twilio/sendgrid-oai, openai/openai-openapi; their own example responses are
replayed in tests/test_provider_specs.py): Twilio usage records count messages and bill SMS in segments (a third of
the synthetic accounts in messages), prices carry the account's `price_unit`, messages and calls carry their status
(failed messages; on `World.in_flight_day` a message still sending and a call still ringing), SendGrid pages subuser
stats by limit/offset and refuses them on category stats, OpenAI has completions, embeddings and moderations usage.
Only what usagectl reads (and a cheap endpoint per provider for `config check --online`) exists.
Faults are injected per provider and optionally per request (a substring of the path and query).

Each server can also hold an account-wide concurrency limit, as Twilio does (100 concurrent REST requests per
account by default): a request that arrives while `concurrency_limit` others are in flight is answered 429 at once,
in the provider's error format (Twilio: error 20429), and is not processed. Every method is answered and logged,
so a test can see a write that should never have been sent; only Twilio's Messages.json accepts one (POST: the
platform's own sending, see sandbox/platform.py).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from usagectl.sandbox.data import (
    TWILIO_CATEGORIES,
    TWILIO_FEES,
    TWILIO_TOTAL_PRICE,
    TWILIO_TOTALS,
    Call,
    Message,
    World,
    twilio_units,
)

FAULT_KINDS = ("429", "500", "malformed", "endless", "401", "hang")


@dataclass
class Fault:
    kind: str
    match: str | None = None  # substring of the decoded path?query the fault applies to
    times: int | None = 1  # None: every matching request
    retry_after: float | None = 1  # seconds, for 429 (None: no Retry-After/X-RateLimit-Reset header)
    delay: float = 0.0  # for "hang": seconds to stall before answering
    every: int = 1  # hit only every n-th matching request (e.g. a 429 on one request in 50)
    _matched: int = 0


@dataclass(frozen=True)
class Seen:
    provider: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int
    at: float  # time.monotonic() when the request arrived
    authorization: str | None
    duration: float = 0.0  # seconds from arrival to the response being written


class Reply(Exception):
    """Raised by a handler to answer with a status, a JSON body and headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


_RAW = re.compile(r'"\\u0000(-?[0-9.Ee+-]+)\\u0000"')


def _json(obj: Any) -> bytes:
    """JSON, with a Decimal sent as a number with its exact digits (as the real APIs send amounts): the C encoder
    writes it as a marked string, and the marks and quotes come off afterwards."""

    def mark(o: Any) -> Any:
        if isinstance(o, Decimal):
            return f"\0{o}\0"
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    return _RAW.sub(r"\1", json.dumps(obj, default=mark)).encode()


class ProviderServer:
    """One fake provider on an ephemeral port. Subclasses implement `route`."""

    name = "provider"

    def __init__(
        self,
        world: World,
        *,
        latency: float = 0.0,
        page_size_cap: int | None = None,
        concurrency_limit: int | None = None,
    ) -> None:
        self.world = world
        self.latency = latency
        self.page_size_cap = page_size_cap
        self.concurrency_limit = concurrency_limit
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0  # 0: an ephemeral port; `usagectl sandbox --port` asks for fixed ones

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        handler = _handler_for(self)
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"sandbox-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "sandbox server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---- faults and the request log ------------------------------------------------------------------------

    def fault(
        self,
        kind: str,
        *,
        match: str | None = None,
        times: int | None = 1,
        retry_after: float | None = 1,
        delay: float = 0.0,
        every: int = 1,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self.faults.append(Fault(kind, match, times, retry_after, delay, every))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def requests(self, path_contains: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path_contains in s.path]

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.match is None or f.match in target:
                    f._matched += 1
                    if f._matched % f.every:
                        continue
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self.faults.remove(f)
                    return f
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _enter(self) -> int:
        """Count a request in; the account's requests in flight with it, itself included."""
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return self.in_flight

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    # ---- per provider ------------------------------------------------------------------------------------

    def route(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> Any:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def rate_limit_headers(self, fault: Fault) -> dict[str, str]:
        return {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}

    def extra_headers(self) -> dict[str, str]:
        """Headers on every response (SendGrid's rate-limit counters)."""
        return {}

    def concurrency_headers(self, in_flight: int) -> dict[str, str]:
        """Headers on every response that report the account's requests in flight (Twilio's)."""
        return {}

    def write(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        """A request other than GET: refused unless the provider simulates it (the platform's sending)."""
        raise Reply(405, self.error_body(405, f"{method} is not allowed on {path}"))

    def endless_page(self, path: str, query: list[tuple[str, str]]) -> Any:
        raise NotImplementedError

    def page_size(self, asked: int) -> int:
        return min(asked, self.page_size_cap) if self.page_size_cap else asked


def _handler_for(server: ProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
        disable_nagle_algorithm = True  # headers and body go out in separate writes: no delayed-ACK stalls

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            arrived = time.monotonic()
            split = urlsplit(self.path)
            query = parse_qsl(split.query, keep_blank_values=True)
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            payload = self.rfile.read(length) if length > 0 else b""
            in_flight = server._enter()
            status, body, extra = 200, b"", {}
            try:
                try:
                    limit = server.concurrency_limit
                    if limit is not None and in_flight > limit:
                        # Rejected on arrival, unprocessed, as Twilio does.
                        raise Reply(429, server.error_body(429, "Too Many Requests"))
                    if server.latency:
                        time.sleep(server.latency)
                    if method != "GET":
                        result = server.write(method, split.path, headers, payload)
                    else:
                        fault = server._take_fault(f"{split.path}?{urlencode(query)}")
                        if fault is not None:
                            self._apply(fault, split.path, query)
                        result = server.route(split.path, query, headers)
                    body = result if isinstance(result, bytes) else _json(result)
                except Reply as r:
                    status, extra = r.status, r.headers
                    body = r.body if isinstance(r.body, bytes) else _json(r.body)
                except (
                    Exception
                ) as exc:  # a sandbox bug answers 500 in the provider's format, as a server would
                    status, body = 500, _json(server.error_body(500, f"sandbox error: {exc}"))
                if method == "POST" and status == 200:
                    status = 201
            finally:
                # Out of the count before the answer goes out: the client may send its next request as soon as it
                # has this one, and must find its slot free.
                server._leave()
            server._record(
                Seen(
                    server.name,
                    method,
                    split.path,
                    tuple(query),
                    status,
                    arrived,
                    headers.get("authorization"),
                    time.monotonic() - arrived,
                )
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            answer_headers = {**server.extra_headers(), **server.concurrency_headers(in_flight), **extra}
            for k, v in answer_headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _apply(self, fault: Fault, path: str, query: list[tuple[str, str]]) -> None:
            if fault.kind == "429":
                raise Reply(
                    429, server.error_body(429, "Too Many Requests"), server.rate_limit_headers(fault)
                )
            if fault.kind == "500":
                raise Reply(500, server.error_body(500, "An internal server error has occurred"))
            if fault.kind == "401":
                raise Reply(401, server.error_body(401, "Authenticate"))
            if fault.kind == "malformed":
                raise Reply(200, b'{"data": [ {"object": "bucket", "start_time": 17')
            if fault.kind == "hang":
                time.sleep(fault.delay)
                return
            if fault.kind == "endless":
                raise Reply(200, server.endless_page(path, query))

    return Handler


def _day(value: str, key: str, error: Callable[[str], Reply]) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise error(f"{key}: {value!r} is not a date") from None


def _basic(headers: dict[str, str]) -> tuple[str, str] | None:
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _bearer(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


# ---- Twilio ------------------------------------------------------------------------------------------------


@dataclass
class TwilioAccounts:
    master_sid: str
    master_token: str
    # Accounts with credentials of their own (tenants bringing their own Twilio account): sid -> token.
    own: dict[str, str] = field(default_factory=dict)
    # API keys of the master account: SK... -> secret (they act as the master account).
    api_keys: dict[str, str] = field(default_factory=dict)


def _rfc2822(dt: datetime) -> str:
    return format_datetime(dt.astimezone(UTC), usegmt=False).replace("-0000", "+0000")


def _price(p: Decimal | None) -> str | None:
    return None if p is None else f"{p:.5f}"


class TwilioServer(ProviderServer):
    name = "twilio"
    API = "/2010-04-01"

    def __init__(self, world: World, accounts: TwilioAccounts, **kw: Any) -> None:
        super().__init__(world, **kw)
        self.accounts = accounts
        self.messages_created = 0  # the platform's sends that were accepted
        self._listings: dict[Any, list[Any]] = {}

    def error_body(self, status: int, message: str) -> Any:
        code = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 400: 21400}.get(status, 20000 + status)
        return {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    def _fail(self, status: int, message: str) -> Reply:
        return Reply(status, self.error_body(status, message))

    def concurrency_headers(self, in_flight: int) -> dict[str, str]:
        return {"Twilio-Concurrent-Requests": str(in_flight)}

    def write(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        """The platform sending an SMS (Messages.create): accepted as queued, and not added to the usage data
        (the platform's sends happen today; usage is collected for past days)."""
        parts = path.strip("/").split("/")
        if method != "POST" or len(parts) != 4 or parts[:2] != ["2010-04-01", "Accounts"]:
            return super().write(method, path, headers, body)
        if parts[3] != "Messages.json":
            return super().write(method, path, headers, body)
        account_sid = parts[2]
        self._authorize(headers, account_sid)
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if not form.get("To") or not (form.get("From") or form.get("MessagingServiceSid")):
            raise self._fail(400, "A 'To' phone number and a 'From' phone number are required.")
        now = _rfc2822(datetime.now(UTC))
        with self._lock:
            self.messages_created += 1
            sid = f"SM{self.messages_created:032x}"
        return {
            "sid": sid,
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "from": form.get("From"),
            "to": form["To"],
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "status": "queued",
            "uri": f"{self.API}/Accounts/{account_sid}/Messages/{sid}.json",
        }

    def _authorize(self, headers: dict[str, str], account_sid: str) -> None:
        creds = _basic(headers)
        if creds is None:
            raise self._fail(401, "Authenticate")
        user, password = creds
        a = self.accounts
        if (user == a.master_sid and password == a.master_token) or (
            user in a.api_keys and a.api_keys[user] == password
        ):
            if account_sid in a.own:  # someone else's account
                raise self._fail(
                    404, f"The requested resource /2010-04-01/Accounts/{account_sid}.json was not found"
                )
            return
        if a.own.get(user) == password:
            if account_sid != user:
                raise self._fail(
                    404, f"The requested resource /2010-04-01/Accounts/{account_sid}.json was not found"
                )
            return
        raise self._fail(401, "Authenticate")

    def route(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> Any:
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "2010-04-01" or parts[1] != "Accounts":
            raise self._fail(404, f"The requested resource {path} was not found")
        account_sid = parts[2].removesuffix(".json")
        self._authorize(headers, account_sid)
        rest = "/".join(parts[3:])
        if rest == "" and parts[2].endswith(".json"):
            return self._account(account_sid)
        if rest == "Usage/Records/Daily.json":
            return self._usage_daily(path, account_sid, query)
        if rest == "Messages.json":
            return self._messages(path, account_sid, query)
        if rest == "Calls.json":
            return self._calls(path, account_sid, query)
        raise self._fail(404, f"The requested resource {path} was not found")

    def _account(self, sid: str) -> Any:
        return {
            "sid": sid,
            "friendly_name": f"sandbox {sid[-6:]}",
            "status": "active",
            "type": "Full",
            "owner_account_sid": self.accounts.master_sid if sid not in self.accounts.own else sid,
            "uri": f"{self.API}/Accounts/{sid}.json",
        }

    def _page(self, path: str, key: str, items: list[dict[str, Any]], query: list[tuple[str, str]]) -> Any:
        params = dict(query)
        try:
            size = self.page_size(min(int(params.get("PageSize", "50")), 1000))
            page = int(params.get("Page", "0"))
            token = params.get("PageToken", "")
            offset = int(token[2:]) if token.startswith("PA") else page * size
        except ValueError:
            raise self._fail(400, "Invalid paging parameter") from None
        chunk = items[offset : offset + size]
        filters = [(k, v) for k, v in query if k not in ("Page", "PageSize", "PageToken")]

        def uri(p: int, off: int | None) -> str:
            extra = [("PageSize", str(size)), ("Page", str(p))] + ([("PageToken", f"PA{off}")] if off else [])
            return f"{path}?{urlencode(filters + extra, safe='<>:')}"

        has_next = offset + size < len(items)
        return {
            key: chunk,
            "first_page_uri": uri(0, None),
            "next_page_uri": uri(page + 1, offset + size) if has_next else None,
            "previous_page_uri": uri(page - 1, max(0, offset - size)) if page > 0 else None,
            "page": page,
            "page_size": size,
            "start": offset,
            "end": offset + max(len(chunk) - 1, 0),
            "uri": f"{path}?{urlencode(query, safe='<>:')}",
        }

    def endless_page(self, path: str, query: list[tuple[str, str]]) -> Any:
        params = dict(query)
        page = int(params.get("Page", "0"))
        key = {"Messages.json": "messages", "Calls.json": "calls"}.get(
            path.rsplit("/", 1)[-1], "usage_records"
        )
        filters = [(k, v) for k, v in query if k not in ("Page", "PageToken")]
        return {
            key: [],
            "next_page_uri": f"{path}?{urlencode([*filters, ('Page', str(page + 1)), ('PageToken', f'PX{page + 1}')])}",
            "page": page,
            "page_size": 50,
            "uri": path,
        }

    def _usage_daily(self, path: str, account_sid: str, query: list[tuple[str, str]]) -> Any:
        params = dict(query)
        today = datetime.now(UTC).date()
        start = (
            _day(params["StartDate"], "StartDate", lambda m: self._fail(400, m))
            if "StartDate" in params
            else today - timedelta(days=30)
        )
        end = (
            _day(params["EndDate"], "EndDate", lambda m: self._fail(400, m)) if "EndDate" in params else today
        )
        category = params.get("Category")
        known = (*TWILIO_CATEGORIES, *TWILIO_TOTALS, *TWILIO_FEES, TWILIO_TOTAL_PRICE)
        if category and category not in known:
            raise self._fail(400, f"Category is not valid: {category}")
        include_sub = params.get("IncludeSubaccounts", "true").lower() != "false"
        accounts = [account_sid]
        if include_sub and account_sid == self.accounts.master_sid:
            # The sandbox cannot enumerate subaccounts; it marks the figure as polluted so a collector that forgets
            # IncludeSubaccounts=false on the master account sees wrong numbers in tests.
            accounts.append(account_sid + ":subaccounts")
        items: list[dict[str, Any]] = []
        day = end
        while day >= start:
            for acct in accounts:
                price_unit = self.world.price_unit(acct).lower()
                for cat, rec in sorted(self.world.usage_records(acct, day).items()):
                    if category and cat != category:
                        continue
                    count_unit, unit = twilio_units(cat)
                    if cat == TWILIO_TOTAL_PRICE:
                        count_unit, unit = "", price_unit  # a price, not a count of anything
                    items.append(
                        {
                            "account_sid": account_sid,
                            "api_version": "2010-04-01",
                            "as_of": datetime.now(UTC).isoformat(timespec="seconds"),
                            "category": cat,
                            "count": str(rec.count),
                            "count_unit": count_unit,
                            "description": cat.replace("-", " ").title(),
                            "end_date": day.isoformat(),
                            "price": f"{rec.price:.5f}",
                            "price_unit": price_unit,
                            "start_date": day.isoformat(),
                            "subresource_uris": {},
                            "uri": f"{path}?Category={cat}&StartDate={day}&EndDate={day}",
                            "usage": str(rec.usage),
                            "usage_unit": rec.usage_unit or unit,
                        }
                    )
            day -= timedelta(days=1)
        return self._page(path, "usage_records", items, query)

    @staticmethod
    def _date_filter(
        query: list[tuple[str, str]], key: str, error: Callable[[str], Reply]
    ) -> Callable[[datetime], bool]:
        """Twilio's `Key=day`, `Key<=day` / `Key<day` (on or before) and `Key>=day` / `Key>day` (on or after)."""
        bounds: list[tuple[str, date]] = []
        for k, v in query:
            if k in (key, f"{key}<", f"{key}>"):
                bounds.append((k[len(key) :] or "=", _day(v.lstrip("="), k, error)))

        def match(t: datetime) -> bool:
            d = t.astimezone(UTC).date()
            return all(
                (op == "=" and d == b) or (op == "<" and d <= b) or (op == ">" and d >= b) for op, b in bounds
            )

        return match

    def _numbers_filter(self, query: list[tuple[str, str]]) -> tuple[str | None, str | None]:
        params = dict(query)
        return params.get("From"), params.get("To")

    def _listing(self, path: str, account_sid: str, query: list[tuple[str, str]], build: Any) -> Any:
        """A page of a Messages/Calls listing; the listing itself is built once per filter and world state (an
        account's whole day is every page's source: rebuilding it for each page of 1,000 would be quadratic)."""
        key = (
            path,
            tuple((k, v) for k, v in query if k not in ("Page", "PageSize", "PageToken")),
            self.world.version,
        )
        with self._lock:
            items = self._listings.get(key)
        if items is None:
            items = build(path, account_sid, query)
            with self._lock:
                if len(self._listings) > 64:
                    self._listings.clear()
                self._listings[key] = items
        return self._page(path, "messages" if path.endswith("Messages.json") else "calls", items, query)

    def _messages(self, path: str, account_sid: str, query: list[tuple[str, str]]) -> Any:
        return self._listing(path, account_sid, query, self._message_items)

    def _calls(self, path: str, account_sid: str, query: list[tuple[str, str]]) -> Any:
        return self._listing(path, account_sid, query, self._call_items)

    def _message_items(self, path: str, account_sid: str, query: list[tuple[str, str]]) -> list[Any]:
        when = self._date_filter(query, "DateSent", lambda m: self._fail(400, m))
        frm, to = self._numbers_filter(query)
        pool: list[Message] = list(self.world.messages(account_sid))
        numbers = {n for n in (frm, to) if n} or set(self.world.account_numbers(account_sid))
        for number in numbers:
            for day in self._days_in(query, "DateSent"):
                pool.extend(self.world.synthetic_messages(account_sid, number, day))
        chosen = [
            m
            for m in {m.sid: m for m in pool}.values()
            if when(m.date_sent) and (frm is None or m.from_ == frm) and (to is None or m.to == to)
        ]
        chosen.sort(key=lambda m: m.date_sent, reverse=True)  # newest first, as Twilio
        items = [
            {
                "sid": m.sid,
                "account_sid": m.account_sid,
                "api_version": "2010-04-01",
                "body": "",
                "date_created": _rfc2822(m.date_sent),
                "date_sent": _rfc2822(m.date_sent),
                "date_updated": _rfc2822(m.date_sent),
                "direction": m.direction,
                "error_code": None,
                "error_message": None,
                "from": m.from_,
                "to": m.to,
                "messaging_service_sid": None,
                "num_media": str(m.num_media),
                "num_segments": str(m.num_segments),
                "price": _price(m.price),
                "price_unit": self.world.price_unit(m.account_sid),
                # A message on a Messaging Service has 0 segments until a sender is assigned and it is sent.
                "status": m.status
                or (
                    "received"
                    if m.direction == "inbound"
                    else ("accepted" if m.num_segments == 0 else "delivered")
                ),
                "uri": f"{self.API}/Accounts/{m.account_sid}/Messages/{m.sid}.json",
            }
            for m in chosen
        ]
        return items

    def _call_items(self, path: str, account_sid: str, query: list[tuple[str, str]]) -> list[Any]:
        when = self._date_filter(query, "StartTime", lambda m: self._fail(400, m))
        frm, to = self._numbers_filter(query)
        pool: list[Call] = list(self.world.calls(account_sid))
        numbers = {n for n in (frm, to) if n} or set(self.world.account_numbers(account_sid))
        for number in numbers:
            for day in self._days_in(query, "StartTime"):
                pool.extend(self.world.synthetic_calls(account_sid, number, day))
        chosen = [
            c
            for c in {c.sid: c for c in pool}.values()
            if when(c.start_time) and (frm is None or c.from_ == frm) and (to is None or c.to == to)
        ]
        chosen.sort(key=lambda c: c.start_time, reverse=True)
        items = [
            {
                "sid": c.sid,
                "account_sid": c.account_sid,
                "api_version": "2010-04-01",
                "direction": c.direction,
                # Empty "for busy, failed, unanswered, or ongoing calls", as is end_time until a call is over.
                "duration": str(c.duration) if c.status == "completed" else None,
                "start_time": _rfc2822(c.start_time),
                "end_time": _rfc2822(c.start_time + timedelta(seconds=c.duration))
                if c.status not in ("queued", "ringing", "in-progress")
                else None,
                "from": c.from_,
                "to": c.to,
                "price": _price(c.price),
                "price_unit": self.world.price_unit(c.account_sid),
                "status": c.status,
                "uri": f"{self.API}/Accounts/{c.account_sid}/Calls/{c.sid}.json",
            }
            for c in chosen
        ]
        return items

    @staticmethod
    def _days_in(query: list[tuple[str, str]], key: str) -> list[date]:
        """The days a date filter can match, for generating synthetic traffic (bounded to 62 days)."""
        lo = hi = None
        for k, v in query:
            try:
                d = date.fromisoformat(v.lstrip("=")[:10])
            except ValueError:
                continue
            if k == key:
                lo = hi = d
            elif k == f"{key}>":
                lo = d
            elif k == f"{key}<":
                hi = d
        if lo is None:
            if hi is None:
                return []
            lo = hi - timedelta(days=30)
        last = hi if hi is not None else lo + timedelta(days=30)
        first: date = lo
        out: list[date] = []
        d = first
        while d <= last and len(out) < 62:
            out.append(d)
            d += timedelta(days=1)
        return out


# ---- SendGrid ----------------------------------------------------------------------------------------------


class SendGridServer(ProviderServer):
    name = "sendgrid"
    RATE_LIMIT = 600

    def __init__(self, world: World, api_key: str, **kw: Any) -> None:
        super().__init__(world, **kw)
        self.api_key = api_key
        self._remaining = self.RATE_LIMIT

    def error_body(self, status: int, message: str) -> Any:
        return {"errors": [{"field": None, "message": message}]}

    def extra_headers(self) -> dict[str, str]:
        with self._lock:
            self._remaining = self._remaining - 1 if self._remaining > 1 else self.RATE_LIMIT
            remaining = self._remaining
        return {
            "X-RateLimit-Limit": str(self.RATE_LIMIT),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 60),
        }

    def rate_limit_headers(self, fault: Fault) -> dict[str, str]:
        # SendGrid says when the window resets (epoch seconds), not Retry-After.
        if fault.retry_after is None:
            return {}
        return {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}"}

    def endless_page(self, path: str, query: list[tuple[str, str]]) -> Any:
        return []

    def route(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> Any:
        if _bearer(headers) != self.api_key:
            raise Reply(401, self.error_body(401, "authorization required"))
        if path == "/v3/scopes":
            return {"scopes": ["stats.read", "subusers.stats.read", "categories.stats.read"]}
        kinds = {"/v3/subusers/stats": "subuser", "/v3/categories/stats": "category", "/v3/stats": None}
        if path not in kinds:
            raise Reply(404, self.error_body(404, "resource not found"))
        kind = kinds[path]
        params = dict(query)
        if "start_date" not in params:
            raise Reply(400, {"errors": [{"field": "start_date", "message": "missing required parameter"}]})
        bad = lambda m: Reply(400, {"errors": [{"field": "start_date", "message": m}]})  # noqa: E731
        start = _day(params["start_date"], "start_date", bad)
        end = _day(params["end_date"], "end_date", bad) if "end_date" in params else datetime.now(UTC).date()
        if params.get("aggregated_by", "day") != "day":
            raise Reply(400, {"errors": [{"field": "aggregated_by", "message": "only day in the sandbox"}]})
        names: list[str] = []
        if kind is not None:
            plural = f"{kind}s" if kind == "subuser" else "categories"
            names = [v for k, v in query if k == plural]
            if not names:
                raise Reply(400, {"errors": [{"field": plural, "message": f"{plural} is required"}]})
            if len(names) > 10:
                raise Reply(400, {"errors": [{"field": plural, "message": "a maximum of 10 is allowed"}]})
        out: list[dict[str, Any]] = []
        day = start
        while day <= end:
            stats: list[dict[str, Any]]
            if kind is None:
                stats = [{"metrics": self._metrics(self.world.email_stats("global", "", day))}]
            else:
                stats = [
                    {"type": kind, "name": n, "metrics": self._metrics(self.world.email_stats(kind, n, day))}
                    for n in names
                ]
            out.append({"date": day.isoformat(), "stats": stats})
            day += timedelta(days=1)
        if kind == "category":
            # tsg_stats_v3 defines no limit/offset on /v3/categories/stats: a client that sends them relies on
            # something the API does not promise, so the sandbox refuses them. Its answer is the whole range.
            if "limit" in params or "offset" in params:
                raise Reply(
                    400, {"errors": [{"field": "limit", "message": "not a parameter of this endpoint"}]}
                )
            return out
        # Paged by limit/offset over the days (SendGrid's default page is shorter than a long backfill).
        try:
            limit = int(params.get("limit", "500"))
            offset = int(params.get("offset", "0"))
        except ValueError:
            raise Reply(
                400, {"errors": [{"field": "limit", "message": "limit and offset are integers"}]}
            ) from None
        if limit < 1 or offset < 0:
            raise Reply(400, {"errors": [{"field": "limit", "message": "limit or offset out of range"}]})
        limit = self.page_size(limit)
        return out[offset : offset + limit]

    @staticmethod
    def _metrics(m: dict[str, int]) -> dict[str, int]:
        base = dict.fromkeys(
            (
                "blocks",
                "bounce_drops",
                "bounces",
                "clicks",
                "deferred",
                "delivered",
                "invalid_emails",
                "opens",
                "processed",
                "requests",
                "spam_report_drops",
                "spam_reports",
                "unique_clicks",
                "unique_opens",
                "unsubscribe_drops",
                "unsubscribes",
            ),
            0,
        )
        base.update(m)
        base["opens"] = base["delivered"] // 3
        base["unique_opens"] = base["delivered"] // 4
        return base


# ---- OpenAI ------------------------------------------------------------------------------------------------


class OpenAIServer(ProviderServer):
    name = "openai"
    DAY = 86_400
    USAGE_PATHS: ClassVar[dict[str, str]] = {
        "/v1/organization/usage/completions": "completions",
        "/v1/organization/usage/embeddings": "embeddings",
        "/v1/organization/usage/moderations": "moderations",
    }

    def __init__(self, world: World, admin_key: str, **kw: Any) -> None:
        super().__init__(world, **kw)
        self.admin_key = admin_key

    def error_body(self, status: int, message: str) -> Any:
        kind = {401: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error"}.get(
            status, "invalid_request_error"
        )
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def rate_limit_headers(self, fault: Fault) -> dict[str, str]:
        return {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}

    def _bad(self, message: str, param: str | None = None) -> Reply:
        return Reply(
            400,
            {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}},
        )

    def route(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> Any:
        key = _bearer(headers)
        if key != self.admin_key:
            # The real API echoes a masked form of the key it got; a collector must not pass even that on.
            shown = f"{key[:8]}{'*' * 10}{key[-4:]}" if key else ""
            raise Reply(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {shown}. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
        if path == "/v1/organization/projects":
            return {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
        if path not in (*self.USAGE_PATHS, "/v1/organization/costs"):
            raise Reply(404, self.error_body(404, f"Invalid URL (GET {path})"))
        multi: dict[str, list[str]] = {}
        for k, v in query:
            multi.setdefault(k.removesuffix("[]"), []).append(v)
        one = {k: v[-1] for k, v in multi.items()}
        try:
            start = int(one["start_time"])
        except (KeyError, ValueError):
            raise self._bad("start_time is required and must be an integer", "start_time") from None
        if one.get("bucket_width", "1d") != "1d":
            raise self._bad("only bucket_width=1d in the sandbox", "bucket_width")
        costs = path.endswith("/costs")
        limit = int(one.get("limit", "7"))
        if not 1 <= limit <= (180 if costs else 31):
            raise self._bad("limit is out of range", "limit")
        limit = self.page_size(limit)
        end = int(one.get("end_time", str(start + limit * self.DAY)))
        first = start - start % self.DAY
        page = one.get("page")
        offset = 0
        if page:
            try:
                offset = int(base64.urlsafe_b64decode(page.removeprefix("page_") + "==").decode())
            except ValueError:
                raise self._bad("invalid page cursor", "page") from None
        bucket_starts = list(range(first, end, self.DAY))
        chosen = bucket_starts[offset : offset + limit]
        projects = multi.get("project_ids", [])
        group_by = set(multi.get("group_by", []))
        data = []
        for b in chosen:
            day = datetime.fromtimestamp(b, UTC).date()
            results = (
                self._cost_results(day, projects)
                if costs
                else self._usage_results(self.USAGE_PATHS[path], day, projects, group_by)
            )
            data.append({"object": "bucket", "start_time": b, "end_time": b + self.DAY, "results": results})
        more = offset + limit < len(bucket_starts)
        return {
            "object": "page",
            "data": data,
            "has_more": more,
            "next_page": "page_" + base64.urlsafe_b64encode(str(offset + limit).encode()).decode().rstrip("=")
            if more
            else None,
        }

    def endless_page(self, path: str, query: list[tuple[str, str]]) -> Any:
        n = int(time.monotonic() * 1e6)
        return {"object": "page", "data": [], "has_more": True, "next_page": f"page_loop{n}"}

    def _usage_results(
        self, endpoint: str, day: date, projects: list[str], group_by: set[str]
    ) -> list[dict[str, Any]]:
        rows: dict[tuple[str | None, str | None], dict[str, int]] = {}
        for p in projects:
            for u in self.world.ai_usage(p, day):
                if u.endpoint != endpoint:
                    continue
                key = (p if "project_id" in group_by else None, u.model if "model" in group_by else None)
                agg = rows.setdefault(
                    key, dict.fromkeys(("input", "output", "cached", "written", "requests"), 0)
                )
                agg["input"] += u.input_tokens
                agg["output"] += u.output_tokens
                agg["cached"] += u.input_cached_tokens
                agg["written"] += u.input_cache_write_tokens
                agg["requests"] += u.num_model_requests
        if endpoint != "completions":  # embeddings and moderations report input tokens only
            return [
                {
                    "object": f"organization.usage.{endpoint}.result",
                    "input_tokens": a["input"],
                    "num_model_requests": a["requests"],
                    "project_id": proj,
                    "user_id": None,
                    "api_key_id": None,
                    "model": model,
                }
                for (proj, model), a in rows.items()
            ]
        return [
            {
                "object": "organization.usage.completions.result",
                "input_tokens": a["input"],
                "input_cached_tokens": a["cached"],
                "input_cache_write_tokens": a["written"],
                "input_uncached_tokens": a["input"] - a["cached"] - a["written"],
                "output_tokens": a["output"],
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": a["requests"],
                "project_id": proj,
                "user_id": None,
                "api_key_id": None,
                "model": model,
                "batch": None,
                "service_tier": None,
            }
            for (proj, model), a in rows.items()
        ]

    def _cost_results(self, day: date, projects: list[str]) -> list[dict[str, Any]]:
        out = []
        for p in projects:
            value = self.world.ai_cost(p, day)
            if value is None:
                continue
            out.append(
                {
                    "object": "organization.costs.result",
                    "amount": {"value": value, "currency": "usd"},
                    "line_item": None,
                    "project_id": p,
                }
            )
        return out
