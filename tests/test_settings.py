"""Configuration: defaults, validation errors that name the key, env overrides, secrets never shown."""

import json

import pytest

from lstm_pipeline.settings import ConfigError, load_settings


def _write(tmp_path, payload) -> str:
    path = tmp_path / "realtime_config.json"
    path.write_text(json.dumps(payload))
    return str(path)


def test_defaults_without_a_file_use_the_simulated_market():
    settings = load_settings(environ={})
    assert settings.symbols == ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA")
    assert settings.market_data_source == "simulated"
    assert settings.db_path.is_absolute()


def test_file_named_by_env_var_is_loaded_and_paths_resolve_beside_it(tmp_path):
    path = _write(tmp_path, {"symbols": ["aapl", "spy"], "db_path": "state/bars.duckdb", "validation_threshold": 3})
    settings = load_settings(environ={"LSTM_PIPELINE_CONFIG": path})
    assert settings.symbols == ("AAPL", "SPY")
    assert settings.db_path == tmp_path / "state" / "bars.duckdb"
    assert settings.validation_threshold == 3


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"symbol": ["AAPL"]}, "unknown key 'symbol'"),
        ({"api": {"prot": 1}}, "unknown key 'api.prot'"),
        (
            {"confidence_factor_weights": {"model_accuracy": 0.5, "volatility": 0.5, "trend_consistency": 0.5,
                                           "volume": 0.0}},
            "'confidence_factor_weights' is invalid: the weights sum to 1.5; they must sum to 1",
        ),
        ({"validation_threshold": -1}, "'validation_threshold' is invalid: Input should be greater than or equal to 0"),
        ({"symbols": ["AAPL", "NOT A TICKER"]}, "are not tickers"),
        ({"symbols": []}, "at least one symbol"),
    ],
)
def test_invalid_config_names_the_key_and_the_fix(tmp_path, payload, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_settings(_write(tmp_path, payload), environ={})


def test_missing_file_and_bad_json_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; fix LSTM_PIPELINE_CONFIG"):
        load_settings(environ={"LSTM_PIPELINE_CONFIG": str(tmp_path / "nope.json")})
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_settings(bad, environ={})


def test_environment_overrides_the_file(tmp_path):
    path = _write(tmp_path, {"symbols": ["AAPL"], "market_data": {"source": "simulated"}})
    environ = {"LSTM_PIPELINE_SYMBOLS": "MSFT,TSLA", "LSTM_PIPELINE_MARKET_DATA_SOURCE": "file"}
    settings = load_settings(path, environ=environ)
    assert settings.symbols == ("MSFT", "TSLA")
    assert settings.market_data.source == "file"


def test_secrets_never_appear_in_repr_or_errors(tmp_path):
    secret = "pk_live_DO_NOT_LEAK_123"
    settings = load_settings(environ={"POLYGON_API_KEY": secret})
    assert settings.market_data_source == "polygon"
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    path = _write(tmp_path, {"api": {"api_key": 12345678}})
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "12345678" not in str(info.value)


def test_shipped_example_config_is_valid():
    from lstm_pipeline.settings import PROJECT_ROOT

    settings = load_settings(PROJECT_ROOT / "config" / "realtime_config.example.json", environ={})
    assert settings.db_path == PROJECT_ROOT / "data" / "lstm_pipeline.duckdb"
    assert settings.models_dir == PROJECT_ROOT / "models"
