"""``ibu``: binned iterative Bayesian unfolding of each observable through simulated (vertex, detector) pairs.

Each observable is unfolded on its own binning (D'Agostini, ``iterations``
Bayes steps; :func:`mlegpipe.unfold.ibu`) with the response of the simulation
pairs; the band is the spread over ``replicas`` Poisson(1) bootstrap resamples
of the data. No detector surrogate is needed: the simulation pairs are the
surrogate's training pairs when the pipeline has a learned detector, else the
last truth's training split folded by the last parametric detector, or the
samples named in ``simulation``.

Returned samples (the choice of an event-level carrier for binned results):
``unfolded`` is the simulation's vertex events with weights (field ``weight``)
whose binned marginals follow the IBU result of every observable at once
(:func:`mlegpipe.unfold.marginal_weights`, iterative proportional fitting; the
correlations between the observables stay the simulation's, and where the
detector never measures the simulation stays the prior); ``refolded`` is the
simulation's detector-level events with the same weights, the unfolded result
as the detector sees it. The IBU spectra themselves, their bands and the
closure figures are in :meth:`IterativeBayesUnfolding.info` (``binned``,
``observables``).

In TOML::

    [unfolding]
    plugin = "ibu"
    observables = ["a", "b"]
    bins = 20

Example:
    >>> from mlegpipe.context import StageContext
    >>> IterativeBayesUnfolding(IterativeBayesUnfolding.Params(bins=10), StageContext("ibu")).params.iterations
    4
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.schema import param
from mlegpipe.stages import RunRecord, UnfoldingInputs
from mlegpipe.unfold import Response, marginal_weights
from mlegpipe_builtins.unfolding._baselines import ibu_unfold
from mlegpipe_builtins.unfolding._closure import Closure, binned_compare, plot_closure, pull_fractions
from mlegpipe_builtins.unfolding._inputs import (
    Simulation,
    SimulationUnfolding,
    SimulationUnfoldingParams,
    pass_mask,
    resolve_samples,
    unfolded_observables,
)
from mlegpipe_builtins.unfolding._observables import compare, density, observable

__all__ = ["IterativeBayesUnfolding", "mlegpipe_register_stages", "run_ibu", "simulated_values"]


def simulated_values(sim: Simulation, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Vertex- and detector-level values of ``names`` in the simulation pairs (detector NaN where not measured)."""
    return {n: sim.vertex_values(n) for n in names}, {n: sim.detector_values(n) for n in names}


def run_ibu(sim_vertex: Mapping[str, np.ndarray], sim_detector: Mapping[str, np.ndarray], closure: Closure, *,
            iterations: int, replicas: int, rng: np.random.Generator, binned: dict[str, Any],
            figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """IBU of every observable of ``closure``: its band into ``binned[name]["ibu"]`` and, with a truth, its
    closure figures (binned triangular ×10³, W1, vertex pulls) into ``figures[name]["ibu"]``.

    Returns:
        :func:`~mlegpipe_builtins.unfolding._baselines.ibu_unfold`'s results (response, counts, band per observable).
    """
    results = ibu_unfold(dict(sim_vertex), dict(sim_detector), closure.data, closure.edges, iterations, replicas, rng)
    for n, r in results.items():
        binned[n]["ibu"] = r["band"].to_dict()
        if closure.truth is not None:
            figures[n]["ibu"] = closure.vertex_figures(n, r["band"], binned_compare(r["counts"], closure.truth[n],
                                                                                    closure.edges[n]))
    return results


def _marginal_residual(values: np.ndarray, weights: np.ndarray, response: Response, counts: np.ndarray) -> float:
    """Largest difference between the weighted simulation's and the unfolded probabilities per bin, over the
    bins with efficiency (how closely :func:`~mlegpipe.unfold.marginal_weights` met the IBU spectrum)."""
    usable = response.efficiency > 0
    a = density(values, response.vertex_edges, weights)[usable]
    b = counts[usable]
    if not (a.sum() > 0 and b.sum() > 0):
        return 0.0
    return float(np.abs(a / a.sum() - b / b.sum()).max())


class IterativeBayesUnfolding(SimulationUnfolding):
    """Unfold each observable by iterative Bayesian unfolding through the simulation pairs; bootstrap bands.

    Example:
        >>> IterativeBayesUnfolding.needs_surrogate
        False
    """

    plugin_name: ClassVar[str] = "ibu"

    @dataclass
    class Params(SimulationUnfoldingParams):
        """Parameters of ``ibu``."""

        observables: list[str] = param([], doc="observables to unfold, each on its own binning (empty: those the "
                                       "report compares, available in the data and the simulation)")
        bins: int = param(30, min=2, max=1000, doc="bins per observable (between the 0.1 % and 99.9 % quantiles "
                          "of the data and the simulation's vertex level)")
        iterations: int = param(4, min=0, doc="Bayes iterations (0: the simulation's spectrum scaled to the data)")
        replicas: int = param(20, min=2, max=1000, doc="bootstrap resamples of the data (Poisson(1) weights) for "
                              "the band and the pulls")

    def _unfold(self, inputs: UnfoldingInputs, record: RunRecord) -> dict[str, EventBatch]:
        """Unfold the data of ``inputs``; return ``unfolded`` and ``refolded`` (weighted simulation events)."""
        p = self.params
        start = time.perf_counter()
        samples = resolve_samples(inputs, record.samples, truth=p.truth, simulation=p.simulation,
                                  section=self.ctx.name)
        sim = samples.require_simulation(self.ctx.name)
        measured = samples.data.take(pass_mask(samples.data))
        names = unfolded_observables(p.observables, self.ctx, measured, sim.vertex, sim.detector)
        data_obs = {n: observable(measured, n, samples.data_name) for n in names}
        truth_obs = None if samples.truth is None else {n: observable(samples.truth, n, "truth") for n in names}
        sim_v, sim_d = simulated_values(sim, names)
        rng = self.ctx.rng("ibu")
        closure = Closure.build(names, data_obs, truth_obs, bins=p.bins, rng=rng, binned_with=sim_v)
        closure.flag_unrecoverable(sim_v, sim_d, p.min_support, p.min_efficiency)
        binned = {n: closure.binned(n) for n in names}
        figures: dict[str, Any] = {n: {"unrecoverable_bins": np.flatnonzero(closure.flags[n]).tolist()} for n in names}
        if truth_obs is not None:
            for n in names:
                figures[n]["data_uncorrected"] = compare(data_obs[n], truth_obs[n], closure.edges[n])
        results = run_ibu(sim_v, sim_d, closure, iterations=p.iterations, replicas=p.replicas, rng=rng,
                          binned=binned, figures=figures)
        weights = marginal_weights(sim_v, {n: r["counts"] for n, r in results.items()},
                                   {n: r["response"] for n, r in results.items()})
        residual = max(_marginal_residual(sim_v[n], weights, r["response"], r["counts"]) for n, r in results.items())
        meta = {"unfolding": "ibu", "iterations": p.iterations, "data": samples.data_name}
        out = {"unfolded": sim.vertex.with_columns(weight=weights * sim.vertex.weights),
               "refolded": sim.detector.with_columns(weight=weights * sim.detector.weights)}
        for batch in out.values():
            batch.meta.update(meta)
        self._info = {"data": samples.data_name, "truth": samples.truth_name, "simulation": sim.names,
                      "observables": figures, "binned": binned, "summary": pull_fractions(figures),
                      "data_events": len(samples.data), "measured_data_events": len(measured),
                      "weights_marginal_residual": round(residual, 6),
                      "seconds": round(time.perf_counter() - start, 2)}
        if p.plots:
            plot_closure(self._info, self.ctx, unfolded="ibu")
        return out


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register ``ibu``."""
    registry.add(IterativeBayesUnfolding)
