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

import html
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, MlegpipeError
from mlegpipe.metrics.amplification import amplification_from_cells, equivalent_events
from mlegpipe.metrics.evaluate import compare_samples, pair_values, with_beams
from mlegpipe.metrics.targets import evaluate_targets, summarize_targets
from mlegpipe.observables import ObservableSet
from mlegpipe.plan import Comparison, ReportPlan
from mlegpipe.provenance import EVENT_NUMBER, cross_section
from mlegpipe.report.text import math_html

__all__ = ["LOWER_PANELS", "RunAnalysis", "analyse_run", "truth_cross_section", "truth_setups"]

_CONDITIONAL_FEATURES = 12  # observables drawn per value of a condition (a figure each, a panel per value)

#: The lower panels of the 1D comparison plots (the html report's ``lower_panel``).
LOWER_PANELS: tuple[str, ...] = ("pull", "ratio", "both")

MEASURED = "measured"  # the per-event flag of detector-level samples: the detector measured the event

log = logging.getLogger("mlegpipe.report")


@dataclass
class RunAnalysis:
    """Metrics (JSON-able), figures as PNG (and PDF) bytes by name, and the page sections listing figure names.

    The figures' captions (HTML) are ``metrics["captions"]`` and the beam/process label drawn on them
    ``metrics["run_label"]``, so that a page rebuilt from ``metrics.json`` has them too.
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    pdfs: dict[str, bytes] = field(default_factory=dict)

    def add_section(self, title: str, names: list[str]) -> None:
        """Append a section of figures (skipped when empty)."""
        if names:
            self.sections.append((title, names))

    @property
    def captions(self) -> dict[str, str]:
        """Figure name → caption (HTML), kept in ``metrics["captions"]``."""
        return self.metrics.setdefault("captions", {})


@dataclass
class _Drawing:
    """How figures are rendered: PNG resolution, PDF beside, the label written on them, the lower panel."""

    dpi: int = 90
    pdf: bool = True
    label: str = ""
    lower_panel: str = "pull"

    def add(self, out: RunAnalysis, key: str, fig: Any, caption: str, label: str | None = None) -> None:
        """Label the figure, render it as PNG (and PDF) into ``out`` under ``key`` with its caption."""
        from mlegpipe.plots import label_figure, pdf_bytes, png_bytes

        label = self.label if label is None else label
        label_figure(fig, label)
        out.figures[key] = png_bytes(fig, self.dpi)
        if self.pdf:
            fig.set_layout_engine("none")  # the layout the PNG drew is kept: not computed twice (half the time)
            out.pdfs[key] = pdf_bytes(fig)
        out.captions[key] = caption + (f" · {math_html(label)}" if label else "")


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


def _without_event_number(batch: EventBatch) -> EventBatch:
    """The batch without its ``event_number`` field (an index written by the event files, not an observable).

    Example:
        >>> _without_event_number(EventBatch.from_columns({EVENT_NUMBER: [0, 1], "x": [1.0, 2.0]})).fields
        ['x']
    """
    if EVENT_NUMBER not in batch.fields:
        return batch
    return batch.select([f for f in batch.fields if f != EVENT_NUMBER])


def _process(*batches: EventBatch | None) -> str | None:
    """The ``process`` a truth source recorded in its events' metadata (Pythia's ``ttbar-semilep``), or None."""
    for batch in batches:
        process = batch.meta.get("process") if batch is not None else None
        if isinstance(process, str) and process:
            return process
    return None


def _run_beams(samples: Mapping[str, EventBatch], truths: Mapping[str, Mapping[str, Any]],
               beams: Beams | None) -> Beams | None:
    """The run's beams: given, else the first truth section's, else the first sample's that has some."""
    if beams is not None:
        return beams
    for truth in truths.values():
        if truth.get("beams") is not None:
            return truth["beams"]
    return next((b.beams for b in samples.values() if b.beams is not None), None)


def _events(n: int) -> str:
    return f"{n:,} events"


def _sample(text: str, name: str | None, batch: EventBatch | None = None) -> str:
    """``truth (truth_test, 1,000 events)``-style names of a sample in a caption (HTML)."""
    detail = [html.escape(name)] if name and name != text else []
    if batch is not None:
        detail.append(_events(len(batch)))
    return html.escape(text) + (f" ({', '.join(detail)})" if detail else "")


def _observable(observables: ObservableSet, name: str) -> str:
    """Caption head naming an observable: its axis label and unit (HTML), and its name when that differs."""
    try:
        label = observables.get(name).axis_label
    except MlegpipeError:
        label = name
    text = math_html(label)
    return f"<b>{text}</b>" + ("" if label == name else f" <code>{html.escape(name)}</code>")


def truth_cross_section(
    samples: Mapping[str, EventBatch],
    plan: ReportPlan | None = None,
    stage_metrics: Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
) -> dict[str, Any] | None:
    """σ and its error (pb) of the run's truth sample, and where they were read; None when nowhere.

    Looked up in the truth test sample's file in ``run_dir`` (its provenance), the sample's metadata, then
    the truth stage's figures in ``stage_metrics`` (``metrics.json``), for each truth sample the plan
    compares generated events with (default ``truth_test`` of section ``truth``).

    Example:
        >>> b = EventBatch.from_columns({"x": [1.0]}, meta={"cross_section_pb": 2.0, "cross_section_error_pb": 0.1})
        >>> truth_cross_section({"truth_test": b})
        {'value': 2.0, 'error': 0.1, 'sample': 'truth_test', 'source': 'truth_test metadata'}
        >>> truth_cross_section({}, stage_metrics={"truth": {"sigma_pb": 5.0}})["source"]
        '[truth] stage figures'
    """
    entries = [c for c in (plan.comparisons if plan else []) if c.kind in ("generator", "") and c.level == "vertex"]
    names = list(dict.fromkeys([*(c.reference for c in entries), "truth_test"]))
    sections = list(dict.fromkeys([*(c.truth_section for c in entries if c.truth_section), "truth"]))
    found: tuple[float, float] | None = None
    for name in names:
        path = Path(run_dir) / f"{name}.root" if run_dir is not None else None
        if path is not None and path.is_file():
            from mlegpipe.rootio import read_meta

            try:
                found = cross_section(read_meta(path))
            except MlegpipeError:
                found = None
            if found is not None:
                return {"value": found[0], "error": found[1], "sample": name, "source": path.name}
        if name in samples and (found := cross_section(samples[name].meta)) is not None:
            return {"value": found[0], "error": found[1], "sample": name, "source": f"{name} metadata"}
    for section in sections:
        info = (stage_metrics or {}).get(section)
        if isinstance(info, Mapping) and (found := cross_section(info)) is not None:
            return {"value": found[0], "error": found[1], "sample": names[0], "source": f"[{section}] stage figures"}
    return None


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
    lower_panel: Literal["pull", "ratio", "both"] = "pull",
    pdf: bool = True,
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
        lower_panel: below the 1D distributions: ``pull``, ``ratio`` (with the reference's statistical band)
            or ``both``.
        pdf: render every figure as PDF too (``RunAnalysis.pdfs``).

    Every figure carries the beams and process (:func:`mlegpipe.plots.run_label`) and gets a caption naming
    the observable and the samples compared.
    """
    if lower_panel not in LOWER_PANELS:
        raise ConfigError(f"choose {', '.join(LOWER_PANELS)}", path="lower_panel", value=lower_panel)
    samples = {name: _without_event_number(batch) for name, batch in samples.items()}
    out = RunAnalysis()
    out.metrics = {"comparisons": {}, "targets": {}, "skipped": {}, "captions": {}}
    observables = observables or ObservableSet()
    truths = truths or {}
    from mlegpipe.plots import run_label

    truth_names = [c.reference for c in plan.comparisons if c.level == "vertex"] + ["truth_test"]
    run_process = _process(*(samples.get(n) for n in truth_names), *samples.values())
    draw = _Drawing(dpi, pdf, run_label(_run_beams(samples, truths, beams), run_process), lower_panel)
    out.metrics["run_label"] = draw.label
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
            label_here = run_label(seen_beams, _process(ref, model) or run_process)
            _plot_comparison(out, entry, with_beams(model, seen_beams), with_beams(ref, seen_beams), table,
                             observables, truth.get("cuts"), draw, samples, label_here)
        if entry.kind == "generator":
            toy = truth.get("exact_density")
            if toy is not None and train is not None:
                _amplification(out, label, model, train, toy, plots, draw)
            for name in (conditions or {}).get(label, ()):
                _conditional(out, entry, name, model, ref, train, table["feature_names"][:_CONDITIONAL_FEATURES],
                             observables, bins, plots, draw)
    all_rows = [r for rows in out.metrics["targets"].values() for r in rows]
    out.metrics["summary"] = summarize_targets(all_rows)
    if plots:
        _detector_response(out, samples, plan, observables, draw)
        _training(out, histories or {}, draw)
    return out


def _plot_comparison(
    out: RunAnalysis,
    entry: Comparison,
    model: EventBatch,
    ref: EventBatch,
    table: Mapping[str, Any],
    observables: ObservableSet,
    cuts: Mapping[str, Any] | None,
    draw: _Drawing,
    samples: Mapping[str, EventBatch],
    run_label: str,
) -> None:
    from mlegpipe.plots import plot_distribution, plot_pair, plot_unfolding

    label = entry.label
    names = []
    ref_label = "truth (detector level)" if entry.level == "detector" else "truth"
    data = samples.get(entry.data) if entry.data else None
    baselines = {b: samples[b] for b in entry.baselines if b in samples}
    model_text, ref_text = _sample(label, entry.model, model), _sample(ref_label, entry.reference, ref)
    for f in table["feature_names"]:
        key = f"{label}__{f}"
        observable = observables.get(f)
        head = _observable(observables, f)
        if entry.kind == "unfolding" and entry.level == "vertex" and label not in entry.baselines:
            extra = {name: (observable(b), b.weights) for name, b in baselines.items() if observable.available(b)}
            detector = observable(data) if data is not None and observable.available(data) else None
            replicas = _replicas(observable(model), model)
            fig = plot_unfolding(f, observable(ref), detector, replicas,
                                 baselines={("OmniFold" if "omnifold" in k else k): v for k, v in extra.items()},
                                 unfolded_weights=model.weights if len(replicas) == 1 else None)
            spread = f"mean ± std over {len(replicas)} replicas" if len(replicas) > 1 else "statistical band"
            caption = (f"{head}: {model_text}, {spread}, vs {ref_text}"
                       + (f"; detector-level data {html.escape(str(entry.data))}" if detector is not None else "")
                       + (f"; baselines {html.escape(', '.join(extra))}" if extra else "") + "; lower panel: pulls")
        else:
            fig = plot_distribution(f, observable(ref), observable(model), reference_weights=ref.weights,
                                    model_weights=model.weights, labels=(ref_label, label), observable=observable,
                                    panel=draw.lower_panel)  # type: ignore[arg-type]
            panel = {"pull": "pulls", "ratio": f"ratio {html.escape(label)}/truth with the truth's statistical "
                     "band", "both": "ratio (with the truth's statistical band) and pulls"}[draw.lower_panel]
            caption = f"{head}: {model_text} vs {ref_text}, normalized; lower panel: {panel}"
        draw.add(out, key, fig, caption, run_label)
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
        caption = (f"{_observable(observables, pair.y)} against {_observable(observables, pair.x)}: {ref_text} "
                   f"(left) and {model_text} (right), fraction of events per bin")
        draw.add(out, key, fig, caption, run_label)
        names.append(key)
    out.add_section(f"{label} vs {ref_label}", names)


def _amplification(out: RunAnalysis, label: str, generated: EventBatch, train: EventBatch, toy: Any, plots: bool,
                   draw: _Drawing) -> None:
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

        draw.add(out, key, plot_amplification(result),
                 f"<b>quantile MSE</b> ({n_q} quantiles per coordinate) against the number of events: "
                 f"{_sample(label, None, generated)} vs true samples of the exact density; training: "
                 f"{_events(n_train)}")
        out.add_section(f"Amplification (quantile MSE) of {label}", [key])


def _conditional(out: RunAnalysis, entry: Comparison, condition: str, generated: EventBatch, truth: EventBatch,
                 train: EventBatch | None, features: Sequence[str], observables: ObservableSet, bins: int,
                 plots: bool, draw: _Drawing) -> None:
    """Distributions and KL per value of a condition with a few values (trained / interpolated / extrapolated)."""
    label = entry.label
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
            draw.add(out, key, plot_conditional(f, ref, mod, trained, bins),
                     f"{_observable(observables, f)} per value of <code>{html.escape(condition)}</code>: "
                     f"{_sample(label, entry.model)} (line) vs truth ({html.escape(entry.reference)}, points), "
                     "titled with the regime and KL(truth ‖ model)")
            names.append(key)
    key = "conditional_kl" if "conditional_kl" not in out.metrics else f"conditional_kl__{label}"
    out.metrics[key] = per_feature
    out.add_section(f"{label} per {condition} (trained / interpolated / extrapolated)", names)


def _detector_response(out: RunAnalysis, samples: Mapping[str, EventBatch], plan: ReportPlan,
                       observables: ObservableSet, draw: _Drawing) -> None:
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
            learned_text = f"; learned surrogates: {html.escape(', '.join(folded))}" if folded else ""
            draw.add(out, key, plot_resolution(f, obs(vertex), obs(det), surrogate=folded),
                     f"{_observable(observables, f)}: detector level ({html.escape(response.detector)}) against "
                     f"vertex level ({html.escape(response.vertex)}, {_events(len(vertex))}); bias and "
                     f"resolution against the vertex value{learned_text}")
            names.append(key)
        extra = f"; learned surrogates: {', '.join(learned)}" if learned else ""
        out.add_section(f"Detector response ({response.vertex} → {response.detector}{extra})", names)
        return


def _training(out: RunAnalysis, histories: Mapping[str, Any], draw: _Drawing) -> None:
    from mlegpipe.plots import history_columns, plot_history

    names = []
    for section, history in histories.items():
        if history_columns(history):
            key = f"training__{section}"
            draw.add(out, key, plot_history(history, title=section),
                     f"<b>training of [{html.escape(section)}]</b>: losses (top) and the validation metric (bottom) "
                     "against the training step")
            names.append(key)
    out.add_section("Training", names)
