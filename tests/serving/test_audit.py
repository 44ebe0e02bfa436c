"""The audit trail: one entry per changing or refused request (under concurrent load too), never a key, kept across
restarts, rotated by size, readable by operators through GET /audit."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from serving.audit import AuditLog
from tests.serving.conftest import OPERATOR_KEY, READER_KEY, make_service
from tests.serving.live import live_server

WRONG_KEY = "wrong-key-that-someone-typed-42"
# (method, path, key, body, expected status, recorded?)
REQUESTS = [
    ("GET", "/alerts", None, None, 401, True),
    ("GET", "/alerts", WRONG_KEY, None, 403, True),
    ("POST", "/config", READER_KEY, {"confidence_threshold": 0.7}, 403, True),
    ("POST", "/control/update/MSFT", OPERATOR_KEY, None, 503, True),
    ("POST", "/config", OPERATOR_KEY, {"confidence_threshold": 2}, 422, True),
    ("GET", "/predictions/AAPL", READER_KEY, None, 200, False),
]


def _send(url: str, spec: tuple) -> int:
    method, path, key, body, _, _ = spec
    headers = {"X-API-Key": key} if key else {}
    return httpx.request(method, f"{url}{path}", headers=headers, json=body, timeout=30).status_code


def _entries(url: str, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        page = httpx.get(f"{url}/audit", headers={"X-API-Key": OPERATOR_KEY},
                         params={**params, **({"cursor": cursor} if cursor else {})}).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_every_changing_or_refused_request_is_recorded_once_under_concurrent_load(tmp_path, populated_db, capfd):
    service = make_service(tmp_path, populated_db, api={"rate_limit_per_minute": 100_000})
    load = REQUESTS * 25
    with live_server(service.app(), log_level="info") as url:  # access log on: it must not carry keys either
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(lambda spec: _send(url, spec), load))
        assert codes == [spec[4] for spec in load]
        entries = _entries(url, limit=37)
    recorded = [spec for spec in load if spec[5]]
    assert len(entries) == len(recorded)
    assert len({e["id"] for e in entries}) == len(entries)
    assert [e["time"] for e in entries] == sorted((e["time"] for e in entries), reverse=True)
    by_kind = {}
    for entry in entries:
        by_kind.setdefault((entry["method"], entry["path"], entry["outcome"]), []).append(entry)
    assert {k: len(v) for k, v in by_kind.items()} == {
        ("GET", "/alerts", 401): 25, ("GET", "/alerts", 403): 25, ("POST", "/config", 403): 25,
        ("POST", "/control/update/MSFT", 503): 25, ("POST", "/config", 422): 25,
    }
    refused_reader = by_kind[("POST", "/config", 403)][0]
    assert (refused_reader["key_id"], refused_reader["role"], refused_reader["client"]) == ("env-1", "reader",
                                                                                             "127.0.0.1")
    assert by_kind[("GET", "/alerts", 401)][0]["key_id"] is None
    assert "operator role" in refused_reader["detail"]
    # No key (valid or not) in any file the service wrote, nor in its output.
    out, err = capfd.readouterr()
    assert "GET /predictions/AAPL" in out + err  # the access log was on
    for key in (READER_KEY, OPERATOR_KEY, WRONG_KEY):
        assert key not in out + err
        for path in service.written_files():
            assert key.encode() not in path.read_bytes(), path


def test_a_config_change_is_recorded_with_old_and_new_values_and_survives_a_restart(service):
    with live_server(service.app()) as url:
        changed = httpx.post(f"{url}/config", headers={"X-API-Key": OPERATOR_KEY}, json={"min_profit_percent": 3})
        assert changed.status_code == 200
    with live_server(service.app()) as url:  # a new process's app over the same instance folder
        entries = _entries(url)
        assert _entries(url, since="2100-01-01T00:00:00Z") == []
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["method"], entry["path"], entry["outcome"], entry["key_id"]) == ("POST", "/config", 200, "env-2")
    assert entry["config_changes"] == [{"key": "min_profit_percent", "old": 2.0, "new": 3.0}]
    assert entry["run_ids"] == []


def test_the_audit_file_rotates_by_size_and_reads_back_newest_first(tmp_path):
    log = AuditLog(tmp_path / "api_audit.jsonl", max_bytes=1000, backups=2)
    for index in range(40):
        log.record({"method": "POST", "path": f"/config/{index}", "outcome": 200})
    files = log.files()
    assert [p.name for p in files] == ["api_audit.jsonl", "api_audit.jsonl.1", "api_audit.jsonl.2"]
    assert all(p.stat().st_size <= 1000 for p in files)
    paths = [entry["path"] for entry in log.entries()]
    assert paths[0] == "/config/39" and paths == sorted(paths, key=lambda p: int(p.rsplit("/", 1)[1]), reverse=True)
    assert len(paths) < 40  # the oldest rotated file was dropped
    assert all(json.loads(line) for p in files for line in p.read_text().splitlines())


def test_every_request_is_timed_in_the_access_record_that_monitoring_reads(service):
    with live_server(service.app()) as url:
        assert httpx.get(f"{url}/predictions/MSFT", headers={"X-API-Key": READER_KEY}).status_code == 200
        assert httpx.get(f"{url}/predictions/NOPE", headers={"X-API-Key": READER_KEY}).status_code == 404
        assert httpx.get(f"{url}/health").status_code == 200
    lines = [json.loads(line) for line in (service.home / "api_access.jsonl").read_text().splitlines()]
    assert [(e["method"], e["path"], e["endpoint"], e["status"]) for e in lines] == [
        ("GET", "/predictions/MSFT", "/predictions/{symbol}", 200),
        ("GET", "/predictions/NOPE", "/predictions/{symbol}", 404),
        ("GET", "/health", "/health", 200),
    ]
    assert all(e["duration_ms"] > 0 and e["time"] for e in lines)
    assert [e["key_id"] for e in lines] == ["env-1", "env-1", None]


def test_unknown_paths_and_anonymous_posts_are_not_audited_and_a_refusal_flood_is_folded(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db, api={"rate_limit_per_minute": 5})
    now = [1000.0]
    with live_server(service.app(rate_clock=lambda: now[0])) as url, httpx.Client(base_url=url) as client:
        assert {client.post(f"/no/such/path/{i}").status_code for i in range(20)} == {404}
        assert {client.post("/logout").status_code for _ in range(5)} == {303}  # changes nothing, names no one
        assert client.post("/health").status_code == 405  # a route, but not this method
        codes = [client.get("/alerts", headers={"X-API-Key": WRONG_KEY}).status_code for _ in range(30)]
        assert codes == [403] * 5 + [429] * 25
        logins = [client.post("/login", data={"key": WRONG_KEY}).status_code for _ in range(3)]
        assert logins == [429] * 3  # the same address's budget: guessing through the login form is bounded too
        now[0] += 61
        assert client.get("/alerts", headers={"X-API-Key": WRONG_KEY}).status_code == 403
    with live_server(service.app()) as url:
        entries = _entries(url)
    kinds = [(e["method"], e["path"], e["outcome"], e["repeated"]) for e in reversed(entries)]
    assert kinds == [("GET", "/alerts", 403, None)] * 5 + [
        ("GET", "/alerts", 429, None),  # the first refusal of the minute; 24 + 3 more folded into it
        ("GET", "/alerts", 403, None),  # a minute later the address has a budget again
        ("POST", "/login", 429, 27),  # written at shutdown: the folded count, as the last one folded
    ]
    assert all(e["client"] == "127.0.0.1" and e["key_id"] is None for e in entries)


def test_reading_survives_a_file_rotated_away_meanwhile_and_returns_the_entries_as_of_the_start(tmp_path):
    log = AuditLog(tmp_path / "api_audit.jsonl", max_bytes=1000, backups=2)
    for index in range(30):
        log.record({"method": "POST", "path": f"/config/{index}", "outcome": 200})
    expected = [entry["path"] for entry in log.entries()]
    reading = log.entries()
    first = next(reading)
    log.files()[-1].unlink()  # another process's rotation drops the oldest file between two reads
    assert [first["path"], *(entry["path"] for entry in reading)] == expected


def test_malformed_lines_are_skipped_and_counted_not_a_500(service):
    app = service.app()
    with live_server(app) as url:
        assert httpx.get(f"{url}/alerts").status_code == 401
        assert len(app.state.audit.path.read_bytes().splitlines()) == 1  # written before the answer was complete
        with app.state.audit.path.open("ab") as trail:
            trail.write(b"not json at all\n[1, 2]\n{\"id\": \"x\", \"time\": \"not a time\"}\n{\"torn\": ")
        assert httpx.get(f"{url}/alerts").status_code == 401
        answer = httpx.get(f"{url}/audit", headers={"X-API-Key": OPERATOR_KEY})
    assert answer.status_code == 200
    assert [(e["path"], e["outcome"]) for e in answer.json()["items"]] == [("/alerts", 401)] * 2
    assert answer.headers["X-Audit-Malformed-Lines"] == "4"


def test_the_access_record_never_waits_on_the_disk_and_loses_nothing_at_shutdown(service, monkeypatch):
    import threading

    import serving.audit

    disk = threading.Event()
    real_open = serving.audit.os.open

    def slow_open(path, *args, **kwargs):  # noqa: ANN001, ANN202 - a disk that hangs until the test lets it go
        if str(path).endswith("api_access.jsonl"):
            assert disk.wait(30), "the access record was never let through"
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(serving.audit.os, "open", slow_open)
    with live_server(service.app()) as url, httpx.Client(base_url=url, timeout=5) as client:
        statuses = [client.get("/predictions/AAPL", headers={"X-API-Key": READER_KEY}).status_code
                    for _ in range(20)]
        assert statuses == [200] * 20  # answered while the record's disk hangs
        disk.set()
    lines = (service.home / "api_access.jsonl").read_text().splitlines()
    assert len(lines) == 20 and {json.loads(line)["path"] for line in lines} == {"/predictions/AAPL"}
