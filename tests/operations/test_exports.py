"""Exports: every format round-trips to the stored rows; the manifest's counts and SHA-256s catch a changed file."""

import json

import pandas as pd
import pytest

from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.exports import (
    EXPORTED_TABLES,
    FORMATS,
    create_export,
    read_export,
    verify_export,
)
from lstm_pipeline.operations.store_layout import WINDOW_COLUMNS, as_read
from lstm_pipeline.storage import database_at


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips(settings, populated, day_windows, fmt):
    start, end = day_windows[3], day_windows[30]
    populated_alert = populated["alerts"].iloc[[0]].assign(
        resolved_at=pd.Timestamp("2025-01-02 12:00", tz="America/New_York"), message='quoted "text", commas'
    )
    database_at(settings.db_path).replace_tables(
        {"alerts": (populated_alert[["source", "symbol", "as_of_window"]], populated_alert)}
    )

    result = create_export(settings, symbols=["AAPL"], start=start, end=end, fmt=fmt)

    assert verify_export(result.path) == []
    back = read_export(result.path)
    database = database_at(settings.db_path)
    assert set(back) == set(EXPORTED_TABLES)
    for table in EXPORTED_TABLES:
        column = WINDOW_COLUMNS[table]
        stored = database.read_rows(table, ["symbol = ?", f"{column} >= ?", f"{column} <= ?"], ["AAPL", start, end])
        assert len(stored) == result.row_counts[table]
        assert len(stored) > 0
        # Excel keeps 15 significant digits; every other format is exact.
        pd.testing.assert_frame_equal(back[table], as_read(stored, table), check_exact=fmt != "excel", rtol=1e-13)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["format"] == fmt and manifest["symbols"] == ["AAPL"]
    assert {entry["rows"] for entry in manifest["tables"].values()} == set(result.row_counts.values())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_changed_export_file_is_caught(settings, populated, fmt):
    result = create_export(settings, fmt=fmt)
    target = result.files["predictions"]
    data = bytearray(target.read_bytes())
    data[-10] ^= 0x01
    target.write_bytes(bytes(data))
    problems = verify_export(result.path)
    assert len(problems) == 1 and "predictions" in problems[0] and "SHA-256" in problems[0]


def test_bad_requests_are_one_sentence(settings, populated):
    with pytest.raises(OperationError, match="Export format 'xml' is not supported"):
        create_export(settings, fmt="xml")
    with pytest.raises(OperationError, match=r"Symbol\(s\) \['ZZZ'\] are not configured"):
        create_export(settings, symbols=["ZZZ"])
    with pytest.raises(OperationError, match="ends before it starts"):
        create_export(settings, start="2025-01-03", end="2025-01-02")
