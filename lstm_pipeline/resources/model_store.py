"""The model store: where each symbol's LSTM lives, loaded once, health-checked, and refused clearly when broken.

``ModelStore`` is abstract (a remote store, say object storage, would subclass it); ``LocalModelStore`` keeps one
folder per symbol under ``models_dir`` (``models/<SYMBOL>/``, see ``lstm_pipeline.forecasting.store``); candidates
that lost to the serving model are kept aside in ``models/.candidates/<SYMBOL>/<version>/``, which no load reads. Loaded
models are cached per process, keyed by the folder and its content hash: a retrained model has a new hash and is
picked up on the next load, an unchanged one is never loaded twice. TensorFlow is imported only when a model is
actually loaded, never when Dagster loads the definitions.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from lstm_pipeline.forecasting.store import ModelLoadError, content_version, model_folder, model_version, settled

if TYPE_CHECKING:
    from lstm_pipeline.forecasting.store import LoadedModel
    from lstm_pipeline.forecasting.training import TrainedModel

_CACHE: dict[tuple[str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


class ModelStore(ConfigurableResource, ABC):
    """Loads and saves per-symbol forecasting models."""

    @abstractmethod
    def load(self, symbol: str) -> LoadedModel:
        """The symbol's model, health-checked; ``ModelLoadError`` (one clear sentence) when it cannot serve."""

    @abstractmethod
    def save(self, trained: TrainedModel) -> tuple[str, str]:
        """Store a trained model atomically; returns (where it was written, its version)."""

    @abstractmethod
    def save_candidate(self, trained: TrainedModel) -> tuple[str, str]:
        """Keep a trained model aside without serving it (champion/challenger rejected it); returns (where, version).
        Loads and versions of the symbol never see it."""

    @abstractmethod
    def version(self, symbol: str) -> str:
        """The content hash of the stored model, without loading it; ``ModelLoadError`` when its config records no
        version or another one (the folder changed after saving)."""

    @abstractmethod
    def recorded_config(self, symbol: str) -> dict:
        """The symbol's ``model_config.json`` as stored (version, mode, provenance, metrics), without loading it."""

    @abstractmethod
    def location(self, symbol: str) -> str:
        """Where the symbol's model is (shown in metadata and errors)."""

    def load_available(self, symbols: Iterable[str]) -> tuple[dict[str, LoadedModel], dict[str, ModelLoadError]]:
        """Every symbol's model that loads, and the error of each that does not: callers skip those symbols and
        raise an alert with the error's sentence, never forecasting them with anything invented."""
        loaded: dict[str, LoadedModel] = {}
        failed: dict[str, ModelLoadError] = {}
        for symbol in symbols:
            try:
                loaded[symbol] = self.load(symbol)
            except ModelLoadError as exc:
                failed[symbol] = exc
        return loaded, failed


class LocalModelStore(ModelStore):
    """Models in folders on the local disk: ``<models_dir>/<SYMBOL>/``."""

    models_dir: str = Field(description="Folder holding one sub-folder per symbol (the project ships models/).")

    def location(self, symbol: str) -> str:
        return str(model_folder(self.models_dir, symbol))

    def version(self, symbol: str) -> str:
        return settled(lambda: model_version(model_folder(self.models_dir, symbol), symbol), self.models_dir, symbol)

    def recorded_config(self, symbol: str) -> dict:
        from lstm_pipeline.forecasting.store import read_config_record

        return read_config_record(model_folder(self.models_dir, symbol), symbol)

    def load(self, symbol: str) -> LoadedModel:
        from lstm_pipeline.forecasting.store import load_model

        folder = model_folder(self.models_dir, symbol)

        def read() -> tuple[tuple[str, str], LoadedModel]:
            # Keyed on the files' hash; load_model refuses a folder whose config does not record that hash.
            key = (str(Path(folder).resolve()), content_version(folder, symbol))
            with _CACHE_LOCK:
                cached = _CACHE.get(key)
            return key, cached if cached is not None else load_model(folder, symbol)

        # A save by another worker sharing the folder may be swapping it in right now: wait for it to settle.
        key, model = settled(read, self.models_dir, symbol)
        with _CACHE_LOCK:
            for stale in [entry for entry in _CACHE if entry[0] == key[0]]:
                del _CACHE[stale]  # an older version of the same folder
            _CACHE[(key[0], model.version)] = model
        return model

    def save(self, trained: TrainedModel) -> tuple[str, str]:
        from lstm_pipeline.forecasting.store import PLOT_FILE, save_model

        folder, version = save_model(
            self.models_dir, trained.config, trained.network, trained.scaler, {PLOT_FILE: trained.plot_png}
        )
        return str(folder), version

    def save_candidate(self, trained: TrainedModel) -> tuple[str, str]:
        from lstm_pipeline.forecasting.store import PLOT_FILE, save_candidate

        folder, version = save_candidate(
            self.models_dir, trained.config, trained.network, trained.scaler, {PLOT_FILE: trained.plot_png}
        )
        return str(folder), version


def cached_versions() -> list[tuple[str, str]]:
    """(folder, version) of every model held in this process's cache (for tests and diagnostics)."""
    with _CACHE_LOCK:
        return sorted(_CACHE)


def clear_model_cache() -> None:
    """Forget every cached model (the next load reads the folders again)."""
    with _CACHE_LOCK:
        _CACHE.clear()
