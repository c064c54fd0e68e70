"""Resolve how samples flow between the stages of a pipeline, before running anything.

Stages run in file order and exchange named samples. :func:`plan_pipeline`
works out, for each section, which samples it reads and which it produces, so
``mlegpipe validate`` catches a miswired pipeline (a generator with no truth
before it, a learned detector with no training pairs) without running it.

Sample names: a truth section ``truth`` gives ``truth_train``, ``truth_valid``,
``truth_test`` (another truth section ``s`` gives ``s_train`` ...); the
``generator`` section gives ``generated`` (another generator section gives its
own name); a detector section ``d`` folds each vertex-level sample ``x`` into
``x_d``; an ``unfolding`` section gives ``unfolded`` and ``refolded``.

Every stage is handed the resolved names it needs (a generator its training
samples and the truth it is judged against, an unfolding its data, the data's
truth and the simulation pairs), and :func:`plan_report` derives from the steps
which sample the report compares with which: every generator section, every
folded and unfolded sample, each against its own reference.

Example:
    >>> from mlegpipe.config import parse_config  # doctest: +SKIP
    >>> [step.outputs for step in plan_pipeline(parse_config(text, "p.toml"))]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlegpipe.config import PipelineConfig, StageSpec
from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import suggest

__all__ = ["Comparison", "ReportPlan", "Response", "Step", "plan_pipeline", "plan_report"]

SPLITS = ("train", "valid", "test")


@dataclass
class Step:
    """One stage with its resolved inputs and outputs."""

    spec: StageSpec
    inputs: list[str] = field(default_factory=list)
    train_on: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    surrogate: str | None = None
    #: generator: the truth sample it is judged against (and takes its conditions from);
    #: unfolding: the vertex-level truth of the data, when the pipeline has it (closure tests)
    reference: str | None = None
    #: detector: each output sample -> the sample it folds
    folded_from: dict[str, str] = field(default_factory=dict)
    #: unfolding: the [vertex, detector] simulation pairs (the surrogate's training pairs; without a surrogate,
    #: the last truth's training split and its folding by the last parametric detector, when both exist)
    simulation: list[str] = field(default_factory=list)
    #: the truth section whose events (cuts, beams) a generator learns or an unfolding recovers
    truth_section: str | None = None

    @property
    def section(self) -> str:
        """The TOML section name."""
        return self.spec.section


@dataclass(frozen=True)
class Comparison:
    """One comparison the report makes: a model sample against its reference.

    Attributes:
        label: the name in the report and ``metrics.json`` (the model sample's name).
        model, reference: sample names.
        reference2: an independent reference sample for the truth-vs-truth floors (None: no floors).
        training: the training sample (memorization test), or None.
        level: ``vertex`` (physicality checked) or ``detector`` (events the detector measured are compared).
        truth_section: the truth section whose cuts the physicality checks enforce.
        optional: the model sample may be absent from a run (e.g. a baseline an unfolding skipped).
        data: for unfolded samples, the detector-level data they came from (drawn beside them).
        baselines: other model samples drawn beside this one (an unfolding's baselines).
        kind: the kind of stage that made the model sample (``generator``, ``detector``, ``unfolding``).
        section: that stage's TOML section.
    """

    label: str
    model: str
    reference: str
    reference2: str | None = None
    training: str | None = None
    level: str = "vertex"
    truth_section: str | None = None
    optional: bool = False
    data: str | None = None
    baselines: tuple[str, ...] = ()
    kind: str = ""
    section: str = ""


@dataclass(frozen=True)
class Response:
    """A detector response the report draws: vertex sample, its folding by a parametric detector, and surrogates."""

    vertex: str
    detector: str
    surrogates: dict[str, str] = field(default_factory=dict)


@dataclass
class ReportPlan:
    """What a report compares (:func:`plan_report`)."""

    comparisons: list[Comparison] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    surrogates: list[str] = field(default_factory=list)

    @classmethod
    def generated(cls, *models: str, truth: str = "truth", truth_section: str | None = None) -> ReportPlan:
        """Each model sample against ``TRUTH_test`` (floors ``TRUTH_valid``, memorization ``TRUTH_train``).

        Example:
            >>> [c.reference for c in ReportPlan.generated("gen").comparisons]
            ['truth_test']
        """
        return cls([Comparison(m, m, f"{truth}_test", f"{truth}_valid", f"{truth}_train", "vertex",
                               truth_section or truth, kind="generator", section=m) for m in models])


def _require(names: list[str], available: list[str], path: str) -> None:
    for name in names:
        if name not in available:
            raise ConfigError("no such sample at this point of the pipeline; available: "
                              + (", ".join(available) or "none (declare a [truth] section first)"),
                              path=path, value=name, hint=suggest(name, available))


def plan_pipeline(config: PipelineConfig) -> list[Step]:
    """Resolve the sample flow of ``config``; raise ConfigError naming the section on miswiring."""
    available: list[str] = []
    vertex_level: list[str] = []
    truth_prefixes: list[str] = []
    truth_sections: dict[str, str] = {}  # a truth's prefix -> its section
    sample_truth: dict[str, str] = {}  # a truth split (truth_test) -> its section
    parametric_detectors: list[str] = []
    learned_detectors: list[str] = []
    folded_from: dict[str, str] = {}
    steps: list[Step] = []
    for spec in config.stages:
        step = Step(spec)
        sec = spec.section
        if spec.kind == "truth":
            prefix = "truth" if sec == "truth" else sec
            truth_prefixes.append(prefix)
            truth_sections[prefix] = sec
            step.truth_section = sec
            step.outputs = [f"{prefix}_{s}" for s in SPLITS]
            sample_truth.update(dict.fromkeys(step.outputs, sec))
            vertex_level += step.outputs
        elif spec.kind == "generator":
            prefix = (spec.train_on or [truth_prefixes[0] if truth_prefixes else "truth"])[0]
            step.train_on = [f"{prefix}_train", f"{prefix}_valid"]
            _require(step.train_on, available, f"{sec}.train_on")
            judge = spec.judge_on or prefix
            step.reference = f"{judge}_test"
            if judge not in truth_prefixes:
                raise ConfigError("no truth section with this prefix before the generator; truths: "
                                  + (", ".join(truth_prefixes) or "none"), path=f"{sec}.judge_on", value=judge,
                                  hint=suggest(judge, truth_prefixes))
            step.truth_section = truth_sections.get(judge)
            step.outputs = ["generated" if sec == "generator" else sec]
            vertex_level += step.outputs
        elif spec.kind == "detector":
            if spec.plugin.cls.trainable:
                if spec.train_on is not None:
                    if len(spec.train_on) != 2:
                        raise ConfigError("expected [vertex_sample, detector_sample]", path=f"{sec}.train_on",
                                          value=spec.train_on)
                    step.train_on = list(spec.train_on)
                else:
                    if not parametric_detectors or not truth_prefixes:
                        raise ConfigError("a learned detector needs (vertex, detector) training pairs: declare a "
                                          "truth section and a parametric [detector] (e.g. smear) before it, or "
                                          "set train_on = [vertex_sample, detector_sample]", path=f"{sec}.train_on")
                    base = f"{truth_prefixes[-1]}_train"
                    step.train_on = [base, f"{base}_{parametric_detectors[-1]}"]
                _require(step.train_on, available, f"{sec}.train_on")
                learned_detectors.append(sec)
            else:
                parametric_detectors.append(sec)
            step.inputs = list(spec.inputs) if spec.inputs is not None else list(vertex_level)
            _require(step.inputs, available, f"{sec}.inputs")
            step.outputs = [f"{name}_{sec}" for name in step.inputs]
            step.folded_from = dict(zip(step.outputs, step.inputs, strict=True))
            folded_from.update(step.folded_from)
        elif spec.kind == "unfolding":
            if spec.inputs is not None:
                step.inputs = list(spec.inputs)
            elif truth_prefixes and parametric_detectors:
                step.inputs = [f"{truth_prefixes[0]}_test_{parametric_detectors[-1]}"]
            else:
                raise ConfigError("an unfolding needs detector-level data: set inputs = [\"sample\"] or declare a "
                                  "truth and a [detector] section before it", path=f"{sec}.inputs")
            _require(step.inputs, available, f"{sec}.inputs")
            needs_surrogate = spec.plugin.cls.needs_surrogate
            step.surrogate = spec.surrogate or (learned_detectors[-1] if learned_detectors else None)
            if step.surrogate is None and needs_surrogate:
                raise ConfigError("an unfolding needs a learned detector surrogate (e.g. cfold) before it",
                                  path=f"{sec}.surrogate")
            if step.surrogate is not None and step.surrogate not in learned_detectors:
                raise ConfigError("not a learned detector section declared before this one; learned detectors: "
                                  + (", ".join(learned_detectors) or "none"), path=f"{sec}.surrogate",
                                  value=step.surrogate, hint=suggest(step.surrogate, learned_detectors))
            prefix = "" if sec == "unfolding" else f"{sec}_"
            step.outputs = [f"{prefix}unfolded", f"{prefix}refolded"]
            step.reference = folded_from.get(step.inputs[0])
            if step.surrogate is not None:  # the simulation pairs: the surrogate's training pairs
                step.simulation = list(next(s for s in steps if s.section == step.surrogate).train_on)
            elif truth_prefixes and parametric_detectors:  # else what a learned detector would train on
                base = f"{truth_prefixes[-1]}_train"
                pairs = [base, f"{base}_{parametric_detectors[-1]}"]
                step.simulation = pairs if all(n in available for n in pairs) else []
            step.truth_section = sample_truth.get(step.reference or "")
        available += step.outputs
        steps.append(step)
    return steps


_SPLIT_ORDER = ("test", "valid", "train")


def plan_report(steps: list[Step]) -> ReportPlan:
    """Which sample the report compares with which, derived from the planned steps.

    * every generator section's output against its truth's test split, or the test split
      of the truth named by its ``judge_on`` (floors from that truth's validation split,
      memorization against the generator's training split);
    * a generated sample folded by a parametric detector against the truth's test
      split folded by the same detector;
    * a learned surrogate's folding of a vertex sample against the parametric
      detector it learned, folding *another* vertex sample (so both sides see
      independent events), with the detector's folding of the same sample as the floor;
    * an unfolding's ``unfolded`` (and its ``omnifold`` baseline, when run)
      against the data's vertex truth, ``refolded`` against the data; for
      an unfolding without a surrogate (``ibu``, ``omnifold``) too.

    Example:
        >>> plan_report([]).comparisons
        []
    """
    plan = ReportPlan()
    generated: dict[str, Step] = {}
    parametric: dict[str, Step] = {}
    for step in steps:
        kind = step.spec.kind
        if kind == "generator":
            out = step.outputs[0]
            generated[out] = step
            ref = step.reference or ""
            prefix = ref.rsplit("_", 1)[0]
            plan.comparisons.append(Comparison(out, out, ref, f"{prefix}_valid", step.train_on[0], "vertex",
                                               step.truth_section, kind="generator", section=step.section))
        elif kind == "detector" and not step.spec.plugin.cls.trainable:
            parametric[step.section] = step
            folded = {v: o for o, v in step.folded_from.items()}
            for vertex, out in folded.items():
                if vertex in generated and generated[vertex].reference in folded:
                    ref = generated[vertex].reference or ""
                    ref2 = folded.get(f"{ref.rsplit('_', 1)[0]}_valid")
                    plan.comparisons.append(Comparison(out, out, folded[ref], ref2, None, "detector", kind="detector",
                                                       section=step.section))
        elif kind == "detector":
            plan.surrogates.append(step.section)
            _plan_surrogate(plan, step, parametric)
        elif kind == "unfolding":
            prefix = "" if step.section == "unfolding" else f"{step.section}_"
            unfolded, refolded = step.outputs
            data = step.inputs[0]
            if step.reference is not None:
                baselines = tuple(f"{prefix}{b}" for b in step.spec.plugin.cls.baseline_samples)
                plan.comparisons.append(Comparison(unfolded, unfolded, step.reference, None, None, "vertex",
                                                   step.truth_section, data=data, baselines=baselines,
                                                   kind="unfolding", section=step.section))
                plan.comparisons += [Comparison(b, b, step.reference, None, None, "vertex", step.truth_section,
                                                optional=True, kind="unfolding", section=step.section)
                                     for b in baselines]
            plan.comparisons.append(Comparison(refolded, refolded, data, None, None, "detector", kind="unfolding",
                                               section=step.section))
    for det in parametric.values():
        for out, vertex in det.folded_from.items():
            if vertex.rsplit("_", 1)[-1] in _SPLIT_ORDER and vertex not in generated:
                surrogates = {s: f"{vertex}_{s}" for s in plan.surrogates
                              if f"{vertex}_{s}" in _all_outputs(steps)}
                plan.responses.append(Response(vertex, out, surrogates))
    plan.responses.sort(key=lambda r: _SPLIT_ORDER.index(r.vertex.rsplit("_", 1)[-1]))
    return plan


def _all_outputs(steps: list[Step]) -> set[str]:
    return {o for s in steps for o in s.outputs}


def _plan_surrogate(plan: ReportPlan, step: Step, parametric: dict[str, Step]) -> None:
    """Compare a learned surrogate's folding with the parametric detector it learned (independent events)."""
    learned_from = next((d for d in parametric.values() if step.train_on and step.train_on[-1] in d.folded_from),
                        None)
    if learned_from is None:
        return
    by_vertex = {v: o for o, v in learned_from.folded_from.items()}
    mine = {v: o for o, v in step.folded_from.items()}
    for vertex in sorted(mine, key=lambda v: _SPLIT_ORDER.index(v.rsplit("_", 1)[-1])
                         if v.rsplit("_", 1)[-1] in _SPLIT_ORDER else 99):
        prefix = vertex.rsplit("_", 1)[0]
        others = [f"{prefix}_{split}" for split in _SPLIT_ORDER if f"{prefix}_{split}" != vertex
                  and f"{prefix}_{split}" in by_vertex]
        if vertex in by_vertex and others:
            out = mine[vertex]
            plan.comparisons.append(Comparison(out, out, by_vertex[others[0]], by_vertex[vertex], None, "detector",
                                               kind="detector", section=step.section))
            return
