"""Shared fixtures: a temporary Dagster instance, the pipeline's store on each storage backend, resources on them.

Every test that takes the ``store`` fixture runs twice, ids ``[duckdb]`` and ``[postgres]``: on a temporary DuckDB
file, then on a fresh database of the session's PostgreSQL server (``postgres_server``). A test (or module, through
``pytestmark``) that is about one backend only says so with ``@pytest.mark.store_backends("duckdb")`` and a comment
saying why.
"""

import warnings

import pytest
from dagster import BetaWarning, PreviewWarning, instance_for_test

from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.storage import PipelineStore

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)


@pytest.fixture
def instance():
    with instance_for_test() as dagster_instance:
        yield dagster_instance


STORE_BACKENDS = ("duckdb", "postgres")
"""The backends every ``store`` test runs on, unless marked ``store_backends(...)``."""
BACKENDS_CHOSEN_ELSEWHERE = ("tests/scaleout/",)
"""Folders whose ``store`` tests are about something else (the Dagster instance profile): the default backend."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "store_backends(*names): the storage backends the `store` fixture runs this test on (default: duckdb and "
        "postgres); say why in a comment",
    )


def pytest_generate_tests(metafunc):
    """Parametrize ``store`` over the backends: ids ``duckdb`` / ``postgres``."""
    if "store" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("store_backends")
    if marker is not None:
        backends = marker.args
    elif any(folder in metafunc.definition.nodeid for folder in BACKENDS_CHOSEN_ELSEWHERE):
        backends = STORE_BACKENDS[:1]
    else:
        backends = STORE_BACKENDS
    unknown = set(backends) - set(STORE_BACKENDS)
    if unknown:
        raise pytest.UsageError(f"store_backends names {sorted(unknown)}; use some of {list(STORE_BACKENDS)}.")
    metafunc.parametrize("store_backend_name", backends, indirect=True, ids=list(backends))


@pytest.fixture
def store_backend_name(request) -> str:
    """``"duckdb"`` or ``"postgres"``: the backend of this test's ``store`` (set by ``pytest_generate_tests``)."""
    return getattr(request, "param", STORE_BACKENDS[0])


@pytest.fixture
def db_path(tmp_path):
    """The DuckDB file of a ``[duckdb]`` store; on PostgreSQL only its folder is used (files kept beside the data)."""
    return tmp_path / "bars.duckdb"


@pytest.fixture
def store(request, store_backend_name, db_path) -> PipelineStore:
    """The pipeline's store (resource key ``"store"``): a temporary DuckDB file, or a fresh PostgreSQL database."""
    if store_backend_name == "postgres":
        return PipelineStore.for_postgres(request.getfixturevalue("postgres_url"), files_beside=db_path)
    return PipelineStore.for_path(db_path)


@pytest.fixture
def simulated() -> SimulatedMarketData:
    return SimulatedMarketData(seed=7)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the whole session (tests/postgres_server.py), stopped at the end."""
    from tests.postgres_server import PostgresServer

    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a fresh, empty database on the session's PostgreSQL server (one per test, dropped after it)."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["duckdb", "postgres"])
def storage_backend(request, tmp_path):
    """The project's tables on each backend in turn: a new DuckDB file, then a new database on the session's
    PostgreSQL server (``PipelineDatabase`` / ``PostgresDatabase``, one API)."""
    from lstm_pipeline.storage import PipelineDatabase, PostgresDatabase

    if request.param == "duckdb":
        return PipelineDatabase(str(tmp_path / "pipeline.duckdb"))
    return PostgresDatabase(request.getfixturevalue("postgres_url"))
