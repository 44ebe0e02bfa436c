"""Project configuration: the seed's ``realtime_config.json`` keys, validated, with environment overrides.

The file is named by ``LSTM_PIPELINE_CONFIG`` (default: ``config/realtime_config.json`` in the project, if
present, else the built-in defaults). Environment variables override the file, and secrets (the Polygon key,
the REST API key) are held as ``SecretStr`` so they never print in logs, the UI or error messages.
Plain module: no Dagster import, so the API service and scripts share it.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_ENV_VAR = "LSTM_PIPELINE_CONFIG"
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "realtime_config.json"
TICKER_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfidenceFactorWeights(_Section):
    """How the confidence score weighs its factors; the weights must sum to 1."""

    model_accuracy: float = Field(0.4, ge=0)
    volatility: float = Field(0.2, ge=0)
    trend_consistency: float = Field(0.2, ge=0)
    volume: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> ConfidenceFactorWeights:
        total = sum(self.model_dump().values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"the weights sum to {total:g}; they must sum to 1 (scale them so they do)")
        return self


class AlertThresholds(_Section):
    """When validation results raise alerts."""

    prediction_error_pct: float = Field(5.0, ge=0)
    consecutive_failures: int = Field(3, ge=1)
    accuracy_drop_pct: float = Field(20.0, ge=0)
    data_staleness_minutes: int = Field(60, ge=1)


class ApiSettings(_Section):
    """The read-only REST service."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = None
    dagster_url: str = "http://127.0.0.1:3000"


class CacheSettings(_Section):
    """Caching of model loads and API reads."""

    enabled: bool = True
    ttl_seconds: int = Field(60, ge=0)
    max_entries: int = Field(1024, ge=1)


class MarketDataSettings(_Section):
    """Where bars come from. ``auto`` means Polygon when a key is set, else the simulated market."""

    source: Literal["auto", "simulated", "polygon", "file"] = "auto"
    simulation_seed: int = 0
    polygon_base_url: str = "https://api.polygon.io"
    requests_per_minute: float = Field(5.0, gt=0)
    max_retries: int = Field(5, ge=0)
    file_path: str | None = None
    file_column_map: dict[str, str] = Field(default_factory=dict)
    file_timezone: str = "UTC"
    history_start: str = "2025-01-02"
    """First session window registered as a partition (a date, New York)."""
    catch_up_sessions: int = Field(1, ge=1)
    """How many recent sessions the market sensor fetches by itself; older ones are there to backfill."""
    warmup_sessions: int = Field(2, ge=0)
    """Sessions fetched (bars only) before the first caught-up one when they are not stored yet, so the first
    forecasts read a full lookback window (48 windows: two sessions)."""
    delay_minutes: int = Field(15, ge=0)


class Settings(_Section):
    """The whole configuration. Keys follow the seed's ``realtime_config.json``; ``market_data`` is ours."""

    symbols: tuple[str, ...] = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA")
    update_interval: int = Field(900, ge=60)
    """Seconds between market updates; the market moves in 15-minute windows."""
    min_profit_percent: float = Field(2.0, ge=0)
    validation_threshold: float = Field(2.0, ge=0)
    confidence_threshold: float = Field(0.7, ge=0, le=1)
    polygon_api_key: SecretStr | None = None
    db_path: Path = Path("data/lstm_pipeline.duckdb")
    models_dir: Path = Path("models")
    confidence_factor_weights: ConfidenceFactorWeights = ConfidenceFactorWeights()
    alert_thresholds: AlertThresholds = AlertThresholds()
    api: ApiSettings = ApiSettings()
    cache: CacheSettings = CacheSettings()
    market_data: MarketDataSettings = MarketDataSettings()

    @field_validator("symbols", mode="before")
    @classmethod
    def _normalise_symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",")]
        if isinstance(value, list | tuple):
            return tuple(str(part).strip().upper() for part in value if str(part).strip())
        return value

    @field_validator("symbols")
    @classmethod
    def _valid_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is needed, e.g. [\"AAPL\"]")
        bad = [symbol for symbol in value if not TICKER_PATTERN.match(symbol)]
        if bad:
            raise ValueError(f"{bad} are not tickers (1-10 capital letters, digits, '.' or '-')")
        duplicates = sorted({symbol for symbol in value if value.count(symbol) > 1})
        if duplicates:
            raise ValueError(f"{duplicates} are listed more than once")
        return value

    @property
    def market_data_source(self) -> Literal["simulated", "polygon", "file"]:
        """The source actually used: ``auto`` resolves to Polygon only when a key is configured."""
        if self.market_data.source != "auto":
            return self.market_data.source
        return "polygon" if self.polygon_api_key and self.polygon_api_key.get_secret_value() else "simulated"


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "POLYGON_API_KEY": ("polygon_api_key",),
    "LSTM_PIPELINE_SYMBOLS": ("symbols",),
    "LSTM_PIPELINE_DB_PATH": ("db_path",),
    "LSTM_PIPELINE_MODELS_DIR": ("models_dir",),
    "LSTM_PIPELINE_API_KEY": ("api", "api_key"),
    "LSTM_PIPELINE_MARKET_DATA_SOURCE": ("market_data", "source"),
    "LSTM_PIPELINE_DATA_FILE": ("market_data", "file_path"),
    "LSTM_PIPELINE_HISTORY_START": ("market_data", "history_start"),
}
"""Environment variable -> config key path; the environment wins over the file."""


def _describe(error: dict[str, Any], origin: str) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{where}'; remove it or check its spelling against the documented keys."
    message = error["msg"].removeprefix("Value error, ")
    secret = any(str(part) in {"polygon_api_key", "api_key"} for part in error["loc"])
    got = "" if secret else f" (got {error.get('input')!r})"
    return f"{origin}: '{where}' is invalid: {message}{got}."


def load_settings(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, override and validate the configuration; raise ``ConfigError`` with one sentence per problem."""
    environ = dict(os.environ if environ is None else environ)
    chosen = path or environ.get(CONFIG_ENV_VAR)
    raw: dict[str, Any] = {}
    base_dir = PROJECT_ROOT
    origin = "built-in defaults"
    if chosen:
        config_path = Path(chosen).expanduser()
        if not config_path.is_file():
            raise ConfigError(
                f"Config file {config_path} does not exist; fix {CONFIG_ENV_VAR} or create the file."
            )
    elif DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    else:
        config_path = None
    if config_path is not None:
        origin = f"Config file {config_path}"
        try:
            raw = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{origin} is not valid JSON ({exc.msg} at line {exc.lineno}); fix the syntax.") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin} must hold a JSON object of settings, not {type(raw).__name__}.")
        base_dir = config_path.resolve().parent

    for variable, key_path in ENV_OVERRIDES.items():
        value = environ.get(variable)
        if value is None or value == "":
            continue
        target = raw
        for part in key_path[:-1]:
            target = target.setdefault(part, {})
        target[key_path[-1]] = value

    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = " ".join(_describe(error, origin) for error in exc.errors())
        raise ConfigError(problems) from None

    def _resolve(value: Path) -> Path:
        return value if value.is_absolute() else (base_dir / value).resolve()

    resolved = {"db_path": _resolve(settings.db_path), "models_dir": _resolve(settings.models_dir)}
    return settings.model_copy(update=resolved)
