"""The celery deployment profile: the project's one ``Definitions``, with every step executed by celery workers.

The embedded default (``lstm_pipeline.definitions``: in-process executor, SQLite instance, DuckDB tables) is
unchanged; this code location reuses its assets, checks, jobs, sensors, schedules and resources as they are and only
swaps the executor for ``dagster_celery.celery_executor``, so each step of a run (``market_bars``, its checks,
``predictions`` ... ``alerts``) is a celery task that any worker listening on the broker may take, on this or
another machine. The broker and result backend come from the environment (``DAGSTER_CELERY_BROKER_URL``,
``DAGSTER_CELERY_BACKEND_URL``; ``deploy/celery/local-redis.sh`` writes them for a local Redis), so no password is
part of the run config the UI shows.

Requirements the workers share with the process that launches the run:
- a persistent Dagster instance every worker reaches (the Postgres profile: ``deploy/postgres/``), since workers
  write each step's events to it;
- the same code and settings (``LSTM_PIPELINE_*``: symbols, tables, ``models_dir``); with workers on several
  machines ``models_dir`` is a shared folder (NFS, a mounted bucket) so a model trained on one worker serves on all,
  and the tables use ``storage.backend = "postgres"`` (DuckDB is one file on one machine and takes one writer).

    dagster dev -w deploy/celery/workspace.yaml          # after sourcing the profile's env files, see deploy/README.md
"""

from dagster import Definitions
from dagster_celery import celery_executor

from lstm_pipeline.definitions import defs as embedded

BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
BACKEND_ENV = "DAGSTER_CELERY_BACKEND_URL"

executor = celery_executor.configured(
    {
        "broker": {"env": BROKER_ENV},
        "backend": {"env": BACKEND_ENV},
        # A step runs on one worker at a time; a worker that dies mid-step loses the task instead of re-running it
        # on another behind Dagster's back (Dagster's own step retries decide).
        "config_source": {"task_acks_late": False, "worker_prefetch_multiplier": 1},
    },
    name="celery",
)

defs = Definitions(
    assets=embedded.assets,
    asset_checks=embedded.asset_checks,
    jobs=embedded.jobs,
    schedules=embedded.schedules,
    sensors=embedded.sensors,
    resources=embedded.resources,
    executor=executor,
)
