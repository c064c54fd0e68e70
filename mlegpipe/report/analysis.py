"""What a run report contains: the metrics and figures computed from a run's samples.

:func:`analyse_run` is shared by the ``html`` report stage (from a live
:class:`~mlegpipe.stages.RunRecord`) and ``mlegpipe report`` (from the files
of a run folder), so both give the same page. What is compared with what
comes from the pipeline's plan (:func:`mlegpipe.plan.plan_report`): every
generated, folded and unfolded sample against its own reference, on the
pipeline's observables (:class:`~mlegpipe.observables.ObservableSet`), with 2D
maps of its pairs.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.plan import ReportPlan
    >>> rng = np.random.default_rng(0)
    >>> s = {n: EventBatch.from_columns({"a": rng.normal(size=3000)})
    ...      for n in ("truth_train", "truth_valid", "truth_test", "generated")}
    >>> result = analyse_run(s, ReportPlan.generated("generated"), classifier=False, plots=False)
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
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import MlegpipeError
from mlegpipe.metrics.amplification import amplification_from_cells, equivalent_events
from mlegpipe.metrics.evaluate import compare_samples, pair_values, with_beams
from mlegpipe.metrics.targets import evaluate_targets, summarize_targets
from mlegpipe.observables import ObservableSet
from mlegpipe.plan import Comparison, ReportPlan

__all__ = ["RunAnalysis", "analyse_run", "truth_setups"]

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


def truth_setups(stages: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per truth section of a run's stages: its beams, generation cuts and exact density (toys; None otherwise).

    Example:
        >>> truth_setups({})
        {}
    """
    out: dict[str, dict[str, Any]] = {}
    for section, stage in stages.items():
        if getattr(stage, "kind", "") != "truth":
            continue
        setup: dict[str, Any] = {"beams": None, "cuts": {}, "exact_density": None}
        try:
            setup["cuts"] = dict(stage.cuts())
            setup["exact_density"] = stage.exact_density()
            setup["beams"] = stage.beams
        except (MlegpipeError, NotImplementedError):
            pass
        out[section] = setup
    return out


def _png(fig: Any, dpi: int) -> bytes:
    from mlegpipe.plots import png_bytes

    return png_bytes(fig, dpi)


def _replicas(values: np.ndarray, batch: EventBatch) -> list[np.ndarray]:
    if batch.has("replica"):
        rep = batch.column("replica")
        return [values[rep == r] for r in np.unique(rep)]
    return [values]


def _n_quantiles(dim: int, n_train: int) -> int:
    """Quantiles per coordinate: about two training events per cell (GANplifying's choice)."""
    return max(2, int(math.floor((max(n_train, 4) / 2.0) ** (1.0 / dim) + 1e-9)))


def analyse_run(
    samples: Mapping[str, EventBatch],
    plan: ReportPlan,
    *,
    histories: Mapping[str, Any] | None = None,
    observables: ObservableSet | None = None,
    truths: Mapping[str, Mapping[str, Any]] | None = None,
    conditions: Mapping[str, Sequence[str]] | None = None,
    beams: Beams | None = None,
    bins: int = 50,
    classifier: bool = True,
    max_classifier_events: int = 50_000,
    plots: bool = True,
    dpi: int = 90,
    seed: int = 0,
) -> RunAnalysis:
    """Compute every metric and figure of the run's planned comparisons.

    Arguments:
        samples: the run's named samples.
        plan: what to compare with what (:func:`mlegpipe.plan.plan_report`, or :meth:`ReportPlan.generated`).
        histories: training histories by section name (plotted).
        observables: the pipeline's observables (default: the registered ones).
        truths: per truth section, ``beams``, ``cuts`` and ``exact_density`` (:func:`truth_setups`): the
            cuts are enforced by the physicality checks, a toy's exact density gives the amplification factor.
        conditions: per generated sample, the fields its generator is conditioned on (distributions per value).
        beams: beam set-up for every comparison (default: the truth section's, else the reference's).
        bins, classifier, max_classifier_events, seed: see :func:`~mlegpipe.metrics.compare_samples`.
        plots: draw figures (False: metrics only).
        dpi: PNG resolution.
    """
    out = RunAnalysis()
    out.metrics = {"comparisons": {}, "targets": {}, "skipped": {}}
    observables = observables or ObservableSet()
    truths = truths or {}
    for entry in plan.comparisons:
        label = entry.label
        needed = [n for n in (entry.model, entry.reference, entry.reference2, entry.training) if n]
        missing = [n for n in needed if n not in samples]
        if missing:
            if not (entry.optional and entry.model in missing):
                out.metrics["skipped"][label] = "samples not in the run: " + ", ".join(missing)
                log.warning("report: %s not compared: samples not in the run: %s", label, ", ".join(missing))
            continue
        model, ref = samples[entry.model], samples[entry.reference]
        ref2 = samples[entry.reference2] if entry.reference2 else None
        train = samples[entry.training] if entry.training else None
        truth = truths.get(entry.truth_section or "", {})
        fractions = None
        if entry.level == "detector":  # compare what the detector measured
            fractions = {"model": _measured_fraction(model), "reference": _measured_fraction(ref)}
            model, ref = _measured_only(model), _measured_only(ref)
            ref2 = _measured_only(ref2) if ref2 is not None else None
        seen_beams = beams or truth.get("beams") or ref.beams
        try:
            table = compare_samples(model, ref, ref2, beams=seen_beams, training=train,
                                    cuts=truth.get("cuts") if entry.level == "vertex" else None,
                                    observables=observables, physical=entry.level == "vertex", bins=bins,
                                    classifier=classifier, max_classifier_events=max_classifier_events, seed=seed)
        except MlegpipeError as err:
            out.metrics["skipped"][label] = str(err)
            log.warning("report: %s not compared: %s", label, err)
            continue
        if fractions is not None:
            table["measured_fraction"] = fractions
        table.update({"model_sample": entry.model, "reference_sample": entry.reference,
                      "reference2_sample": entry.reference2, "training_sample": entry.training})
        out.metrics["comparisons"][label] = table
        out.metrics["targets"][label] = evaluate_targets(table)
        if plots:
            _plot_comparison(out, entry, with_beams(model, seen_beams), with_beams(ref, seen_beams), table,
                             observables, truth.get("cuts"), dpi, samples)
        if entry.kind == "generator":
            toy = truth.get("exact_density")
            if toy is not None and train is not None:
                _amplification(out, label, model, train, toy, plots, dpi)
            for name in (conditions or {}).get(label, ()):
                _conditional(out, label, name, model, ref, train, table["feature_names"][:4], observables, bins,
                             plots, dpi)
    all_rows = [r for rows in out.metrics["targets"].values() for r in rows]
    out.metrics["summary"] = summarize_targets(all_rows)
    if plots:
        _detector_response(out, samples, plan, observables, dpi)
        _training(out, histories or {}, dpi)
    return out


def _plot_comparison(
    out: RunAnalysis,
    entry: Comparison,
    model: EventBatch,
    ref: EventBatch,
    table: Mapping[str, Any],
    observables: ObservableSet,
    cuts: Mapping[str, Any] | None,
    dpi: int,
    samples: Mapping[str, EventBatch],
) -> None:
    from mlegpipe.plots import plot_distribution, plot_pair, plot_unfolding

    label = entry.label
    names = []
    ref_label = "truth (detector level)" if entry.level == "detector" else "truth"
    data = samples.get(entry.data) if entry.data else None
    baselines = {b: samples[b] for b in entry.baselines if b in samples}
    for f in table["feature_names"]:
        key = f"{label}__{f}"
        observable = observables.get(f)
        if entry.kind == "unfolding" and entry.level == "vertex" and label not in entry.baselines:
            extra = {name: (observable(b), b.weights) for name, b in baselines.items() if observable.available(b)}
            detector = observable(data) if data is not None and observable.available(data) else None
            replicas = _replicas(observable(model), model)
            fig = plot_unfolding(f, observable(ref), detector, replicas,
                                 baselines={("OmniFold" if "omnifold" in k else k): v for k, v in extra.items()},
                                 unfolded_weights=model.weights if len(replicas) == 1 else None)
        else:
            fig = plot_distribution(f, observable(ref), observable(model), reference_weights=ref.weights,
                                    model_weights=model.weights, labels=(ref_label, label), observable=observable)
        out.figures[key] = _png(fig, dpi)
        names.append(key)
    pairs = {p.name: p for p in observables.default_pairs(table["feature_names"])}
    for pair_name in table.get("joints", {}):
        pair = pairs.get(pair_name)
        if pair is None:
            continue
        try:
            fig = plot_pair(pair, pair_values(pair, ref, observables), pair_values(pair, model, observables),
                            beams=ref.beams, cuts=cuts, labels=(ref_label, label))
        except MlegpipeError as err:
            out.metrics["skipped"][f"{label} {pair_name} map"] = str(err)
            continue
        key = f"{label}__pair__{pair.x}__{pair.y}"
        out.figures[key] = _png(fig, dpi)
        names.append(key)
    out.add_section(f"{label} vs {ref_label}", names)


def _amplification(out: RunAnalysis, label: str, generated: EventBatch, train: EventBatch, toy: Any, plots: bool,
                   dpi: int) -> None:
    features = list(getattr(toy, "features", ()))
    if not features or not all(generated.has(f) for f in features):
        out.metrics["skipped"][f"amplification {label}"] = "generated events lack the toy density's features"
        return
    n_train = len(train)
    n_q = _n_quantiles(len(features), n_train)
    n_cells = int(toy.n_cells(n_q))
    cells = np.asarray(toy.quantile_index(generated.matrix(features), n_q), dtype=np.int64)
    result = amplification_from_cells(cells, n_cells, n_train)
    train_mse = float(toy.quantile_mse(train.matrix(features), n_q))
    result.update({"quantiles_per_coordinate": n_q, "train_mse": train_mse,
                   "train_equivalent_events": equivalent_events(train_mse, n_cells)})
    key = "amplification" if "amplification" not in out.metrics else f"amplification__{label}"
    out.metrics[key] = {**result, "sample": label}
    if plots:
        from mlegpipe.plots import plot_amplification

        out.figures[key] = _png(plot_amplification(result), dpi)
        out.add_section(f"Amplification (quantile MSE) of {label}", [key])


def _conditional(out: RunAnalysis, label: str, condition: str, generated: EventBatch, truth: EventBatch,
                 train: EventBatch | None, features: Sequence[str], observables: ObservableSet, bins: int,
                 plots: bool, dpi: int) -> None:
    """Distributions and KL per value of a condition with a few values (trained / interpolated / extrapolated)."""
    if not (generated.has(condition) and truth.has(condition)):
        return
    c_gen, c_ref = generated.column(condition), truth.column(condition)
    values = np.unique(c_ref)
    if not 1 < values.size <= 30:
        return
    trained = np.unique(train.column(condition)).tolist() if train is not None and train.has(condition) \
        else values.tolist()
    from mlegpipe.plots import conditional_kl, plot_conditional

    per_feature: dict[str, Any] = {}
    names = []
    for f in features:
        ref_values, gen_values = observables.values(truth, f), observables.values(generated, f)
        ref = {float(e): ref_values[c_ref == e] for e in values}
        mod = {float(e): gen_values[c_gen == e] for e in values if (c_gen == e).sum() > 1}
        kls = conditional_kl(ref, mod, trained, bins)
        per_feature[f] = {f"{e:g}": v for e, v in kls.items()}
        if plots and kls:
            key = f"conditional__{f}" if label == "generated" else f"conditional__{label}__{f}"
            out.figures[key] = _png(plot_conditional(f, ref, mod, trained, bins), dpi)
            names.append(key)
    key = "conditional_kl" if "conditional_kl" not in out.metrics else f"conditional_kl__{label}"
    out.metrics[key] = per_feature
    out.add_section(f"{label} per {condition} (trained / interpolated / extrapolated)", names)


def _detector_response(out: RunAnalysis, samples: Mapping[str, EventBatch], plan: ReportPlan,
                       observables: ObservableSet, dpi: int) -> None:
    from mlegpipe.plots import plot_resolution

    for response in plan.responses:
        vertex, det = samples.get(response.vertex), samples.get(response.detector)
        if vertex is None or det is None or len(vertex) != len(det):
            continue
        learned = {s: samples[name] for s, name in response.surrogates.items()
                   if name in samples and len(samples[name]) == len(vertex)}
        names = []
        for f in observables.default_names(det, vertex):
            key = f"detector__{f}"
            obs = observables.get(f)
            folded = {s: obs(b) for s, b in learned.items() if obs.available(b)}
            out.figures[key] = _png(plot_resolution(f, obs(vertex), obs(det), surrogate=folded), dpi)
            names.append(key)
        extra = f"; learned surrogates: {', '.join(learned)}" if learned else ""
        out.add_section(f"Detector response ({response.vertex} → {response.detector}{extra})", names)
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
