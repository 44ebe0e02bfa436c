"""``model_config.json``: what a model folder declares about its network, its inputs, its mode and its record.

The config is the source of truth for the architecture: the network is rebuilt from it and the weights file only
supplies numbers, so nothing in a model folder is deserialised as code. The seed's config used other key names;
``ModelConfig.from_dict(..., legacy=True)`` accepts those aliases (see docs/forecasting.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lstm_pipeline.forecasting.features import (
    CALENDAR_FEATURES,
    DEFAULT_FEATURES,
    DEFAULT_RECURSIVE_OUTPUTS,
    KNOWN_FEATURES,
    LOG_RETURN,
)

MODEL_FORMAT = "lstm_pipeline.model/1"
ForecastMode = Literal["recursive", "direct"]
FORECAST_MODES: tuple[str, ...] = ("recursive", "direct")
DENSE_ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "tanh", "sigmoid")

_CORE_KEYS = (
    "format",
    "symbol",
    "version",
    "forecast_mode",
    "lookback_steps",
    "features",
    "output_features",
    "horizon_steps",
    "architecture",
    "allow_pickle",
)
_LEGACY_ALIASES: dict[str, tuple[str, ...]] = {
    "lookback_steps": ("lookback_steps", "lookback", "sequence_length", "seq_length", "window_size", "time_steps"),
    "features": ("features", "feature_columns", "feature_names"),
    "horizon_steps": ("horizon_steps", "prediction_horizon", "forecast_horizon", "horizon", "prediction_steps"),
    "output_features": ("output_features", "target_features", "targets", "target"),
    "lstm_units": ("lstm_units", "units", "hidden_units"),
    "lstm_layers": ("lstm_layers", "num_layers", "n_layers"),
    "dense_units": ("dense_units",),
}
"""Key names the seed's ``model_config.json`` may use for each setting (first match wins)."""


class ConfigProblem(ValueError):
    """``model_config.json`` is unusable; the store adds the symbol, the file and the fix."""


@dataclass(frozen=True)
class ModelConfig:
    """The network and forecasting settings of one symbol's model, plus its record (training, metrics, intervals).

    ``output_features``: in recursive mode, the features the network emits for the next step (fed back; the
    calendar features of the next window are known, and any other input is held at its last observed value); in
    direct mode, the one feature whose next ``horizon_steps`` values the network emits in one pass.
    """

    symbol: str
    forecast_mode: ForecastMode
    lookback_steps: int
    features: tuple[str, ...]
    output_features: tuple[str, ...]
    horizon_steps: int
    lstm_units: tuple[int, ...]
    dense_units: tuple[int, ...] = ()
    dense_activation: str = "relu"
    dropout: float = 0.0
    allow_pickle: bool = False
    version: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    """Everything else in the file (training span, metrics, intervals, mode selection), kept as written."""

    def __post_init__(self) -> None:
        if self.forecast_mode not in FORECAST_MODES:
            raise ConfigProblem(f"forecast_mode is {self.forecast_mode!r}; it must be 'recursive' or 'direct'")
        if self.lookback_steps < 1 or self.horizon_steps < 1:
            raise ConfigProblem("lookback_steps and horizon_steps must be positive integers")
        if not self.features:
            raise ConfigProblem("features is empty; list the model's input features in column order")
        unknown = [name for name in self.features if name not in KNOWN_FEATURES]
        if unknown:
            raise ConfigProblem(f"features lists unknown feature(s) {unknown}; known: {sorted(KNOWN_FEATURES)}")
        if not self.lstm_units or any(units < 1 for units in self.lstm_units):
            raise ConfigProblem("architecture.lstm_units must list at least one positive layer width")
        if self.dense_activation not in DENSE_ACTIVATIONS:
            raise ConfigProblem(f"architecture.dense_activation must be one of {list(DENSE_ACTIVATIONS)}")
        missing = [name for name in self.output_features if name not in self.features]
        if missing or not self.output_features:
            raise ConfigProblem(f"output_features {list(self.output_features)} must be a non-empty subset of features")
        if self.forecast_mode == "direct" and len(self.output_features) != 1:
            raise ConfigProblem("a direct model emits one feature over the horizon; list exactly one output_feature")

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_outputs(self) -> int:
        """Width of the network's last layer."""
        return len(self.output_features) if self.forecast_mode == "recursive" else self.horizon_steps

    @property
    def held_features(self) -> tuple[str, ...]:
        """Inputs a recursive forecast neither predicts nor knows from the calendar: held at their last value."""
        if self.forecast_mode != "recursive":
            return ()
        return tuple(
            name for name in self.features if name not in self.output_features and name not in CALENDAR_FEATURES
        )

    @property
    def price_feature(self) -> str:
        """The emitted feature that forecast prices are rebuilt from: ``log_return`` if emitted, else ``close``."""
        if LOG_RETURN in self.output_features:
            return LOG_RETURN
        if "close" in self.output_features:
            return "close"
        raise ConfigProblem("output_features contain neither log_return nor close, so no price can be forecast")

    @property
    def architecture_key(self) -> tuple[Any, ...]:
        """Models with equal keys run in one batched compiled forecast (their weights differ, their shapes not)."""
        return (
            self.forecast_mode,
            self.lookback_steps,
            self.n_features,
            self.lstm_units,
            self.dense_units,
            self.dense_activation,
            self.n_outputs,
            tuple(self.features.index(name) for name in self.output_features),
        )

    @property
    def intervals(self) -> dict[str, Any]:
        """The conformal interval record (``coverage`` and per-step ``halfwidth_log_price``), or empty."""
        return dict(self.record.get("intervals") or {})

    def with_record(self, **updates: Any) -> ModelConfig:
        """A copy with record entries added or replaced."""
        return replace(self, record={**self.record, **updates})

    def to_dict(self) -> dict[str, Any]:
        """The ``model_config.json`` document (the record's keys follow the core keys)."""
        core: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "symbol": self.symbol,
            "version": self.version,
            "forecast_mode": self.forecast_mode,
            "lookback_steps": self.lookback_steps,
            "features": list(self.features),
            "output_features": list(self.output_features),
            "horizon_steps": self.horizon_steps,
            "architecture": {
                "type": "stacked_lstm",
                "lstm_units": list(self.lstm_units),
                "dense_units": list(self.dense_units),
                "dense_activation": self.dense_activation,
                "dropout": self.dropout,
            },
            "allow_pickle": self.allow_pickle,
        }
        return {**core, **{key: value for key, value in self.record.items() if key not in core}}

    def content_bytes(self) -> bytes:
        """Canonical bytes of the config without its ``version``: what the content hash covers."""
        document = self.to_dict()
        document.pop("version", None)
        return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], symbol: str, legacy: bool = False) -> ModelConfig:
        """Parse ``model_config.json``; ``legacy`` accepts the seed's key names and defaults (recursive, 672 steps)."""
        if not isinstance(document, Mapping):
            raise ConfigProblem(f"it holds a JSON {type(document).__name__}, not an object")
        if legacy:
            return _from_legacy(document, symbol)
        if document.get("format") != MODEL_FORMAT:
            raise ConfigProblem(f"its format is {document.get('format')!r}, not {MODEL_FORMAT!r}")
        try:
            architecture = document["architecture"]
            return cls(
                symbol=str(document.get("symbol") or symbol),
                forecast_mode=document["forecast_mode"],
                lookback_steps=int(document["lookback_steps"]),
                features=tuple(document["features"]),
                output_features=tuple(document["output_features"]),
                horizon_steps=int(document["horizon_steps"]),
                lstm_units=tuple(int(units) for units in architecture["lstm_units"]),
                dense_units=tuple(int(units) for units in architecture.get("dense_units", ())),
                dense_activation=str(architecture.get("dense_activation", "relu")),
                dropout=float(architecture.get("dropout", 0.0)),
                allow_pickle=bool(document.get("allow_pickle", False)),
                version=document.get("version"),
                record={key: value for key, value in document.items() if key not in _CORE_KEYS},
            )
        except KeyError as exc:
            raise ConfigProblem(f"it lacks the key {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigProblem):
                raise
            raise ConfigProblem(f"a value has the wrong type ({exc})") from exc


def _first(document: Mapping[str, Any], setting: str, default: Any = None) -> Any:
    for key in _LEGACY_ALIASES[setting]:
        if key in document and document[key] is not None:
            return document[key]
        architecture = document.get("architecture")
        if isinstance(architecture, Mapping) and key in architecture:
            return architecture[key]
    return default


def _from_legacy(document: Mapping[str, Any], symbol: str) -> ModelConfig:
    features = _first(document, "features")
    lookback = _first(document, "lookback_steps")
    if not features or lookback is None:
        names = ", ".join(_LEGACY_ALIASES["features"][:1] + _LEGACY_ALIASES["lookback_steps"][:3])
        raise ConfigProblem(f"it does not name the input features and the lookback (keys such as {names})")
    if isinstance(features, str):
        features = [features]
    units = _first(document, "lstm_units", [50, 50])
    if isinstance(units, int):
        units = [units] * int(_first(document, "lstm_layers", 2))
    outputs = _first(document, "output_features", list(features))
    if isinstance(outputs, str):
        outputs = [outputs]
    dense = _first(document, "dense_units", [])
    if isinstance(dense, int):
        dense = [dense]
    try:
        return ModelConfig(
            symbol=str(document.get("symbol") or symbol),
            forecast_mode=document.get("forecast_mode", "recursive"),
            lookback_steps=int(lookback),
            features=tuple(str(name).lower() for name in features),
            output_features=tuple(str(name).lower() for name in outputs),
            horizon_steps=int(_first(document, "horizon_steps", 672)),
            lstm_units=tuple(int(value) for value in units),
            dense_units=tuple(int(value) for value in dense),
            dense_activation=str(document.get("dense_activation", "linear")),
            dropout=float(document.get("dropout", 0.0)),
            allow_pickle=bool(document.get("allow_pickle", False)),
            version=document.get("version"),
            record={key: value for key, value in document.items() if key not in _CORE_KEYS},
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigProblem):
            raise
        raise ConfigProblem(f"a value has the wrong type ({exc})") from exc


def default_config(
    symbol: str,
    forecast_mode: ForecastMode,
    lookback_steps: int = 48,
    horizon_steps: int = 130,
    lstm_units: Sequence[int] = (32, 32),
    dropout: float = 0.0,
    features: Sequence[str] = DEFAULT_FEATURES,
) -> ModelConfig:
    """The project's own model: return features in, next returns out (recursive: every non-calendar feature)."""
    outputs = DEFAULT_RECURSIVE_OUTPUTS if forecast_mode == "recursive" else (LOG_RETURN,)
    return ModelConfig(
        symbol=symbol,
        forecast_mode=forecast_mode,
        lookback_steps=lookback_steps,
        features=tuple(features),
        output_features=tuple(name for name in outputs if name in features),
        horizon_steps=horizon_steps,
        lstm_units=tuple(lstm_units),
        dropout=dropout,
    )


def content_hash(*parts: bytes) -> str:
    """Short SHA-256 over the given byte strings, each length-prefixed so that boundaries count."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]
