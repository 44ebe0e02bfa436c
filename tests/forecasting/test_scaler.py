"""The scaler round-trips exactly as JSON; the seed's pickled scikit-learn scalers load without scikit-learn, and a
pickle that names anything else is refused."""

import os
import pickle
import sys
import types

import numpy as np
import pytest

from lstm_pipeline.forecasting.scaler import FeatureScaler, ScalerError, fit_standard_scaler, load_pickled_scaler


def sklearn_pickle(monkeypatch, class_name: str, protocol: int = 4, **attributes) -> bytes:
    """Bytes of a pickle naming ``sklearn.preprocessing._data.<class_name>``, made without scikit-learn."""
    module = types.ModuleType("sklearn.preprocessing._data")
    cls = type(class_name, (), {"__module__": "sklearn.preprocessing._data"})
    setattr(module, class_name, cls)
    for name in ("sklearn", "sklearn.preprocessing"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sklearn.preprocessing._data", module)
    fitted = cls()
    fitted.__dict__.update(attributes)
    return pickle.dumps(fitted, protocol=protocol)


def test_json_round_trip_is_exact():
    rng = np.random.default_rng(3)
    scaler = fit_standard_scaler(rng.standard_normal((500, 3)) * [1e-3, 5.0, 2.0] + [0.1, 14.0, 0.0], ("a", "b", "c"))
    again = FeatureScaler.from_json(scaler.to_json())
    assert again.features == scaler.features
    assert np.array_equal(again.center, scaler.center) and np.array_equal(again.scale, scaler.scale)
    values = rng.standard_normal((20, 3))
    assert np.array_equal(again.transform(values), scaler.transform(values))
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(values)), values, atol=1e-12)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickled_sklearn_standard_and_minmax_scalers_load_without_sklearn(monkeypatch, protocol):
    standard = sklearn_pickle(
        monkeypatch, "StandardScaler", protocol, mean_=np.array([1.0, 2.0]), scale_=np.array([0.5, 4.0]),
        var_=np.array([0.25, 16.0]), n_features_in_=2,
    )
    scaler = load_pickled_scaler(standard, ("close", "volume"))
    np.testing.assert_allclose(scaler.transform([[2.0, 10.0]]), [[2.0, 2.0]])
    # scikit-learn's MinMaxScaler maps x to x * scale_ + min_.
    minmax = sklearn_pickle(
        monkeypatch, "MinMaxScaler", protocol, scale_=np.array([0.1, 0.001]), min_=np.array([-1.0, 0.0]),
        data_min_=np.array([10.0, 0.0]), data_max_=np.array([20.0, 1000.0]),
    )
    scaler = load_pickled_scaler(minmax, ("close", "volume"))
    values = np.array([[15.0, 500.0]])
    np.testing.assert_allclose(scaler.transform(values), values * [0.1, 0.001] + [-1.0, 0.0])
    assert scaler.kind == "minmax"


def test_a_pickle_that_names_anything_else_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with pytest.raises(ScalerError, match=r"references (posix|os)\.system"):
        load_pickled_scaler(pickle.dumps(Exploit()), ("close",))
    assert not marker.exists()


def test_a_pickle_fitted_on_other_features_is_refused(monkeypatch):
    data = sklearn_pickle(monkeypatch, "StandardScaler", mean_=np.zeros(3), scale_=np.ones(3))
    with pytest.raises(ScalerError, match="fitted on 3 features but the config lists 2"):
        load_pickled_scaler(data, ("close", "volume"))
