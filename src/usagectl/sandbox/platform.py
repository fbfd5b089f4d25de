"""The platform's own traffic on the shared Twilio account, simulated: SMS sent at a steady rate during a collect.

    with sb.platform(rate=50, senders=8) as platform:
        collect(...)
    assert platform.rejected == 0

A ticker releases one send every 1/rate seconds; `senders` threads (the platform's web workers) each POST
Messages.json with the account's credentials over real HTTP and take the next send when done. Sends that find
every sender busy wait their turn, so the average rate holds and the platform never has more than `senders`
requests in flight. A send answered 429 is counted as rejected and not retried: that is the failure the
platform's users would see.
"""

from __future__ import annotations

import queue
import threading
import time
from types import TracebackType

import httpx


class PlatformTraffic:
    def __init__(
        self, base_url: str, account_sid: str, auth_token: str, *, rate: float, senders: int = 4
    ) -> None:
        if rate <= 0 or senders < 1:
            raise ValueError("rate must be positive and senders at least 1")
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = (account_sid, auth_token)
        self.rate = rate
        self.senders = senders
        self.sent = 0  # accepted (201)
        self.rejected = 0  # 429: the account was over its concurrency limit
        self.failed = 0  # anything else: another status or no answer
        self._lock = threading.Lock()
        self._todo: queue.Queue[int | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def attempted(self) -> int:
        return self.sent + self.rejected + self.failed

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._send_loop, name=f"platform-sender-{i}", daemon=True)
            for i in range(self.senders)
        ]
        self._threads.append(threading.Thread(target=self._tick, name="platform-ticker", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for _ in range(self.senders):
            self._todo.put(None)
        for t in self._threads:
            t.join(10)
        self._threads = []

    def __enter__(self) -> PlatformTraffic:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _tick(self) -> None:
        interval = 1.0 / self.rate
        due = time.monotonic()
        n = 0
        while not self._stop.is_set():
            n += 1
            self._todo.put(n)
            due += interval
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _send_loop(self) -> None:
        with httpx.Client(auth=self.auth, timeout=30.0) as client:
            while True:
                n = self._todo.get()
                if n is None or self._stop.is_set():
                    return
                try:
                    status: int | None = client.post(
                        self.url,
                        data={"To": f"+1500555{n % 10000:04d}", "From": "+15005550006", "Body": "hi"},
                    ).status_code
                except httpx.HTTPError:
                    status = None
                with self._lock:
                    if status == 201:
                        self.sent += 1
                    elif status == 429:
                        self.rejected += 1
                    else:
                        self.failed += 1
