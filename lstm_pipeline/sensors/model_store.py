"""The model-store sensor: shows models that reached ``models/`` without a run as ``lstm_model`` materializations.

The project ships pre-trained models, and ``scripts/train_default_models.py`` or a copied-in folder can change one
outside Dagster. Without this sensor the asset graph would call ``lstm_model`` "never materialized" while every
symbol has a model that serves. Each tick hashes each configured symbol's folder (no TensorFlow: the content hash
reads bytes only) and, for a version Dagster has not recorded, reports a runless materialization of that symbol's
partition carrying the version and the test metrics from its ``model_config.json``. A version a training run
already recorded is not reported again; a folder whose files no longer match the version its config records (edited
or damaged after saving) is not reported at all, and the tick says why.
"""

import json

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from lstm_pipeline.forecasting.store import ModelLoadError
from lstm_pipeline.resources.model_store import ModelStore
from lstm_pipeline.settings import Settings

LSTM_MODEL = AssetKey("lstm_model")
DATA_VERSION_TAG = "dagster/data_version"


def recorded_version(context: SensorEvaluationContext, symbol: str) -> str | None:
    """The model version of the latest ``lstm_model`` materialization of ``symbol`` (a run's or this sensor's)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=LSTM_MODEL, asset_partitions=[symbol]), limit=1
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    entry = materialization.metadata.get("model_version") if materialization else None
    return str(entry.value) if entry is not None else None


def found_model_event(symbol: str, version: str, record: dict, location: str) -> AssetMaterialization:
    """The materialization that stands for a model found in the store, with what its config says about it."""
    metadata: dict[str, object] = {
        "model_version": MetadataValue.text(version),
        "model_location": MetadataValue.path(location),
        "forecast_mode": MetadataValue.text(str(record.get("forecast_mode", "unknown"))),
        "trained_on": MetadataValue.text(str(record.get("trained_on", "unknown"))),
    }
    horizons = (record.get("metrics") or {}).get("horizons") or {}
    for name, values in horizons.items():
        if isinstance(values, dict) and isinstance(values.get("mase"), int | float):
            metadata[f"test_{name}_mase"] = MetadataValue.float(round(float(values["mase"]), 6))
    return AssetMaterialization(
        asset_key=LSTM_MODEL,
        partition=symbol,
        description=f"Found in the model store at {location}, not trained by a Dagster run (shipped with the "
        "project, or written by scripts/train_default_models.py or a copy).",
        metadata=metadata,
        tags={DATA_VERSION_TAG: version},
    )


def build_model_store_sensor(settings: Settings) -> SensorDefinition:
    """The model-store sensor for the configured symbols (built once per code-location load)."""
    symbols = list(settings.symbols)

    @sensor(
        name="model_store_sensor",
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Records models that reached models/<SYMBOL>/ without a run (the shipped ones, script retrains) "
        "as lstm_model materializations, so the asset graph shows what actually serves.",
    )
    def model_store_sensor(context: SensorEvaluationContext, model_store: ModelStore) -> SensorResult:
        return record_found_models(context, model_store, symbols)

    return model_store_sensor


def record_found_models(context: SensorEvaluationContext, model_store: ModelStore, symbols: list[str]) -> SensorResult:
    """One tick: a runless materialization for each symbol whose intact model version Dagster has not recorded."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    events: list[AssetMaterialization] = []
    problems: list[str] = []
    for symbol in symbols:
        try:
            version = model_store.version(symbol)
            if seen.get(symbol) == version:
                continue  # the common tick: nothing changed, nothing more to read
            record = model_store.recorded_config(symbol)
        except ModelLoadError as exc:
            problems.append(str(exc))
            continue
        declared = record.get("version")
        if declared is not None and declared != version:
            problems.append(
                f"Model for {symbol}: {model_store.location(symbol)} hashes to {version} but its config records "
                f"{declared}; its files changed after saving, so it is not recorded (retrain it)."
            )
            continue
        if recorded_version(context, symbol) != version:
            events.append(found_model_event(symbol, version, record, model_store.location(symbol)))
        seen[symbol] = version
    for problem in problems:
        context.log.warning(problem)
    skip = None
    if not events:
        skip = "Every stored model is already recorded." + (" Not recorded: " + " ".join(problems) if problems else "")
    return SensorResult(asset_events=events, cursor=json.dumps(seen, sort_keys=True), skip_reason=skip)
