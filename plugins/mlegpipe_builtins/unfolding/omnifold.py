"""``omnifold``: unbinned unfolding by reweighting the simulation with classifiers (OmniFold).

The simulated (vertex, detector) pairs are reweighted in ``iterations``
OmniFold iterations (:func:`mlegpipe.unfold.omnifold`): a classifier of the
detector-level features tells the data from the simulation, a second one
carries the resulting weights to a function of the vertex-level features. The
band comes from ``replicas`` Poisson(1) bootstrap resamples of the data, each
a full reweighting. No detector surrogate is needed: the simulation pairs are
the surrogate's training pairs when the pipeline has a learned detector, else
the last truth's training split folded by the last parametric detector, or
the samples named in ``simulation``.

Under torchrun the classifiers train data-parallel
(:func:`mlegpipe.unfold.omnifold.classifier_weights`: each minibatch split over
the ranks, the gradients averaged weighted by events), so every rank holds one
process's weights up to floating-point reduction order.

Returned samples: ``unfolded``, the simulation's vertex events with the
OmniFold weights in ``weight``; ``refolded``, their detector-level partners
with the same weights (the unfolded result as the detector sees it).
:meth:`OmniFoldUnfolding.info` holds the binned bands and the closure figures.

In TOML::

    [unfolding]
    plugin = "omnifold"
    observables = ["a", "b"]

Example:
    >>> from mlegpipe.context import StageContext
    >>> OmniFoldUnfolding(OmniFoldUnfolding.Params(), StageContext("omnifold")).params.iterations
    2
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.generation import single_threaded_kernels
from mlegpipe.schema import param
from mlegpipe.stages import RunRecord, UnfoldingInputs
from mlegpipe.unfold import Band
from mlegpipe_builtins.unfolding._baselines import omnifold_unfold
from mlegpipe_builtins.unfolding._closure import Closure, plot_closure, pull_fractions
from mlegpipe_builtins.unfolding._inputs import (
    Simulation,
    SimulationUnfolding,
    SimulationUnfoldingParams,
    pass_mask,
    resolve_samples,
    unfolded_observables,
)
from mlegpipe_builtins.unfolding._observables import compare, density, observable
from mlegpipe_builtins.unfolding.ibu import simulated_values

__all__ = ["OmniFoldResult", "OmniFoldUnfolding", "mlegpipe_register_stages", "omnifold_weights", "record_omnifold"]


@dataclass
class OmniFoldResult:
    """OmniFold weights on the simulation events it could use (finite vertex-level features).

    Attributes:
        simulation: the simulation pairs, restricted to those events.
        weights: the nominal push weights ν.
        replicas: ν of each bootstrap resample of the data.
        iterations: the OmniFold iterations.
    """

    simulation: Simulation
    weights: np.ndarray
    replicas: list[np.ndarray]
    iterations: int

    def unfolded(self) -> EventBatch:
        """The simulation's vertex events with the weights (times their own) in ``weight``."""
        vertex = self.simulation.vertex
        result = vertex.with_columns(weight=self.weights * vertex.weights)
        result.meta.update({"unfolding": "omnifold", "iterations": self.iterations})
        return result

    def refolded(self) -> EventBatch:
        """The simulation's detector-level events with the same weights."""
        detector = self.simulation.detector
        result = detector.with_columns(weight=self.weights * detector.weights)
        result.meta.update({"unfolding": "omnifold", "iterations": self.iterations})
        return result


def omnifold_weights(sim: Simulation, data: EventBatch, vertex_features: Sequence[str],
                     detector_features: Sequence[str], *, iterations: int, epochs: int, replicas: int,
                     rng: np.random.Generator, generator: torch.Generator) -> OmniFoldResult:
    """OmniFold the measured ``data`` through ``sim`` on the given features; bootstrap over ``replicas`` resamples.

    Simulation events with a non-finite vertex feature are left out, data events with a non-finite
    detector feature too; simulated events not measured (pass flag, or NaN) count as inefficiency.
    """
    gen = np.stack([sim.vertex_values(n) for n in vertex_features], axis=1)
    keep = np.isfinite(gen).all(axis=1)
    det = np.stack([sim.detector_values(n) for n in detector_features], axis=1)
    dat = np.stack([observable(data, n, "data") for n in detector_features], axis=1)
    dat = dat[np.isfinite(dat).all(axis=1)]
    weights, boot = omnifold_unfold(gen[keep], det[keep], dat, iterations, replicas, rng, generator, epochs)
    kept = Simulation(sim.vertex.take(keep), sim.detector.take(keep), sim.names)
    return OmniFoldResult(kept, weights, boot, iterations)


def record_omnifold(result: OmniFoldResult, closure: Closure, binned: dict[str, Any], figures: dict[str, Any]) -> None:
    """The band of every observable of ``closure`` into ``binned[name]["omnifold"]`` and, with a truth, its
    closure figures (triangular ×10³, W1, vertex pulls) into ``figures[name]["omnifold"]``."""
    for n in closure.observables:
        values = result.simulation.vertex_values(n)
        band = Band.from_replicas(np.array([density(values, closure.edges[n], w) for w in result.replicas]))
        binned[n]["omnifold"] = band.to_dict()
        if closure.truth is not None:
            figures[n]["omnifold"] = closure.vertex_figures(n, band, compare(values, closure.truth[n],
                                                                             closure.edges[n], result.weights))


class OmniFoldUnfolding(SimulationUnfolding):
    """Unfold by reweighting the simulation pairs with classifiers (OmniFold); bootstrap bands.

    Example:
        >>> OmniFoldUnfolding.needs_surrogate
        False
    """

    plugin_name: ClassVar[str] = "omnifold"

    @dataclass
    class Params(SimulationUnfoldingParams):
        """Parameters of ``omnifold``."""

        observables: list[str] = param([], doc="observables the closure figures and bands are binned in (empty: "
                                       "those the report compares, available in the data and the simulation)")
        detector_features: list[str] = param([], doc="detector-level features the data-vs-simulation classifier "
                                             "sees (empty: the observables)")
        vertex_features: list[str] = param([], doc="vertex-level features of the push classifier (empty: the "
                                           "detector features)")
        bins: int = param(30, min=2, max=1000, doc="bins per observable of the bands")
        iterations: int = param(2, min=1, doc="OmniFold iterations")
        epochs: int = param(5, min=1, doc="epochs of each classifier")
        replicas: int = param(10, min=2, max=200, doc="bootstrap resamples of the data (Poisson(1) weights), "
                              "each a full reweighting")

    def checked_features(self, names: list[str]) -> dict[str, tuple[str, list[str]]]:
        """The classifiers' features: ``detector_features`` (data, simulated detector level) and
        ``vertex_features`` (simulated vertex level), each defaulting as in :meth:`_unfold`."""
        detector_features = list(self.params.detector_features) or names
        return {"detector_features": ("detector", detector_features),
                "vertex_features": ("vertex", list(self.params.vertex_features) or detector_features)}

    def _unfold(self, inputs: UnfoldingInputs, record: RunRecord) -> dict[str, EventBatch]:
        """Unfold the data of ``inputs``; return ``unfolded`` and ``refolded`` (weighted simulation events)."""
        p = self.params
        start = time.perf_counter()
        samples = resolve_samples(inputs, record.samples, truth=p.truth, simulation=p.simulation,
                                  section=self.ctx.name)
        sim = samples.require_simulation(self.ctx.name)
        measured = samples.data.take(pass_mask(samples.data))
        names = unfolded_observables(p.observables, self.ctx, measured, sim.vertex, sim.detector)
        detector_features = list(p.detector_features) or names
        vertex_features = list(p.vertex_features) or detector_features
        rng = self.ctx.rng("omnifold")
        with single_threaded_kernels():  # small classifiers: one thread is fastest on a shared machine
            result = omnifold_weights(sim, measured, vertex_features, detector_features, iterations=p.iterations,
                                      epochs=p.epochs, replicas=p.replicas, rng=rng,
                                      generator=self.ctx.torch_generator("omnifold"))
        data_obs = {n: observable(measured, n, samples.data_name) for n in names}
        truth_obs = None if samples.truth is None else {n: observable(samples.truth, n, "truth") for n in names}
        sim_v, sim_d = simulated_values(sim, names)
        closure = Closure.build(names, data_obs, truth_obs, bins=p.bins, rng=rng, binned_with=sim_v)
        closure.flag_unrecoverable(sim_v, sim_d, p.min_support, p.min_efficiency)
        binned = {n: closure.binned(n) for n in names}
        figures: dict[str, Any] = {n: {"unrecoverable_bins": np.flatnonzero(closure.flags[n]).tolist()} for n in names}
        if truth_obs is not None:
            for n in names:
                figures[n]["data_uncorrected"] = compare(data_obs[n], truth_obs[n], closure.edges[n])
        record_omnifold(result, closure, binned, figures)
        out = {"unfolded": result.unfolded(), "refolded": result.refolded()}
        for batch in out.values():
            batch.meta["data"] = samples.data_name
        self._info = {"data": samples.data_name, "truth": samples.truth_name, "simulation": sim.names,
                      "detector_features": detector_features, "vertex_features": vertex_features,
                      "observables": figures, "binned": binned, "summary": pull_fractions(figures),
                      "data_events": len(samples.data), "measured_data_events": len(measured),
                      "simulation_events_used": len(result.weights),
                      "seconds": round(time.perf_counter() - start, 2)}
        if p.plots:
            plot_closure(self._info, self.ctx, unfolded="omnifold")
        return out


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register ``omnifold``."""
    registry.add(OmniFoldUnfolding)
