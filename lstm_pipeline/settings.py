"""Project configuration: the spec's ``realtime_config.json`` keys, validated, with environment overrides.

The file is named by ``LSTM_PIPELINE_CONFIG`` (default: ``config/realtime_config.json`` in the project, if
present, else the built-in defaults). The spec's own example file loads unchanged and means what it says
(``update_interval`` in minutes, thresholds as fractions); ``market_data`` is this project's own section.
Environment variables override the file, and secrets (the Polygon key, the REST API key) are held as
``SecretStr`` so they never print in logs, the UI or error messages. Every path setting follows one rule: a
relative path from the file resolves beside the file (beside the project with no file), one from an environment
variable against the working directory.
Plain module: no Dagster import, so the API service and scripts share it.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import math
import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_ENV_VAR = "LSTM_PIPELINE_CONFIG"
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "realtime_config.json"
TICKER_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
LOOPBACK_HOSTS = frozenset({"localhost"})
SESSION_MINUTES = 390
"""One regular NYSE session; ``update_interval`` may not exceed it."""


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the fix."""


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("it is a fraction between 0 and 1 (0.02 means 2%)")
    return value


Fraction = Annotated[float, AfterValidator(_fraction)]
"""A share written as a fraction: 0.02 means 2%."""
Minutes = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    # allow_inf_nan=False: JSON's Infinity/NaN are refused everywhere, so no threshold can be infinite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ConfidenceFactorWeights(_Section):
    """How the confidence score weighs its ten factors (the spec's names and weights); they must sum to 1."""

    model_performance: float = Field(0.25, ge=0)
    data_quality: float = Field(0.15, ge=0)
    market_volatility: float = Field(0.15, ge=0)
    trend_consistency: float = Field(0.10, ge=0)
    volume_analysis: float = Field(0.10, ge=0)
    technical_indicators: float = Field(0.10, ge=0)
    time_of_day: float = Field(0.05, ge=0)
    market_regime: float = Field(0.05, ge=0)
    prediction_stability: float = Field(0.03, ge=0)
    historical_accuracy: float = Field(0.02, ge=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> ConfidenceFactorWeights:
        total = sum(self.model_dump().values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"the weights sum to {total:g}; they must sum to 1 (scale them so they do)")
        return self


class AlertThresholds(_Section):
    """When monitoring raises alerts (the spec's eight keys): errors, confidences and rates are fractions."""

    prediction_error_high: Fraction = 0.05
    prediction_error_critical: Fraction = 0.10
    confidence_low: Fraction = 0.4
    confidence_critical: Fraction = 0.2
    api_response_time_high: float = Field(5.0, gt=0)
    """Seconds."""
    api_response_time_critical: float = Field(10.0, gt=0)
    """Seconds."""
    model_accuracy_low: Fraction = 0.6
    trade_success_rate_low: Fraction = 0.4

    @model_validator(mode="after")
    def _critical_beyond_warning(self) -> AlertThresholds:
        if self.prediction_error_critical < self.prediction_error_high:
            raise ValueError("prediction_error_critical must be at least prediction_error_high")
        if self.api_response_time_critical < self.api_response_time_high:
            raise ValueError("api_response_time_critical must be at least api_response_time_high")
        if self.confidence_critical > self.confidence_low:
            raise ValueError("confidence_critical must be at most confidence_low")
        return self


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class ApiKeyEntry(_Section):
    """One more REST API key, by its SHA-256 (never the key itself), e.g. ``printf %s "$KEY" | sha256sum``.

    ``lstm-pipeline keys add --role reader`` prints a new key (once) and keeps its hash in the key file beside the
    Dagster instance (``api_keys.json``), so a key minted that way needs no entry here; the running service picks
    up a change of that file or of this list without a restart."""

    id: str
    role: Literal["reader", "operator"] = "reader"
    sha256: str

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _KEY_ID.match(value):
            raise ValueError("a key id is 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("sha256")
    @classmethod
    def _valid_hash(cls, value: str) -> str:
        if not _SHA256_HEX.match(value.strip().lower()):
            raise ValueError("it is the key's SHA-256 as 64 hex digits, never the key itself")
        return value.strip().lower()


class ApiSettings(_Section):
    """The REST service (issues #9 and #17)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    debug: bool = False
    api_key: SecretStr | None = None
    """An operator key (the spec's single key); more keys, with roles, go in ``keys`` as hashes."""
    require_auth: bool = True
    """``false`` is honoured only when ``host`` is a loopback address."""
    keys: tuple[ApiKeyEntry, ...] = ()
    rate_limit_per_minute: int = Field(100, ge=1)
    """Requests per minute per key (per client address for requests without a valid key)."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (e.g. ``https://dash.example.com``); none by default."""
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    allow_plain_http: bool = False
    """Serve plain HTTP on a non-loopback address anyway (behind a TLS-terminating proxy, say)."""
    audit_max_bytes: int = Field(10_000_000, ge=10_000)
    """The audit file rotates past this size; ``audit_backups`` rotated files are kept."""
    audit_backups: int = Field(5, ge=1)
    dashboard_refresh_seconds: float = Field(30.0, ge=1)
    """How often the dashboard page reloads its data."""
    snapshot_poll_seconds: float = Field(0.5, gt=0, le=60)
    """How often the service checks the DuckDB file for a new materialization (see serving/snapshot.py)."""
    snapshot_min_copy_seconds: float = Field(0.5, ge=0, le=60)
    """Requests bring in a new copy of the DuckDB file at most this often (the poll thread is not held back): a
    writer committing many times a second costs one copy and one cold cache per interval, not per commit."""

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("tls_certfile and tls_keyfile go together: set both (PEM files) or neither")
        return self


class CacheSettings(_Section):
    """The REST service's read cache (issue #9)."""

    max_size_mb: float = Field(500, gt=0)
    ttl_minutes: float = Field(60, gt=0)
    enable_prediction_cache: bool = True
    """Whether answers read from ``predictions`` are cached (false: every forecast answer is read fresh)."""
    enable_model_cache: bool = True
    """Not used by the REST service, which never loads a model (forecasts are read from the store); kept as a
    spec key."""
    enable_data_cache: bool = True
    """The answer cache as a whole: false caches nothing, whatever ``enable_prediction_cache`` says."""


DEFAULT_MONITORING_INTERVALS: dict[str, float] = {
    "prediction_accuracy": 15.0,
    "model_performance": 60.0,
    "system_health": 5.0,
    "api_performance": 5.0,
    "storage": 60.0,
    "trade_performance": 60.0,
}
"""Minutes between samples of the spec's six monitoring categories (issue #10)."""
_INTERVAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _valid_date(value: str) -> str:
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ValueError("it must be a date written YYYY-MM-DD, e.g. 2025-01-02") from None


def _valid_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("it must be an IANA time zone such as America/New_York or UTC") from None
    return value.strip()


def _simulation_predictability(value: float) -> float:
    if not 0.0 <= value <= 0.5:
        raise ValueError(
            "it is the lag-1 autocorrelation of the simulated 15-minute returns, a number from 0 (off) to 0.5"
        )
    return value


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def polygon_url_problem(url: str) -> str | None:
    """Why ``url`` may not carry the Polygon key, or None: https only; plain http only to this machine."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host = None
    if not host:
        return "it must be a full URL such as https://api.polygon.io"
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(host)):
        return None
    return (
        "it must start with https:// (plain http:// only for a loopback host such as 127.0.0.1), "
        "so the API key never travels in clear text"
    )


def _https_url(value: str) -> str:
    problem = polygon_url_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip().rstrip("/")


class MarketDataSettings(_Section):
    """Where bars come from. ``auto`` means Polygon when a key is set, else the simulated market."""

    source: Literal["auto", "simulated", "polygon", "file"] = "auto"
    simulation_seed: int = 0
    simulation_predictability: Annotated[float, AfterValidator(_simulation_predictability)] = 0.0
    """Lag-1 autocorrelation of the simulated 15-minute returns (an AR(1) component, 0 to 0.5; 0 = none, today's
    bars unchanged): a weak predictable effect so the embedded default can show a model beating naive."""
    polygon_base_url: Annotated[str, AfterValidator(_https_url)] = "https://api.polygon.io"
    requests_per_minute: float = Field(5.0, gt=0)
    max_retries: int = Field(5, ge=0)
    fetch_max_seconds: float = Field(30.0, gt=0)
    """Total time one fetch may spend retrying before it fails (the error says how long it tried)."""
    file_path: str | None = None
    """Absolute after loading (see the module docstring for how a relative one resolves)."""
    file_column_map: dict[str, str] = Field(default_factory=dict)
    file_timezone: Annotated[str, AfterValidator(_valid_timezone)] = "America/New_York"
    """Zone of naive timestamps in bar files: exchange time unless the export says otherwise."""
    history_start: Annotated[str, AfterValidator(_valid_date)] = "2025-01-02"
    """First session window registered as a partition (a date, New York), normalised to YYYY-MM-DD."""
    catch_up_sessions: int = Field(1, ge=1)
    """How many recent sessions the market sensor fetches by itself; older ones are there to backfill."""
    warmup_sessions: int = Field(2, ge=0)
    """Sessions fetched (bars only) before the first caught-up one when they are not stored yet, so the first
    forecasts read a full lookback window (48 windows: two sessions)."""
    delay_minutes: int = Field(15, ge=0)


class WorkflowSettings(_Section):
    """This project's knobs for the prediction workflow (issue #13): validation, trades, repredictions, retraining.

    The spec's own keys (``validation_threshold``, ``confidence_threshold``, ``min_profit_percent``,
    ``alert_thresholds``, ``confidence_factor_weights``) stay at the top level; these are additions."""

    round_trip_cost_bps: float = Field(10.0, ge=0, le=1000)
    """Costs of one round trip (enter and exit) in basis points, taken off every predicted and realized return."""
    allow_short: bool = False
    """Whether a recommendation may short (sell at the predicted high before the predicted low)."""
    skill_mase_max: float = Field(1.0, gt=0)
    """A model recommends a trade only while its recent MASE (against the naive forecast) at the horizon the trade
    exits is below this."""
    skill_significance: float = Field(0.05, gt=0, le=1)
    """... and only while that MASE is below 1 by more than chance: its Diebold-Mariano p-value
    (``accuracy_metrics.skill_p_value``, over the ``month`` span) must be below this. 1 turns the requirement off."""
    max_holding_windows: int = Field(130, ge=1, le=672)
    """A recommended trade exits at most this many 15-minute windows after its as-of window (130: the week ahead;
    26: within a trading day)."""
    reprediction_cooldown_minutes: int = Field(60, ge=0)
    """After a reprediction of a symbol, no other for the same symbol and cause within this many minutes."""
    max_repredictions_per_tick: int = Field(5, ge=1)
    """At most this many reprediction runs requested by one sensor tick."""
    retrain_max_model_age_days: int = Field(90, ge=1)
    """A model older than this is retrained (champion/challenger decides whether the candidate serves)."""
    retrain_min_validations: int = Field(500, ge=1)
    """Accuracy must be below ``alert_thresholds.model_accuracy_low`` over at least this many validations to retrain."""


ALERT_LEVEL_NAMES = ("INFO", "WARNING", "ERROR", "CRITICAL")
AlertLevel = Literal["INFO", "WARNING", "ERROR", "CRITICAL"]


class ConsoleChannelSettings(_Section):
    """Alert messages printed on the process's standard error (the Dagster daemon's log)."""

    enabled: bool = True
    min_level: AlertLevel = "WARNING"


class FileChannelSettings(_Section):
    """Alert messages appended as JSON lines, rotated by size."""

    enabled: bool = True
    min_level: AlertLevel = "INFO"
    path: str | None = None
    """Default ``alerts.jsonl`` beside the DuckDB file; a relative path is taken beside the DuckDB file."""
    max_bytes: int = Field(10_000_000, ge=1024)
    backup_count: int = Field(5, ge=0)


class WebhookChannelSettings(_Section):
    """Alert messages POSTed as JSON, signed with HMAC-SHA256 of the body under ``secret``."""

    enabled: bool = False
    min_level: AlertLevel = "WARNING"
    url: str | None = None
    secret: SecretStr | None = None
    """Env ``LSTM_PIPELINE_WEBHOOK_SECRET``; the signature header is ``X-LSTM-Pipeline-Signature: sha256=<hex>``."""
    timeout_seconds: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0)
    """Extra attempts within one delivery, with exponential backoff from ``backoff_seconds``."""
    backoff_seconds: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookChannelSettings:
        if self.enabled and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL when the webhook channel is enabled")
        return self


class EmailChannelSettings(_Section):
    """Alert messages sent by SMTP (``smtplib``), STARTTLS optional."""

    enabled: bool = False
    min_level: AlertLevel = "ERROR"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    """Env ``LSTM_PIPELINE_SMTP_PASSWORD``."""
    sender: str = "lstm-pipeline@localhost"
    recipients: tuple[str, ...] = ()
    timeout_seconds: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _recipients_when_enabled(self) -> EmailChannelSettings:
        if self.enabled and not self.recipients:
            raise ValueError("recipients must list at least one address when the email channel is enabled")
        return self


class AlertChannelSettings(_Section):
    """Where alerts are announced (issue #10), throttling, escalation and delivery retries."""

    throttle_minutes: float = Field(15.0, ge=0)
    """At most one message per alert_key and channel within this many minutes (0: no throttling)."""
    escalate_after_minutes: float = Field(60.0, gt=0)
    """An unresolved, unacknowledged WARNING becomes ERROR after this many minutes."""
    max_delivery_attempts: int = Field(5, ge=1)
    """Delivery passes that try a failed message before it is recorded as given up."""
    retry_after_seconds: float = Field(60.0, ge=0)
    """A failed delivery is retried after this, doubling with each attempt."""
    console: ConsoleChannelSettings = ConsoleChannelSettings()
    file: FileChannelSettings = FileChannelSettings()
    webhook: WebhookChannelSettings = WebhookChannelSettings()
    email: EmailChannelSettings = EmailChannelSettings()


class StorageSettings(_Section):
    """Where the pipeline's tables live (issue #15): the embedded DuckDB file ``db_path`` (default), or a PostgreSQL
    database that several run workers on several machines can write at once."""

    backend: Literal["duckdb", "postgres"] = "duckdb"
    postgres_url: SecretStr | None = None
    """``postgresql://USER:PASSWORD@HOST:5432/DATABASE``; a secret (it holds the password), never printed."""

    @field_validator("postgres_url")
    @classmethod
    def _postgres_url_form(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = postgres_url_problem(value.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _url_for_postgres(self) -> StorageSettings:
        if self.backend == "postgres" and self.postgres_url is None:
            raise ValueError(
                "backend 'postgres' needs storage.postgres_url; set it or export LSTM_PIPELINE_POSTGRES_URL="
                "postgresql://USER:PASSWORD@HOST:5432/DATABASE (or use backend 'duckdb')"
            )
        return self


def postgres_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable PostgreSQL URL (never echoing it: it may hold a password), or None."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        return "it must be a URL like postgresql://USER:PASSWORD@HOST:5432/DATABASE"
    try:
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        return "its port is not a number (postgresql://USER:PASSWORD@HOST:5432/DATABASE)"
    if not parts.path.strip("/"):
        return "it names no database (postgresql://USER:PASSWORD@HOST:5432/DATABASE)"
    return None


class BackupSettings(_Section):
    """Encrypted backups of the store (issue #10): where they go, the key, how many are kept."""

    dir: Path = Path("data/backups")
    """Relative paths resolve like ``db_path``."""
    key: SecretStr | None = None
    """Env ``LSTM_PIPELINE_BACKUP_KEY``: urlsafe base64 of 32 random bytes (AES-256-GCM)."""
    allow_unencrypted: bool = False
    """Without a key, write backups unencrypted (labelled so in their manifest) instead of refusing."""
    keep_daily: int = Field(7, ge=1)
    """Backup retention keeps the newest backup of each of the last this-many days that have one..."""
    keep_weekly: int = Field(4, ge=0)
    """...and of each of the last this-many ISO weeks; never a partition's only copy is deleted."""
    nightly_cron: str = "0 2 * * *"
    """When (New York time) the new and stale backup partitions are backed up."""
    include_models: bool = True
    """Also save each model version folder (``models/<SYMBOL>/``) once."""


class ExportSettings(_Section):
    """Exports of the chain's tables for people (issue #10)."""

    dir: Path = Path("data/exports")
    default_format: Literal["csv", "json", "excel", "parquet"] = "csv"
    schedule_cron: str = "30 17 * * 1-5"
    """When (New York time) the scheduled export of the day's windows runs."""


class RetentionSettings(_Section):
    """Maximum age in days per category; null keeps forever. Rows go only once a verified backup holds them."""

    raw_bars_days: int | None = Field(None, ge=1)
    predictions_days: int | None = Field(None, ge=1)
    """Predictions and trade recommendations."""
    validations_days: int | None = Field(None, ge=1)
    metrics_days: int | None = Field(None, ge=1)
    """Accuracy metrics and trade outcomes."""
    alerts_days: int | None = Field(None, ge=1)
    """Resolved alerts only; open alerts are kept."""
    monitoring_days: int | None = Field(None, ge=1)
    """system_metrics samples, by sample time (only full backups hold them)."""
    alert_deliveries_days: int | None = Field(None, ge=1)
    """alert_deliveries records sent or given up, by their last attempt (pending retries are kept)."""
    exports_days: int | None = Field(None, ge=1)
    backups_days: int | None = Field(None, ge=1)
    """Older backups go unless kept by backups.keep_daily / keep_weekly or holding a partition's only copy."""
    schedule_cron: str = "30 3 * * *"


class Settings(_Section):
    """The whole configuration. Keys follow the spec's ``realtime_config.json``; ``market_data`` is ours."""

    symbols: tuple[str, ...] = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA")
    update_interval: int = Field(15, ge=15)
    """Minutes between prediction updates; the market moves in 15-minute windows."""
    min_profit_percent: float = Field(2.0, ge=0, le=100)
    """Percent (2.0 means 2%), as the spec writes it."""
    validation_threshold: Fraction = 0.02
    confidence_threshold: Fraction = 0.6
    polygon_api_key: SecretStr | None = None
    db_path: Path = Path("data/lstm_pipeline.duckdb")
    models_dir: Path = Path("models")
    confidence_factor_weights: ConfidenceFactorWeights = ConfidenceFactorWeights()
    alert_thresholds: AlertThresholds = AlertThresholds()
    monitoring_intervals: dict[str, Minutes] = Field(default_factory=lambda: dict(DEFAULT_MONITORING_INTERVALS))
    """Category -> minutes; the file's entries replace the defaults of the same name, the others stay."""
    api: ApiSettings = ApiSettings()
    cache: CacheSettings = CacheSettings()
    market_data: MarketDataSettings = MarketDataSettings()
    workflow: WorkflowSettings = WorkflowSettings()
    storage: StorageSettings = StorageSettings()
    alert_channels: AlertChannelSettings = AlertChannelSettings()
    backups: BackupSettings = BackupSettings()
    exports: ExportSettings = ExportSettings()
    retention: RetentionSettings = RetentionSettings()

    _env_sources: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    @field_validator("update_interval")
    @classmethod
    def _whole_windows(cls, value: int) -> int:
        if value % 15 or value > SESSION_MINUTES:
            raise ValueError(
                f"it is in minutes (the spec's 15), a whole number of 15-minute windows up to one session "
                f"({SESSION_MINUTES})"
            )
        return value

    @field_validator("monitoring_intervals", mode="before")
    @classmethod
    def _merge_intervals(cls, value: Any) -> Any:
        if isinstance(value, dict):
            bad = sorted(str(name) for name in value if not _INTERVAL_NAME.match(str(name)))
            if bad:
                raise ValueError(f"{bad} are not category names (lower-case letters, digits and '_')")
            return {**DEFAULT_MONITORING_INTERVALS, **value}
        return value

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

    def env_variable_for(self, *key_path: str) -> str | None:
        """The environment variable that set ``key_path`` (e.g. ``"polygon_api_key"``), or None if it did not."""
        return self._env_sources.get(tuple(key_path))


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "POLYGON_API_KEY": ("polygon_api_key",),
    "LSTM_PIPELINE_SYMBOLS": ("symbols",),
    "LSTM_PIPELINE_DB_PATH": ("db_path",),
    "LSTM_PIPELINE_MODELS_DIR": ("models_dir",),
    "LSTM_PIPELINE_API_KEY": ("api", "api_key"),
    "LSTM_PIPELINE_API_HOST": ("api", "host"),
    "LSTM_PIPELINE_API_PORT": ("api", "port"),
    "LSTM_PIPELINE_MARKET_DATA_SOURCE": ("market_data", "source"),
    "LSTM_PIPELINE_DATA_FILE": ("market_data", "file_path"),
    "LSTM_PIPELINE_HISTORY_START": ("market_data", "history_start"),
    "LSTM_PIPELINE_STORAGE_BACKEND": ("storage", "backend"),
    "LSTM_PIPELINE_POSTGRES_URL": ("storage", "postgres_url"),
    "LSTM_PIPELINE_WEBHOOK_SECRET": ("alert_channels", "webhook", "secret"),
    "LSTM_PIPELINE_SMTP_PASSWORD": ("alert_channels", "email", "password"),
    "LSTM_PIPELINE_BACKUP_KEY": ("backups", "key"),
    "LSTM_PIPELINE_BACKUP_DIR": ("backups", "dir"),
    "LSTM_PIPELINE_EXPORT_DIR": ("exports", "dir"),
}
"""Environment variable -> config key path; the environment wins over the file."""

RENAMED_KEYS: dict[str, str] = {
    "confidence_factor_weights.model_accuracy": "rename it model_performance (the spec's ten weights replace four)",
    "confidence_factor_weights.volatility": "rename it market_volatility (the spec's ten weights replace four)",
    "confidence_factor_weights.volume": "rename it volume_analysis (the spec's ten weights replace four)",
    "alert_thresholds.prediction_error_pct": "rename it prediction_error_high and write a fraction (5.0 becomes 0.05)",
    "api.dagster_url": "remove it (it is no longer a setting)",
    "cache.ttl_seconds": "rename it ttl_minutes and give minutes",
    "cache.enabled": "replace it with enable_prediction_cache, enable_model_cache and enable_data_cache",
}
"""Keys of this project's earlier config format -> what replaced them, so an old file gets a useful hint."""

_SECRET_KEYS = frozenset({"polygon_api_key", "api_key", "secret", "password", "key"})
_SECTION_ERRORS = frozenset({"model_type", "dict_type", "model_attributes_type"})


def _describe(error: dict[str, Any], origin: str, env_sources: dict[tuple[str, ...], str]) -> str:
    loc = tuple(str(part) for part in error["loc"])
    where = ".".join(loc) or "(top level)"
    variable = next((var for path, var in env_sources.items() if loc[: len(path)] == path), None)
    if variable:
        origin = f"Environment variable {variable}"
    if error["type"] == "extra_forbidden":
        fix = RENAMED_KEYS.get(where, "remove it or check its spelling against the documented keys")
        return f"{origin}: unknown key '{where}'; {fix}."
    if error["type"] in _SECTION_ERRORS:
        # A section given as a string or list is never echoed: it may be a pasted secret.
        return f"{origin}: '{where}' must be a JSON object of settings, not {_kind(error.get('input'))}."
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    # Only numbers and booleans are echoed: a string may be (or contain) a secret, a list or object may hold one.
    echo = isinstance(value, int | float | bool) and not any(part in _SECRET_KEYS for part in loc)
    got = f" (got {value!r})" if echo else ""
    fix = f"; fix {variable}" if variable else ""
    return f"{origin}: '{where}' is invalid: {message}{got}{fix}."


def _kind(value: Any) -> str:
    kinds = {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _read_file(config_path: Path) -> dict[str, Any]:
    origin = f"Config file {config_path}"
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin} is not valid JSON ({exc.msg} at line {exc.lineno}); fix the syntax.") from exc
    except OSError as exc:
        raise ConfigError(f"{origin} cannot be read ({exc.strerror}); check its permissions.") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin} must hold a JSON object of settings, not {_kind(raw)}.")
    return raw


def _apply_overrides(raw: dict[str, Any], environ: dict[str, str], origin: str) -> dict[tuple[str, ...], str]:
    """Write the environment's values into ``raw``; returns which key paths they set (for messages and paths)."""
    applied: dict[tuple[str, ...], str] = {}
    for variable, key_path in ENV_OVERRIDES.items():
        value = environ.get(variable)
        if value is None or value == "":
            continue
        target = raw
        for depth, part in enumerate(key_path[:-1], start=1):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                section = ".".join(key_path[:depth])
                raise ConfigError(
                    f"{origin}: '{section}' must be a JSON object of settings, not {_kind(target)}, so {variable} "
                    f"cannot set {'.'.join(key_path)}; fix '{section}' in the file."
                )
        target[key_path[-1]] = value
        applied[key_path] = variable
    return applied


def _resolve_paths(settings: Settings, base_dir: Path, env_sources: dict[tuple[str, ...], str]) -> Settings:
    """Absolute paths by one rule: beside the config file for file values, the working directory for env ones."""

    def resolve(value: str | Path, key_path: tuple[str, ...]) -> Path:
        path = Path(value).expanduser()
        if path.is_absolute():
            return path.resolve()
        anchor = Path.cwd() if key_path in env_sources else base_dir
        return (anchor / path).resolve()

    file_path = settings.market_data.file_path
    market = settings.market_data
    if file_path:
        market = market.model_copy(update={"file_path": str(resolve(file_path, ("market_data", "file_path")))})
    return settings.model_copy(
        update={
            "db_path": resolve(settings.db_path, ("db_path",)),
            "models_dir": resolve(settings.models_dir, ("models_dir",)),
            "market_data": market,
            "backups": settings.backups.model_copy(update={"dir": resolve(settings.backups.dir, ("backups", "dir"))}),
            "exports": settings.exports.model_copy(update={"dir": resolve(settings.exports.dir, ("exports", "dir"))}),
            "api": settings.api.model_copy(update={
                name: str(resolve(value, ("api", name)))
                for name in ("tls_certfile", "tls_keyfile") if (value := getattr(settings.api, name))
            }),
        }
    )


def load_settings(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, override and validate the configuration; raise ``ConfigError`` with one sentence per problem.

    It touches no file but the config itself: whether ``db_path`` is writable and the bar folder exists is
    checked where the code location builds its resources (``lstm_pipeline.resources``).
    """
    environ = dict(os.environ if environ is None else environ)
    chosen = path or environ.get(CONFIG_ENV_VAR)
    raw: dict[str, Any] = {}
    base_dir = PROJECT_ROOT
    origin = "Built-in defaults"
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
        raw = _read_file(config_path)
        base_dir = config_path.resolve().parent

    env_sources = _apply_overrides(raw, environ, origin)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = " ".join(_describe(error, origin, env_sources) for error in exc.errors())
        raise ConfigError(problems) from None

    settings = _resolve_paths(settings, base_dir, env_sources)
    settings._env_sources = dict(env_sources)
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (per code-location load) from the environment and the config file.

    Partitions, resources, sensors and schedules take them from here instead of re-reading the file on every
    tick; tests that change the environment call ``get_settings.cache_clear()``.
    """
    return load_settings()
