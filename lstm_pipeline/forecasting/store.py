"""Model folders (``models/<SYMBOL>/``): save atomically, load with a health check, name every failure clearly.

Native layout: ``model_config.json`` (architecture, lookback, features, horizon, mode, training record, metrics,
intervals, version), ``model.keras`` (Keras 3 archive; only its weights are read, the network is rebuilt from the
config so nothing in the folder runs as code) and ``scaler.json``. The seed's layout also loads: ``model_config.json``
+ ``model_weights.h5`` + ``scaler.pkl``, the pickle only when the config says ``"allow_pickle": true``.

A model's ``version`` is a content hash over its config (without the version itself), weights and scaler bytes:
every prediction row records it, and a retrained model gets a new one. Loading recomputes it; a native folder whose
config records no version, or a version its files no longer hash to, is refused: nothing else ties the weights and
the scaler to the config that describes them (a config edited on purpose loads once its "version" entry is set to the
new content hash, which the refusal names). The seed's layout records no version and is checked only when it does.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lstm_pipeline.forecasting.config import ConfigProblem, ModelConfig, content_hash
from lstm_pipeline.forecasting.scaler import FeatureScaler, ScalerError, load_pickled_scaler

_T = TypeVar("_T")

if TYPE_CHECKING:
    import keras

    from lstm_pipeline.forecasting.forecaster import NetworkWeights

CONFIG_FILE = "model_config.json"
WEIGHTS_FILE = "model.keras"
SCALER_FILE = "scaler.json"
LEGACY_WEIGHTS_FILE = "model_weights.h5"
LEGACY_SCALER_FILE = "scaler.pkl"
PLOT_FILE = "forecast_vs_actual.png"


class ModelLoadError(RuntimeError):
    """A model folder cannot serve; one sentence naming the symbol, the file, what is wrong and the fix."""

    def __init__(self, symbol: str, path: Path | str, problem: str, fix: str) -> None:
        self.symbol = symbol
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"Model for {symbol}: {path} {problem}; {fix}.")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to forecast: config, scaler, the Keras network, its weights for the compiled forecaster."""

    symbol: str
    folder: Path
    config: ModelConfig
    scaler: FeatureScaler
    network: keras.Model
    weights: NetworkWeights
    version: str
    legacy: bool = False
    health: dict[str, Any] = field(default_factory=dict)


def _retrain(symbol: str) -> str:
    return f"retrain it (materialize lstm_model for partition {symbol}) or restore the folder from a backup"


def model_folder(models_dir: Path | str, symbol: str) -> Path:
    """Where a symbol's model lives."""
    return Path(models_dir) / symbol


CANDIDATES_DIR = ".candidates"
"""Folder under ``models_dir`` holding candidates that lost to the serving model: ``.candidates/<SYMBOL>/<version>/``.
The leading dot keeps it out of every symbol's folder and of the store's per-symbol lookups."""


def candidate_folder(models_dir: Path | str, symbol: str, version: str) -> Path:
    """Where a candidate kept aside by champion/challenger lives."""
    return Path(models_dir) / CANDIDATES_DIR / symbol / version


def _read_config(folder: Path, symbol: str, legacy: bool) -> tuple[ModelConfig, bytes]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(symbol, path, "is missing", _retrain(symbol))
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"is not valid JSON ({exc})"
        raise ModelLoadError(symbol, path, problem, "fix the syntax or " + _retrain(symbol)) from exc
    try:
        config = ModelConfig.from_dict(document, symbol, legacy=legacy)
    except ConfigProblem as exc:
        raise ModelLoadError(symbol, path, f"is invalid: {exc}", "fix the file or " + _retrain(symbol)) from exc
    if isinstance(document, dict):
        document = {key: value for key, value in document.items() if key != "version"}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()
    return config, canonical


def folder_layout(folder: Path | str, symbol: str) -> str:
    """``"native"`` or ``"legacy"``; ``ModelLoadError`` when the folder holds neither layout."""
    folder = Path(folder)
    if (folder / WEIGHTS_FILE).is_file() or (folder / SCALER_FILE).is_file():
        return "native"
    if (folder / LEGACY_WEIGHTS_FILE).is_file() or (folder / LEGACY_SCALER_FILE).is_file():
        return "legacy"
    if not folder.is_dir():
        raise ModelLoadError(symbol, folder, "does not exist", f"train {symbol} first (materialize lstm_model for it)")
    raise ModelLoadError(
        symbol,
        folder,
        f"holds no model ({WEIGHTS_FILE} + {SCALER_FILE}, or the seed's {LEGACY_WEIGHTS_FILE} + {LEGACY_SCALER_FILE})",
        _retrain(symbol),
    )


def _weights_path(folder: Path, symbol: str, layout: str) -> Path:
    path = folder / (WEIGHTS_FILE if layout == "native" else LEGACY_WEIGHTS_FILE)
    if not path.is_file():
        raise ModelLoadError(symbol, path, "is missing", _retrain(symbol))
    return path


def _read_scaler(folder: Path, symbol: str, config: ModelConfig, layout: str) -> tuple[FeatureScaler, bytes]:
    path = _scaler_path(folder, symbol, layout)
    data = path.read_bytes()
    if path.name == LEGACY_SCALER_FILE:
        if not config.allow_pickle:
            raise ModelLoadError(
                symbol,
                path,
                f"is a pickle, which can run code when loaded, and {CONFIG_FILE} does not allow pickle",
                f'set "allow_pickle": true in {folder / CONFIG_FILE} if you trust this file, or retrain {symbol} '
                f"to get a {SCALER_FILE}",
            )
        try:
            return load_pickled_scaler(data, config.features), data
        except ScalerError as exc:
            raise ModelLoadError(symbol, path, f"is unusable: {exc}", _retrain(symbol)) from exc
    try:
        scaler = FeatureScaler.from_json(data.decode("utf-8", errors="replace"))
    except ScalerError as exc:
        raise ModelLoadError(symbol, path, f"is unreadable: {exc}", _retrain(symbol)) from exc
    if scaler.features != config.features:
        raise ModelLoadError(
            symbol,
            path,
            f"scales the features {list(scaler.features)} but {CONFIG_FILE} lists {list(config.features)}",
            _retrain(symbol),
        )
    return scaler, data


def _scaler_path(folder: Path, symbol: str, layout: str) -> Path:
    if (folder / SCALER_FILE).is_file():
        return folder / SCALER_FILE
    if layout == "legacy" and (folder / LEGACY_SCALER_FILE).is_file():
        return folder / LEGACY_SCALER_FILE
    missing = folder / (SCALER_FILE if layout == "native" else LEGACY_SCALER_FILE)
    raise ModelLoadError(symbol, missing, "is missing: the model cannot scale its inputs without it", _retrain(symbol))


def _recorded_input_shape(path: Path) -> tuple[int, int] | None:
    """The (lookback, features) input shape a weights file records about itself, if it records one."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                document = json.loads(archive.read("config.json"))
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
                if raw is None:
                    return None
                document = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except Exception:  # unreadable files are diagnosed by the weight load itself
        return None
    shape = _find_batch_shape(document)
    if shape is None or len(shape) != 3 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def _find_batch_shape(node: Any) -> list[Any] | None:
    if isinstance(node, dict):
        for key in ("batch_shape", "batch_input_shape"):
            if isinstance(node.get(key), list):
                return node[key]
        for value in node.values():
            found = _find_batch_shape(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_batch_shape(value)
            if found is not None:
                return found
    return None


def _load_weights(network: keras.Model, path: Path, symbol: str) -> None:
    try:
        network.load_weights(str(path))
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise ModelLoadError(
            symbol, path, f"is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)})", _retrain(symbol)
        ) from exc
    except ValueError as exc:
        raise ModelLoadError(
            symbol,
            path,
            f"does not fit the architecture declared in {CONFIG_FILE} ({_first_line(exc)})",
            f"restore the {CONFIG_FILE} these weights were saved with, or " + _retrain(symbol),
        ) from exc
    except Exception as exc:  # h5py and zip readers raise many kinds on damaged files
        raise ModelLoadError(
            symbol, path, f"cannot be read ({type(exc).__name__}: {_first_line(exc)})", _retrain(symbol)
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    shapes = [part for part in text.split(". ") if "shape" in part.lower()]
    detail = shapes[0] if shapes else text
    return detail[:300]


def health_check(model: LoadedModel) -> dict[str, Any]:
    """Run a fixed probe window through the network: the input shape matches the config, outputs are finite and of
    the declared width. Raises ``ModelLoadError``; returns what was checked (for metadata and logs)."""
    config, network = model.config, model.network
    path = model.folder / (LEGACY_WEIGHTS_FILE if model.legacy else WEIGHTS_FILE)
    expected_input = (config.lookback_steps, config.n_features)
    actual_input = tuple(network.input_shape[1:])
    if actual_input != expected_input:
        problem = f"takes input windows of shape {actual_input}, not {expected_input}"
        raise ModelLoadError(model.symbol, path, problem, _retrain(model.symbol))
    probe = np.random.default_rng(0).standard_normal((2, *expected_input)).astype(np.float32)
    output = np.asarray(network(probe, training=False))
    if output.shape != (2, config.n_outputs):
        raise ModelLoadError(
            model.symbol,
            path,
            f"emits outputs of shape {output.shape[1:]} for a probe window, not ({config.n_outputs},)",
            _retrain(model.symbol),
        )
    if not np.isfinite(output).all():
        raise ModelLoadError(
            model.symbol, path, "gives non-finite outputs on a probe window (its weights hold NaN or inf)",
            _retrain(model.symbol),
        )
    return {"input_shape": list(actual_input), "outputs": config.n_outputs, "probe_finite": True}


def read_config_record(folder: Path | str, symbol: str) -> dict[str, Any]:
    """A model folder's ``model_config.json`` as written (version, mode, provenance, metrics), validated."""
    folder = Path(folder)
    layout = folder_layout(folder, symbol)
    _read_config(folder, symbol, legacy=layout == "legacy")
    document = json.loads((folder / CONFIG_FILE).read_text())
    return document if isinstance(document, dict) else {}


def content_version(folder: Path | str, symbol: str) -> str:
    """The content hash of a model folder's config (without its version), weights and scaler, whatever the config
    records; read without TensorFlow or unpickling."""
    folder = Path(folder)
    layout = folder_layout(folder, symbol)
    _, config_bytes = _read_config(folder, symbol, legacy=layout == "legacy")
    weights = _weights_path(folder, symbol, layout).read_bytes()
    return content_hash(config_bytes, weights, _scaler_path(folder, symbol, layout).read_bytes())


def model_version(folder: Path | str, symbol: str) -> str:
    """The verified version of a model folder (the store keys its cache on it): its content hash, which must equal
    the ``version`` its config records; ``ModelLoadError`` when the entry is missing or differs."""
    folder = Path(folder)
    layout = folder_layout(folder, symbol)
    config, _ = _read_config(folder, symbol, legacy=layout == "legacy")
    version = content_version(folder, symbol)
    _check_version(folder, symbol, config, version, legacy=layout == "legacy")
    return version


def _check_version(folder: Path, symbol: str, config: ModelConfig, version: str, legacy: bool) -> None:
    """A native folder must record the version its files hash to: nothing else ties the weights and the scaler to
    the config that describes them. The seed's layout records none and is checked only when it does."""
    path = folder / CONFIG_FILE
    acknowledge = f'; if you edited {CONFIG_FILE} on purpose, set its "version" to "{version}"'
    if config.version is None:
        if legacy:
            return
        raise ModelLoadError(
            symbol,
            path,
            'records no "version", so nothing ties the weights and scaler beside it to this config',
            _retrain(symbol) + acknowledge,
        )
    if config.version != version:
        raise ModelLoadError(
            symbol,
            folder,
            f"changed after it was saved (its files hash to {version} but {CONFIG_FILE} records version "
            f"{config.version})",
            _retrain(symbol) + acknowledge,
        )


SWAP_SETTLE_SECONDS = 5.0
"""How long a reader waits for a save in progress (``save_model`` swaps the new folder in with two renames: between
them the symbol has no folder, and a reader that started before the first may read files of both versions)."""


def swap_in_progress(models_dir: Path | str, symbol: str) -> bool:
    """Whether ``save_model`` is replacing the symbol's folder right now (its staging or retired folder exists)."""
    folder = Path(models_dir)
    return any(folder.glob(f".{symbol}.saving-*")) or any(folder.glob(f".{symbol}.replaced-*"))


def settled(read: Callable[[], _T], models_dir: Path | str, symbol: str,
            sleep: Callable[[float], None] = time.sleep, settle_seconds: float = SWAP_SETTLE_SECONDS) -> _T:
    """``read()`` of a model folder, tried again while a save is swapping the folder in: a model store shared by
    several workers (a shared folder) never fails a load because another worker saved a new version at that
    moment. Any other failure is raised at once."""
    waited = 0.0
    while True:
        try:
            return read()
        except ModelLoadError:
            if waited >= settle_seconds or not swap_in_progress(models_dir, symbol):
                raise
        sleep(0.05)
        waited += 0.05


def load_model(folder: Path | str, symbol: str | None = None) -> LoadedModel:
    """Load and health-check one model folder; every failure is a ``ModelLoadError``, never a bare traceback."""
    from lstm_pipeline.forecasting.forecaster import UnsupportedNetworkError, network_weights
    from lstm_pipeline.forecasting.network import build_network

    folder = Path(folder)
    symbol = symbol or folder.name
    layout = folder_layout(folder, symbol)
    legacy = layout == "legacy"
    config, config_bytes = _read_config(folder, symbol, legacy=legacy)
    scaler, scaler_bytes = _read_scaler(folder, symbol, config, layout)
    weights_path = _weights_path(folder, symbol, layout)
    weights_bytes = weights_path.read_bytes()
    version = content_hash(config_bytes, weights_bytes, scaler_bytes)
    recorded = _recorded_input_shape(weights_path)
    declared = (config.lookback_steps, config.n_features)
    if recorded is not None and recorded != declared:
        raise ModelLoadError(
            symbol,
            weights_path,
            f"was saved for input windows of shape {recorded} (lookback, features) but {CONFIG_FILE} declares "
            f"{declared}",
            f"restore lookback_steps and features in {folder / CONFIG_FILE} or " + _retrain(symbol),
        )
    network = build_network(config)
    _load_weights(network, weights_path, symbol)
    _check_version(folder, symbol, config, version, legacy)  # after the load, which names a damaged file better
    try:
        weights = network_weights(network)
    except UnsupportedNetworkError as exc:
        raise ModelLoadError(symbol, folder / CONFIG_FILE, f"declares a network the forecaster cannot run: {exc}",
                             _retrain(symbol)) from exc
    model = LoadedModel(
        symbol=symbol, folder=folder, config=config, scaler=scaler, network=network, weights=weights,
        version=version, legacy=legacy,
    )
    return replace(model, health=health_check(model))


def _without_optimizer(config: ModelConfig, network: keras.Model) -> keras.Model:
    """A copy of the network with its weights but no training state: the optimizer's moments would triple the file
    and are not needed to forecast (retraining starts afresh)."""
    from lstm_pipeline.forecasting.network import build_network

    clean = build_network(config)
    clean.set_weights(network.get_weights())
    return clean


def save_model(
    models_dir: Path | str,
    config: ModelConfig,
    network: keras.Model,
    scaler: FeatureScaler,
    extra_files: Mapping[str, bytes] | None = None,
) -> tuple[Path, str]:
    """Write ``models_dir/<symbol>/`` atomically; returns (folder, version).

    Everything is written into a temporary sibling folder first and swapped in by rename, so a crash mid-save
    leaves the previous model (or none), never a half-written one.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    symbol = config.symbol
    staging = models_dir / f".{symbol}.saving-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        scaler_bytes = scaler.to_json().encode()
        (staging / SCALER_FILE).write_bytes(scaler_bytes)
        _without_optimizer(config, network).save(str(staging / WEIGHTS_FILE))
        weights_bytes = (staging / WEIGHTS_FILE).read_bytes()
        unversioned = json.loads(config.content_bytes())
        version = content_hash(
            json.dumps(unversioned, sort_keys=True, separators=(",", ":"), default=str).encode(),
            weights_bytes,
            scaler_bytes,
        )
        document = {**config.to_dict(), "version": version}
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2, default=str) + "\n")
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        for path in staging.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        target = model_folder(models_dir, symbol)
        retired = models_dir / f".{symbol}.replaced-{uuid.uuid4().hex[:8]}"
        if target.exists():
            target.rename(retired)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return target, version


def save_candidate(
    models_dir: Path | str,
    config: ModelConfig,
    network: keras.Model,
    scaler: FeatureScaler,
    extra_files: Mapping[str, bytes] | None = None,
) -> tuple[Path, str]:
    """Save a model aside as ``models_dir/.candidates/<symbol>/<version>/`` (same files and hash as ``save_model``;
    the serving folder is untouched); returns (folder, version). ``load_model(folder, symbol)`` loads it."""
    staging_root = Path(models_dir) / CANDIDATES_DIR / f".{config.symbol}.saving-{uuid.uuid4().hex[:8]}"
    try:
        saved, version = save_model(staging_root, config, network, scaler, extra_files)
        target = candidate_folder(models_dir, config.symbol, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)  # the same content saved before: identical files
        saved.rename(target)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return target, version
