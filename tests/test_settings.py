"""Configuration: the spec's own file, defaults, errors that name the key (or the variable), paths, secrets."""

import json
import os
from pathlib import Path

import pytest

from lstm_pipeline.settings import (
    DEFAULT_MONITORING_INTERVALS,
    PROJECT_ROOT,
    ConfigError,
    get_settings,
    load_settings,
)

SPEC_CONFIG = Path(__file__).parent / "fixtures" / "spec_realtime_config.json"
"""The ``realtime_config.json`` example of the original specification, copied verbatim."""


def _write(tmp_path, payload) -> str:
    path = tmp_path / "realtime_config.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return str(path)


def _escaped(message: str) -> str:
    return message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")


def test_defaults_without_a_file_use_the_simulated_market():
    settings = load_settings(environ={})
    assert settings.symbols == ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA")
    assert settings.market_data_source == "simulated"
    assert settings.db_path.is_absolute() and settings.models_dir == PROJECT_ROOT / "models"
    assert (settings.update_interval, settings.validation_threshold, settings.confidence_threshold) == (15, 0.02, 0.6)
    assert settings.api.host == "127.0.0.1" and settings.api.require_auth and settings.api.api_key is None
    assert settings.market_data.file_timezone == "America/New_York"
    assert settings.market_data.fetch_max_seconds == 30
    assert settings.monitoring_intervals == DEFAULT_MONITORING_INTERVALS


def test_the_specs_own_config_file_loads_unchanged_and_means_what_it_says():
    settings = load_settings(SPEC_CONFIG, environ={})

    assert settings.symbols == ("AAPL", "GOOGL", "MSFT")
    assert settings.update_interval == 15  # minutes
    assert settings.min_profit_percent == 2.0  # percent
    assert settings.validation_threshold == 0.02 and settings.confidence_threshold == 0.6  # fractions
    weights = settings.confidence_factor_weights.model_dump()
    assert list(weights) == [
        "model_performance", "data_quality", "market_volatility", "trend_consistency", "volume_analysis",
        "technical_indicators", "time_of_day", "market_regime", "prediction_stability", "historical_accuracy",
    ]
    assert weights["model_performance"] == 0.25 and weights["historical_accuracy"] == 0.02
    assert settings.alert_thresholds.model_dump() == {
        "prediction_error_high": 0.05, "prediction_error_critical": 0.10, "confidence_low": 0.4,
        "confidence_critical": 0.2, "api_response_time_high": 5.0, "api_response_time_critical": 10.0,
        "model_accuracy_low": 0.6, "trade_success_rate_low": 0.4,
    }
    api = settings.api
    assert (api.host, api.port, api.debug, api.require_auth) == ("0.0.0.0", 5000, False, True)
    assert api.api_key is not None and api.api_key.get_secret_value() == "your_api_key_here"
    assert "your_api_key_here" not in repr(settings)
    cache = settings.cache
    assert (cache.max_size_mb, cache.ttl_minutes) == (500, 60)
    assert cache.enable_prediction_cache and cache.enable_model_cache and cache.enable_data_cache
    assert settings.polygon_api_key is None and settings.market_data_source == "simulated"
    assert settings.db_path == SPEC_CONFIG.parent / "realtime_data.db"  # beside the file, as every path


def test_shipped_example_config_is_valid():
    settings = load_settings(PROJECT_ROOT / "config" / "realtime_config.example.json", environ={})
    assert settings.db_path == PROJECT_ROOT / "data" / "lstm_pipeline.duckdb"
    assert settings.models_dir == PROJECT_ROOT / "models"
    assert settings.update_interval == 15 and settings.market_data.fetch_max_seconds == 30


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"symbol": ["AAPL"]}, "unknown key 'symbol'"),
        ({"api": {"prot": 1}}, "unknown key 'api.prot'"),
        ({"alert_thresholds": {"prediction_error_pct": 5.0}},
         "unknown key 'alert_thresholds.prediction_error_pct'; rename it prediction_error_high and write a "
         "fraction (5.0 becomes 0.05)."),
        ({"confidence_factor_weights": {"model_performance": 0.5}},
         "'confidence_factor_weights' is invalid: the weights sum to 1.25; they must sum to 1"),
        ({"validation_threshold": 2.0}, "'validation_threshold' is invalid: it is a fraction between 0 and 1 "
                                        "(0.02 means 2%) (got 2.0)"),
        ({"validation_threshold": -1}, "'validation_threshold' is invalid: it is a fraction"),
        ({"update_interval": 900}, "'update_interval' is invalid: it is in minutes (the spec's 15)"),
        ({"update_interval": 20}, "a whole number of 15-minute windows"),
        ({"alert_thresholds": {"confidence_low": 0.1}},
         "'alert_thresholds' is invalid: confidence_critical must be at most confidence_low"),
        ({"monitoring_intervals": {"system_health": 0}}, "'monitoring_intervals.system_health' is invalid"),
        ({"monitoring_intervals": {"System Health": 5}}, "are not category names"),
        ({"symbols": ["AAPL", "NOT A TICKER"]}, "are not tickers"),
        ({"symbols": []}, "at least one symbol"),
        ({"market_data": {"history_start": "2025-13-45"}},
         "'market_data.history_start' is invalid: it must be a date written YYYY-MM-DD"),
        ({"market_data": {"history_start": "last year"}}, "'market_data.history_start' is invalid"),
        ({"market_data": {"file_timezone": "Mars/Olympus_Mons"}},
         "'market_data.file_timezone' is invalid: it must be an IANA time zone"),
        ({"market_data": {"fetch_max_seconds": 0}}, "'market_data.fetch_max_seconds' is invalid"),
    ],
)
def test_invalid_config_names_the_key_and_the_fix(tmp_path, payload, message):
    with pytest.raises(ConfigError, match=_escaped(message)) as raised:
        load_settings(_write(tmp_path, payload), environ={})
    assert str(raised.value).startswith("Config file ")


@pytest.mark.parametrize(
    "text",
    [
        '{"confidence_threshold": Infinity}',
        '{"alert_thresholds": {"api_response_time_critical": Infinity}}',
        '{"market_data": {"requests_per_minute": NaN}}',
        '{"monitoring_intervals": {"storage": Infinity}}',
        '{"cache": {"max_size_mb": -Infinity}}',
    ],
)
def test_non_finite_numbers_are_refused_everywhere(tmp_path, text):
    with pytest.raises(ConfigError, match="finite number"):
        load_settings(_write(tmp_path, text), environ={})


def test_history_start_and_timezone_are_normalised(tmp_path):
    path = _write(tmp_path, {"market_data": {"history_start": " 2024-03-01 ", "file_timezone": "UTC"}})
    market = load_settings(path, environ={}).market_data
    assert (market.history_start, market.file_timezone) == ("2024-03-01", "UTC")


@pytest.mark.parametrize(
    "url", ["api.polygon.io", "api.polygon.io:443", "http://api.polygon.io", "ftp://api.polygon.io",
            "http://10.0.0.5:8080", "https://"],
)
def test_the_polygon_url_must_be_https(tmp_path, url):
    path = _write(tmp_path, {"market_data": {"polygon_base_url": url}})
    with pytest.raises(ConfigError, match=r"'market_data\.polygon_base_url' is invalid: it must") as raised:
        load_settings(path, environ={})
    assert url not in str(raised.value).replace("https://api.polygon.io", "")  # a URL may carry a key: not echoed


@pytest.mark.parametrize("url", ["https://api.polygon.io/", "http://127.0.0.1:8123", "http://localhost:9",
                                 "http://[::1]:8123"])
def test_https_and_loopback_http_urls_are_accepted(tmp_path, url):
    path = _write(tmp_path, {"market_data": {"polygon_base_url": url}})
    assert load_settings(path, environ={}).market_data.polygon_base_url == url.rstrip("/")


@pytest.mark.parametrize("section", ["market_data", "api"])
@pytest.mark.parametrize("value", ["pk_live_PASTED_HERE", ["a", "list"]])
def test_an_env_override_into_a_section_that_is_not_an_object_is_one_sentence(tmp_path, section, value):
    path = _write(tmp_path, {section: value})
    variable = {"market_data": "LSTM_PIPELINE_HISTORY_START", "api": "LSTM_PIPELINE_API_KEY"}[section]
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ={variable: "2025-01-02"})
    message = str(raised.value)
    assert f"'{section}' must be a JSON object of settings" in message and variable in message
    assert "pk_live_PASTED_HERE" not in message
    assert f"not {'a string' if isinstance(value, str) else 'a list'}, so {variable} cannot set" in message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize("value", ["sk_live_PASTED_SECRET", ["sk_live_PASTED_SECRET"], 7])
def test_a_section_given_as_a_value_is_never_echoed(tmp_path, value):
    with pytest.raises(ConfigError, match="'api' must be a JSON object of settings, not ") as raised:
        load_settings(_write(tmp_path, {"api": value}), environ={})
    assert "sk_live_PASTED_SECRET" not in str(raised.value)


def test_a_problem_from_an_environment_variable_names_the_variable_not_the_file(tmp_path):
    path = _write(tmp_path, {"symbols": ["AAPL"]})
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ={"LSTM_PIPELINE_HISTORY_START": "not-a-date"})
    message = str(raised.value)
    assert message.startswith("Environment variable LSTM_PIPELINE_HISTORY_START: 'market_data.history_start'")
    assert "Config file" not in message and message.endswith("; fix LSTM_PIPELINE_HISTORY_START.")
    with pytest.raises(ConfigError, match="^Environment variable LSTM_PIPELINE_SYMBOLS: 'symbols' is invalid"):
        load_settings(path, environ={"LSTM_PIPELINE_SYMBOLS": "AAPL,not a ticker"})


def test_missing_file_and_bad_json_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; fix LSTM_PIPELINE_CONFIG"):
        load_settings(environ={"LSTM_PIPELINE_CONFIG": str(tmp_path / "nope.json")})
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_settings(_write(tmp_path, "{ not json"), environ={})
    with pytest.raises(ConfigError, match="must hold a JSON object of settings, not a list"):
        load_settings(_write(tmp_path, "[1, 2]"), environ={})


def test_environment_overrides_the_file(tmp_path):
    path = _write(tmp_path, {"symbols": ["AAPL"], "market_data": {"source": "simulated"}})
    environ = {"LSTM_PIPELINE_SYMBOLS": "MSFT,TSLA", "LSTM_PIPELINE_MARKET_DATA_SOURCE": "file"}
    settings = load_settings(path, environ=environ)
    assert settings.symbols == ("MSFT", "TSLA")
    assert settings.market_data.source == "file"
    assert settings.env_variable_for("symbols") == "LSTM_PIPELINE_SYMBOLS"
    assert settings.env_variable_for("db_path") is None


def test_monitoring_intervals_given_in_the_file_replace_only_their_own_defaults(tmp_path):
    path = _write(tmp_path, {"monitoring_intervals": {"system_health": 1, "dashboards": 30}})
    intervals = load_settings(path, environ={}).monitoring_intervals
    assert intervals == {**DEFAULT_MONITORING_INTERVALS, "system_health": 1.0, "dashboards": 30.0}


def test_every_path_setting_follows_one_rule(tmp_path, monkeypatch):
    config_dir, work_dir = tmp_path / "config", tmp_path / "work"
    config_dir.mkdir()
    work_dir.mkdir()
    monkeypatch.chdir(work_dir)
    path = _write(config_dir, {"db_path": "state/bars.duckdb", "models_dir": "../models",
                               "market_data": {"file_path": "bars"}})
    from_file = load_settings(path, environ={})
    assert from_file.db_path == config_dir / "state" / "bars.duckdb"
    assert from_file.models_dir == tmp_path / "models"
    assert from_file.market_data.file_path == str(config_dir / "bars")  # issue #16: was the working directory

    from_env = load_settings(path, environ={"LSTM_PIPELINE_DB_PATH": "db.duckdb", "LSTM_PIPELINE_MODELS_DIR": "m",
                                            "LSTM_PIPELINE_DATA_FILE": "exports"})
    assert from_env.db_path == work_dir / "db.duckdb"
    assert from_env.models_dir == work_dir / "m"
    assert from_env.market_data.file_path == str(work_dir / "exports")


def test_secrets_never_appear_in_repr_or_errors(tmp_path):
    secret = "pk_live_DO_NOT_LEAK_123"
    settings = load_settings(environ={"POLYGON_API_KEY": secret})
    assert settings.market_data_source == "polygon"
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    path = _write(tmp_path, {"api": {"api_key": 12345678}})
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "12345678" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, {"api": {"port": "pk_live_in_wrong_place"}}), environ={})
    assert "pk_live_in_wrong_place" not in str(info.value)


def test_get_settings_reads_the_configuration_once_per_process(tmp_path, monkeypatch):
    first = _write(tmp_path, {"symbols": ["SPY"]})
    monkeypatch.setenv("LSTM_PIPELINE_CONFIG", first)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.symbols == ("SPY",)
        Path(first).write_text(json.dumps({"symbols": ["QQQ"]}))
        assert get_settings() is settings  # not re-read on every tick
        get_settings.cache_clear()
        assert get_settings().symbols == ("QQQ",)
    finally:
        get_settings.cache_clear()


# --- the market-data resource built from the settings ---------------------------------------------------


def test_a_missing_bar_folder_is_refused_when_the_code_location_loads(tmp_path):
    from lstm_pipeline.resources import build_market_data

    path = _write(tmp_path, {"market_data": {"source": "file", "file_path": "recorded"}})
    with pytest.raises(ConfigError, match=_escaped(f"market_data.file_path names {tmp_path / 'recorded'}, which "
                                                   "does not exist")):
        build_market_data(load_settings(path, environ={}))
    with pytest.raises(ConfigError, match="^LSTM_PIPELINE_DATA_FILE names .* which does not exist"):
        build_market_data(load_settings(path, environ={"LSTM_PIPELINE_DATA_FILE": str(tmp_path / "nope")}))
    (tmp_path / "recorded").mkdir()
    assert build_market_data(load_settings(path, environ={})).path == str(tmp_path / "recorded")


def test_a_polygon_key_from_the_file_is_not_written_to_the_environment(tmp_path, monkeypatch):
    from lstm_pipeline.resources import build_market_data

    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    secret = "pk_live_FROM_THE_FILE_42"
    path = _write(tmp_path, {"polygon_api_key": secret, "market_data": {"fetch_max_seconds": 12.5}})
    resource = build_market_data(load_settings(path, environ={}))
    assert "POLYGON_API_KEY" not in os.environ
    assert resource.api_key is None and resource.api_key_from_config
    assert secret not in repr(resource) and secret not in str(resource.model_dump())
    assert resource.fetch_max_seconds == 12.5


def test_a_polygon_key_from_the_environment_reaches_the_resource_as_envvar(monkeypatch):
    from dagster import EnvVar

    from lstm_pipeline.resources import build_market_data

    secret = "pk_live_FROM_THE_ENV_42"
    monkeypatch.setenv("POLYGON_API_KEY", secret)
    resource = build_market_data(load_settings(environ={"POLYGON_API_KEY": secret}))
    assert isinstance(resource.api_key, EnvVar) and resource.api_key == "POLYGON_API_KEY"
    assert not resource.api_key_from_config
