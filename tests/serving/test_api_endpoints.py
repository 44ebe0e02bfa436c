"""Every data endpoint over HTTP: shapes, pagination, 404/422, and POST /config."""

from __future__ import annotations

import json

import httpx
import pytest

from serving.pagination import MAX_LIMIT
from tests.serving.conftest import OPERATOR_KEY, READER_KEY, SYMBOLS, WINDOWS
from tests.serving.live import live_server


@pytest.fixture
def client(service):
    with live_server(service.app()) as url, httpx.Client(base_url=url, headers={"X-API-Key": READER_KEY}) as c:
        yield c


def test_health_reports_process_store_and_dagster_separately(client):
    body = client.get("/health", headers={"X-API-Key": ""}).json()
    assert body["process"]["ok"] and body["store"]["ok"]
    assert body["dagster"]["ok"] is False and "not reachable" in body["dagster"]["detail"]
    assert body["status"] == "degraded"


def test_status_names_each_symbols_newest_windows(client):
    body = client.get("/status").json()
    assert [row["symbol"] for row in body["symbols"]] == list(SYMBOLS)
    newest = WINDOWS[-1].isoformat()
    for row in body["symbols"]:
        assert row["latest_bar_window"] == newest and row["latest_forecast_window"] == newest
    assert all(row["freshness_lag_minutes"] > 0 for row in body["symbols"])
    assert body["assets"] is None and "not reachable" in body["dagster_detail"]


def test_symbol_prediction_is_the_newest_path_with_intervals_or_the_window_asked(client):
    newest = client.get("/predictions/aapl").json()
    assert newest["symbol"] == "AAPL" and newest["as_of_window"] == WINDOWS[-1].isoformat()
    assert [step["horizon_step"] for step in newest["path"]] == [1, 2, 3]
    assert newest["model_version"] == "v-aapl-1" and newest["confidence"] == 0.7
    first = newest["path"][0]
    assert first["lower_95"] < first["lower_80"] < first["predicted_close"] < first["upper_80"] < first["upper_95"]
    earlier = client.get("/predictions/AAPL", params={"window": "2025-01-02-09:45"}).json()
    assert earlier["as_of_window"] == WINDOWS[1].isoformat()
    iso = client.get("/predictions/AAPL", params={"window": WINDOWS[1].isoformat()}).json()
    assert iso["as_of_window"] == WINDOWS[1].isoformat()
    missing = client.get("/predictions/AAPL", params={"window": "2024-01-02-09:30"})
    assert missing.status_code == 404 and "no forecast of AAPL" in missing.json()["detail"]


def test_lists_paginate_newest_first_with_opaque_cursors_and_a_hard_cap(client):
    seen, cursor = [], None
    while True:
        page = client.get("/predictions", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 3
        seen += [(item["as_of_window"], item["symbol"]) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(SYMBOLS) * len(WINDOWS)
    assert [s[0] for s in seen] == sorted((s[0] for s in seen), reverse=True)
    assert client.get("/predictions", params={"limit": MAX_LIMIT + 1}).status_code == 422
    assert client.get("/predictions", params={"cursor": "not-a-cursor"}).status_code == 422


def test_recommendations_filter_active_ones(client):
    everything = client.get("/recommendations").json()["items"]
    assert len(everything) == len(SYMBOLS) * len(WINDOWS)
    active = client.get("/recommendations", params={"active": "true"}).json()["items"]
    # The newest buy exits after the newest bar: open. The first one exited already; the others held back.
    assert {(r["symbol"], r["as_of_window"]) for r in active} == {(s, WINDOWS[-1].isoformat()) for s in SYMBOLS}
    inactive = client.get("/recommendations/MSFT", params={"active": "false"}).json()["items"]
    assert len(inactive) == len(WINDOWS) - 1 and {r["symbol"] for r in inactive} == {"MSFT"}


def test_performance_has_accuracy_trade_success_and_says_when_runs_are_unknown(client):
    overall = client.get("/performance").json()
    assert [s["symbol"] for s in overall["symbols"]] == list(SYMBOLS)
    assert overall["runs"] is None
    one = client.get("/performance/MSFT", params={"period_hours": 0.5}).json()
    assert one["period_end"] == WINDOWS[-1].isoformat()
    assert [m["window_start"] for m in one["metrics"]] == [w.isoformat() for w in (WINDOWS[3], WINDOWS[2], WINDOWS[1])]
    assert {m["span"] for m in one["metrics"]} == {"day"}
    assert one["trade_success"] == {"scored": 2, "hits": 1, "success_rate": 0.5, "mean_realized_return_pct": 1.0}
    assert client.get("/performance/MSFT", params={"period_hours": -1}).status_code == 422


def test_alerts_filter_by_level_time_and_state(client):
    assert len(client.get("/alerts").json()["items"]) == 6
    critical = client.get("/alerts", params={"level": "CRITICAL"}).json()["items"]
    assert {a["level"] for a in critical} == {"CRITICAL"} and len(critical) == 2
    assert len(client.get("/alerts", params={"active": "true"}).json()["items"]) == 4
    assert client.get("/alerts", params={"since": "2100-01-01T00:00:00Z"}).json()["items"] == []
    assert len(client.get("/alerts", params={"since": "2000-01-01T00:00:00"}).json()["items"]) == 6
    bad = client.get("/alerts", params={"level": "LOUD"})
    assert bad.status_code == 422 and "'level' is invalid" in bad.json()["detail"]
    assert client.get("/alerts", params={"since": "yesterday"}).status_code == 422


@pytest.mark.parametrize("path", ["/predictions/ZZZZ", "/recommendations/NOPE", "/performance/X1", "/predictions/%00"])
def test_unknown_symbols_are_404_naming_the_configured_ones(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "configured symbols are AAPL, MSFT" in response.json()["detail"]


def test_malformed_window_is_422_with_the_reason(client):
    response = client.get("/predictions/AAPL", params={"window": "2025-13-45-99:99"})
    assert response.status_code == 422 and "window key such as" in response.json()["detail"]


def test_config_get_redacts_secrets(tmp_path, populated_db):
    from tests.serving.conftest import make_service

    service = make_service(tmp_path, populated_db, extra_env={"POLYGON_API_KEY": "pk-secret-123456"})
    with live_server(service.app()) as url:
        body = httpx.get(f"{url}/config", headers={"X-API-Key": READER_KEY})
    assert body.status_code == 200 and "pk-secret-123456" not in body.text
    assert body.json()["settings"]["polygon_api_key"] == "**********"


def test_config_post_validates_like_the_file_and_writes_atomically(service):
    before = service.config_path.read_text()
    with live_server(service.app()) as url, httpx.Client(base_url=url, headers={"X-API-Key": OPERATOR_KEY}) as c:
        bad = c.post("/config", json={"alert_thresholds": {"confidence_low": 3}})
        assert bad.status_code == 422
        assert "'alert_thresholds.confidence_low' is invalid" in bad.json()["detail"]
        assert service.config_path.read_text() == before
        assert c.post("/config", json={"symbols": ["aapl", "bad ticker"]}).status_code == 422
        assert c.post("/config", json={"polygon_api_key": "x"}).status_code == 422
        assert c.post("/config", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
        good = c.post("/config", json={"confidence_threshold": 0.65, "alert_thresholds": {"confidence_low": 0.5}})
        assert good.status_code == 200
        assert good.json()["changes"] == [
            {"key": "alert_thresholds.confidence_low", "old": 0.4, "new": 0.5},
            {"key": "confidence_threshold", "old": 0.6, "new": 0.65},
        ]
        saved = json.loads(service.config_path.read_text())
        assert saved["confidence_threshold"] == 0.65 and saved["alert_thresholds"] == {"confidence_low": 0.5}
        assert saved["symbols"] == list(SYMBOLS)  # untouched keys stay as written
        assert c.get("/config").json()["settings"]["confidence_threshold"] == 0.65
    assert [p.name for p in service.config_path.parent.glob(".config.*")] == []  # no temp file left behind


def test_a_fresh_store_with_nothing_written_answers_empty_not_5xx(tmp_path):
    from tests.serving.conftest import make_service

    service = make_service(tmp_path, tmp_path / "never_written.duckdb")
    with live_server(service.app()) as url, httpx.Client(base_url=url, headers={"X-API-Key": READER_KEY}) as c:
        for path in ("/status", "/predictions", "/recommendations", "/recommendations/AAPL?active=true",
                     "/performance", "/performance/AAPL", "/alerts", "/config"):
            assert c.get(path).status_code == 200, path
        assert c.get("/predictions").json()["items"] == []
        assert c.get("/predictions/AAPL").status_code == 404
        assert c.get("/status").json()["symbols"][0]["latest_bar_window"] is None
