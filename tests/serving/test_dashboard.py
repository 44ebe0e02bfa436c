"""The dashboard page in a real browser: headless Chromium, driven over the DevTools protocol, against a real
uvicorn serving a populated store. It logs in through the form, and the charts must render with the stored data.

The browser is Debian's ``chromium`` (``.ci/run`` installs it when missing); the protocol is spoken over the
``websockets`` package (a dependency of polygon-api-client, already installed).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.serving.conftest import OPERATOR_KEY, READER_KEY, SYMBOLS, make_service
from tests.serving.live import live_server

CHROMIUM = os.environ.get("LSTM_PIPELINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000", "--remote-debugging-port=0",
]
PAGE_TIMEOUT_SECONDS = 30.0
"""How long the browser may take to reach a state; the wait ends as soon as it does (polled, not slept)."""


class Browser:
    """One headless Chromium page, driven by DevTools protocol commands."""

    def __init__(self, websocket: Any) -> None:
        self.websocket = websocket
        self.ids = itertools.count(1)

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.websocket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.websocket.recv(timeout=PAGE_TIMEOUT_SECONDS))
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.command("Page.navigate", url=url)

    def wait_for(self, expression: str) -> Any:
        """Poll ``expression`` until it is truthy (the page loads and scripts run on their own time)."""
        deadline = time.monotonic() + PAGE_TIMEOUT_SECONDS
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except AssertionError:
                value = None  # the page is between documents
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"The page never satisfied {expression!r} (last value {value!r}).")

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.command("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                                ["data"])
        path.write_bytes(data)
        return data


@contextmanager
def chromium(tmp_path: Path, url: str) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"Chromium was not found at {CHROMIUM}; install Debian's chromium package (apt-get install -y chromium) "
        "or set LSTM_PIPELINE_CHROMIUM."
    )
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    process = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + PAGE_TIMEOUT_SECONDS
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert process.poll() is None, "Chromium exited before opening its DevTools port."
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port."
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        pages: list[dict[str, Any]] = []
        while not pages:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
            pages = [t for t in targets if t.get("type") == "page"]
            assert pages or time.monotonic() < deadline, "Chromium opened no page."
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as websocket:
            browser = Browser(websocket)
            browser.command("Page.enable")
            browser.command("Runtime.enable")
            yield browser
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


CHART_SUMMARY = """
JSON.stringify(Array.from(document.querySelectorAll('section.symbol')).map((section) => {
  const points = (selector) => Array.from(section.querySelectorAll(selector))
      .map((node) => Number(node.getAttribute('data-points')));
  const coordinates = (selector) => Array.from(section.querySelectorAll(selector))
      .map((node) => (node.getAttribute('d') || node.getAttribute('points') || '').match(/-?[0-9.]+,-?[0-9.]+/g)
           ?.length || 0);
  return {
    symbol: section.dataset.symbol,
    actual: points('svg[data-chart=prices] path.actual'),
    actual_coordinates: coordinates('svg[data-chart=prices] path.actual'),
    forecast: points('svg[data-chart=prices] path.forecast'),
    band80: points('svg[data-chart=prices] polygon.band80'),
    band95: coordinates('svg[data-chart=prices] polygon.band95'),
    accuracy: points('svg[data-chart=accuracy] path.metric'),
    recommendations: section.querySelectorAll('table[data-table=recommendations] tr').length - 1,
    alerts: Array.from(section.querySelectorAll('ul[data-list=alerts] li')).map((li) => li.textContent),
    meta: section.querySelector('.meta').textContent,
  };
}))
"""


def test_dashboard_logs_in_and_draws_every_symbols_charts_with_the_stored_data(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db, api={"dashboard_refresh_seconds": 2})
    with live_server(service.app()) as url, chromium(tmp_path, f"{url}/dashboard") as browser:
        # Without a key cookie the dashboard sends the browser to the login form.
        browser.wait_for("location.pathname === '/login' && !!document.querySelector('form input[name=key]')")

        # A wrong key: the form again, with one sentence saying so.
        browser.evaluate("document.getElementById('key').value = 'not-a-key'; document.forms[0].submit(); true")
        error = browser.wait_for("document.querySelector('p.error')?.textContent")
        assert error.startswith("That API key is not valid;") and error.count(".") == 1

        # The reader key: the cookie is set (HttpOnly: the page's script cannot read it) and the charts draw.
        browser.evaluate(f"document.getElementById('key').value = '{READER_KEY}'; document.forms[0].submit(); true")
        browser.wait_for("location.pathname === '/dashboard' && Number(document.body.dataset.loaded) >= 1")
        assert READER_KEY not in browser.evaluate("document.cookie")
        panels = json.loads(browser.evaluate(CHART_SUMMARY))
        assert [panel["symbol"] for panel in panels] == list(SYMBOLS)
        for panel in panels:
            # conftest.populate: four bars per symbol, a three-step forecast as of the last one, four day-span
            # accuracy rows in one horizon bucket, one active buy, two open alerts (one resolved: not shown).
            assert panel["actual"] == [4] and panel["actual_coordinates"] == [4]
            assert panel["forecast"] == [1 + 3]  # from the newest actual close through the three steps
            assert panel["band80"] == [3] and panel["band95"] == [6]  # upper edge and lower edge
            assert panel["accuracy"] == [4]
            assert panel["recommendations"] == 1
            assert sorted(text.split(" · ")[0] for text in panel["alerts"]) == ["CRITICAL", "WARNING"]
            assert f"model v-{panel['symbol'].lower()}-1" in panel["meta"]
        status = browser.evaluate("document.getElementById('status').textContent")
        assert status.startswith("Data as of ") and "every 2 s" in status

        # It refreshes on the configured interval (2 s here) without a reload.
        loads = int(browser.evaluate("document.body.dataset.loaded"))
        browser.wait_for(f"Number(document.body.dataset.loaded) > {loads}")

        png = browser.screenshot(tmp_path / "dashboard.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
        keep = os.environ.get("LSTM_PIPELINE_SCREENSHOT_DIR")
        if keep:
            shutil.copy(tmp_path / "dashboard.png", Path(keep) / "dashboard.png")


def test_login_sets_a_strict_http_only_cookie_that_opens_the_page_and_its_data(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db)
    with live_server(service.app()) as url, httpx.Client(base_url=url) as client:
        assert client.get("/dashboard", follow_redirects=False).headers["location"] == "/login"
        assert client.get("/dashboard/data").status_code == 401

        refused = client.post("/login", data={"key": "wrong"}, follow_redirects=False)
        assert refused.status_code == 403 and "That API key is not valid;" in refused.text
        assert "set-cookie" not in refused.headers

        accepted = client.post("/login", data={"key": OPERATOR_KEY}, follow_redirects=False)
        assert accepted.status_code == 303 and accepted.headers["location"] == "/dashboard"
        cookie = accepted.headers["set-cookie"]
        assert cookie.startswith(f"lstm_pipeline_key={OPERATOR_KEY};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie

        page = client.get("/dashboard")
        assert page.status_code == 200 and 'data-symbols="AAPL,MSFT"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        data = client.get("/dashboard/data").json()
        assert [panel["symbol"] for panel in data["symbols"]] == list(SYMBOLS)
        assert client.get("/dashboard/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/dashboard/static/../app.py").status_code == 404

        client.post("/logout", follow_redirects=False)
        assert client.get("/dashboard", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("key", [READER_KEY, OPERATOR_KEY])
def test_dashboard_data_is_a_reader_endpoint_by_header_too(tmp_path, populated_db, key):
    service = make_service(tmp_path, populated_db)
    with live_server(service.app()) as url:
        answer = httpx.get(f"{url}/dashboard/data", headers={"X-API-Key": key})
        assert answer.status_code == 200
        panel = answer.json()["symbols"][0]
        assert [p["close"] for p in panel["prices"]] == [100.0, 101.0, 102.0, 103.0]
        assert [s["predicted_close"] for s in panel["forecast"]["path"]] == pytest.approx([103.1, 103.2, 103.3])
        assert httpx.get(f"{url}/dashboard/data", headers={"X-API-Key": "nope"}).status_code == 403
