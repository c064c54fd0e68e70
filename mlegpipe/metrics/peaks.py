"""Figures of a resonance peak: the fraction inside a mass window, the fitted pole and width, FWHM and IQR.

An observable declared with a :class:`~mlegpipe.observables.Peak` (a domain's
resonance masses, e.g. the W and top candidates of tt̄) gets these figures in
the report, for the generated sample and for the truth, side by side:

* ``window_fraction``: events with ``|m - pole| < window``;
* ``pole_fit``, ``width_fit``: a Cauchy (non-relativistic Breit–Wigner) fitted by
  maximum likelihood to the events within ``pole ± FIT_WIDTHS · width`` (the
  truncated density), ``width_fit`` being its full width at half maximum;
* ``fwhm``: the full width at half maximum of a histogram of 0.05-width bins (smoothed over three) around the mode;
* ``iqr``: the interquartile range of the events in the fit window.

Example:
    >>> rng = np.random.default_rng(1)
    >>> m = 80.4 + 1.05 * rng.standard_cauchy(200_000)   # Γ = 2.1
    >>> f = peak_figures(m, Peak(80.4, 2.1))
    >>> abs(f["width_fit"] - 2.1) < 0.03, abs(f["pole_fit"] - 80.4) < 0.02
    (True, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlegpipe.observables import Peak

__all__ = ["FIT_WIDTHS", "Peak", "peak_figures"]

#: Half-width of the fit window in units of the declared width.
FIT_WIDTHS = 8.0
_MIN_EVENTS = 20


def _cauchy_nll(params: np.ndarray, x: np.ndarray, w: np.ndarray, low: float, high: float) -> float:
    x0, log_gamma = params
    gamma = math.exp(log_gamma)
    norm = (math.atan((high - x0) / gamma) - math.atan((low - x0) / gamma)) / math.pi
    if norm <= 0:
        return math.inf
    logpdf = np.log(gamma / math.pi) - np.log((x - x0) ** 2 + gamma**2) - math.log(norm)
    return float(-(w * logpdf).sum() / w.sum())


def _fwhm(x: np.ndarray, w: np.ndarray, width: float, low: float, high: float) -> float:
    edges = np.arange(low, high + 0.025 * width, 0.05 * width)
    counts, _ = np.histogram(x, edges, weights=w)
    if counts.max() <= 0:
        return math.nan
    smooth = np.convolve(counts, np.ones(3) / 3, mode="same")
    top = int(np.argmax(smooth))
    half = smooth[top] / 2
    left = np.nonzero(smooth[:top] < half)[0]
    right = np.nonzero(smooth[top:] < half)[0]
    if not len(left) or not len(right):
        return math.nan
    centers = 0.5 * (edges[:-1] + edges[1:])

    def cross(i: int, j: int) -> float:  # linear interpolation of the half-maximum crossing between bins i, j
        y0, y1 = smooth[i], smooth[j]
        return float(centers[i] + (half - y0) / (y1 - y0) * (centers[j] - centers[i])) if y1 != y0 else float(
            centers[i])

    li = int(left[-1])
    ri = top + int(right[0])
    return cross(ri - 1, ri) - cross(li, li + 1)


def peak_figures(values: np.ndarray, peak: Peak, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Window fraction, fitted Cauchy pole and width, FWHM and IQR of a mass distribution (see the module).

    NaN values (undefined for an event) count as outside the window. Fewer than 20 events in the fit window
    give NaN fit figures.
    """
    from scipy.optimize import minimize

    values = np.asarray(values, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    with np.errstate(invalid="ignore"):
        inside = np.abs(values - peak.pole) < peak.window
        low, high = peak.pole - FIT_WIDTHS * peak.width, peak.pole + FIT_WIDTHS * peak.width
        fit = (values > low) & (values < high)
    out: dict[str, Any] = {"window_fraction": float(w[inside].sum() / total) if total > 0 else math.nan,
                           "fit_fraction": float(w[fit].sum() / total) if total > 0 else math.nan,
                           "pole_fit": math.nan, "width_fit": math.nan, "fwhm": math.nan, "iqr": math.nan}
    x, wx = values[fit], w[fit]
    if len(x) < _MIN_EVENTS:
        return out
    start = np.array([float(np.median(x)), math.log(peak.width / 2)])
    res = minimize(_cauchy_nll, start, args=(x, wx, low, high), method="Nelder-Mead",
                   options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 2000})
    out["pole_fit"] = float(res.x[0])
    out["width_fit"] = float(2.0 * math.exp(res.x[1]))
    out["fwhm"] = _fwhm(x, wx, peak.width, low, high)
    order = np.argsort(x)
    cdf = np.cumsum(wx[order]) / wx.sum()
    q1, q3 = np.interp([0.25, 0.75], cdf, x[order])
    out["iqr"] = float(q3 - q1)
    return out
