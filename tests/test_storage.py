"""The storage layer: one registry, one migration path, read-only readers, atomic partition replacement, locking.

Every behaviour the pipeline relies on runs against both backends (``storage_backend``: the DuckDB file and a
database on the session's real PostgreSQL server); the DuckDB file's locking has its own tests below, PostgreSQL's
concurrency is in tests/test_storage_postgres.py.
"""

import logging
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pytest

from lstm_pipeline.market.bars import BAR_COLUMNS
from lstm_pipeline.resources import build_resources
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import ConfigError, load_settings
from lstm_pipeline.storage import (
    ALERTS,
    MARKET_BARS,
    PREDICTIONS,
    REJECTION_COLUMNS,
    SCHEMA_VERSION,
    TABLES,
    DatabaseAccessError,
    DatabaseLockedError,
    PipelineDatabase,
    PostgresDatabase,
    StorageError,
    connect,
    ensure_schema,
    stored_version,
)

NY = "America/New_York"
CONSTRAINT_ERRORS = (duckdb.ConstraintException, psycopg.errors.NotNullViolation)
"""What a write of rows breaking a NOT NULL column raises, per backend (nothing of the write lands)."""


def raw_rows(database, sql: str, params=()) -> list[tuple]:
    """Rows of a raw SQL query on the backend itself (not through the storage layer), with a UTC session."""
    if isinstance(database, PostgresDatabase):
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            return conn.execute(sql.replace("?", "%s"), list(params)).fetchall()
    with duckdb.connect(database.path, read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql, list(params)).fetchall()


def raw_execute(database, sql: str) -> None:
    """Run raw SQL statements (``;``-separated) on the backend, committed."""
    if isinstance(database, PostgresDatabase):
        with psycopg.connect(database.url, autocommit=True) as conn:
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
        return
    with duckdb.connect(database.path) as conn:
        conn.execute(sql)


def table_columns(database, table: str) -> list[str]:
    """The columns ``table`` has on the backend, in order (empty if it does not exist)."""
    if isinstance(database, PipelineDatabase) and not __import__("os").path.exists(database.path):
        return []
    schema = "current_schema()" if isinstance(database, PostgresDatabase) else "'main'"
    return [row[0] for row in raw_rows(
        database,
        f"SELECT column_name FROM information_schema.columns WHERE table_schema = {schema} AND table_name = ? "
        "ORDER BY ordinal_position",
        [table],
    )]


def _bars(symbol: str, start: str, count: int, close: float = 100.0) -> pd.DataFrame:
    windows = pd.date_range(pd.Timestamp(start, tz=NY), periods=count, freq="15min")
    closes = close + np.arange(count, dtype=float)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "window_start": windows,
            "open": closes - 0.5,
            "high": closes + 1.0,
            "low": closes - 1.0,
            "close": closes,
            "volume": np.arange(count) + 1000,
            "source": "test",
        }
    )


def _forecast(symbol: str, as_of: pd.Timestamp, steps: int = 3, close: float = 100.0) -> pd.DataFrame:
    targets = pd.date_range(as_of + pd.Timedelta(minutes=15), periods=steps, freq="15min")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "as_of_window": as_of,
            "horizon_step": np.arange(1, steps + 1),
            "target_window": targets,
            "predicted_close": close + np.arange(steps, dtype=float),
            "lower_80": close - 1.0,
            "upper_80": close + 1.0,
            "lower_95": close - 2.0,
            "upper_95": close + 2.0,
            "last_close": close,
            "forecast_mode": "recursive",
            "model_version": "v1",
        }
    )


def _alert(symbol: str, as_of: pd.Timestamp, kind: str = "insufficient_bars") -> pd.DataFrame:
    return pd.DataFrame(
        [{"source": "predictions", "symbol": symbol, "as_of_window": as_of, "kind": kind, "severity": "warning",
          "message": f"{symbol} cannot be forecast.", "run_id": "run-1"}]
    )


def _columns(path, table: str) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return [row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()]


# ------------------------------------------------------------------------------------------------ the registry


def test_every_table_is_declared_once_and_created_by_ensure_schema(storage_backend):
    database = storage_backend
    assert database.ensure_schema() == 0  # a new file / an empty database
    for table in TABLES.values():
        assert table_columns(database, table.name) == table.column_names
        assert set(table.key) <= set(table.column_names) and set(table.partition) <= set(table.key)
    predictions = table_columns(database, "predictions")
    assert predictions[3] == "target_window" and "origin_window" not in predictions
    assert {"rejected_check", "rejected_reason"} <= set(table_columns(database, "market_bars"))
    assert database.stored_version() == SCHEMA_VERSION
    types = dict(raw_rows(
        database,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'market_bars'",
    ))
    assert types["window_start"].lower() == "timestamp with time zone"
    assert database.ensure_schema() == SCHEMA_VERSION  # already current: nothing to do
    assert raw_rows(database, "SELECT count(*) FROM schema_version") == [(1,)]


def test_ensure_schema_creates_the_duckdb_file_and_its_folder(tmp_path):
    path = tmp_path / "new" / "pipeline.duckdb"
    assert ensure_schema(path) == 0
    with duckdb.connect(str(path), read_only=True) as conn:
        assert stored_version(conn) == SCHEMA_VERSION


# ------------------------------------------------------------------------------------------------ the migration

_OLD_LAYOUT = """
CREATE TABLE market_bars (symbol VARCHAR NOT NULL, window_start TIMESTAMPTZ NOT NULL, open DOUBLE, high DOUBLE,
    low DOUBLE, close DOUBLE, volume BIGINT, vwap DOUBLE, trade_count BIGINT, source VARCHAR NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp);
CREATE TABLE predictions (symbol VARCHAR NOT NULL, as_of_window TIMESTAMPTZ NOT NULL,
    origin_window TIMESTAMPTZ NOT NULL, horizon_step INTEGER NOT NULL, window_start TIMESTAMPTZ NOT NULL,
    predicted_close DOUBLE NOT NULL, lower_80 DOUBLE, upper_80 DOUBLE, lower_95 DOUBLE, upper_95 DOUBLE,
    last_close DOUBLE NOT NULL, forecast_mode VARCHAR NOT NULL, model_version VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp);
CREATE TABLE alerts (source VARCHAR NOT NULL, symbol VARCHAR NOT NULL, as_of_window TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL, severity VARCHAR NOT NULL, message VARCHAR NOT NULL, run_id VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp);
INSERT INTO market_bars (symbol, window_start, open, high, low, close, volume, source)
    VALUES ('AAPL', '2025-07-07 13:30:00+00', 100, 101, 99, 100.5, 1000, 'simulated(seed=7)');
INSERT INTO predictions (symbol, as_of_window, origin_window, horizon_step, window_start, predicted_close,
    last_close, forecast_mode, model_version)
    VALUES ('AAPL', '2025-07-07 13:30:00+00', '2025-07-07 13:30:00+00', 1, '2025-07-07 13:45:00+00', 101, 100.5,
    'recursive', 'abc');
"""


def _old_layout(database) -> None:
    """Tables and rows as the first layout wrote them (PostgreSQL spells DOUBLE as DOUBLE PRECISION)."""
    sql = _OLD_LAYOUT.replace("DOUBLE", "DOUBLE PRECISION") if isinstance(database, PostgresDatabase) else _OLD_LAYOUT
    raw_execute(database, sql)


def test_a_reader_reads_an_old_layout_file_in_the_new_layout_without_changing_it(storage_backend):
    database = storage_backend
    _old_layout(database)
    predictions = database.read_predictions()
    assert list(predictions.columns) == PREDICTIONS.column_names
    assert predictions["target_window"].tolist() == [pd.Timestamp("2025-07-07 09:45", tz=NY)]
    bars = database.read_bars()
    assert len(bars) == 1 and list(bars.columns) == list(BAR_COLUMNS)  # not rejected: the flag did not exist
    # Readers never create or migrate anything.
    assert "origin_window" in table_columns(database, "predictions")
    assert "rejected_check" not in table_columns(database, "market_bars")
    assert table_columns(database, "schema_version") == []
    assert database.stored_version() == 1


def test_the_first_write_migrates_an_old_layout_file_and_keeps_its_rows(storage_backend):
    database = storage_backend
    _old_layout(database)
    before = database.read_predictions()
    msft = _bars("MSFT", "2025-07-07 09:30", 2)
    database.replace_bars(msft, zip(msft["symbol"], msft["window_start"], strict=True))  # any write

    assert table_columns(database, "predictions") == PREDICTIONS.column_names
    assert table_columns(database, "market_bars") == MARKET_BARS.column_names
    assert database.stored_version() == SCHEMA_VERSION
    pd.testing.assert_frame_equal(database.read_predictions(), before)
    assert database.read_bars("AAPL")["close"].tolist() == [100.5]
    assert database.read_bars("MSFT")["close"].tolist() == msft["close"].tolist()


def test_a_file_from_a_newer_version_is_refused_in_one_sentence(storage_backend):
    database = storage_backend
    database.ensure_schema()
    raw_execute(database, f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION + 1})")
    one_bar = _bars("AAPL", "2025-07-07 09:30", 1)
    for action in (database.read_bars, database.ensure_schema, lambda: database.replace_bars(one_bar, [])):
        with pytest.raises(StorageError, match=r"newer than the \d+ this code knows; upgrade lstm_pipeline"):
            action()


def test_ensure_schema_refuses_a_newer_duckdb_file(tmp_path):
    path = tmp_path / "future.duckdb"
    ensure_schema(path)
    with duckdb.connect(str(path)) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    with pytest.raises(StorageError, match=r"newer than the \d+ this code knows; upgrade lstm_pipeline"):
        ensure_schema(path)


# ------------------------------------------------------------------------------------------------- reading


def test_reads_of_a_missing_file_or_table_are_empty_frames_and_create_nothing(storage_backend):
    database = storage_backend
    bars, predictions, alerts = database.read_bars(), database.read_predictions(), database.read_alerts()
    assert bars.empty and list(bars.columns) == list(BAR_COLUMNS)
    assert predictions.empty and list(predictions.columns) == PREDICTIONS.column_names
    assert alerts.empty and list(alerts.columns) == ALERTS.column_names
    assert str(predictions["as_of_window"].dtype) == f"datetime64[ns, {NY}]"
    assert database.read_rows("validations", ["symbol = ?"], ["AAPL"]).empty
    assert all(table_columns(database, name) == [] for name in TABLES)  # nothing created
    assert database.stored_version() == 0


def test_reading_a_missing_duckdb_file_or_an_empty_one_creates_nothing(tmp_path):
    path = tmp_path / "missing.duckdb"
    database = PipelineDatabase(str(path))
    assert database.read_bars().empty and not path.exists()
    duckdb.connect(str(path)).close()  # an empty database file
    assert database.read_predictions().empty and database.read_bars().empty
    assert table_columns(database, "predictions") == [] and table_columns(database, "market_bars") == []


def _hold(path, read_only: bool) -> subprocess.Popen:
    """Another process holding the DuckDB file open until its stdin is closed."""
    code = textwrap.dedent(
        """
        import sys, duckdb
        conn = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
        print("ready", flush=True)
        sys.stdin.read()
        conn.close()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path), "ro" if read_only else "rw"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


def _release(holder: subprocess.Popen) -> None:
    holder.stdin.close()
    holder.wait(timeout=30)


def test_reads_are_read_only_so_they_share_the_file_with_another_reader(tmp_path):
    path = tmp_path / "shared.duckdb"
    database = PipelineDatabase(str(path), lock_timeout_seconds=5)
    bars = _bars("AAPL", "2025-07-07 09:30", 3)
    database.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    reader = _hold(path, read_only=True)  # e.g. the REST service or a notebook
    try:
        # A read-write open would conflict with that process's shared lock; reads do not.
        assert len(database.read_bars("AAPL")) == 3
        assert database.read_predictions().empty
    finally:
        _release(reader)


def test_timestamps_are_stored_as_utc_instants_and_read_as_new_york(storage_backend):
    database = storage_backend
    bars = _bars("AAPL", "2025-03-07 15:45", 1)  # before the spring change: New York is UTC-5
    database.replace_bars(bars, [("AAPL", bars["window_start"].iloc[0])])
    if isinstance(database, PostgresDatabase):
        (stored,) = raw_rows(database, "SELECT to_char(window_start, 'YYYY-MM-DD HH24:MI') FROM market_bars")[0]
    else:
        (stored,) = raw_rows(database, "SELECT strftime(window_start, '%Y-%m-%d %H:%M') FROM market_bars")[0]
    assert stored == "2025-03-07 20:45"
    read = database.read_bars("AAPL")["window_start"]
    assert str(read.dtype) == f"datetime64[ns, {NY}]" and read.iloc[0] == pd.Timestamp("2025-03-07 15:45", tz=NY)
    naive = database.read_bars("AAPL", start=pd.Timestamp("2025-03-07 15:45"))  # a naive bound means New York
    assert len(naive) == 1


def test_both_backends_read_the_same_frames(tmp_path, postgres_url):
    """Same writes, same frames: columns, dtypes, order, nulls, booleans and integers alike on both backends."""
    frames = []
    for database in (PipelineDatabase(str(tmp_path / "same.duckdb")), PostgresDatabase(postgres_url)):
        bars = pd.concat([_bars("MSFT", "2025-07-07 09:30", 3), _bars("AAPL", "2025-07-07 09:30", 3)])
        bars.loc[bars.index[1], "vwap"] = 101.25
        database.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
        as_of = pd.Timestamp("2025-07-07 10:00", tz=NY)
        database.replace_forecasts(_forecast("AAPL", as_of), _alert("AAPL", as_of), [("AAPL", as_of)])
        keys = pd.DataFrame({"symbol": ["AAPL"], "target_window": [as_of]})
        rows = keys.assign(as_of_window=[as_of - pd.Timedelta(minutes=30)], horizon_step=np.int64(2),
                           model_version="v1", predicted_close=101.0, last_close=100.0, status="valid",
                           inside_80=True, inside_95=None, actual_close=np.nan)
        database.replace_tables({"validations": (keys, rows)})
        frames.append({
            "bars": database.read_bars(),
            "bars_all": database.read_rows("market_bars").drop(columns="ingested_at"),
            "predictions": database.read_predictions().drop(columns="created_at"),
            "alerts": database.read_alerts().drop(columns="created_at"),
            "validations": database.read_rows("validations").drop(columns="validated_at"),
        })
    for name in frames[0]:
        pd.testing.assert_frame_equal(frames[0][name], frames[1][name], obj=name)
    assert frames[0]["bars"]["symbol"].tolist() == ["AAPL"] * 3 + ["MSFT"] * 3  # ordered by the key


# ------------------------------------------------------------------------------------------------- writing


def test_replacing_partitions_is_idempotent_and_a_failed_write_keeps_the_old_rows(storage_backend):
    database = storage_backend
    as_of = pd.Timestamp("2025-07-07 10:00", tz=NY)
    partitions = [("AAPL", as_of), ("MSFT", as_of)]
    predictions = pd.concat([_forecast("AAPL", as_of), _forecast("MSFT", as_of)], ignore_index=True)
    alerts = _alert("MSFT", as_of)
    for _ in range(2):
        database.replace_forecasts(predictions, alerts, partitions)
    stored, stored_alerts = database.read_predictions(), database.read_alerts()
    assert len(stored) == 6 and not stored.duplicated(list(PREDICTIONS.key)).any()
    assert len(stored_alerts) == 1

    broken = predictions.assign(predicted_close=np.where(predictions["symbol"] == "MSFT", np.nan, 1.0))
    with pytest.raises(CONSTRAINT_ERRORS):
        database.replace_forecasts(broken, alerts.iloc[0:0], partitions)
    pd.testing.assert_frame_equal(database.read_predictions(), stored)  # both tables rolled back together
    pd.testing.assert_frame_equal(database.read_alerts(), stored_alerts)

    database.replace_forecasts(predictions.iloc[0:0], alerts.iloc[0:0], [("MSFT", as_of)])
    assert set(database.read_predictions()["symbol"]) == {"AAPL"} and database.read_alerts().empty


def test_rows_in_the_old_column_names_are_refused_in_one_sentence(storage_backend):
    database = storage_backend
    as_of = pd.Timestamp("2025-07-07 10:00", tz=NY)
    old = _forecast("AAPL", as_of).rename(columns={"target_window": "window_start"})
    with pytest.raises(ValueError, match=r"table predictions are missing the column\(s\) \['target_window'\]"):
        database.replace_forecasts(old, _alert("AAPL", as_of).iloc[0:0], [("AAPL", as_of)])


def test_rejected_bars_are_not_read_until_their_partition_is_replaced(storage_backend):
    database = storage_backend
    bars = _bars("AAPL", "2025-07-07 09:30", 4)
    partitions = list(zip(bars["symbol"], bars["window_start"], strict=True))
    database.replace_bars(bars, partitions)
    bad = bars["window_start"].iloc[1]
    flagged = database.reject_bars(pd.DataFrame({
        "symbol": ["AAPL", "AAPL", "MSFT"],
        "window_start": [bad, bad, bad],
        "check_name": ["ohlcv_not_null", "high_low_bounds", "high_low_bounds"],
        "reason": ["close is null", "high 1 is below low 2", "not stored"],
    }))
    assert flagged == 1  # MSFT has no stored bar at that window
    assert bad not in set(database.read_bars("AAPL")["window_start"])
    assert bad not in set(database.read_bars(symbols=["AAPL"], start=bars["window_start"].iloc[0])["window_start"])
    assert len(database.read_bars("AAPL", include_rejected=True)) == 4
    rejected = database.read_rejected_bars()
    assert rejected[["rejected_check", "rejected_reason"]].values.tolist() == [
        ["ohlcv_not_null, high_low_bounds", "close is null; high 1 is below low 2"]
    ]

    database.replace_bars(bars.iloc[[1]], [("AAPL", bad)])  # re-materializing the partition
    assert len(database.read_bars("AAPL")) == 4 and database.read_rejected_bars().empty


def test_writing_a_pruned_partition_again_clears_its_pruned_marker_and_a_deletion_does_not(storage_backend):
    database = storage_backend
    bars = _bars("AAPL", "2025-07-07 09:30", 3)
    windows = list(bars["window_start"])
    database.replace_bars(bars, [("AAPL", window) for window in windows])
    # Retention's way: delete two partitions' rows and record them as pruned, in one transaction.
    pruned = pd.DataFrame({"table_name": "market_bars", "symbol": "AAPL", "window_start": windows[:2],
                           "rows_deleted": 1, "backup_id": "b1", "pruned_at": pd.Timestamp("2025-08-01", tz="UTC")})
    database.replace_tables({
        "market_bars": (pd.DataFrame({"symbol": "AAPL", "window_start": windows[:2]}), bars.iloc[0:0]),
        "pruned_partitions": (pruned[["table_name", "symbol", "window_start"]], pruned),
    })
    marked = database.read_rows("pruned_partitions")
    assert list(marked["window_start"]) == windows[:2]

    # Deleting a pruned partition again (nothing written) keeps its marker; writing rows to one clears it.
    database.replace_bars(bars.iloc[0:0], [("AAPL", windows[0])])
    assert len(database.read_rows("pruned_partitions")) == 2
    database.replace_bars(bars.iloc[[1]], [("AAPL", windows[1])])
    assert list(database.read_rows("pruned_partitions")["window_start"]) == [windows[0]]
    assert list(database.read_bars("AAPL")["window_start"]) == windows[1:]


def test_staged_bars_are_read_only_once_their_checks_promote_them(storage_backend):
    database = storage_backend
    bars = _bars("AAPL", "2025-07-07 09:30", 3)
    partitions = list(zip(bars["symbol"], bars["window_start"], strict=True))
    database.replace_bars(bars, partitions, awaiting_checks=True)
    assert database.read_bars("AAPL").empty and len(database.read_bars("AAPL", include_rejected=True)) == 3
    assert database.record_checks(partitions, pd.DataFrame(columns=list(REJECTION_COLUMNS)), promote=False) == 0
    assert database.read_bars("AAPL").empty  # only some blocking checks ran: still staged
    bad = bars["window_start"].iloc[2]
    rejection = pd.DataFrame({"symbol": ["AAPL"], "window_start": [bad], "check_name": ["c"], "reason": ["r"]})
    assert database.record_checks(partitions, rejection) == 1
    assert database.read_bars("AAPL")["window_start"].tolist() == bars["window_start"].iloc[:2].tolist()
    assert database.read_rejected_bars()["rejected_check"].tolist() == ["c"]


# ------------------------------------------------------------------------------------------------- locking


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self, on_sleep=None):
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(self)


def test_a_lock_held_by_another_process_fails_after_a_bounded_logged_wait_naming_its_pid(tmp_path, caplog):
    path = tmp_path / "locked.duckdb"
    ensure_schema(path)
    holder = _hold(path, read_only=False)
    clock = FakeClock()
    try:
        with caplog.at_level(logging.WARNING, logger="lstm_pipeline.storage"):
            for read_only in (True, False):
                with pytest.raises(DatabaseLockedError) as raised:
                    with connect(path, read_only=read_only, lock_timeout_seconds=30, clock=clock, sleep=clock.sleep):
                        pass
                message = str(raised.value)
                assert str(path) in message and f"process {holder.pid}" in message
                assert "stop that process" in message and "close its connection" in message
                assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    finally:
        _release(holder)
    assert clock.now == pytest.approx(60.0)  # 30 s per attempt, not more
    waits = [record.getMessage() for record in caplog.records]
    assert all(f"process {holder.pid} holds its lock" in text for text in waits)
    assert 2 * 5 <= len(waits) <= 2 * 8  # about every 5 s of a 30 s wait, never on every retry
    assert len(clock.sleeps) > len(waits)


def test_a_lock_released_during_the_wait_lets_the_write_go_through(tmp_path):
    path = tmp_path / "released.duckdb"
    database = PipelineDatabase(str(path))
    database.replace_bars(_bars("AAPL", "2025-07-07 09:30", 1), [])
    holder = _hold(path, read_only=True)

    def release_after_two_seconds(clock: FakeClock) -> None:
        if clock.now >= 2 and holder.returncode is None:
            _release(holder)

    clock = FakeClock(release_after_two_seconds)
    try:
        with connect(path, read_only=False, lock_timeout_seconds=30, clock=clock, sleep=clock.sleep) as conn:
            conn.execute("CREATE TABLE written_after_the_wait (x INTEGER)")
    finally:
        if holder.returncode is None:
            _release(holder)
    assert 2 <= clock.now < 4


def test_the_store_resource_waits_at_most_its_lock_timeout(tmp_path):
    path = tmp_path / "resource.duckdb"
    store = PipelineStore.for_path(path, lock_timeout_seconds=0.2)
    store.replace_bars(_bars("AAPL", "2025-07-07 09:30", 1), [])
    holder = _hold(path, read_only=False)
    try:
        with pytest.raises(DatabaseLockedError, match=rf"locked by process {holder.pid} \(still after \d+ s\)"):
            store.read_bars("AAPL")
    finally:
        _release(holder)
    assert len(store.read_bars("AAPL")) == 1


def test_permission_denied_fails_at_once_without_waiting(tmp_path):
    calls = []

    def refuse(**kwargs):
        calls.append(kwargs)
        raise duckdb.IOException(f'IO Error: Cannot open file "{kwargs["database"]}": Permission denied')

    clock = FakeClock()
    with pytest.raises(DatabaseAccessError, match="permission denied; fix the file's and its folder's permissions"):
        with connect(tmp_path / "x.duckdb", read_only=False, clock=clock, sleep=clock.sleep, connect_fn=refuse):
            pass
    assert len(calls) == 1 and clock.sleeps == []


def test_a_file_that_is_not_a_database_fails_at_once_in_one_sentence(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database")
    with pytest.raises(DatabaseAccessError, match=r"notes.duckdb cannot be opened \(.*not a valid DuckDB database"):
        PipelineDatabase(str(path)).read_bars()


def test_an_unwritable_db_path_is_refused_when_the_resources_are_built(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = load_settings(environ={"LSTM_PIPELINE_DB_PATH": str(blocker / "data" / "pipeline.duckdb")})
    with pytest.raises(ConfigError, match=r"cannot be created because .*a-file is a file, not a folder; set db_path"):
        build_resources(settings)
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        build_resources(load_settings(environ={"LSTM_PIPELINE_DB_PATH": str(folder)}))
    resources = build_resources(load_settings(environ={"LSTM_PIPELINE_DB_PATH": str(tmp_path / "new" / "p.duckdb")}))
    assert isinstance(resources["store"], PipelineStore) and not (tmp_path / "new").exists()


def test_workflow_tables_replace_by_partition_in_one_transaction_and_read_back(storage_backend):
    database = storage_backend
    target = pd.Timestamp("2025-07-07 10:00", tz=NY)
    keys = pd.DataFrame({"symbol": ["AAPL"], "target_window": [target]})
    rows = keys.assign(
        as_of_window=[target - pd.Timedelta(minutes=30)], horizon_step=2, model_version="v1", predicted_close=101.0,
        last_close=100.0, status="valid", inside_80=True,
    )
    database.replace_tables({"validations": (keys, rows)})
    database.replace_tables({"validations": (keys, rows.assign(status="needs_reprediction"))})  # a re-run
    stored = database.read_rows("validations", ["symbol = ?", "target_window >= ?"], ["AAPL", target])
    assert stored["status"].tolist() == ["needs_reprediction"] and bool(stored["inside_80"].iloc[0])
    assert stored["target_window"].iloc[0] == target
    with pytest.raises(ValueError, match="Unknown table"):
        database.read_rows("validation")
    bad = {"validations": (keys, rows.assign(status=None)), "trade_outcomes": (pd.DataFrame(), pd.DataFrame())}
    with pytest.raises(CONSTRAINT_ERRORS):  # status is NOT NULL: nothing of the two-table write lands
        database.replace_tables(bad)
    assert database.read_rows("validations")["status"].tolist() == ["needs_reprediction"]
