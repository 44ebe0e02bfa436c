"""Fixtures of the operations tests: settings on temporary folders with a backup key, a store with chain rows."""

from __future__ import annotations

import json

import pytest

from lstm_pipeline.operations.crypto import generate_key
from lstm_pipeline.settings import get_settings, load_settings
from tests.operations.synthetic import chain_rows, windows, write_chain

SYMBOLS = ("AAPL", "MSFT")


@pytest.fixture
def backup_key() -> str:
    return generate_key()


@pytest.fixture
def make_settings(tmp_path, backup_key):
    """Settings on ``tmp_path`` (store, backups, exports) with the given config sections merged in."""

    def make(key: str | None = "default", **sections):
        config = {
            "symbols": list(SYMBOLS),
            "db_path": str(tmp_path / "store.duckdb"),
            "models_dir": str(tmp_path / "models"),
            "backups": {"dir": str(tmp_path / "backups"), **sections.pop("backups", {})},
            "exports": {"dir": str(tmp_path / "exports"), **sections.pop("exports", {})},
            **sections,
        }
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        environ = {} if key is None else {"LSTM_PIPELINE_BACKUP_KEY": backup_key if key == "default" else key}
        return load_settings(path, environ)

    return make


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def day_windows():
    """The 26 session windows of 2025-01-02 and the 26 of 2025-01-03."""
    return windows("2025-01-02", "2025-01-04")


@pytest.fixture
def populated(settings, day_windows):
    """The store of ``settings`` with rows in every chain table for AAPL and MSFT over two sessions."""
    rows = chain_rows(SYMBOLS, day_windows)
    write_chain(settings.db_path, rows)
    return rows


@pytest.fixture
def env_settings(monkeypatch, tmp_path, backup_key):
    """Point the process settings (``get_settings``, what assets read) at ``tmp_path``; restored afterwards."""
    monkeypatch.setenv("LSTM_PIPELINE_BACKUP_KEY", backup_key)
    monkeypatch.setenv("LSTM_PIPELINE_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("LSTM_PIPELINE_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("LSTM_PIPELINE_DB_PATH", str(tmp_path / "store.duckdb"))
    monkeypatch.setenv("LSTM_PIPELINE_MODELS_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
