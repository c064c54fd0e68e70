"""Figures of merit for learned detector surrogates: binned χ²/ndf and resolution profiles.

Used for validation during training (best-checkpoint selection) and by the
folding tests and benchmark.

Example:
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=20000), rng.normal(size=20000)
    >>> 0.3 < chi2_ndf(a, b, bins=20) < 3.0
    True
"""

from __future__ import annotations

import numpy as np

from mlegpipe import metrics

__all__ = ["chi2_ndf", "quantile_edges", "resolution_profile"]


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges holding equal fractions of ``reference``, the outer edges opened to ±inf.

    Example:
        >>> quantile_edges(np.arange(100.0), 4)[1:-1].tolist()
        [24.75, 49.5, 74.25]
    """
    edges = np.quantile(reference, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    return np.unique(edges)


def chi2_ndf(sample: np.ndarray, reference: np.ndarray, bins: int | np.ndarray = 20) -> float:
    """χ²/ndf of two unweighted 1D samples with both statistical errors (:func:`mlegpipe.metrics.chi2_ndf`).

    ``bins`` is a count (equal-population bins of ``reference``, outer edges
    open) or explicit edges. Two samples of one density give ≈ 1.

    Example:
        >>> chi2_ndf(np.zeros(100), np.ones(100), bins=np.array([-0.5, 0.5, 1.5]))
        200.0
    """
    edges = quantile_edges(reference, bins) if np.isscalar(bins) else np.asarray(bins)
    g = np.histogram(sample, edges)[0].astype(float)
    t = np.histogram(reference, edges)[0].astype(float)
    return float(metrics.chi2_ndf(g, g, t, t)[0])


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
    widths = np.full(len(edges) - 1, np.nan)
    for i in range(len(edges) - 1):
        sel = diff[index == i]
        if sel.size >= 20:
            lo, hi = np.quantile(sel, [0.16, 0.84])
            widths[i] = 0.5 * (hi - lo)
    return widths
