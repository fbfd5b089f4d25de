"""The rendered admin pages in a real (headless) Chromium, served as static files under the strict
Content-Security-Policy the app will send: styles load, the cards, chart and table show, a phone gets no
horizontal scroll, dark mode changes the colours, keyboard focus is visible. Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from browser import set_color_scheme, set_viewport, static_server
from conftest import open_priced
from priced import PAGE_TENANTS
from test_web_pages import NOV_5, OCT, ROOT, TENANT, _october
from usagectl import config as cfgmod
from usagectl.periods import Window
from usagectl.render.fmt import n, usd
from usagectl.reports import EMPTY_MESSAGE, TenantReport, estimated_costs, tenant_report, tenants_report
from usagectl.store.engine import Store, make_engine, upgrade
from usagectl.web.pages import (
    STATIC_DIR,
    STYLESHEET,
    PageContext,
    SystemUsageQuery,
    render_billing_usage,
    render_forbidden,
    render_sign_in,
    render_system_usage,
    system_default_month,
)

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
LIGHT_BG = "rgb(246, 247, 249)"  # --bg in usage.css
DARK_BG = "rgb(13, 17, 23)"
NOV_3 = date(2026, 11, 3)
pytestmark = pytest.mark.slow  # a real browser


@pytest.fixture
def site(
    tmp_path: Path,
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
) -> tuple[Path, TenantReport]:
    """The pages rendered from a real SQLite store, laid out as the app will serve them (base path "")."""
    cfg, store = october_store(tmp_path, write_config, monkeypatch, cli)
    try:
        report = tenant_report(store, cfg, "acme", OCT, today=NOV_5)
        pages = {
            "admin/billing-usage.html": render_billing_usage(report, TENANT),
            "admin/billing-usage-empty.html": render_billing_usage(
                tenant_report(store, cfg, "quiet", OCT, today=NOV_5), TENANT
            ),
            "admin/system-usage.html": render_system_usage(
                tenants_report(store, OCT), SystemUsageQuery(OCT), ROOT
            ),
            # A root admin's view (a provider cost column: the widest daily table) and System Usage on 3 November,
            # before the 7th: it opens on October, with the plan charge, margin and month-over-month columns.
            "admin/billing-usage-root.html": render_billing_usage(report, ROOT),
            # A starter tenant's September: no usage, a plan with allowances.
            "admin/billing-usage-empty-plan.html": render_billing_usage(
                tenant_report(store, cfg, "evil", Window.month(2026, 9), today=NOV_5), TENANT
            ),
            "admin/system-usage-nov3.html": render_system_usage(
                october := tenants_report(store, system_default_month(NOV_3), cfg=cfg),
                SystemUsageQuery(system_default_month(NOV_3)),
                ROOT,
                previous=estimated_costs(store, Window.month(2026, 9), [t.slug for t in october.lines]),
                today=NOV_3,
            ),
            "signin.html": render_sign_in(PageContext(role=None)),
            "forbidden.html": render_forbidden(TENANT),
        }
    finally:
        store.close()
    root = write_site(tmp_path / "site", pages)
    return root, report


def october_store(
    tmp_path: Path,
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
) -> tuple[cfgmod.Config, Store]:
    """A migrated SQLite store under the pages' priced config with test_web_pages' October in it; the caller
    closes it. SQLite only: the browser tests are about the pages, not the backends."""
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    env = open_priced(url, write_config, monkeypatch, cli, tenants=PAGE_TENANTS)
    try:
        _october(env)
    except BaseException:
        env.store.close()
        raise
    return env.cfg, env.store


def write_site(root: Path, pages: dict[str, str]) -> Path:
    """Pages (path under the site -> HTML) and the stylesheet, laid out as the app serves them."""
    for name, html in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(html, encoding="utf-8")
    (root / "static").mkdir()
    shutil.copy(STATIC_DIR / STYLESHEET, root / "static" / STYLESHEET)
    # ROOT's pages live under /usage: serve the stylesheet there too.
    shutil.copytree(root / "static", root / "usage" / "static")
    return root


def _js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def _background(driver: Any) -> str:
    return str(_js(driver, "return getComputedStyle(document.body).backgroundColor"))


def _no_horizontal_scroll(driver: Any) -> None:
    inner, scroll = _js(driver, "return [window.innerWidth, document.documentElement.scrollWidth]")
    assert inner == 390 and scroll <= inner, (inner, scroll)


def _csp_violations(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


def test_pages_in_a_real_browser(browser: Any, site: tuple[Path, TenantReport], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root, report = site
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with static_server(root, {"Content-Security-Policy": CSP}) as base:
        browser.get(base + "/admin/billing-usage.html")
        # The stylesheet loaded under the CSP (the light background is its colour, not the browser's white).
        assert _background(browser) == LIGHT_BG
        for name in ("SMS", "Email", "Voice", "AI", "Cost", "Plan"):
            assert browser.find_element(By.CSS_SELECTOR, f'[data-card="{name}"]').is_displayed(), name
        sms_card = browser.find_element(By.CSS_SELECTOR, '[data-card="SMS"] dd').text
        assert sms_card == n(report.totals.sms) == "1,240"
        table = browser.find_element(By.CSS_SELECTOR, "table.daily")
        assert table.is_displayed()
        first = [c.text for c in table.find_elements(By.CSS_SELECTOR, "tbody tr:first-child > *")]
        d = report.days[0]
        assert first == [d.date.isoformat(), n(d.sms_total), n(d.mms_total), n(d.voice_total_minutes),
                         n(d.email_total), n(d.ai_total_tokens), usd(d.estimated_cost_usd)]  # fmt: skip
        assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 31
        # Numbers are right-aligned.
        assert (
            _js(browser, "return getComputedStyle(document.querySelector('tbody td')).textAlign") == "right"
        )
        chart = browser.find_element(By.ID, "chart-cost")
        assert chart.is_displayed() and chart.size["width"] > 300
        assert len(chart.find_elements(By.CSS_SELECTOR, "circle")) == 30
        # The polyline is drawn (has a stroke colour from the CSS and a length).
        assert _js(browser, "return document.querySelector('#chart-cost polyline').getTotalLength()") > 100
        over = browser.find_element(By.CSS_SELECTOR, '[data-metric="sms"] .over-flag')
        assert over.is_displayed() and over.text == "over allowance"
        # Keyboard focus is visible: the first Tab reaches the skip link, which shows and gets an outline.
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        focused = _js(
            browser,
            "const s = getComputedStyle(document.activeElement); return [document.activeElement.className, s.outlineStyle, s.outlineWidth]",
        )
        assert focused == ["skip", "solid", "3px"]
        browser.save_screenshot(str(shots / "billing-usage-1280x800.png"))

        set_color_scheme(browser, "dark")
        assert _background(browser) == DARK_BG
        browser.save_screenshot(str(shots / "billing-usage-dark-1280x800.png"))
        set_color_scheme(browser, "light")
        assert _background(browser) == LIGHT_BG

        set_viewport(browser, 390, 844, mobile=True)
        browser.get(base + "/admin/billing-usage.html")
        _no_horizontal_scroll(browser)
        assert browser.find_element(By.ID, "chart-cost").size["width"] <= 390
        browser.save_screenshot(str(shots / "billing-usage-390x844.png"))

        for page in ("system-usage", "billing-usage-empty"):
            browser.get(f"{base}/admin/{page}.html")
            _no_horizontal_scroll(browser)
            browser.save_screenshot(str(shots / f"{page}-390x844.png"))
        assert browser.find_element(By.CSS_SELECTOR, "p.empty").text == EMPTY_MESSAGE
        for page in ("signin", "forbidden"):
            browser.get(f"{base}/{page}.html")
            _no_horizontal_scroll(browser)

        set_viewport(browser, 1280, 800)
        browser.get(base + "/admin/system-usage.html")
        assert _background(browser) == LIGHT_BG
        slugs = [r.get_attribute("data-tenant") for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert slugs == ["globex", "acme", "evil", "quiet"]
        # The tenant named <script>alert(1)</script> is text on the page, not a script that ran.
        names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "tbody .tenant-name")]
        assert "<script>alert(1)</script>" in names
        assert _js(browser, "return document.scripts.length") == 0
        browser.save_screenshot(str(shots / "system-usage-1280x800.png"))

        assert _csp_violations(browser) == []
    for name in (
        "billing-usage-1280x800",
        "billing-usage-390x844",
        "system-usage-1280x800",
        "system-usage-390x844",
    ):
        assert (shots / f"{name}.png").stat().st_size > 5000


# Every money cell's box, and whether any scroll container around it scrolls sideways.
_MONEY_BOXES = """
const out = [];
for (const el of document.querySelectorAll('td.money, td.num, .card dd')) {
  const r = el.getBoundingClientRect();
  let hidden = false;
  for (let p = el.parentElement; p; p = p.parentElement) {
    if (p.scrollWidth > p.clientWidth + 1 && getComputedStyle(p).overflowX !== 'visible') { hidden = true; }
  }
  out.push([el.textContent.trim(), r.left, r.right, hidden]);
}
return out;
"""


def test_phone_keeps_every_figure_in_view(
    browser: Any, site: tuple[Path, TenantReport], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    root, _ = site
    with static_server(root, {"Content-Security-Policy": CSP}) as base:
        set_viewport(browser, 390, 844, mobile=True)
        for page in ("billing-usage", "billing-usage-root", "system-usage-nov3"):
            browser.get(f"{base}/admin/{page}.html")
            _no_horizontal_scroll(browser)
            boxes = _js(browser, _MONEY_BOXES)
            assert len(boxes) > 30, page
            for text, left, right, hidden in boxes:
                # Inside the 390 px viewport, and no sideways-scrolling box around it.
                assert left >= 0 and right <= 390 and not hidden, (page, text, left, right, hidden)
        # The daily table, stacked: the date, then the money, then the counts, each with its label.
        browser.get(f"{base}/admin/billing-usage.html")
        tops = _js(
            browser,
            "return [...document.querySelector('table.daily tbody tr').children]"
            ".map(c => [c.className, Math.round(c.getBoundingClientRect().top)])",
        )
        order = [cls.split()[0] for cls, _ in sorted(tops, key=lambda t: t[1])]
        assert order[:2] == ["col-date", "col-estimated_cost_usd"], tops
        assert len({top for _, top in tops}) == len(tops)  # one line each: stacked, not side by side
        label = _js(
            browser,
            "return getComputedStyle(document.querySelector('table.daily tbody td.money'), '::before').content",
        )
        assert label == '"Est. cost"'
        # A tenant admin's page has no provider cost or margin, wide or narrow.
        main = browser.find_element(By.TAG_NAME, "main").text
        assert "Provider" not in main and "Margin" not in main and "$0.41" not in main

        set_viewport(browser, 1280, 800)
        # System Usage on 3 November opens on October, with a link to November so far.
        browser.get(f"{base}/admin/system-usage-nov3.html")
        assert browser.find_element(By.ID, "month").get_attribute("value") == "2026-10"
        link = browser.find_element(By.CSS_SELECTOR, "a.month-so-far")
        assert link.is_displayed() and link.text == "November 2026 so far"
        heads = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.tenants thead th")]
        assert "vs last month" in heads and "Margin" in heads
        # The empty state keeps the sentence and shows the plan and its allowances.
        browser.get(f"{base}/admin/billing-usage-empty-plan.html")
        assert browser.find_element(By.CSS_SELECTOR, "p.empty").text == EMPTY_MESSAGE
        plan = browser.find_element(By.CSS_SELECTOR, "section.plan-summary")
        assert plan.is_displayed() and "Monthly fee" in plan.text
        assert len(plan.find_elements(By.CSS_SELECTOR, "li.allowance meter")) == 4
        assert _csp_violations(browser) == []


def test_a_missing_browser_fails_under_require_browser(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import browser

    monkeypatch.setattr(browser, "CHROMEDRIVER", str(tmp_path / "no-chromedriver"))
    monkeypatch.setattr(browser, "REQUIRE_BROWSER", True)
    with pytest.raises(pytest.fail.Exception, match="no-chromedriver is missing"), browser.chromium():
        pass
    monkeypatch.setattr(browser, "REQUIRE_BROWSER", False)
    with pytest.raises(pytest.skip.Exception, match="no-chromedriver is missing"), browser.chromium():
        pass


_CHARGE_LINES = """
const out = [];
for (const row of document.querySelectorAll('section.card.charge dl > div, section.card.charge dt')) {
  const dt = row.tagName === 'DT' ? row : row.querySelector('dt');
  if (!dt) continue;
  const dd = dt.nextElementSibling;
  const a = dt.getBoundingClientRect(), b = dd.getBoundingClientRect();
  let hidden = false;
  for (let p = dd.parentElement; p; p = p.parentElement) {
    if (p.scrollWidth > p.clientWidth + 1 && getComputedStyle(p).overflowX !== 'visible') { hidden = true; }
  }
  out.push([dt.textContent.trim(), dd.textContent.trim(), Math.min(a.left, b.left), Math.max(a.right, b.right),
            a.height > 0 && b.height > 0, hidden, getComputedStyle(dt).color, getComputedStyle(dd).color]);
}
return out;
"""


def test_billing_usage_shows_the_plan_parts_of_a_month_with_a_plan_change(
    browser: Any,
    tmp_path: Path,
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
) -> None:
    """A tenant upgraded from Starter to Pro on 15 November: the charge card names each part with its days and
    amount ("Starter 1-14 Nov", "Pro from 15 Nov"), readable in light and dark and inside a 390 px phone."""
    from test_plan_history import TENANTS, _hand_charge, _november
    from usagectl.web.pages import PageContext

    url = f"sqlite:///{tmp_path / 'usage.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    env = open_priced(url, write_config, monkeypatch, cli, tenants=TENANTS)
    try:
        report = _november(env)
        page = render_billing_usage(report, PageContext(role="tenant", tenant="acme", csrf_token="t"))
    finally:
        env.store.close()
    root = write_site(tmp_path / "site", {"admin/billing-usage-plan-change.html": page})
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def parts() -> dict[str, tuple[str, Any, Any, bool, bool, str, str]]:
        lines = _js(browser, _CHARGE_LINES)
        return {label: tuple(rest) for label, *rest in lines if "Nov" in label}

    with static_server(root, {"Content-Security-Policy": CSP}) as base:
        browser.get(base + "/admin/billing-usage-plan-change.html")
        seen: dict[str, str] = {}
        for scheme, bg in (("light", LIGHT_BG), ("dark", DARK_BG)):
            set_color_scheme(browser, scheme)
            assert _background(browser) == bg
            got = parts()
            assert [k for k in got if k.startswith("Starter 1-14 Nov")], got
            assert [k for k in got if k.startswith("Pro from 15 Nov")], got
            for label, (amount, _, _, shown, hidden, fg, dd_fg) in got.items():
                assert amount.startswith("$") and shown and not hidden, (scheme, label, amount)
                # The text takes the scheme's colour, not the page's background.
                assert fg != bg and dd_fg != bg, (scheme, label, fg, dd_fg)
                seen[f"{scheme} {label}"] = amount
            browser.save_screenshot(str(shots / f"plan-parts-{scheme}-1280x800.png"))
        amounts = {k.split(" ", 1)[1]: v for k, v in seen.items() if k.startswith("light")}
        # The prorated fees (test_plan_history): $49 x 14/30 and $99 x 16/30.
        fees = _hand_charge()
        assert (usd(fees["fee_starter"]), usd(fees["fee_pro"])) == ("$22.87", "$52.80")
        assert any(k.startswith("Starter 1-14 Nov") and v == "$22.87" for k, v in amounts.items()), amounts
        assert any(k.startswith("Pro from 15 Nov") and v == "$52.80" for k, v in amounts.items()), amounts
        # The colours differ between the schemes (the dark stylesheet applies to these lines too).
        set_color_scheme(browser, "light")
        light_fg = parts()
        set_color_scheme(browser, "dark")
        dark_fg = parts()
        assert all(light_fg[k][5] != dark_fg[k][5] for k in light_fg), (light_fg, dark_fg)
        set_color_scheme(browser, "light")

        set_viewport(browser, 390, 844, mobile=True)
        browser.get(base + "/admin/billing-usage-plan-change.html")
        _no_horizontal_scroll(browser)
        got = parts()
        assert len(got) >= 2, got
        for label, (amount, left, right, shown, hidden, _, _) in got.items():
            assert shown and not hidden and left >= 0 and right <= 390, (label, amount, left, right)
        browser.save_screenshot(str(shots / "plan-parts-390x844.png"))
        assert _csp_violations(browser) == []
