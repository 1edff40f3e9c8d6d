"""`run --web`: mitmweb with the guard, looked at in a real headless browser (Debian's chromium,
driven by Playwright; never `playwright install`).

The blocked seed flow must show its decision where a mitmweb user looks: the comment column
names the action and rules, the flow carries the red marker, and the filter docs/workstation.md
gives (`~marked`) finds it and not the pass-through traffic. A screenshot is kept as an artifact:
in $GUARD_ARTIFACTS when set, else the test's tmp folder; its path is printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream
from tests.e2e.test_run_command import AUTODETECT, free_port, routes, start_run

pytestmark = pytest.mark.e2e
__all__ = ["routes"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# How long the browser waits for mitmweb's UI to show a state (a bound for a loaded machine, not a
# speed check: every wait ends as soon as the state is there).
UI_WAIT_MS = 60_000
_WEB_URL = re.compile(r"Web server listening at (http://\S+)")
ALLOWED = "https://autoconfig.northwind-traders.co.uk/mail/config-v1.1.xml?emailaddress=bob%40northwind-traders.co.uk"


def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def web(pki: TestPKI, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProxy]:
    upstream.add_route("autoconfig.northwind-traders.co.uk", "/mail/config-v1.1.xml",
                       body=(FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes(),
                       headers={"content-type": "text/xml"})
    proxy = start_run(pki, upstream, tmp_path_factory.mktemp("run-web"), "--web", f"127.0.0.1:{free_port()}")
    yield proxy
    proxy.stop()


def ui_url(proxy: GuardProxy) -> str:
    """The UI link mitmweb printed (mitmproxy 12 appends its auth token)."""
    return next(m[1] for line in proxy.output if (m := _WEB_URL.search(line)))


def test_mitmweb_shows_the_blocked_seed_flow_with_its_rules_and_marker(web: GuardProxy, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    before = len(web.decisions())
    blocked = web.curl(f"{AUTODETECT}?app=outlookdesktopBasic", "-H", "X-Email: email@example.com",
                       "-o", "/dev/null", "-w", "%{http_code}")
    assert blocked.stdout == "404", blocked.stderr
    assert "reserved-user-domain" in web.last_decision(before)["rules"]
    allowed = web.curl(ALLOWED, "-o", "/dev/null", "-w", "%{http_code}")
    assert allowed.stdout == "200", allowed.stderr
    assert web.last_decision(before + 1)["action"] == "allow"

    folder = Path(os.environ.get("GUARD_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "mitmweb-blocked-seed.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 500})
            page.set_default_timeout(UI_WAIT_MS)
            expect.set_options(timeout=UI_WAIT_MS)
            page.goto(ui_url(web))
            row = page.locator(".flow-table tbody tr", has_text="/autodetect/detect")
            # the UI fills a row's cells as flow updates arrive: wait for the state, never sample it once
            expect(row.first).to_contain_text("autodiscover-guard: blocked (reserved-user-domain")
            expect(row.first).to_contain_text("🔴")  # mitmweb draws the flow's marker (:red_circle:)
            row.first.click()  # the flow's details: its Comment tab shows the whole comment
            page.get_by_role("link", name="Comment", exact=True).click()
            page.locator(".kv-value", has_text="blocked (reserved-user-domain").wait_for()
            page.screenshot(path=str(shot))
            page.get_by_role("link", name="Flow List", exact=True).click()

            rows = page.locator(".flow-table tbody tr")
            expect(rows.filter(has_text="autoconfig.northwind-traders.co.uk")).to_have_count(1)
            page.get_by_placeholder("Search").fill("~marked")  # the filter docs/workstation.md gives
            expect(rows.filter(has_text="autoconfig.northwind-traders.co.uk")).to_have_count(0)
            expect(rows.filter(has_text="/autodetect/detect")).to_have_count(1)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
