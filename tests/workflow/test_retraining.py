"""Retraining: the sensor's three causes (one run per symbol, nothing twice across a restart), a new model version
repredicting the latest window, and champion/challenger deciding whether a retrained model serves."""

import pandas as pd
from dagster import SensorResult, build_sensor_context, materialize

from lstm_pipeline.assets.predictions import REASON_TAG, forecast_reason
from lstm_pipeline.forecasting import champion
from lstm_pipeline.forecasting.champion import REJECT, SERVE, Contender, challenge
from lstm_pipeline.forecasting.features import bar_features
from lstm_pipeline.forecasting.scaler import fit_standard_scaler
from lstm_pipeline.forecasting.store import CANDIDATES_DIR, load_model, model_version
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.sensors.retraining import (
    ACCURACY_LOW,
    MODEL_AGE,
    REPREDICTIONS_NOT_HELPING,
    RETRAIN_CAUSE_TAG,
    build_retraining_sensor,
)
from lstm_pipeline.settings import Settings, WorkflowSettings
from tests.forecasting.conftest import random_network, saved_model, sim_bars, tiny_config
from tests.helpers import FrozenClock

NOW = "2026-11-24 12:00"
RECENT = "2026-11-20T00:00:00+00:00"
OLD = "2026-07-01T00:00:00+00:00"
BARS = sim_bars("AAPL", "2025-06-02", "2025-06-20")


def settings(min_validations: int = 10, max_age_days: int = 90) -> Settings:
    return Settings(
        symbols=["AAPL", "MSFT"],
        workflow=WorkflowSettings(retrain_min_validations=min_validations, retrain_max_model_age_days=max_age_days),
    )


def save_model_for(models_dir, symbol: str, trained_at: str, seed: int = 0) -> str:
    config = tiny_config(symbol, "recursive").with_record(training={"trained_at": trained_at})
    return saved_model(models_dir, symbol, config, seed=seed, bars=BARS.assign(symbol=symbol)).version


def store_validations(store, symbol: str, version: str, statuses: list[str], first_as_of: str = "2026-11-24 09:30",
                      target: str = "2026-11-24 11:00") -> None:
    as_of = pd.Timestamp(first_as_of, tz=NEW_YORK)
    rows = pd.DataFrame({
        "symbol": symbol, "target_window": pd.Timestamp(target, tz=NEW_YORK),
        "as_of_window": [as_of + pd.Timedelta(minutes=15 * i) for i in range(len(statuses))],
        "horizon_step": 1, "model_version": version, "predicted_close": 100.0, "actual_close": 99.0,
        "last_close": 100.0, "status": statuses, "validated_at": pd.Timestamp("2026-11-24 16:00", tz="UTC"),
    })
    keys = rows[["symbol", "target_window"]].drop_duplicates()
    store.replace_tables({"validations": (keys, rows)})


def store_forecast(store, symbol: str, as_of: str, version: str, reason: str = "schedule") -> None:
    window = pd.Timestamp(as_of, tz=NEW_YORK)
    rows = pd.DataFrame({
        "symbol": [symbol], "as_of_window": [window], "horizon_step": [1], "target_window": [window + pd.Timedelta(
            minutes=15)], "predicted_close": [100.0], "last_close": [100.0], "forecast_mode": ["recursive"],
        "model_version": [version], "reason": [reason],
    })
    store.replace_tables({"predictions": (rows[["symbol", "as_of_window"]], rows)})


def tick(sensor, instance, store, model_store, cursor=None) -> SensorResult:
    with build_sensor_context(
        instance=instance, cursor=cursor, resources={"store": store, "model_store": model_store}
    ) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def retrains(result: SensorResult) -> list[tuple[str, str]]:
    return [
        (request.partition_key, request.tags[RETRAIN_CAUSE_TAG])
        for request in result.run_requests
        if request.job_name == "lstm_model_training"
    ]


def test_low_accuracy_of_the_serving_version_requests_one_retrain_and_a_restart_nothing_twice(
    instance, store, tmp_path
):
    models = LocalModelStore(models_dir=str(tmp_path))
    aapl = save_model_for(tmp_path, "AAPL", RECENT)
    msft = save_model_for(tmp_path, "MSFT", RECENT)
    store_validations(store, "AAPL", aapl, ["valid"] * 4 + ["needs_reprediction"] * 8)  # 33% valid < 60%
    store_validations(store, "AAPL", "an-older-version", ["valid"] * 40, target="2026-11-24 10:45")
    store_validations(store, "MSFT", msft, ["valid"] * 9 + ["needs_reprediction"] * 3)  # 75% valid
    store_validations(store, "MSFT", "an-older-version", ["needs_reprediction"] * 40, target="2026-11-24 10:45")
    clock = FrozenClock(NOW)

    first = tick(build_retraining_sensor(settings(), clock), instance, store, models)
    assert retrains(first) == [("AAPL", ACCURACY_LOW)]
    (request,) = first.run_requests
    assert request.run_key == f"retrain:AAPL:{aapl}:2026-11-24"

    # The daemon restarts with the stored cursor: nothing is requested twice, not even an hour later.
    clock.set("2026-11-24 13:00")
    restarted = tick(build_retraining_sensor(settings(), clock), instance, store, models, first.cursor)
    assert restarted.run_requests == []

    # Too few validations of the serving version: accuracy is not judged.
    fresh = tick(build_retraining_sensor(settings(min_validations=13), clock), instance, store, models)
    assert fresh.run_requests == []


def test_an_old_model_is_retrained_once(instance, store, tmp_path):
    models = LocalModelStore(models_dir=str(tmp_path))
    aapl = save_model_for(tmp_path, "AAPL", OLD)
    save_model_for(tmp_path, "MSFT", RECENT)
    clock = FrozenClock(NOW)
    sensor = build_retraining_sensor(settings(), clock)
    first = tick(sensor, instance, store, models)
    assert retrains(first) == [("AAPL", MODEL_AGE)]
    assert tick(sensor, instance, store, models, first.cursor).run_requests == []
    # Still the same old version a day later (the candidate lost): one retry, on a new run key.
    clock.set("2026-11-25 12:05")
    (retry,) = tick(sensor, instance, store, models, first.cursor).run_requests
    assert retry.run_key == f"retrain:AAPL:{aapl}:2026-11-25"
    assert tick(build_retraining_sensor(settings(max_age_days=200), clock), instance, store, models).run_requests == []


def test_repeated_repredictions_that_do_not_help_request_a_retrain(instance, store, tmp_path):
    models = LocalModelStore(models_dir=str(tmp_path))
    aapl = save_model_for(tmp_path, "AAPL", RECENT)
    clock = FrozenClock(NOW)
    few = settings(min_validations=1000)  # accuracy is not judged here
    windows = ["2026-11-24 09:30", "2026-11-24 09:45", "2026-11-24 10:00"]
    for window in windows:
        store_forecast(store, "AAPL", window, aapl, reason="reprediction: validation_error")
    store_validations(store, "AAPL", aapl, ["needs_reprediction", "needs_reprediction", "valid"])
    assert tick(build_retraining_sensor(few, clock), instance, store, models).run_requests == []  # 2 of 3 failing

    store_validations(store, "AAPL", aapl, ["needs_reprediction"] * 3)
    result = tick(build_retraining_sensor(few, clock), instance, store, models)
    assert retrains(result) == [("AAPL", REPREDICTIONS_NOT_HELPING)]


def test_a_new_model_version_requests_one_reprediction_of_the_latest_window(instance, store, tmp_path):
    models = LocalModelStore(models_dir=str(tmp_path))
    first_version = save_model_for(tmp_path, "AAPL", RECENT)
    store_forecast(store, "AAPL", "2026-11-24 11:00", first_version)
    store_forecast(store, "AAPL", "2026-11-24 11:15", first_version)
    clock = FrozenClock(NOW)
    sensor = build_retraining_sensor(settings(), clock)
    baseline = tick(sensor, instance, store, models)
    assert baseline.run_requests == []  # the first tick records what serves; a restart is not a new model

    second_version = save_model_for(tmp_path, "AAPL", RECENT, seed=3)
    assert second_version != first_version
    result = tick(sensor, instance, store, models, baseline.cursor)
    (request,) = result.run_requests
    assert request.job_name == "reprediction"
    assert request.partition_key == "AAPL|2026-11-24-11:15"
    assert request.run_key == f"new_model:AAPL:{second_version}"
    assert request.tags[REASON_TAG] == "new_model" and forecast_reason(request.tags) == "new_model"
    assert tick(sensor, instance, store, models, result.cursor).run_requests == []


# ------------------------------------------------------------------------------------------ champion/challenger


def contender(mode: str, head_gain: float, seed: int = 0, **record) -> Contender:
    config = tiny_config("AAPL", mode).with_record(**record)
    features = bar_features(BARS, config.features, symbol="AAPL")
    scaler = fit_standard_scaler(features[list(config.features)].to_numpy()[: int(len(features) * 0.7)],
                                 config.features)
    return Contender(config, random_network(config, seed, head_gain), scaler, version=f"gain{head_gain}")


TEST_SPAN = {"spans": {"test": ["2025-06-16T09:30:00-04:00", "2025-06-19T15:45:00-04:00"]}}


def test_the_candidate_serves_only_if_its_mase_is_lower_on_the_same_origins():
    calm = contender("direct", head_gain=0.0, training=TEST_SPAN)  # the training span's mean return every step
    wild = contender("direct", head_gain=40.0, seed=1, training=TEST_SPAN)

    better = challenge("AAPL", BARS, calm, wild)
    assert better.decision == SERVE and better.candidate_mase < better.current_mase
    assert better.candidate_mase < 1.2 < better.current_mase  # a drift near zero vs a wild random network
    worse = challenge("AAPL", BARS, wild, calm)
    assert worse.decision == REJECT and worse.origins == better.origins > 20
    assert (worse.candidate_mase, worse.current_mase) == (better.current_mase, better.candidate_mase)
    assert worse.span[0] == TEST_SPAN["spans"]["test"][0]  # the first target is the first bar of the test span

    assert challenge("AAPL", BARS, wild, None).decision == SERVE  # nothing serves yet


def test_the_serving_model_is_not_judged_on_bars_it_learned_from():
    candidate = contender("direct", head_gain=40.0, training=TEST_SPAN)
    seen_it_all = contender(
        "direct", head_gain=0.0, training={"spans": {"validation": ["2025-06-02", "2025-06-19T15:45:00-04:00"]}}
    )
    result = challenge("AAPL", BARS, candidate, seen_it_all)
    assert result.decision == SERVE and result.candidate_mase is None
    assert "only 0 forecast origin(s) lie after both models' training and validation spans" in result.reason


TINY_RUN = {
    "ops": {
        "lstm_model": {
            "config": {
                "history_sessions": 30, "lookback_steps": 8, "horizon_steps": 130, "lstm_units": [8],
                "max_epochs": 2, "patience": 1,
            }
        }
    }
}


def train(instance, store, models):
    from lstm_pipeline.assets.models import lstm_model

    result = materialize(
        [lstm_model], instance=instance, partition_key="AAPL", resources={"store": store, "model_store": models},
        run_config=TINY_RUN,
    )
    return result.asset_materializations_for_node("lstm_model")[0].metadata


def test_a_worse_candidate_is_kept_aside_with_an_alert_and_a_better_one_serves(instance, store, tmp_path, monkeypatch):
    bars = sim_bars("AAPL", "2025-03-03", "2025-04-15", seed=7)
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    models = LocalModelStore(models_dir=str(tmp_path))
    wild = saved_model(tmp_path, "AAPL", tiny_config("AAPL", "direct"), seed=1, bars=bars, head_gain=40.0)

    # The comparison says the candidate is worse (the decision itself is tested above, on real forecasts).
    scores = iter([1.3, 0.9])
    real_mase = champion.path_mase
    monkeypatch.setattr(champion, "path_mase", lambda *args: next(scores))
    rejected = train(instance, store, models)
    assert rejected["champion_decision"].value == REJECT
    assert (rejected["candidate_mase"].value, rejected["current_mase"].value) == (1.3, 0.9)
    assert rejected["model_version"].value == wild.version == models.version("AAPL")  # the old one still serves
    candidate = rejected["candidate_version"].value
    aside = tmp_path / CANDIDATES_DIR / "AAPL" / candidate
    assert load_model(aside, "AAPL").version == candidate
    (alert,) = store.read_rows("alerts", ["source = 'models'"]).itertuples(index=False)
    assert (alert.kind, alert.level, alert.alert_key) == ("challenger_rejected", "WARNING", "challenger_rejected:AAPL")
    assert candidate in alert.message and wild.version in alert.message and pd.isna(alert.resolved_at)

    # The real comparison: the trained candidate beats the wild model, serves, and resolves the alert.
    monkeypatch.setattr(champion, "path_mase", real_mase)
    served = train(instance, store, models)
    assert served["champion_decision"].value == SERVE
    assert served["candidate_mase"].value < served["current_mase"].value
    assert served["model_version"].value == models.version("AAPL") == model_version(tmp_path / "AAPL", "AAPL")
    assert served["model_version"].value != wild.version
    (resolved,) = store.read_rows("alerts", ["source = 'models'"]).itertuples(index=False)
    assert resolved.resolved_at is not None and not pd.isna(resolved.resolved_at)
    assert "Resolved: retrained model" in resolved.message
