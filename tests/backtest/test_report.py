"""The backtest report as a table, strict JSON and a Markdown file with plots."""

import json
import math

import pytest

from lstm_pipeline.backtest.report import json_ready, report_json, text_table, write_report

pytestmark = pytest.mark.slow


def test_the_table_has_every_symbol_pooled_and_every_bucket(backtest):
    table = text_table(backtest.report)
    for name in ("== AAPL ==", "== MSFT ==", "== pooled ==", "1_step", "1_hour", "1_day", "1_week", "tod95"):
        assert name in table
    mase = backtest.report["pooled"]["horizons"]["1_day"]["mase"]
    assert f"{mase:.3f}" in table


def test_json_is_strict_and_round_trips(backtest):
    document = json.loads(report_json(backtest.report))
    assert document["pooled"]["horizons"]["1_week"]["coverage_95"] == pytest.approx(
        backtest.report["pooled"]["horizons"]["1_week"]["coverage_95"]
    )
    assert json_ready({"x": math.nan, "y": [math.inf, 1.0]}) == {"x": None, "y": [None, 1.0]}


def test_the_markdown_report_links_its_plots(backtest, tmp_path):
    path = write_report(backtest.report, tmp_path / "out", {"train_sessions": 22}, backtest.timings)
    text = path.read_text()
    assert "![interval scores and coverage](interval_scores.png)" in text
    assert "Does confidence separate good forecasts from bad?" in text
    for name in ("interval_scores.png", "accuracy.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
