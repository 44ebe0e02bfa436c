"""The console script is cheap to start and its errors are sentences, not tracebacks."""

import subprocess
import sys

from tests.cli.conftest import SCRIPT, run_cli


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
