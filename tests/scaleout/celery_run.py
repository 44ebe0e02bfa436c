"""Launches runs of the celery deployment profile (deploy/celery/definitions.py) as the run worker would.

Run in a child process whose environment is the profile's (DAGSTER_HOME on Postgres, the broker URLs, the
LSTM_PIPELINE_* settings the workers share):

    python -m tests.scaleout.celery_run WARMUP_FIRST WARMUP_LAST CHAIN_FIRST CHAIN_LAST

registers the windows, runs ``market_bars`` (+ checks) over the warm-up range, then the whole ``market_bars_update``
chain over the chain range, each for every configured symbol, and prints one JSON line: each run's id, whether
it succeeded, and which celery worker executed each step (from the run's engine events).
"""

from __future__ import annotations

import json
import sys
import warnings

warnings.filterwarnings("ignore")

from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job  # noqa: E402
from dagster._core.definitions.reconstruct import ReconstructableRepository  # noqa: E402

from lstm_pipeline.market.calendar import session_windows, window_key  # noqa: E402
from lstm_pipeline.partitions import partition_range_tags, register_session_windows  # noqa: E402
from lstm_pipeline.settings import PROJECT_ROOT, get_settings  # noqa: E402

PROFILE = PROJECT_ROOT / "deploy" / "celery" / "definitions.py"


def workers_by_step(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """The celery worker that executed each step, from the executor's engine events."""
    steps: dict[str, str] = {}
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records:
        event = record.event_log_entry.dagster_event
        metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
        if "Celery worker" in metadata and event.step_key:
            steps[event.step_key] = metadata["Celery worker"].value
    return steps


def main(warmup_first: str, warmup_last: str, chain_first: str, chain_last: str) -> None:
    symbols = get_settings().symbols
    keys = [window_key(stamp) for stamp in session_windows(warmup_first, chain_last)]
    instance = DagsterInstance.get()
    register_session_windows(instance, keys)
    job = ReconstructableRepository.for_file(str(PROFILE), "defs", str(PROJECT_ROOT)).get_reconstructable_job(
        "market_bars_update"
    )
    runs = []
    for first, last, selection in (
        (warmup_first, warmup_last, [AssetKey("market_bars")]),
        (chain_first, chain_last, None),
    ):
        window_keys = [window_key(stamp) for stamp in session_windows(first, last)]
        with execute_job(
            job,
            instance=instance,
            tags=partition_range_tags(symbols[0], symbols[-1], window_keys[0], window_keys[-1]),
            asset_selection=selection,
        ) as result:
            runs.append({"run_id": result.run_id, "success": result.success,
                         "workers": workers_by_step(instance, result.run_id)})
    print(json.dumps(runs))


if __name__ == "__main__":
    main(*sys.argv[1:5])
