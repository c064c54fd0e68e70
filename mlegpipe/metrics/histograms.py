"""Binning helpers: edges from samples and weighted histograms through ``hist``.

Every metric that compares binned distributions fills its histograms here, with
``hist``'s ``Weight`` storage so that each bin carries Σw (the count) and Σw²
(its Poisson variance estimate); under- and overflow are kept out of the bins.

Example:
    >>> import numpy as np
    >>> h = histogram(np.array([0.1, 0.2, 0.7]), np.array([0.0, 0.5, 1.0]))
    >>> h.values().tolist(), h.variances().tolist()
    ([2.0, 1.0], [2.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence

import hist
import numpy as np

from mlegpipe.exceptions import DataError

__all__ = ["edges_for", "histogram", "histogram2d", "log_edges", "quantile_edges"]


def log_edges(low: float, high: float, bins: int) -> np.ndarray:
    """``bins + 1`` edges equally spaced in log10 between ``low`` and ``high`` (both > 0).

    Example:
        >>> log_edges(1.0, 100.0, 2).tolist()
        [1.0, 10.0, 100.0]
    """
    if not (low > 0 and high > low):
        raise DataError(f"log binning needs 0 < low < high, got low={low}, high={high}")
    return np.logspace(np.log10(low), np.log10(high), bins + 1)


def edges_for(
    samples: Sequence[np.ndarray],
    bins: int = 50,
    log: bool = False,
    quantiles: tuple[float, float] = (0.0005, 0.9995),
) -> np.ndarray:
    """Common bin edges for comparing samples: equal width between pooled quantiles.

    The range runs from the lowest ``quantiles[0]`` quantile to the highest
    ``quantiles[1]`` quantile of the finite values of the given samples, so a
    few outliers do not squeeze the bulk into one bin. With ``log`` (and all
    values positive) the edges are equally spaced in log10.

    Example:
        >>> edges_for([np.arange(101.0)], bins=4, quantiles=(0.0, 1.0)).tolist()
        [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    finite = [np.asarray(s, dtype=np.float64) for s in samples]
    finite = [s[np.isfinite(s)] for s in finite]
    finite = [s for s in finite if s.size]
    if not finite:
        raise DataError("no finite values to bin")
    lows = [np.quantile(s, quantiles[0]) for s in finite]
    highs = [np.quantile(s, quantiles[1]) for s in finite]
    low, high = float(min(lows)), float(max(highs))
    if log and low > 0:
        if high <= low:
            high = low * 10.0
        return log_edges(low, high, bins)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def histogram(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> hist.Hist:
    """A weighted 1D histogram (``hist.Hist`` with ``Weight`` storage) on ``edges``.

    ``h.values()`` gives Σw per bin and ``h.variances()`` Σw² per bin.

    Example:
        >>> histogram(np.array([0.5]), np.array([0.0, 1.0])).values().tolist()
        [1.0]
    """
    h = hist.Hist(hist.axis.Variable(np.asarray(edges, dtype=np.float64), flow=False), storage=hist.storage.Weight())
    values = np.asarray(values, dtype=np.float64)
    h.fill(values, weight=np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64))
    return h


def histogram2d(
    x: np.ndarray,
    y: np.ndarray,
    x_edges: np.ndarray,
    y_edges: np.ndarray,
    weights: np.ndarray | None = None,
) -> hist.Hist:
    """A weighted 2D histogram (``Weight`` storage), first axis ``x``, second ``y``.

    Example:
        >>> e = np.array([0.0, 1.0, 2.0])
        >>> histogram2d(np.array([0.5]), np.array([1.5]), e, e).values().tolist()
        [[0.0, 1.0], [0.0, 0.0]]
    """
    h = hist.Hist(
        hist.axis.Variable(np.asarray(x_edges, dtype=np.float64), flow=False),
        hist.axis.Variable(np.asarray(y_edges, dtype=np.float64), flow=False),
        storage=hist.storage.Weight(),
    )
    x = np.asarray(x, dtype=np.float64)
    h.fill(x, np.asarray(y, dtype=np.float64),
           weight=np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64))
    return h


def quantile_edges(reference: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Edges of ``n_quantiles`` equal-probability bins of a (large) reference sample; outer edges ±inf.

    Pass the exact quantile function's values instead when the density is known.

    Example:
        >>> float(quantile_edges(np.arange(1.0, 101.0), 2)[1])
        50.5
    """
    reference = np.asarray(reference, dtype=np.float64)
    if n_quantiles < 2:
        raise DataError(f"need at least two quantiles, got {n_quantiles}")
    inner = np.quantile(reference, np.arange(1, n_quantiles) / n_quantiles)
    return np.concatenate([[-np.inf], inner, [np.inf]])
