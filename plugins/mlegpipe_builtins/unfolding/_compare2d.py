"""Two-dimensional closure figures (e.g. x, Q²): GAN, 2D IBU, OmniFold and uncorrected data against the truth.

A pair of observables is binned on a common grid (log10 for x, Q², W², ν);
each event gets the flat index of its 2D bin (NaN outside the grid or where a
value is undefined). The triangular discriminator ×10³ of the flat histograms
compares every method with the truth. IBU is run on the flat index: its
response from the simulated pairs is the full 2D migration matrix.

Example:
    >>> import numpy as np
    >>> ex, ey = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])
    >>> flat_index(np.array([0.5, 1.5, 3.0]), np.array([1.5, 0.5, 0.5]), ex, ey).tolist()
    [1.0, 2.0, nan]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlegpipe.metrics.distances import triangular_discriminator
from mlegpipe.unfold import ibu, response_matrix
from mlegpipe_builtins.unfolding._observables import binning

__all__ = ["compare_2d", "flat_index"]


def flat_index(x: np.ndarray, y: np.ndarray, edges_x: np.ndarray, edges_y: np.ndarray) -> np.ndarray:
    """Flat 2D bin index ``i_x · n_y + i_y`` as float (NaN outside the grid or for non-finite values)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ix = np.searchsorted(edges_x, x, side="right") - 1
    iy = np.searchsorted(edges_y, y, side="right") - 1
    ny = len(edges_y) - 1
    ok = np.isfinite(x) & np.isfinite(y) & (ix >= 0) & (ix < len(edges_x) - 1) & (iy >= 0) & (iy < ny)
    return np.where(ok, ix * ny + iy, np.nan).astype(np.float64)


def _counts(index: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    ok = np.isfinite(index)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[ok]
    return np.bincount(index[ok].astype(np.int64), weights=w, minlength=n).astype(np.float64)


def compare_2d(
    names: tuple[str, str],
    truth: tuple[np.ndarray, np.ndarray],
    data: tuple[np.ndarray, np.ndarray],
    gan: tuple[np.ndarray, np.ndarray] | None = None,
    sim: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    omnifold: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    bins: int = 10,
    ibu_iterations: int = 4,
) -> dict[str, Any]:
    """Triangular ×10³ of each method's 2D histogram against the truth's, on a ``bins × bins`` grid.

    Arguments:
        names: the two observables (binning: log10 for x, Q², ...).
        truth, data: (x, y) values of the vertex-level truth and of the detector-level data.
        gan: (x, y) of the pooled unfolded events.
        sim: ((x, y) vertex, (x, y) detector) simulated pairs, for 2D IBU.
        omnifold: (x, y, weights) of the simulation with OmniFold weights.

    Returns:
        ``{"observables": names, "bins": [bins, bins], "triangular_e3": {method: value}}``.
    """
    ex = binning(names[0], [truth[0], data[0]], bins)
    ey = binning(names[1], [truth[1], data[1]], bins)
    n = bins * bins
    ref = _counts(flat_index(*truth, ex, ey), n)
    hists: dict[str, np.ndarray] = {"data_uncorrected": _counts(flat_index(*data, ex, ey), n)}
    if gan is not None:
        hists["gan"] = _counts(flat_index(*gan, ex, ey), n)
    if sim is not None:
        edges = np.arange(n + 1, dtype=np.float64) - 0.5
        resp = response_matrix(flat_index(*sim[0], ex, ey), flat_index(*sim[1], ex, ey), edges, edges)
        hists["ibu"] = ibu(_counts(flat_index(*data, ex, ey), n), resp, ibu_iterations)
    if omnifold is not None:
        hists["omnifold"] = _counts(flat_index(omnifold[0], omnifold[1], ex, ey), n, omnifold[2])
    tri = {k: round(1e3 * triangular_discriminator(h, ref), 4) if h.sum() > 0 else None for k, h in hists.items()}
    return {"observables": list(names), "bins": [bins, bins], "triangular_e3": tri}
