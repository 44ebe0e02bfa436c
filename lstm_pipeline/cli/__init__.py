"""``lstm-pipeline``: the operator's console command (the spec's CLI commands plus backups, exports, retention).

Importing this package stays cheap (Typer and rich only; no pandas, TensorFlow or Dagster until a command needs
them). ``main`` is the console entry point: it runs the Typer app and turns every error a user can cause into one
sentence on standard error with a non-zero exit code (see ``lstm_pipeline.cli.app.run`` and, for the codes,
``lstm_pipeline.cli.output``).
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as the console script, exits with) its exit code."""
    from lstm_pipeline.cli.app import run

    return run(argv)


__all__ = ["main"]
