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

Example:
    >>> from mlegpipe.config import parse_config  # doctest: +SKIP
    >>> [step.outputs for step in plan_pipeline(parse_config(text, "p.toml"))]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlegpipe.config import PipelineConfig, StageSpec
from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import suggest

__all__ = ["Step", "plan_pipeline"]

SPLITS = ("train", "valid", "test")


@dataclass
class Step:
    """One stage with its resolved inputs and outputs."""

    spec: StageSpec
    inputs: list[str] = field(default_factory=list)
    train_on: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    surrogate: str | None = None

    @property
    def section(self) -> str:
        """The TOML section name."""
        return self.spec.section


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
    parametric_detectors: list[str] = []
    learned_detectors: list[str] = []
    steps: list[Step] = []
    for spec in config.stages:
        step = Step(spec)
        sec = spec.section
        if spec.kind == "truth":
            prefix = "truth" if sec == "truth" else sec
            truth_prefixes.append(prefix)
            step.outputs = [f"{prefix}_{s}" for s in SPLITS]
            vertex_level += step.outputs
        elif spec.kind == "generator":
            prefix = (spec.train_on or [truth_prefixes[0] if truth_prefixes else "truth"])[0]
            step.train_on = [f"{prefix}_train", f"{prefix}_valid"]
            _require(step.train_on, available, f"{sec}.train_on")
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
        elif spec.kind == "unfolding":
            if spec.inputs is not None:
                step.inputs = list(spec.inputs)
            elif truth_prefixes and parametric_detectors:
                step.inputs = [f"{truth_prefixes[0]}_test_{parametric_detectors[-1]}"]
            else:
                raise ConfigError("an unfolding needs detector-level data: set inputs = [\"sample\"] or declare a "
                                  "truth and a [detector] section before it", path=f"{sec}.inputs")
            _require(step.inputs, available, f"{sec}.inputs")
            step.surrogate = spec.surrogate or (learned_detectors[-1] if learned_detectors else None)
            if step.surrogate is None:
                raise ConfigError("an unfolding needs a learned detector surrogate (e.g. cfold) before it",
                                  path=f"{sec}.surrogate")
            if step.surrogate not in learned_detectors:
                raise ConfigError("not a learned detector section declared before this one; learned detectors: "
                                  + (", ".join(learned_detectors) or "none"), path=f"{sec}.surrogate",
                                  value=step.surrogate, hint=suggest(step.surrogate, learned_detectors))
            prefix = "" if sec == "unfolding" else f"{sec}_"
            step.outputs = [f"{prefix}unfolded", f"{prefix}refolded"]
        available += step.outputs
        steps.append(step)
    return steps
