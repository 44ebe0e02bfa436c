"""``backtest_report`` (job ``backtest``): the CLI's backtest from the UI, its report recorded as asset metadata."""

from pathlib import Path

import pytest
from dagster import materialize

from lstm_pipeline.assets.backtest_report import backtest_report
from lstm_pipeline.backtest.report import REPORT_FILE
from lstm_pipeline.resources.storage import PipelineStore
from tests.backtest.conftest import TINY, sim_history

TINY_CONFIG = {
    "train_sessions": 22,
    "max_epochs": 1,
    "lookback_steps": TINY.lookback_steps,
    "lstm_units": list(TINY.lstm_units),
    "modes": list(TINY.modes),
}


def run(config: dict, db_path: Path, instance):
    return materialize(
        [backtest_report],
        resources={"store": PipelineStore.for_path(db_path)},
        run_config={"ops": {"backtest_report": {"config": config}}},
        instance=instance,
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def bar_file(tmp_path_factory) -> Path:
    bars = sim_history(("AAPL",), "2025-03-03", "2025-04-15")
    columns = ["window_start", "open", "high", "low", "close", "volume"]
    path = tmp_path_factory.mktemp("bars") / "AAPL.csv"
    bars.assign(window_start=bars["window_start"].dt.tz_convert("UTC"))[columns].to_csv(path, index=False)
    return path


def test_the_asset_runs_the_backtest_and_records_the_report(bar_file, db_path, instance):
    result = run({"bars_path": str(bar_file), **TINY_CONFIG}, db_path, instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("backtest_report")
    metadata = {name: value.value for name, value in materialization.metadata.items()}

    pooled = metadata["pooled"]
    assert all(bucket in pooled for bucket in ("1_step", "1_hour", "1_day", "1_week")) and "tod80" in pooled
    assert "| AAPL |" in metadata["mase_1_day_by_symbol"]
    assert {"count", "hit_rate", "mean_net_return_pct", "withheld_by_rule"} <= set(metadata["recommendations"])
    assert metadata["origins"] > 0 and metadata["origins_per_second"] > 0
    assert metadata["interval_scores"].startswith("![interval scores and coverage](data:image/png;base64,iVBOR")

    report = Path(metadata["report_path"])
    assert report.name == REPORT_FILE and report.is_file()
    assert report.parent.parent == db_path.parent / "backtests"
    assert {"interval_scores.png", "accuracy.png"} <= {item.name for item in report.parent.iterdir()}
    assert "# Walk-forward backtest" in report.read_text()


def test_a_missing_bar_path_fails_the_run_with_one_sentence(tmp_path, db_path, instance):
    result = run({"bars_path": str(tmp_path / "nowhere.csv"), **TINY_CONFIG}, db_path, instance)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "does not exist" in description and "bars_path" in description
    assert description.endswith(".") and "\n" not in description
    assert not (db_path.parent / "backtests").exists()


def test_too_little_history_fails_with_the_backtests_sentence(bar_file, db_path, instance):
    result = run({"bars_path": str(bar_file), **TINY_CONFIG, "train_sessions": 60}, db_path, instance)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "needs at least" in description and "train_sessions" in description and "--" not in description
