"""Backup and verified restore of a year-long store: seconds, size against the raw DuckDB file, throughput.

The store holds N symbols x one year of 15-minute session windows (default 10 x 2025) in every chain table,
synthesized directly (no training; ``tests/operations/synthetic.py``), with the live chain's 130 forecast and
validation rows per window (``--horizon-steps``), so predictions and validations are the size a real year makes.
Measured:

- full backup (every table, zstd Parquet, AES-256-GCM), then its verification (restore into a scratch DuckDB,
  compare row counts and checksums);
- an incremental backup of one session's windows (what the nightly backup does after a normal day);
- a whole-store restore (new file, verified, swapped in).

Run: ``python benchmarks/bench_backup.py [--symbols 10] [--start 2025-01-02] [--end 2026-01-01] [--horizon-steps 130]``
(about 5 minutes and a peak of 17 GiB of memory on 2 cores at the defaults: 17 million rows, the largest
tables 8.4 million each, handled one table at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lstm_pipeline.operations.backups import create_backup, verify_backup  # noqa: E402
from lstm_pipeline.operations.crypto import generate_key  # noqa: E402
from lstm_pipeline.operations.restore import restore  # noqa: E402
from lstm_pipeline.settings import load_settings  # noqa: E402
from tests.operations.synthetic import chain_rows, windows, write_chain  # noqa: E402

TICKERS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "JPM", "V", "XOM", "UNH", "HD"]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--start", default="2025-01-02")
    parser.add_argument("--end", default="2026-01-01")
    parser.add_argument("--horizon-steps", type=int, default=130)
    args = parser.parse_args()
    symbols = TICKERS[: args.symbols]
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as folder:
        root = Path(folder)
        config = root / "config.json"
        config.write_text(json.dumps({
            "symbols": symbols, "db_path": str(root / "store.duckdb"), "models_dir": str(root / "models"),
            "backups": {"dir": str(root / "backups"), "include_models": False},
        }))
        settings = load_settings(config, {"LSTM_PIPELINE_BACKUP_KEY": generate_key()})

        started = time.perf_counter()
        session = windows(args.start, args.end)
        rows = chain_rows(symbols, session, horizon_steps=args.horizon_steps)
        write_chain(settings.db_path, rows)
        total_rows = sum(len(frame) for frame in rows.values())
        print(f"store: {len(symbols)} symbols x {len(session)} windows = {len(symbols) * len(session)} partitions, "
              f"{total_rows} rows ({', '.join(f'{name} {len(frame)}' for name, frame in rows.items())}); "
              f"written in {time.perf_counter() - started:.1f} s")
        raw_bytes = _size(settings.db_path)
        print(f"raw DuckDB file: {raw_bytes / 1e6:.1f} MB")

        full = create_backup(settings)
        backup_bytes = _size(full.path)
        print(f"full backup: {full.seconds:.2f} s, {backup_bytes / 1e6:.1f} MB on disk "
              f"({backup_bytes / raw_bytes:.1%} of the DuckDB file), {total_rows / full.seconds:,.0f} rows/s, "
              f"{raw_bytes / 1e6 / full.seconds:.1f} MB/s of store")

        verified = verify_backup(settings, full.backup_id)
        assert verified.ok, verified.problems
        print(f"verify (scratch restore + checksums): {verified.seconds:.2f} s, "
              f"{total_rows / verified.seconds:,.0f} rows/s")

        last_day = [(symbol, window) for symbol in symbols for window in session[-26:]]
        incremental = create_backup(settings, last_day)
        print(f"incremental backup of one session ({len(last_day)} partitions): {incremental.seconds:.2f} s, "
              f"{_size(incremental.path) / 1e6:.2f} MB")

        restored = restore(settings)
        print(f"whole-store restore (new file, verified, swapped in): {restored.seconds:.2f} s, "
              f"{sum(restored.row_counts.values()) / restored.seconds:,.0f} rows/s; restored file "
              f"{_size(settings.db_path) / 1e6:.1f} MB")
        print(f"backup + verify + restore: {full.seconds + verified.seconds + restored.seconds:.2f} s")


if __name__ == "__main__":
    main()
