"""The feature scaler: fitted on the training span only, stored as JSON, plus a gated reader for the seed's pickle.

A scaler maps each feature to ``(x - center) / scale``. The project's own scaler is a standard scaler (center =
training-span mean, scale = training-span standard deviation), written as plain JSON: floats round-trip exactly
and nothing is executed on load. The seed stored a pickled scikit-learn scaler (``scaler.pkl``); unpickling can run
arbitrary code, so it is read only when the model's config says ``"allow_pickle": true``, and then through a
restricted unpickler that knows only scikit-learn's ``StandardScaler``/``MinMaxScaler`` and numpy arrays (mapped to
a small shim: scikit-learn is not needed, and any other class in the file is refused).
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCALER_FORMAT = "lstm_pipeline.scaler/1"


class ScalerError(ValueError):
    """A scaler file cannot be used; the store wraps it into a ``ModelLoadError`` naming symbol and file."""


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature affine map ``(x - center) / scale`` with the span it was fitted on."""

    features: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    kind: str = "standard"
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        center = np.asarray(self.center, dtype=np.float64).reshape(-1)
        scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        if not (len(center) == len(scale) == len(self.features)):
            raise ScalerError(
                f"the scaler has {len(center)} centers and {len(scale)} scales for {len(self.features)} features"
            )
        if not (np.isfinite(center).all() and np.isfinite(scale).all()) or (scale == 0).any():
            raise ScalerError("the scaler holds non-finite or zero statistics")
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "scale", scale)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale an array whose last axis holds ``features`` in order."""
        return (np.asarray(values, dtype=np.float64) - self.center) / self.scale

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        """Undo ``transform``."""
        return np.asarray(scaled, dtype=np.float64) * self.scale + self.center

    def column(self, feature: str) -> tuple[float, float]:
        """(center, scale) of one feature, to unscale a model output that holds only that feature."""
        index = self.features.index(feature)
        return float(self.center[index]), float(self.scale[index])

    def to_json(self) -> str:
        """The JSON document written as ``scaler.json``."""
        document = {
            "format": SCALER_FORMAT,
            "kind": self.kind,
            "features": list(self.features),
            "center": [float(value) for value in self.center],
            "scale": [float(value) for value in self.scale],
            "fitted_on": self.fitted_on,
        }
        return json.dumps(document, indent=2)

    @classmethod
    def from_json(cls, text: str) -> FeatureScaler:
        """Read a ``scaler.json`` document; ``ScalerError`` says what is missing or malformed."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScalerError(f"it is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        if not isinstance(document, dict) or document.get("format") != SCALER_FORMAT:
            raise ScalerError(f"it is not a {SCALER_FORMAT} document")
        try:
            return cls(
                features=tuple(document["features"]),
                center=np.asarray(document["center"], dtype=np.float64),
                scale=np.asarray(document["scale"], dtype=np.float64),
                kind=str(document.get("kind", "standard")),
                fitted_on=dict(document.get("fitted_on") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ScalerError):
                raise
            raise ScalerError(f"it lacks or garbles the key {exc}") from exc


def fit_standard_scaler(
    values: np.ndarray, features: Sequence[str], fitted_on: dict[str, Any] | None = None
) -> FeatureScaler:
    """Mean and standard deviation of each column of ``values``: pass the training span's rows and nothing else.

    A constant column (zero deviation) gets scale 1, so it maps to zero rather than to infinity.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(features) or len(array) < 2:
        raise ScalerError(f"cannot fit a scaler on an array of shape {array.shape} for {len(features)} features")
    mean = array.mean(axis=0)
    std = array.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    span = {"rows": int(len(array)), **(fitted_on or {})}
    return FeatureScaler(features=tuple(features), center=mean, scale=std, kind="standard", fitted_on=span)


class _SklearnScalerShim:
    """Stands in for scikit-learn's scaler classes while unpickling: it only receives their attributes."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _StandardScalerShim(_SklearnScalerShim):
    pass


class _MinMaxScalerShim(_SklearnScalerShim):
    pass


_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
        ("builtins", "object"),
    }
)
"""What a pickled fitted scaler legitimately names: numpy array reconstruction (every pickle protocol) and the
default object protocol."""
_SHIMS: dict[str, type] = {"StandardScaler": _StandardScalerShim, "MinMaxScaler": _MinMaxScalerShim}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy array reconstruction and scikit-learn scaler classes; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("sklearn.preprocessing") and name in _SHIMS:
            return _SHIMS[name]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise ScalerError(f"it references {module}.{name}, which a scaler pickle has no reason to contain")
        if module.startswith("numpy.core"):  # pickles from numpy 1.x; numpy 2 moved the module to numpy._core
            module = module.replace("numpy.core", "numpy._core", 1)
        return getattr(importlib.import_module(module), name)


def load_pickled_scaler(data: bytes, features: Sequence[str]) -> FeatureScaler:
    """Read a scikit-learn ``StandardScaler`` or ``MinMaxScaler`` pickle into a ``FeatureScaler``.

    Callers must have checked that the model's config allows pickle; this function only limits what the pickle
    can name. Attribute conventions follow scikit-learn: ``mean_``/``scale_`` (standard) and ``scale_``/``min_``
    with ``x * scale_ + min_`` (min-max).
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except ScalerError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise ScalerError(f"it cannot be unpickled ({type(exc).__name__}: {exc})") from exc
    state = getattr(obj, "__dict__", {})
    if "mean_" in state and "scale_" in state:
        center, scale, kind = state["mean_"], state["scale_"], "standard"
    elif "min_" in state and "scale_" in state:
        factor = np.asarray(state["scale_"], dtype=np.float64)
        center, scale, kind = -np.asarray(state["min_"], dtype=np.float64) / factor, 1.0 / factor, "minmax"
    else:
        raise ScalerError(
            f"it holds a {type(obj).__name__} without mean_/scale_ or min_/scale_ attributes (a fitted scaler has them)"
        )
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    if len(center) != len(features):
        raise ScalerError(f"it was fitted on {len(center)} features but the config lists {len(features)}")
    return FeatureScaler(
        features=tuple(features), center=center, scale=np.asarray(scale, dtype=np.float64), kind=kind,
        fitted_on={"source": "legacy scaler.pkl"},
    )

