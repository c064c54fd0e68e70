"""The standard comparison table of a model sample against a reference (truth) sample.

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

from collections.abc import Sequence
from typing import Any

import awkward as ak
import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import BEAM_ENERGY, DIS_LABELS, LEPTON_FIELDS, WEIGHT, EventBatch
from mlegpipe.exceptions import DataError
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
from mlegpipe.metrics.histograms import LOG_FEATURES, edges_for, histogram, histogram2d, log_edges
from mlegpipe.metrics.memorization import memorization_ratio
from mlegpipe.metrics.physicality import dis_variables, physicality

__all__ = [
    "LEPTON_OBSERVABLES",
    "THESIS_Q2X_BINS",
    "add_lepton_observables",
    "compare_feature",
    "compare_joint_q2x",
    "compare_samples",
    "default_features",
]

#: The thesis's joint Q²–x binning: 49 × 49 log bins, x in [1e-3, 1], Q² in [1, 1e3] GeV².
THESIS_Q2X_BINS: dict[str, tuple[float, float, int]] = {"x": (1e-3, 1.0, 49), "Q2": (1.0, 1e3, 49)}


#: Derived scattered-lepton observables: p_T, polar angle θ from the +z axis, azimuth φ (rad).
LEPTON_OBSERVABLES: tuple[str, ...] = ("lepton_pt", "lepton_theta", "lepton_phi")


def add_lepton_observables(batch: EventBatch) -> EventBatch:
    """The batch with p_T = √(p_x² + p_y²), θ = atan2(p_T, p_z), φ = atan2(p_y, p_x) of the lepton added.

    Returned unchanged when the lepton fields are missing or the observables are there already.

    Example:
        >>> b = EventBatch.from_columns({"lepton_E": [5.0], "lepton_px": [3.0], "lepton_py": [0.0], "lepton_pz": [4.0]})
        >>> round(float(add_lepton_observables(b).column("lepton_theta")[0]), 4)
        0.6435
    """
    if not all(batch.has(f) for f in LEPTON_FIELDS) or all(batch.has(f) for f in LEPTON_OBSERVABLES):
        return batch
    px, py, pz = batch.column("lepton_px"), batch.column("lepton_py"), batch.column("lepton_pz")
    pt = np.hypot(px, py)
    return batch.with_columns(lepton_pt=pt, lepton_theta=np.arctan2(pt, pz), lepton_phi=np.arctan2(py, px))


def _flat_numeric(batch: EventBatch) -> list[str]:
    names = []
    for name in batch.fields:
        content = ak.type(batch.arrays[name]).content
        if isinstance(content, ak.types.NumpyType):
            names.append(name)
    return names


def default_features(model: EventBatch, reference: EventBatch) -> list[str]:
    """Features to compare: the lepton fields, lepton observables and DIS labels both samples have,
    else every shared flat field.

    ``weight`` and ``beam_energy`` are never features.

    Example:
        >>> b = EventBatch.from_columns({"x": [0.1], "weight": [1.0], "lepton_E": [5.0]})
        >>> default_features(b, b)
        ['lepton_E', 'x']
    """
    shared = [n for n in _flat_numeric(model) if reference.has(n) and n not in (WEIGHT, BEAM_ENERGY)]
    physics = [n for n in (*LEPTON_FIELDS, *LEPTON_OBSERVABLES, *DIS_LABELS) if n in shared]
    return physics or shared


def _binned(values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = histogram(values, edges, weights)
    return h.values(), h.variances()


def compare_feature(
    name: str,
    model: EventBatch,
    reference: EventBatch,
    reference2: EventBatch | None = None,
    bins: int = 50,
) -> dict[str, Any]:
    """1D figures of one feature: χ²/ndf, KL, triangular discriminator, W1, each with its truth-vs-truth floor.

    Bins: ``bins`` equal-width bins (log10 for x, Q², W², ν) between the
    0.05 % and 99.95 % quantiles of the reference and model samples. Floors compare
    ``reference2`` (an independent truth sample) with ``reference``.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> a = EventBatch.from_columns({"a": rng.normal(size=4000)})
        >>> b = EventBatch.from_columns({"a": rng.normal(size=4000) + 5})
        >>> compare_feature("a", b, a)["chi2_ndf"] > 100
        True
    """
    ref_values, mod_values = reference.column(name), model.column(name)
    samples = [ref_values] + ([reference2.column(name)] if reference2 is not None else [])
    log = name in LOG_FEATURES and all(np.nanmin(s) > 0 for s in samples)
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
        r2_values = reference2.column(name)
        r2_c, r2_v = _binned(r2_values, reference2.weights, edges)
        out["chi2_ndf_floor"] = chi2_ndf(r2_c, r2_v, ref_c, ref_v)[0]
        out["kl_floor"] = kl_divergence(ref_c, r2_c)
        out["triangular_floor"] = triangular_discriminator(r2_c, ref_c)
        r2_ok = np.isfinite(r2_values)
        out["w1_floor"] = wasserstein1(r2_values[r2_ok], ref_sorted, reference2.weights[r2_ok])
    return out


def compare_joint_q2x(
    model: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    reference2: dict[str, np.ndarray] | None = None,
    weights: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
    bins: int = 20,
) -> dict[str, Any]:
    """Joint Q²–x figures: χ²/ndf on ``bins`` × ``bins`` log bins over the samples' range, and the thesis χ².

    The thesis form (:func:`~mlegpipe.metrics.distances.thesis_chi2`) uses the
    fixed 49 × 49 log bins of :data:`THESIS_Q2X_BINS`; sample sizes are
    returned beside it because it scales with them.

    Example:
        >>> rng = np.random.default_rng(2)
        >>> s = lambda: {"x": 10 ** rng.uniform(-3, 0, 4000), "Q2": 10 ** rng.uniform(0, 3, 4000)}
        >>> round(compare_joint_q2x(s(), s(), bins=5)["chi2_ndf"], 0)
        1.0
    """
    w_mod, w_ref, w_ref2 = weights or (None, None, None)

    def positive(d: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [d["x"][d["x"] > 0], d["Q2"][d["Q2"] > 0]]

    refs = [reference] + ([reference2] if reference2 is not None else [])
    x_edges = edges_for([positive(r)[0] for r in [*refs, model]], bins=bins, log=True)
    q_edges = edges_for([positive(r)[1] for r in [*refs, model]], bins=bins, log=True)
    th_x, th_q = log_edges(*THESIS_Q2X_BINS["x"]), log_edges(*THESIS_Q2X_BINS["Q2"])

    def hists(d: dict[str, np.ndarray], w: np.ndarray | None) -> tuple[Any, Any]:
        return histogram2d(d["x"], d["Q2"], x_edges, q_edges, w), histogram2d(d["x"], d["Q2"], th_x, th_q, w)

    mod_h, mod_t = hists(model, w_mod)
    ref_h, ref_t = hists(reference, w_ref)
    chi, ndf = chi2_ndf(mod_h.values(), mod_h.variances(), ref_h.values(), ref_h.variances())
    out: dict[str, Any] = {"bins": [bins, bins], "chi2_ndf": chi, "ndf": ndf,
                           "thesis_chi2": thesis_chi2(mod_t.values(), ref_t.values()),
                           "thesis_bins": [49, 49], "n_model": int(len(model["x"])),
                           "n_reference": int(len(reference["x"]))}
    if reference2 is not None:
        r2_h, r2_t = hists(reference2, w_ref2)
        out["chi2_ndf_floor"] = chi2_ndf(r2_h.values(), r2_h.variances(), ref_h.values(), ref_h.variances())[0]
        out["thesis_chi2_floor"] = thesis_chi2(r2_t.values(), ref_t.values())
        out["n_reference2"] = int(len(reference2["x"]))
    return out


def compare_samples(
    model: EventBatch,
    reference: EventBatch,
    reference2: EventBatch | None = None,
    features: Sequence[str] | None = None,
    beams: Beams | None = None,
    *,
    training: EventBatch | None = None,
    q2_min: float | None = None,
    w2_min: float | None = None,
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
        features: flat fields to compare (default :func:`default_features`).
        beams: beam set-up for x, Q² from the lepton and for physicality
            (default: the reference's beams).
        training: the generator's training events, for the memorization test.
        q2_min, w2_min: generation cuts checked by the physicality test.
        bins: 1D bins per feature.
        classifier: run the classifier two-sample test (AUC).
        max_classifier_events: events per sample for the classifier.
        seed: seed of the subsampling in the classifier, MMD and memorization tests.

    Returns:
        JSON-able dict: ``n_model``, ``n_reference``, ``features`` (per feature
        :func:`compare_feature`), ``joint_q2x`` (:func:`compare_joint_q2x`),
        ``classifier`` (:func:`~mlegpipe.metrics.classifier.classifier_auc`),
        ``mmd2`` (standardized features, Gaussian σ = 1, 2000 events; with
        ``mmd2_floor``), ``memorization``, ``physicality`` and
        ``physicality_reference``; a part that cannot be computed is
        absent and named in ``skipped`` with the reason.
    """
    if len(model) == 0 or len(reference) == 0:
        raise DataError(f"cannot compare empty samples ({len(model)} model, {len(reference)} reference events)")
    features = list(features) if features is not None else default_features(model, reference)
    beams = beams or reference.beams or model.beams
    out: dict[str, Any] = {"n_model": len(model), "n_reference": len(reference),
                           "n_reference2": len(reference2) if reference2 is not None else None,
                           "feature_names": features, "features": {}, "skipped": {}}
    for name in features:
        out["features"][name] = compare_feature(name, model, reference, reference2, bins)

    try:
        dis_mod, dis_ref = dis_variables(model, beams), dis_variables(reference, beams)
        dis_ref2 = dis_variables(reference2, beams) if reference2 is not None else None
        weights = (model.weights, reference.weights, reference2.weights if reference2 is not None else None)
        out["joint_q2x"] = compare_joint_q2x(dis_mod, dis_ref, dis_ref2, weights)
        out["physicality"] = physicality(model, beams, q2_min, w2_min)
        out["physicality_reference"] = physicality(reference, beams, q2_min, w2_min)
    except DataError as err:
        out["skipped"]["joint_q2x"] = out["skipped"]["physicality"] = str(err)

    if features:
        m, r = model.matrix(features), reference.matrix(features)
        r = r[np.isfinite(r).all(1)]
        if classifier:
            out["classifier"] = classifier_auc(m, r, seed=seed, max_events=max_classifier_events)
        mean, std = r.mean(0), r.std(0)
        std = np.where(std > 0, std, 1.0)
        finite = np.isfinite(m).all(1)
        rng = np.random.default_rng(seed)
        out["mmd2"] = mmd2((m[finite] - mean) / std, (r - mean) / std, sigma=1.0, rng=rng)
        r2 = None
        if reference2 is not None:
            r2 = reference2.matrix(features)
            r2 = r2[np.isfinite(r2).all(1)]
            out["mmd2_floor"] = mmd2((r2 - mean) / std, (r - mean) / std, sigma=1.0, rng=rng)
        if training is not None:
            t = training.matrix(features)
            out["memorization"] = memorization_ratio(m[finite], r2 if r2 is not None else r,
                                                     t[np.isfinite(t).all(1)], seed=seed)
        else:
            out["skipped"]["memorization"] = "no training events given"
    return out
