"""The alert_actions job the REST service launches for POST /alerts/{alert_key}/ack and /resolve, run in process
against a temporary store; and the endpoints' answers when no open alert has the key or Dagster is not there."""

from __future__ import annotations

import shutil

import httpx
import pandas as pd
import pytest
from dagster import DagsterInstance

from lstm_pipeline.operations_jobs import alert_actions_job
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.storage import database_at
from tests.serving.conftest import OPERATOR_KEY
from tests.serving.live import live_server


def _run(db_path, alert_key: str, action: str):  # noqa: ANN001, ANN202
    config = {"ops": {"apply_alert_action": {"config": {"alert_key": alert_key, "action": action,
                                                       "by": "api:env-2"}}}}
    with DagsterInstance.ephemeral() as instance:
        return alert_actions_job.execute_in_process(
            run_config=config, resources={"store": PipelineStore.for_path(db_path)}, instance=instance,
            raise_on_error=False,
        )


@pytest.fixture
def store_copy(tmp_path, populated_db):
    path = tmp_path / "pipeline.duckdb"
    shutil.copyfile(populated_db, path)
    return path


def _alert(db_path, alert_key: str):  # noqa: ANN001, ANN202
    rows = database_at(db_path).read_rows("alerts", ["alert_key = ?"], [alert_key])
    return rows.iloc[0]


def test_the_job_acknowledges_then_resolves_the_open_alerts_with_the_key(store_copy):
    assert _run(store_copy, "confidence_low:AAPL", "acknowledge").success
    acknowledged = _alert(store_copy, "confidence_low:AAPL")
    assert acknowledged["acknowledged_by"] == "api:env-2" and pd.isna(acknowledged["resolved_at"])
    assert _alert(store_copy, "confidence_low:MSFT")["acknowledged_by"] is None  # only that key
    assert _run(store_copy, "confidence_low:AAPL", "resolve").success
    resolved = _alert(store_copy, "confidence_low:AAPL")
    assert resolved["resolved_by"] == "api:env-2" and pd.notna(resolved["resolved_at"])


def test_the_job_fails_in_one_sentence_for_a_key_with_no_open_alert_or_an_unknown_action(store_copy):
    missing = _run(store_copy, "no_such:KEY", "resolve")
    assert not missing.success
    assert "No open alert has the key 'no_such:KEY'" in _failure(missing)
    wrong = _run(store_copy, "confidence_low:AAPL", "delete")
    assert not wrong.success
    assert "is not an alert action; use acknowledge or resolve" in _failure(wrong)


def test_the_endpoints_answer_404_for_a_key_with_no_open_alert_and_503_without_dagster(service):
    with live_server(service.app()) as url, httpx.Client(base_url=url, headers={"X-API-Key": OPERATOR_KEY}) as c:
        missing = c.post("/alerts/no_such:KEY/ack")
        assert missing.status_code == 404 and "No open alert has the key no_such:KEY" in missing.json()["detail"]
        assert c.post("/alerts/resolved_one:AAPL/resolve").status_code == 404  # resolved already: not open
        down = c.post("/alerts/confidence_low:AAPL/ack")
        assert down.status_code == 503 and "start it" in down.json()["detail"]


def _failure(result) -> str:  # noqa: ANN001
    return result.get_step_failure_events()[0].step_failure_data.error.message
