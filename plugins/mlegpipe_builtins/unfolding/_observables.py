"""Observables of unfolding reports: extraction from events, common binnings, binned comparisons.

An observable is an event field (``x``, ``Q2``, a toy's ``a``), any observable
the events allow (:mod:`mlegpipe.observables`; the DIS domain derives ``nu1``,
``nu2``, ``lepton_theta``, ``lepton_P`` from the scattered lepton, and its
labels from the lepton where a sample lacks them), or one the pipeline declares
in its ``[observables]`` table (``vsum = "v1 + v2"``), while an unfolding runs
inside :func:`declared_observables`. Values that are undefined for an event (ν₂
of a smeared lepton beyond the kinematic limit, an unmeasured lepton) are NaN
and left out of histograms.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.observables import observable_set
    >>> b = EventBatch.from_columns({"a": np.array([1.0, 2.0, np.nan])})
    >>> observable(b, "a").tolist()[:2]
    [1.0, 2.0]
    >>> with declared_observables(observable_set({"twice": "2 * a"})):
    ...     observable(b, "twice").tolist()[:2]
    [2.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.metrics.distances import triangular_discriminator, wasserstein1
from mlegpipe.metrics.histograms import edges_for, histogram
from mlegpipe.observables import Observable, ObservableSet, resolve, values_of
from mlegpipe_builtins.detectors._fold_features import feature_values

__all__ = ["binning", "check_observables", "compare", "declared_observables", "density", "observable"]

#: The pipeline's observables while an unfolding runs (its ``[observables]`` table): see :func:`declared_observables`.
_DECLARED: ContextVar[ObservableSet | None] = ContextVar("unfolding_declared_observables", default=None)


@contextmanager
def declared_observables(observables: ObservableSet | None) -> Iterator[None]:
    """Within the block, :func:`observable` and :func:`binning` also know the observables ``observables``
    declares (a pipeline's ``[observables]`` table, ``ctx.observables`` of a stage); None: only fields,
    registered and automatic observables. A field of the events of the same name wins.

    Example:
        >>> from mlegpipe.observables import observable_set
        >>> b = EventBatch.from_columns({"v1": [1.0], "v2": [2.0]})
        >>> with declared_observables(observable_set({"vsum": "v1 + v2"})):
        ...     observable(b, "vsum").tolist(), observable(b.with_columns(vsum=[0.5]), "vsum").tolist()
        ([3.0], [0.5])
    """
    token = _DECLARED.set(observables)
    try:
        yield
    finally:
        _DECLARED.reset(token)


def _declared(batch: EventBatch | None, name: str) -> Observable | None:
    """The declared observable ``name`` (a field of ``batch`` of the same name wins), else None."""
    observables = _DECLARED.get()
    if observables is None or name not in observables.declared or (batch is not None and batch.has(name)):
        return None
    return observables.declared[name]


def observable(batch: EventBatch, name: str, where: str = "events") -> np.ndarray:
    """The values of ``name`` per event (float64, NaN where undefined): the surrogates' feature convention
    (:func:`~mlegpipe_builtins.detectors._fold_features.feature_values`), or a declared observable
    (:func:`declared_observables`).

    Raises:
        DataError: ``name`` is neither a field nor an observable computable from the events.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if _declared(batch, name) is not None:
            return np.asarray(values_of(batch, name, where, _DECLARED.get()), dtype=np.float64)
        return np.asarray(feature_values(batch, name, where), dtype=np.float64)


def check_observables(names: Sequence[str], path: str, samples: Mapping[str, EventBatch | None],
                      hints: Mapping[str, str] | None = None, head: int = 1000) -> None:
    """Compute every observable of ``names`` on the first ``head`` events of each sample (cheap, before training).

    Arguments:
        names: the observables.
        path: the TOML path of the parameter that names them (``unfolding.observables``).
        samples: what they must be computable on, by description (``"the data truth_test_detector"``);
            None entries are skipped.
        hints: per description, the hint of the error (e.g. which fields the unfolded events carry).

    Raises:
        ConfigError: an observable cannot be computed from one sample, naming ``path``, the observable
            and the sample.

    Example:
        >>> b = EventBatch.from_columns({"v1": [1.0], "v2": [2.0]})
        >>> check_observables(["v3"], "unfolding.observables", {"the unfolded events": b})
        Traceback (most recent call last):
        mlegpipe.exceptions.ConfigError: unfolding.observables = 'v3': cannot be computed from the unfolded events: no such observable for these events; fields: v1, v2; collections: none
    """
    for where, batch in samples.items():
        if batch is None:
            continue
        part = batch.take(slice(0, min(len(batch), head)))
        for name in names:
            try:
                observable(part, name, where)
            except DataError as err:
                hint = " ".join(h for h in (err.hint, (hints or {}).get(where)) if h) or None
                raise ConfigError(f"cannot be computed from {where}: {err.message}", path=path, value=name,
                                  hint=hint) from None


def binning(name: str, samples: Sequence[np.ndarray], bins: int) -> np.ndarray:
    """Common edges for one observable: between pooled 0.1% and 99.9% quantiles, log10 for observables declared log.

    For the log-binned observables only positive values count.

    Example:
        >>> binning("a", [np.arange(11.0)], 2).round(2).tolist()
        [0.01, 5.0, 9.99]
    """
    finite = [s[np.isfinite(s)] for s in samples]
    log = (_declared(None, name) or resolve(name)).log
    if log:  # smeared x, Q² can leave the physical range: such events fall outside the bins
        finite = [s[s > 0] for s in finite]
    return edges_for(finite, bins=bins, log=log, quantiles=(0.001, 0.999))


def density(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Histogram contents (Σw) normalized to unit sum over the bins (NaN values dropped).

    Example:
        >>> density(np.array([0.2, 0.7, 0.8]), np.array([0.0, 0.5, 1.0])).round(3).tolist()
        [0.333, 0.667]
    """
    values = np.asarray(values, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(values)
    counts = histogram(values[ok], edges, w[ok]).values()
    total = counts.sum()
    return counts / total if total > 0 else counts


def compare(
    model: np.ndarray,
    reference: np.ndarray,
    edges: np.ndarray,
    model_weights: np.ndarray | None = None,
    reference_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Triangular discriminator ×10³ (binned on ``edges``) and Wasserstein-1 of two samples of one observable.

    Example:
        >>> a = np.linspace(0, 1, 101)
        >>> compare(a, a, np.linspace(0, 1, 5))
        {'triangular_e3': 0.0, 'w1': 0.0}
    """
    model = np.asarray(model, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    mw = np.ones_like(model) if model_weights is None else np.asarray(model_weights, dtype=np.float64)
    rw = np.ones_like(reference) if reference_weights is None else np.asarray(reference_weights, dtype=np.float64)
    mok, rok = np.isfinite(model), np.isfinite(reference)
    if not (mok.any() and rok.any()):
        return {"triangular_e3": None, "w1": None}
    tri = triangular_discriminator(histogram(model[mok], edges, mw[mok]).values(),
                                   histogram(reference[rok], edges, rw[rok]).values())
    w1 = wasserstein1(model[mok], reference[rok], mw[mok], rw[rok])
    return {"triangular_e3": round(1e3 * tri, 4), "w1": float(f"{w1:.5g}")}
