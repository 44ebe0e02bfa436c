"""backup, restore, export, retention, keys, backtest and update of ``lstm-pipeline`` in a real subprocess."""

import json

import pandas as pd
import pytest

from lstm_pipeline.operations.crypto import generate_key
from lstm_pipeline.storage import database_at
from tests.cli.conftest import run_cli


@pytest.fixture
def keyed(populated):
    populated["env"]["LSTM_PIPELINE_BACKUP_KEY"] = generate_key()
    return populated


def _json(result) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_backup_verifies_and_a_deleted_table_comes_back_with_restore(keyed):
    made = _json(run_cli(keyed, "backup", "--json"))
    assert made["verified"] is True and made["problems"] == [] and made["encrypted"] is True
    assert made["row_counts"]["predictions"] == 40
    (listed,) = _json(run_cli(keyed, "backup", "--list", "--json"))
    assert listed["backup_id"] == made["backup_id"] and listed["verified"] is True

    db = database_at(keyed["db_path"])
    before = db.read_rows("trade_recommendations")
    db.replace_tables({"trade_recommendations": (before[["symbol", "as_of_window"]], before.iloc[0:0])})
    assert db.read_rows("trade_recommendations").empty

    dry = _json(run_cli(keyed, "restore", "--table", "trade_recommendations", "--dry-run", "--json"))
    assert dry["row_counts"]["trade_recommendations"] == 2
    assert db.read_rows("trade_recommendations").empty
    _json(run_cli(keyed, "restore", "--table", "trade_recommendations", "--json"))
    rows = _json(run_cli(keyed, "recommendations", "--json"))
    assert {row["symbol"]: row["action"] for row in rows} == {"AAPL": "buy", "MSFT": "none"}


def test_backup_without_a_key_is_refused_in_one_sentence(populated):
    result = run_cli(populated, "backup")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "LSTM_PIPELINE_BACKUP_KEY" in result.stderr


def test_export_writes_the_chosen_format_with_a_manifest(populated, tmp_path):
    document = _json(run_cli(populated, "export", "--format", "json", "--symbols", "AAPL", "--json"))
    assert document["row_counts"]["predictions"] == 20
    assert all(str(path).endswith(".json") for path in document["files"].values())
    bad = run_cli(populated, "export", "--format", "xml")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_retention_dry_run_deletes_nothing(keyed):
    config = json.loads(keyed["config"].read_text())
    config["retention"] = {"predictions_days": 1}
    keyed["config"].write_text(json.dumps(config))
    result = run_cli(keyed, "retention", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout
    document = _json(run_cli(keyed, "retention", "--dry-run", "--json"))
    assert document["dry_run"] is True
    assert len(database_at(keyed["db_path"]).read_rows("predictions")) == 40


def test_keys_add_prints_the_key_once_and_stores_only_its_hash(populated):
    document = _json(run_cli(populated, "keys", "add", "--role", "operator", "--json"))
    assert document["role"] == "operator" and document["key"].startswith("lsp_")
    stored = (populated["tmp_path"] / "dagster_home" / "api_keys.json").read_text()
    assert document["key"] not in stored and "operator" in stored
    bad = run_cli(populated, "keys", "add", "--role", "admin")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "Role 'admin' is not a role; use --role reader or --role operator."


def test_backtest_takes_the_backtest_modules_options(populated):
    helped = run_cli(populated, "backtest", "--help")
    assert helped.returncode == 0 and "--bars" in helped.stdout and "--train-sessions" in helped.stdout
    missing = run_cli(populated, "backtest", "--bars", str(populated["tmp_path"] / "no_such_bars.csv"))
    assert missing.returncode == 2 and "no_such_bars.csv" in missing.stderr


def test_update_without_a_webserver_says_so_with_code_3(populated):
    result = run_cli(populated, "update", "AAPL")
    assert result.returncode == 3 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Dagster's webserver at http://127.0.0.1:9 is not reachable")
    bad_window = run_cli(populated, "update", "AAPL", "--window", "yesterday")
    assert bad_window.returncode == 2 and "Window 'yesterday' is not a window key" in bad_window.stderr


def _configure(populated, **sections) -> None:
    config = json.loads(populated["config"].read_text())
    config.update(sections)
    populated["config"].write_text(json.dumps(config))


def test_retention_really_deletes_and_prints_json(keyed):
    assert _json(run_cli(keyed, "backup", "--json"))["verified"] is True
    _configure(keyed, retention={"predictions_days": 1})

    deleted = run_cli(keyed, "retention")

    assert deleted.returncode == 0, deleted.stderr
    assert "predictions: deleted 40 row(s) in 4 symbol-window(s)" in deleted.stdout
    assert database_at(keyed["db_path"]).read_rows("predictions").empty
    _configure(keyed, retention={"predictions_days": 1, "raw_bars_days": 1})
    document = _json(run_cli(keyed, "retention", "--json"))
    assert document["dry_run"] is False and document["applied"] is True
    assert document["rows_by_table"] == {"market_bars": 52, "predictions": 0, "trade_recommendations": 0}
    assert document["partitions_by_table"]["market_bars"] == 52 and document["kept_without_verified_backup"] == {}
    assert database_at(keyed["db_path"]).read_rows("market_bars").empty


def test_restore_is_refused_while_a_run_of_the_instance_is_in_progress(keyed):
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    _json(run_cli(keyed, "backup", "--json"))
    home = keyed["tmp_path"] / "dagster_home"
    home.mkdir(exist_ok=True)
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_run(DagsterRun(job_name="market_bars_update", run_id="busy-run", status=DagsterRunStatus.STARTED))
    before = keyed["db_path"].read_bytes()

    refused = run_cli(keyed, "restore")

    assert refused.returncode != 0 and refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert "run busy-run of market_bars_update is in progress" in line and line.endswith("restore again.")
    assert keyed["db_path"].read_bytes() == before and not list(keyed["db_path"].parent.glob("*.before-restore-*"))
    model = run_cli(keyed, "restore", "--model", "AAPL")
    assert model.returncode != 0 and "busy-run" in model.stderr

    with DagsterInstance.from_config(str(home)) as instance:
        instance.delete_run("busy-run")
    # A window's bars written after the backup: no backup holds them, so the restore keeps them and says so.
    db = database_at(keyed["db_path"])
    late = db.read_rows("market_bars").iloc[[-1]].assign(window_start=lambda f: f["window_start"] + pd.Timedelta(
        days=1))
    db.replace_tables({"market_bars": (late[["symbol", "window_start"]], late)})
    restored = run_cli(keyed, "restore")
    assert restored.returncode == 0, restored.stderr
    assert "Note: Kept 1 row(s) from the current store whose partitions no backup holds (market_bars 1)" in (
        " ".join(restored.stdout.split()))
    assert len(db.read_rows("market_bars")) == 53


def test_export_uses_the_configured_default_format(populated):
    _configure(populated, exports={"dir": str(populated["tmp_path"] / "exports"), "default_format": "parquet"})
    document = _json(run_cli(populated, "export", "--json"))
    assert document["fmt"] == "parquet"
    assert all(str(path).endswith(".parquet") for path in document["files"].values())


def test_backup_saves_model_versions_and_restore_puts_one_back(keyed):
    models = keyed["tmp_path"] / "models"
    _configure(keyed, models_dir=str(models))
    folder = models / "AAPL"
    folder.mkdir(parents=True)
    (folder / "model_config.json").write_text(json.dumps({"version": "v1"}))
    (folder / "model.keras").write_bytes(b"first weights")
    assert _json(run_cli(keyed, "backup", "--json"))["models_saved"] == ["AAPL/v1"]
    (folder / "model_config.json").write_text(json.dumps({"version": "v2"}))
    (folder / "model.keras").write_bytes(b"retrained weights")
    assert _json(run_cli(keyed, "backup", "--json"))["models_saved"] == ["AAPL/v2"]

    restored = _json(run_cli(keyed, "restore", "--model", "AAPL@v1", "--json"))

    assert restored == {"symbol": "AAPL", "version": "v1", "path": str(folder)}
    assert (folder / "model.keras").read_bytes() == b"first weights"
    assert _json(run_cli(keyed, "restore", "--model", "aapl", "--json"))["version"] == "v2"  # newest saved
    assert (folder / "model.keras").read_bytes() == b"retrained weights"
    missing = run_cli(keyed, "restore", "--model", "MSFT")
    assert missing.returncode == 2 and missing.stderr.startswith("No model of MSFT has been saved")
    mixed = run_cli(keyed, "restore", "--model", "AAPL", "--table", "alerts")
    assert mixed.returncode == 2 and "--model restores a model folder on its own" in mixed.stderr
