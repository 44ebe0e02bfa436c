"""Backups, exports and retention work on the PostgreSQL backend too: they read and write only through the storage
layer's public methods. Restore swaps DuckDB files, so on PostgreSQL it refuses in one sentence."""

import pandas as pd
import pytest

from lstm_pipeline.operations.backups import create_backup, load_backup, verify_backup
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.exports import create_export, read_export, verify_export
from lstm_pipeline.operations.restore import restore
from lstm_pipeline.operations.retention import apply_retention, plan_retention, pruned
from lstm_pipeline.storage import TABLES, database_for
from tests.operations.conftest import SYMBOLS
from tests.operations.synthetic import chain_rows

NOW = pd.Timestamp("2025-01-10 12:00", tz="UTC")


@pytest.fixture
def pg_settings(make_settings, postgres_url, day_windows):
    settings = make_settings(storage={"backend": "postgres", "postgres_url": postgres_url},
                             retention={"raw_bars_days": 7})
    rows = chain_rows(SYMBOLS, day_windows)
    database_for(settings).replace_tables(
        {name: (frame[list(TABLES[name].partition)].drop_duplicates(), frame) for name, frame in rows.items()}
    )
    return settings


def test_backup_verify_export_and_retention_on_postgres(pg_settings, day_windows):
    store = database_for(pg_settings)
    stored_bars = store.read_rows("market_bars")
    backup = create_backup(pg_settings)
    assert verify_backup(pg_settings, backup.backup_id).ok
    pd.testing.assert_frame_equal(load_backup(pg_settings, backup.backup_id).tables["market_bars"], stored_bars)

    export = create_export(pg_settings, symbols=["MSFT"], fmt="parquet")
    assert verify_export(export.path) == []
    assert len(read_export(export.path)["predictions"]) == 52 * 4

    plan = plan_retention(pg_settings, now=NOW)
    assert plan.rows_by_table["market_bars"] == 52
    apply_retention(pg_settings, plan)
    remaining = store.read_rows("market_bars")
    assert len(remaining) == len(stored_bars) - 52 and remaining["window_start"].min() == day_windows[26]
    assert pruned(pg_settings, "MSFT", day_windows[0], "market_bars")


def test_restore_refuses_on_postgres_in_one_sentence(pg_settings):
    create_backup(pg_settings)
    with pytest.raises(OperationError, match="store is not DuckDB; restore with storage.backend set to duckdb"):
        restore(pg_settings)
