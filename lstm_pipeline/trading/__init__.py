"""Trade rules (no Dagster): recommendations from a forecast path and the scoring of past ones."""

from lstm_pipeline.trading.recommendations import HELD_BACK_RULES, recommend_trades, round_trip_cost_pct
from lstm_pipeline.trading.scoring import score_recommendations

__all__ = ["HELD_BACK_RULES", "recommend_trades", "round_trip_cost_pct", "score_recommendations"]
