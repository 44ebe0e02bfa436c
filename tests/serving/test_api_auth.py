"""Keys, roles, the rate limit and CORS, over HTTP against a real uvicorn server (the README's auth table)."""

from __future__ import annotations

import json
import stat

import httpx
import pytest

from serving.keys import hash_key, issue_key, key_file_path
from tests.serving.conftest import OPERATOR_KEY, READER_KEY, make_service
from tests.serving.live import live_server

READER_ENDPOINTS = [
    ("GET", "/status"), ("GET", "/config"), ("GET", "/predictions"), ("GET", "/predictions/AAPL"),
    ("GET", "/recommendations"), ("GET", "/recommendations/AAPL"), ("GET", "/performance"),
    ("GET", "/performance/AAPL"), ("GET", "/alerts"), ("GET", "/dashboard/data"),
]
OPERATOR_ENDPOINTS = [("POST", "/config"), ("POST", "/control/update"), ("POST", "/control/update/AAPL"),
                      ("GET", "/audit"), ("POST", "/alerts/prediction_error:MSFT/ack"),
                      ("POST", "/alerts/prediction_error:MSFT/resolve")]
# POST /control/... and the alert actions with an operator key reach Dagster; here none runs: 503 (past auth).
OPERATOR_OK = {endpoint: 503 for endpoint in OPERATOR_ENDPOINTS if endpoint[0] == "POST" and endpoint[1] != "/config"}
TEMPLATES = {"AAPL": "{symbol}", "prediction_error:MSFT": "{alert_key}"}


def _template(path: str) -> str:
    for concrete, template in TEMPLATES.items():
        path = path.replace(concrete, template)
    return path


def _call(client: httpx.Client, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    body = {"confidence_threshold": 0.61} if path == "/config" and method == "POST" else None
    return client.request(method, path, headers=headers, json=body)


def test_each_endpoint_and_role_gets_the_status_of_the_readme_table(service):
    with live_server(service.app()) as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").status_code == 200
        for method, path in READER_ENDPOINTS:
            assert _call(client, method, path, None).status_code == 401, path
            assert _call(client, method, path, "not-a-key").status_code == 403, path
            assert _call(client, method, path, READER_KEY).status_code == 200, path
            assert _call(client, method, path, OPERATOR_KEY).status_code == 200, path
        for method, path in OPERATOR_ENDPOINTS:
            assert _call(client, method, path, None).status_code == 401, path
            assert _call(client, method, path, "not-a-key").status_code == 403, path
            refused = _call(client, method, path, READER_KEY)
            assert refused.status_code == 403, path
            assert "needs a key with the operator role" in refused.json()["detail"]
            assert _call(client, method, path, OPERATOR_KEY).status_code == OPERATOR_OK.get((method, path), 200)


def test_the_dashboard_cookie_is_accepted_like_the_header(service):
    with live_server(service.app()) as url, httpx.Client(base_url=url) as client:
        client.cookies.set("lstm_pipeline_key", READER_KEY)
        assert client.get("/predictions/AAPL").status_code == 200
        client.cookies.set("lstm_pipeline_key", "wrong")
        assert client.get("/predictions/AAPL").status_code == 403


def test_the_openapi_document_names_the_security_schemes_and_each_operations_role(service):
    with live_server(service.app()) as url:
        document = httpx.get(f"{url}/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert (schemes["ApiKeyHeader"]["type"], schemes["ApiKeyHeader"]["in"]) == ("apiKey", "header")
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"
    assert schemes["ApiKeyCookie"]["in"] == "cookie"
    roles = {(m.upper(), p): op["x-required-role"] for p, ops in document["paths"].items() for m, op in ops.items()
             if "x-required-role" in op}
    assert roles[("GET", "/health")] == "none"
    for method, path in READER_ENDPOINTS:
        assert roles[(method, _template(path))] == "reader", path
    for method, path in OPERATOR_ENDPOINTS:
        assert roles[(method, _template(path))] == "operator", path
    assert "security" in document["paths"]["/predictions/{symbol}"]["get"]


def test_rate_limit_answers_429_with_retry_after_and_recovers_a_minute_later(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db, api={"rate_limit_per_minute": 5})
    now = [1000.0]
    with live_server(service.app(rate_clock=lambda: now[0])) as url, httpx.Client(base_url=url) as client:
        headers = {"X-API-Key": READER_KEY}
        assert [client.get("/alerts", headers=headers).status_code for _ in range(5)] == [200] * 5
        refused = client.get("/alerts", headers=headers)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "60"
        # Another key has its own budget.
        assert client.get("/alerts", headers={"X-API-Key": OPERATOR_KEY}).status_code == 200
        now[0] += 30
        assert client.get("/alerts", headers=headers).headers["Retry-After"] == "30"
        now[0] += 30.5
        assert client.get("/alerts", headers=headers).status_code == 200
        # Requests without a valid key are limited per client address.
        codes = [client.get("/alerts", headers={"X-API-Key": "guess"}).status_code for _ in range(6)]
        assert codes == [403] * 5 + [429]


def test_cors_is_closed_by_default_and_open_to_configured_origins_only(tmp_path, populated_db, service):
    preflight = {"Origin": "https://dash.example.com", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "X-API-Key"}
    with live_server(service.app()) as url:
        closed = httpx.get(f"{url}/alerts", headers={"Origin": "https://dash.example.com", "X-API-Key": READER_KEY})
        assert closed.status_code == 200 and "access-control-allow-origin" not in closed.headers
        assert "access-control-allow-origin" not in httpx.options(f"{url}/alerts", headers=preflight).headers
    opened = make_service(tmp_path, populated_db, api={"cors_origins": ["https://dash.example.com"]})
    with live_server(opened.app()) as url:
        allowed = httpx.options(f"{url}/alerts", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        other = httpx.get(f"{url}/alerts", headers={"Origin": "https://evil.example.com", "X-API-Key": READER_KEY})
        assert "access-control-allow-origin" not in other.headers


def test_first_start_generates_an_operator_key_once_and_keeps_only_its_hash(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db)
    service.environ.pop("LSTM_PIPELINE_API_KEYS")
    said: list[str] = []
    app = service.app(announce=said.append)
    assert len(said) == 1
    key = said[0].split("generated: ", 1)[1].split()[0]
    path = key_file_path(service.environ)
    assert str(path) in said[0] and "--role reader" in said[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.encode() not in path.read_bytes()
    assert json.loads(path.read_text())["keys"][0] == {"id": "first-operator", "role": "operator",
                                                       "sha256": hash_key(key)}
    reader = issue_key("reader", environ=service.environ)
    again: list[str] = []
    second = service.app(announce=again.append)
    assert again == []  # the key is printed only on the first start
    with live_server(app) as url:
        assert httpx.post(f"{url}/control/update", headers={"X-API-Key": key}).status_code == 503  # past auth
    with live_server(second) as url:
        assert httpx.get(f"{url}/status", headers={"X-API-Key": reader}).status_code == 200
        assert httpx.get(f"{url}/audit", headers={"X-API-Key": reader}).status_code == 403
        assert httpx.get(f"{url}/audit", headers={"X-API-Key": key}).status_code == 200


def test_config_keys_are_hashes_with_roles_and_api_key_is_an_operator(tmp_path, populated_db):
    extra = "a-reader-key-from-the-config-file-hash"
    service = make_service(tmp_path, populated_db, api={
        "api_key": "the-spec-single-key-0123456789",
        "keys": [{"id": "screen", "role": "reader", "sha256": hash_key(extra)}],
    })
    service.environ.pop("LSTM_PIPELINE_API_KEYS")
    with live_server(service.app(announce=pytest.fail)) as url:
        assert httpx.get(f"{url}/audit", headers={"X-API-Key": "the-spec-single-key-0123456789"}).status_code == 200
        assert httpx.get(f"{url}/status", headers={"X-API-Key": extra}).status_code == 200
        assert httpx.get(f"{url}/audit", headers={"X-API-Key": extra}).status_code == 403


@pytest.mark.parametrize(("host", "open_"), [("127.0.0.1", True), ("0.0.0.0", False)])  # noqa: S104
def test_require_auth_false_is_honoured_only_on_loopback(tmp_path, populated_db, host, open_):
    service = make_service(tmp_path, populated_db, api={"require_auth": False, "host": host,
                                                        "allow_plain_http": True})
    said: list[str] = []
    app = service.app(announce=said.append)
    assert app.state.keyring.auth_required is not open_
    assert bool(said) is not open_  # non-loopback: one sentence saying keys are still required
    with live_server(app) as url:
        assert httpx.get(f"{url}/status").status_code == (200 if open_ else 401)


def test_a_malformed_key_list_stops_the_start_with_one_sentence(tmp_path, populated_db, monkeypatch, capsys):
    from serving.app import serve

    service = make_service(tmp_path, populated_db, extra_env={"LSTM_PIPELINE_API_KEYS": "admin:abc"})
    monkeypatch.setattr("os.environ", {**service.environ})
    assert serve(service.settings) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Environment variable LSTM_PIPELINE_API_KEYS: entry 1 is not 'role:key'")
    assert "abc" not in err
