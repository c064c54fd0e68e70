"""Feature columns of learned detector surrogates: extraction from events and standardization.

A surrogate learns detector-level features given vertex-level features. A
feature is an event field (``lepton_E``, ``x``, a toy's ``nu1``) or any
observable computable from the events (:mod:`mlegpipe.observables`: the DIS
domain's ``lepton_P``, ``lepton_theta``, ``nu1``/``nu2`` of the thesis ch. 7,
a collection's ``jets1_pt``, ...).
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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.features import Standardize
from mlegpipe.observables import resolve, values_of

__all__ = ["FeatureScaler", "feature_matrix", "feature_values"]


def feature_values(batch: EventBatch, name: str, where: str) -> np.ndarray:
    """One feature of every event: the event field, else the observable of that name
    (:func:`mlegpipe.observables.values_of`: ``lepton_P``, ``lepton_eta``, ``nu1``, a collection's ``jets1_pt``, ...).

    Computed azimuths (periodic observables) are taken in [0, 2π): the surrogates' networks see one
    continuous range for the usual detector conventions.

    Example:
        >>> b = EventBatch.from_columns({"lepton_E": [1.0], "lepton_px": [0.0], "lepton_py": [-1.0], "lepton_pz": [0.0]})
        >>> round(float(feature_values(b, "lepton_phi", "vertex")[0]), 4)
        4.7124
    """
    if batch.has(name):
        return batch.column(name)
    values = values_of(batch, name, where)
    return np.mod(values, 2 * np.pi) if resolve(name).periodic else values


def feature_matrix(batch: EventBatch, names: Sequence[str], where: str) -> np.ndarray:
    """Stack the features ``names`` of ``batch`` into an ``(n, k)`` float64 array.

    Arguments:
        batch: the events.
        names: event fields or observables (:func:`feature_values`).
        where: what the events are, for error messages (``"detector: vertex sample"``).

    Raises:
        DataError: a feature is missing or not finite, naming it and ``where``.

    Example:
        >>> b = EventBatch.from_columns({"lepton_E": [5.0], "lepton_px": [3.0], "lepton_py": [4.0], "lepton_pz": [0.0]})
        >>> feature_matrix(b, ["lepton_pt"], "vertex").tolist()
        [[5.0]]
    """
    columns = [feature_values(batch, name, where) for name in names]
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

    A :class:`mlegpipe.features.Standardize` (NumPy arrays through its
    ``transform_numpy`` / ``inverse_numpy``) that remembers the feature names,
    saved with them (:meth:`named_state`). The unfolding stage uses it to move
    between physical units and the standardized units that
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

    def named_state(self) -> dict[str, Any]:
        """Names and tensors, loadable with ``torch.load(weights_only=True)``."""
        return {"names": list(self.names), **self.state_dict()}

    @classmethod
    def from_named_state(cls, state: Mapping[str, Any]) -> FeatureScaler:
        """Rebuild from :meth:`named_state`."""
        scaler = cls(state["names"])
        scaler.load_state_dict(state)
        return scaler
