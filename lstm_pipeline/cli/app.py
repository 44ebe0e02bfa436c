"""The ``lstm-pipeline`` commands (Typer). Every command takes ``--json`` for scripts; see ``output`` for exit codes.

Read commands (``status``, ``predictions``, ``recommendations``, ``config``, ``performance``, ``alerts``) read the
store read-only through the storage layer; ``update`` goes through the running Dagster webserver; ``start`` runs
the UI and the REST service together (``serving.supervisor.run_stack``); ``backup``, ``restore``, ``export`` and
``retention`` call ``lstm_pipeline.operations``; ``backtest`` is ``python -m lstm_pipeline.backtest``; ``keys add``
mints an API key (``serving.keys``). ``restore`` (of the store or of a model) first asks this project's Dagster
instance (``DAGSTER_HOME``) whether a run is in progress, and refuses while one is.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from lstm_pipeline.cli.output import (
    FAILED,
    OK,
    UNREACHABLE,
    USAGE,
    CliError,
    console,
    emit_json,
    print_mapping,
    print_table,
    records,
    say_error,
)

app = typer.Typer(
    name="lstm-pipeline",
    help="Operate the LSTM prediction pipeline: its state, forecasts, alerts, runs, backups and exports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
alerts_app = typer.Typer(help="Show active alerts; acknowledge or resolve them.", no_args_is_help=False)
keys_app = typer.Typer(help="API keys of the REST service.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(keys_app, name="keys")

# Typer ships its own copy of Click; its exception classes are reached through Typer's public ones.
UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")
ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
SymbolArgument = Annotated[str | None, typer.Argument(help="One configured symbol (default: all).")]


class _State:
    config_path: str | None = None
    _settings: Any = None

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from lstm_pipeline.settings import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings


STATE = _State()


@app.callback()
def _root(
    config: Annotated[str | None, typer.Option("--config", help="Config file (default: LSTM_PIPELINE_CONFIG, "
                                                "else config/realtime_config.json).")] = None,
) -> None:
    STATE.config_path = config
    STATE._settings = None
    if config:
        os.environ["LSTM_PIPELINE_CONFIG"] = config


def _store() -> Any:
    from lstm_pipeline.cli.reads import open_store

    return open_store(STATE.settings)


# ----------------------------------------------------------------------------------------------- read commands


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Show system status and health: store, latest data per symbol, open alerts, Dagster and the REST service."""
    import httpx
    import pandas as pd

    from lstm_pipeline.cli import reads
    from lstm_pipeline.cli.runs import dagster_url
    from lstm_pipeline.operations.alert_channels import LEVELS, active_alerts

    settings = STATE.settings
    store = _store()
    bars = reads.latest_bars(store, settings)
    predictions = store.read_rows(
        "predictions", ["horizon_step = 1", *reads._latest("predictions", "as_of_window", list(settings.symbols))[0]],
        list(settings.symbols),
    )
    active = active_alerts(reads.alerts_since(store, None))
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)
    failing = store.read_rows("alert_deliveries", ["status IN ('failed', 'gave_up')", "last_attempt_at >= ?"], [since])
    by_level = {level: int((active["level"] == level).sum()) if len(active) else 0 for level in reversed(LEVELS)}

    def reachable(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    dagster = dagster_url(None)
    api = f"http://{settings.api.host}:{settings.api.port}"
    per_symbol = []
    for symbol in settings.symbols:
        bar = bars[bars["symbol"] == symbol]["window_start"]
        forecast = predictions[predictions["symbol"] == symbol]
        per_symbol.append({
            "symbol": symbol,
            "latest_bar": bar.max() if len(bar) else None,
            "latest_forecast": forecast["as_of_window"].max() if len(forecast) else None,
            "model_version": forecast["model_version"].iloc[-1] if len(forecast) else None,
            "confidence": float(forecast["confidence"].iloc[-1]) if len(forecast) and forecast["confidence"].notna()
            .iloc[-1] else None,
        })
    summary = {
        "store": str(settings.db_path),
        "store_size_bytes": reads.store_size_bytes(settings),
        "schema_version": reads.schema_version(store),
        "market_data_source": settings.market_data_source,
        "symbols": list(settings.symbols),
        "open_alerts_by_level": by_level,
        "alert_deliveries_failing": {channel: int(count) for channel, count in failing.groupby("channel").size()
                                     .items()} if len(failing) else {},
        "dagster_webserver": {"url": dagster, "reachable": reachable(f"{dagster}/server_info")},
        "rest_service": {"url": api, "reachable": reachable(f"{api}/health")},
    }
    if json_output:
        emit_json({**summary, "per_symbol": records(pd.DataFrame(per_symbol))})
        return
    flat = {key: value for key, value in summary.items() if not isinstance(value, dict)}
    flat["alert deliveries failing (last day)"] = ", ".join(
        f"{channel} {count}" for channel, count in summary["alert_deliveries_failing"].items()) or "none"
    flat["open alerts"] = ", ".join(f"{level} {count}" for level, count in by_level.items())
    for name in ("dagster_webserver", "rest_service"):
        item = summary[name]
        flat[name] = f"{item['url']} ({'up' if item['reachable'] else 'not reachable'})"
    print_mapping(flat, "Status")
    print_table(pd.DataFrame(per_symbol), "Latest data per symbol")


@app.command()
def predictions(symbol: SymbolArgument = None, json_output: JsonOption = False,
                steps: Annotated[int, typer.Option(help="Horizon steps shown per symbol (JSON has all).")] = 8,
                ) -> None:
    """Show current predictions: each symbol's newest week-ahead forecast."""
    from lstm_pipeline.cli import reads

    rows = reads.latest_predictions(_store(), STATE.settings, symbol)
    if json_output:
        emit_json(records(rows))
        return
    shown = rows[rows["horizon_step"] <= steps] if len(rows) else rows
    print_table(shown, "Current predictions", [
        "symbol", "as_of_window", "horizon_step", "target_window", "predicted_close", "lower_80", "upper_80",
        "last_close", "confidence", "confidence_level", "model_version",
    ], empty="no forecast stored yet (run market_bars_update or `lstm-pipeline update`).")


@app.command()
def recommendations(symbol: SymbolArgument = None, json_output: JsonOption = False,
                    actionable: Annotated[bool, typer.Option(help="Only buy/short, not held-back ones.")] = False,
                    ) -> None:
    """Show active trade recommendations: each symbol's newest, or the rule that held a trade back."""
    from lstm_pipeline.cli import reads

    rows = reads.latest_recommendations(_store(), STATE.settings, symbol)
    if actionable and len(rows):
        rows = rows[rows["action"] != "none"]
    if json_output:
        emit_json(records(rows))
        return
    print_table(rows, "Trade recommendations", [
        "symbol", "as_of_window", "action", "entry_window", "entry_price", "exit_window", "exit_price",
        "predicted_return_pct", "confidence", "held_back_by", "reason",
    ], empty="none stored yet.")


@app.command("config")
def show_config(json_output: JsonOption = False) -> None:
    """Show current configuration (secrets redacted)."""
    settings = STATE.settings
    document = settings.model_dump(mode="json")
    if json_output:
        emit_json(document)
        return

    def flatten(prefix: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out.update(flatten(f"{prefix}.{key}" if prefix else key, item))
            return out
        return {prefix: value}

    source = os.environ.get("LSTM_PIPELINE_CONFIG") or STATE.config_path or "built-in defaults / config file"
    print_mapping(flatten("", document), f"Configuration ({source})")


@app.command()
def performance(json_output: JsonOption = False,
                span: Annotated[str, typer.Option(help="Accuracy span: day, week or month.")] = "week") -> None:
    """Show performance metrics: the eight KPIs and each symbol's rolling accuracy."""
    from lstm_pipeline.cli import reads
    from lstm_pipeline.operations.monitoring import key_performance_indicators

    if span not in ("day", "week", "month"):
        raise CliError(f"Span {span!r} is not a span; use day, week or month.")
    settings = STATE.settings
    store = _store()
    accuracy = reads.latest_accuracy(store, settings)
    accuracy = accuracy[accuracy["span"] == span] if len(accuracy) else accuracy
    kpis = key_performance_indicators(store, settings)
    if json_output:
        emit_json({"kpis": kpis, "accuracy": records(accuracy)})
        return
    print_mapping({name: "-" if value is None else f"{value:.4g}" for name, value in kpis.items()},
                  "Key performance indicators")
    print_table(accuracy, f"Rolling accuracy ({span})", [
        "symbol", "window_start", "horizon_bucket", "n", "mae", "mape", "directional_accuracy", "mase",
        "coverage_80", "coverage_95", "reprediction_rate", "trade_success_rate",
    ], empty="no accuracy computed yet.")


@alerts_app.callback(invoke_without_command=True)
def alerts(ctx: typer.Context, json_output: JsonOption = False,
           since_hours: Annotated[float | None, typer.Option(
               "--resolved-since-hours", help="Also list alerts resolved in the last N hours.")] = None,
           ) -> None:
    """Show active alerts (most severe first), with their keys for `ack` and `resolve`."""
    if ctx.invoked_subcommand is not None:
        return
    import pandas as pd

    from lstm_pipeline.cli import reads
    from lstm_pipeline.operations.alert_channels import LIFECYCLE_SOURCES, active_alerts, with_levels

    since = None if since_hours is None else pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=since_hours)
    rows = reads.alerts_since(_store(), since)
    shown = active_alerts(rows)
    if since is not None and len(rows):
        resolved = with_levels(rows[rows["resolved_at"].notna() & rows["source"].isin(LIFECYCLE_SOURCES)])
        shown = pd.concat([shown, resolved], ignore_index=True)
    if json_output:
        emit_json(records(shown))
        return
    print_table(shown, "Alerts", [
        "level", "alert_key", "created_at", "message", "acknowledged_by", "escalated_at", "resolved_at",
    ], empty="no active alerts.")


@alerts_app.command("ack")
def alerts_ack(alert_key: Annotated[str, typer.Argument(help="The alert's key, e.g. prediction_error:AAPL.")],
               by: Annotated[str | None, typer.Option(help="Who acknowledges (default: this user).")] = None,
               json_output: JsonOption = False) -> None:
    """Acknowledge an open alert: no more messages about it, no escalation; its resolution is still announced."""
    from lstm_pipeline.operations.alert_channels import acknowledge_alerts

    rows = acknowledge_alerts(_store(), alert_key, by or getpass.getuser())
    _changed(rows, f"Acknowledged {len(rows)} open alert(s) with key {alert_key}.", json_output)


@alerts_app.command("resolve")
def alerts_resolve(alert_key: Annotated[str, typer.Argument(help="The alert's key, e.g. prediction_error:AAPL.")],
                   by: Annotated[str | None, typer.Option(help="Who resolves (default: this user).")] = None,
                   json_output: JsonOption = False) -> None:
    """Resolve an open alert by hand (raised again if its condition still holds at the next evaluation)."""
    from lstm_pipeline.operations.alert_channels import resolve_alerts

    rows = resolve_alerts(_store(), alert_key, by or getpass.getuser())
    _changed(rows, f"Resolved {len(rows)} open alert(s) with key {alert_key}.", json_output)


def _changed(rows: Any, message: str, json_output: bool) -> None:
    if json_output:
        emit_json(records(rows))
    else:
        console().print(message)


# ------------------------------------------------------------------------------------------------------- runs


@app.command()
def update(
    symbol: SymbolArgument = None,
    window: Annotated[str | None, typer.Option(help="Session window key YYYY-MM-DD-HH:MM (default: the newest "
                                               "registered one).")] = None,
    dagster_url_option: Annotated[str | None, typer.Option("--dagster-url", help="Default: LSTM_PIPELINE_DAGSTER_URL "
                                                           "or http://127.0.0.1:3000.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to follow the run.")] = 600.0,
    json_output: JsonOption = False,
) -> None:
    """Force an immediate update: launch market_bars_update through the running Dagster webserver and follow it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lstm_pipeline.cli.reads import _symbols
    from lstm_pipeline.cli.runs import DagsterWebserver, dagster_url, follow

    settings = STATE.settings
    symbols = _symbols(symbol, settings)
    if window is not None:
        from lstm_pipeline.market.calendar import parse_window_key

        try:
            parse_window_key(window)
        except ValueError:
            raise CliError(f"Window {window!r} is not a window key; write it YYYY-MM-DD-HH:MM, e.g. "
                           "2026-03-02-15:45.") from None
    webserver = DagsterWebserver(dagster_url(dagster_url_option))
    window = window or webserver.newest_window()
    run_id = webserver.launch_update(symbols, window)
    result: dict[str, Any] = {"run_id": run_id, "job": "market_bars_update", "symbols": symbols, "window": window,
                              "url": f"{webserver.url}/runs/{run_id}"}
    if not wait:
        emit_json(result) if json_output else console().print(f"Launched run {run_id}: {result['url']}")
        return
    from lstm_pipeline.jobs import WORKFLOW_CHAIN

    total = len(WORKFLOW_CHAIN)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TimeElapsedColumn(), console=console(), disable=json_output, transient=False) as progress:
        task = progress.add_task(f"run {run_id[:8]} starting", total=total)

        def show(state: str, steps: dict[str, str]) -> None:
            # Dagster reports a step once it starts; the chain's assets (and their check steps) are the total.
            planned = max(total, len(steps))
            done = sum(1 for value in steps.values() if value in ("SUCCESS", "FAILURE", "SKIPPED"))
            if state == "SUCCESS":
                done = planned
            running = [key for key, value in steps.items() if value == "IN_PROGRESS"]
            label = f"run {run_id[:8]} {state.lower()}" + (f": {', '.join(running)}" if running else "")
            progress.update(task, completed=min(done, planned), total=planned, description=label)

        final = follow(webserver, run_id, total, timeout, show)
    result["status"] = final
    if json_output:
        emit_json(result)
    if final == "SUCCESS":
        if not json_output:
            console().print(f"Run {run_id} succeeded: {result['url']}")
        return
    if final in ("FAILURE", "CANCELED"):
        from lstm_pipeline.cli.runs import failure_reason

        reason = failure_reason(webserver, run_id) if final == "FAILURE" else None
        why = f" ({reason.rstrip('.')})" if reason else ""
        raise CliError(f"Run {run_id} of market_bars_update ended {final}{why}; see {result['url']}.", FAILED)
    raise CliError(f"Run {run_id} is still {final} after {timeout:g} s; follow it at {result['url']}.", FAILED)


@app.command()
def start(
    dagster_port: Annotated[int, typer.Option(help="Port of the Dagster UI.")] = 3000,
    api_host: Annotated[str | None, typer.Option(help="Host of the REST service (default: api.host).")] = None,
    api_port: Annotated[int | None, typer.Option(help="Port of the REST service (default: api.port).")] = None,
) -> None:
    """Start the real-time system: the Dagster UI and daemon, and the REST service, until Ctrl-C."""
    try:
        from serving.supervisor import run_stack
    except ImportError as error:
        raise CliError(f"The REST service's supervisor cannot be loaded ({error}); install the project with "
                       "`pip install -e .` from its folder.", FAILED) from None
    code = run_stack(STATE.settings, dagster_port=dagster_port, api_host=api_host, api_port=api_port)
    if code:
        raise typer.Exit(code)


# ------------------------------------------------------------------------------------------------ operations


def _ops_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except ValueError as error:  # OperationError is a ValueError: one sentence a user can act on
        raise CliError(str(error), USAGE) from None


def _as_dict(result: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(result):
        return {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
    return dict(vars(result)) if hasattr(result, "__dict__") else {"result": result}


def _parse_time(text: str | None, name: str) -> Any:
    if text is None:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise CliError(f"{name} {text!r} is not a time; write it like 2026-03-02 or 2026-03-02T15:45.") from None
    return stamp.tz_localize("America/New_York") if stamp.tz is None else stamp


def _runs_in_progress() -> str | None:
    """Runs of this project's Dagster instance (``DAGSTER_HOME``) that have started and not finished, as a phrase;
    None when there are none or there is no instance."""
    home = os.environ.get("DAGSTER_HOME")
    if not home or not os.path.isdir(home):
        return None
    import logging

    from dagster import DagsterInstance

    from lstm_pipeline.operations_jobs import active_runs

    dagster_logger = logging.getLogger("dagster")
    level = dagster_logger.level
    dagster_logger.setLevel(logging.ERROR)  # its notes (e.g. "no dagster.yaml, using defaults") are not for stderr
    try:
        with DagsterInstance.from_config(home) as instance:
            return active_runs(instance)
    except Exception as error:  # noqa: BLE001 - any storage failure: the answer is unknown, so refuse
        raise CliError(
            f"The Dagster instance in {home} (DAGSTER_HOME) cannot say whether a run is in progress "
            f"({_one_sentence(error).rstrip('.')}), so nothing is replaced; fix that instance and restore again.",
            FAILED,
        ) from None
    finally:
        dagster_logger.setLevel(level)


@app.command()
def backup(
    verify: Annotated[bool, typer.Option(help="Restore the new backup into a scratch store and compare.")] = True,
    models: Annotated[bool, typer.Option(help="Also save each model version (models/<SYMBOL>/) not saved yet.")] = True,
    list_only: Annotated[bool, typer.Option("--list", help="List the backups instead of making one.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Back up the whole store (a full backup: every partition and the tables without one), encrypted; verify it by
    restoring it into a scratch store; and save each model version not saved yet."""
    from lstm_pipeline.operations import backups

    settings = STATE.settings
    if list_only:
        infos = [_as_dict(info) for info in _ops_call(backups.list_backups, settings)]
        if json_output:
            emit_json(infos)
        else:
            import pandas as pd

            print_table(pd.DataFrame(infos), "Backups", ["backup_id", "created_at", "full", "encrypted", "partitions",
                                                        "verified", "size_bytes"], empty="none yet.")
        return
    result = _ops_call(backups.create_backup, settings)
    document = _as_dict(result)
    document["models_saved"] = _ops_call(backups.backup_models, settings) if models else []
    problems: list[str] = []
    if verify:
        verified = _ops_call(backups.verify_backup, settings, result.backup_id)
        document["verified"] = bool(verified.ok)
        problems = list(verified.problems)
        document["problems"] = problems
    if json_output:
        emit_json(document)
    else:
        print_mapping({key: value for key, value in document.items() if key != "row_counts"},
                      f"Backup {result.backup_id}")
    if problems:
        raise CliError(f"Backup {result.backup_id} did not verify: {problems[0]}", FAILED)


@app.command()
def restore(
    table: Annotated[str | None, typer.Option(help="Restore only this table (default: the whole store).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Point in time: the newest backup of each partition at or before "
                                              "it.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Build and verify the restored store, but do not swap it in.")] = False,
    model: Annotated[str | None, typer.Option(help="Restore a saved model instead: SYMBOL or SYMBOL@VERSION (default: "
                                              "the newest saved version).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Restore the store (or one table, or its state at a time) from backups, built and verified aside, then swapped
    in; or put a saved model version back. Refused while a run of this project's Dagster instance is in progress."""
    if model is not None:
        if table is not None or as_of is not None or dry_run:
            raise CliError("--model restores a model folder on its own; give it without --table, --as-of and "
                           "--dry-run.")
        _restore_model(model, json_output)
        return
    from lstm_pipeline.operations import restore as restoring

    result = _ops_call(restoring.restore, STATE.settings, table=table, as_of=_parse_time(as_of, "--as-of"),
                       dry_run=dry_run, busy=_runs_in_progress)
    document = {**_as_dict(result), "warnings": result.warnings()}
    if json_output:
        emit_json(document)
        return
    print_mapping({key: value for key, value in document.items() if key != "warnings"},
                  "Restore" + (" (dry run)" if dry_run else ""))
    for line in document["warnings"]:
        console().print(f"[bold]Note:[/bold] {line}")


def _restore_model(model: str, json_output: bool) -> None:
    from lstm_pipeline.operations import backups

    symbol, _, version = model.partition("@")
    symbol = symbol.strip().upper()
    settings = STATE.settings
    version = version.strip() or (backups.list_model_backups(settings).get(symbol) or [None])[-1]
    reason = _runs_in_progress()
    if reason:
        raise CliError(f"The model of {symbol} is not replaced while a run may be using it ({reason}); wait for the "
                       "run to finish (or stop it) and restore again.", FAILED)
    path = _ops_call(backups.restore_model, settings, symbol, version)
    document = {"symbol": symbol, "version": version, "path": str(path)}
    if json_output:
        emit_json(document)
    else:
        console().print(f"Restored model {symbol} version {version} to {path}.")


@app.command("export")
def export_data(
    fmt: Annotated[str | None, typer.Option("--format", help="csv, json, excel or parquet (default: "
                                            "exports.default_format).")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols (default: all).")] = None,
    start_time: Annotated[str | None, typer.Option("--start", help="First window (a date or time).")] = None,
    end_time: Annotated[str | None, typer.Option("--end", help="Last window (a date or time).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Export predictions, validations, accuracy, recommendations and alerts with a manifest of counts and SHA-256."""
    from lstm_pipeline.operations import exports

    chosen = [part.strip().upper() for part in symbols.split(",") if part.strip()] if symbols else None
    result = _ops_call(exports.create_export, STATE.settings, symbols=chosen, start=_parse_time(start_time, "--start"),
                       end=_parse_time(end_time, "--end"), fmt=fmt)
    document = _as_dict(result)
    if json_output:
        emit_json(document)
    else:
        print_mapping({"path": document.get("path"), "manifest": document.get("manifest_path"),
                       **{f"rows {k}": v for k, v in (document.get("row_counts") or {}).items()}}, "Export")


@app.command()
def retention(
    dry_run: Annotated[bool, typer.Option(help="Print what would be deleted, delete nothing.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Delete data older than each category's maximum age, only where a verified backup holds it."""
    from lstm_pipeline.operations import retention as pruning

    settings = STATE.settings
    plan = _ops_call(pruning.plan_retention, settings)
    if not dry_run:
        plan = _ops_call(pruning.apply_retention, settings, plan)
    document = {"dry_run": dry_run, **plan.as_json()}
    if json_output:
        emit_json(document)
        return
    out = console()
    out.print("[bold]Retention" + (" (dry run: nothing deleted)" if dry_run else "") + "[/bold]")
    for line in plan.describe():
        out.print(line)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def backtest(ctx: typer.Context) -> None:
    """Walk-forward backtest: the same options as `python -m lstm_pipeline.backtest` (try `backtest --help`)."""
    from lstm_pipeline.backtest.cli import main as backtest_main

    code = backtest_main(list(ctx.args))
    if code:
        raise typer.Exit(code)


@keys_app.command("add")
def keys_add(
    role: Annotated[str, typer.Option(help="reader (read endpoints) or operator (also launches runs).")] = "reader",
    key_id: Annotated[str | None, typer.Option("--id", help="Key id for the audit trail (default: generated).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Mint an API key for the REST service; it is printed once and only its hash is stored."""
    if role not in ("reader", "operator"):
        raise CliError(f"Role {role!r} is not a role; use --role reader or --role operator.")
    from serving.keys import issue_key, key_file_path

    key = issue_key(role, key_id=key_id)  # type: ignore[arg-type]
    document = {"role": role, "key": key, "key_file": str(key_file_path())}
    if json_output:
        emit_json(document)
    else:
        console().print(f"New {role} key (shown once; send it as X-API-Key): {key}")


# ---------------------------------------------------------------------------------------------- entry point


def _one_sentence(error: BaseException) -> str:
    from lstm_pipeline.evaluation.alerting import first_sentence

    text = first_sentence(str(error), limit=400)
    return text or f"{type(error).__name__} with no message."


def run(argv: Sequence[str] | None = None) -> int:
    """Run the app; every error a user can cause ends as one sentence on stderr and a non-zero exit code."""
    from lstm_pipeline.settings import ConfigError

    try:
        result = app(args=list(argv) if argv is not None else None, prog_name="lstm-pipeline",
                     standalone_mode=False)
    except CliError as error:
        say_error(str(error))
        return error.code
    except UsageError as error:
        say_error(f"{error.format_message()} (see `lstm-pipeline --help`).")
        return USAGE
    except ClickException as error:
        say_error(error.format_message())
        return int(getattr(error, "exit_code", FAILED) or FAILED)
    except typer.Abort:
        say_error("Interrupted.")
        return 130
    except ConfigError as error:
        say_error(str(error))
        return USAGE
    except typer.Exit as error:
        return int(error.exit_code)
    except Exception as error:  # noqa: BLE001 - no traceback for a user: one sentence and a code
        try:
            from lstm_pipeline.storage import StorageError
        except ImportError:  # pragma: no cover
            StorageError = RuntimeError  # noqa: N806
        if isinstance(error, StorageError):
            say_error(_one_sentence(error))
            return FAILED
        if isinstance(error, ValueError):
            say_error(_one_sentence(error))
            return USAGE
        if os.environ.get("LSTM_PIPELINE_DEBUG"):
            raise
        say_error(f"{type(error).__name__}: {_one_sentence(error)} (set LSTM_PIPELINE_DEBUG=1 for the traceback).")
        return FAILED
    return int(result) if isinstance(result, int) else OK


__all__ = ["OK", "UNREACHABLE", "app", "run"]
