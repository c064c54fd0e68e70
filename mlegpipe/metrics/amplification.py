"""Quantile MSE and the amplification factor of a generator (GANplifying, seed 002).

Quantiles are bins with equal probability 1/N_q under the true density. For N
true events the bin counts are multinomial(N, 1/N_q), so each fraction xⱼ has
E[xⱼ] = 1/N_q and Var[xⱼ] = (1/N_q)(1 - 1/N_q)/N, and the expected quantile MSE

    E[MSE] = (1/N_q) Σⱼ Var[xⱼ] = (1/N_q)(1 - 1/N_q) / N.

A generator's quantile MSE, measured on n generated events, behaves as
MSE(n) ≈ a + b/n: b/n is the sampling noise of the generated events and a the
generator's own (systematic) error. The asymptotic value a is worth
N_eq = (1/N_q)(1 - 1/N_q)/a true events; the amplification factor is N_eq / N_train.

Example:
    >>> round(expected_sample_mse(100, 10), 6)
    0.0009
    >>> round(equivalent_events(0.0009, 10), 6)
    100.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hist
import numpy as np

from mlegpipe.exceptions import DataError

__all__ = [
    "amplification",
    "amplification_factor",
    "amplification_from_cells",
    "asymptotic_mse",
    "equivalent_events",
    "expected_sample_mse",
    "mse_curve",
    "pooled_amplification",
    "quantile_cells",
    "quantile_mse",
]


def quantile_cells(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Quantile number (0 … N_q - 1) of each value; -1 for values outside finite outer edges.

    Example:
        >>> quantile_cells(np.array([0.2, 0.7, 3.0]), np.array([0.0, 0.5, 1.0])).tolist()
        [0, 1, -1]
    """
    values = np.asarray(values, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.size < 2 or not np.all(np.diff(edges) > 0):
        raise DataError(f"quantile edges must be at least two increasing values, got {edges.tolist()}")
    # Open outer quantiles (±inf edges) become finite edges just outside the data.
    finite_values = values[np.isfinite(values)]
    inner = edges[np.isfinite(edges)]
    low = min(finite_values.min(initial=0.0), inner.min(initial=0.0)) - 1.0
    high = max(finite_values.max(initial=0.0), inner.max(initial=0.0)) + 1.0
    bounded = np.where(np.isneginf(edges), low, np.where(np.isposinf(edges), high, edges))
    n_q = len(edges) - 1
    cells = np.asarray(hist.axis.Variable(bounded, flow=True).index(values), dtype=np.int64)
    cells = np.where(values == bounded[-1], n_q - 1, cells)  # the last quantile includes its upper edge
    return np.where((cells < 0) | (cells >= n_q) | ~np.isfinite(values), -1, cells)


def _piece_fractions(cells: np.ndarray, n_cells: int, pieces: int, size: int) -> np.ndarray:
    """Cell fractions of ``pieces`` consecutive pieces of ``size`` events: array (pieces, n_cells)."""
    cells = cells[: pieces * size]
    h = hist.Hist(hist.axis.Integer(0, pieces, flow=False), hist.axis.Integer(0, n_cells, flow=False))
    h.fill(np.repeat(np.arange(pieces), size), cells)
    return h.values() / size  # events in no cell (index -1) lower the fractions


def quantile_mse(values: np.ndarray, edges: np.ndarray) -> float:
    r"""Quantile MSE = (1/N_q) Σⱼ (xⱼ - 1/N_q)², xⱼ the fraction of ``values`` in quantile j.

    ``edges`` are the N_q + 1 quantile boundaries (outer ones may be ±inf).

    Example:
        >>> quantile_mse(np.array([0.1, 0.2, 0.3, 0.7]), np.array([-np.inf, 0.5, np.inf]))
        0.0625
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DataError("quantile MSE needs at least one event")
    n_q = len(edges) - 1
    fractions = _piece_fractions(quantile_cells(values, edges), n_q, 1, values.size)[0]
    return float(np.mean((fractions - 1.0 / n_q) ** 2))


def expected_sample_mse(n_events: float | np.ndarray, n_quantiles: int) -> float | np.ndarray:
    """Expected quantile MSE of ``n_events`` true events: (1/N_q)(1 - 1/N_q)/N.

    Example:
        >>> expected_sample_mse(1000, 2)
        0.00025
    """
    out = (1.0 / n_quantiles) * (1.0 - 1.0 / n_quantiles) / np.asarray(n_events, dtype=np.float64)
    return float(out) if out.ndim == 0 else out


def equivalent_events(mse: float, n_quantiles: int) -> float:
    """Number of true events whose expected quantile MSE equals ``mse`` (inf for mse <= 0).

    Example:
        >>> equivalent_events(0.00025, 2)
        1000.0
    """
    if mse <= 0:
        return float("inf")
    return float((1.0 / n_quantiles) * (1.0 - 1.0 / n_quantiles) / mse)


def amplification_factor(mse: float, n_quantiles: int, n_train: int) -> float:
    """Amplification = equivalent_events(mse) / n_train.

    Example:
        >>> amplification_factor(0.00025, 2, 100)
        10.0
    """
    return equivalent_events(mse, n_quantiles) / n_train


def pooled_amplification(asymptotic_mses: Sequence[float], n_quantiles: int, n_train: int) -> dict[str, float]:
    """Amplification of a generator *setup* from several independent trainings (seed 002's procedure).

    The paper averages the quantile-MSE curves of independent trainings (each on
    its own training sample) and compares the averaged asymptote with the
    sampling curve. So the asymptotic MSEs are averaged first and converted
    once: N_eq(mean a) / n_train. (Averaging the per-training factors instead
    would favour lucky trainings: 1/a is convex.)

    Returns:
        dict with ``amplification``, ``equivalent_events``, ``mean_asymptotic_mse``,
        its standard error ``asymptotic_mse_err``, the factor's ±1σ range
        ``amplification_low``/``amplification_high`` (from mean a ± error) and ``trainings``.

    Example:
        >>> out = pooled_amplification([2e-5, 6e-5], 50, 100)    # mean a = 4e-5
        >>> round(out["amplification"], 2)
        4.9
    """
    a = np.asarray(asymptotic_mses, dtype=np.float64)
    if a.size == 0:
        raise DataError("pooled amplification needs at least one training")
    mean = float(a.mean())
    err = float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else 0.0
    return {
        "amplification": amplification_factor(mean, n_quantiles, n_train),
        "equivalent_events": equivalent_events(mean, n_quantiles),
        "mean_asymptotic_mse": mean,
        "asymptotic_mse_err": err,
        "amplification_low": amplification_factor(mean + err, n_quantiles, n_train),
        "amplification_high": amplification_factor(mean - err, n_quantiles, n_train),
        "trainings": int(a.size),
    }


def mse_curve(cells: np.ndarray, n_cells: int, sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantile MSE of sub-samples of each size: mean and standard error over disjoint pieces.

    ``cells`` are the quantile cell numbers of the events (:func:`quantile_cells`
    in 1D, or a multi-dimensional cell index such as a toy density's
    ``quantile_index``), in random order. The sample is cut into up to 1000
    disjoint pieces of n events; sizes with no complete piece are skipped.

    Returns:
        (sizes used, mean MSE, standard error of the mean); the error is 0 with one piece.

    Example:
        >>> c = quantile_cells(np.random.default_rng(0).random(1000), np.array([0.0, 0.5, 1.0]))
        >>> mse_curve(c, 2, [10, 100])[0].tolist()
        [10, 100]
    """
    cells = np.asarray(cells, dtype=np.int64)
    used, means, errors = [], [], []
    for n in sizes:
        pieces = min(cells.size // int(n), 1000)
        if pieces < 1:
            continue
        fractions = _piece_fractions(cells, n_cells, pieces, int(n))
        mses = np.mean((fractions - 1.0 / n_cells) ** 2, axis=1)
        used.append(int(n))
        means.append(mses.mean())
        errors.append(mses.std(ddof=1) / np.sqrt(len(mses)) if len(mses) > 1 else 0.0)
    return np.array(used), np.array(means), np.array(errors)


def asymptotic_mse(sizes: np.ndarray, mses: np.ndarray, n_quantiles: int) -> float:
    r"""The generator's asymptotic quantile MSE a from a fit MSE(n) = a + b/n.

    The fit is least squares in relative terms (each point weighted by
    1/MSE(n)); a is clipped at 0 (a generator as good as the true density).
    With a single size, b is fixed to its sampling value (1/N_q)(1 - 1/N_q).

    Example:
        >>> n = np.array([100.0, 1000.0, 10000.0])
        >>> round(asymptotic_mse(n, 1e-4 + 0.09 / n, 10), 8)
        0.0001
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    mses = np.asarray(mses, dtype=np.float64)
    if sizes.size == 0:
        raise DataError("no quantile MSE points to fit")
    if sizes.size == 1:
        return float(max(mses[0] - expected_sample_mse(sizes[0], n_quantiles), 0.0))
    w = 1.0 / np.maximum(mses, 1e-300)
    design = np.stack([np.ones_like(sizes), 1.0 / sizes], axis=1) * w[:, None]
    (a, _b), *_ = np.linalg.lstsq(design, mses * w, rcond=None)
    return float(max(a, 0.0))


def amplification_from_cells(
    cells: np.ndarray,
    n_cells: int,
    n_train: int,
    sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Amplification of a generator from the quantile cells of its generated events.

    Measures the quantile MSE of sub-samples of increasing size, fits
    MSE(n) = a + b/n, and converts a into equivalent true events. Also returns
    the figures at the full generated size without extrapolation
    (``equivalent_events_at_size``): for a perfect generator that is n_gen.

    Returns:
        dict with ``n_quantiles`` (cells), ``n_train``, ``n_generated``, ``sizes``,
        ``mse``, ``mse_err``, ``asymptotic_mse``, ``equivalent_events``,
        ``amplification``, ``mse_at_size``, ``equivalent_events_at_size``,
        ``amplification_at_size``.
    """
    cells = np.asarray(cells, dtype=np.int64)
    n_gen = cells.size
    if n_gen == 0:
        raise DataError("amplification needs generated events")
    if sizes is None:
        sizes = sorted({int(s) for s in np.geomspace(max(n_cells, 10), n_gen, 12)})
    used, means, errors = mse_curve(cells, n_cells, sizes)
    a = asymptotic_mse(used, means, n_cells)
    full = float(np.mean((_piece_fractions(cells, n_cells, 1, n_gen)[0] - 1.0 / n_cells) ** 2))
    return {
        "n_quantiles": int(n_cells),
        "n_train": int(n_train),
        "n_generated": int(n_gen),
        "sizes": used.tolist(),
        "mse": means.tolist(),
        "mse_err": errors.tolist(),
        "asymptotic_mse": a,
        "equivalent_events": equivalent_events(a, n_cells),
        "amplification": amplification_factor(a, n_cells, n_train),
        "mse_at_size": full,
        "equivalent_events_at_size": equivalent_events(full, n_cells),
        "amplification_at_size": amplification_factor(full, n_cells, n_train),
    }


def amplification(
    generated: np.ndarray,
    edges: np.ndarray,
    n_train: int,
    sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Amplification of a generator from its generated 1D values and known quantile ``edges``.

    See :func:`amplification_from_cells` for the method and the returned dict.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> out = amplification(rng.random(20000), np.linspace(0, 1, 11), n_train=100)
        >>> out["amplification"] > 10
        True
    """
    edges = np.asarray(edges, dtype=np.float64)
    return amplification_from_cells(quantile_cells(generated, edges), len(edges) - 1, n_train, sizes)
