"""The Kubernetes deployment profile's configuration, checked with dagster-k8s's own config schema (no cluster here).

- deploy/k8s/dagster-instance.yaml: its ``run_launcher`` block against ``K8sRunLauncher.config_type()``, and the
  whole file as a Dagster instance config;
- deploy/k8s/definitions.py: its ``k8s_job_executor`` config against the executor's schema, and every job of the
  code location on that executor;
- deploy/k8s/values.yaml (Dagster's Helm chart): the batching settings reach every process that creates or executes
  runs, and the run launcher's keys are ones the chart's K8sRunLauncher values accept.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster_k8s import K8sRunLauncher, k8s_job_executor

from lstm_pipeline.settings import PROJECT_ROOT

K8S = PROJECT_ROOT / "deploy" / "k8s"
BATCHING = {"DAGSTER_EVENT_BATCH_SIZE": "1000", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}
# The chart's K8sRunLauncher values (helm/dagster/schema/.../subschema/run_launcher.py, K8sRunLauncherConfig).
CHART_K8S_RUN_LAUNCHER_KEYS = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
    "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
    "schedulerName", "securityContext", "runK8sConfig",
}


def _errors(result) -> list[str]:
    return [error.message for error in (result.errors or [])]


def _env_list(entries: list[str]) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


@pytest.fixture(scope="module")
def instance_yaml() -> dict:
    return yaml.safe_load((K8S / "dagster-instance.yaml").read_text())


def test_the_run_launcher_config_passes_dagster_k8s_schema_with_the_batching_settings(instance_yaml):
    launcher = instance_yaml["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, _errors(result)
    assert BATCHING.items() <= _env_list(result.value["env_vars"]).items()
    assert result.value["env_secrets"] == ["lstm-pipeline-secrets"]
    # A wrong key is refused by the same schema: the check above can fail.
    assert not process_config(K8sRunLauncher.config_type(), {**launcher["config"], "env_var": []}).success


def test_the_instance_file_is_a_valid_dagster_instance_config_on_postgres(instance_yaml):
    result = validate_config(dagster_instance_config_schema(), instance_yaml)
    assert result.success, _errors(result)
    assert instance_yaml["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


def test_the_k8s_code_location_runs_every_job_on_the_k8s_job_executor_with_valid_step_config(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_PIPELINE_DB_PATH", str(tmp_path / "tables.duckdb"))
    namespace = runpy.run_path(str(K8S / "definitions.py"))
    step_config = namespace["STEP_K8S_CONFIG"]
    result = process_config(k8s_job_executor.config_schema.config_type, step_config)
    assert result.success, _errors(result)
    env = _env_list(result.value["env_vars"])
    assert BATCHING.items() <= env.items() and env["LSTM_PIPELINE_STORAGE_BACKEND"] == "postgres"
    mounts = {mount["name"]: mount["mount_path"] for mount in step_config["volume_mounts"]}
    assert env["LSTM_PIPELINE_MODELS_DIR"] == mounts["models"]  # the shared model store is the mounted volume
    defs = namespace["defs"]
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        assert job.executor_def.name == "k8s", job.name
    assert "market_bars_update" in {job.name for job in defs.resolve_all_job_defs()}


def test_the_helm_values_give_every_run_creating_process_the_batching_settings():
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    assert BATCHING.items() <= values["dagsterWebserver"]["env"].items()
    assert BATCHING.items() <= values["dagsterDaemon"]["env"].items()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert BATCHING.items() <= deployment["env"].items()
    assert deployment["dagsterApiGrpcArgs"][1] == "/opt/lstm/deploy/k8s/definitions.py"
    assert Path(PROJECT_ROOT / deployment["dagsterApiGrpcArgs"][1].removeprefix("/opt/lstm/")).exists()
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert set(k8s) <= CHART_K8S_RUN_LAUNCHER_KEYS
    assert BATCHING.items() <= _env_list(k8s["envVars"]).items()
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
