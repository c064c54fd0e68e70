"""What a run report contains: the metrics and figures computed from a run's samples.

:func:`analyse_run` is shared by the ``html`` report stage (from a live
:class:`~mlegpipe.stages.RunRecord`) and ``mlegpipe report`` (from the files
of a run folder), so both give the same page.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> rng = np.random.default_rng(0)
    >>> s = {n: EventBatch.from_columns({"a": rng.normal(size=3000)})
    ...      for n in ("truth_train", "truth_valid", "truth_test", "generated")}
    >>> result = analyse_run(s, classifier=False, plots=False)
    >>> sorted(result.metrics["comparisons"])
    ['generated']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import BEAM_ENERGY, EventBatch
from mlegpipe.exceptions import MlegpipeError
from mlegpipe.metrics.amplification import amplification_from_cells, equivalent_events
from mlegpipe.metrics.evaluate import add_lepton_observables, compare_samples, default_features
from mlegpipe.metrics.physicality import dis_variables
from mlegpipe.metrics.targets import evaluate_targets, summarize_targets

__all__ = ["RunAnalysis", "analyse_run", "comparison_plan", "learned_surrogates", "truth_setup"]

_VERTEX_SAMPLES = ("truth_test", "truth_valid", "truth_train")
MEASURED = "measured"  # the per-event flag of detector-level samples: the detector measured the event

log = logging.getLogger("mlegpipe.report")


@dataclass
class RunAnalysis:
    """Metrics (JSON-able), figures as PNG bytes by name, and the page sections listing figure names."""

    metrics: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)

    def add_section(self, title: str, names: list[str]) -> None:
        """Append a section of figures (skipped when empty)."""
        if names:
            self.sections.append((title, names))


def comparison_plan(names: list[str], surrogates: Sequence[str] = ()) -> list[dict[str, str | None]]:
    """Which model sample to compare with which truth sample, from the sample names of a run.

    Returns entries with ``label``, ``model``, ``reference``, ``reference2``
    (independent truth for floors) and ``training`` (for memorization); samples
    absent from the run are None. ``generated`` → ``truth_test`` (floor
    ``truth_valid``, training ``truth_train``); ``generated_detector`` →
    ``truth_test_detector``; ``unfolded`` (and the ``omnifold`` baseline) → the
    vertex truth of the unfolded detector data; ``refolded`` → that detector data.
    A learned surrogate section ``s`` (see :func:`learned_surrogates`) that folded
    the vertex sample ``v`` gives ``v_s``; it is compared with the ``detector``
    output of another, independent vertex sample, and the ``detector`` output
    of ``v`` itself gives the floor, so both χ² see independent vertex events.

    Example:
        >>> [p["label"] for p in comparison_plan(["truth_test", "truth_valid", "generated"])]
        ['generated']
        >>> names = ["truth_valid_detector", "truth_test_detector", "truth_test_flowfold"]
        >>> [(p["model"], p["reference"], p["reference2"]) for p in comparison_plan(names, ["flowfold"])]
        [('truth_test_flowfold', 'truth_valid_detector', 'truth_test_detector')]
    """
    have = set(names)

    def opt(name: str) -> str | None:
        return name if name in have else None

    plan: list[dict[str, str | None]] = []
    if "generated" in have and "truth_test" in have:
        plan.append({"label": "generated", "model": "generated", "reference": "truth_test",
                     "reference2": opt("truth_valid"), "training": opt("truth_train")})
    if "generated_detector" in have and "truth_test_detector" in have:
        plan.append({"label": "generated_detector", "model": "generated_detector",
                     "reference": "truth_test_detector", "reference2": opt("truth_valid_detector"),
                     "training": None})
    detector_data = next((n for n in ("truth_test_detector", "truth_valid_detector", "truth_train_detector")
                          if n in have), None)
    if detector_data is not None and detector_data.removesuffix("_detector") in have:
        truth = detector_data.removesuffix("_detector")
        for unfolded in ("unfolded", "omnifold"):
            if unfolded in have:
                plan.append({"label": unfolded, "model": unfolded, "reference": truth, "reference2": None,
                             "training": None})
    if "refolded" in have and detector_data is not None:
        plan.append({"label": "refolded", "model": "refolded", "reference": detector_data, "reference2": None,
                     "training": None})
    for section in surrogates:
        for vertex in _VERTEX_SAMPLES:
            same = f"{vertex}_detector"
            other = next((f"{v}_detector" for v in _VERTEX_SAMPLES if v != vertex and f"{v}_detector" in have), None)
            if f"{vertex}_{section}" in have and same in have and other is not None:
                plan.append({"label": f"{vertex}_{section}", "model": f"{vertex}_{section}", "reference": other,
                             "reference2": same, "training": None})
                break
    return plan


def _measured_fraction(batch: EventBatch) -> float | None:
    """Share of events flagged ``measured`` (None when the sample carries no such flag)."""
    if not batch.has(MEASURED) or len(batch) == 0:
        return None
    return float(np.mean(np.asarray(batch.column(MEASURED), dtype=bool)))


def _measured_only(batch: EventBatch) -> EventBatch:
    """The events a detector measured, where the sample flags them (``measured``); else all of them.

    Detector-level samples keep not-measured events index-aligned with the truth
    (zero-filled, as eic-smear does, or with the surrogate's unpassed values);
    distributions compare the measured ones, and the report gives the fractions.

    Example:
        >>> b = EventBatch.from_columns({"E": [1.0, 0.0, 3.0], MEASURED: [True, False, True]})
        >>> _measured_only(b).column("E").tolist(), _measured_fraction(b)
        ([1.0, 3.0], 0.6666666666666666)
    """
    if not batch.has(MEASURED):
        return batch
    return batch.take(np.asarray(batch.column(MEASURED), dtype=bool))


def learned_surrogates(stages: Mapping[str, Any]) -> list[str]:
    """Section names of a run's trainable detector stages (learned surrogates).

    Example:
        >>> learned_surrogates({})
        []
    """
    return [name for name, stage in stages.items()
            if getattr(stage, "kind", "") == "detector" and getattr(stage, "trainable", False)]


def truth_setup(stages: Mapping[str, Any]) -> dict[str, Any]:
    """From a run's stages: the first truth source's exact density, beams and Q², W² cuts (None when absent).

    Example:
        >>> truth_setup({})
        {'exact_density': None, 'beams': None, 'q2_min': None, 'w2_min': None}
    """
    out: dict[str, Any] = {"exact_density": None, "beams": None, "q2_min": None, "w2_min": None}
    for stage in stages.values():
        if getattr(stage, "kind", "") != "truth":
            continue
        params = getattr(stage, "params", None)
        out["q2_min"] = getattr(params, "q2_min", None)
        out["w2_min"] = getattr(params, "w2_min", None)
        try:
            out["exact_density"] = stage.exact_density()
            out["beams"] = stage.beams
        except (MlegpipeError, NotImplementedError):
            pass
        break
    return out


def _png(fig: Any, dpi: int) -> bytes:
    from mlegpipe.plots import png_bytes

    return png_bytes(fig, dpi)


def _safe_dis(batch: EventBatch, beams: Beams | None) -> dict[str, np.ndarray] | None:
    try:
        return dis_variables(batch, beams)
    except MlegpipeError:
        return None


def _replicas(batch: EventBatch, name: str) -> list[np.ndarray]:
    values = batch.column(name)
    if batch.has("replica"):
        rep = batch.column("replica")
        return [values[rep == r] for r in np.unique(rep)]
    return [values]


def _n_quantiles(dim: int, n_train: int) -> int:
    """Quantiles per coordinate: about two training events per cell (GANplifying's choice)."""
    return max(2, int(math.floor((max(n_train, 4) / 2.0) ** (1.0 / dim) + 1e-9)))


def analyse_run(
    samples: Mapping[str, EventBatch],
    *,
    histories: Mapping[str, Any] | None = None,
    beams: Beams | None = None,
    exact_density: Any = None,
    q2_min: float | None = None,
    w2_min: float | None = None,
    bins: int = 50,
    classifier: bool = True,
    max_classifier_events: int = 50_000,
    plots: bool = True,
    dpi: int = 90,
    seed: int = 0,
    surrogates: Sequence[str] = (),
) -> RunAnalysis:
    """Compute every metric and figure that the run's samples allow.

    Arguments:
        samples: the run's named samples (see :func:`comparison_plan`).
        histories: training histories by section name (plotted).
        beams: beam set-up (default: the samples' own).
        exact_density: a toy density with ``quantile_index``, ``n_cells`` and
            ``features`` (``TruthSource.exact_density()``) for the amplification factor.
        q2_min, w2_min: the truth cuts, checked by the physicality test.
        bins, classifier, max_classifier_events, seed: see :func:`~mlegpipe.metrics.compare_samples`.
        plots: draw figures (False: metrics only).
        dpi: PNG resolution.
        surrogates: section names of learned detector surrogates (:func:`learned_surrogates`): their
            folded samples are compared with the reference detector and drawn in its response plots.
    """
    out = RunAnalysis()
    out.metrics = {"comparisons": {}, "targets": {}, "skipped": {}}
    samples = {name: add_lepton_observables(batch) for name, batch in samples.items()}
    names = list(samples)
    for entry in comparison_plan(names, surrogates):
        label = str(entry["label"])
        model, ref = samples[str(entry["model"])], samples[str(entry["reference"])]
        ref2 = samples[str(entry["reference2"])] if entry["reference2"] else None
        train = samples[str(entry["training"])] if entry["training"] else None
        fractions = None
        if str(entry["reference"]).endswith("_detector"):  # compare what the detector measured
            fractions = {"model": _measured_fraction(model), "reference": _measured_fraction(ref)}
            model, ref = _measured_only(model), _measured_only(ref)
            ref2 = _measured_only(ref2) if ref2 is not None else None
        try:
            table = compare_samples(model, ref, ref2, beams=beams or ref.beams, training=train, q2_min=q2_min,
                                    w2_min=w2_min if label in ("generated", "unfolded", "omnifold") else None, bins=bins,
                                    classifier=classifier, max_classifier_events=max_classifier_events, seed=seed)
        except MlegpipeError as err:
            out.metrics["skipped"][label] = str(err)
            log.warning("report: %s not compared: %s", label, err)
            continue
        if label not in ("generated", "unfolded", "omnifold"):
            table.pop("physicality", None)  # detector-level events need not obey vertex-level limits
        if fractions is not None:
            table["measured_fraction"] = fractions
        table.update({"model_sample": entry["model"], "reference_sample": entry["reference"],
                      "reference2_sample": entry["reference2"], "training_sample": entry["training"]})
        out.metrics["comparisons"][label] = table
        out.metrics["targets"][label] = evaluate_targets(table)
        if plots:
            unfolding = label == "unfolded"
            _plot_comparison(out, label, model, ref, str(entry["reference"]), table["feature_names"],
                             beams or ref.beams, q2_min, dpi,
                             unfolding=unfolding,
                             detector=samples.get(str(entry["reference"]) + "_detector") if unfolding else None,
                             baselines={"OmniFold": samples["omnifold"]} if unfolding and "omnifold" in samples
                             else None)
    all_rows = [r for rows in out.metrics["targets"].values() for r in rows]
    out.metrics["summary"] = summarize_targets(all_rows)

    if "generated" in samples and "truth_train" in samples and exact_density is not None:
        _amplification(out, samples["generated"], samples["truth_train"], exact_density, plots, dpi)
    if "generated" in samples and "truth_test" in samples:
        _conditional(out, samples["generated"], samples["truth_test"], samples.get("truth_train"), bins, plots, dpi)
    if plots:
        _detector_response(out, samples, dpi, surrogates)
        _training(out, histories or {}, dpi)
    return out


def _plot_comparison(
    out: RunAnalysis,
    label: str,
    model: EventBatch,
    ref: EventBatch,
    reference: str,
    features: list[str],
    beams: Beams | None,
    q2_min: float | None,
    dpi: int,
    unfolding: bool = False,
    detector: EventBatch | None = None,
    baselines: Mapping[str, EventBatch] | None = None,
) -> None:
    from mlegpipe.plots import plot_distribution, plot_q2x, plot_unfolding

    names = []
    ref_label = "truth (detector level)" if reference.endswith("_detector") else "truth"
    for f in features:
        key = f"{label}__{f}"
        if unfolding:
            extra = {k: (b.column(f), b.weights) for k, b in (baselines or {}).items() if b.has(f)}
            fig = plot_unfolding(f, ref.column(f), detector.column(f) if detector is not None and detector.has(f)
                                 else None, _replicas(model, f), baselines=extra)
        else:
            fig = plot_distribution(f, ref.column(f), model.column(f), reference_weights=ref.weights,
                                    model_weights=model.weights, labels=(ref_label, label))
        out.figures[key] = _png(fig, dpi)
        names.append(key)
    dis_m, dis_r = _safe_dis(model, beams), _safe_dis(ref, beams)
    if dis_m is not None and dis_r is not None:
        key = f"{label}__q2x"
        out.figures[key] = _png(plot_q2x(dis_r["x"], dis_r["Q2"], dis_m["x"], dis_m["Q2"], beams=beams,
                                         q2_min=q2_min, labels=(ref_label, label)), dpi)
        names.append(key)
    out.add_section(f"{label} vs {ref_label}", names)


def _amplification(out: RunAnalysis, generated: EventBatch, train: EventBatch, toy: Any, plots: bool,
                   dpi: int) -> None:
    features = list(getattr(toy, "features", ()))
    if not features or not all(generated.has(f) for f in features):
        out.metrics["skipped"]["amplification"] = "generated events lack the toy density's features"
        return
    n_train = len(train)
    n_q = _n_quantiles(len(features), n_train)
    n_cells = int(toy.n_cells(n_q))
    cells = np.asarray(toy.quantile_index(generated.matrix(features), n_q), dtype=np.int64)
    result = amplification_from_cells(cells, n_cells, n_train)
    train_mse = float(toy.quantile_mse(train.matrix(features), n_q))
    result.update({"quantiles_per_coordinate": n_q, "train_mse": train_mse,
                   "train_equivalent_events": equivalent_events(train_mse, n_cells)})
    out.metrics["amplification"] = result
    if plots:
        from mlegpipe.plots import plot_amplification

        out.figures["amplification"] = _png(plot_amplification(result), dpi)
        out.add_section("Amplification (quantile MSE)", ["amplification"])


def _conditional(out: RunAnalysis, generated: EventBatch, truth: EventBatch, train: EventBatch | None, bins: int,
                 plots: bool, dpi: int) -> None:
    if not (generated.has(BEAM_ENERGY) and truth.has(BEAM_ENERGY)):
        return
    e_gen, e_ref = generated.column(BEAM_ENERGY), truth.column(BEAM_ENERGY)
    energies = np.unique(e_ref)
    if not 1 < energies.size <= 30:
        return
    trained = np.unique(train.column(BEAM_ENERGY)).tolist() if train is not None and train.has(BEAM_ENERGY) \
        else energies.tolist()
    from mlegpipe.plots import conditional_kl, plot_conditional

    features = [f for f in default_features(generated, truth) if f in ("lepton_E", "lepton_px", "lepton_py",
                                                                        "lepton_pz")] or \
        default_features(generated, truth)[:2]
    per_feature: dict[str, Any] = {}
    names = []
    for f in features:
        ref = {float(e): truth.column(f)[e_ref == e] for e in energies}
        mod = {float(e): generated.column(f)[e_gen == e] for e in energies if (e_gen == e).sum() > 1}
        kls = conditional_kl(ref, mod, trained, bins)
        per_feature[f] = {f"{e:g}": v for e, v in kls.items()}
        if plots and kls:
            key = f"conditional__{f}"
            out.figures[key] = _png(plot_conditional(f, ref, mod, trained, bins), dpi)
            names.append(key)
    out.metrics["conditional_kl"] = per_feature
    out.add_section("Per beam energy (trained / interpolated / extrapolated)", names)


def _detector_response(out: RunAnalysis, samples: Mapping[str, EventBatch], dpi: int,
                       surrogates: Sequence[str] = ()) -> None:
    from mlegpipe.plots import plot_resolution

    for vertex_name in _VERTEX_SAMPLES:
        det_name = f"{vertex_name}_detector"
        if vertex_name in samples and det_name in samples and len(samples[vertex_name]) == len(samples[det_name]):
            vertex, det = samples[vertex_name], samples[det_name]
            learned = {s: samples[f"{vertex_name}_{s}"] for s in surrogates
                       if len(samples.get(f"{vertex_name}_{s}", ())) == len(vertex)}
            names = []
            for f in default_features(det, vertex):
                key = f"detector__{f}"
                folded = {s: b.column(f) for s, b in learned.items() if b.has(f)}
                out.figures[key] = _png(plot_resolution(f, vertex.column(f), det.column(f), surrogate=folded), dpi)
                names.append(key)
            extra = f"; learned surrogates: {', '.join(learned)}" if learned else ""
            out.add_section(f"Detector response ({vertex_name} → {det_name}{extra})", names)
            return


def _training(out: RunAnalysis, histories: Mapping[str, Any], dpi: int) -> None:
    from mlegpipe.plots import history_columns, plot_history

    names = []
    for section, history in histories.items():
        if history_columns(history):
            key = f"training__{section}"
            out.figures[key] = _png(plot_history(history, title=section), dpi)
            names.append(key)
    out.add_section("Training", names)
