"""Classifier two-sample test: ROC AUC of a classifier telling model from reference events.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> auc = classifier_auc(rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2)), seed=1)["auc"]
    >>> abs(auc - 0.5) < 0.05
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlegpipe.exceptions import DataError

__all__ = ["classifier_auc"]


def classifier_auc(
    model: np.ndarray,
    reference: np.ndarray,
    seed: int = 0,
    max_events: int = 50_000,
    test_fraction: float = 0.5,
    max_iter: int = 100,
) -> dict[str, Any]:
    r"""Train a gradient-boosted tree classifier on model vs reference events; AUC on held-out events.

    The same number n = min(len(model), len(reference), ``max_events``) of each
    sample is drawn (with ``seed``), features are those of the columns, and a
    ``HistGradientBoostingClassifier`` is trained on (1 - ``test_fraction``) of
    the events. AUC = P(score(model event) > score(reference event)) on the
    held-out events: 0.5 means indistinguishable, 1 fully separated. Under the
    null hypothesis AUC has standard deviation √((n₁ + n₂ + 1)/(12 n₁ n₂))
    (Mann-Whitney), returned as ``auc_null_std``. Events are unweighted here.

    Returns:
        dict with ``auc``, ``auc_null_std``, ``n_train``, ``n_test`` (per class).
    """
    # scikit-learn takes seconds to import: only when the test runs, not with mlegpipe.metrics
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    model = np.asarray(model, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    model = model.reshape(len(model), -1)
    reference = reference.reshape(len(reference), -1)
    if model.shape[1] != reference.shape[1]:
        raise DataError(f"samples have different numbers of features: {model.shape[1]} and {reference.shape[1]}")
    n = min(len(model), len(reference), max_events)
    if n < 20:
        raise DataError(f"classifier test needs at least 20 events per sample, got {n}")
    rng = np.random.default_rng(seed)
    a = model[rng.choice(len(model), n, replace=False)]
    b = reference[rng.choice(len(reference), n, replace=False)]
    keep = np.isfinite(a).all(1)
    a = a[keep]
    b = b[np.isfinite(b).all(1)]
    n_test_a, n_test_b = int(len(a) * test_fraction), int(len(b) * test_fraction)
    x_train = np.concatenate([a[n_test_a:], b[n_test_b:]])
    y_train = np.concatenate([np.ones(len(a) - n_test_a), np.zeros(len(b) - n_test_b)])
    x_test = np.concatenate([a[:n_test_a], b[:n_test_b]])
    y_test = np.concatenate([np.ones(n_test_a), np.zeros(n_test_b)])
    clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, early_stopping=False,
                                         random_state=int(rng.integers(2**31 - 1)))
    # One OpenMP thread: faster than spin-waiting threads on a busy 2-core machine, and reproducible.
    with threadpool_limits(limits=1, user_api="openmp"):
        clf.fit(x_train, y_train)
        scores = clf.predict_proba(x_test)[:, 1]
    auc = float(roc_auc_score(y_test, scores))
    null_std = float(np.sqrt((n_test_a + n_test_b + 1) / (12.0 * max(n_test_a, 1) * max(n_test_b, 1))))
    # A non-finite model event is trivially distinguishable: count it as such.
    return {"auc": auc, "auc_null_std": null_std, "n_train": len(a) - n_test_a, "n_test": n_test_a,
            "n_nonfinite_model": int((~keep).sum())}
