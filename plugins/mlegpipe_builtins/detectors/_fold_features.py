"""Feature columns of learned detector surrogates: extraction from events and standardization.

A surrogate learns detector-level features given vertex-level features. A
feature is either an event field (``lepton_E``, ``x``, a toy's ``nu1``) or one
of the derived lepton quantities in :data:`DERIVED_FEATURES` (``lepton_P``,
``lepton_theta``, ``nu1``/``nu2`` of the thesis ch. 7, which need the beams).
Networks see standardized features: ``(value - mean) / std`` with the mean and
width of the training vertex sample (:class:`FeatureScaler`).

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> b = EventBatch.from_columns({"a": np.array([1.0, 3.0])})
    >>> s = FeatureScaler.fit_named(["a"], feature_matrix(b, ["a"], "detector"))
    >>> s.transform_numpy(np.array([[3.0]])).tolist()
    [[1.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.features import Standardize
from mlegpipe.kinematics import nu_from_lepton
from mlegpipe.schema import suggest

__all__ = ["DERIVED_FEATURES", "FeatureScaler", "feature_matrix"]


def _nu(batch: EventBatch, index: int) -> np.ndarray:
    if batch.beams is None:
        raise DataError("nu1/nu2 need the beam set-up, but these events carry none", path="beams")
    return nu_from_lepton(batch.column("lepton_E"), batch.column("lepton_pz"), batch.beams)[index]


def _nu1(batch: EventBatch) -> np.ndarray:
    return _nu(batch, 0)


def _nu2(batch: EventBatch) -> np.ndarray:
    return _nu(batch, 1)


def _p(batch: EventBatch) -> np.ndarray:
    return np.sqrt(batch.column("lepton_px") ** 2 + batch.column("lepton_py") ** 2 + batch.column("lepton_pz") ** 2)


def _pt(batch: EventBatch) -> np.ndarray:
    return np.hypot(batch.column("lepton_px"), batch.column("lepton_py"))


def _theta(batch: EventBatch) -> np.ndarray:
    return np.arctan2(_pt(batch), batch.column("lepton_pz"))


def _eta(batch: EventBatch) -> np.ndarray:
    """Pseudorapidity -ln tan(θ/2) (hadron beam +z): detector zones are bounded in η."""
    return np.arcsinh(batch.column("lepton_pz") / np.maximum(_pt(batch), 1e-300))


def _phi(batch: EventBatch) -> np.ndarray:
    return np.mod(np.arctan2(batch.column("lepton_py"), batch.column("lepton_px")), 2 * np.pi)


#: Quantities computed from the scattered-lepton fields when the events lack a field of that name.
#: ``nu1 = ln(k'0 - k'par)``, ``nu2 = ln(2 E_e - k'0 - k'par)`` (thesis ch. 7; k'par along the lepton beam).
DERIVED_FEATURES: Mapping[str, Callable[[EventBatch], np.ndarray]] = {
    "nu1": _nu1,
    "nu2": _nu2,
    "lepton_P": _p,
    "lepton_pt": _pt,
    "lepton_theta": _theta,
    "lepton_eta": _eta,
    "lepton_phi": _phi,
}


def feature_matrix(batch: EventBatch, names: Sequence[str], where: str) -> np.ndarray:
    """Stack the features ``names`` of ``batch`` into an ``(n, k)`` float64 array.

    Arguments:
        batch: the events.
        names: event fields or names of :data:`DERIVED_FEATURES`.
        where: what the events are, for error messages (``"detector: vertex sample"``).

    Raises:
        DataError: a feature is missing or not finite, naming it and ``where``.

    Example:
        >>> b = EventBatch.from_columns({"lepton_px": [3.0], "lepton_py": [4.0], "lepton_pz": [0.0]})
        >>> feature_matrix(b, ["lepton_pt"], "vertex").tolist()
        [[5.0]]
    """
    columns = []
    for name in names:
        if batch.has(name):
            columns.append(batch.column(name))
        elif name in DERIVED_FEATURES:
            try:
                columns.append(DERIVED_FEATURES[name](batch))
            except DataError as err:
                raise DataError(f"cannot compute feature {name!r}: {err.message}", path=where, value=name) from None
        else:
            known = list(batch.fields) + list(DERIVED_FEATURES)
            raise DataError("no such feature; have: " + ", ".join(known), path=where, value=name,
                            hint=suggest(name, known))
    matrix = np.stack(columns, axis=1) if columns else np.zeros((len(batch), 0))
    bad = ~np.isfinite(matrix)
    if bad.any():
        col = int(np.argmax(bad.any(axis=0)))
        raise DataError(f"{int(bad[:, col].sum())} non-finite values (first at event {int(np.argmax(bad[:, col]))})",
                        path=where, value=names[col],
                        hint="select events where the feature is defined (e.g. measured ones) before training")
    return matrix


class FeatureScaler(Standardize):
    """Per-feature standardization ``(value - mean) / std`` of named features.

    A :class:`mlegpipe.features.Standardize` that remembers the feature names
    and also works on NumPy arrays. The unfolding stage uses it to move between
    physical units and the standardized units that
    :meth:`~mlegpipe.stages.Detector.fold_tensor` works in.

    Example:
        >>> s = FeatureScaler.fit_named(["a"], np.array([[0.0], [2.0]]))
        >>> s.inverse_numpy(s.transform_numpy(np.array([[5.0]]))).tolist()
        [[5.0]]
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(eps=1e-9)
        self.names = list(names)

    @classmethod
    def fit_named(cls, names: Sequence[str], matrix: np.ndarray) -> FeatureScaler:
        """A scaler for the features ``names`` fitted on the ``(n, k)`` sample ``matrix``."""
        scaler = cls(names)
        scaler.fit(matrix)
        return scaler

    def transform_numpy(self, matrix: np.ndarray) -> np.ndarray:
        """Physical → standardized (NumPy, float64)."""
        return self.transform(torch.as_tensor(matrix, dtype=torch.float64)).numpy()

    def inverse_numpy(self, matrix: np.ndarray) -> np.ndarray:
        """Standardized → physical (NumPy, float64)."""
        return self.inverse(torch.as_tensor(matrix, dtype=torch.float64)).numpy()

    def named_state(self) -> dict[str, Any]:
        """Names and tensors, loadable with ``torch.load(weights_only=True)``."""
        return {"names": list(self.names), **self.state_dict()}

    @classmethod
    def from_named_state(cls, state: Mapping[str, Any]) -> FeatureScaler:
        """Rebuild from :meth:`named_state`."""
        scaler = cls(state["names"])
        scaler.load_state_dict(state)
        return scaler
