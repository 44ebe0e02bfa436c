"""The Kubernetes deployment profile: the project's one ``Definitions``, each step a Kubernetes Job.

Loaded by the user-code deployment of Dagster's Helm chart (``deploy/k8s/values.yaml``: ``dagster api grpc -f
deploy/k8s/definitions.py``). The embedded default (``lstm_pipeline.definitions``) is unchanged; this code location
reuses its assets, checks, jobs, sensors, schedules and resources and swaps the executor for
``dagster_k8s.k8s_job_executor``: the ``K8sRunLauncher`` (configured in the chart's values) starts one pod per run,
and that run starts one pod per step.

What every step pod gets (``STEP_K8S_CONFIG``, checked against dagster-k8s's own config schema in
``tests/scaleout/test_k8s_config.py``):
- the event batching settings (``DAGSTER_EVENT_BATCH_SIZE``, ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``);
- the Secret ``lstm-pipeline-secrets`` (``LSTM_PIPELINE_POSTGRES_URL`` for the tables, ``POLYGON_API_KEY``);
- ``LSTM_PIPELINE_STORAGE_BACKEND=postgres``: pods on several nodes cannot share a DuckDB file;
- the models volume (a ReadWriteMany claim, ``lstm-pipeline-models``) at ``/opt/lstm/models`` =
  ``LSTM_PIPELINE_MODELS_DIR``, so a model trained by one pod serves in all.
"""

from dagster import Definitions
from dagster_k8s import k8s_job_executor

from lstm_pipeline.definitions import defs as embedded

SECRET = "lstm-pipeline-secrets"
MODELS_CLAIM = "lstm-pipeline-models"
MODELS_MOUNT = "/opt/lstm/models"

STEP_K8S_CONFIG: dict = {
    "env_vars": [
        "DAGSTER_EVENT_BATCH_SIZE=1000",
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1",
        "LSTM_PIPELINE_STORAGE_BACKEND=postgres",
        f"LSTM_PIPELINE_MODELS_DIR={MODELS_MOUNT}",
    ],
    "env_secrets": [SECRET],
    "volumes": [{"name": "models", "persistent_volume_claim": {"claim_name": MODELS_CLAIM}}],
    "volume_mounts": [{"name": "models", "mount_path": MODELS_MOUNT}],
    # Steps of one run that may run at once (the chain is sequential; training runs are per symbol).
    "max_concurrent": 4,
    "step_k8s_config": {
        "container_config": {"resources": {"requests": {"cpu": "1", "memory": "3Gi"}, "limits": {"memory": "6Gi"}}},
    },
}

executor = k8s_job_executor.configured(STEP_K8S_CONFIG, name="k8s")

defs = Definitions(
    assets=embedded.assets,
    asset_checks=embedded.asset_checks,
    jobs=embedded.jobs,
    schedules=embedded.schedules,
    sensors=embedded.sensors,
    resources=embedded.resources,
    executor=executor,
)
