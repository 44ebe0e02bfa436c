"""The console script is cheap to start and its errors are sentences, not tracebacks."""

import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import SCRIPT, run_cli

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_cli_loads_no_heavy_library():
    code = (
        "import sys, lstm_pipeline.cli, lstm_pipeline.cli.app; "
        "print(sorted(m for m in ('tensorflow', 'dagster', 'pandas', 'duckdb', 'matplotlib') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_definitions_load_no_plotting_host_or_smtp_test_library():
    code = (
        "import sys, lstm_pipeline.definitions; "
        "print(sorted(m for m in ('tensorflow', 'matplotlib', 'psutil', 'aiosmtpd') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_help_and_usage_errors(populated):
    helped = run_cli(populated, "--help")
    assert helped.returncode == 0
    for command in ("start", "status", "predictions", "recommendations", "update", "config", "performance", "alerts",
                    "backup", "restore", "export", "retention", "backtest", "keys"):
        assert command in helped.stdout
    unknown = run_cli(populated, "frobnicate")
    assert unknown.returncode == 2 and "No such command 'frobnicate'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert SCRIPT.exists()


OPERATIONS_SOURCES = [
    *sorted((PROJECT_ROOT / "lstm_pipeline" / "cli").glob("*.py")),
    *sorted((PROJECT_ROOT / "lstm_pipeline" / "operations").glob("*.py")),
    *(PROJECT_ROOT / "lstm_pipeline" / name for name in (
        "assets/backups.py", "assets/exports.py", "sensors/backups_automation.py", "operations_jobs.py")),
]


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is a module, not a package
        return False


def test_the_operations_docs_name_only_modules_and_options_that_exist():
    import importlib
    import re

    import typer

    from lstm_pipeline.cli.app import app

    root = typer.main.get_command(app)
    problems = []
    for path in OPERATIONS_SOURCES:
        text = path.read_text()
        for dotted in set(re.findall(r"``(lstm_pipeline(?:\.\w+)+)``", text)):
            parts = dotted.split(".")
            module = next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if _is_module(".".join(parts[:n])))
            target = importlib.import_module(module)
            for attribute in parts[len(module.split(".")):]:
                target = getattr(target, attribute, None)
            if target is None:
                problems.append(f"{path.name}: {dotted}")
        for words, options in re.findall(r"lstm-pipeline ((?:[a-z]+ )+)((?:--[a-z-]+ ?)+)", text):
            command = root
            for word in words.split():
                command = command.commands[word] if hasattr(command, "commands") and word in command.commands else (
                    command)
            known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
            problems += [f"{path.name}: lstm-pipeline {words}{option}" for option in options.split()
                         if option not in known]
    assert problems == []
