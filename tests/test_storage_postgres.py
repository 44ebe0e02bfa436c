"""The PostgreSQL backend beyond what both backends share: concurrent writers, killed writers, its configuration.

All against the session's real PostgreSQL server (tests/postgres_server.py), never a mock.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import psycopg
import pytest
from dagster import EnvVar

from lstm_pipeline.market.calendar import session_windows
from lstm_pipeline.resources import build_resources
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import PROJECT_ROOT, ConfigError, load_settings
from lstm_pipeline.storage import (
    MARKET_BARS,
    SCHEMA_VERSION,
    TABLES,
    DatabaseAccessError,
    DatabaseLockedError,
    PipelineDatabase,
    PostgresDatabase,
    Replacement,
    database_for,
    redact_url,
)
from tests.postgres_server import _free_port

NY = "America/New_York"


def _bars(symbol: str, start: str, count: int, close: float = 100.0) -> pd.DataFrame:
    windows = pd.date_range(pd.Timestamp(start, tz=NY), periods=count, freq="15min")
    closes = close + np.arange(count, dtype=float)
    return pd.DataFrame({
        "symbol": symbol, "window_start": windows, "open": closes, "high": closes + 1, "low": closes - 1,
        "close": closes, "volume": np.arange(count) + 1000, "source": "test",
    })


def _partitions(bars: pd.DataFrame) -> list[tuple[str, pd.Timestamp]]:
    return list(zip(bars["symbol"], bars["window_start"], strict=True))


def _wait_for(condition, what: str, timeout_seconds: float = 60.0) -> None:
    """Poll ``condition`` (a state of another process, not a clock) until it holds."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _waiting_on_a_lock(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return count


# --------------------------------------------------------------------------------------- concurrent writers


def test_a_writer_mid_write_blocks_only_its_own_symbol_and_at_most_the_lock_timeout(postgres_url):
    database = PostgresDatabase(postgres_url)
    aapl, msft = _bars("AAPL", "2025-07-07 09:30", 4), _bars("MSFT", "2025-07-07 09:30", 4)
    database.replace_bars(pd.concat([aapl, msft]), _partitions(aapl) + _partitions(msft))

    # Another session holds AAPL's rows, so the next AAPL writer stops mid-write (inside its transaction, holding
    # AAPL's market_bars lock) until it lets go.
    holder = psycopg.connect(postgres_url)
    holder.execute("SELECT * FROM market_bars WHERE symbol = 'AAPL' FOR UPDATE").fetchall()
    new_aapl = aapl.assign(close=aapl["close"] + 50)
    mid_write = threading.Thread(target=database.replace_bars, args=(new_aapl, _partitions(aapl)))
    mid_write.start()
    try:
        _wait_for(lambda: _waiting_on_a_lock(postgres_url) == 1, "the AAPL writer to wait mid-write")
        impatient = PostgresDatabase(postgres_url, lock_timeout_seconds=0.5)
        # A writer of another symbol goes straight through, on the same table.
        impatient.replace_bars(msft.assign(close=1.0), _partitions(msft))
        assert impatient.read_bars("MSFT")["close"].tolist() == [1.0] * 4
        # A second writer of the same symbol waits at most its lock timeout, then says so in one sentence.
        with pytest.raises(DatabaseLockedError) as raised:
            impatient.replace_bars(aapl.assign(close=2.0), _partitions(aapl))
        message = str(raised.value)
        assert "Another writer held market_bars partitions" in message and "more than 0.5 s" in message
        assert message.count(". ") == 0 and message.endswith(".")
        # Readers take no lock and see the last committed rows meanwhile.
        assert impatient.read_bars("AAPL")["close"].tolist() == aapl["close"].tolist()
    finally:
        holder.rollback()
        holder.close()
        mid_write.join(timeout=60)
    assert database.read_bars("AAPL")["close"].tolist() == new_aapl["close"].tolist()


def test_concurrent_writers_of_the_same_partitions_never_duplicate_a_row(postgres_url):
    database = PostgresDatabase(postgres_url)
    bars = _bars("AAPL", "2025-07-07 09:30", 26)
    errors: list[BaseException] = []

    def rewrite(offset: float) -> None:
        try:
            for round_ in range(8):
                database.replace_bars(bars.assign(close=bars["close"] + offset + round_), _partitions(bars))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    writers = [threading.Thread(target=rewrite, args=(offset,)) for offset in (0.0, 1000.0, 2000.0)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert errors == []
    stored = database.read_bars("AAPL", include_rejected=True)
    assert len(stored) == 26 and not stored.duplicated(["symbol", "window_start"]).any()
    assert stored["close"].diff().dropna().eq(1.0).all()  # all rows from one writer's one write


def test_writers_starting_at_once_on_an_empty_database_create_the_tables_once(postgres_url):
    errors: list[BaseException] = []

    def first_write(symbol: str) -> None:
        try:
            bars = _bars(symbol, "2025-07-07 09:30", 3)
            PostgresDatabase(postgres_url).replace_bars(bars, _partitions(bars))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    writers = [threading.Thread(target=first_write, args=(symbol,)) for symbol in ("AAPL", "MSFT", "GOOGL", "AMZN")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert errors == []
    database = PostgresDatabase(postgres_url)
    assert len(database.read_bars()) == 12 and database.stored_version() == SCHEMA_VERSION
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
        tables = {name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()}
    assert set(TABLES) <= tables


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from lstm_pipeline.storage import MARKET_BARS, PostgresDatabase, Replacement

    count = int(sys.argv[2])
    windows = pd.date_range(pd.Timestamp("2020-01-02 09:30", tz="America/New_York"), periods=count, freq="15min")
    rows = pd.DataFrame({"symbol": "AAPL", "window_start": windows, "close": np.full(count, -1.0), "volume": 1,
                         "source": "killed"})
    keys = rows[["symbol", "window_start"]]
    PostgresDatabase(sys.argv[1]).replace(Replacement(MARKET_BARS, keys, rows))
    print("committed", flush=True)
    """
)


def test_a_writer_killed_mid_write_leaves_the_previous_rows(postgres_url):
    database = PostgresDatabase(postgres_url)
    previous = _bars("AAPL", "2020-01-02 09:30", 10)
    database.replace_bars(previous, _partitions(previous))
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, postgres_url, "300000"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def copying() -> bool:
        assert writer.poll() is None, f"the writer ended before it was killed: {writer.communicate()}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
                "AND query LIKE 'COPY market_bars %%'"
            ).fetchone() == (1,)

    try:
        _wait_for(copying, "the big replace to be inserting its rows")  # its DELETE of the old rows has run
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL and "committed" not in writer.stdout.read()

    stored = database.read_bars("AAPL", include_rejected=True)
    pd.testing.assert_frame_equal(stored, database.read_bars("AAPL"))
    assert stored["close"].tolist() == previous["close"].tolist()
    assert stored["window_start"].tolist() == previous["window_start"].tolist()
    # The killed writer's lock went with its session: the next writer of AAPL is not kept waiting.
    patient = PostgresDatabase(postgres_url, lock_timeout_seconds=10)
    patient.replace_bars(previous.assign(close=7.0), _partitions(previous))
    assert database.read_bars("AAPL")["close"].tolist() == [7.0] * 10


_MARKET_BARS_RUN = textwrap.dedent(
    """
    import sys
    from dagster import instance_for_test, materialize
    from lstm_pipeline.assets.market_bars import market_bars
    from lstm_pipeline.assets.market_bars_checks import market_bars_quality
    from lstm_pipeline.resources.market_data import SimulatedMarketData
    from lstm_pipeline.resources.storage import PipelineStore
    from tests.helpers import range_tags, register_windows

    url, symbol = sys.argv[1], sys.argv[2]
    with instance_for_test() as instance:
        keys = register_windows(instance, "2025-06-02", "2025-06-09")
        resources = {"market_data": SimulatedMarketData(seed=3), "store": PipelineStore.for_postgres(url)}
        print("ready", flush=True)
        sys.stdin.readline()  # both runs start together
        result = materialize([market_bars, market_bars_quality], instance=instance, tags=range_tags([symbol], keys),
                             resources=resources)
        print("success" if result.success else "failure", flush=True)
    """
)


@pytest.mark.slow
def test_two_concurrent_runs_writing_different_symbols_store_every_row_once(postgres_url):
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _MARKET_BARS_RUN, postgres_url, symbol],
            cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for symbol in ("AAPL", "MSFT")
    ]
    try:
        for run in runs:
            assert run.stdout.readline().strip() == "ready", run.stderr.read()[-3000:]
        for run in runs:
            run.stdin.write("go\n")
            run.stdin.flush()
        outcomes = [run.communicate(timeout=300) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    assert [out.strip() for out, _ in outcomes] == ["success", "success"], [err[-3000:] for _, err in outcomes]

    database = PostgresDatabase(postgres_url)
    windows = session_windows("2025-06-02", "2025-06-09")
    stored = database.read_bars(include_rejected=True)
    assert len(stored) == 2 * len(windows)
    assert not stored.duplicated(["symbol", "window_start"]).any()
    for symbol in ("AAPL", "MSFT"):
        assert database.read_bars(symbol)["window_start"].tolist() == list(windows)  # checked and promoted


# ------------------------------------------------------------------------------------------ configuration


def test_an_unreachable_server_is_one_sentence_naming_the_setting_without_the_password():
    url = f"postgresql://pipeline:s3cret-pw@127.0.0.1:{_free_port()}/pipeline"
    database = PostgresDatabase(url, connect_timeout_seconds=2)
    for action in (database.read_bars, lambda: database.replace_bars(_bars("AAPL", "2025-07-07 09:30", 1), [])):
        with pytest.raises(DatabaseAccessError) as raised:
            action()
        message = str(raised.value)
        assert "s3cret-pw" not in message and "postgresql://pipeline:***@127.0.0.1" in message
        assert "cannot be reached" in message and "storage.postgres_url (or LSTM_PIPELINE_POSTGRES_URL)" in message
        assert message.count(". ") == 0 and message.endswith(".")
    assert "s3cret-pw" not in repr(database)


def test_a_missing_database_on_a_running_server_says_so(postgres_server):
    url = postgres_server.url("no_such_database")
    with pytest.raises(DatabaseAccessError, match=r'database "no_such_database" does not exist\); start that server'):
        PostgresDatabase(url).read_bars()


def test_the_backend_is_chosen_in_config_and_the_url_never_shows(tmp_path, postgres_url):
    secret_url = postgres_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores the password
    environ = {"LSTM_PIPELINE_STORAGE_BACKEND": "postgres", "LSTM_PIPELINE_POSTGRES_URL": secret_url,
               "LSTM_PIPELINE_DB_PATH": str(tmp_path / "beside" / "pipeline.duckdb")}
    settings = load_settings(environ=environ)
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    database = database_for(settings)
    assert isinstance(database, PostgresDatabase) and "hunter2" not in repr(database)
    assert database.describe() == f"PostgreSQL database {redact_url(secret_url)}" and "***" in database.describe()

    store = build_resources(settings)["store"]
    assert isinstance(store, PipelineStore) and store.backend == "postgres"
    assert store.postgres_url == EnvVar("LSTM_PIPELINE_POSTGRES_URL")  # the UI shows the variable, not the URL
    bars = _bars("AAPL", "2025-07-07 09:30", 2)
    database.replace_bars(bars, _partitions(bars))
    assert PipelineStore.for_postgres(secret_url).read_bars("AAPL")["close"].tolist() == bars["close"].tolist()
    assert not (tmp_path / "beside").exists()  # nothing was written to the DuckDB path

    default = load_settings(environ={"LSTM_PIPELINE_DB_PATH": str(tmp_path / "p.duckdb")})
    assert default.storage.backend == "duckdb" and isinstance(database_for(default), PipelineDatabase)
    assert build_resources(default)["store"].backend == "duckdb"


def test_a_bad_postgres_setting_is_one_sentence_naming_it_and_the_fix():
    with pytest.raises(ConfigError, match=r"backend 'postgres' needs storage.postgres_url; set it or export "
                                          r"LSTM_PIPELINE_POSTGRES_URL="):
        load_settings(environ={"LSTM_PIPELINE_STORAGE_BACKEND": "postgres"})
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"LSTM_PIPELINE_POSTGRES_URL": "mysql://root:topsecret@db/pipeline"})
    assert "topsecret" not in str(raised.value)
    assert "LSTM_PIPELINE_POSTGRES_URL: 'storage.postgres_url' is invalid: it must be a URL like postgresql://" in str(
        raised.value
    )
    settings = load_settings(environ={
        "LSTM_PIPELINE_STORAGE_BACKEND": "postgres",
        "LSTM_PIPELINE_POSTGRES_URL": "postgresql://u:topsecret@db/pipeline?no_such_option=1",
    })
    with pytest.raises(ConfigError) as raised:
        build_resources(settings)
    message = str(raised.value)
    assert "topsecret" not in message and message.count(". ") == 0
    assert message.startswith("storage.postgres_url (or LSTM_PIPELINE_POSTGRES_URL) is not a valid PostgreSQL URL")


def test_sql_with_question_marks_and_percents_reads_the_same_as_on_duckdb(postgres_url, tmp_path):
    frames = []
    for database in (PipelineDatabase(str(tmp_path / "q.duckdb")), PostgresDatabase(postgres_url)):
        keys = pd.DataFrame({"source": ["alerts", "alerts"], "symbol": ["AAPL", "MSFT"],
                             "as_of_window": [pd.Timestamp("2025-07-07 10:00", tz=NY)] * 2})
        rows = keys.assign(kind=["k?", "k"], severity="warning", message=["50% up?", "fine"])
        database.replace_tables({"alerts": (keys, rows)})
        frames.append(database.read_rows("alerts", ["message LIKE '%?'", "symbol IN (?, ?)"], ["AAPL", "MSFT"]))
    assert frames[0]["message"].tolist() == frames[1]["message"].tolist() == ["50% up?"]


def test_replacing_many_partitions_is_one_transaction_with_few_locks(postgres_url):
    """A year of one symbol's bars replaced in one write: one lock per table and symbol, not per window."""
    database = PostgresDatabase(postgres_url)
    bars = _bars("AAPL", "2024-01-02 09:30", 26 * 252)
    keys = bars[["symbol", "window_start"]]
    database.replace(Replacement(MARKET_BARS, keys, bars))
    database.replace(Replacement(MARKET_BARS, keys, bars.assign(close=1.0)))
    stored = database.read_bars("AAPL")
    assert len(stored) == 26 * 252 and set(stored["close"]) == {1.0}


@pytest.mark.parametrize("url_from", ["environment", "config file"])
def test_a_run_writes_to_postgres_with_the_url_from_the_environment_or_the_config_file(
    url_from, postgres_url, tmp_path, monkeypatch, instance
):
    from dagster import materialize

    from lstm_pipeline.assets.market_bars import market_bars
    from lstm_pipeline.partitions import market_bars_key
    from lstm_pipeline.resources.market_data import SimulatedMarketData
    from lstm_pipeline.settings import get_settings
    from tests.helpers import register_windows

    config = tmp_path / "config.json"
    storage = {"backend": "postgres"}
    if url_from == "config file":
        storage["postgres_url"] = postgres_url
    else:
        monkeypatch.setenv("LSTM_PIPELINE_POSTGRES_URL", postgres_url)
    config.write_text(__import__("json").dumps({"storage": storage, "db_path": str(tmp_path / "p.duckdb")}))
    monkeypatch.setenv("LSTM_PIPELINE_CONFIG", str(config))
    get_settings.cache_clear()
    try:
        store = build_resources(get_settings())["store"]
        assert store.postgres_url_from_config == (url_from == "config file")
        keys = register_windows(instance, "2025-07-07", "2025-07-08")
        result = materialize(
            [market_bars], instance=instance, partition_key=str(market_bars_key("AAPL", keys[0])),
            resources={"market_data": SimulatedMarketData(seed=7), "store": store},
        )
    finally:
        get_settings.cache_clear()
    assert result.success
    assert len(PostgresDatabase(postgres_url).read_bars("AAPL", include_rejected=True)) == 1
    assert not (tmp_path / "p.duckdb").exists()
