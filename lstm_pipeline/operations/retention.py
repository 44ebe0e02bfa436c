"""Retention: delete what is older than each category's maximum age, but only what a verified backup holds.

Categories (``retention`` in the config, days; null keeps forever) and their tables: ``raw_bars`` market_bars;
``predictions`` predictions and trade_recommendations; ``validations`` validations; ``metrics`` accuracy_metrics and
trade_outcomes; ``alerts`` resolved alerts (open ones stay); ``monitoring`` system_metrics (by sample time);
``alert_deliveries`` alert_deliveries sent, superseded or given up (pending retries stay, and none of the last day,
which the delivery pass still reads); ``exports`` export folders; ``backups`` backup folders.

A partition of a table (a symbol-window of a chain table; a registered partition of system_metrics and
alert_deliveries, which only full backups hold) is deleted only when a verified backup (``verify_backup`` passed)
holds exactly its current rows (same per-partition checksum): a partition re-materialized since its last backup stays
until the next backup. ``plan_retention`` is the dry run: it lists what would go and what is kept for want of a
backup; ``apply_retention`` deletes exactly a plan (re-checking each partition's checksum), one transaction per
table, and records each deleted symbol-window of a chain table in ``pruned_partitions`` in the same transaction, so
readers can answer "pruned" instead of an empty success (``pruned``, ``pruned_partitions``; ``pruned_by_asset`` sums
a run up per Dagster asset for the UI).

Backups go by ``backups.keep_daily`` / ``keep_weekly`` (and ``retention.backups_days``), never one holding the only
copy of a table's partition: a backup counts as another copy only if it was verified and holds that table's rows of
that partition (a backup made after retention deleted them holds the symbol-window, not the rows). This module
imports no Dagster.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.operations.alert_channels import DELIVERY_HORIZON, GAVE_UP, SENT, SUPERSEDED
from lstm_pipeline.operations.backups import BackupInfo, delete_backup, list_backups, load_backup, load_holdings
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.exports import expired_exports
from lstm_pipeline.operations.store_layout import (
    WHOLE_TABLES,
    WINDOW_COLUMNS,
    as_read,
    holding_columns,
    open_store,
    partition_frame,
)
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import TABLES
from lstm_pipeline.storage.rows import empty_frame

CATEGORY_TABLES: dict[str, tuple[str, ...]] = {
    "raw_bars": ("market_bars",),
    "predictions": ("predictions", "trade_recommendations"),
    "validations": ("validations",),
    "metrics": ("accuracy_metrics", "trade_outcomes"),
    "alerts": ("alerts",),
    "monitoring": ("system_metrics",),
    "alert_deliveries": ("alert_deliveries",),
}
"""Which tables each row category of ``retention.<category>_days`` covers."""

AGE_COLUMNS: dict[str, str] = {**WINDOW_COLUMNS, "system_metrics": "sampled_at", "alert_deliveries": "last_attempt_at"}
"""The time a row's age is counted from."""

TABLE_ASSETS: dict[str, str] = {
    "market_bars": "market_bars",
    "predictions": "predictions",
    "validations": "validations",
    "accuracy_metrics": "accuracy_metrics",
    "trade_recommendations": "trade_recommendations",
    "trade_outcomes": "trade_recommendations",
    "alerts": "alerts",
    "system_metrics": "system_metrics",
}
"""The Dagster asset whose data each table's rows are (alert_deliveries belong to none)."""

_KEY = ["symbol", "window_start"]
_FINISHED_DELIVERIES = (SENT, SUPERSEDED, GAVE_UP)


@dataclass(frozen=True)
class TablePrune:
    """What retention deletes from one table: partitions (with their rows' checksum and the backup holding them;
    ``symbol, window_start`` for a chain table), plus how many old rows are kept because no verified backup holds
    them."""

    table: str
    category: str
    cutoff: pd.Timestamp
    partitions: pd.DataFrame
    """The partition columns, rows, checksum, backup_id."""
    rows: int
    kept_without_backup: int


@dataclass(frozen=True)
class RetentionPlan:
    """The dry run's answer; ``apply_retention`` deletes exactly this."""

    now: pd.Timestamp
    tables: dict[str, TablePrune] = field(default_factory=dict)
    backups: list[str] = field(default_factory=list)
    exports: list[Path] = field(default_factory=list)
    applied: bool = False

    @property
    def rows_by_table(self) -> dict[str, int]:
        return {name: prune.rows for name, prune in self.tables.items()}

    @property
    def skipped_unbacked(self) -> dict[str, int]:
        return {name: prune.kept_without_backup for name, prune in self.tables.items() if prune.kept_without_backup}

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready summary (for ``--json``): rows per table, rows kept for want of a backup, what else goes."""
        return {
            "applied": self.applied,
            "now": self.now.isoformat(),
            "rows_by_table": self.rows_by_table,
            "partitions_by_table": {name: len(prune.partitions) for name, prune in self.tables.items()},
            "cutoff_by_table": {name: prune.cutoff.isoformat() for name, prune in self.tables.items()},
            "kept_without_verified_backup": self.skipped_unbacked,
            "backups": list(self.backups),
            "exports": [str(path) for path in self.exports],
        }

    def describe(self) -> list[str]:
        """One line per thing that goes (or went), for the CLI's ``retention --dry-run`` and the job's log."""
        verb = "deleted" if self.applied else "would delete"
        lines = []
        for name, prune in self.tables.items():
            windows = prune.partitions["window_start"] if name in WINDOW_COLUMNS else pd.Series(dtype=object)
            span = f" ({windows.min():%Y-%m-%d %H:%M} .. {windows.max():%Y-%m-%d %H:%M})" if len(windows) else ""
            unit = "symbol-window(s)" if name in WINDOW_COLUMNS else "partition(s)"
            lines.append(
                f"{name}: {verb} {prune.rows} row(s) in {len(prune.partitions)} {unit} older than "
                f"{prune.cutoff:%Y-%m-%d %H:%M}{span}"
                + (f"; kept {prune.kept_without_backup} old row(s) no verified backup holds"
                   if prune.kept_without_backup else "")
            )
        lines += [f"backup {backup_id}: {verb}" for backup_id in self.backups]
        lines += [f"export {path.name}: {verb}" for path in self.exports]
        return lines or ["nothing to delete"]


def _now(now: pd.Timestamp | None) -> pd.Timestamp:
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def _key_columns(table: str) -> list[str]:
    """A partition's columns in a plan: ``symbol, window_start`` for a chain table, the partition columns else."""
    return list(_KEY) if table in WINDOW_COLUMNS else holding_columns(table)


def _partition_checksums(table: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The key columns, rows, checksum: an order-independent checksum of each partition's rows."""
    columns = _key_columns(table)
    if rows.empty:
        return pd.DataFrame({**{column: [] for column in columns}, "rows": [], "checksum": []})
    normal = as_read(rows, table)
    hashes = pd.util.hash_pandas_object(normal[sorted(normal.columns)], index=False).to_numpy(dtype=np.uint64)
    keys = normal[holding_columns(table)].set_axis(columns, axis=1)
    codes = keys.groupby(columns, sort=True).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    sums = np.add.reduceat(hashes[order], starts)  # uint64: wraps, so the sum is order-independent and exact
    first = keys.iloc[order[starts]].reset_index(drop=True)
    return first.assign(
        rows=np.diff(np.r_[starts, len(order)]),
        checksum=[f"{int(value):016x}" for value in sums],
    )


def _verified_checksums(
    settings: Settings, verified: list[BackupInfo], tables: Iterable[str]
) -> dict[str, pd.DataFrame]:
    """Per table: the key columns, checksum, backup_id of every verified backup's partitions."""
    found: dict[str, list[pd.DataFrame]] = {}
    for info in verified:
        backup = load_backup(settings, info.path, tables)
        for table, rows in backup.tables.items():
            if table in WHOLE_TABLES and not info.full:
                continue
            sums = _partition_checksums(table, rows)
            if table in WINDOW_COLUMNS:
                # A backup also vouches for its partitions that had no rows of this table.
                empty = backup.partitions.merge(sums[_KEY], on=_KEY, how="left", indicator=True)
                empty = empty[empty["_merge"] == "left_only"][_KEY].assign(rows=0, checksum="0" * 16)
                sums = pd.concat([sums, empty], ignore_index=True)
            found.setdefault(table, []).append(sums.assign(backup_id=info.backup_id))
    return {table: pd.concat(parts, ignore_index=True) for table, parts in found.items()}


def _cutoff(table: str, days: int, now: pd.Timestamp) -> pd.Timestamp:
    cutoff = now - pd.Timedelta(days=days)
    if table == "alert_deliveries":
        # The delivery pass reads the last day's records to know what it already sent: those always stay.
        cutoff = min(cutoff, now - DELIVERY_HORIZON)
    return cutoff


def _old_rows(store: Any, table: str, cutoff: pd.Timestamp) -> pd.DataFrame:
    where, params = [f"{AGE_COLUMNS[table]} < ?"], [cutoff]
    if table == "alert_deliveries":
        where.append(f"status IN ({', '.join('?' for _ in _FINISHED_DELIVERIES)})")
        params += list(_FINISHED_DELIVERIES)
    return store.read_rows(table, where, params)


def plan_retention(settings: Settings, *, now: pd.Timestamp | None = None) -> RetentionPlan:
    """What retention would delete now (the dry run)."""
    current = _now(now)
    retention = settings.retention
    store = open_store(settings)
    backups = list_backups(settings)
    plan = RetentionPlan(now=current)
    wanted = {
        table: (category, _cutoff(table, days, current))
        for category, tables in CATEGORY_TABLES.items()
        if (days := getattr(retention, f"{category}_days")) is not None
        for table in tables
    }
    # Only a backup holding some window older than a cutoff (or, for the whole tables, a full one) can vouch.
    latest_window_cutoff = max((cutoff for table, (_, cutoff) in wanted.items() if table in WINDOW_COLUMNS),
                               default=None)
    whole_wanted = any(table in WHOLE_TABLES for table in wanted)
    verified = [
        info for info in backups if info.verified and (
            (whole_wanted and info.full)
            or (latest_window_cutoff is not None and info.first_window is not None
                and info.first_window < latest_window_cutoff)
        )
    ]
    vouched = _verified_checksums(settings, verified, wanted) if wanted and verified else {}
    for table, (category, cutoff) in wanted.items():
        columns = _key_columns(table)
        rows = _old_rows(store, table, cutoff)
        candidates = _partition_checksums(table, rows)
        if table == "alerts":
            # Open alerts are never pruned: a symbol-window with one stays whole. A skipped forecast's alert
            # (source "predictions") is a record of its window, not a condition, and goes with it.
            open_rows = rows[rows["resolved_at"].isna() & (rows["source"] != "predictions")]
            held = partition_frame(zip(open_rows["symbol"], open_rows["as_of_window"], strict=True))
            candidates = candidates.merge(held.assign(_open=True), on=_KEY, how="left")
            candidates = candidates[candidates["_open"].isna()].drop(columns="_open")
        backed = vouched.get(table)
        if backed is not None and len(candidates):
            matches = candidates.merge(backed[[*columns, "checksum", "backup_id"]], on=[*columns, "checksum"],
                                       how="inner")
            matches = matches.sort_values("backup_id").drop_duplicates(columns, keep="last")
        else:
            matches = candidates.iloc[0:0].assign(backup_id=pd.Series(dtype=object))
        deleted = int(matches["rows"].sum()) if len(matches) else 0
        plan.tables[table] = TablePrune(
            table=table,
            category=category,
            cutoff=cutoff.tz_convert(NEW_YORK),
            partitions=matches.reset_index(drop=True),
            rows=deleted,
            kept_without_backup=int(len(rows) - deleted),
        )
    if retention.exports_days is not None:
        plan.exports.extend(expired_exports(settings, retention.exports_days, current))
    plan.backups.extend(_expired_backups(settings, backups, current))
    return plan


def apply_retention(
    settings: Settings, plan: RetentionPlan | None = None, *, now: pd.Timestamp | None = None
) -> RetentionPlan:
    """Delete exactly ``plan`` (default: a fresh plan): per table one transaction that deletes its partitions
    whose rows still have the planned checksum and records a chain table's in ``pruned_partitions``. Returns what
    went."""
    plan = plan or plan_retention(settings, now=now)
    store = open_store(settings)
    done = RetentionPlan(now=plan.now, applied=True)
    for table, prune in plan.tables.items():
        if prune.partitions.empty:
            done.tables[table] = prune
            continue
        columns = _key_columns(table)
        rows = _old_rows(store, table, prune.cutoff)
        still = _partition_checksums(table, rows).merge(
            prune.partitions[[*columns, "checksum", "backup_id"]], on=[*columns, "checksum"], how="inner"
        )
        if still.empty:
            done.tables[table] = TablePrune(table, prune.category, prune.cutoff, still, 0, prune.kept_without_backup)
            continue
        replacements = {table: (still[columns].set_axis(holding_columns(table), axis=1), empty_frame(TABLES[table]))}
        if table in WINDOW_COLUMNS:
            pruned_rows = pd.DataFrame(
                {
                    "table_name": table,
                    "symbol": still["symbol"],
                    "window_start": still["window_start"],
                    "rows_deleted": still["rows"].astype("int64"),
                    "backup_id": still["backup_id"],
                    "pruned_at": plan.now,
                }
            )
            replacements["pruned_partitions"] = (pruned_rows[["table_name", "symbol", "window_start"]], pruned_rows)
        store.replace_tables(replacements)
        done.tables[table] = TablePrune(
            table, prune.category, prune.cutoff, still, int(still["rows"].sum()), prune.kept_without_backup
        )
    for path in plan.exports:
        if path.exists():
            shutil.rmtree(path)
            done.exports.append(path)
    for backup_id in plan.backups:
        delete_backup(settings, backup_id)
        done.backups.append(backup_id)
    return done


# ---------------------------------------------------------------------------------------------------- backups


def _expired_backups(settings: Settings, backups: list[BackupInfo], now: pd.Timestamp) -> list[str]:
    """Backups to delete: those not kept as the newest of one of the last ``keep_daily`` days or ``keep_weekly``
    ISO weeks (or older than ``retention.backups_days``), oldest first, never one holding a table's rows of a
    partition that no other verified backup kept holds (nor one whose holdings cannot be read)."""
    if not backups:
        return []
    config = settings.backups
    by_day: dict[Any, BackupInfo] = {}
    by_week: dict[Any, BackupInfo] = {}
    for info in backups:  # oldest first, so the newest of each day and week wins
        local = info.created_at.tz_convert(NEW_YORK)
        by_day[local.date()] = info
        by_week[tuple(local.isocalendar())[:2]] = info
    keep = {info.backup_id for day in sorted(by_day)[-config.keep_daily :] for info in [by_day[day]]}
    if config.keep_weekly:
        keep |= {by_week[week].backup_id for week in sorted(by_week)[-config.keep_weekly :]}
    max_age = settings.retention.backups_days
    if max_age is not None:
        cutoff = now - pd.Timedelta(days=max_age)
        created = {info.backup_id: info.created_at for info in backups}
        keep = {backup_id for backup_id in keep if created[backup_id] >= cutoff}
    candidates = [info for info in backups if info.backup_id not in keep]
    if not candidates:
        return []
    holdings = {info.backup_id: _holding(settings, info) for info in backups}
    verified = {info.backup_id for info in backups if info.verified}
    remaining = {info.backup_id for info in backups}
    deleted = []
    for info in candidates:
        mine = holdings[info.backup_id]
        if mine is None:
            continue
        others: set[tuple[Any, ...]] = set()
        for backup_id in remaining - {info.backup_id}:
            if backup_id in verified and holdings[backup_id] is not None:
                others |= holdings[backup_id]
        if mine <= others:
            remaining.discard(info.backup_id)
            deleted.append(info.backup_id)
    return deleted


def _holding(settings: Settings, info: BackupInfo) -> set[tuple[Any, ...]] | None:
    """``(table, *partition)`` of every table's partition whose rows the backup holds; None if it cannot be read."""
    try:
        held = load_holdings(settings, info.path)
    except OperationError:
        return None
    return {(table, *key) for table, frame in held.items() for key in frame.itertuples(index=False, name=None)}


# ------------------------------------------------------------------------------------------------ pruned data


@dataclass(frozen=True)
class PrunedAsset:
    """What one retention run deleted of one Dagster asset's data (for one observation in the UI)."""

    asset: str
    tables: list[str]
    rows: int
    partitions: pd.DataFrame
    """symbol, window_start of the symbol-windows whose rows went (empty for an asset without them)."""
    backup_ids: list[str]
    cutoff: pd.Timestamp


def pruned_by_asset(plan: RetentionPlan) -> dict[str, PrunedAsset]:
    """Per Dagster asset, what an applied plan deleted of its tables' rows (assets that lost nothing are left out)."""
    grouped: dict[str, list[TablePrune]] = {}
    for name, prune in plan.tables.items():
        if prune.rows and name in TABLE_ASSETS:
            grouped.setdefault(TABLE_ASSETS[name], []).append(prune)
    summary = {}
    for asset, prunes in grouped.items():
        windows = [prune.partitions[_KEY] for prune in prunes if prune.table in WINDOW_COLUMNS]
        summary[asset] = PrunedAsset(
            asset=asset,
            tables=[prune.table for prune in prunes],
            rows=sum(prune.rows for prune in prunes),
            partitions=partition_frame(pd.concat(windows, ignore_index=True)) if windows else partition_frame([]),
            backup_ids=sorted({str(value) for prune in prunes for value in prune.partitions["backup_id"]}),
            cutoff=max(prune.cutoff for prune in prunes),
        )
    return summary


def pruned_partitions(settings: Settings, symbol: str | None = None, table: str | None = None) -> pd.DataFrame:
    """The recorded pruned symbol-windows (table_name, symbol, window_start, rows_deleted, backup_id, pruned_at)."""
    where, params = [], []
    if symbol is not None:
        where.append("symbol = ?")
        params.append(symbol)
    if table is not None:
        where.append("table_name = ?")
        params.append(table)
    return open_store(settings).read_rows("pruned_partitions", where, params)


def pruned(settings: Settings, symbol: str, window: Any, table: str | None = None) -> bool:
    """Whether retention deleted ``symbol``'s rows of ``window`` (in ``table``, or in any table)."""
    stamp = pd.Timestamp(window)
    stamp = stamp.tz_localize(NEW_YORK) if stamp.tz is None else stamp
    where, params = ["symbol = ?", "window_start = ?"], [symbol, stamp]
    if table is not None:
        where.append("table_name = ?")
        params.append(table)
    return len(open_store(settings).read_rows("pruned_partitions", where, params)) > 0
