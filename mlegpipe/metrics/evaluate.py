"""The standard comparison table of a model sample against a reference (truth) sample, on any observables.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> rng = np.random.default_rng(0)
    >>> make = lambda: EventBatch.from_columns({"a": rng.normal(size=5000)})
    >>> out = compare_samples(make(), make(), make(), classifier=False)
    >>> 0.5 < out["features"]["a"]["chi2_ndf"] < 2.0
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError, MlegpipeError
from mlegpipe.metrics.classifier import classifier_auc
from mlegpipe.metrics.distances import (
    chi2_ndf,
    kl_divergence,
    mmd2,
    sorted_cdf,
    thesis_chi2,
    triangular_discriminator,
    wasserstein1,
)
from mlegpipe.metrics.histograms import edges_for, histogram, histogram2d, log_edges
from mlegpipe.metrics.memorization import memorization_ratio
from mlegpipe.metrics.peaks import peak_figures
from mlegpipe.observables import ObservableSet, Pair, is_log
from mlegpipe.physicality import applicable_checks, physicality

__all__ = [
    "compare_feature",
    "compare_joint",
    "compare_samples",
    "pair_values",
    "with_beams",
]

_UNDEFINED = -1.0e6  # stands for an observable undefined in an event (an absent particle) in the classifier
_STRUCTURAL_NAN = 0.01  # reference events without a value above which an observable counts as sometimes undefined


def with_beams(batch: EventBatch, beams: Beams | None) -> EventBatch:
    """``batch`` seen with ``beams`` (itself when ``beams`` is None or already its own).

    Example:
        >>> b = EventBatch.from_columns({"a": [1.0]})
        >>> with_beams(b, Beams.preset("hera")).beams.name
        'hera'
    """
    if beams is None or batch.beams is beams:
        return batch
    return EventBatch(batch.arrays, beams, batch.meta)


def _binned(values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = histogram(values, edges, weights)
    return h.values(), h.variances()


def compare_feature(
    name: str,
    model: EventBatch,
    reference: EventBatch,
    reference2: EventBatch | None = None,
    bins: int = 50,
    observables: ObservableSet | None = None,
) -> dict[str, Any]:
    """1D figures of one observable: χ²/ndf, KL, triangular discriminator, W1, each with its truth-vs-truth floor;
    for an observable with a :class:`~mlegpipe.observables.Peak`, the peak figures
    (:func:`~mlegpipe.metrics.peaks.peak_figures`) of the model (``peak``) and the truth samples (``peak_reference``,
    ``peak_reference2``).

    Bins: ``bins`` equal-width bins (log10 for observables declared log, when
    all values are positive) between the 0.05 % and 99.95 % quantiles of the
    reference and model samples. Floors compare ``reference2`` (an independent
    truth sample) with ``reference``. Events where the observable is undefined
    (NaN: a particle the event does not have) fall outside every bin.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> a = EventBatch.from_columns({"a": rng.normal(size=4000)})
        >>> b = EventBatch.from_columns({"a": rng.normal(size=4000) + 5})
        >>> compare_feature("a", b, a)["chi2_ndf"] > 100
        True
    """
    observables = observables or ObservableSet()
    observable = observables.get(name)
    ref_values, mod_values = observable(reference), observable(model)
    r2_values = observable(reference2) if reference2 is not None else None
    samples = [ref_values] + ([r2_values] if r2_values is not None else [])
    log = is_log(observable, *samples)
    # The model's bulk widens the range too: a shifted model must not fall outside the bins.
    model_bulk = mod_values[mod_values > 0] if log else mod_values
    edges = edges_for([*samples, model_bulk], bins=bins, log=log)
    ref_c, ref_v = _binned(ref_values, reference.weights, edges)
    mod_c, mod_v = _binned(mod_values, model.weights, edges)
    finite = np.isfinite(mod_values)
    ref_ok = np.isfinite(ref_values)
    ref_sorted = sorted_cdf(ref_values[ref_ok], reference.weights[ref_ok])  # sorted once for both W1 figures
    chi, ndf = chi2_ndf(mod_c, mod_v, ref_c, ref_v)
    out: dict[str, Any] = {
        "bins": len(edges) - 1, "log_bins": log, "range": [float(edges[0]), float(edges[-1])],
        "chi2_ndf": chi, "ndf": ndf,
        "kl": kl_divergence(ref_c, mod_c),
        "triangular": triangular_discriminator(mod_c, ref_c),
        "w1": wasserstein1(mod_values[finite], ref_sorted, model.weights[finite]),
        "outside_range": float(1.0 - mod_c.sum() / model.weights.sum()),
        "nonfinite": float(1.0 - finite.mean()),
    }
    if reference2 is not None:
        r2_c, r2_v = _binned(r2_values, reference2.weights, edges)
        out["chi2_ndf_floor"] = chi2_ndf(r2_c, r2_v, ref_c, ref_v)[0]
        out["kl_floor"] = kl_divergence(ref_c, r2_c)
        out["triangular_floor"] = triangular_discriminator(r2_c, ref_c)
        r2_ok = np.isfinite(r2_values)
        out["w1_floor"] = wasserstein1(r2_values[r2_ok], ref_sorted, reference2.weights[r2_ok])
    if observable.peak is not None:
        out["peak"] = peak_figures(mod_values, observable.peak, model.weights)
        out["peak_reference"] = peak_figures(ref_values, observable.peak, reference.weights)
        if reference2 is not None:
            out["peak_reference2"] = peak_figures(r2_values, observable.peak, reference2.weights)
    return out


def pair_values(pair: Pair, batch: EventBatch, observables: ObservableSet) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) values of a pair for every event (the pair's own function where it has one)."""
    if pair.values is not None:
        return pair.values(batch)
    return observables.values(batch, pair.x), observables.values(batch, pair.y)


def _axis_edges(samples: list[np.ndarray], bins: int, log: bool) -> np.ndarray:
    finite = [s[np.isfinite(s) & (s > 0)] if log else s[np.isfinite(s)] for s in samples]
    return edges_for(finite, bins=bins, log=log)


def _fixed_edges(spec: tuple[float, float, int], log: bool) -> np.ndarray:
    low, high, n = spec
    return log_edges(low, high, n) if log else np.linspace(low, high, n + 1)


#: A bin is tested for a hole when the reference has at least this many events in it (so that it is populated,
#: not a fluctuation) and, scaled to the model's size, expects at least :data:`HOLE_EXPECTATION` model events.
HOLE_REFERENCE_EVENTS = 3
HOLE_EXPECTATION = 5.0


def holes(model: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Empty bins of a (fine) model histogram where the reference expects events: holes in the model's coverage.

    A bin is tested when the reference has at least :data:`HOLE_REFERENCE_EVENTS` events in it and, scaled to
    the model's total, expects at least :data:`HOLE_EXPECTATION` model events; it is a hole when the model has
    none. With ten times the truth's events generated (the referees' test), a tested bin expects ≥ 30.

    Returns:
        ``{"holes": n, "tested": bins where the expectation is reached, "fraction": holes / tested,
        "by_chance": the number of empty tested bins a model equal to the reference would leave by Poisson
        fluctuations alone (Σ e^{-expected})}``: more holes than that are holes of the model.

    Example:
        >>> ref = np.array([[10.0, 0.0], [10.0, 10.0]])   # the model has 10x the events
        >>> out = holes(np.array([[100.0, 0.0], [0.0, 90.0]]), ref)
        >>> out["holes"], out["tested"], out["by_chance"] < 1e-3
        (1, 3, True)
    """
    model, reference = np.asarray(model, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    total = reference.sum()
    expected = reference * (model.sum() / total) if total > 0 else np.zeros_like(reference)
    tested = (reference >= HOLE_REFERENCE_EVENTS) & (expected >= HOLE_EXPECTATION)
    n_holes = int((tested & (model <= 0)).sum())
    n_tested = int(tested.sum())
    return {"holes": n_holes, "tested": n_tested, "fraction": n_holes / n_tested if n_tested else float("nan"),
            "by_chance": float(np.exp(-expected[tested]).sum())}


def compare_joint(
    pair: Pair,
    model: EventBatch,
    reference: EventBatch,
    reference2: EventBatch | None = None,
    bins: int = 20,
    observables: ObservableSet | None = None,
) -> dict[str, Any]:
    """Joint figures of two observables: χ²/ndf on ``bins`` × ``bins`` bins over the samples' range
    (log axes for log observables), and, where the pair declares a fixed binning, the thesis χ² and the
    :func:`holes` on it.

    The fixed-binning form (:func:`~mlegpipe.metrics.distances.thesis_chi2`) scales
    with the sample sizes, which are returned beside it.

    Example:
        >>> rng = np.random.default_rng(2)
        >>> s = lambda: EventBatch.from_columns({"a": rng.normal(size=4000), "b": rng.normal(size=4000)})
        >>> round(compare_joint(Pair("a", "b"), s(), s(), bins=5)["chi2_ndf"], 0)
        1.0
    """
    observables = observables or ObservableSet()
    logs = (observables.get(pair.x).log, observables.get(pair.y).log)
    batches = [model, reference] + ([reference2] if reference2 is not None else [])
    values = [pair_values(pair, b, observables) for b in batches]
    refs = values[1:]
    x_edges = _axis_edges([v[0] for v in [*refs, values[0]]], bins, logs[0])
    y_edges = _axis_edges([v[1] for v in [*refs, values[0]]], bins, logs[1])
    fixed = (_fixed_edges(pair.bins[0], logs[0]), _fixed_edges(pair.bins[1], logs[1])) if pair.bins else None

    def hists(v: tuple[np.ndarray, np.ndarray], w: np.ndarray) -> tuple[Any, Any]:
        main = histogram2d(v[0], v[1], x_edges, y_edges, w)
        return main, (histogram2d(v[0], v[1], fixed[0], fixed[1], w) if fixed else None)

    mod_h, mod_f = hists(values[0], model.weights)
    ref_h, ref_f = hists(values[1], reference.weights)
    chi, ndf = chi2_ndf(mod_h.values(), mod_h.variances(), ref_h.values(), ref_h.variances())
    out: dict[str, Any] = {"x": pair.x, "y": pair.y, "bins": [bins, bins], "chi2_ndf": chi, "ndf": ndf,
                           "n_model": len(model), "n_reference": len(reference)}
    if fixed:
        out.update({"thesis_chi2": thesis_chi2(mod_f.values(), ref_f.values()),
                    "thesis_bins": [pair.bins[0][2], pair.bins[1][2]],
                    "holes": holes(mod_f.values(), ref_f.values())})
    if reference2 is not None:
        r2_h, r2_f = hists(values[2], reference2.weights)
        out["chi2_ndf_floor"] = chi2_ndf(r2_h.values(), r2_h.variances(), ref_h.values(), ref_h.variances())[0]
        if fixed:
            out["thesis_chi2_floor"] = thesis_chi2(r2_f.values(), ref_f.values())
            out["holes_floor"] = holes(r2_f.values(), ref_f.values())
        out["n_reference2"] = len(reference2)
    return out


def compare_samples(
    model: EventBatch,
    reference: EventBatch,
    reference2: EventBatch | None = None,
    features: Sequence[str] | None = None,
    beams: Beams | None = None,
    *,
    training: EventBatch | None = None,
    cuts: Mapping[str, float | None] | None = None,
    observables: ObservableSet | None = None,
    physical: bool = True,
    bins: int = 50,
    classifier: bool = True,
    max_classifier_events: int = 50_000,
    seed: int = 0,
) -> dict[str, Any]:
    """The standard table comparing ``model`` events with ``reference`` (truth) events.

    Arguments:
        model: generated (or unfolded, or folded) events.
        reference: the truth sample they should match (e.g. ``truth_test``).
        reference2: an independent truth sample (e.g. ``truth_valid``) for the
            floors: the same figures between two truth samples.
        features: observables to compare (default: :meth:`ObservableSet.default_names`
            of ``observables``: the pipeline's, else every available one).
        beams: beam set-up the observables, pairs and physicality checks see
            (default: the reference's beams).
        training: the generator's training events, for the memorization test.
        cuts: the truth's generation cuts, enforced by physicality checks that know them.
        observables: the pipeline's observables (declared, chosen, pairs).
        physical: run the physicality checks that apply (vertex-level samples).
        bins: 1D bins per observable.
        classifier: run the classifier two-sample test (AUC).
        max_classifier_events: events per sample for the classifier.
        seed: seed of the subsampling in the classifier, MMD and memorization tests.

    Returns:
        JSON-able dict: ``n_model``, ``n_reference``, ``features`` (per observable
        :func:`compare_feature`), ``joints`` (per pair :func:`compare_joint`),
        ``classifier`` (:func:`~mlegpipe.metrics.classifier.classifier_auc`),
        ``mmd2`` (standardized observables, Gaussian σ = 1, 2000 events; with
        ``mmd2_floor``), ``memorization``, ``physicality`` and
        ``physicality_reference`` (:func:`mlegpipe.physicality.physicality`); a
        part that cannot be computed is absent and named in ``skipped`` with the reason.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> make = lambda: EventBatch.from_columns({"a": rng.normal(size=5000)})
        >>> out = compare_samples(make(), make(), make(), classifier=False)
        >>> 0.5 < out["features"]["a"]["chi2_ndf"] < 2.0
        True
    """
    if len(model) == 0 or len(reference) == 0:
        raise DataError(f"cannot compare empty samples ({len(model)} model, {len(reference)} reference events)")
    observables = observables or ObservableSet()
    beams = beams or reference.beams or model.beams
    model, reference = with_beams(model, beams), with_beams(reference, beams)
    reference2 = with_beams(reference2, beams) if reference2 is not None else None
    features = list(features) if features is not None else observables.default_names(model, reference)
    unavailable = [n for n in (observables.compare or []) if n not in features] if features is not None else []
    out: dict[str, Any] = {"n_model": len(model), "n_reference": len(reference),
                           "n_reference2": len(reference2) if reference2 is not None else None,
                           "feature_names": features, "features": {}, "joints": {}, "skipped": {}}
    if unavailable:
        out["skipped"]["observables"] = "not computable for both samples: " + ", ".join(unavailable)
    for name in features:
        out["features"][name] = compare_feature(name, model, reference, reference2, bins, observables)
    for pair in observables.default_pairs(features):
        try:
            out["joints"][pair.name] = compare_joint(pair, model, reference, reference2, observables=observables)
        except MlegpipeError as err:
            out["skipped"][f"joint {pair.name}"] = str(err)
    if physical:
        if applicable_checks(model, observables.registry) and applicable_checks(reference, observables.registry):
            try:
                out["physicality"] = physicality(model, beams, cuts, registry=observables.registry)
                out["physicality_reference"] = physicality(reference, beams, cuts, registry=observables.registry)
            except DataError as err:
                out["skipped"]["physicality"] = str(err)
        else:
            out["skipped"]["physicality"] = "no registered physicality check applies to these events"

    if features:
        m = np.stack([observables.values(model, n) for n in features], axis=1)
        r = np.stack([observables.values(reference, n) for n in features], axis=1)
        r2 = np.stack([observables.values(reference2, n) for n in features], axis=1) if reference2 is not None \
            else None
        sometimes = np.mean(~np.isfinite(r), axis=0) > _STRUCTURAL_NAN  # observables of absent particles
        if sometimes.any():
            m, r = _fill_undefined(m, sometimes), _fill_undefined(r, sometimes)
            r2 = _fill_undefined(r2, sometimes) if r2 is not None else None
        r = r[np.isfinite(r).all(1)]
        if classifier:
            out["classifier"] = classifier_auc(m, r, seed=seed, max_events=max_classifier_events)
        mean, std = r.mean(0), r.std(0)
        std = np.where(std > 0, std, 1.0)
        finite = np.isfinite(m).all(1)
        rng = np.random.default_rng(seed)
        out["mmd2"] = mmd2((m[finite] - mean) / std, (r - mean) / std, sigma=1.0, rng=rng)
        if r2 is not None:
            r2 = r2[np.isfinite(r2).all(1)]
            out["mmd2_floor"] = mmd2((r2 - mean) / std, (r - mean) / std, sigma=1.0, rng=rng)
        if training is not None:
            t = np.stack([observables.values(training, n) for n in features], axis=1)
            if sometimes.any():
                t = _fill_undefined(t, sometimes)
            out["memorization"] = memorization_ratio(m[finite], r2 if r2 is not None else r,
                                                     t[np.isfinite(t).all(1)], seed=seed)
        else:
            out["skipped"]["memorization"] = "no training events given"
    return out


def _fill_undefined(matrix: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Undefined values (NaN) of the given columns replaced by a far-away constant, so events keep them."""
    out = matrix.copy()
    out[:, columns] = np.where(np.isfinite(out[:, columns]), out[:, columns], _UNDEFINED)
    return out
