"""Memorization test: nearest-neighbour distances to the training set (referee request, seed 003).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train = rng.normal(size=(2000, 2))
    >>> copies = train[rng.integers(0, 2000, 500)]
    >>> memorization_ratio(copies, rng.normal(size=(500, 2)), train)["ratio"] < 0.1
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlegpipe.exceptions import DataError

__all__ = ["memorization_ratio", "nearest_distances"]


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


def nearest_distances(queries: np.ndarray, training: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query event to its nearest training event (``cKDTree``).

    Example:
        >>> nearest_distances(np.array([[0.0], [3.0]]), np.array([[1.0], [2.0]])).tolist()
        [1.0, 1.0]
    """
    from scipy.spatial import cKDTree

    queries, training = _as_2d(queries), _as_2d(training)
    if queries.shape[1] != training.shape[1]:
        raise DataError(f"samples have different numbers of features: {queries.shape[1]} and {training.shape[1]}")
    distances, _ = cKDTree(training).query(queries, k=1, workers=-1)
    return np.asarray(distances)


#: Above this many features the nearest neighbours are found by blocked matrix products, not a k-d tree.
KD_TREE_MAX_DIMENSIONS = 16
#: There, at most this many generated and independent events are queried (the medians keep a ~2 % precision).
HIGH_DIMENSION_QUERIES = 5000
_BLOCK = 2048


def _brute_nearest(queries: np.ndarray, training: np.ndarray) -> np.ndarray:
    """Distance of each query to its nearest training row: |q|² + |t|² - 2 q·t in blocks (float64, torch)."""
    import torch

    q, t = torch.from_numpy(np.ascontiguousarray(queries)), torch.from_numpy(np.ascontiguousarray(training))
    t_sq = (t * t).sum(1)
    out = torch.empty(len(q), dtype=torch.float64)
    for lo in range(0, len(q), _BLOCK):
        block = q[lo:lo + _BLOCK]
        d2 = (block * block).sum(1)[:, None] + t_sq[None, :] - 2.0 * block @ t.T
        out[lo:lo + _BLOCK] = d2.min(dim=1).values.clamp_min(0.0)
    d = out.sqrt().numpy()
    return np.where(d < 1e-6, 0.0, d)  # rounding of the expansion (~1e-7): an exact copy is at distance 0


def memorization_ratio(
    generated: np.ndarray,
    independent: np.ndarray,
    training: np.ndarray,
    max_events: int = 100_000,
    standardize: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    r"""Ratio of median nearest-training-event distances, generated over independent truth.

        ratio = median_g min_t |g - t| / median_i min_t |i - t|

    with t over the training events, g generated and i independent true events
    (not used in training). ≈ 1: the generator draws new events like the true
    density does; ≪ 1: it copies its training set. With more than
    :data:`KD_TREE_MAX_DIMENSIONS` features the neighbours are found by blocked
    matrix products (a k-d tree degrades to a slow full search there) for
    :data:`HIGH_DIMENSION_QUERIES` events of each sample. Features are standardized
    with the training mean and standard deviation first (``standardize``);
    at most ``max_events`` of each sample are used (drawn with ``seed``).

    Returns:
        dict with ``ratio``, ``median_generated``, ``median_independent``,
        ``n_training``, ``n_queries`` and ``exact_copies`` (fraction of generated
        events at distance 0 from a training event).
    """
    from scipy.spatial import cKDTree  # imported on use: scipy.spatial is slow to import

    generated, independent, training = _as_2d(generated), _as_2d(independent), _as_2d(training)
    if min(len(generated), len(independent), len(training)) == 0:
        raise DataError("memorization test needs non-empty generated, independent and training samples")
    rng = np.random.default_rng(seed)

    def cap(a: np.ndarray) -> np.ndarray:
        return a[rng.choice(len(a), max_events, replace=False)] if len(a) > max_events else a

    generated, independent, training = cap(generated), cap(independent), cap(training)
    if standardize:
        mean, std = training.mean(0), training.std(0)
        std = np.where(std > 0, std, 1.0)
        generated, independent, training = ((a - mean) / std for a in (generated, independent, training))
    if training.shape[1] > KD_TREE_MAX_DIMENSIONS:  # a k-d tree searches nearly everything there: do it directly
        few = np.random.default_rng(seed + 1)  # fewer queries, every training event: copies stay at distance 0

        def queries(a: np.ndarray) -> np.ndarray:
            return a[few.choice(len(a), HIGH_DIMENSION_QUERIES, replace=False)] if len(a) > HIGH_DIMENSION_QUERIES \
                else a

        generated, independent = queries(generated), queries(independent)
        d_gen, d_ind = _brute_nearest(generated, training), _brute_nearest(independent, training)
    else:
        tree = cKDTree(training)
        d_gen, _ = tree.query(generated, k=1, workers=-1)
        d_ind, _ = tree.query(independent, k=1, workers=-1)
    med_gen, med_ind = float(np.median(d_gen)), float(np.median(d_ind))
    return {
        "ratio": med_gen / med_ind if med_ind > 0 else float("nan"),
        "median_generated": med_gen,
        "median_independent": med_ind,
        "n_training": len(training),
        "n_queries": len(generated),
        "exact_copies": float(np.mean(d_gen == 0.0)),
    }
