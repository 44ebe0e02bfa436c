"""Choosing the storage backend from the settings: ``database_for(settings)``.

``storage.backend`` "duckdb" (the default) keeps the tables in the embedded DuckDB file ``db_path``; "postgres"
in the PostgreSQL database ``storage.postgres_url`` (a secret: only its redacted form is ever printed). Nothing is
opened here: a missing file or an unreachable server is reported by the first read or write, in one sentence.
This module imports no Dagster.
"""

from __future__ import annotations

from typing import Any

from lstm_pipeline.settings import ConfigError, Settings
from lstm_pipeline.storage.database import PipelineDatabase
from lstm_pipeline.storage.postgres import URL_SETTING, PostgresDatabase

StorageBackend = PipelineDatabase | PostgresDatabase


def postgres_url_of(settings: Settings) -> str:
    """The configured PostgreSQL URL, refusing in one sentence a URL libpq cannot parse (never echoing it)."""
    secret = settings.storage.postgres_url
    url = secret.get_secret_value().strip() if secret is not None else ""
    if not url:
        raise ConfigError(
            f"storage.backend is 'postgres' but {URL_SETTING} is not set; set it to "
            "postgresql://USER:PASSWORD@HOST:5432/DATABASE or use backend 'duckdb'."
        )
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError; its message would echo the URL, password included
        raise ConfigError(
            f"{URL_SETTING} is not a valid PostgreSQL URL; write it as "
            "postgresql://USER:PASSWORD@HOST:5432/DATABASE (percent-encode special characters in the password)."
        ) from None
    return url


def database_for(settings: Settings, **options: Any) -> StorageBackend:
    """The pipeline's tables for these settings: the DuckDB file ``db_path`` or the PostgreSQL database."""
    if settings.storage.backend == "postgres":
        return PostgresDatabase(url=postgres_url_of(settings), **options)
    return PipelineDatabase(path=str(settings.db_path), **options)
