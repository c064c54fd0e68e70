"""Figures of merit for learned detector surrogates: resolution profiles and their deviation.

Used by the folding tests and benchmark; binned distributions are compared with
:func:`mlegpipe.metrics.sample_chi2_ndf`.

Example:
    >>> v = np.linspace(0.0, 1.0, 4000)
    >>> w = resolution_profile(v, v + 0.05 * np.random.default_rng(0).normal(size=v.size), np.array([0.0, 1.0]))
    >>> bool(abs(w[0] - 0.05) < 0.005)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["resolution_deviation", "resolution_profile"]


def _width(diff: np.ndarray) -> float:
    """Robust width: half the 16-84 % range (σ for a Gaussian), NaN below 20 values."""
    if diff.size < 20:
        return float("nan")
    lo, hi = np.quantile(diff, [0.16, 0.84])
    return float(0.5 * (hi - lo))


def resolution_profile(vertex: np.ndarray, detector: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Width of ``detector - vertex`` in bins of the vertex value (robust: half the 16-84% range).

    Returns one width per bin (NaN for bins with fewer than 20 events).

    Example:
        >>> v = np.linspace(0, 1, 10000)
        >>> w = resolution_profile(v, v + 0.1 * np.random.default_rng(1).normal(size=v.size), np.array([0, 0.5, 1.0]))
        >>> np.allclose(w, 0.1, rtol=0.1)
        True
    """
    diff = detector - vertex
    index = np.digitize(vertex, edges) - 1
    return np.array([_width(diff[index == i]) for i in range(len(edges) - 1)])


def _bin_widths(index: np.ndarray, diff: np.ndarray, bins: int) -> np.ndarray:
    ok = np.isfinite(diff) & (index >= 0) & (index < bins)
    index, diff = index[ok], diff[ok]
    return np.array([_width(diff[index == i]) for i in range(bins)])


def resolution_deviation(vertex: np.ndarray, model: np.ndarray, reference: np.ndarray, edges: np.ndarray, *,
                         bootstrap: int = 0, seed: int = 0, by: np.ndarray | None = None) -> dict[str, Any]:
    """Per-bin ratio of the widths of ``model - vertex`` and ``reference - vertex``, its median deviation and error.

    Both detectors fold the SAME vertex events, so the comparison is free of
    vertex-sample fluctuations; its noise is the detectors' own. Folding every
    vertex event ``K`` times (arrays of shape ``(K, n)``: replica k of event i
    at ``[k, i]``) divides that noise by about √K. Entries that are NaN (event not
    measured in that replica) are left out. Widths are robust (half the
    16-84 % range) in the bins ``edges`` of the vertex value, or of ``by`` (another
    vertex quantity per event: the energy resolution across the η zones of a detector).

    The error of the median deviation ``median_i |ratio_i - 1|`` is the standard
    deviation over ``bootstrap`` resamplings of the vertex events (each with all
    its replicas).

    Returns:
        ``ratio`` (per bin), ``median_deviation``, ``worst_deviation``,
        ``median_deviation_error`` (NaN without bootstrap), ``events_per_bin``
        (smallest count of usable model entries in a bin).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> v = rng.uniform(0, 1, 20000)
        >>> model = v + 0.1 * rng.normal(size=(4, v.size))
        >>> smear = v + 0.1 * rng.normal(size=(4, v.size))
        >>> out = resolution_deviation(v, model, smear, np.linspace(0, 1, 11), bootstrap=20)
        >>> out["median_deviation"] < 0.03, out["median_deviation_error"] < 0.02
        (True, True)
    """
    model, reference = np.atleast_2d(model), np.atleast_2d(reference)
    bins = len(edges) - 1
    index = np.broadcast_to(np.digitize(vertex if by is None else by, edges) - 1, model.shape)
    d_model, d_ref = model - vertex, reference - vertex

    def figures(cols: np.ndarray | slice) -> tuple[np.ndarray, float]:
        ratio = (_bin_widths(index[:, cols].ravel(), d_model[:, cols].ravel(), bins)
                 / _bin_widths(index[:, cols].ravel(), d_ref[:, cols].ravel(), bins))
        return ratio, float(np.nanmedian(np.abs(ratio - 1.0)))

    ratio, median = figures(slice(None))
    rng = np.random.default_rng(seed)
    boot = [figures(rng.integers(0, len(vertex), len(vertex)))[1] for _ in range(bootstrap)]
    usable = np.isfinite(d_model) & (index >= 0) & (index < bins)
    counts = np.bincount(index[usable].ravel(), minlength=bins)
    return {"ratio": ratio, "median_deviation": median, "worst_deviation": float(np.nanmax(np.abs(ratio - 1.0))),
            "median_deviation_error": float(np.std(boot)) if boot else float("nan"),
            "events_per_bin": int(counts.min())}
