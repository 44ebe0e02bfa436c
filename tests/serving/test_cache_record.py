"""The read cache as the access record sees it: each request says whether the cache answered it (``cache``), and
monitoring's cache-hit-rate KPI is computed from exactly that; ``cache.enable_prediction_cache: false`` keeps
forecasts out of the cache."""

from __future__ import annotations

import json

import httpx
import pandas as pd

from lstm_pipeline.operations.monitoring import sample_metrics
from tests.serving.conftest import READER_KEY, make_service
from tests.serving.live import live_server


def _record(service) -> list[dict]:  # noqa: ANN001
    return [json.loads(line) for line in (service.home / "api_access.jsonl").read_text().splitlines()]


def _hit_rate(service) -> float | None:  # noqa: ANN001
    samples = sample_metrics(None, service.settings, ["api_performance"], pd.Timestamp.now(tz="UTC"),
                             api_paths=[service.home / "api_access.jsonl"])
    return samples.set_index("metric")["value"].get("cache_hit_rate")


def test_each_request_records_whether_the_cache_answered_and_monitoring_reads_the_hit_rate(service):
    with live_server(service.app()) as url, httpx.Client(base_url=url, headers={"X-API-Key": READER_KEY}) as c:
        for path in ("/predictions/AAPL", "/predictions/AAPL", "/predictions/AAPL", "/recommendations/MSFT",
                     "/health"):
            assert c.get(path).status_code == 200
    assert [(e["path"], e["cache"]) for e in _record(service)] == [
        ("/predictions/AAPL", "miss"), ("/predictions/AAPL", "hit"), ("/predictions/AAPL", "hit"),
        ("/recommendations/MSFT", "miss"), ("/health", None),
    ]
    assert _hit_rate(service) == 0.5  # 2 hits of the 4 requests that read through the cache


def test_with_the_prediction_cache_off_forecasts_are_never_cached_but_other_answers_are(tmp_path, populated_db):
    import serving.app

    service = make_service(tmp_path, populated_db)
    settings = service.settings.model_copy(update={
        "cache": service.settings.cache.model_copy(update={"enable_prediction_cache": False})})
    app = serving.app.create_app(settings, environ=service.environ)
    with live_server(app) as url, httpx.Client(base_url=url, headers={"X-API-Key": READER_KEY}) as c:
        for path in ("/predictions/AAPL", "/predictions/AAPL", "/recommendations/MSFT", "/recommendations/MSFT"):
            assert c.get(path).status_code == 200
    assert [e["cache"] for e in _record(service)] == [None, None, "miss", "hit"]
    assert _hit_rate(service) == 0.5
