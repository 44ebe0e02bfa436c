"""Alerts: each level from the spec's thresholds, one open alert per repeated condition, resolution when it clears."""

import pandas as pd
import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    Config,
    DagsterEventType,
    MaterializeResult,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from lstm_pipeline.assets.alerts import alerts
from lstm_pipeline.evaluation.alerting import (
    CONFIDENCE_LOW,
    MODEL_ACCURACY_LOW,
    PREDICTION_ERROR,
    STALE_DATA,
    TRADE_SUCCESS_RATE_LOW,
    check_alerts,
    evaluate_alerts,
    open_alerts_by_level,
    with_levels,
)
from lstm_pipeline.market.calendar import NEW_YORK, parse_window_key, session_windows
from lstm_pipeline.sensors.run_failures import build_run_failure_sensors
from lstm_pipeline.settings import AlertThresholds
from lstm_pipeline.storage.rows import empty_frame
from lstm_pipeline.storage.tables import ALERTS
from tests.helpers import range_tags, register_windows

THRESHOLDS = AlertThresholds()
AS_OF = pd.Timestamp("2026-11-24 15:45", tz=NEW_YORK)
NOW = pd.Timestamp("2026-11-24 16:05", tz=NEW_YORK)


def as_of_frame(*symbols: str, window: pd.Timestamp = AS_OF) -> pd.DataFrame:
    return pd.DataFrame({"symbol": list(symbols), "window_start": [window] * len(symbols)})


def validations(symbol: str, abs_error_pct: float, n: int = 10, statuses: list[str] | None = None,
                target: pd.Timestamp = AS_OF) -> pd.DataFrame:
    """``n`` forecasts of ``target`` with the given error (and statuses)."""
    return pd.DataFrame({
        "symbol": symbol,
        "target_window": target,
        "as_of_window": [target - pd.Timedelta(minutes=15 * (i + 1)) for i in range(n)],
        "abs_error_pct": abs_error_pct,
        "status": statuses if statuses is not None else ["valid"] * n,
    })


def no_validations() -> pd.DataFrame:
    return validations("X", 0.0, n=0)


def confidence(symbol: str, value: float, window: pd.Timestamp = AS_OF) -> pd.DataFrame:
    return pd.DataFrame({"symbol": symbol, "as_of_window": window, "horizon_step": [1, 2, 3], "confidence": value})


def outcomes(symbol: str, hits: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": symbol,
        "scored_window": [AS_OF - pd.Timedelta(hours=i) for i in range(len(hits))],
        "hit": hits,
    })


def fresh_bar(*symbols: str) -> pd.DataFrame:
    return pd.DataFrame({"symbol": list(symbols), "window_start": [AS_OF] * len(symbols)})


NO_ALERTS = empty_frame(ALERTS)


def evaluate(as_of=None, vals=None, preds=None, trades=None, bars=None, open_alerts=NO_ALERTS, now=NOW, **kwargs):
    return evaluate_alerts(
        as_of if as_of is not None else as_of_frame("AAPL"),
        vals if vals is not None else no_validations(),
        preds if preds is not None else confidence("X", 0.9),
        trades if trades is not None else outcomes("X", []),
        bars if bars is not None else fresh_bar("AAPL"),
        open_alerts,
        THRESHOLDS,
        now=now,
        run_id="run-1",
        **kwargs,
    )


def levels(evaluation) -> dict[str, str]:
    return dict(zip(evaluation.upserts["kind"], evaluation.upserts["level"], strict=True))


@pytest.mark.parametrize(
    ("error_pct", "expected"), [(2.0, None), (5.0, "WARNING"), (7.5, "WARNING"), (10.0, "CRITICAL"), (14.0, "CRITICAL")]
)
def test_prediction_error_levels_follow_the_high_and_critical_fractions(error_pct, expected):
    evaluation = evaluate(vals=validations("AAPL", error_pct))
    assert levels(evaluation).get(PREDICTION_ERROR) == expected
    if expected:
        (message,) = evaluation.upserts.loc[evaluation.upserts["kind"] == PREDICTION_ERROR, "message"]
        assert f"{error_pct:.1f}%" in message and "AAPL" in message


def test_prediction_error_reads_only_the_latest_validated_window_and_ignores_bad_bars():
    earlier = validations("AAPL", 20.0, target=AS_OF - pd.Timedelta(minutes=15))
    bad_bar = validations("AAPL", 50.0, n=3, statuses=["invalid"] * 3)
    evaluation = evaluate(vals=pd.concat([earlier, bad_bar, validations("AAPL", 1.0)]))
    assert PREDICTION_ERROR not in levels(evaluation)


@pytest.mark.parametrize(("value", "expected"), [(0.55, None), (0.39, "WARNING"), (0.19, "CRITICAL")])
def test_confidence_levels_follow_the_low_and_critical_fractions(value, expected):
    assert levels(evaluate(preds=confidence("AAPL", value))).get(CONFIDENCE_LOW) == expected


def test_model_accuracy_below_its_threshold_over_the_week_is_an_error():
    statuses = ["valid"] * 10 + ["needs_reprediction"] * 30  # 25% valid
    week = pd.concat(
        validations("AAPL", 1.0, n=40, statuses=statuses, target=AS_OF - pd.Timedelta(days=day)) for day in (0, 1)
    )
    assert levels(evaluate(vals=week))[MODEL_ACCURACY_LOW] == "ERROR"
    healthy = validations("AAPL", 1.0, n=40, statuses=["valid"] * 30 + ["needs_reprediction"] * 10)
    assert MODEL_ACCURACY_LOW not in levels(evaluate(vals=healthy))
    too_few = validations("AAPL", 1.0, n=10, statuses=["needs_reprediction"] * 10)
    evaluation = evaluate(vals=too_few)
    assert MODEL_ACCURACY_LOW not in levels(evaluation)
    assert MODEL_ACCURACY_LOW in set(evaluation.not_evaluated["kind"])


def test_trade_success_rate_below_its_threshold_is_a_warning():
    assert levels(evaluate(trades=outcomes("AAPL", [True, False, False, False, False, False])))[
        TRADE_SUCCESS_RATE_LOW
    ] == "WARNING"
    assert TRADE_SUCCESS_RATE_LOW not in levels(evaluate(trades=outcomes("AAPL", [True, True, True, False, False])))


def test_stale_data_counts_session_windows_without_a_bar():
    windows = session_windows(AS_OF - pd.Timedelta(days=3), AS_OF + pd.Timedelta(minutes=15))
    hour_ago = pd.DataFrame({"symbol": ["AAPL"], "window_start": [windows[-5]]})  # 4 windows without a bar
    two_ago = pd.DataFrame({"symbol": ["AAPL"], "window_start": [windows[-3]]})
    day_ago = pd.DataFrame({"symbol": ["AAPL"], "window_start": [windows[-30]]})
    assert levels(evaluate(bars=hour_ago))[STALE_DATA] == "WARNING"
    assert STALE_DATA not in levels(evaluate(bars=two_ago))
    assert levels(evaluate(bars=day_ago))[STALE_DATA] == "ERROR"
    assert levels(evaluate(bars=fresh_bar("MSFT")))[STALE_DATA] == "ERROR"  # no AAPL bar at all


def test_the_same_condition_twice_is_one_open_alert_and_a_cleared_one_is_resolved():
    first = evaluate(vals=validations("AAPL", 6.0))
    assert first.raised_keys == {"prediction_error:AAPL"}
    stored = first.rows

    # Next window, worse: the same row (key, first-raised window, created time) escalates; nothing new is raised.
    later = AS_OF + pd.Timedelta(minutes=15)
    second = evaluate(
        as_of=as_of_frame("AAPL", window=later), vals=validations("AAPL", 12.0, target=later),
        bars=pd.DataFrame({"symbol": ["AAPL"], "window_start": [later]}), open_alerts=stored,
        now=NOW + pd.Timedelta(minutes=15),
    )
    assert second.raised_keys == frozenset()
    (row,) = second.upserts.itertuples(index=False)
    assert (row.alert_key, row.level, row.severity) == ("prediction_error:AAPL", "CRITICAL", "critical")
    assert row.as_of_window == AS_OF and row.created_at == stored["created_at"].iloc[0]
    assert list(second.keys.itertuples(index=False, name=None)) == [("alerts", "AAPL", AS_OF, PREDICTION_ERROR)]

    # The condition clears: the open row gets resolved_at, no new row.
    third = evaluate(
        as_of=as_of_frame("AAPL", window=later), vals=validations("AAPL", 1.0, target=later),
        bars=pd.DataFrame({"symbol": ["AAPL"], "window_start": [later]}), open_alerts=second.rows,
        now=NOW + pd.Timedelta(minutes=20),
    )
    assert third.upserts.empty
    (resolved,) = third.resolutions.itertuples(index=False)
    assert resolved.as_of_window == AS_OF and resolved.resolved_at == NOW + pd.Timedelta(minutes=20)
    assert "Resolved" in resolved.message


def test_an_open_alert_raised_after_the_runs_window_is_left_alone_by_a_backfill():
    open_rows = evaluate(vals=validations("AAPL", 6.0)).rows
    earlier = AS_OF - pd.Timedelta(days=1)
    backfill = evaluate(
        as_of=as_of_frame("AAPL", window=earlier), vals=validations("AAPL", 1.0, target=earlier),
        bars=pd.DataFrame({"symbol": ["AAPL"], "window_start": [earlier]}), open_alerts=open_rows,
    )
    assert backfill.rows.empty


def test_alerts_of_predictions_get_their_level_from_severity():
    rows = pd.DataFrame({
        "source": "predictions", "symbol": ["AAPL", "MSFT"], "as_of_window": AS_OF,
        "kind": ["model_unavailable", "missing_as_of_bar"], "severity": ["error", "warning"], "message": "m",
        "level": [None, None], "alert_key": [None, None], "resolved_at": pd.NaT,
    })
    filled = with_levels(rows)
    assert list(filled["level"]) == ["ERROR", "WARNING"]
    assert list(filled["alert_key"]) == ["model_unavailable:AAPL", "missing_as_of_bar:MSFT"]
    assert open_alerts_by_level(rows) == {"CRITICAL": 0, "ERROR": 1, "WARNING": 1, "INFO": 0}


def test_the_asset_raises_updates_and_resolves_through_the_store(instance, store):
    keys = register_windows(instance, "2026-11-24 15:30", "2026-11-24 16:00")
    first, second = (parse_window_key(key) for key in keys)
    bars = pd.DataFrame({
        "symbol": "AAPL", "window_start": [first, second], "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0,
        "volume": 1000, "source": "test",
    })
    store.replace_bars(bars, [("AAPL", first), ("AAPL", second)])

    def store_validations(target: pd.Timestamp, error_pct: float) -> None:
        rows = validations("AAPL", error_pct, target=target).assign(
            horizon_step=1, model_version="v", predicted_close=100.0, last_close=100.0, actual_close=100.0,
        )
        store.replace_tables({"validations": (pd.DataFrame({"symbol": ["AAPL"], "target_window": [target]}), rows)})

    def run(key: str):
        result = materialize([alerts], instance=instance, resources={"store": store}, tags=range_tags(["AAPL"], [key]))
        assert result.success
        return result.asset_materializations_for_node("alerts")[0].metadata

    store_validations(first, 6.0)
    metadata = run(keys[0])
    assert metadata["raised"].value == 1 and metadata["open_alerts_by_level"].data["WARNING"] == 1
    again = run(keys[0])  # re-running the same partition: same open alert, no new row
    assert again["raised"].value == 0 and again["still_open"].value == 1
    store_validations(second, 11.0)
    assert run(keys[1])["open_alerts_by_level"].data["CRITICAL"] == 1
    workflow = store.read_rows("alerts", ["source = ?"], ["alerts"])
    assert len(workflow) == 1 and workflow["level"].iloc[0] == "CRITICAL" and workflow["as_of_window"].iloc[0] == first

    store_validations(second, 0.5)
    assert run(keys[1])["resolved"].value == 1
    workflow = store.read_rows("alerts", ["source = ?"], ["alerts"])
    assert len(workflow) == 1 and workflow["resolved_at"].notna().all()


# Failed asset checks -------------------------------------------------------------------------------------------


class CheckOutcome(Config):
    complete: bool = True
    jumps_ok: bool = True


@asset(
    check_specs=[
        AssetCheckSpec("complete_windows", asset="checked_bars"),
        AssetCheckSpec("price_jumps", asset="checked_bars"),
    ]
)
def checked_bars(config: CheckOutcome) -> MaterializeResult:
    return MaterializeResult(
        check_results=[
            AssetCheckResult(
                check_name="complete_windows", passed=config.complete, severity=AssetCheckSeverity.WARN,
                description="Every window has a bar." if config.complete else "AAPL misses 3 of 26 windows.",
            ),
            AssetCheckResult(
                check_name="price_jumps", passed=config.jumps_ok, severity=AssetCheckSeverity.ERROR,
                description="No jump." if config.jumps_ok else "MSFT jumps 40% at 10:15.",
            ),
        ]
    )


def run_checks(instance, store, *, complete: bool, jumps_ok: bool = True):
    """A real run of ``checked_bars`` with the given check outcomes, then the success sensor's tick for it."""
    _, success_sensor, _ = build_run_failure_sensors()
    result = materialize(
        [checked_bars], instance=instance, tags={"dagster/partition": "AAPL"},
        run_config={"ops": {"checked_bars": {"config": {"complete": complete, "jumps_ok": jumps_ok}}}},
    )
    assert result.success
    (record,) = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.RUN_SUCCESS).records
    with build_run_status_sensor_context(
        sensor_name=success_sensor.name, dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance, dagster_run=result.dagster_run, resources={"store": store},
    ) as context:
        success_sensor(context)
    return result


def check_rows(store) -> pd.DataFrame:
    return store.read_rows("alerts", ["source = ?"], ["checks"]).sort_values("alert_key").reset_index(drop=True)


def test_a_failed_warn_check_is_one_alert_updated_while_it_fails_and_resolved_when_it_passes(instance, store):
    first = run_checks(instance, store, complete=False)
    (alert,) = check_rows(store).itertuples(index=False)
    assert (alert.source, alert.kind, alert.level, alert.severity) == ("checks", "check_failed", "WARNING", "warning")
    assert alert.alert_key == "check_failed:checked_bars.complete_windows"
    assert alert.symbol == "checked_bars.complete_windows"
    assert alert.message.startswith("AAPL misses 3 of 26 windows.") and "AAPL" in alert.message
    assert alert.run_id == first.run_id and pd.isna(alert.resolved_at)

    second = run_checks(instance, store, complete=False)  # still failing: the same row, new run id
    (again,) = check_rows(store).itertuples(index=False)
    assert again.run_id == second.run_id
    assert (again.as_of_window, again.created_at) == (alert.as_of_window, alert.created_at)

    run_checks(instance, store, complete=True)  # a later run's evaluation passes: resolved, no new row
    (resolved,) = check_rows(store).itertuples(index=False)
    assert pd.notna(resolved.resolved_at) and "Resolved: checked_bars.complete_windows passed" in resolved.message

    # An ERROR check failing is an ERROR alert; the WARN check, resolved before, stays resolved while it passes.
    run_checks(instance, store, complete=True, jumps_ok=False)
    rows = check_rows(store)
    assert list(rows["alert_key"]) == [
        "check_failed:checked_bars.complete_windows", "check_failed:checked_bars.price_jumps"
    ]
    assert list(rows["level"]) == ["WARNING", "ERROR"] and rows["resolved_at"].isna().tolist() == [False, True]
    assert rows["message"].iloc[1].startswith("MSFT jumps 40% at 10:15.")


def test_check_alerts_merge_a_checks_evaluations_and_leave_unevaluated_checks_alone():
    evaluations = pd.DataFrame({
        "asset": ["market_bars"] * 3 + ["predictions"],
        "check_name": ["price_jumps", "price_jumps", "complete_windows", "every_symbol_predicted"],
        "passed": [True, False, True, False],
        "severity": ["WARN", "ERROR", "WARN", "WARN"],
        "description": ["ok", "TSLA jumps 40%.", "ok", "Skipped: MSFT (2 window(s)): no model."],
    })
    stale = {
        "source": "checks", "symbol": "market_bars.volume_positive", "as_of_window": AS_OF, "kind": "check_failed",
        "severity": "warning", "message": "old", "run_id": "r0", "created_at": NOW, "level": "WARNING",
        "alert_key": "check_failed:market_bars.volume_positive", "resolved_at": pd.NaT,
    }
    result = check_alerts(evaluations, pd.DataFrame([stale]), NOW, "run-2", window=AS_OF, symbols=["AAPL..TSLA"])
    assert result.resolutions.empty  # volume_positive was not evaluated: its alert stays open, untouched
    assert dict(zip(result.upserts["alert_key"], result.upserts["level"], strict=True)) == {
        "check_failed:market_bars.price_jumps": "ERROR",
        "check_failed:predictions.every_symbol_predicted": "WARNING",
    }
    assert result.raised_keys == set(result.upserts["alert_key"])
    assert set(result.upserts["as_of_window"]) == {AS_OF}
    assert check_alerts(evaluations.iloc[0:0], pd.DataFrame([stale]), NOW, "run-3").rows.empty
