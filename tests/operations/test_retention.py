"""Retention: the dry run lists exactly what the real run deletes; nothing goes that no verified backup holds."""

import json

import pandas as pd

from lstm_pipeline.operations.backups import create_backup, list_backups, verify_backup
from lstm_pipeline.operations.exports import create_export, list_exports
from lstm_pipeline.operations.restore import restore
from lstm_pipeline.operations.retention import apply_retention, plan_retention, pruned, pruned_partitions
from lstm_pipeline.storage import database_at
from tests.operations.synthetic import chain_rows, monitoring_rows, write_chain

NOW = pd.Timestamp("2025-01-10 12:00", tz="UTC")
FIRST_DAY_ONLY = {"retention": {"raw_bars_days": 7, "predictions_days": 7}}
"""Relative to NOW, only the windows of 2025-01-02 are older than 7 days (2025-01-03 09:30 New York is not)."""


def _keys(settings, table, column):
    rows = database_at(settings.db_path).read_rows(table)
    return set(zip(rows["symbol"], rows[column], strict=True))


def test_nothing_is_deleted_without_a_verified_backup(make_settings, populated):
    settings = make_settings(**FIRST_DAY_ONLY)
    create_backup(settings)  # made, but not verified
    plan = plan_retention(settings, now=NOW)
    assert plan.rows_by_table["market_bars"] == 0 and plan.skipped_unbacked["market_bars"] == 2 * 26
    apply_retention(settings, now=NOW)
    assert len(database_at(settings.db_path).read_rows("market_bars")) == len(populated["market_bars"])

    tampered = create_backup(settings)
    target = tampered.path / "market_bars.parquet.enc"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    assert not verify_backup(settings, tampered.backup_id).ok
    assert plan_retention(settings, now=NOW).rows_by_table["market_bars"] == 0


def test_dry_run_equals_what_the_real_run_deletes(make_settings, populated, day_windows):
    settings = make_settings(**FIRST_DAY_ONLY)
    backup = create_backup(settings)
    assert verify_backup(settings, backup.backup_id).ok
    before = {table: _keys(settings, table, column) for table, column in
              (("market_bars", "window_start"), ("predictions", "as_of_window"), ("validations", "target_window"))}

    plan = plan_retention(settings, now=NOW)
    lines = plan.describe()
    done = apply_retention(settings, plan)

    first_day = {(symbol, window) for symbol in ("AAPL", "MSFT") for window in day_windows[:26]}
    assert set(zip(plan.tables["market_bars"].partitions["symbol"],
                   plan.tables["market_bars"].partitions["window_start"], strict=True)) == first_day
    assert done.rows_by_table == plan.rows_by_table
    assert plan.rows_by_table["market_bars"] == 52 and plan.rows_by_table["predictions"] == 52 * 4
    gone_bars = before["market_bars"] - _keys(settings, "market_bars", "window_start")
    assert gone_bars == first_day
    gone_predictions = before["predictions"] - _keys(settings, "predictions", "as_of_window")
    assert gone_predictions == first_day
    assert before["validations"] == _keys(settings, "validations", "target_window")  # no age set: kept
    assert any(line.startswith("market_bars: would delete 52 row(s)") for line in lines)
    summary = plan.as_json()
    assert summary["rows_by_table"]["market_bars"] == 52 and summary["partitions_by_table"]["market_bars"] == 52
    assert json.loads(json.dumps(summary)) == summary
    # Deleted symbol-windows are recorded: readers say "pruned", not an empty success.
    assert pruned(settings, "AAPL", day_windows[0], "market_bars")
    assert not pruned(settings, "AAPL", day_windows[26])
    recorded = pruned_partitions(settings, symbol="MSFT", table="predictions")
    assert len(recorded) == 26 and set(recorded["backup_id"]) == {backup.backup_id}
    # A second run finds nothing more to delete.
    assert apply_retention(settings, now=NOW).rows_by_table["market_bars"] == 0


def test_a_partition_changed_since_its_backup_is_kept(make_settings, populated, day_windows):
    settings = make_settings(**FIRST_DAY_ONLY)
    assert verify_backup(settings, create_backup(settings).backup_id).ok
    changed = chain_rows(("AAPL",), day_windows[:1], seed=3, price_shift=10.0)
    write_chain(settings.db_path, {"market_bars": changed["market_bars"]})

    plan = plan_retention(settings, now=NOW)
    planned = set(zip(plan.tables["market_bars"].partitions["symbol"],
                      plan.tables["market_bars"].partitions["window_start"], strict=True))
    assert ("AAPL", day_windows[0]) not in planned and len(planned) == 51
    apply_retention(settings, plan)
    assert ("AAPL", day_windows[0]) in _keys(settings, "market_bars", "window_start")


def test_pruned_rows_come_back_with_a_restore(make_settings, populated, day_windows):
    settings = make_settings(**FIRST_DAY_ONLY)
    assert verify_backup(settings, create_backup(settings).backup_id).ok
    apply_retention(settings, now=NOW)
    assert pruned(settings, "AAPL", day_windows[0])
    restore(settings)
    assert len(database_at(settings.db_path).read_rows("market_bars")) == len(populated["market_bars"])
    assert not pruned(settings, "AAPL", day_windows[0])


def test_open_alerts_are_kept(make_settings, populated, day_windows):
    settings = make_settings(retention={"alerts_days": 7})
    assert verify_backup(settings, create_backup(settings).backup_id).ok
    plan = plan_retention(settings, now=NOW)
    assert plan.rows_by_table["alerts"] == 0  # every synthetic alert is open
    alerts = populated["alerts"].assign(resolved_at=pd.Timestamp("2025-01-03 10:00", tz="America/New_York"))
    write_chain(settings.db_path, {"alerts": alerts})
    assert verify_backup(settings, create_backup(settings).backup_id).ok
    plan = plan_retention(settings, now=NOW)
    old = alerts[alerts["as_of_window"] < day_windows[26]]
    assert plan.rows_by_table["alerts"] == len(old) > 0


def test_backup_retention_keeps_daily_weekly_and_every_only_copy(make_settings, populated, day_windows):
    settings = make_settings(backups={"keep_daily": 1, "keep_weekly": 0})
    aapl = [("AAPL", window) for window in day_windows]
    msft = [("MSFT", window) for window in day_windows]
    only_msft = create_backup(settings, msft, now=pd.Timestamp("2025-01-03 08:00", tz="UTC"))
    old_aapl = create_backup(settings, aapl, now=pd.Timestamp("2025-01-04 08:00", tz="UTC"))
    newest = create_backup(settings, aapl, now=pd.Timestamp("2025-01-05 08:00", tz="UTC"))

    # A backup never verified cannot stand in for another.
    assert plan_retention(settings, now=NOW).backups == []
    assert verify_backup(settings, newest.backup_id).ok
    plan = plan_retention(settings, now=NOW)

    # old_aapl is superseded (newest holds its partitions); only_msft is the only copy of MSFT's: kept.
    assert plan.backups == [old_aapl.backup_id]
    apply_retention(settings, plan)
    assert [info.backup_id for info in list_backups(settings)] == [only_msft.backup_id, newest.backup_id]


def test_old_exports_are_cleaned_up_by_age(make_settings, populated):
    settings = make_settings(retention={"exports_days": 5})
    old = create_export(settings, fmt="csv", now=pd.Timestamp("2025-01-02 18:00", tz="UTC"))
    recent = create_export(settings, fmt="csv", now=pd.Timestamp("2025-01-09 18:00", tz="UTC"))
    plan = plan_retention(settings, now=NOW)
    assert plan.exports == [old.path]
    apply_retention(settings, plan)
    assert [info.export_id for info in list_exports(settings)] == [recent.export_id]


def test_a_backup_made_after_pruning_is_no_copy_of_the_pruned_rows(make_settings, populated):
    settings = make_settings(retention={"raw_bars_days": 7}, backups={"keep_daily": 1, "keep_weekly": 0})
    before = create_backup(settings, now=pd.Timestamp("2025-01-05 08:00", tz="UTC"))
    assert verify_backup(settings, before.backup_id).ok
    assert apply_retention(settings, now=NOW).rows_by_table["market_bars"] == 52
    # A later full backup holds the first day's symbol-windows through predictions etc., but none of their bars.
    after = create_backup(settings, now=pd.Timestamp("2025-01-10 08:00", tz="UTC"))
    assert verify_backup(settings, after.backup_id).ok

    plan = plan_retention(settings, now=NOW + pd.Timedelta(days=1))

    assert before.backup_id not in plan.backups  # the only backup with the pruned bars stays
    apply_retention(settings, plan)
    assert [info.backup_id for info in list_backups(settings)] == [before.backup_id, after.backup_id]


def test_monitoring_samples_and_finished_deliveries_go_by_age_behind_a_full_backup(make_settings, populated):
    settings = make_settings(retention={"monitoring_days": 7, "alert_deliveries_days": 7})
    times = [pd.Timestamp("2025-01-01 12:00", tz="UTC") + pd.Timedelta(days=day) for day in range(8)]
    rows = monitoring_rows(times)  # samples of 2025-01-01 .. 01-08; deliveries alternate sent / failing
    write_chain(settings.db_path, rows)
    partial = create_backup(settings, [("AAPL", populated["market_bars"]["window_start"].iloc[0])])
    assert verify_backup(settings, partial.backup_id).ok
    assert plan_retention(settings, now=NOW).rows_by_table["system_metrics"] == 0  # only full backups hold them
    assert verify_backup(settings, create_backup(settings).backup_id).ok

    plan = plan_retention(settings, now=NOW)
    done = apply_retention(settings, plan)

    old = [stamp for stamp in times if stamp < NOW - pd.Timedelta(days=7)]  # 01-01 .. 01-02
    assert done.rows_by_table["system_metrics"] == plan.rows_by_table["system_metrics"] == 2 * len(old)
    metrics = database_at(settings.db_path).read_rows("system_metrics")
    assert metrics["sampled_at"].min() >= NOW - pd.Timedelta(days=7)
    deliveries = database_at(settings.db_path).read_rows("alert_deliveries")
    # Sent deliveries older than 7 days went; the failing one awaiting its retry stays whatever its age.
    assert done.rows_by_table["alert_deliveries"] == 1
    assert sorted(deliveries[deliveries["last_attempt_at"] < NOW - pd.Timedelta(days=7)]["status"]) == ["failed"]
    assert len(deliveries) == len(times) - 1
    assert "system_metrics: deleted 4 row(s) in 2 partition(s)" in "\n".join(done.describe())
    # Whole-store restore brings the pruned samples back from the backup that holds them.
    restore(settings)
    assert len(database_at(settings.db_path).read_rows("system_metrics")) == len(rows["system_metrics"])
