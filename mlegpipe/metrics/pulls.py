"""Bootstrap replicas of binned densities and the per-bin pull (thesis eq. 29).

Example:
    >>> import numpy as np
    >>> model = np.array([[0.5, 0.5], [0.7, 0.3]])
    >>> ref = np.array([[0.6, 0.4], [0.6, 0.4]])
    >>> m, v = replica_stats(model)
    >>> pulls(m, v, *replica_stats(ref)).round(3).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlegpipe.exceptions import DataError
from mlegpipe.metrics.histograms import histogram

__all__ = ["bootstrap_densities", "pulls", "replica_densities", "replica_stats"]


def _density(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def bootstrap_densities(
    values: np.ndarray,
    edges: np.ndarray,
    replicas: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    r"""Binned probabilities P(O|bin) of ``replicas`` bootstrap resamples of one sample.

    Each replica resamples the events with replacement (a Poisson(1) multiplicity
    per event, the large-sample form of the multinomial bootstrap) and fills
    the histogram with weight w·k; each row is normalized to unit sum.

    Returns:
        array ``(replicas, bins)``.

    Example:
        >>> d = bootstrap_densities(np.arange(100.0), np.array([0.0, 50.0, 100.0]), 3, np.random.default_rng(1))
        >>> d.shape, bool(np.allclose(d.sum(1), 1))
        ((3, 2), True)
    """
    values = np.asarray(values, dtype=np.float64)
    base = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    rows = []
    for _ in range(replicas):
        k = rng.poisson(1.0, size=values.size)
        rows.append(_density(histogram(values, edges, base * k).values()))
    return np.array(rows)


def replica_densities(samples: Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Binned probabilities of independently produced replicas (e.g. one per retrained model).

    Example:
        >>> replica_densities([np.array([0.2]), np.array([0.7])], np.array([0.0, 0.5, 1.0])).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    if not samples:
        raise DataError("no replicas given")
    return np.array([_density(histogram(s, edges).values()) for s in samples])


def replica_stats(densities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean E[P] and variance V[P] (ddof = 1) over replicas, per bin.

    Example:
        >>> m, v = replica_stats(np.array([[0.4, 0.6], [0.6, 0.4]]))
        >>> m.tolist(), v.round(3).tolist()
        ([0.5, 0.5], [0.02, 0.02])
    """
    densities = np.asarray(densities, dtype=np.float64)
    if densities.ndim != 2 or densities.shape[0] < 2:
        raise DataError(f"need at least two replicas as rows of a 2D array, got shape {densities.shape}")
    return densities.mean(axis=0), densities.var(axis=0, ddof=1)


def pulls(
    mean_model: np.ndarray,
    var_model: np.ndarray,
    mean_reference: np.ndarray,
    var_reference: np.ndarray,
) -> np.ndarray:
    r"""Per-bin pull (thesis eq. 29).

        pull = (E[P(O|bin)]_model - E[P(O|bin)]_ref) / √(V[P(O|bin)]_model + V[P(O|bin)]_ref)

    NaN where both variances vanish. Agreement within uncertainties gives pulls
    distributed as N(0, 1).

    Example:
        >>> pulls(np.array([0.3]), np.array([0.01]), np.array([0.1]), np.array([0.03])).round(6).tolist()
        [1.0]
    """
    num = np.asarray(mean_model, dtype=np.float64) - np.asarray(mean_reference, dtype=np.float64)
    den = np.sqrt(np.asarray(var_model, dtype=np.float64) + np.asarray(var_reference, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)
