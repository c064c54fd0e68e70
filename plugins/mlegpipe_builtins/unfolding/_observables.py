"""Observables of unfolding reports: extraction from events, common binnings, binned comparisons.

An observable is an event field (``x``, ``Q2``, a toy's ``a``) or any observable
the events allow (:mod:`mlegpipe.observables`; the DIS domain derives ``nu1``,
``nu2``, ``lepton_theta``, ``lepton_P`` from the scattered lepton, and its
labels from the lepton where a sample lacks them). Values that are undefined
for an event (ν₂ of a smeared lepton beyond the kinematic limit, an unmeasured
lepton) are NaN and left out of histograms.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> b = EventBatch.from_columns({"a": np.array([1.0, 2.0, np.nan])})
    >>> observable(b, "a").tolist()[:2]
    [1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.metrics.distances import triangular_discriminator, wasserstein1
from mlegpipe.metrics.histograms import edges_for, histogram
from mlegpipe.observables import resolve
from mlegpipe_builtins.detectors._fold_features import feature_values

__all__ = ["binning", "compare", "density", "observable"]


def observable(batch: EventBatch, name: str, where: str = "events") -> np.ndarray:
    """The values of ``name`` per event (float64, NaN where undefined): the surrogates' feature convention
    (:func:`~mlegpipe_builtins.detectors._fold_features.feature_values`).

    Raises:
        DataError: ``name`` is neither a field nor an observable computable from the events.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(feature_values(batch, name, where), dtype=np.float64)


def binning(name: str, samples: Sequence[np.ndarray], bins: int) -> np.ndarray:
    """Common edges for one observable: between pooled 0.1% and 99.9% quantiles, log10 for observables declared log.

    For the log-binned observables only positive values count.

    Example:
        >>> binning("a", [np.arange(11.0)], 2).round(2).tolist()
        [0.01, 5.0, 9.99]
    """
    finite = [s[np.isfinite(s)] for s in samples]
    log = resolve(name).log
    if log:  # smeared x, Q² can leave the physical range: such events fall outside the bins
        finite = [s[s > 0] for s in finite]
    return edges_for(finite, bins=bins, log=log, quantiles=(0.001, 0.999))


def density(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Histogram contents (Σw) normalized to unit sum over the bins (NaN values dropped).

    Example:
        >>> density(np.array([0.2, 0.7, 0.8]), np.array([0.0, 0.5, 1.0])).round(3).tolist()
        [0.333, 0.667]
    """
    values = np.asarray(values, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(values)
    counts = histogram(values[ok], edges, w[ok]).values()
    total = counts.sum()
    return counts / total if total > 0 else counts


def compare(
    model: np.ndarray,
    reference: np.ndarray,
    edges: np.ndarray,
    model_weights: np.ndarray | None = None,
    reference_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Triangular discriminator ×10³ (binned on ``edges``) and Wasserstein-1 of two samples of one observable.

    Example:
        >>> a = np.linspace(0, 1, 101)
        >>> compare(a, a, np.linspace(0, 1, 5))
        {'triangular_e3': 0.0, 'w1': 0.0}
    """
    model = np.asarray(model, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    mw = np.ones_like(model) if model_weights is None else np.asarray(model_weights, dtype=np.float64)
    rw = np.ones_like(reference) if reference_weights is None else np.asarray(reference_weights, dtype=np.float64)
    mok, rok = np.isfinite(model), np.isfinite(reference)
    if not (mok.any() and rok.any()):
        return {"triangular_e3": None, "w1": None}
    tri = triangular_discriminator(histogram(model[mok], edges, mw[mok]).values(),
                                   histogram(reference[rok], edges, rw[rok]).values())
    w1 = wasserstein1(model[mok], reference[rok], mw[mok], rw[rok])
    return {"triangular_e3": round(1e3 * tri, 4), "w1": float(f"{w1:.5g}")}
