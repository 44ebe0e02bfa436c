"""Alert channels: announcing the ``alerts`` table's events on the console, a JSON-lines file, a webhook and email.

Every alert row is a condition with a lifecycle (``evaluation.alerting``); what a channel announces is an *event* of
that row: ``open:<LEVEL>`` when it is raised or its level changes (an escalation included), ``resolved`` when it
clears. ``deliver_pending`` runs one delivery pass (the ``alert_delivery_sensor`` calls it every minute): it escalates
unresolved, unacknowledged WARNINGs older than ``escalate_after_minutes`` to ERROR, works out which events each
channel still owes (its ``min_level``, at most one message per ``alert_key`` and channel per ``throttle_minutes``,
nothing for an open alert someone acknowledged), sends them and records every attempt in ``alert_deliveries``. A
failed send is retried on later passes with a doubling delay and recorded as ``gave_up`` after
``max_delivery_attempts``; the alert itself stays in ``alerts`` whatever a channel does, and nothing here raises into
a pipeline run. ``acknowledge_alerts`` and ``resolve_alerts`` are what the CLI and the REST service call.

Plain module: no Dagster import; the clock, the sleep between webhook retries and the channels are injectable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import smtplib
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol, TextIO

import pandas as pd

from lstm_pipeline.settings import Settings

LOGGER = logging.getLogger("lstm_pipeline.alert_channels")
LEVELS: tuple[str, ...] = ("INFO", "WARNING", "ERROR", "CRITICAL")
"""The spec's alert levels, least to most severe (same as ``evaluation.alerting.LEVELS``)."""
LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
SEVERITY_LEVEL = {"info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL"}
SIGNATURE_HEADER = "X-LSTM-Pipeline-Signature"
"""Webhook header: ``sha256=<hex HMAC-SHA256 of the raw body under the webhook secret>``."""
LIFECYCLE_SOURCES: tuple[str, ...] = ("alerts", "runs", "checks", "monitoring")
"""Sources whose rows are resolved when their condition clears; only these escalate and count as active alerts.
(``predictions`` rows are per-window notes of a skipped forecast, replaced with their partition.)"""
DELIVERY_HORIZON = pd.Timedelta(days=1)
"""Events older than this when first seen are not announced (enabling a channel does not replay history)."""
ALERT_ID = ["source", "symbol", "as_of_window", "kind"]
SENT, FAILED, GAVE_UP, SUPERSEDED = "sent", "failed", "gave_up", "superseded"
PASS_SECONDS = 30.0
"""Time one delivery pass may spend sending (a sensor tick must end well within Dagster's 60 s)."""


class AlertNotFoundError(ValueError):
    """No open alert has the given key; the message says how to list them."""


class DeliveryError(RuntimeError):
    """A channel could not deliver a message; the message says why in one sentence."""


# ------------------------------------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class AlertMessage:
    """One event of one alert, as every channel announces it."""

    event: str
    """``open`` or ``resolved``."""
    level: str
    alert_key: str
    source: str
    symbol: str
    kind: str
    message: str
    as_of_window: pd.Timestamp
    created_at: pd.Timestamp | None
    resolved_at: pd.Timestamp | None = None
    escalated_at: pd.Timestamp | None = None
    sent_at: pd.Timestamp | None = None

    @property
    def subject(self) -> str:
        state = "resolved" if self.event == "resolved" else ("escalated" if self.escalated_at is not None else "open")
        return f"[{self.level}] {self.alert_key} {state}"

    def payload(self) -> dict[str, Any]:
        def stamp(value: pd.Timestamp | None) -> str | None:
            return None if value is None else pd.Timestamp(value).tz_convert("UTC").isoformat()

        return {
            "event": self.event,
            "level": self.level,
            "alert_key": self.alert_key,
            "source": self.source,
            "symbol": self.symbol,
            "kind": self.kind,
            "message": self.message,
            "as_of_window": stamp(self.as_of_window),
            "created_at": stamp(self.created_at),
            "resolved_at": stamp(self.resolved_at),
            "escalated_at": stamp(self.escalated_at),
            "sent_at": stamp(self.sent_at),
        }

    def body(self) -> bytes:
        return json.dumps(self.payload(), sort_keys=True).encode()


def _stamp_or_none(value: Any) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value)


# ------------------------------------------------------------------------------------------------------ channels


class Channel(Protocol):
    name: str
    min_level: str

    def send(self, message: AlertMessage) -> None: ...


@dataclass
class ConsoleChannel:
    """One line per message on standard error (the daemon's log when the sensor delivers)."""

    min_level: str = "WARNING"
    stream: TextIO | None = None
    name: str = "console"

    def send(self, message: AlertMessage) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"{message.subject}: {message.message}\n")
        stream.flush()


@dataclass
class FileChannel:
    """JSON lines appended to ``path``; past ``max_bytes`` the file is rotated to ``path.1`` .. ``path.<backups>``."""

    path: Path
    min_level: str = "INFO"
    max_bytes: int = 10_000_000
    backup_count: int = 5
    name: str = "file"

    def send(self, message: AlertMessage) -> None:
        line = json.dumps(message.payload(), sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                self._rotate()
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError as error:
            raise DeliveryError(f"The alert file {self.path} cannot be written ({error.strerror}).") from None

    def _rotate(self) -> None:
        if self.backup_count == 0:
            self.path.unlink()
            return
        for index in range(self.backup_count - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def sign(secret: str, body: bytes) -> str:
    """The webhook signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (what a receiver checks)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


@dataclass
class WebhookChannel:
    """A JSON POST signed with HMAC-SHA256; retried ``retries`` times with doubling backoff before it fails."""

    url: str
    secret: str | None
    min_level: str = "WARNING"
    timeout_seconds: float = 5.0
    retries: int = 2
    backoff_seconds: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    name: str = "webhook"

    def send(self, message: AlertMessage) -> None:
        body = message.body()
        headers = {"Content-Type": "application/json", "User-Agent": "lstm-pipeline-alerts"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                    if 200 <= response.status < 300:
                        return
                    problem = f"it answered HTTP {response.status}"
            except urllib.error.HTTPError as error:
                problem = f"it answered HTTP {error.code}"
                if 400 <= error.code < 500 and error.code not in (408, 429):
                    break  # the receiver refuses this message; retrying would not help
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                problem = f"it could not be reached ({reason})"
        raise DeliveryError(f"The alert webhook {self.url} did not take the message: {problem}.")


@dataclass
class EmailChannel:
    """A plain-text email through SMTP (``smtplib``), with STARTTLS and login when configured."""

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    min_level: str = "ERROR"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 10.0
    name: str = "email"

    def send(self, message: AlertMessage) -> None:
        email = EmailMessage()
        email["Subject"] = message.subject
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        lines = [message.message, ""] + [f"{key}: {value}" for key, value in message.payload().items() if value]
        email.set_content("\n".join(lines))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(email)
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(
                f"The SMTP server {self.host}:{self.port} did not take the alert email ({error})."
            ) from None


def alert_file_path(settings: Settings) -> Path:
    """Where the file channel writes: its ``path`` (relative ones beside the DuckDB file), else ``alerts.jsonl``."""
    configured = settings.alert_channels.file.path
    folder = Path(settings.db_path).expanduser().parent
    if not configured:
        return folder / "alerts.jsonl"
    path = Path(configured).expanduser()
    return path if path.is_absolute() else folder / path


def channels_from_settings(settings: Settings, sleep: Callable[[float], None] = time.sleep) -> list[Channel]:
    """The enabled channels of the ``alert_channels`` section."""
    config = settings.alert_channels
    channels: list[Channel] = []
    if config.console.enabled:
        channels.append(ConsoleChannel(min_level=config.console.min_level))
    if config.file.enabled:
        channels.append(
            FileChannel(
                alert_file_path(settings), config.file.min_level, config.file.max_bytes, config.file.backup_count
            )
        )
    hook = config.webhook
    if hook.enabled and hook.url:
        channels.append(
            WebhookChannel(
                hook.url, hook.secret.get_secret_value() if hook.secret else None, hook.min_level,
                hook.timeout_seconds, hook.retries, hook.backoff_seconds, sleep,
            )
        )
    mail = config.email
    if mail.enabled:
        channels.append(
            EmailChannel(
                mail.smtp_host, mail.smtp_port, mail.sender, list(mail.recipients), mail.min_level, mail.starttls,
                mail.username, mail.password.get_secret_value() if mail.password else None, mail.timeout_seconds,
            )
        )
    return channels


# ------------------------------------------------------------------------------------------- lifecycle (pure)


def with_levels(alerts: pd.DataFrame) -> pd.DataFrame:
    """``alerts`` with ``level`` and ``alert_key`` filled where a writer left them empty (severity, kind:symbol)."""
    out = alerts.copy()
    if out.empty:
        return out
    derived_level = out["severity"].astype(str).str.lower().map(SEVERITY_LEVEL).fillna("WARNING")
    derived_key = out["kind"].astype(str) + ":" + out["symbol"].astype(str)
    out["level"] = out["level"].astype(object).where(out["level"].notna(), derived_level)
    out["alert_key"] = out["alert_key"].astype(object).where(out["alert_key"].notna(), derived_key)
    return out


def active_alerts(alerts: pd.DataFrame) -> pd.DataFrame:
    """Open alerts with a lifecycle (``LIFECYCLE_SOURCES``), most severe and newest first."""
    rows = with_levels(alerts)
    if rows.empty:
        return rows
    rows = rows[rows["resolved_at"].isna() & rows["source"].isin(LIFECYCLE_SOURCES)]
    rank = rows["level"].map(LEVEL_RANK).fillna(0)
    return rows.assign(_rank=rank).sort_values(["_rank", "created_at"], ascending=[False, False]).drop(
        columns="_rank"
    )


def escalations(alerts: pd.DataFrame, now: pd.Timestamp, after: pd.Timedelta) -> pd.DataFrame:
    """The open WARNINGs nobody acknowledged, raised at least ``after`` before ``now``, as ERROR rows to write.

    ``escalated_at`` records when; writers of an open row keep it (and so keep the ERROR) until the alert resolves."""
    rows = with_levels(alerts)
    if rows.empty:
        return rows
    due = rows[
        rows["resolved_at"].isna()
        & rows["acknowledged_at"].isna()
        & rows["escalated_at"].isna()
        & (rows["level"] == "WARNING")
        & rows["source"].isin(LIFECYCLE_SOURCES)
        & (pd.to_datetime(rows["created_at"], utc=True) <= pd.Timestamp(now) - after)
    ].copy()
    if due.empty:
        return due
    minutes = after.total_seconds() / 60
    due["level"] = "ERROR"
    due["severity"] = "error"
    due["escalated_at"] = pd.Timestamp(now)
    due["message"] = due["message"].astype(str) + f" Escalated to ERROR: unresolved for {minutes:g} min."
    return due


def _event(row: Any) -> str:
    return "resolved" if pd.notna(row.resolved_at) else f"open:{row.level}"


def _event_time(row: Any) -> pd.Timestamp:
    stamps = [row.resolved_at, row.escalated_at, row.created_at]
    return max(pd.Timestamp(value) for value in stamps if value is not None and pd.notna(value))


@dataclass(frozen=True)
class PlannedDelivery:
    channel: str
    alert: Any
    """The alert row (a namedtuple of the alerts table's columns)."""
    event: str
    attempts_before: int
    first_attempt_at: pd.Timestamp | None


def plan_deliveries(
    alerts: pd.DataFrame,
    deliveries: pd.DataFrame,
    channels: dict[str, str],
    now: pd.Timestamp,
    throttle: pd.Timedelta,
) -> tuple[list[PlannedDelivery], list[PlannedDelivery], int]:
    """What each channel (name -> min level) still owes: (to send now, superseded by a newer event, throttled count).

    Per channel and ``alert_key`` at most one message goes out per ``throttle``: the newest event; older unsent
    events of the same key are superseded (recorded, never sent). An open alert that was acknowledged announces
    nothing more until it resolves."""
    now = pd.Timestamp(now)
    rows = with_levels(alerts)
    if rows.empty or not channels:
        return [], [], 0
    records = {
        (r.channel, r.source, r.symbol, pd.Timestamp(r.as_of_window), r.kind, r.event): r
        for r in deliveries.itertuples(index=False)
    }
    last_sent: dict[tuple[str, str], pd.Timestamp] = {}
    for r in deliveries[deliveries["status"] == SENT].itertuples(index=False):
        key = (r.channel, r.alert_key)
        stamp = pd.Timestamp(r.last_attempt_at)
        last_sent[key] = max(stamp, last_sent.get(key, stamp))

    owed: dict[tuple[str, str], list[tuple[pd.Timestamp, PlannedDelivery]]] = {}
    for row in rows.itertuples(index=False):
        event = _event(row)
        if event != "resolved" and pd.notna(row.acknowledged_at):
            continue
        when = _event_time(row)
        if when < now - DELIVERY_HORIZON:
            continue
        for channel, min_level in channels.items():
            if LEVEL_RANK.get(str(row.level), 0) < LEVEL_RANK[min_level]:
                continue
            record = records.get((channel, row.source, row.symbol, pd.Timestamp(row.as_of_window), row.kind, event))
            if record is not None:
                if record.status != FAILED or pd.Timestamp(record.next_attempt_at) > now:
                    continue
            planned = PlannedDelivery(
                channel, row, event,
                0 if record is None else int(record.attempts),
                None if record is None else pd.Timestamp(record.first_attempt_at),
            )
            owed.setdefault((channel, str(row.alert_key)), []).append((when, planned))

    send, superseded, throttled = [], [], 0
    for (channel, key), items in owed.items():
        items.sort(key=lambda item: item[0])
        *older, (_, newest) = items
        sent_at = last_sent.get((channel, key))
        if sent_at is not None and throttle > pd.Timedelta(0) and now - sent_at < throttle:
            throttled += len(items)
            continue
        send.append(newest)
        superseded += [planned for _, planned in older]
    return send, superseded, throttled


def message_for(planned: PlannedDelivery, now: pd.Timestamp) -> AlertMessage:
    row = planned.alert
    return AlertMessage(
        event="resolved" if planned.event == "resolved" else "open",
        level=str(row.level),
        alert_key=str(row.alert_key),
        source=str(row.source),
        symbol=str(row.symbol),
        kind=str(row.kind),
        message=str(row.message),
        as_of_window=pd.Timestamp(row.as_of_window),
        created_at=_stamp_or_none(row.created_at),
        resolved_at=_stamp_or_none(row.resolved_at),
        escalated_at=_stamp_or_none(row.escalated_at),
        sent_at=pd.Timestamp(now),
    )


# ------------------------------------------------------------------------------------------------- one pass


class AlertStore(Protocol):
    """What delivery needs of the store (``PipelineDatabase``, ``PostgresDatabase``, the ``PipelineStore`` resource)."""

    def read_rows(self, table: str, where: Sequence[str] = ..., params: Sequence[object] = ...) -> pd.DataFrame: ...

    def replace_tables(self, rows_by_table: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> None: ...


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: dict[str, int] = field(default_factory=dict)
    """Messages sent, per channel."""
    failed: list[str] = field(default_factory=list)
    """One sentence per failed attempt (retried later)."""
    gave_up: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    """alert_key of each WARNING escalated to ERROR in this pass."""
    throttled: int = 0
    superseded: int = 0
    deferred: int = 0
    """Messages left for the next pass because this one ran out of time."""
    record_error: str | None = None
    """Why the pass could not record its deliveries (they are retried, i.e. may repeat), if it could not."""

    def summary(self) -> str:
        sent = ", ".join(f"{count} by {name}" for name, count in sorted(self.sent.items())) or "nothing"
        parts = [f"Sent {sent}", f"{len(self.failed)} failed", f"{len(self.gave_up)} given up",
                 f"{self.throttled} throttled", f"{len(self.escalated)} escalated"]
        if self.deferred:
            parts.append(f"{self.deferred} left for the next pass")
        text = "; ".join(parts) + "."
        return text if self.record_error is None else f"{text} {self.record_error}"


def _delivery_row(planned: PlannedDelivery, status: str, attempts: int, error: str | None, now: pd.Timestamp,
                  next_attempt: pd.Timestamp | None) -> dict[str, Any]:
    row = planned.alert
    return {
        "channel": planned.channel, "source": row.source, "symbol": row.symbol, "as_of_window": row.as_of_window,
        "kind": row.kind, "event": planned.event, "alert_key": row.alert_key, "level": row.level, "status": status,
        "attempts": attempts, "last_error": error,
        "first_attempt_at": planned.first_attempt_at if planned.first_attempt_at is not None else now,
        "last_attempt_at": now, "next_attempt_at": next_attempt,
    }


def _ids(rows: pd.DataFrame) -> pd.Series:
    """Each alert row's identity (its table key) as one string."""
    stamps = pd.to_datetime(rows["as_of_window"], utc=True).astype(str)
    return rows["source"].astype(str) + "|" + rows["symbol"].astype(str) + "|" + stamps + "|" + rows["kind"].astype(str)


def _alert_frame(rows: pd.DataFrame) -> pd.DataFrame:
    from lstm_pipeline.storage.tables import ALERTS

    return rows.reindex(columns=ALERTS.column_names)


def deliver_pending(
    store: AlertStore,
    settings: Settings,
    now: pd.Timestamp | None = None,
    channels: Iterable[Channel] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_seconds: float = PASS_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
) -> DeliveryReport:
    """One delivery pass: escalate, then send what each channel owes and record every attempt. Never raises for a
    channel's failure; a store that cannot be written is reported in ``record_error``. Sending stops after
    ``max_seconds`` (slow channels): what is left is sent by the next pass."""
    config = settings.alert_channels
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    active = list(channels) if channels is not None else channels_from_settings(settings, sleep)
    by_name = {channel.name: channel for channel in active}
    report = DeliveryReport()

    horizon = now - DELIVERY_HORIZON
    alerts = store.read_rows("alerts", ["(resolved_at IS NULL OR resolved_at >= ?)"], [horizon])
    escalated = escalations(alerts, now, pd.Timedelta(minutes=config.escalate_after_minutes))
    if len(escalated):
        store.replace_tables({"alerts": (escalated[ALERT_ID], _alert_frame(escalated))})
        report.escalated = sorted(escalated["alert_key"].astype(str))
        alerts = pd.concat([alerts[~_ids(alerts).isin(set(_ids(escalated)))], escalated], ignore_index=True)

    deliveries = store.read_rows("alert_deliveries", ["last_attempt_at >= ?"], [horizon])
    planned, superseded, throttled = plan_deliveries(
        alerts, deliveries, {name: channel.min_level for name, channel in by_name.items()}, now,
        pd.Timedelta(minutes=config.throttle_minutes),
    )
    report.throttled, report.superseded = throttled, len(superseded)
    records = [_delivery_row(item, SUPERSEDED, item.attempts_before, None, now, None) for item in superseded]
    started = monotonic()
    for item in planned:
        if monotonic() - started > max_seconds:
            report.deferred += 1
            continue
        attempts = item.attempts_before + 1
        try:
            by_name[item.channel].send(message_for(item, now))
        except Exception as error:  # noqa: BLE001 - a channel's failure is recorded, never raised into a run
            problem = str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__}: {error}"
            if attempts >= config.max_delivery_attempts:
                report.gave_up.append(f"{item.channel} gave up on {item.alert.alert_key} after {attempts} attempt(s): "
                                      f"{problem}")
                records.append(_delivery_row(item, GAVE_UP, attempts, problem, now, None))
            else:
                delay = pd.Timedelta(seconds=config.retry_after_seconds * 2 ** (attempts - 1))
                report.failed.append(f"{item.channel} could not deliver {item.alert.alert_key}: {problem}")
                records.append(_delivery_row(item, FAILED, attempts, problem, now, now + delay))
            LOGGER.warning(f"Alert delivery: {problem}")
            continue
        report.sent[item.channel] = report.sent.get(item.channel, 0) + 1
        records.append(_delivery_row(item, SENT, attempts, None, now, None))
    if records:
        frame = pd.DataFrame(records)
        frame["attempts"] = frame["attempts"].astype("int64")
        keys = frame[["channel", "source", "symbol", "as_of_window", "kind", "event"]]
        try:
            store.replace_tables({"alert_deliveries": (keys, frame)})
        except Exception as error:  # noqa: BLE001 - the alerts are stored; only the record of this pass is lost
            report.record_error = (
                f"The delivery records could not be written ({error}); these messages may be sent again."
            )
            LOGGER.warning(report.record_error)
    return report


# ------------------------------------------------------------------------------------- acknowledge, resolve


def _open_by_key(store: AlertStore, alert_key: str) -> pd.DataFrame:
    rows = with_levels(store.read_rows("alerts", ["resolved_at IS NULL"]))
    found = rows[rows["alert_key"] == alert_key] if len(rows) else rows
    if found.empty:
        raise AlertNotFoundError(
            f"No open alert has the key {alert_key!r}; list the open alerts and their keys with "
            "`lstm-pipeline alerts`."
        )
    return found


def acknowledge_alerts(store: AlertStore, alert_key: str, by: str, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Mark every open alert with ``alert_key`` acknowledged by ``by``: no more messages for it (its resolution is
    still announced) and no escalation. Returns the rows written; raises ``AlertNotFoundError`` if none is open."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    rows = _open_by_key(store, alert_key).copy()
    rows["acknowledged_at"] = now
    rows["acknowledged_by"] = by
    store.replace_tables({"alerts": (rows[ALERT_ID], _alert_frame(rows))})
    return rows


def resolve_alerts(store: AlertStore, alert_key: str, by: str, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Resolve every open alert with ``alert_key`` by hand (``resolved_by``); if its condition still holds, the next
    evaluation raises it again as a new alert. Returns the rows written."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    rows = _open_by_key(store, alert_key).copy()
    rows["resolved_at"] = now
    rows["resolved_by"] = by
    rows["message"] = rows["message"].astype(str) + f" Resolved by {by}."
    store.replace_tables({"alerts": (rows[ALERT_ID], _alert_frame(rows))})
    return rows
