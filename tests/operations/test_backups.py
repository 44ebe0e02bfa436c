"""Backups: encrypted and authenticated, verified by restoring into a scratch DuckDB, refused without a key."""

import json

import pandas as pd
import pytest

from lstm_pipeline.operations.backups import (
    MANIFEST,
    backup_models,
    create_backup,
    list_backups,
    load_backup,
    restore_model,
    verify_backup,
)
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.restore import restore
from lstm_pipeline.storage import database_at


def test_backup_holds_exactly_the_rows_of_its_partitions(settings, populated, day_windows):
    chosen = [("AAPL", day_windows[0]), ("MSFT", day_windows[5])]
    result = create_backup(settings, chosen)

    assert result.encrypted and result.partitions == 2 and not result.full
    loaded = load_backup(settings, result.backup_id)
    bars = loaded.tables["market_bars"]
    assert sorted(zip(bars["symbol"], bars["window_start"], strict=True)) == sorted(chosen)
    predictions = loaded.tables["predictions"]
    assert set(zip(predictions["symbol"], predictions["as_of_window"], strict=True)) == set(chosen)
    assert len(predictions) == 2 * 4
    # Encrypted on disk: no Parquet magic bytes, and a manifest with SHA-256s and the schema version.
    data = (result.path / "market_bars.parquet.enc").read_bytes()
    assert b"PAR1" not in data[:64]
    manifest = json.loads((result.path / MANIFEST).read_text())
    assert manifest["encrypted"] and manifest["schema_version"] >= 4
    assert len(manifest["tables"]["market_bars"]["sha256"]) == 64 and manifest["tables"]["market_bars"]["rows"] == 2


def test_a_new_backup_verifies(settings, populated):
    result = create_backup(settings)
    verified = verify_backup(settings, result.backup_id)
    assert verified.ok, verified.problems
    assert verified.row_counts["market_bars"] == len(populated["market_bars"])
    assert [info.verified for info in list_backups(settings)] == [True]


def test_one_tampered_byte_fails_authentication(settings, populated):
    result = create_backup(settings)
    target = result.path / "predictions.parquet.enc"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    verified = verify_backup(settings, result.backup_id)

    assert not verified.ok
    assert "predictions.parquet.enc" in verified.problems[0] and "fails authentication" in verified.problems[0]
    assert [info.verified for info in list_backups(settings)] == [False]


def test_a_truncated_file_fails_authentication(settings, populated):
    result = create_backup(settings)
    target = result.path / "market_bars.parquet.enc"
    target.write_bytes(target.read_bytes()[:-100])
    verified = verify_backup(settings, result.backup_id)
    assert not verified.ok and "fails authentication" in verified.problems[0]


def test_an_edited_manifest_fails_authentication(settings, populated):
    result = create_backup(settings)
    manifest = json.loads((result.path / MANIFEST).read_text())
    manifest["tables"]["market_bars"]["rows"] += 1
    (result.path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    verified = verify_backup(settings, result.backup_id)
    assert not verified.ok and "manifest" in verified.problems[0] and "fails authentication" in verified.problems[0]


def test_another_key_cannot_read_the_backup(settings, make_settings, populated):
    result = create_backup(settings)
    from lstm_pipeline.operations.crypto import generate_key

    other = make_settings(key=generate_key())
    verified = verify_backup(other, result.backup_id)
    assert not verified.ok and "fails authentication" in verified.problems[0]


def test_without_a_key_the_backup_is_refused_in_one_sentence(make_settings, populated):
    settings = make_settings(key=None)
    with pytest.raises(OperationError) as raised:
        create_backup(settings)
    message = str(raised.value)
    assert "LSTM_PIPELINE_BACKUP_KEY" in message and "allow_unencrypted" in message and message.count(". ") == 0
    assert not (settings.backups.dir).exists() or not any(settings.backups.dir.iterdir())


def test_unencrypted_only_when_the_config_says_so_and_labelled(make_settings, populated):
    settings = make_settings(key=None, backups={"allow_unencrypted": True})
    result = create_backup(settings)
    assert not result.encrypted
    manifest = json.loads((result.path / MANIFEST).read_text())
    assert manifest["encrypted"] is False and manifest["cipher"] is None
    assert (result.path / "market_bars.parquet").read_bytes()[:4] == b"PAR1"
    assert verify_backup(settings, result.backup_id).ok
    # Plain files still carry their SHA-256: a changed byte is caught.
    target = result.path / "market_bars.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    problems = verify_backup(settings, result.backup_id).problems
    assert problems and "SHA-256" in problems[0]


@pytest.mark.parametrize("bad_key", ["not base64!!", "c2hvcnQ="])
def test_a_malformed_key_is_named_in_one_sentence(make_settings, populated, bad_key):
    settings = make_settings(key=bad_key)
    with pytest.raises(OperationError, match="backup key .*LSTM_PIPELINE_BACKUP_KEY"):
        create_backup(settings)


def test_model_folders_are_saved_once_per_version(settings, tmp_path):
    folder = settings.models_dir / "AAPL"
    folder.mkdir(parents=True)
    (folder / "model_config.json").write_text(json.dumps({"version": "abc123"}))
    (folder / "model.keras").write_bytes(b"weights")
    assert backup_models(settings) == ["AAPL/abc123"]
    assert backup_models(settings) == []
    saved = settings.backups.dir / "models" / "AAPL" / "abc123.tar.enc"
    assert saved.is_file() and b"weights" not in saved.read_bytes()
    (folder / "model_config.json").write_text(json.dumps({"version": "def456"}))
    (folder / "model.keras").write_bytes(b"retrained")
    assert backup_models(settings) == ["AAPL/def456"]

    assert restore_model(settings, "AAPL", "abc123") == folder
    assert (folder / "model.keras").read_bytes() == b"weights"
    assert json.loads((folder / "model_config.json").read_text()) == {"version": "abc123"}
    # Restores in quick succession (well within one second) each keep the folder they replace.
    assert restore_model(settings, "AAPL", "def456") == folder
    assert restore_model(settings, "AAPL", "abc123") == folder
    kept = sorted(settings.models_dir.glob(".AAPL.before-restore-*"))
    assert [(path / "model.keras").read_bytes() for path in kept] == [b"retrained", b"weights", b"retrained"]
    with pytest.raises(OperationError, match="no saved model AAPL/zzz"):
        restore_model(settings, "AAPL", "zzz")
    for symbol, version in (("AAPL", "../../abc123"), ("../AAPL", "abc123")):
        with pytest.raises(OperationError, match="does not name a saved model"):
            restore_model(settings, symbol, version)


def test_backups_read_through_the_storage_layer_only(settings, populated, day_windows):
    # A row written after the backup is not in it; the backup is a snapshot of what the store said.
    result = create_backup(settings, [("AAPL", day_windows[0])])
    extra = populated["market_bars"].iloc[[0]].assign(close=1.0)
    database_at(settings.db_path).replace_tables({"market_bars": (extra[["symbol", "window_start"]], extra)})
    bars = load_backup(settings, result.backup_id).tables["market_bars"]
    assert bars["close"].tolist() == [populated["market_bars"]["close"].iloc[0]]
    assert isinstance(bars["window_start"].iloc[0], pd.Timestamp)


def test_with_a_key_an_unencrypted_backup_is_refused_unless_the_config_allows_them(make_settings, populated):
    # Someone able to write to the backups folder plants an unsigned backup that says "encrypted": false.
    planted = create_backup(make_settings(key=None, backups={"allow_unencrypted": True}))
    keyed = make_settings()

    for attempt in (lambda: list_backups(keyed), lambda: load_backup(keyed, planted.backup_id),
                    lambda: restore(keyed)):
        with pytest.raises(OperationError) as raised:
            attempt()
        message = str(raised.value)
        assert str(planted.path) in message and "not encrypted" in message and "allow_unencrypted" in message
        assert message.count(". ") == 0
    assert not verify_backup(keyed, planted.backup_id).ok

    allowed = make_settings(backups={"allow_unencrypted": True})
    assert [info.backup_id for info in list_backups(allowed)] == [planted.backup_id]
    assert verify_backup(allowed, planted.backup_id).ok


def test_with_a_key_an_unencrypted_model_backup_is_refused(make_settings, tmp_path):
    plain = make_settings(key=None, backups={"allow_unencrypted": True})
    folder = plain.models_dir / "AAPL"
    folder.mkdir(parents=True)
    (folder / "model_config.json").write_text(json.dumps({"version": "planted"}))
    assert backup_models(plain) == ["AAPL/planted"]

    with pytest.raises(OperationError, match="model backup .*planted.tar is not encrypted"):
        restore_model(make_settings(), "AAPL", "planted")
    assert restore_model(make_settings(backups={"allow_unencrypted": True}), "AAPL") == folder
