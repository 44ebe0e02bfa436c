"""LSTM forecasting numerics, with no Dagster import and no TensorFlow import until a function needs it.

Modules (import the one you need; this package's ``__init__`` imports nothing, so Dagster's code location never
pays for TensorFlow):

- ``features``: bars -> return-based feature matrix on the session calendar; future windows' calendar features.
- ``scaler``: the training-span scaler as JSON; the gated reader for the seed's ``scaler.pkl``.
- ``config``: ``model_config.json`` (``ModelConfig``), the content hash.
- ``network``: the Keras network a config describes.
- ``store``: save a model folder atomically, load it with a health check, ``ModelLoadError``.
- ``training``: chronological split, early stopping, mode selection, conformal calibration, test metrics, plot.
- ``forecaster``: the compiled batched forecaster, the seed's per-step reference, ``forecast_prices``.
- ``batch``: ``forecast_windows``, a run's (symbol, as-of window) pairs in one compiled call per architecture, with
  the pairs it skips (kind and reason) and the sane band a published forecast stays in.
- ``intervals``: split-conformal prediction intervals per horizon step.

See docs/forecasting.md.
"""
