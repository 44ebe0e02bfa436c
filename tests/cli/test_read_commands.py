"""The read commands of ``lstm-pipeline`` in a real subprocess against a store with data."""

import json
import subprocess
import sys
import textwrap

from tests.cli.conftest import run_cli


def _json(result) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_reports_the_store_and_each_symbols_latest_data(populated):
    document = _json(run_cli(populated, "status", "--json"))
    assert document["store"] == str(populated["db_path"])
    assert document["schema_version"] >= 3 and document["store_size_bytes"] > 0
    assert document["open_alerts_by_level"] == {"CRITICAL": 0, "ERROR": 1, "WARNING": 1, "INFO": 0}
    assert document["dagster_webserver"]["reachable"] is False
    assert document["alert_deliveries_failing"] == {}
    latest = {row["symbol"]: row for row in document["per_symbol"]}
    assert latest["AAPL"]["latest_bar"].startswith("2026-03-02T15:45")
    assert latest["MSFT"]["model_version"] == "v-msft"
    table = run_cli(populated, "status")
    assert table.returncode == 0 and "AAPL" in table.stdout and "not reachable" in table.stdout


def test_predictions_show_only_each_symbols_newest_forecast(populated):
    rows = _json(run_cli(populated, "predictions", "AAPL", "--json"))
    assert {row["symbol"] for row in rows} == {"AAPL"}
    assert {row["as_of_window"] for row in rows} == {"2026-03-02T15:45:00-05:00"}
    assert sorted(row["horizon_step"] for row in rows) == list(range(1, 11))
    table = run_cli(populated, "predictions", "--steps", "2")
    assert table.returncode == 0 and "MSFT" in table.stdout and "v-aapl" in table.stdout


def test_an_unknown_symbol_is_one_sentence_on_stderr_with_code_2(populated):
    result = run_cli(populated, "predictions", "ZZZZ")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Symbol 'ZZZZ' is not configured; use one of AAPL, MSFT or add it to symbols."
    ]


def test_recommendations_and_the_actionable_filter(populated):
    rows = _json(run_cli(populated, "recommendations", "--json"))
    assert {row["symbol"]: row["action"] for row in rows} == {"AAPL": "buy", "MSFT": "none"}
    actionable = _json(run_cli(populated, "recommendations", "--actionable", "--json"))
    assert [row["symbol"] for row in actionable] == ["AAPL"]


def test_config_redacts_secrets(populated):
    document = _json(run_cli(populated, "config", "--json",
                             extra_env={"LSTM_PIPELINE_WEBHOOK_SECRET": "very-secret-value"}))
    assert document["symbols"] == ["AAPL", "MSFT"]
    assert document["alert_channels"]["webhook"]["secret"] == "**********"
    table = run_cli(populated, "config", extra_env={"LSTM_PIPELINE_WEBHOOK_SECRET": "very-secret-value"})
    assert table.returncode == 0 and "very-secret-value" not in table.stdout


def test_an_invalid_config_is_one_sentence_with_code_2(populated):
    populated["config"].write_text(json.dumps({"symbols": ["AAPL"], "update_interval": 7}))
    result = run_cli(populated, "status")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "update_interval" in result.stderr


def test_performance_lists_the_kpis_and_rolling_accuracy(populated):
    document = _json(run_cli(populated, "performance", "--json"))
    kpis = document["kpis"]
    assert set(kpis) == {"prediction_accuracy", "mean_confidence", "reprediction_rate", "cache_hit_rate",
                         "api_response_time_seconds", "uptime", "memory_used_mb_mean", "memory_used_mb_peak",
                         "trade_success_rate"}
    # 10 validations per symbol, every third needs a reprediction: 4 of 10.
    assert abs(kpis["reprediction_rate"] - 0.4) < 1e-9 and abs(kpis["prediction_accuracy"] - 0.6) < 1e-9
    assert abs(kpis["mean_confidence"] - 0.7) < 1e-9 and kpis["uptime"] == 1.0
    assert kpis["cache_hit_rate"] is None
    assert {row["span"] for row in document["accuracy"]} == {"week"}
    bad = run_cli(populated, "performance", "--span", "year")
    assert bad.returncode == 2 and "Span 'year' is not a span" in bad.stderr


def test_alerts_list_ack_and_resolve(populated):
    listed = _json(run_cli(populated, "alerts", "--json"))
    assert [row["alert_key"] for row in listed] == ["run_failed:market_bars_update", "prediction_error:AAPL"]

    acked = run_cli(populated, "alerts", "ack", "prediction_error:AAPL", "--by", "alice")
    assert acked.returncode == 0 and "Acknowledged 1" in acked.stdout
    listed = _json(run_cli(populated, "alerts", "--json"))
    assert {row["alert_key"]: row["acknowledged_by"] for row in listed}["prediction_error:AAPL"] == "alice"

    resolved = _json(run_cli(populated, "alerts", "resolve", "run_failed:market_bars_update", "--by", "bob",
                             "--json"))
    assert resolved[0]["resolved_by"] == "bob"
    assert [row["alert_key"] for row in _json(run_cli(populated, "alerts", "--json"))] == ["prediction_error:AAPL"]
    history = _json(run_cli(populated, "alerts", "--resolved-since-hours", "1", "--json"))
    assert len(history) == 2

    missing = run_cli(populated, "alerts", "resolve", "run_failed:market_bars_update")
    assert missing.returncode == 2
    assert missing.stderr.startswith("No open alert has the key 'run_failed:market_bars_update'")


def test_read_commands_work_while_a_run_writes(populated):
    # Another process writes the store in a loop (short transactions, as runs do) while the CLI reads.
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        import pandas as pd
        from lstm_pipeline.storage import database_at
        db = database_at({str(populated["db_path"])!r})
        rows = db.read_rows("trade_recommendations")
        print("writing", flush=True)
        end = time.monotonic() + 8
        while time.monotonic() < end:
            db.replace_tables({{"trade_recommendations": (rows[["symbol", "as_of_window"]], rows)}})
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        for command in ("predictions", "recommendations", "alerts"):
            result = run_cli(populated, command, "--json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0


def test_the_newest_rows_per_symbol_read_the_same_on_both_backends(storage_backend):
    import pandas as pd

    from lstm_pipeline.cli.reads import latest_recommendations
    from lstm_pipeline.settings import Settings

    rows = pd.DataFrame([
        {"symbol": symbol, "as_of_window": pd.Timestamp(stamp, tz="America/New_York"), "action": "none",
         "reason": f"{symbol} {stamp}"}
        for symbol in ("AAPL", "MSFT") for stamp in ("2026-03-02 15:30", "2026-03-02 15:45")
    ] + [{"symbol": "AAPL", "as_of_window": pd.Timestamp("2026-03-03 09:30", tz="America/New_York"),
          "action": "buy", "reason": "AAPL newest"}])
    storage_backend.replace_tables({"trade_recommendations": (rows[["symbol", "as_of_window"]], rows)})
    latest = latest_recommendations(storage_backend, Settings(symbols=("AAPL", "MSFT")), None)
    assert dict(zip(latest["symbol"], latest["reason"], strict=True)) == {
        "AAPL": "AAPL newest", "MSFT": "MSFT 2026-03-02 15:45"}
