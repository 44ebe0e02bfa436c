"""Restore: whole store, one table, or a point in time; verified in a new file, then swapped in; never over a writer."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from lstm_pipeline.operations.backups import create_backup, verify_backup
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.restore import restore
from lstm_pipeline.operations.retention import apply_retention, pruned
from lstm_pipeline.storage import database_at
from tests.operations.synthetic import chain_rows, write_chain

CHAIN = ("market_bars", "predictions", "validations", "accuracy_metrics", "trade_recommendations",
         "trade_outcomes", "alerts")


def _snapshot(settings):
    database = database_at(settings.db_path)
    return {name: database.read_rows(name) for name in CHAIN}


def test_backup_delete_a_table_restore_gives_identical_rows(settings, populated):
    before = _snapshot(settings)
    create_backup(settings)
    with duckdb.connect(str(settings.db_path)) as conn:  # the disaster: a table's rows gone
        conn.execute("DELETE FROM predictions")
    assert database_at(settings.db_path).read_rows("predictions").empty

    result = restore(settings, table="predictions")

    after = _snapshot(settings)
    for name in CHAIN:
        pd.testing.assert_frame_equal(after[name], before[name])
    assert result.tables_restored == ["predictions"] and result.previous_path.exists()
    # The replaced file is kept beside the store, with the state before the restore.
    assert database_at(result.previous_path).read_rows("predictions").empty


def test_whole_store_restore_from_partition_backups(settings, populated, day_windows):
    before = _snapshot(settings)
    first, second = day_windows[:26], day_windows[26:]
    create_backup(settings, [(symbol, window) for symbol in ("AAPL", "MSFT") for window in first])
    create_backup(settings, [(symbol, window) for symbol in ("AAPL", "MSFT") for window in second])
    settings.db_path.unlink()

    result = restore(settings)

    after = _snapshot(settings)
    for name in CHAIN:
        pd.testing.assert_frame_equal(after[name], before[name])
    assert len(result.backups_used) == 2 and result.previous_path is None


def test_point_in_time_restore_returns_the_older_rows(settings, populated, day_windows):
    older = _snapshot(settings)
    t1 = pd.Timestamp("2025-01-06 02:00", tz="UTC")
    create_backup(settings, now=t1)
    # The chain is re-materialized with other values, and backed up again later.
    write_chain(settings.db_path, chain_rows(("AAPL", "MSFT"), day_windows, seed=1, price_shift=50.0))
    create_backup(settings, now=pd.Timestamp("2025-01-07 02:00", tz="UTC"))
    newer = _snapshot(settings)
    assert not newer["market_bars"]["close"].equals(older["market_bars"]["close"])

    restore(settings, as_of=pd.Timestamp("2025-01-06 12:00", tz="UTC"))
    for name in CHAIN:
        pd.testing.assert_frame_equal(_snapshot(settings)[name], older[name])

    restore(settings)  # no time: the newest backup of each partition
    for name in CHAIN:
        pd.testing.assert_frame_equal(_snapshot(settings)[name], newer[name])

    with pytest.raises(OperationError, match="no backup made at or before"):
        restore(settings, as_of=t1 - pd.Timedelta(days=1))


def test_never_over_a_store_a_run_is_writing(settings, populated):
    create_backup(settings)
    before = _snapshot(settings)
    with pytest.raises(OperationError, match="is being written .*restore again"):
        restore(settings, busy=lambda: "run 1234 of market_bars_update is in progress")
    for name in CHAIN:
        pd.testing.assert_frame_equal(_snapshot(settings)[name], before[name])
    assert not list(settings.db_path.parent.glob("*.before-restore-*"))


def test_never_over_a_store_whose_write_lock_another_process_holds(settings, populated):
    create_backup(settings)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "sys.stdin.readline()", str(settings.db_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(OperationError, match=f"is being written .*process {holder.pid}"):
            restore(settings)
    finally:
        holder.communicate("done\n", timeout=60)
    assert restore(settings).previous_path is not None  # once the writer is gone, the restore goes ahead


def test_dry_run_verifies_but_changes_nothing(settings, populated):
    create_backup(settings)
    with duckdb.connect(str(settings.db_path)) as conn:
        conn.execute("DELETE FROM market_bars")
    result = restore(settings, dry_run=True)
    assert result.dry_run and result.row_counts["market_bars"] == len(populated["market_bars"])
    assert database_at(settings.db_path).read_rows("market_bars").empty
    assert not list(settings.db_path.parent.glob("*.restoring-*"))


def test_unknown_table_is_named(settings, populated):
    create_backup(settings)
    with pytest.raises(OperationError, match="Table 'bars' cannot be restored; choose one of"):
        restore(settings, table="bars")


def test_whole_restore_brings_pruned_rows_back_after_a_later_backup(make_settings, populated, day_windows):
    settings = make_settings(retention={"raw_bars_days": 7})
    before = _snapshot(settings)
    assert verify_backup(settings, create_backup(settings, now=pd.Timestamp("2025-01-05", tz="UTC")).backup_id).ok
    apply_retention(settings, now=pd.Timestamp("2025-01-10 12:00", tz="UTC"))
    assert pruned(settings, "AAPL", day_windows[0], "market_bars")
    # The newer backup holds the first day's symbol-windows (other tables' rows) but not their pruned bars.
    create_backup(settings, now=pd.Timestamp("2025-01-11", tz="UTC"))

    result = restore(settings)

    for name in CHAIN:
        pd.testing.assert_frame_equal(_snapshot(settings)[name], before[name])
    assert len(result.backups_used) == 2
    assert not pruned(settings, "AAPL", day_windows[0])
    # Point in time after both backups: the same.
    restore(settings, as_of=pd.Timestamp("2025-01-12", tz="UTC"))
    pd.testing.assert_frame_equal(_snapshot(settings)["market_bars"], before["market_bars"])


def test_rows_a_partition_no_longer_has_do_not_come_back(settings, populated, day_windows):
    create_backup(settings, now=pd.Timestamp("2025-01-05", tz="UTC"))
    alerts = populated["alerts"]
    gone = alerts.iloc[[0]]  # re-materialized since: the condition no longer holds, so no alert
    database_at(settings.db_path).replace_tables(
        {"alerts": (gone[["source", "symbol", "as_of_window"]], gone.iloc[0:0])}
    )
    create_backup(settings, now=pd.Timestamp("2025-01-06", tz="UTC"))

    restore(settings)

    restored = database_at(settings.db_path).read_rows("alerts")
    assert len(restored) == len(alerts) - 1
    assert (gone["symbol"].iloc[0], gone["as_of_window"].iloc[0]) not in set(
        zip(restored["symbol"], restored["as_of_window"], strict=True)
    )


def test_partitions_no_backup_holds_are_kept_and_counted(settings, populated, day_windows):
    first, second = day_windows[:26], day_windows[26:]
    create_backup(settings, [(symbol, window) for symbol in ("AAPL", "MSFT") for window in first],
                  now=pd.Timestamp("2025-01-03 07:00", tz="UTC"))  # a nightly backup; the second day is not in it
    run_alert = pd.DataFrame([{
        "source": "runs", "symbol": "*", "as_of_window": second[-1], "kind": "run_failed", "severity": "error",
        "message": "Run x failed.", "level": "ERROR", "alert_key": "run_failed:market_bars_update",
    }])
    write_chain(settings.db_path, {"alerts": run_alert})
    before = _snapshot(settings)

    result = restore(settings)

    for name in CHAIN:
        pd.testing.assert_frame_equal(_snapshot(settings)[name], before[name])
    assert result.carried_over_rows["market_bars"] == 2 * 26
    assert result.carried_over_rows["alerts"] >= 1
    assert any("Kept" in line and "market_bars 52" in line for line in result.warnings())

    pit = restore(settings, as_of=pd.Timestamp("2025-01-04", tz="UTC"))

    assert pit.partitions_not_restored["market_bars"] == 2 * 26
    assert pit.carried_over_rows == {}
    assert set(_snapshot(settings)["market_bars"]["window_start"]) == set(first)
    assert any("not in the restored state" in line and str(pit.previous_path) in line for line in pit.warnings())
    # The point-in-time restore's previous file still has them.
    assert len(database_at(pit.previous_path).read_rows("market_bars")) == len(before["market_bars"])


def test_an_unreadable_store_is_restored_whole_but_not_one_table(settings, populated):
    before = _snapshot(settings)
    create_backup(settings)
    settings.db_path.write_bytes(b"not a duckdb file" * 100)

    with pytest.raises(OperationError, match="cannot be read, so its other tables .*restore the whole store"):
        restore(settings, table="predictions")
    result = restore(settings)

    assert not result.current_store_readable and "could not be read" in " ".join(result.warnings())
    for name in CHAIN:
        pd.testing.assert_frame_equal(_snapshot(settings)[name], before[name])


def test_the_write_lock_is_held_from_the_last_check_to_the_swap(settings, populated, monkeypatch):
    create_backup(settings)
    real_replace = os.replace
    writer_attempts = []

    def replace_while_a_writer_tries(source, target):
        if Path(target) == Path(settings.db_path):
            writer = subprocess.run(
                [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1])", str(settings.db_path)],
                capture_output=True, text=True, timeout=60,
            )
            writer_attempts.append(writer)
        return real_replace(source, target)

    monkeypatch.setattr("lstm_pipeline.operations.restore.os.replace", replace_while_a_writer_tries)
    restore(settings)

    (writer,) = writer_attempts
    assert writer.returncode != 0 and "lock" in writer.stderr.lower()
