"""POST /config never writes a secret (every SecretStr setting, found from the model), says when the environment
decides a changed key, and flushes the new file to disk before it replaces the old one."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from serving import config_store
from tests.serving.conftest import OPERATOR_KEY, make_service
from tests.serving.live import live_server

# Every secret of the settings as a user would send it, and the variable the answer must point to.
SECRETS = [
    ({"polygon_api_key": "pk-123"}, "polygon_api_key", "POLYGON_API_KEY"),
    ({"api": {"api_key": "k-123"}}, "api.api_key", "LSTM_PIPELINE_API_KEY"),
    ({"storage": {"postgres_url": "postgresql://u:hunter2@db:5432/x"}}, "storage.postgres_url",
     "LSTM_PIPELINE_POSTGRES_URL"),
    ({"alert_channels": {"webhook": {"secret": "hmac-hunter2"}}}, "alert_channels.webhook.secret",
     "LSTM_PIPELINE_WEBHOOK_SECRET"),
    ({"alert_channels": {"email": {"password": "smtp-hunter2"}}}, "alert_channels.email.password",
     "LSTM_PIPELINE_SMTP_PASSWORD"),
    ({"backups": {"key": "backup-hunter2"}}, "backups.key", "LSTM_PIPELINE_BACKUP_KEY"),
]


def test_every_secret_setting_is_refused_naming_the_key_and_its_environment_variable(service):
    before = service.config_path.read_bytes()
    with live_server(service.app()) as url, httpx.Client(base_url=url, headers={"X-API-Key": OPERATOR_KEY}) as c:
        for change, key, variable in SECRETS:
            answer = c.post("/config", json={**change, "confidence_threshold": 0.7})
            assert answer.status_code == 422, key
            detail = answer.json()["detail"]
            assert detail.startswith(f"'{key}' is a secret") and f"environment variable {variable}" in detail, detail
            assert "hunter2" not in answer.text
    assert service.config_path.read_bytes() == before  # nothing written, not even the harmless key beside it
    assert b"hunter2" not in b"".join(p.read_bytes() for p in service.written_files())


def test_the_secret_list_comes_from_the_settings_model_so_a_new_secret_is_refused_without_a_hand_list():
    class Channel(BaseModel):
        url: str = ""
        token: SecretStr | None = None

    class Config(BaseModel):
        name: str = ""
        channel: Channel = Channel()
        spare: Channel | None = None
        tokens: tuple[Channel, ...] = ()
        password: SecretStr | None = None

    assert config_store._secret_fields(Config) == ["channel.token", "spare.token", "tokens", "password"]
    assert set(config_store.secret_paths()) == {key for _, key, _ in SECRETS}


def test_a_key_the_environment_overrides_is_saved_and_the_answer_says_the_variable_decides(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db, extra_env={"LSTM_PIPELINE_API_PORT": "9100"})
    with live_server(service.app()) as url:
        answer = httpx.post(f"{url}/config", headers={"X-API-Key": OPERATOR_KEY}, json={"api": {"port": 8100}})
        audit = httpx.get(f"{url}/audit", headers={"X-API-Key": OPERATOR_KEY}).json()["items"]
    assert answer.status_code == 200
    body = answer.json()
    assert body["changes"] == []  # the port in effect is still the variable's
    assert body["overridden"] == [{"key": "api.port", "variable": "LSTM_PIPELINE_API_PORT"}]
    assert "LSTM_PIPELINE_API_PORT" in body["note"] and "'api.port'" in body["note"]
    assert json.loads(service.config_path.read_text())["api"]["port"] == 8100
    assert audit[0]["config_overridden"] == [{"key": "api.port", "variable": "LSTM_PIPELINE_API_PORT"}]


def test_the_new_file_and_its_folder_are_flushed_to_disk_before_and_after_it_replaces_the_old(service, monkeypatch):
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(handle: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{handle}")))
        real_fsync(handle)

    def replace(source, target) -> None:  # noqa: ANN001
        calls.append(("replace", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(config_store.os, "fsync", fsync)
    monkeypatch.setattr(config_store.os, "replace", replace)
    config_store.apply_change({"confidence_threshold": 0.66}, service.environ)
    target = str(service.config_path)
    at = calls.index(("replace", target))
    assert calls[at - 1][0] == "fsync" and calls[at - 1][1].startswith(str(service.config_path.parent / ".config."))
    assert calls[at + 1] == ("fsync", str(service.config_path.parent))


@pytest.mark.parametrize("change", [{"backups": {"key": None}}, {"storage": {"postgres_url": {"x": 1}}}])
def test_clearing_or_reshaping_a_secret_is_refused_too(service, change):
    with pytest.raises(config_store.ConfigRejected, match="is a secret"):
        config_store.apply_change(change, service.environ)
