"""The backtest retrains when the retraining sensor's rule fires, not only every N sessions: the walk-forward rule
(``evaluation.lifecycle.first_retrain``) on synthetic validations, and a replay whose models age out."""

import pandas as pd
import pytest

from lstm_pipeline.evaluation.lifecycle import ACCURACY_LOW, MODEL_AGE, first_retrain
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from lstm_pipeline.settings import Settings
from tests.backtest.conftest import TRAIN_SESSIONS

WINDOWS = session_windows("2025-03-03", "2025-03-08")  # Monday to Friday: 130 windows


def _validations(statuses: list[str], version: str = "v1") -> pd.DataFrame:
    """One validation per window (as of the window before), in order, with the given statuses."""
    targets = WINDOWS[1 : len(statuses) + 1]
    return pd.DataFrame({
        "symbol": "AAPL",
        "as_of_window": WINDOWS[: len(statuses)],
        "target_window": targets,
        "model_version": version,
        "status": statuses,
    })


def _first(validations, checks, min_validations=20, low=0.6, max_age_days=90, version="v1"):
    return first_retrain(validations, version, WINDOWS[0], checks, min_validations, low, max_age_days)


def test_accuracy_low_fires_at_the_first_check_whose_latest_validations_are_mostly_off():
    statuses = ["valid"] * 40 + ["needs_reprediction"] * 30
    validations = _validations(statuses)
    checks = WINDOWS[10:80:10]  # after 9, 19, ... validations have arrived
    fired = _first(validations, checks)
    assert fired is not None
    at, causes = fired
    # at check k the latest 20 targets <= it: the share valid drops below 60% once 9+ of them need reprediction
    known = [int((validations["target_window"] <= check).sum()) for check in checks]
    shares = [statuses[n - 20 : n].count("valid") / 20 if n >= 20 else None for n in known]
    expected = next(i for i, share in enumerate(shares) if share is not None and share < 0.6)
    assert at == expected and list(causes) == [ACCURACY_LOW]
    assert "of the latest 20 validations of model v1 were valid" in causes[ACCURACY_LOW]


def test_too_few_validations_other_versions_and_invalid_rows_do_not_count():
    bad = _validations(["needs_reprediction"] * 19 + ["invalid"] * 30)
    assert _first(bad, WINDOWS[40:60]) is None  # only 19 judged
    other = _validations(["needs_reprediction"] * 60, version="v0")
    assert _first(other, WINDOWS[40:70]) is None  # not the serving version's record
    assert _first(other, WINDOWS[40:70], version="v0") is not None


def test_model_age_fires_once_the_model_is_older_than_the_limit():
    checks = pd.DatetimeIndex([pd.Timestamp("2025-03-03 16:00", tz=NEW_YORK), pd.Timestamp("2025-03-05 16:00",
                                                                                           tz=NEW_YORK)])
    fired = _first(_validations([]), checks, max_age_days=1)
    assert fired is not None and fired[0] == 1 and list(fired[1]) == [MODEL_AGE]
    assert "trained 2 days ago (retrain after 1)" in fired[1][MODEL_AGE]
    assert _first(_validations([]), checks, max_age_days=90) is None


def _sessions(history: pd.DataFrame, symbol: str) -> list:
    return sorted(set(pd.DatetimeIndex(history.loc[history["symbol"] == symbol, "window_start"]).date))


@pytest.fixture(scope="module")
def aging(history, factory):
    from lstm_pipeline.backtest import run_backtest

    settings = Settings()
    settings = settings.model_copy(
        update={"workflow": settings.workflow.model_copy(update={"retrain_max_model_age_days": 1})}
    )
    bars = history[history["symbol"] == "AAPL"]
    return run_backtest(bars, TRAIN_SESSIONS, 0, settings, model_factory=factory), bars, factory


def test_a_model_older_than_the_limit_is_replaced_after_the_session_where_the_rule_fires(aging):
    result, bars, factory = aging
    models = result.models.reset_index(drop=True)
    assert len(models) > 1  # retrain_every=0 alone would keep one model
    assert models["trained_because"].iloc[0] == "initial"
    assert all("days ago (retrain after 1)" in cause for cause in models["trained_because"].iloc[1:])
    sessions = _sessions(bars, "AAPL")
    for earlier, later in zip(models.itertuples(), models.iloc[1:].itertuples(), strict=False):
        # the next model serves from the session after the one whose end fired the rule, trained on bars before it
        assert sessions.index(later.first_origin.date()) == sessions.index(earlier.last_origin.date()) + 1
        assert later.first_origin - earlier.first_origin > pd.Timedelta(days=1)
        assert any(last < later.first_origin and last >= earlier.last_origin for name, last, _ in factory.requests)
    # every origin is forecast exactly once, by the model serving it
    served = result.predictions.drop_duplicates("as_of_window").merge(
        models[["model_version", "first_origin", "last_origin"]], on="model_version"
    )
    assert len(served) == result.origins
    inside = (served["as_of_window"] >= served["first_origin"]) & (served["as_of_window"] <= served["last_origin"])
    assert inside.all()


def test_the_rule_can_be_switched_off(history, factory):
    from lstm_pipeline.backtest import run_backtest

    settings = Settings()
    settings = settings.model_copy(
        update={"workflow": settings.workflow.model_copy(update={"retrain_max_model_age_days": 1})}
    )
    bars = history[history["symbol"] == "AAPL"]
    result = run_backtest(bars, TRAIN_SESSIONS, 0, settings, model_factory=factory, retrain_rule=False)
    assert len(result.models) == 1
