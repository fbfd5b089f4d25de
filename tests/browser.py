"""Real-browser helpers for the tests: a headless Debian Chromium driven by Selenium, and a static file server.

The browser is the system's /usr/bin/chromium with /usr/bin/chromedriver (.ci/run installs Debian's `chromium`
and `chromium-driver` when they are missing; nothing is downloaded by Selenium). With USAGECTL_REQUIRE_BROWSER=1
(CI) a missing browser or driver FAILS the test instead of skipping it, like the PostgreSQL tests.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

REQUIRE_BROWSER = os.environ.get("USAGECTL_REQUIRE_BROWSER") == "1"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} but USAGECTL_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A headless Chromium WebDriver with the browser console log kept (for CSP reports), quit afterwards."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _unavailable(f"{path} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        set_viewport(driver, width, height)
        yield driver
    finally:
        driver.quit()


def set_viewport(driver: Any, width: int, height: int, *, mobile: bool = False) -> None:
    """The page's viewport exactly width x height CSS pixels (a headless window's size includes no chrome, but
    this does not depend on it); `mobile` also honours <meta name=viewport> as a phone does."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def set_color_scheme(driver: Any, scheme: str) -> None:
    """Emulate prefers-color-scheme: light or dark."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )


@contextmanager
def static_server(root: Path, headers: Mapping[str, str] | None = None) -> Iterator[str]:
    """Serve `root` on a free loopback port with extra response headers; yields the base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def end_headers(self) -> None:
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
