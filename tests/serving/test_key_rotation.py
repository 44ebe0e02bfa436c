"""Rotating keys without a restart: the running service follows the key file beside the instance and the config
file's api.keys, and the dashboard's login page names the command that really mints a reader key."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from lstm_pipeline.cli.app import app as cli
from serving.keys import hash_key, issue_key, revoke_key
from tests.serving.conftest import OPERATOR_KEY
from tests.serving.live import live_server


def test_a_key_added_to_the_key_file_works_at_once_and_stops_working_once_removed(service):
    with live_server(service.app()) as url, httpx.Client(base_url=url) as client:
        key = issue_key("reader", environ=service.environ, key_id="screen-2")
        assert client.get("/status", headers={"X-API-Key": key}).status_code == 200
        assert client.get("/audit", headers={"X-API-Key": key}).status_code == 403  # with its role
        assert revoke_key("screen-2", environ=service.environ)
        assert client.get("/status", headers={"X-API-Key": key}).status_code == 403


def test_a_key_added_to_api_keys_through_post_config_works_at_once_and_stops_once_removed(service):
    new_key = "a-rotated-reader-key-0123456789abcdef"
    entry = {"id": "rotated", "role": "reader", "sha256": hash_key(new_key)}
    with live_server(service.app()) as url, httpx.Client(base_url=url) as client:
        operator = {"X-API-Key": OPERATOR_KEY}
        assert client.get("/status", headers={"X-API-Key": new_key}).status_code == 403
        assert client.post("/config", headers=operator, json={"api": {"keys": [entry]}}).status_code == 200
        assert client.get("/status", headers={"X-API-Key": new_key}).status_code == 200
        assert client.post("/config", headers=operator, json={"api": {"keys": []}}).status_code == 200
        assert client.get("/status", headers={"X-API-Key": new_key}).status_code == 403
        # A config file broken by hand keeps the keys as they were (and the old ones keep working).
        service.config_path.write_text("{ not json")
        assert client.get("/status", headers=operator).status_code == 200


def test_the_login_page_names_the_real_command_and_the_key_it_mints_opens_the_running_dashboard(service):
    with live_server(service.app()) as url, httpx.Client(base_url=url) as client:
        refused = client.post("/login", data={"key": "not-a-key"})
        assert refused.status_code == 403
        assert "lstm-pipeline keys add --role reader" in refused.text
        result = CliRunner().invoke(cli, ["keys", "add", "--role", "reader"], env=service.environ)
        assert result.exit_code == 0, result.output
        key = result.output.rsplit(": ", 1)[1].strip()
        assert client.post("/login", data={"key": key}).status_code == 303
        assert client.get("/dashboard/data").status_code == 200
