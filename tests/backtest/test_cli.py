"""``python -m lstm_pipeline.backtest``: exit code 2 and one sentence for each bad input, and a ``--json`` run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backtest.conftest import sim_history

ROOT = Path(__file__).resolve().parents[2]


def backtest_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "lstm_pipeline.backtest", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].endswith("."), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def bar_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bars")
    bars = sim_history(("AAPL",), "2025-03-03", "2025-04-15")
    columns = ["window_start", "open", "high", "low", "close", "volume"]
    aware = bars.assign(window_start=bars["window_start"].dt.tz_convert("UTC"))
    aware[columns].to_csv(folder / "AAPL.csv", index=False)
    naive_utc = bars.assign(window_start=bars["window_start"].dt.tz_convert("UTC").dt.tz_localize(None))
    (folder / "naive").mkdir()
    naive_utc[columns].to_csv(folder / "naive" / "AAPL.csv", index=False)
    (folder / "broken.csv").write_text("this is not,a bar file\n1,2\n")
    return folder


def test_a_missing_path_is_one_sentence_and_exit_2(tmp_path):
    result = backtest_cli("--bars", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "does not exist" in one_sentence(result.stderr)


def test_an_unreadable_file_is_one_sentence_and_exit_2(bar_files):
    result = backtest_cli("--bars", str(bar_files / "broken.csv"))
    assert result.returncode == 2
    assert "broken.csv" in one_sentence(result.stderr)


def test_naive_utc_stamps_read_as_new_york_are_refused_with_the_flag_that_fixes_it(bar_files):
    result = backtest_cli("--bars", str(bar_files / "naive"))
    assert result.returncode == 2
    sentence = one_sentence(result.stderr)
    assert "outside the 09:30-16:00 New York session" in sentence
    assert "--file-timezone" in sentence and "read as UTC, 0% would be" in sentence


def test_too_little_history_for_the_training_span_is_one_sentence_and_exit_2(bar_files):
    result = backtest_cli("--bars", str(bar_files / "naive"), "--file-timezone", "UTC", "--train-sessions", "40")
    assert result.returncode == 2
    assert "needs at least 45" in one_sentence(result.stderr)


@pytest.mark.slow
def test_json_prints_one_object_and_the_report_folder_is_written(bar_files, tmp_path):
    report_dir = tmp_path / "report"
    result = backtest_cli(
        "--bars", str(bar_files / "AAPL.csv"), "--train-sessions", "22", "--json", "--report-dir", str(report_dir),
        "--lookback-steps", "8", "--lstm-units", "8", "--max-epochs", "1", "--modes", "direct",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"symbols", "pooled"}
    assert list(report["symbols"]) == ["AAPL"]
    assert set(report["pooled"]["horizons"]) == {"1_step", "1_hour", "1_day", "1_week"}
    assert report["pooled"]["horizons"]["1_step"]["tod_band_interval_score_80"] > 0
    assert {path.name for path in report_dir.iterdir()} == {"backtest_report.md", "interval_scores.png",
                                                           "accuracy.png"}
    assert str(report_dir / "backtest_report.md") in result.stderr


def test_importing_the_backtest_loads_no_heavy_library():
    code = (
        "import sys, lstm_pipeline.backtest, lstm_pipeline.backtest.cli, lstm_pipeline.backtest.report; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib', 'dagster') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
