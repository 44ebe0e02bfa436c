"""Data that retention pruned reads as pruned, never as an empty success: a pruned forecast or period is a 410
naming when and the restore command, and lists carry the span of the asked-for data that was pruned."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

from lstm_pipeline.market.calendar import window_key
from lstm_pipeline.storage import TABLES, database_at
from lstm_pipeline.storage.rows import empty_frame
from tests.serving.conftest import READER_KEY, WINDOWS, make_service, populate
from tests.serving.live import live_server

PRUNED_AT = pd.Timestamp("2025-03-01 03:30", tz="UTC")


def prune(db_path, table: str, column: str, symbol: str, windows: list[pd.Timestamp]) -> None:  # noqa: ANN001
    """What retention leaves: the partitions' rows gone, each recorded in pruned_partitions (same transaction)."""
    keys = pd.DataFrame({"symbol": symbol, column: windows})
    record = pd.DataFrame({"table_name": table, "symbol": symbol, "window_start": windows, "rows_deleted": 3,
                           "backup_id": "b-20250301", "pruned_at": PRUNED_AT})
    database_at(db_path).replace_tables({
        table: (keys, empty_frame(TABLES[table])),
        "pruned_partitions": (record[["table_name", "symbol", "window_start"]], record),
    })


@pytest.fixture
def client(tmp_path):
    db_path = tmp_path / "pipeline.duckdb"
    populate(db_path)
    prune(db_path, "predictions", "as_of_window", "AAPL", WINDOWS[:2])
    prune(db_path, "trade_recommendations", "as_of_window", "MSFT", WINDOWS[:1])
    prune(db_path, "accuracy_metrics", "window_start", "MSFT", WINDOWS)  # every metric of MSFT
    prune(db_path, "accuracy_metrics", "window_start", "AAPL", WINDOWS[:1])
    service = make_service(tmp_path, db_path)
    with live_server(service.app()) as url, httpx.Client(base_url=url, headers={"X-API-Key": READER_KEY}) as c:
        yield c


def test_a_pruned_forecast_is_410_saying_when_and_how_to_restore_it(client):
    gone = client.get("/predictions/AAPL", params={"window": window_key(WINDOWS[0])})
    assert gone.status_code == 410
    assert gone.json()["detail"] == (
        f"The forecast of AAPL as of {window_key(WINDOWS[0])} was pruned by retention on 2025-02-28 (backup "
        "b-20250301 holds it); restore it with `lstm-pipeline restore --table predictions`."
    )
    assert client.get("/predictions/AAPL", params={"window": WINDOWS[1].isoformat()}).status_code == 410
    assert client.get("/predictions/AAPL", params={"window": window_key(WINDOWS[2])}).status_code == 200
    assert client.get("/predictions/MSFT", params={"window": window_key(WINDOWS[0])}).status_code == 200
    never = client.get("/predictions/AAPL", params={"window": "2024-06-03-09:30"})
    assert never.status_code == 404  # never stored is not pruned


def test_lists_say_which_span_of_the_asked_data_was_pruned(client):
    page = client.get("/predictions").json()
    assert {(i["symbol"], i["as_of_window"]) for i in page["items"]} >= {("AAPL", WINDOWS[2].isoformat())}
    assert ("AAPL", WINDOWS[0].isoformat()) not in {(i["symbol"], i["as_of_window"]) for i in page["items"]}
    pruned = page["pruned"]
    assert (pruned["table"], pruned["first_window"], pruned["last_window"], pruned["partitions"]) == (
        "predictions", WINDOWS[0].isoformat(), WINDOWS[1].isoformat(), 2)
    assert pruned["rows_deleted"] == 6 and "lstm-pipeline restore --table predictions" in pruned["detail"]
    assert client.get("/predictions", params={"since": WINDOWS[2].isoformat()}).json()["pruned"] is None
    assert client.get("/recommendations/MSFT").json()["pruned"]["last_window"] == WINDOWS[0].isoformat()
    assert client.get("/recommendations/AAPL").json()["pruned"] is None
    assert client.get("/alerts").json()["pruned"] is None


def test_a_period_whose_metrics_were_all_pruned_is_410_and_a_partly_pruned_one_names_the_span(client):
    gone = client.get("/performance/MSFT", params={"period_hours": 24})
    assert gone.status_code == 410
    assert gone.json()["detail"].startswith("Every accuracy metric of MSFT in the 24 hours to window "
                                            f"{window_key(WINDOWS[-1])} was pruned by retention on 2025-02-28")
    partly = client.get("/performance/AAPL", params={"period_hours": 24})
    assert partly.status_code == 200
    body = partly.json()
    assert body["pruned"]["first_window"] == body["pruned"]["last_window"] == WINDOWS[0].isoformat()
    assert [m["window_start"] for m in body["metrics"]] == [w.isoformat() for w in reversed(WINDOWS[1:])]
    overall = {s["symbol"]: s for s in client.get("/performance").json()["symbols"]}
    assert overall["MSFT"]["pruned"]["partitions"] == len(WINDOWS) and overall["MSFT"]["latest_metrics"] == []
