"""``ReadSnapshot``: the storage layer's ``read_rows`` contract, served from a private copy that follows the file's
writes, never waits for a writer and never keeps the pipeline's file open."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.settings import CacheSettings, Settings
from lstm_pipeline.storage import SCHEMA_VERSION, database_at
from serving.snapshot import MISSING, ReadSnapshot
from tests.serving.conftest import populate


def _bar(symbol: str, window: str, close: float) -> pd.DataFrame:
    return pd.DataFrame([{
        "symbol": symbol, "window_start": pd.Timestamp(window, tz=NEW_YORK), "open": close, "high": close,
        "low": close, "close": close, "volume": 1, "vwap": close, "trade_count": 1, "source": "test",
    }])


def _write_bar(db_path, symbol: str, window: str, close: float) -> None:
    rows = _bar(symbol, window, close)
    database_at(db_path).replace_tables({"market_bars": (rows[["symbol", "window_start"]], rows)})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def snapshot_of(tmp_path):
    made: list[ReadSnapshot] = []

    def make(db_path, **options) -> ReadSnapshot:
        snapshot = ReadSnapshot(Settings(db_path=db_path, **options.pop("settings", {})),
                                snapshot_dir=tmp_path / "copies", **options)
        made.append(snapshot)
        return snapshot

    yield make
    for snapshot in made:
        snapshot.close()


@pytest.mark.parametrize(
    ("table", "where", "params"),
    [
        ("market_bars", [], []),
        ("predictions", ["symbol = ?", "horizon_step >= ?"], ["MSFT", 2]),
        ("predictions", ["as_of_window = (SELECT max(as_of_window) FROM predictions WHERE symbol = ?)"], ["AAPL"]),
        ("accuracy_metrics", ["window_start >= ?"], [pd.Timestamp("2025-01-02 09:45")]),  # naive: New York
        ("alerts", ["resolved_at IS NULL"], []),
        ("trade_outcomes", ["symbol = ?"], ["NOPE"]),
        ("validations", [], []),  # never written: an empty typed frame
    ],
)
def test_reads_answer_exactly_what_the_storage_layer_reads(tmp_path, snapshot_of, table, where, params):
    db_path = tmp_path / "pipeline.duckdb"
    populate(db_path)
    expected = database_at(db_path).read_rows(table, where, params)
    got = snapshot_of(db_path).read_rows(table, where, params)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_a_missing_file_reads_empty_and_is_healthy_until_the_first_write_appears(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    snapshot = snapshot_of(db_path)
    empty = snapshot.read_rows("market_bars")
    assert empty.empty and list(empty.columns) == list(database_at(db_path).read_rows("market_bars").columns)
    ok, sentence = snapshot.health()
    assert ok and "does not exist yet" in sentence
    assert not db_path.exists()  # reading never creates the pipeline's file

    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    assert snapshot.read_rows("market_bars")["close"].tolist() == [100.0]


def test_each_write_is_seen_by_the_next_read_and_moves_the_generation(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    snapshot = snapshot_of(db_path, min_copy_seconds=0)
    assert snapshot.read_rows("market_bars")["close"].tolist() == [100.0]
    first = snapshot.generation

    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 101.0)  # same size, same partition: only the content changes
    assert snapshot.read_rows("market_bars")["close"].tolist() == [101.0]
    assert snapshot.generation > first
    assert snapshot.as_of is not None and snapshot.as_of.tz is not None


def test_requests_bring_in_at_most_one_copy_per_min_copy_seconds_and_the_poll_catches_up(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    clock = Clock()
    snapshot = snapshot_of(db_path, clock=clock, min_copy_seconds=0.25)
    assert snapshot.read_rows("market_bars")["close"].tolist() == [100.0]
    copies = snapshot.copies

    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 101.0)
    clock.now += 0.1  # a commit right after the last copy: requests keep the copy they have
    assert snapshot.read_rows("market_bars")["close"].tolist() == [100.0]
    assert snapshot.copies == copies
    clock.now += 0.2  # the interval has passed: the next request copies
    assert snapshot.read_rows("market_bars")["close"].tolist() == [101.0]
    assert snapshot.copies == copies + 1

    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 102.0)
    assert snapshot.refresh()  # the poll thread's refresh is not held back
    assert snapshot.read_rows("market_bars")["close"].tolist() == [102.0]


def test_a_writer_holding_the_file_never_makes_a_read_wait_and_its_commit_shows_up_after(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    snapshot = snapshot_of(db_path)
    assert snapshot.read_rows("market_bars")["close"].tolist() == [100.0]

    # Another process opens the file for writing, changes it and keeps it open (as a long run step would).
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, duckdb
            conn = duckdb.connect({str(db_path)!r})
            conn.execute("UPDATE market_bars SET close = 200.0")
            print("holding", flush=True)
            sys.stdin.readline()
            conn.close()
            print("released", flush=True)
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        for _ in range(20):
            assert snapshot.read_rows("market_bars")["close"].tolist() == [100.0]  # the previous copy, at once
        assert time.monotonic() - started < 2.0  # no lock wait (DuckDB's own wait would be 30 s)
        assert snapshot.health()[0]
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.kill() if holder.poll() is None else None
        holder.wait()
    snapshot.refresh()
    assert snapshot.read_rows("market_bars")["close"].tolist() == [200.0]


def test_the_service_never_keeps_the_pipelines_file_open(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    populate(db_path)
    snapshot = snapshot_of(db_path)
    snapshot.start()
    for _ in range(5):
        snapshot.read_rows("predictions", ["symbol = ?"], ["AAPL"])
    # A writer in another process that refuses to wait at all gets the file.
    writer = subprocess.run(
        [sys.executable, "-c", f"import duckdb; duckdb.connect({str(db_path)!r}).execute('CHECKPOINT')"],
        capture_output=True, text=True, timeout=60,
    )
    assert writer.returncode == 0, writer.stderr


def test_cached_answers_are_copies_expire_with_the_ttl_and_go_with_new_data(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    clock = Clock()
    snapshot = snapshot_of(db_path, clock=clock, settings={"cache": CacheSettings(ttl_minutes=1)})
    first = snapshot.read_rows("market_bars")
    first.loc[0, "close"] = -1.0  # a caller changing its frame changes nobody else's
    assert snapshot.read_rows("market_bars")["close"].tolist() == [100.0]
    assert snapshot.cache_hits == 1

    clock.now += 61  # past the TTL: read again from the copy
    snapshot.read_rows("market_bars")
    assert snapshot.cache_hits == 1

    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 102.0)
    clock.now += 1  # past snapshot_min_copy_seconds
    assert snapshot.read_rows("market_bars")["close"].tolist() == [102.0]


def test_derived_answers_are_computed_once_per_copy_expire_with_the_ttl_and_go_with_new_data(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    clock = Clock()
    snapshot = snapshot_of(db_path, clock=clock, settings={"cache": CacheSettings(ttl_minutes=1)})
    computed: list[float] = []

    def close_body() -> bytes:
        close = float(snapshot.read_rows("market_bars")["close"].iloc[0])
        computed.append(close)
        return f"{close}".encode()

    assert snapshot.lookup("close", ("AAPL",), ("market_bars",)) is MISSING
    assert snapshot.derived("close", ("AAPL",), close_body, ("market_bars",)) == b"100.0"
    assert snapshot.derived("close", ("AAPL",), close_body, ("market_bars",)) == b"100.0"
    assert snapshot.lookup("close", ("AAPL",), ("market_bars",)) == b"100.0"
    assert computed == [100.0]
    assert snapshot.derived("close", ("MSFT",), close_body, ("market_bars",)) == b"100.0"  # other args: computed
    assert computed == [100.0, 100.0]

    clock.now += 61  # past the TTL
    assert snapshot.lookup("close", ("AAPL",), ("market_bars",)) is MISSING
    snapshot.derived("close", ("AAPL",), close_body, ("market_bars",))
    assert len(computed) == 3

    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 102.0)
    clock.now += 1  # past snapshot_min_copy_seconds
    assert snapshot.derived("close", ("AAPL",), close_body, ("market_bars",)) == b"102.0"


def test_derived_answers_from_predictions_are_not_cached_when_the_prediction_cache_is_off(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    snapshot = snapshot_of(db_path, settings={"cache": CacheSettings(enable_prediction_cache=False)})
    calls: list[str] = []
    for _ in range(2):
        snapshot.derived("p", (), lambda: calls.append("p") or b"x", ("predictions",))
        snapshot.derived("b", (), lambda: calls.append("b") or b"x", ("market_bars",))
    assert calls == ["p", "b", "p"]
    assert snapshot.lookup("p", (), ("predictions",)) is MISSING


def test_closing_deletes_the_private_copies(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    populate(db_path)
    snapshot = snapshot_of(db_path)
    snapshot.read_rows("market_bars")
    copies = tmp_path / "copies"
    assert any(copies.rglob("*.duckdb"))
    snapshot.close()
    assert not any(copies.rglob("*.duckdb"))


def test_a_file_of_a_newer_layout_is_reported_in_one_sentence_and_not_served(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    _write_bar(db_path, "AAPL", "2025-01-02 09:30", 100.0)
    import duckdb

    with duckdb.connect(str(db_path)) as conn:
        conn.execute("INSERT INTO schema_version (version, note) VALUES (?, 'future')", [SCHEMA_VERSION + 1])
    snapshot = snapshot_of(db_path)
    ok, sentence = snapshot.health()
    assert not ok and f"layout version {SCHEMA_VERSION + 1}" in sentence and sentence.count(". ") == 0
    assert snapshot.read_rows("market_bars").empty


def test_an_unknown_table_is_one_sentence_naming_the_tables(tmp_path, snapshot_of):
    with pytest.raises(ValueError, match=r"^Unknown table 'bars'; the registered tables are \["):
        snapshot_of(tmp_path / "pipeline.duckdb").read_rows("bars")


def test_on_postgres_reads_go_straight_to_the_database(postgres_url):
    from lstm_pipeline.settings import StorageSettings
    from lstm_pipeline.storage import database_for

    settings = Settings(storage=StorageSettings(backend="postgres", postgres_url=postgres_url))
    rows = _bar("AAPL", "2025-01-02 09:30", 100.0)
    database_for(settings).replace_tables({"market_bars": (rows[["symbol", "window_start"]], rows)})
    snapshot = ReadSnapshot(settings)
    try:
        assert snapshot.backend == "postgres"
        assert snapshot.read_rows("market_bars", ["symbol = ?"], ["AAPL"])["close"].tolist() == [100.0]
        database_for(settings).replace_tables({"market_bars": (rows[["symbol", "window_start"]],
                                                               rows.assign(close=101.0))})
        assert snapshot.read_rows("market_bars")["close"].tolist() == [101.0]
        assert snapshot.health() == (True, "The PostgreSQL store is readable.")
    finally:
        snapshot.close()


def test_copies_left_by_a_killed_service_are_removed_by_the_next_one(tmp_path, snapshot_of):
    db_path = tmp_path / "pipeline.duckdb"
    populate(db_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / "copies" / f".pipeline.duckdb.read-snapshot-{dead.pid}-abc"
    (orphan / "g1").mkdir(parents=True)
    (orphan / "g1" / "pipeline.duckdb").write_bytes(b"left behind")
    snapshot_of(db_path).read_rows("market_bars")
    assert not orphan.exists()
    assert len(list((tmp_path / "copies").iterdir())) == 1  # this service's own folder
