"""Data-quality rules for market bars, evaluated with great-expectations 1.x.

``evaluate_bar_quality`` runs every rule on a bar frame (the schema of ``lstm_pipeline.market.bars``) and returns
one ``QualityOutcome`` per rule, in ``QUALITY_CHECK_NAMES`` order. The row-level rules are great-expectations
expectations evaluated together in one validation of an ephemeral context; ``failed_rows`` names the offending
rows with a readable reason. The ERROR rules (``BLOCKING_CHECK_NAMES``) mean the bars must not be used; the WARN
rules (missing windows, price jumps) report without blocking.

great-expectations is imported inside ``evaluate_bar_quality`` only: importing it takes seconds, which code
locations and most tests should not pay. This module imports no Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from lstm_pipeline.market.bars import BAR_COLUMNS, PRICE_COLUMNS
from lstm_pipeline.market.calendar import NEW_YORK, WINDOW, session_windows, sessions

Severity = Literal["ERROR", "WARN"]

_CHECKS: tuple[tuple[str, Severity], ...] = (
    ("schema_and_types", "ERROR"),
    ("ohlcv_not_null", "ERROR"),
    ("high_low_bounds", "ERROR"),
    ("volume_non_negative", "ERROR"),
    ("one_row_per_window", "ERROR"),
    ("timestamps_in_session", "ERROR"),
    ("complete_windows", "WARN"),
    ("price_jumps", "WARN"),
)
QUALITY_CHECK_NAMES: tuple[str, ...] = tuple(name for name, _ in _CHECKS)
"""Every rule, in the order ``evaluate_bar_quality`` returns them."""
BLOCKING_CHECK_NAMES: tuple[str, ...] = tuple(name for name, severity in _CHECKS if severity == "ERROR")
"""The ERROR rules: bars failing any of them must not reach downstream assets."""
_SEVERITY: dict[str, Severity] = dict(_CHECKS)

MAX_FAILED_ROWS = 50
"""At most this many offending rows are kept per rule; ``stats["failed_count"]`` has the full count."""
MIN_RETURN_STD = 5e-4
"""Floor (5 basis points) on the rolling standard deviation of 15-minute log returns in ``price_jumps``, so a
flat stretch of identical closes does not turn the next one-tick move into an "infinite-sigma" jump."""

FAILED_ROW_COLUMNS = ("symbol", "window_start", "reason")
_OHLCV = (*PRICE_COLUMNS, "volume")
_FLOAT_TYPES = ["float64", "float32", "float"]
"""Type names for ``ExpectColumnValuesToBeInTypeList``: numpy dtypes for typed columns, ``float`` for values of an
object column (great-expectations checks object columns value by value)."""
_INT_TYPES = ["int64", "int32", "Int64Dtype", "Int32Dtype", "int"]
_COLUMN_TYPES = {
    **{name: _FLOAT_TYPES for name in (*PRICE_COLUMNS, "vwap")},
    "volume": _INT_TYPES,
    "trade_count": _INT_TYPES,
}
_TYPE_WORDS = {"float": "a float", "int": "an integer"}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, eq=False)
class QualityOutcome:
    """The verdict of one rule on one bar frame."""

    name: str
    passed: bool
    severity: Severity
    description: str
    failed_rows: pd.DataFrame = field(repr=False)
    """At most ``MAX_FAILED_ROWS`` rows: ``symbol``, ``window_start`` (New York) and a readable ``reason``."""
    stats: dict = field(default_factory=dict)
    """Numbers behind the verdict; always ``failed_count`` and ``rows_checked``."""
    all_failed_rows: pd.DataFrame | None = field(default=None, repr=False)
    """Every offending row, uncapped (same columns), for quarantining what a blocking rule rejects; a problem of a
    whole column has a null symbol and window. None for rules that do not judge rows (``complete_windows``)."""


# --------------------------------------------------------------------------------------------------- formatting


def _num(value: Any) -> str:
    """A short readable number: ``101.2``, ``-5``, ``1.5e-07``; ``null`` for a missing value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "null"
    if isinstance(value, str):
        return repr(value)
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    if 1e-4 <= abs(number) < 1e15:
        return f"{number:.6f}".rstrip("0").rstrip(".")
    return f"{number:.6g}"


def _when(stamp: Any) -> str:
    if stamp is None or pd.isna(stamp):
        return "?"
    return pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M")


def _failed_frame(entries: list[tuple[Any, Any, str]], limit: int | None = MAX_FAILED_ROWS) -> pd.DataFrame:
    """The ``failed_rows`` frame (capped at ``limit``) from ``(symbol, window_start, reason)`` entries, in order."""
    kept = entries if limit is None else entries[:limit]
    return pd.DataFrame(
        {
            "symbol": pd.Series([entry[0] for entry in kept], dtype="string"),
            "window_start": pd.Series(
                pd.DatetimeIndex([entry[1] for entry in kept], dtype=f"datetime64[ns, {NEW_YORK}]")
            ),
            "reason": pd.Series([entry[2] for entry in kept], dtype="object"),
        },
        columns=list(FAILED_ROW_COLUMNS),
    )


def _describe(passed_text: str, failed_text: str, entries: list[tuple[Any, Any, str]], count: int) -> str:
    if not count:
        return passed_text
    symbol, stamp, reason = entries[0]
    where = f"{symbol if symbol is not None and not pd.isna(symbol) else '?'} {_when(stamp)}"
    first = reason if (symbol is None or pd.isna(symbol)) and pd.isna(stamp) else f"{where}: {reason}"
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"{failed_text} First: {first}{more}."


# --------------------------------------------------------------------------------------------- preparing rows


def _as_new_york(values: pd.Series) -> pd.Series:
    """``window_start`` as tz-aware New York timestamps; naive values are New York wall time, junk becomes NaT."""
    try:
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            stamps = values
        elif pd.api.types.is_datetime64_dtype(values.dtype):
            stamps = values.dt.tz_localize(NEW_YORK, ambiguous="NaT", nonexistent="NaT")
        else:
            try:
                stamps = pd.to_datetime(values, errors="coerce")
            except (ValueError, TypeError):  # mixed offsets: read them as instants
                stamps = pd.to_datetime(values, errors="coerce", utc=True)
            if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
                stamps = stamps.dt.tz_localize(NEW_YORK, ambiguous="NaT", nonexistent="NaT")
        return stamps.dt.tz_convert(NEW_YORK).astype(f"datetime64[ns, {NEW_YORK}]")
    except (ValueError, TypeError, AttributeError, OverflowError):
        return pd.Series(pd.NaT, index=values.index, dtype=f"datetime64[ns, {NEW_YORK}]")


def _checked_values(raw: pd.DataFrame) -> pd.DataFrame:
    """The values the row rules judge: the bar columns coerced to their types (junk and absent columns null).

    Coercion keeps a wrong *type* a ``schema_and_types`` failure only: string prices that read as numbers are
    judged as those numbers by the value rules, and text that is no number is a null.
    """
    index = raw.index
    out = pd.DataFrame(index=index)

    def column(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series(None, index=index, dtype="object")

    out["symbol"] = column("symbol").astype("string")
    out["window_start"] = _as_new_york(column("window_start"))
    for name in _OHLCV:
        out[name] = pd.to_numeric(column(name), errors="coerce").astype("float64")
    return out


def _session_keys(stamps: pd.Series) -> pd.Series:
    """A comparable key of each window start (New York wall time with offset); ``missing`` for NaT."""
    keys = stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f%z")
    return keys.astype("object").where(stamps.notna(), "missing")


def _jump_sigmas(values: pd.DataFrame, lookback: int) -> pd.DataFrame:
    """Per row: the close-to-close log return, the std of the ``lookback`` prior returns, and their ratio.

    Rows are ordered by symbol and window; a symbol's first bar has no return, and a return needs at least
    ``max(2, lookback // 2)`` prior returns before it is judged.
    """
    result = pd.DataFrame(
        {
            "log_return": np.nan,
            "prior_std": np.nan,
            "prior_count": 0,
            "prev_close": np.nan,
            "overnight": False,
            "sigmas": np.nan,
        },
        index=values.index,
    )
    usable = values[values["symbol"].notna() & values["window_start"].notna()]
    if usable.empty or lookback < 2:
        return result
    ordered = usable.sort_values(["symbol", "window_start"], kind="stable")
    by_symbol = ordered["symbol"].astype("object")
    close = ordered["close"].where(ordered["close"] > 0)
    log_close = np.log(close)
    log_return = log_close.groupby(by_symbol, sort=False).diff()
    prior = log_return.groupby(by_symbol, sort=False).shift(1)
    min_history = max(2, lookback // 2)
    rolling = prior.groupby(by_symbol, sort=False).rolling(lookback, min_periods=min_history)
    prior_std = rolling.std().reset_index(level=0, drop=True)
    prior_count = rolling.count().reset_index(level=0, drop=True)
    result.loc[ordered.index, "log_return"] = log_return
    result.loc[ordered.index, "prev_close"] = close.groupby(by_symbol, sort=False).shift(1)
    previous_start = ordered["window_start"].groupby(by_symbol, sort=False).shift(1)
    result["overnight"] = False
    result.loc[ordered.index, "overnight"] = (
        previous_start.notna() & (previous_start.dt.date != ordered["window_start"].dt.date)
    ).to_numpy()
    result.loc[prior_std.index, "prior_std"] = prior_std
    result.loc[prior_count.index, "prior_count"] = prior_count.fillna(0).astype(int)
    result["sigmas"] = result["log_return"].abs() / result["prior_std"].clip(lower=MIN_RETURN_STD)
    return result


# ----------------------------------------------------------------------------------------------------- reasons


def _out_of_session_reason(stamp: Any, schedule: pd.DataFrame) -> str:
    if stamp is None or pd.isna(stamp):
        return "window_start is missing or not a timestamp"
    stamp = pd.Timestamp(stamp)
    day = pd.Timestamp(stamp.date())
    time = stamp.strftime("%H:%M")
    if day not in schedule.index:
        if stamp.weekday() >= 5:
            return f"{stamp:%Y-%m-%d} is a {_WEEKDAYS[stamp.weekday()]}, not a trading day"
        return f"{stamp:%Y-%m-%d} is an NYSE holiday (no session that day)"
    opens, closes = schedule.loc[day, "open"], schedule.loc[day, "close"]
    if stamp < opens:
        return f"{time} is before the {opens:%H:%M} open (outside the regular session)"
    if stamp >= closes:
        early = " (early close)" if closes.strftime("%H:%M") != "16:00" else ""
        return f"{time} is at or after the {closes:%H:%M} close{early}"
    if stamp + WINDOW > closes:
        return f"{time} starts a window that runs past the {closes:%H:%M} close"
    if stamp.microsecond or stamp.nanosecond:
        time = stamp.strftime("%H:%M:%S.%f")
    elif stamp.second:
        time = stamp.strftime("%H:%M:%S")
    return f"{time} is not on the 15-minute grid from the {opens:%H:%M} open"


@dataclass
class _Rule:
    """One expectation, the check it belongs to, and how to explain a row it rejects."""

    check: str
    expectation: Any
    reason: Callable[[int], str] | None = None
    """Reason for the row at this position, or None for a table-level expectation."""


# ------------------------------------------------------------------------------------------------ evaluation


def _import_gx():
    """great-expectations and its expectations module, imported on first use (seconds) with analytics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def _gx_context():
    """A fresh in-memory context: no docs site, no analytics, no progress bars."""
    gx, _ = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        # Without this every validation draws "Calculating Metrics" tqdm bars on stderr.
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx, gx.get_context(mode="ephemeral", project_config=config)


def _validate(frame: pd.DataFrame, rules: list[_Rule]) -> list[Any]:
    """Run every rule's expectation in one suite validation; results in ``rules`` order."""
    gx, context = _gx_context()
    batch = (
        context.data_sources.add_pandas("market_bars")
        .add_dataframe_asset("bars")
        .add_batch_definition_whole_dataframe("whole_frame")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(name="market_bars_quality")
    for position, rule in enumerate(rules):
        rule.expectation.meta = {"rule": position}
        suite.add_expectation(rule.expectation)
    validation = batch.validate(suite, result_format="COMPLETE")
    by_position: list[Any] = [None] * len(rules)
    for result in validation.results:
        by_position[int(result.expectation_config.meta["rule"])] = result
    return by_position


def _exception(result: Any) -> str | None:
    if result is None:
        return "great-expectations returned no result"
    info = result.exception_info or {}
    if isinstance(info, dict) and "raised_exception" not in info:  # keyed by metric when several metrics raised
        info = next(iter(info.values()), {}) if info else {}
    if isinstance(info, dict) and info.get("raised_exception"):
        return str(info.get("exception_message") or "unknown error")
    return None


def evaluate_bar_quality(
    bars: pd.DataFrame,
    expected_windows: Mapping[str, pd.DatetimeIndex] | None = None,
    *,
    jump_sigmas: float = 8.0,
    jump_lookback: int = 26,
) -> list[QualityOutcome]:
    """Judge ``bars`` with every rule; one outcome per name of ``QUALITY_CHECK_NAMES``, in that order.

    ``expected_windows`` maps a symbol to the window starts it should have a bar for; each one without a row is
    reported by ``complete_windows``. ``price_jumps`` flags a close-to-close log return larger than
    ``jump_sigmas`` standard deviations of the symbol's ``jump_lookback`` prior returns.
    """
    _, gxe = _import_gx()
    raw = bars.reset_index(drop=True)
    values = _checked_values(raw)
    rows = len(raw)

    # Derived columns the expectations read. Coerced values get their own names so the type expectations still
    # see the columns exactly as they came.
    frame = raw.copy()
    for name in ("symbol", "window_start", *_OHLCV):
        frame[f"checked_{name}"] = values[name]
    frame["checked_session_key"] = _session_keys(values["window_start"])
    jumps = _jump_sigmas(values, jump_lookback)
    frame["checked_jump_sigmas"] = jumps["sigmas"]

    valid_days = values["window_start"].dropna()
    if valid_days.empty:
        schedule = sessions("2000-01-03", "2000-01-02")
        session_keys: list[str] = []
    else:
        first_day, last_day = valid_days.min().date(), valid_days.max().date()
        schedule = sessions(first_day, last_day)
        schedule.index = pd.DatetimeIndex(schedule.index).tz_localize(None).normalize()
        windows = session_windows(first_day, pd.Timestamp(last_day) + pd.Timedelta(days=1))
        session_keys = sorted(set(_session_keys(pd.Series(windows)).tolist()))

    def row(position: int) -> tuple[Any, Any]:
        return values.at[position, "symbol"], values.at[position, "window_start"]

    def raw_value(name: str, position: int) -> Any:
        return raw.at[position, name] if name in raw.columns else None

    # -- the rules ------------------------------------------------------------------------------------------
    rules: list[_Rule] = [
        _Rule("schema_and_types", gxe.ExpectTableColumnsToMatchSet(column_set=list(BAR_COLUMNS), exact_match=False))
    ]
    for name, type_list in _COLUMN_TYPES.items():
        if name in raw.columns:
            word = _TYPE_WORDS["float" if type_list is _FLOAT_TYPES else "int"]
            rules.append(
                _Rule(
                    "schema_and_types",
                    gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=type_list),
                    lambda p, name=name, word=word: (
                        f"{name} {_num(raw_value(name, p))} is a {type(raw_value(name, p)).__name__}, not {word}"
                    ),
                )
            )

    def null_reason(name: str) -> Callable[[int], str]:
        def reason(position: int) -> str:
            original = raw_value(name, position)
            if name not in raw.columns:
                return f"{name} is missing (no such column)"
            if original is None or (not isinstance(original, str) and pd.isna(original)):
                return f"{name} is null"
            return f"{name} {_num(original)} is not a number"

        return reason

    for name in _OHLCV:
        rules.append(
            _Rule("ohlcv_not_null", gxe.ExpectColumnValuesToNotBeNull(column=f"checked_{name}"), null_reason(name))
        )

    def above(a: str, b: str, verb: str) -> _Rule:
        """``a >= b`` for every row where both are present; rows with a null are ``ohlcv_not_null``'s business."""
        return _Rule(
            "high_low_bounds",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=f"checked_{a}", column_B=f"checked_{b}", or_equal=True, ignore_row_if="either_value_is_missing"
            ),
            lambda p: (
                f"{verb} {_num(values.at[p, verb])} is {'below' if verb == a else 'above'} "
                f"{b if verb == a else a} {_num(values.at[p, b if verb == a else a])}"
            ),
        )

    rules += [
        above("high", "open", "high"),
        above("high", "close", "high"),
        above("open", "low", "low"),
        above("close", "low", "low"),
        above("high", "low", "high"),
        _Rule(
            "high_low_bounds",
            gxe.ExpectColumnValuesToBeBetween(column="checked_low", min_value=0, strict_min=True),
            lambda p: f"low {_num(values.at[p, 'low'])} is not a positive price",
        ),
        _Rule(
            "volume_non_negative",
            gxe.ExpectColumnValuesToBeBetween(column="checked_volume", min_value=0),
            lambda p: f"volume {_num(values.at[p, 'volume'])} is negative",
        ),
    ]

    group_sizes = values.groupby(["symbol", "window_start"], dropna=False)["symbol"].transform("size")
    rules.append(
        _Rule(
            "one_row_per_window",
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["checked_symbol", "checked_window_start"]),
            lambda p: f"{int(group_sizes.iat[p])} rows for {values.at[p, 'symbol']} at {_when(row(p)[1])}",
        )
    )
    rules.append(
        _Rule(
            "timestamps_in_session",
            gxe.ExpectColumnValuesToBeInSet(column="checked_session_key", value_set=session_keys),
            lambda p: _out_of_session_reason(values.at[p, "window_start"], schedule),
        )
    )

    def jump_reason(position: int) -> str:
        close, previous = values.at[position, "close"], jumps.at[position, "prev_close"]
        return (
            f"close {_num(close)} is a {np.expm1(jumps.at[position, 'log_return']):+.2%} move from {_num(previous)}: "
            f"{jumps.at[position, 'sigmas']:.1f} sigma of the {int(jumps.at[position, 'prior_count'])} prior "
            f"15-minute returns (limit {jump_sigmas:g})"
            + (", across the overnight gap" if jumps.at[position, "overnight"] else "")
        )

    rules.append(
        _Rule(
            "price_jumps",
            gxe.ExpectColumnValuesToBeBetween(column="checked_jump_sigmas", max_value=float(jump_sigmas)),
            jump_reason,
        )
    )

    results = _validate(frame, rules)

    # -- collect per check --------------------------------------------------------------------------------
    failures: dict[str, dict[int, list[str]]] = {name: {} for name in QUALITY_CHECK_NAMES}
    column_failures: dict[str, list[str]] = {name: [] for name in QUALITY_CHECK_NAMES}
    errors: dict[str, list[str]] = {name: [] for name in QUALITY_CHECK_NAMES}
    for rule, result in zip(rules, results, strict=True):
        error = _exception(result)
        if error is not None:
            errors[rule.check].append(f"{rule.expectation.expectation_type}: {error}")
            continue
        if result.success:
            continue
        details = result.result or {}
        if rule.expectation.expectation_type == "expect_table_columns_to_match_set":
            missing = (details.get("details") or {}).get("mismatched", {}).get("missing") or []
            column_failures[rule.check] += [f"column {name!r} is missing" for name in missing]
            continue
        indices = details.get("unexpected_index_list")
        if indices is None:  # a column-level verdict: the dtype itself is wrong
            column = rule.expectation.column
            expected = BAR_COLUMNS.get(column, "?")
            column_failures[rule.check].append(f"column {column!r} has dtype {raw[column].dtype}, expected {expected}")
            continue
        for position in indices:
            failures[rule.check].setdefault(int(position), []).append(rule.reason(int(position)))

    # window_start's timezone is not something ExpectColumnValuesToBeInTypeList can express; check it here.
    if "window_start" in raw.columns and not isinstance(raw["window_start"].dtype, pd.DatetimeTZDtype):
        column_failures["schema_and_types"].append(
            f"column 'window_start' has dtype {raw['window_start'].dtype}, expected a timezone-aware datetime"
            f" ({BAR_COLUMNS['window_start']})"
        )
    for name in ("symbol", "source"):
        if name in raw.columns and not (pd.api.types.is_string_dtype(raw[name].dtype) or raw[name].dtype == object):
            column_failures["schema_and_types"].append(
                f"column {name!r} has dtype {raw[name].dtype}, expected {BAR_COLUMNS[name]}"
            )

    def outcome(name: str, passed_text: str, failed_text: str, extra: dict | None = None) -> QualityOutcome:
        by_row = failures[name]
        ordered = (
            values.loc[sorted(by_row), ["symbol", "window_start"]]
            .sort_values(["symbol", "window_start"], kind="stable", na_position="last")
            .index
        )
        entries = [(None, pd.NaT, text) for text in column_failures[name]]
        entries += [(*row(p), "; ".join(dict.fromkeys(by_row[p]))) for p in ordered]
        count = len(column_failures[name]) + len(by_row)
        stats = {"failed_count": count, "rows_checked": rows, **(extra or {})}
        if errors[name]:
            stats["gx_errors"] = " | ".join(errors[name])
            description = f"great-expectations could not evaluate this rule: {stats['gx_errors']}"
            return QualityOutcome(
                name, False, _SEVERITY[name], description, _failed_frame(entries), stats, _failed_frame(entries, None)
            )
        description = _describe(passed_text, failed_text.format(count=count, rows=rows), entries, count)
        return QualityOutcome(
            name, count == 0, _SEVERITY[name], description, _failed_frame(entries), stats, _failed_frame(entries, None)
        )

    outcomes = [
        outcome(
            "schema_and_types",
            f"All {len(BAR_COLUMNS)} bar columns are present with their types.",
            "{count} schema problem(s) in the bar columns or their values.",
            {"extra_columns": ", ".join(sorted(set(raw.columns) - set(BAR_COLUMNS)))},
        ),
        outcome(
            "ohlcv_not_null",
            f"No nulls in open, high, low, close or volume ({rows} rows).",
            "{count} of {rows} rows have a null or non-numeric open, high, low, close or volume.",
        ),
        outcome(
            "high_low_bounds",
            f"All {rows} rows have low <= open, close <= high and a positive low.",
            "{count} of {rows} rows break low <= min(open, close) <= max(open, close) <= high.",
        ),
        outcome(
            "volume_non_negative",
            f"No negative volume ({rows} rows).",
            "{count} of {rows} rows have a negative volume.",
        ),
        outcome(
            "one_row_per_window",
            f"One row per symbol and window ({rows} rows).",
            "{count} of {rows} rows share their symbol and window with another row.",
        ),
        outcome(
            "timestamps_in_session",
            f"Every window_start starts an NYSE regular-session 15-minute window ({rows} rows).",
            "{count} of {rows} rows do not start an NYSE regular-session 15-minute window.",
        ),
        _complete_windows(values, expected_windows, rows),
        outcome(
            "price_jumps",
            f"No close-to-close move beyond {jump_sigmas:g} rolling standard deviations ({rows} rows).",
            "{count} close-to-close move(s) beyond " + f"{jump_sigmas:g} rolling standard deviations.",
            {
                "max_sigmas": float(jumps["sigmas"].max()) if jumps["sigmas"].notna().any() else 0.0,
                "rows_judged": int(jumps["sigmas"].notna().sum()),
                "jump_sigmas": float(jump_sigmas),
                "jump_lookback": int(jump_lookback),
            },
        ),
    ]
    return outcomes


def _complete_windows(
    values: pd.DataFrame, expected_windows: Mapping[str, pd.DatetimeIndex] | None, rows: int
) -> QualityOutcome:
    """Expected windows without a row; reported window by window, never filled in."""
    entries: list[tuple[Any, Any, str]] = []
    expected_count = 0
    present = values.dropna(subset=["symbol", "window_start"])
    have = {
        symbol: set(group["window_start"])
        for symbol, group in present.groupby(present["symbol"].astype("object"), sort=False)
    }
    for symbol, windows in (expected_windows or {}).items():
        stamps = pd.DatetimeIndex(windows)
        stamps = stamps.tz_localize(NEW_YORK) if stamps.tz is None else stamps.tz_convert(NEW_YORK)
        stamps = stamps.unique().sort_values()
        expected_count += len(stamps)
        seen = have.get(symbol, set())
        entries += [(symbol, stamp, "no bar for this window") for stamp in stamps if stamp not in seen]
    count = len(entries)
    stats = {"failed_count": count, "rows_checked": rows, "expected_windows": expected_count}
    if expected_windows is None:
        description = "No expected windows were given, so none can be missing."
    elif count:
        description = _describe(
            "", f"{count} of {expected_count} expected window(s) have no bar (reported, not filled).", entries, count
        )
    else:
        description = f"All {expected_count} expected windows have a bar."
    return QualityOutcome("complete_windows", count == 0, "WARN", description, _failed_frame(entries), stats)
