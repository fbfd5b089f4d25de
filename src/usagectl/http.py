"""The one HTTP stack every provider uses: httpx with timeouts, a shared rate limit, and bounded retries.

Retried: 429, 5xx and transport errors (connection refused/reset, timeouts), with exponential backoff and full
jitter, waiting at least what the server asked for (`Retry-After` in seconds or as an HTTP date, or
`X-RateLimit-Reset` as epoch seconds). Never retried: other 4xx (a 401 will not get better). Error messages carry
the provider's own message and never a credential; bodies are parsed with exact decimals.

The provider accounts are shared with the platform's own traffic (its SMS, calls and email go through the same
Twilio account and keys), so every request also holds one slot of the provider's `ConcurrencyLimit` while it is in
flight, and only GET is ever sent: usagectl reads usage and must not be able to create, change or delete anything.
"""

from __future__ import annotations

import functools
import json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, Protocol

import certifi
import httpx

from usagectl import __version__
from usagectl.config import Config, SecretRef
from usagectl.records import CheckResult, ProviderError

USER_AGENT = f"usagectl/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled each time, jittered
BACKOFF_CAP = 30.0
MAX_SERVER_WAIT = 120.0  # a Retry-After longer than this is a sign to give up, not to sleep
READ_ONLY_METHODS = frozenset({"GET"})


class RateLimiter:
    """At most `rate` request starts per second across all threads (0 = unlimited)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass(frozen=True)
class BackoffReport:
    """How one provider's concurrency cap moved during a run, for the run summary."""

    provider: str
    max_concurrency: int
    lowest: int  # the lowest the cap went
    final: int  # the cap at the end
    throttled: int  # times the cap was halved after a 429
    busy: int  # times it was lowered because the account was busy with other traffic
    first_at: datetime | None  # UTC, when it first backed off
    peak_in_flight: int

    @property
    def backed_off(self) -> bool:
        return self.throttled + self.busy > 0

    def describe(self) -> str:
        if not self.backed_off:
            return f"{self.provider}: no back-off (cap {self.max_concurrency}, peak {self.peak_in_flight} in flight)"
        why = []
        if self.throttled:
            why.append(f"{self.throttled}x after HTTP 429")
        if self.busy:
            why.append(f"{self.busy}x for an account busy with other traffic")
        when = f" from {self.first_at:%H:%M:%S} UTC" if self.first_at else ""
        return (
            f"{self.provider}: backed off {' and '.join(why)}{when}: concurrent requests capped at "
            f"{self.lowest} at the lowest (configured {self.max_concurrency}, {self.final} at the end)"
        )


class Ticket(NamedTuple):
    generation: int  # the cap's generation when the request left (a 429 halves it once per generation)
    ours: int  # our requests in flight with this one, itself included


class ConcurrencyLimit:
    """At most `cap` requests in flight to one provider across all threads, adapted AIMD-style.

    The cap starts at `max_concurrency`. A 429 halves it (once per congestion event: the other requests that were
    already in flight when it was halved do not halve it again), and each successful answer adds 1/cap, so the cap
    climbs back by one per cap's worth of successes and never above `max_concurrency`. When the provider says how
    many requests the whole account has in flight (`busy` on release: Twilio's `Twilio-Concurrent-Requests`), the
    cap is lowered to half of what the account has left, so the platform's own traffic keeps the other half:
    cap <= (account_limit - others) / 2, others being the account's requests that are not ours.
    """

    def __init__(
        self,
        provider: str,
        max_concurrency: int,
        *,
        account_limit: int | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.provider = provider
        self.max_concurrency = max_concurrency
        self.account_limit = account_limit
        self._now = now
        self._cap = float(max_concurrency)
        self._lowest = max_concurrency
        self._in_flight = 0
        self._peak = 0
        self._generation = 0
        self._throttled = 0
        self._busy = 0
        self._first_at: datetime | None = None
        self._cond = threading.Condition()

    @property
    def cap(self) -> int:
        return max(1, int(self._cap))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self) -> Ticket:
        """Wait for a slot; returns the ticket to `release` it with."""
        with self._cond:
            while self._in_flight >= self.cap:
                self._cond.wait()
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            return Ticket(self._generation, self._in_flight)

    def release(self, ticket: Ticket, status: int | None, busy: int | None = None) -> None:
        """Give the slot back with the answer's status (None: no answer) and the account's in-flight count."""
        with self._cond:
            self._in_flight -= 1
            if status == 429:
                if ticket.generation == self._generation:
                    self._generation += 1
                    self._cap = max(1.0, self._cap / 2)
                    self._throttled += 1
                    self._lowered()
            elif status is not None and status < 400:
                self._cap = min(float(self.max_concurrency), self._cap + 1 / self._cap)
            if busy is not None and self.account_limit is not None:
                # The provider counted at arrival; ours then is best known as ours when the request left.
                others = max(0, busy - ticket.ours)
                target = max(1, (self.account_limit - others) // 2)
                if target < self.cap:
                    self._cap = float(target)
                    self._busy += 1
                    self._lowered()
            # Wake as many waiters as there are free slots (one, or two when the cap just grew by one): waking
            # every worker for one slot costs each of them a context switch only to wait again.
            free = self.cap - self._in_flight
            if free > 0:
                self._cond.notify(free)

    def _lowered(self) -> None:
        self._lowest = min(self._lowest, self.cap)
        if self._first_at is None:
            self._first_at = self._now()

    def report(self) -> BackoffReport:
        with self._cond:
            return BackoffReport(
                self.provider,
                self.max_concurrency,
                self._lowest,
                self.cap,
                self._throttled,
                self._busy,
                self._first_at,
                self._peak,
            )


def server_wait(status: int, headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from Retry-After or (on a 429 only: SendGrid sends it on every
    response) X-RateLimit-Reset; None if it did not say."""
    retry_after = headers.get("retry-after")
    if retry_after:
        value = retry_after.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - (time.time() if now is None else now))
    reset = headers.get("x-ratelimit-reset") if status == 429 else None
    if reset:
        try:
            return max(0.0, float(reset) - (time.time() if now is None else now))
        except ValueError:
            return None
    return None


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for retry number `attempt` (0-based)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt))
    return (rng or random).uniform(ceiling / 2, ceiling)


# Key-shaped strings a provider may echo back (OpenAI shows a masked key in its 401 message): never pass them on.
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{3,}|SG\.[A-Za-z0-9_*.\-]{3,})")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEYLIKE.sub(lambda m: m.group(0)[:3] + "***", text)


def loads(text: str | bytes) -> Any:
    """JSON with every non-integer number as an exact Decimal (prices must not pass through float)."""
    return json.loads(text, parse_float=Decimal)


class _Settings(Protocol):
    # Read-only, as the frozen pydantic provider models are.
    @property
    def base_url(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def rate_limit(self) -> float: ...
    @property
    def max_concurrency(self) -> int: ...


@dataclass(frozen=True)
class Policy:
    timeout: float = 30.0
    max_retries: int = 4
    rate_limit: float = 0.0
    max_concurrency: int = 4

    @classmethod
    def of(cls, settings: _Settings) -> Policy:
        return cls(settings.timeout, settings.max_retries, settings.rate_limit, settings.max_concurrency)


ErrorMessage = Callable[[httpx.Response], str]


def _generic_error(response: httpx.Response) -> str:
    return response.reason_phrase or "error"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


class Http:
    """A thread-safe client for one provider origin. `error_message` extracts the provider's own error text.
    `busy_header` names a response header that counts the account's requests in flight (ours and everyone
    else's), and `account_limit` the account's own concurrency limit it is measured against."""

    def __init__(
        self,
        name: str,
        base_url: str,
        policy: Policy,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        error_message: ErrorMessage = _generic_error,
        secrets: tuple[str, ...] = (),
        busy_header: str | None = None,
        account_limit: int | None = None,
    ) -> None:
        self.name = name
        self.secrets = secrets
        self.policy = policy
        self.limiter = RateLimiter(policy.rate_limit)
        self.concurrency = ConcurrencyLimit(
            name, policy.max_concurrency, account_limit=account_limit if busy_header else None
        )
        self._busy_header = busy_header
        self._error_message = error_message
        self._settings: dict[str, Any] = {
            "base_url": base_url.rstrip("/"),
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            "auth": auth,
            "timeout": policy.timeout,
            "follow_redirects": False,
            "limits": httpx.Limits(max_connections=2, max_keepalive_connections=2),
            # Loading the CA bundle is costly: once per provider, not once per thread (docs/performance.md).
            "verify": _ssl_context(),
        }
        # One client (one keep-alive connection) per worker thread: a shared pool checks every idle connection
        # with a select() on each request, under one lock, which dominated collect's CPU at 64 workers
        # (docs/performance.md, Design decisions).
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(**self._settings)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> httpx.Response:
        """The final response (2xx, or a non-retryable status, or the last retryable one). Raises ProviderError
        only when no response could be had at all, or for any method but GET (nothing is sent then)."""
        if method.upper() not in READ_ONLY_METHODS:
            raise ProviderError(
                f"{self.name}: refusing to send {method.upper()} {_url_path(url)}: usagectl only reads from "
                "providers (GET)"
            )
        attempt = 0
        client = self.client  # made before the rate limiter's slot: building a client takes time
        while True:
            self.limiter.acquire()
            # The slot is held only while the request is in flight, never while sleeping between retries.
            ticket = self.concurrency.acquire()
            status: int | None = None
            busy: int | None = None
            try:
                response = client.request(
                    "GET",
                    url,
                    params=params,
                    headers=headers,
                    auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                )
                status = response.status_code
                busy = self._busy(response)
            except httpx.TransportError as exc:
                if attempt >= self.policy.max_retries:
                    raise ProviderError(
                        f"{self.name}: {_transport_message(exc)} after {attempt + 1} attempt(s)",
                        retryable=True,
                    ) from None
                time.sleep(backoff(attempt))
                attempt += 1
                continue
            finally:
                self.concurrency.release(ticket, status, busy)
            if response.status_code not in RETRY_STATUSES or attempt >= self.policy.max_retries:
                return response
            wait = server_wait(response.status_code, response.headers)
            if wait is not None and wait > MAX_SERVER_WAIT:
                return response
            time.sleep(max(backoff(attempt), wait or 0.0))
            attempt += 1

    def _busy(self, response: httpx.Response) -> int | None:
        if self._busy_header is None:
            return None
        raw = response.headers.get(self._busy_header)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None  # a garbled header says nothing about the account

    def get_json(self, path: str, params: Any = None) -> Any:
        """GET and parse JSON; any failure is a ProviderError with the provider's own message."""
        response = self.send("GET", path, params=params)
        if response.status_code >= 400:
            raise self.error(response)
        try:
            return loads(response.content)
        except ValueError as exc:
            raise ProviderError(
                f"{self.name}: malformed JSON in the response to {_path_only(response)}: {exc}"
            ) from None

    def error(self, response: httpx.Response) -> ProviderError:
        try:
            detail = self._error_message(response)
        except Exception:  # a garbled error body must not hide the status
            detail = response.reason_phrase or "error"
        return ProviderError(
            f"{self.name}: HTTP {response.status_code} from {_path_only(response)}: {scrub(detail, self.secrets)}",
            retryable=response.status_code in RETRY_STATUSES,
            status=response.status_code,
        )


def _path_only(response: httpx.Response) -> str:
    # The path without the query: enough to say which call failed, short, and never a token in a URL.
    return response.request.url.path


def _url_path(url: str) -> str:
    return httpx.URL(url).path


def _transport_message(exc: httpx.TransportError) -> str:
    kind = {
        httpx.ConnectError: "cannot connect",
        httpx.ConnectTimeout: "connect timed out",
        httpx.ReadTimeout: "read timed out",
        httpx.WriteTimeout: "write timed out",
        httpx.PoolTimeout: "connection pool timed out",
        httpx.RemoteProtocolError: "connection closed by the server",
    }.get(type(exc), type(exc).__name__)
    try:
        url = exc.request.url
    except RuntimeError:  # httpx raises when the error has no request attached
        return kind
    port = f":{url.port}" if url.port else ""
    return f"{kind} ({url.scheme}://{url.host}{port}{url.path})"


MAX_PAGES = 200


class PageGuard:
    """Stops a pagination that never ends: a cursor seen before, or more than MAX_PAGES pages."""

    def __init__(self, name: str, what: str, max_pages: int = MAX_PAGES) -> None:
        self.name = name
        self.what = what
        self.max_pages = max_pages
        self.pages = 1
        self._seen: set[str] = set()

    def follow(self, cursor: str) -> None:
        if cursor in self._seen:
            raise ProviderError(f"{self.name}: {self.what}: the API returned the same next page twice")
        self.pages += 1
        if self.pages > self.max_pages:
            raise ProviderError(
                f"{self.name}: {self.what}: pagination did not end after {self.max_pages} pages"
            )
        self._seen.add(cursor)


def bearer_http(
    name: str,
    settings: _Settings,
    ref: SecretRef | None,
    key: str,
    cfg: Config,
    *,
    error_message: ErrorMessage,
    headers: Mapping[str, str] | None = None,
) -> Http:
    """A client for an API that takes `Authorization: Bearer <secret>` (SendGrid, OpenAI). `key` names the
    secret's config key (providers.sendgrid.api_key) for errors; the secret itself goes only into the header."""
    from usagectl.errors import ConfigError

    if ref is None:
        field = key.rsplit(".", 1)[-1]
        raise ConfigError(f"{cfg.where()}{key.rsplit('.', 1)[0]}: {field}_env or {field}_file is required")
    secret = ref.resolve(key).get_secret_value()
    return Http(
        name,
        settings.base_url,
        Policy.of(settings),
        headers={"Authorization": f"Bearer {secret}", **(headers or {})},
        error_message=error_message,
        secrets=(secret,),
    )


def check_endpoint(
    name: str, build: Callable[[], Http], path: str, params: Any = None, *, ok: str = "credentials accepted"
) -> list[CheckResult]:
    """`config check --online` for one credential: build the client (a missing secret fails here) and make one
    cheap request."""
    from usagectl.errors import ConfigError

    try:
        http = build()
    except ConfigError as exc:
        return [CheckResult(name, False, str(exc))]
    try:
        http.get_json(path, params)
        return [CheckResult(name, True, ok)]
    except ProviderError as exc:
        return [CheckResult(name, False, str(exc))]
    finally:
        http.close()
