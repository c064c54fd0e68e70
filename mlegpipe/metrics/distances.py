"""Distances between two distributions: χ²/ndf, thesis χ², KL, W1, sliced W1, triangular, MMD².

Binned distances take histogram contents (Σw) and, for χ², their variances
(Σw²); both histograms are normalized to unit sum first unless stated.

Example:
    >>> import numpy as np
    >>> triangular_discriminator(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
"""

from __future__ import annotations

import numpy as np

from mlegpipe.exceptions import DataError

__all__ = [
    "chi2_ndf",
    "kl_divergence",
    "mmd2",
    "sample_chi2_ndf",
    "sliced_wasserstein1",
    "sorted_cdf",
    "thesis_chi2",
    "triangular_discriminator",
    "wasserstein1",
]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"histograms have different numbers of bins: {a.size} and {b.size}")
    return a, b


def _normalized(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if not total > 0:
        raise DataError("an empty histogram cannot be normalized (no events inside the bins)")
    return counts / total


def chi2_ndf(
    counts_a: np.ndarray,
    var_a: np.ndarray,
    counts_b: np.ndarray,
    var_b: np.ndarray,
) -> tuple[float, int]:
    r"""χ²/ndf of two histograms with both statistical errors.

    Both histograms are normalized to unit sum, :math:`p_i = a_i/\sum a`,
    :math:`\sigma^2_{p_i} = \mathrm{var}(a_i)/(\sum a)^2` (likewise :math:`q_i`), and

        χ² = Σᵢ (pᵢ - qᵢ)² / (σ²_pᵢ + σ²_qᵢ)

    over the bins with entries in either histogram; ndf = (that number of bins) - 1,
    the normalization removing one degree of freedom. Two independent samples
    of one distribution give χ²/ndf ≈ 1 (report that floor beside the figure).

    Returns:
        (χ²/ndf, ndf); (nan, 0) when fewer than two bins have entries.

    Example:
        >>> c = np.array([100.0, 100.0])
        >>> chi2_ndf(c, c, c, c)
        (0.0, 1)
    """
    a, b = _pair(counts_a, counts_b)
    va, vb = _pair(var_a, var_b)
    sa, sb = a.sum(), b.sum()
    if not (sa > 0 and sb > 0):
        raise DataError("an empty histogram cannot be normalized (no events inside the bins)")
    p, q = a / sa, b / sb
    var = va / sa**2 + vb / sb**2
    used = var > 0
    ndf = int(used.sum()) - 1
    if ndf < 1:
        return float("nan"), 0
    chi2 = float(np.sum((p[used] - q[used]) ** 2 / var[used]))
    return chi2 / ndf, ndf


def sample_chi2_ndf(sample: np.ndarray, reference: np.ndarray, bins: int | np.ndarray = 20) -> float:
    """:func:`chi2_ndf` of two unweighted 1D samples, on equal-population bins of ``reference`` (outer edges
    open) or on explicit edges. Two samples of one density give ≈ 1.

    Example:
        >>> sample_chi2_ndf(np.zeros(100), np.ones(100), bins=np.array([-0.5, 0.5, 1.5]))
        200.0
        >>> rng = np.random.default_rng(0)
        >>> 0.3 < sample_chi2_ndf(rng.normal(size=4000), rng.normal(size=4000)) < 3.0
        True
    """
    from mlegpipe.metrics.histograms import quantile_edges

    edges = np.unique(quantile_edges(reference, bins)) if np.isscalar(bins) else np.asarray(bins)
    g = np.histogram(sample, edges)[0].astype(float)
    t = np.histogram(reference, edges)[0].astype(float)
    return float(chi2_ndf(g, g, t, t)[0])


def thesis_chi2(model_counts: np.ndarray, truth_counts: np.ndarray) -> float:
    r"""The thesis's χ² per bin on counts: χ² = (1/n) Σᵢ (gᵢ - tᵢ)² / tᵢ.

    The sum runs over the n bins with tᵢ > 0. The model counts gᵢ are scaled to
    the truth total first (the thesis compares equal-size samples); the value
    still grows with the sample size, so quote it with the sizes.

    Example:
        >>> round(thesis_chi2(np.array([110.0, 90.0]), np.array([100.0, 100.0])), 6)
        1.0
    """
    g, t = _pair(model_counts, truth_counts)
    if not (g.sum() > 0 and t.sum() > 0):
        raise DataError("an empty histogram cannot be compared (no events inside the bins)")
    g = g * (t.sum() / g.sum())
    used = t > 0
    return float(np.mean((g[used] - t[used]) ** 2 / t[used]))


def kl_divergence(reference_counts: np.ndarray, model_counts: np.ndarray, eps: float = 1e-10) -> float:
    r"""Binned Kullback-Leibler divergence KL(P‖Q) = Σᵢ pᵢ ln(pᵢ/qᵢ).

    P is the reference (truth) and Q the model histogram, both normalized to
    unit sum after adding ``eps`` to every bin (so empty model bins give a
    large but finite value). Zero for identical histograms.

    Example:
        >>> round(kl_divergence(np.array([0.5, 0.5]), np.array([0.25, 0.75])), 4)
        0.1438
    """
    p, q = _pair(reference_counts, model_counts)
    p = _normalized(p + eps)
    q = _normalized(q + eps)
    return float(np.sum(p * np.log(p / q)))


def triangular_discriminator(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    r"""Triangular discriminator Δ(P, Q) = ½ Σᵢ (pᵢ - qᵢ)² / (pᵢ + qᵢ) on normalized histograms.

    Bins empty in both are skipped. 0 for identical, 1 for disjoint
    distributions; the unfolding literature quotes it ×10³.

    Example:
        >>> round(triangular_discriminator(np.array([1.0, 0.0]), np.array([0.5, 0.5])), 6)
        0.333333
    """
    p, q = _pair(p_counts, q_counts)
    p, q = _normalized(p), _normalized(q)
    s = p + q
    used = s > 0
    return float(0.5 * np.sum((p[used] - q[used]) ** 2 / s[used]))


def sorted_cdf(values: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A sample as (sorted values, normalized cumulative weights): its empirical CDF at each value.

    Sort a reference once with this and pass it to :func:`wasserstein1` for many comparisons.

    Example:
        >>> v, c = sorted_cdf(np.array([2.0, 0.0]), np.array([3.0, 1.0]))
        >>> v.tolist(), c.tolist()
        ([0.0, 2.0], [0.25, 1.0])
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DataError("Wasserstein distance needs two non-empty samples")
    weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    if weights is None or (weights[0] > 0 and np.all(weights == weights[0])):  # equal weights: a plain sort
        return np.sort(values), np.arange(1, values.size + 1, dtype=np.float64) / values.size
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    if not cum[-1] > 0:
        raise DataError("Wasserstein distance needs positive total weight")
    return values[order], cum / cum[-1]


def wasserstein1(
    a: np.ndarray | tuple[np.ndarray, np.ndarray],
    b: np.ndarray | tuple[np.ndarray, np.ndarray],
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> float:
    r"""Wasserstein-1 (earth mover's) distance W₁ = ∫ |F_a(t) - F_b(t)| dt of two 1D samples.

    F_a, F_b are the (weighted) empirical CDFs; the integral is exact (the
    same value as ``scipy.stats.wasserstein_distance``). Either sample may be
    given pre-sorted as the output of :func:`sorted_cdf` (weights then ignored).
    In the units of the feature; a shift by μ gives |μ|.

    Example:
        >>> wasserstein1(np.array([0.0, 1.0]), np.array([2.0, 3.0]))
        2.0
    """
    va, ca = a if isinstance(a, tuple) else sorted_cdf(a, weights_a)
    vb, cb = b if isinstance(b, tuple) else sorted_cdf(b, weights_b)
    merged = np.concatenate([va, vb])
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear-time merge for timsort
    # F_a - F_b just right of each merged value: running sum of +a-steps and -b-steps in merged order
    difference = np.cumsum(np.concatenate([np.diff(ca, prepend=0.0), -np.diff(cb, prepend=0.0)])[order])
    return float(np.sum(np.abs(difference[:-1]) * np.diff(merged[order])))


def sliced_wasserstein1(a: np.ndarray, b: np.ndarray, n_random: int = 16, seed: int = 0) -> float:
    """Mean 1D Wasserstein-1 distance over the axes and ``n_random`` fixed random directions.

    Both samples must have the same size (sorted projections are compared).
    It sees marginals and, through the random directions, correlations; the
    GANs track it between generated and validation events.

    Example:
        >>> a = np.random.default_rng(0).normal(size=(1000, 2))
        >>> round(sliced_wasserstein1(a, a + 1.0, n_random=0), 6)
        1.0
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise DataError(f"sliced Wasserstein needs samples of equal shape, got {a.shape} and {b.shape}")
    d = a.shape[1]
    dirs = [np.eye(d)]
    if n_random:
        r = np.random.default_rng(seed).normal(size=(n_random, d))
        dirs.append(r / np.linalg.norm(r, axis=1, keepdims=True))
    proj = np.concatenate(dirs)
    pa, pb = np.sort(a @ proj.T, axis=0), np.sort(b @ proj.T, axis=0)
    return float(np.abs(pa - pb).mean())


def mmd2(
    x: np.ndarray,
    y: np.ndarray,
    sigma: float = 1.0,
    max_events: int = 2000,
    rng: np.random.Generator | None = None,
) -> float:
    r"""Unbiased squared maximum mean discrepancy with a Gaussian kernel of width ``sigma`` (the metric form
    of :func:`mlegpipe.losses.mmd2`).

        MMD² = E k(x, x') + E k(y, y') - 2 E k(x, y),  k(u, v) = exp(-|u - v|² / (2σ²)),

    with the diagonal terms left out of the within-sample means (unbiased
    U-statistic, so it can be slightly negative when the samples agree). Costs
    O(n²): at most ``max_events`` of each sample are used, drawn with ``rng``.
    For 1D N(0,1) against N(μ,1): MMD² = 2 √(σ²/(σ²+2)) (1 - exp(-μ²/(2(σ²+2)))).

    Example:
        >>> x = np.zeros((3, 1)); y = np.ones((3, 1))
        >>> round(mmd2(x, y, sigma=1.0), 4)
        0.7869
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x.reshape(len(x), -1)
    y = y.reshape(len(y), -1)
    if len(x) < 2 or len(y) < 2:
        raise DataError("MMD needs at least two events in each sample")
    if max(len(x), len(y)) > max_events:
        rng = rng or np.random.default_rng(0)
        if len(x) > max_events:
            x = x[rng.choice(len(x), max_events, replace=False)]
        if len(y) > max_events:
            y = y[rng.choice(len(y), max_events, replace=False)]

    import torch

    from mlegpipe.losses import mmd2 as kernel_mmd2

    return float(kernel_mmd2(torch.from_numpy(x), torch.from_numpy(y), (sigma,), unbiased=True))
