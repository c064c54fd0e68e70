"""The samples an unfolding works on: the data, its truth, the simulation pairs (from :class:`UnfoldingInputs`).

The planner hands every unfolding an :class:`~mlegpipe.stages.UnfoldingInputs`:
the data, the data's vertex-level truth when the pipeline has it, and the
simulation's (vertex, detector) pairs (a surrogate's training pairs). The
``truth`` and ``simulation`` parameters of the unfolding plugins override the
last two by sample name. :func:`resolve_samples` applies them and checks
what it gets; :func:`pass_mask` tells which detector-level events were measured.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.stages import UnfoldingInputs
    >>> data = EventBatch.from_columns({"a": np.zeros(3)})
    >>> samples = resolve_samples(UnfoldingInputs(data, "data", None, ""), {}, section="ibu")
    >>> samples.data_name, samples.truth, samples.simulation
    ('data', None, None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.observables import ObservableSet
from mlegpipe.schema import param
from mlegpipe.stages import RunRecord, Unfolding, UnfoldingInputs
from mlegpipe_builtins.unfolding._observables import check_observables, declared_observables, observable

__all__ = ["PASS_FIELDS", "Simulation", "SimulationUnfolding", "SimulationUnfoldingParams", "UnfoldingSamples", "check_pair_names", "feature_columns", "pass_mask",
           "resolve_samples", "unfolded_observables"]

#: Pass flags looked for in detector-level samples (first found wins).
PASS_FIELDS: tuple[str, ...] = ("measured", "lepton_measured", "accepted", "pass")


def pass_mask(batch: EventBatch) -> np.ndarray:
    """Which events of a detector-level sample were measured (its pass flag; all when it has none).

    Example:
        >>> pass_mask(EventBatch.from_columns({"a": [1.0, 2.0], "measured": [True, False]})).tolist()
        [True, False]
    """
    name = next((f for f in PASS_FIELDS if batch.has(f)), None)
    return np.ones(len(batch), bool) if name is None else batch.column(name) > 0.5


def feature_columns(batch: EventBatch, names: Sequence[str], where: str, surrogate: str) -> np.ndarray:
    """Features ``names`` of ``batch`` that a surrogate works on (NaN where undefined); a clear error if absent."""
    try:
        return np.stack([observable(batch, n, where) for n in names], axis=1)
    except DataError as err:
        raise DataError(f"the surrogate {surrogate!r} was trained on detector features {list(names)}, but the data "
                        f"cannot provide them: {err.message}", path=where, value=err.value,
                        hint=err.hint or "unfold data with the features the surrogate was trained on") from None


def check_pair_names(names: Sequence[str], path: str = "simulation") -> None:
    """Check the ``simulation`` parameter: empty, or ``[vertex_sample, detector_sample]``.

    Example:
        >>> check_pair_names(["sim_train"])
        Traceback (most recent call last):
        mlegpipe.exceptions.ConfigError: simulation = ['sim_train']: expected [vertex_sample, detector_sample]
    """
    if names and len(names) != 2:
        raise ConfigError("expected [vertex_sample, detector_sample]", path=path, value=list(names))


@dataclass
class Simulation:
    """Index-aligned simulated pairs: ``vertex`` events and their ``detector``-level version, with their names."""

    vertex: EventBatch
    detector: EventBatch
    names: list[str]

    def detector_values(self, name: str) -> np.ndarray:
        """``name`` of the detector-level events, NaN where not measured."""
        return np.where(pass_mask(self.detector), observable(self.detector, name, self.names[1]), np.nan)

    def vertex_values(self, name: str) -> np.ndarray:
        """``name`` of the vertex-level events."""
        return observable(self.vertex, name, self.names[0])


@dataclass
class UnfoldingSamples:
    """The samples one unfolding works on, resolved (see :func:`resolve_samples`)."""

    data: EventBatch
    data_name: str
    truth: EventBatch | None
    truth_name: str | None
    simulation: Simulation | None

    def require_simulation(self, section: str) -> Simulation:
        """The simulation pairs, which this unfolding cannot do without.

        Raises:
            ConfigError: the pipeline provides none and the ``simulation`` parameter names none.
        """
        if self.simulation is None:
            raise ConfigError("this unfolding learns the detector response from simulated (vertex, detector) "
                              "pairs, and the pipeline provides none: set simulation = [vertex_sample, "
                              "detector_sample], or declare a truth and a parametric [detector] before it",
                              path=f"{section}.simulation")
        return self.simulation


def resolve_samples(inputs: UnfoldingInputs, samples: Mapping[str, EventBatch], *, truth: str = "",
                    simulation: Sequence[str] = (), section: str) -> UnfoldingSamples:
    """The data, its truth and the simulation pairs of ``inputs``; ``truth`` and ``simulation`` name others.

    Arguments:
        inputs: what the planner hands the unfolding.
        samples: the run's samples (``record.samples``), where ``truth`` and ``simulation`` are looked up.
        truth: a vertex-level sample to use as the data's truth ("": the planner's).
        simulation: ``[vertex, detector]`` samples to use as the simulation pairs (empty: the planner's).
        section: the unfolding's TOML section (error paths).

    Raises:
        ConfigError: a named sample does not exist.
        DataError: the data are empty, or the simulation samples are not index-aligned pairs.
    """
    if len(inputs.data) == 0:
        raise DataError("the detector-level data sample is empty", path=f"{section}.inputs", value=inputs.data_name)
    truth_batch, truth_name = inputs.truth, inputs.truth_name
    if truth:
        truth_batch, truth_name = _sample(samples, truth, f"{section}.truth"), truth
    sim = None
    names = list(simulation) or list(inputs.simulation_names)
    if simulation:
        vertex, detector = (_sample(samples, n, f"{section}.simulation") for n in simulation)
        sim = Simulation(vertex, detector, names)
    elif inputs.simulation is not None:
        sim = Simulation(*inputs.simulation, names)
    if sim is not None and len(sim.vertex) != len(sim.detector):
        raise DataError(f"simulation samples are not index-aligned pairs ({len(sim.vertex)} and "
                        f"{len(sim.detector)} events)", path=f"{section}.simulation", value=names)
    return UnfoldingSamples(inputs.data, inputs.data_name, truth_batch, truth_name, sim)


def _sample(samples: Mapping[str, EventBatch], name: str, path: str) -> EventBatch:
    if name not in samples:
        raise ConfigError("no such sample; have: " + ", ".join(samples), path=path, value=name)
    return samples[name]


def unfolded_observables(names: Sequence[str], ctx: StageContext, *batches: EventBatch) -> list[str]:
    """``names``, or when empty what the pipeline's report compares on ``batches`` (its declared observables,
    else the registered ones, else the shared fields: :meth:`ObservableSet.default_names`).

    Example:
        >>> b = EventBatch.from_columns({"a": [1.0], "b": [2.0]})
        >>> unfolded_observables([], StageContext("ibu"), b, b), unfolded_observables(["b"], StageContext("ibu"))
        (['a', 'b'], ['b'])
    """
    if names:
        return list(names)
    return (ctx.observables or ObservableSet()).default_names(*batches)


@dataclass
class SimulationUnfoldingParams:
    """Parameters every unfolding through simulation pairs shares (``ibu``, ``omnifold``): bin support,
    the samples it reads, plots.

    Example:
        >>> SimulationUnfoldingParams().min_support
        10.0
    """

    min_support: float = param(10.0, min=0.0, doc="data events a vertex bin's detector-level support needs")
    min_efficiency: float = param(0.05, min=0.0, max=1.0, doc="efficiency below which a bin is unrecoverable")
    truth: str = param("", doc="vertex-level truth sample of the data (default: the sample it was folded from)")
    simulation: list[str] = param([], doc="[vertex, detector] simulation pairs (default: the surrogate's "
                                  "training pairs, else the last truth's training split and its folding)")
    plots: bool = param(True, doc="draw the closure plots into the run folder")

    def __post_init__(self) -> None:
        check_pair_names(self.simulation)


class SimulationUnfolding(Unfolding):
    """An unfolding through simulation pairs without a surrogate; :meth:`info` holds what its run measured.

    Subclasses implement :meth:`_unfold`; :meth:`unfold` runs it with the pipeline's declared observables
    known (``[observables]``, :func:`~._observables.declared_observables`) after :meth:`check_inputs`.
    """

    needs_surrogate: ClassVar[bool] = False

    def __init__(self, params: Any, ctx: Any) -> None:
        super().__init__(params, ctx)
        self._info: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        """Per observable the band and closure figures against the truth when known; the samples used."""
        return self._info

    def unfold(self, inputs: UnfoldingInputs, record: RunRecord) -> dict[str, EventBatch]:
        """Unfold the data of ``inputs`` (:meth:`check_inputs` first); return ``unfolded`` and ``refolded``.

        Raises:
            ConfigError: no simulation pairs, a named sample that does not exist, or an observable or feature
                the samples cannot provide (naming its parameter).
            DataError: empty data.
        """
        with declared_observables(self.ctx.observables):
            self.check_inputs(inputs, record)
            return self._unfold(inputs, record)

    def _unfold(self, inputs: UnfoldingInputs, record: RunRecord) -> dict[str, EventBatch]:
        raise NotImplementedError

    def check_inputs(self, inputs: UnfoldingInputs, record: RunRecord) -> None:
        """The samples exist, and every observable (``observables``, else the default ones) and every feature
        :meth:`checked_features` names can be computed from the measured data, the truth and the simulation pairs.

        Raises:
            ConfigError: no simulation pairs, a named sample that does not exist, no observable, or one that
                cannot be computed (naming the parameter, the observable and the sample).
            DataError: empty data.

        Example:
            >>> from mlegpipe_builtins.unfolding.ibu import IterativeBayesUnfolding as Ibu
            >>> b = EventBatch.from_columns({"a": [1.0, 2.0]})
            >>> inputs = UnfoldingInputs(b, "data", None, "", simulation=(b, b), simulation_names=["v", "d"])
            >>> Ibu(Ibu.Params(observables=["c"]), StageContext("ibu")).check_inputs(inputs, RunRecord({}, {}, {}, {}, {}, {}))
            Traceback (most recent call last):
            mlegpipe.exceptions.ConfigError: ibu.observables = 'c': cannot be computed from the data 'data': no such observable for these events; fields: a; collections: none
        """
        p = self.params
        section = self.ctx.name
        with declared_observables(self.ctx.observables):
            samples = resolve_samples(inputs, record.samples, truth=p.truth, simulation=p.simulation,
                                      section=section)
            sim = samples.require_simulation(section)
            measured = samples.data.take(pass_mask(samples.data))
            names = unfolded_observables(p.observables, self.ctx, measured, sim.vertex, sim.detector)
            if not names:
                raise ConfigError("no observable to unfold: the data and the simulation share none the report "
                                  "compares; name them", path=f"{section}.observables", value=list(p.observables))
            vertex_name, detector_name = sim.names if len(sim.names) == 2 else ("vertex", "detector")
            detector = sim.detector.take(pass_mask(sim.detector))
            data = f"the data {samples.data_name!r}"
            where = {data: measured, f"the truth {samples.truth_name!r}": samples.truth,
                     f"the simulation {vertex_name!r}": sim.vertex, f"the simulation {detector_name!r}": detector}
            check_observables(names, f"{section}.observables", where)
            for parameter, (level, features) in self.checked_features(names).items():
                batches = {data: measured, f"the simulation {detector_name!r}": detector} if level == "detector" \
                    else {f"the simulation {vertex_name!r}": sim.vertex}
                check_observables(features, f"{section}.{parameter}", batches)

    def checked_features(self, names: list[str]) -> dict[str, tuple[str, list[str]]]:
        """Further features to check, by parameter: ``(level, features)``, level ``detector`` (the data and the
        simulation's detector level) or ``vertex`` (the simulation's vertex level). Default: none."""
        return {}
