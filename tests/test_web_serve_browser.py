"""The pages of a real `python -m usagectl serve` (loopback, free port) in headless Debian Chromium through
Selenium, on SQLite and PostgreSQL: sign in with a token, the page's figures equal the API's, the root page
sorts, a tenant cannot open it, sign-out and an expired cookie end the session, a tenant's HTML-looking name is
text. Screenshots at 1280x800 and 390x844 go to the test's tmp dir (USAGECTL_UPDATE_SCREENSHOTS=1 also copies
one of each page into docs/img/)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser import set_viewport
from test_serve_process import _start, free_port
from test_web_app import EVIL, SECRET, make_site
from usagectl.periods import Window, utc_today
from usagectl.render.fmt import n, usd
from usagectl.reports import EMPTY_MESSAGE
from usagectl.store.tokens import create_token
from usagectl.web import pages
from usagectl.web.session import CSRF_COOKIE, SESSION_COOKIE, Session, sign_session

pytestmark = pytest.mark.slow

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


@dataclass
class Served:
    base: str
    acme: str
    quiet: str
    root: str


@pytest.fixture
def served(
    db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> Iterator[Served]:
    store, _cfg = make_site(db_url, write_config, monkeypatch, cli)
    acme, _ = create_token(store, tenant="acme")
    quiet, _ = create_token(store, tenant="quiet")
    root, _ = create_token(store, tenant=None)
    store.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "USAGECTL_SERVE_ACCESS_LOG": "0"}
    proc = _start(["-q", "serve", "--host", "127.0.0.1", "--port", str(port)], env, base)
    try:
        yield Served(base, acme, quiet, root)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def sign_in(driver: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/signin")
    driver.find_element(By.ID, "token").send_keys(token)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]"))


def click_and_wait(driver: Any, element: Any) -> None:
    """Click, then wait for the next page to replace this one (a click does not wait for navigation)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def gone(_: Any) -> bool:
        # Stale, or (mid-navigation) Chromium's "Node with given id does not belong to the document": either
        # way the old page is gone. expected_conditions.staleness_of knows only the first.
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False

    element.click()
    wait = WebDriverWait(driver, 30)
    wait.until(gone)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def shoot(driver: Any, tmp_path: Path, name: str) -> None:
    """Screenshots at 1280x800 and 390x844 (phone), the viewport back to 1280x800 afterwards."""
    for width, height, mobile in ((1280, 800, False), (390, 844, True)):
        set_viewport(driver, width, height, mobile=mobile)
        driver.refresh()
        path = tmp_path / f"{name}-{width}x{height}.png"
        assert driver.save_screenshot(str(path)) and path.stat().st_size > 0
        if os.environ.get("USAGECTL_UPDATE_SCREENSHOTS") == "1":
            DOCS_IMG.mkdir(exist_ok=True)
            shutil.copy(path, DOCS_IMG / path.name)
    set_viewport(driver, 1280, 800)
    driver.refresh()


def test_tenant_page_in_the_browser_equals_the_api(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, served.base, served.acme)
    assert browser.current_url == served.base + "/admin/billing-usage"
    assert browser.find_element(By.TAG_NAME, "h1").text.strip()
    cards = [
        e.get_attribute("data-card") for e in browser.find_elements(By.CSS_SELECTOR, "section[data-card]")
    ]
    assert {"SMS", "Email", "Voice", "AI", "Cost", "Plan"} <= set(cards)
    chart = browser.find_element(By.CSS_SELECTOR, "svg#chart-cost")
    assert chart.find_element(By.TAG_NAME, "title").get_attribute("textContent").startswith("Estimated cost")
    assert len(chart.find_elements(By.TAG_NAME, "circle")) == 30  # one point per day of the 30
    assert chart.size["width"] > 0 and chart.size["height"] > 0
    bars = browser.find_elements(By.CSS_SELECTOR, "li.allowance meter")
    assert len(bars) == 4 and all(b.is_displayed() for b in bars)

    # The month picker: a month with data (the fixture's days are the last 30), cell for cell the API's days.
    month = (utc_today() - timedelta(days=15)).replace(day=1)
    last = min(pages.month_window(Window.month(month.year, month.month), utc_today()).last,
               utc_today() - timedelta(days=1))  # fmt: skip
    browser.get(served.base + f"/admin/billing-usage?month={month:%Y-%m}")
    assert browser.find_element(By.ID, "month").get_attribute("value") == f"{month:%Y-%m}"
    api = httpx.get(
        served.base + "/api/admin/usage/daily",
        params={"from": month.isoformat(), "to": last.isoformat()},
        headers={"Authorization": f"Bearer {served.acme}"},
        timeout=30,
    ).json()
    # Over the real server too, a tenant token gets the tenant model: no provider cost, no margin.
    assert "margin_usd" not in api and "provider_costs" not in api
    assert api["days"] and not [d for d in api["days"] if "provider_cost_usd" in d]
    shown = [
        [c.text for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "table.daily tbody tr")
    ]
    expected = [
        [
            d["date"],
            n(d["sms_total"]),
            n(d["mms_total"]),
            n(d["voice_total_minutes"]),
            n(d["email_total"]),
            n(d["ai_total_tokens"]),
            usd(Decimal(d["estimated_cost_usd"])),
        ]
        for d in api["days"]
    ]
    assert expected and shown == expected
    assert (
        shown[0][1] == "40" and shown[0][6]
    )  # the standard day (tests/priced.py): 30 SMS out, 10 in == usd(Decimal(api["days"][0]["estimated_cost_usd"]))
    # No provider cost or margin anywhere on a tenant admin's page.
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "Provider" not in main and "Margin" not in main and "$0.41" not in main
    shoot(browser, tmp_path, "billing-usage")

    # A tenant admin cannot open the root page: the 403 page, with status 403.
    browser.get(served.base + "/admin/system-usage")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    cookie = browser.get_cookie(SESSION_COOKIE)["value"]
    r = httpx.get(served.base + "/admin/system-usage", cookies={SESSION_COOKIE: cookie}, timeout=30)
    assert r.status_code == 403 and "Globex" not in r.text

    # Sign-out ends the session, on the server too: the cookie saved before it opens nothing afterwards,
    # whether the browser puts it back or another client sends it.
    browser.get(served.base + "/admin/billing-usage")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.signout button"))
    assert browser.current_url == served.base + "/signin"
    assert browser.get_cookie(SESSION_COOKIE) is None
    browser.get(served.base + "/admin/billing-usage")
    assert browser.current_url == served.base + "/signin"
    browser.add_cookie({"name": SESSION_COOKIE, "value": cookie, "path": "/"})
    browser.get(served.base + "/admin/billing-usage")
    assert browser.current_url == served.base + "/signin"
    assert browser.get_cookie(SESSION_COOKIE) is None  # cleared again
    r = httpx.get(served.base + "/admin/billing-usage", cookies={SESSION_COOKIE: cookie}, timeout=30)
    assert r.status_code == 303 and r.headers["location"] == "/signin"


def test_tenant_without_usage_sees_the_sentence(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, served.base, served.quiet)
    assert browser.current_url == served.base + "/admin/billing-usage"
    main = browser.find_element(By.TAG_NAME, "main").text
    assert EMPTY_MESSAGE == "Usage metrics will appear here once you begin messaging."
    assert EMPTY_MESSAGE in main
    assert not browser.find_elements(By.CSS_SELECTOR, "table.daily, svg#chart-cost")
    # Under the sentence: the plan and its fee (and its allowances, when it has any).
    plan = browser.find_element(By.CSS_SELECTOR, "section.plan-summary")
    assert plan.is_displayed() and "Plan elite" in plan.text and "Monthly fee" in plan.text


def test_root_page_sorts_escapes_and_refuses_an_expired_cookie(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    def order() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "table.tenants tbody tr[data-tenant]")
        return [r.get_attribute("data-tenant") for r in rows]

    def column(index: int) -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "table.tenants tbody tr[data-tenant]")
        return [r.find_elements(By.CSS_SELECTOR, "th, td")[index].text for r in rows]

    sign_in(browser, served.base, served.root)
    assert browser.current_url == served.base + "/admin/system-usage"
    assert set(order()) == {"acme", "globex", "quiet", "evil"}  # every tenant
    costs = [Decimal(c.lstrip("$").replace(",", "")) for c in column(6)]
    assert costs == sorted(costs, reverse=True) and order()[0] == "globex"
    by_cost = order()
    shoot(browser, tmp_path, "system-usage")

    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Emails"))
    assert "sort=email" in browser.current_url
    emails = [int(c.replace(",", "")) for c in column(3)]
    assert emails == sorted(emails, reverse=True) and order()[0] == "acme" and order() != by_cost

    # A tenant named like a script is text, and nothing ran.
    evil = browser.find_element(By.CSS_SELECTOR, "tr[data-tenant=evil] .tenant-name")
    assert evil.text == EVIL
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018

    # Each tenant links to its billing-usage page.
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "tr[data-tenant=acme] th a"))
    assert browser.current_url == served.base + "/admin/billing-usage?tenant=acme"

    # An expired cookie, correctly signed, is refused: back to sign-in.
    browser.delete_all_cookies()
    expired = sign_session(SECRET.encode(), Session("x" * 43, int(time.time()) - 5))
    browser.add_cookie({"name": SESSION_COOKIE, "value": expired, "path": "/"})
    browser.get(served.base + "/admin/system-usage")
    assert browser.current_url == served.base + "/signin"


def test_cookie_is_secure_behind_a_trusted_proxy(served: Served) -> None:
    """uvicorn trusts X-Forwarded-Proto from loopback (FORWARDED_ALLOW_IPS): the session cookie is then Secure."""
    import re

    for proto, secure in (("https", True), (None, False)):
        headers = {"X-Forwarded-Proto": proto} if proto else {}
        with httpx.Client(base_url=served.base, timeout=30, headers=headers) as c:
            form = c.get("/signin")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf
            # A Secure cookie is not sent back over plain HTTP by httpx: send it as the proxy would.
            r = c.post(
                "/signin",
                data={"token": served.acme, "csrf_token": csrf.group(1)},
                headers={"Cookie": f"{CSRF_COOKIE}={form.cookies[CSRF_COOKIE]}"},
            )
            assert r.status_code == 303
            cookie = next(
                v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE)
            )
            assert ("secure" in [f.strip().lower() for f in cookie.split(";")]) is secure, proto


def test_root_page_pages_with_plain_links_light_dark_and_phone(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    """System Usage's Previous/Next are plain links (no script on the page): one tenant a page, each page is the
    ranking's next row, in light and dark, at 1280 px and on a 390 px phone, the links in view and legible."""
    from selenium.webdriver.common.by import By

    from browser import set_color_scheme

    def order() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "table.tenants tbody tr[data-tenant]")
        return [r.get_attribute("data-tenant") for r in rows]

    sign_in(browser, served.base, served.root)
    ranking = order()
    assert len(ranking) == 4
    for scheme in ("light", "dark"):
        set_color_scheme(browser, scheme)
        for width, height, mobile in ((1280, 800, False), (390, 844, True)):
            set_viewport(browser, width, height, mobile=mobile)
            browser.get(served.base + "/admin/system-usage?limit=1")
            assert browser.execute_script("return document.scripts.length") == 0
            seen = [order()]
            while True:
                pager = browser.find_element(By.CSS_SELECTOR, "nav.pager")
                links = {a.get_attribute("rel"): a for a in pager.find_elements(By.TAG_NAME, "a")}
                for a in links.values():
                    box = browser.execute_script(
                        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.right]", a
                    )
                    assert a.is_displayed() and box[0] >= 0 and box[1] <= width, (scheme, width, a.text, box)
                    color, back = browser.execute_script(
                        "return [getComputedStyle(arguments[0]).color, getComputedStyle(document.body).backgroundColor]",
                        a,
                    )
                    assert color != back, (scheme, color)
                if "next" not in links:
                    break
                click_and_wait(browser, links["next"])
                seen.append(order())
            assert seen == [[slug] for slug in ranking], (scheme, width)
            assert "offset=3" in browser.current_url and "Previous" in pager.text
            click_and_wait(browser, links["prev"])
            assert order() == [ranking[2]] and "offset=2" in browser.current_url
            path = tmp_path / f"system-usage-pager-{scheme}-{width}x{height}.png"
            assert browser.save_screenshot(str(path))
    set_color_scheme(browser, "light")
    set_viewport(browser, 1280, 800)
