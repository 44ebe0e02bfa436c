"""backup, restore, export, retention, keys, backtest and update of ``lstm-pipeline`` in a real subprocess."""

import json

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
