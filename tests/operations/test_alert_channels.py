"""Alert channels: file, loopback webhook (signed), local SMTP; throttling, escalation, ack/resolve, dead channels."""

import http.server
import json
import socket
import threading

import pandas as pd
import pytest
from aiosmtpd.controller import Controller

from lstm_pipeline.evaluation.alerting import evaluate_alerts
from lstm_pipeline.operations.alert_channels import (
    SIGNATURE_HEADER,
    AlertNotFoundError,
    FileChannel,
    WebhookChannel,
    acknowledge_alerts,
    active_alerts,
    alert_file_path,
    deliver_pending,
    resolve_alerts,
    verify_signature,
)
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import database_at

T0 = pd.Timestamp("2026-03-02 15:00", tz="UTC")
SECRET = "webhook-secret"


def _settings(db_path, **channels) -> Settings:
    section = {"console": {"enabled": False}, "file": {"enabled": False}, **channels}
    return Settings.model_validate({"db_path": str(db_path), "alert_channels": section})


def _alert(kind="prediction_error", symbol="AAPL", level="WARNING", created=T0, window="2026-03-02 09:30",
           source="alerts", **extra) -> dict:
    return {
        "source": source, "symbol": symbol, "as_of_window": pd.Timestamp(window, tz="America/New_York"),
        "kind": kind, "severity": level.lower(), "message": f"{symbol} {kind} holds.", "run_id": "r1",
        "created_at": created, "level": level, "alert_key": f"{kind}:{symbol}", "resolved_at": pd.NaT, **extra,
    }


def _write(db, *rows: dict) -> None:
    frame = pd.DataFrame(list(rows))
    db.replace_tables({"alerts": (frame[["source", "symbol", "as_of_window", "kind"]], frame)})


@pytest.fixture
def db(storage_backend):
    """The store on each backend in turn (DuckDB, then PostgreSQL): delivery uses only the public read/replace."""
    return storage_backend


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_alerts_reach_the_file_once_and_each_attempt_is_recorded(db, tmp_path):
    settings = _settings(tmp_path / "store.duckdb", file={"enabled": True, "min_level": "WARNING"})
    _write(db, _alert(), _alert(kind="confidence_low", level="INFO"))

    report = deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=1))
    assert report.sent == {"file": 1}
    (line,) = _lines(alert_file_path(settings))
    assert line["alert_key"] == "prediction_error:AAPL" and line["level"] == "WARNING" and line["event"] == "open"
    deliveries = db.read_rows("alert_deliveries")
    assert list(deliveries["status"]) == ["sent"] and list(deliveries["channel"]) == ["file"]

    again = deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=2))
    assert again.sent == {} and len(_lines(alert_file_path(settings))) == 1


def test_the_file_rotates_by_size(tmp_path):
    channel = FileChannel(tmp_path / "alerts.jsonl", max_bytes=1024, backup_count=2)
    settings = _settings(tmp_path / "s.duckdb", file={"enabled": True})
    db = database_at(tmp_path / "s.duckdb")
    for index in range(12):
        _write(db, _alert(symbol=f"S{index}", created=T0))
    deliver_pending(db, settings, now=T0, channels=[channel])
    rotated = sorted(path.name for path in tmp_path.glob("alerts.jsonl*"))
    assert rotated == ["alerts.jsonl", "alerts.jsonl.1", "alerts.jsonl.2"]
    assert all(path.stat().st_size <= 1024 for path in tmp_path.glob("alerts.jsonl*"))


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[bytes, str | None]] = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((body, self.headers.get(SIGNATURE_HEADER)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_the_webhook_gets_a_signed_json_post(db, tmp_path, receiver):
    server, handler = receiver
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    settings = _settings(
        tmp_path / "store.duckdb", webhook={"enabled": True, "url": url, "secret": SECRET, "min_level": "WARNING"}
    )
    _write(db, _alert(level="CRITICAL"))
    report = deliver_pending(db, settings, now=T0)
    assert report.sent == {"webhook": 1}
    ((body, signature),) = handler.received
    assert verify_signature(SECRET, body, signature)
    assert not verify_signature("another secret", body, signature)
    assert json.loads(body)["level"] == "CRITICAL"


def test_a_failing_webhook_is_retried_with_backoff_then_recorded(tmp_path, receiver):
    server, handler = receiver
    handler.status = 503
    waits: list[float] = []
    channel = WebhookChannel(f"http://127.0.0.1:{server.server_address[1]}/", SECRET, retries=2, backoff_seconds=0.5,
                             sleep=waits.append)
    db = database_at(tmp_path / "s.duckdb")
    _write(db, _alert())
    report = deliver_pending(db, _settings(tmp_path / "s.duckdb"), now=T0, channels=[channel])
    assert waits == [0.5, 1.0] and len(handler.received) == 3
    assert "HTTP 503" in report.failed[0]
    handler.status = 200
    # Retried on a later pass only once its retry time (60 s, doubling) has come.
    assert deliver_pending(db, _settings(tmp_path / "s.duckdb"), now=T0 + pd.Timedelta(seconds=30),
                           channels=[channel]).sent == {}
    later = deliver_pending(db, _settings(tmp_path / "s.duckdb"), now=T0 + pd.Timedelta(seconds=61),
                           channels=[channel])
    assert later.sent == {"webhook": 1}
    row = db.read_rows("alert_deliveries").iloc[0]
    assert row["status"] == "sent" and row["attempts"] == 2


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_webhook_loses_no_alert_and_gives_up_after_the_last_attempt(db, tmp_path):
    settings = Settings.model_validate({
        "db_path": str(tmp_path / "store.duckdb"),
        "alert_channels": {
            "console": {"enabled": False}, "file": {"enabled": True}, "max_delivery_attempts": 2,
            "retry_after_seconds": 10,
            "webhook": {"enabled": True, "url": f"http://127.0.0.1:{_dead_port()}/", "retries": 0},
        },
    })
    _write(db, _alert())
    first = deliver_pending(db, settings, now=T0)
    assert first.sent == {"file": 1} and "could not be reached" in first.failed[0]
    second = deliver_pending(db, settings, now=T0 + pd.Timedelta(seconds=11))
    assert second.gave_up and not second.failed
    statuses = dict(zip(db.read_rows("alert_deliveries")["channel"], db.read_rows("alert_deliveries")["status"],
                        strict=True))
    assert statuses == {"file": "sent", "webhook": "gave_up"}
    assert list(db.read_rows("alerts")["alert_key"]) == ["prediction_error:AAPL"]
    assert deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=5)).failed == []


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server():
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_dead_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


def test_an_escalated_warning_reaches_the_smtp_server(db, tmp_path, smtp_server):
    controller, mailbox = smtp_server
    settings = Settings.model_validate({
        "db_path": str(tmp_path / "store.duckdb"),
        "alert_channels": {
            "console": {"enabled": False}, "file": {"enabled": False}, "escalate_after_minutes": 60,
            "email": {"enabled": True, "smtp_host": "127.0.0.1", "smtp_port": controller.port,
                      "recipients": ["ops@example.com"], "min_level": "ERROR"},
        },
    })
    _write(db, _alert(level="WARNING", created=T0))
    early = deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=59))
    assert early.escalated == [] and mailbox.messages == []

    report = deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=61))
    assert report.escalated == ["prediction_error:AAPL"] and report.sent == {"email": 1}
    (envelope,) = mailbox.messages
    assert envelope.rcpt_tos == ["ops@example.com"]
    text = envelope.content.decode()
    assert "[ERROR] prediction_error:AAPL escalated" in text and "Escalated to ERROR" in text
    stored = db.read_rows("alerts").iloc[0]
    assert stored["level"] == "ERROR" and pd.notna(stored["escalated_at"])


def test_throttling_sends_one_message_per_key_per_interval(db, tmp_path):
    settings = _settings(tmp_path / "store.duckdb", file={"enabled": True}, throttle_minutes=15)
    path = alert_file_path(settings)
    _write(db, _alert(created=T0))
    deliver_pending(db, settings, now=T0)
    # The condition clears and is raised again at a later window within the interval: nothing more goes out yet.
    resolved = _alert(created=T0, resolved_at=T0 + pd.Timedelta(minutes=2))
    again = _alert(created=T0 + pd.Timedelta(minutes=5), window="2026-03-02 09:45", level="CRITICAL")
    _write(db, resolved, again)
    held = deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=6))
    assert held.throttled == 2 and len(_lines(path)) == 1
    # After the interval only the newest event is sent; the older one is superseded.
    later = deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=16))
    assert later.sent == {"file": 1} and later.superseded == 1
    assert [line["level"] for line in _lines(path)] == ["WARNING", "CRITICAL"]


def test_acknowledged_alerts_stay_quiet_and_do_not_escalate_until_resolved(db, tmp_path):
    settings = _settings(tmp_path / "store.duckdb", file={"enabled": True}, throttle_minutes=0)
    path = alert_file_path(settings)
    _write(db, _alert(created=T0))
    acknowledge_alerts(db, "prediction_error:AAPL", "alice", now=T0 + pd.Timedelta(minutes=1))
    report = deliver_pending(db, settings, now=T0 + pd.Timedelta(hours=3))
    assert report.sent == {} and report.escalated == []
    resolve_alerts(db, "prediction_error:AAPL", "bob", now=T0 + pd.Timedelta(hours=3, minutes=1))
    deliver_pending(db, settings, now=T0 + pd.Timedelta(hours=3, minutes=2))
    (line,) = _lines(path)
    assert line["event"] == "resolved" and "Resolved by bob" in line["message"]
    stored = db.read_rows("alerts").iloc[0]
    assert stored["acknowledged_by"] == "alice" and stored["resolved_by"] == "bob"
    assert active_alerts(db.read_rows("alerts")).empty
    with pytest.raises(AlertNotFoundError, match="No open alert has the key 'prediction_error:AAPL'"):
        resolve_alerts(db, "prediction_error:AAPL", "bob")


def test_the_alerts_asset_keeps_an_acknowledgement_and_an_escalation_when_it_updates_the_row(db):
    _write(db, _alert(created=T0, acknowledged_at=T0, acknowledged_by="alice", escalated_at=T0, level="ERROR"))
    opened = db.read_rows("alerts")
    window = pd.Timestamp("2026-03-02 10:00", tz="America/New_York")
    validations = pd.DataFrame({
        "symbol": ["AAPL"], "target_window": [window], "status": ["valid"], "abs_error_pct": [6.0],
    })
    evaluation = evaluate_alerts(
        pd.DataFrame({"symbol": ["AAPL"], "window_start": [window]}), validations,
        pd.DataFrame(columns=["symbol", "as_of_window", "confidence"]),
        pd.DataFrame(columns=["symbol", "scored_window", "hit"]),
        pd.DataFrame({"symbol": ["AAPL"], "window_start": [window]}), opened,
        Settings().alert_thresholds, now=T0 + pd.Timedelta(hours=1),
    )
    row = evaluation.upserts[evaluation.upserts["kind"] == "prediction_error"].iloc[0]
    assert row["acknowledged_by"] == "alice" and row["level"] == "ERROR" and pd.notna(row["escalated_at"])


def test_a_slow_pass_stops_sending_and_leaves_the_rest_for_the_next(db, tmp_path):
    settings = _settings(tmp_path / "store.duckdb", file={"enabled": True})
    _write(db, _alert(symbol="AAPL"), _alert(symbol="MSFT"), _alert(symbol="TSLA"))
    ticks = iter([0.0, 0.0, 5.0, 50.0, 50.0])
    first = deliver_pending(db, settings, now=T0, max_seconds=30, monotonic=lambda: next(ticks))
    assert first.sent == {"file": 2} and first.deferred == 1 and "1 left for the next pass" in first.summary()
    assert deliver_pending(db, settings, now=T0 + pd.Timedelta(minutes=1)).sent == {"file": 1}
    assert len(_lines(alert_file_path(settings))) == 3


def _self_signed_context(folder):
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def test_email_over_starttls_when_the_server_requires_it(db, tmp_path):
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_dead_port(),
                            tls_context=_self_signed_context(tmp_path), require_starttls=True)
    controller.start()
    try:
        def settings(starttls: bool) -> Settings:
            return Settings.model_validate({
                "db_path": str(tmp_path / "store.duckdb"),
                "alert_channels": {"console": {"enabled": False}, "file": {"enabled": False}, "throttle_minutes": 0,
                                   "email": {"enabled": True, "smtp_host": "127.0.0.1", "smtp_port": controller.port,
                                             "starttls": starttls, "recipients": ["ops@example.com"]}},
            })

        _write(db, _alert(level="CRITICAL"))
        refused = deliver_pending(db, settings(starttls=False), now=T0)
        assert refused.sent == {} and "did not take the alert email" in refused.failed[0]
        sent = deliver_pending(db, settings(starttls=True), now=T0 + pd.Timedelta(minutes=2))
        assert sent.sent == {"email": 1} and len(mailbox.messages) == 1
    finally:
        controller.stop()
