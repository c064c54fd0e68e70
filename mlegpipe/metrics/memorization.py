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
    density does; ≪ 1: it copies its training set. Features are standardized
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
