"""Bootstrap ensembles: train replicas of a model on resampled training sets.

Retraining on bootstrap resamples of the training data (with replacement)
gives the spread of a model's predictions due to the finite training sample:
the uncertainty bands and pulls of thesis ch. 7.

Example:
    >>> idx = bootstrap_indices(5, replicas=3, seed=1)
    >>> idx.shape, bool((idx >= 0).all() and (idx < 5).all())
    ((3, 5), True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from mlegpipe.exceptions import ConfigError

__all__ = ["bootstrap_indices", "train_ensemble"]

T = TypeVar("T")


def bootstrap_indices(n: int, replicas: int, seed: int | np.random.SeedSequence) -> np.ndarray:
    """``(replicas, n)`` indices of bootstrap resamples; replica ``r`` uses its own spawned stream.

    The draw of replica ``r`` depends only on ``(seed, r)``, so asking for more
    replicas never changes the earlier ones.

    Example:
        >>> a = bootstrap_indices(100, 2, seed=7)
        >>> b = bootstrap_indices(100, 3, seed=7)
        >>> bool((a == b[:2]).all())
        True
    """
    if n < 1 or replicas < 1:
        raise ConfigError("bootstrap needs at least one event and one replica", value=(n, replicas))
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    children = [np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, r)) for r in range(replicas)]
    return np.stack([np.random.default_rng(c).integers(0, n, size=n) for c in children])


def train_ensemble(train_one: Callable[[int, np.ndarray], T], n: int, replicas: int,
                   seed: int | np.random.SeedSequence) -> list[T]:
    """Call ``train_one(replica, indices)`` for each bootstrap replica; return the results.

    Example:
        >>> means = train_ensemble(lambda r, idx: float(np.arange(10.0)[idx].mean()), 10, 4, seed=0)
        >>> len(means)
        4
    """
    return [train_one(r, idx) for r, idx in enumerate(bootstrap_indices(n, replicas, seed))]
