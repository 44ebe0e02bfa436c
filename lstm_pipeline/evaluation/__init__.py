"""Judging forecasts against what the market did: validation, accuracy, confidence. Plain modules, no Dagster."""
