"""``python -m lstm_pipeline.backtest``: see ``lstm_pipeline.backtest.cli``."""

import sys

from lstm_pipeline.backtest.cli import main

if __name__ == "__main__":
    sys.exit(main())
