"""The closure figures of GAN unfolding: bands, pulls, the surrogate's uncertainty, baselines, 2D comparison.

Per observable, the replicas' densities give the unfolded band (vertex level)
and the refolded band (detector level); the pulls (thesis eq. 29) compare them
with the truth's and the data's bootstrap bands, with the surrogate's own
uncertainty added (its non-closure on held-out simulation pairs,
``_surrogate_syst``) and without it (``*_stat``). Bins the detector leaves
unrecoverable are flagged and left out of the vertex pulls. Beside the GAN the
baselines run on the simulation pairs with the very code of the ``ibu`` and
``omnifold`` plugins, and a pair of observables is compared in 2D.

Example:
    >>> EvaluationSettings(observables=["a"]).baselines
    ['ibu', 'omnifold']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.stages import DifferentiableSurrogate
from mlegpipe.unfold import Band, pull_summary
from mlegpipe_builtins.unfolding._closure import REFERENCE_REPLICAS, Closure, finite_list, pull_fractions
from mlegpipe_builtins.unfolding._compare2d import compare_2d
from mlegpipe_builtins.unfolding._inputs import Simulation, pass_mask
from mlegpipe_builtins.unfolding._observables import compare, density, observable
from mlegpipe_builtins.unfolding._replicas import Replica
from mlegpipe_builtins.unfolding._surrogate_syst import nonclosure_variance, unfolding_nonclosure_variance
from mlegpipe_builtins.unfolding.ibu import run_ibu, simulated_values
from mlegpipe_builtins.unfolding.omnifold import omnifold_weights, record_omnifold

__all__ = ["EvaluationSettings", "HeldOut", "evaluate", "heldout_pairs"]


@dataclass(frozen=True)
class EvaluationSettings:
    """What the closure figures compare (the ``gan-unfold`` parameters of the same names)."""

    observables: list[str] = field(default_factory=lambda: ["nu1", "nu2", "x", "Q2", "lepton_E", "lepton_theta"])
    bins: int = 30
    pair: list[str] = field(default_factory=lambda: ["x", "Q2"])
    pair_bins: int = 10
    baselines: list[str] = field(default_factory=lambda: ["ibu", "omnifold"])
    ibu_iterations: int = 4
    omnifold_iterations: int = 2
    omnifold_epochs: int = 5
    min_support: float = 10.0
    min_efficiency: float = 0.05
    replicas: int = 3


@dataclass
class HeldOut:
    """Simulation pairs the surrogate was not trained on, their vertex events also folded by the surrogate."""

    vertex: EventBatch
    detector: EventBatch
    folded: EventBatch
    names: list[str]


def heldout_pairs(samples: Mapping[str, EventBatch], sim: Simulation | None, surrogate: DifferentiableSurrogate,
                  ctx: StageContext) -> HeldOut | None:
    """The simulation pairs with ``_train`` replaced by ``_test``, else ``_valid`` (else the training pairs,
    with a warning), folded by the surrogate too (None without simulation pairs)."""
    if sim is None:
        return None
    for split in ("_test", "_valid"):
        alt = [n.replace("_train", split, 1) for n in sim.names]
        if all("_train" in n for n in sim.names) and all(a in samples for a in alt):
            vertex, detector = (samples[a] for a in alt)
            if len(vertex) == len(detector):
                names = alt
                break
    else:
        vertex, detector, names = sim.vertex, sim.detector, sim.names
        ctx.log.warning("surrogate uncertainty from its training pairs %s (no held-out pairs)", names)
    folded = surrogate.fold(vertex, ctx.seed_sequence("surrogate-uncertainty"))
    return HeldOut(vertex, detector, folded, names)


def _surrogate_variances(heldout: HeldOut, closure: Closure, iterations: int,
                         rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per observable: the surrogate's detector-level non-closure variance and its vertex-level IBU proxy."""
    mask_d, mask_f = pass_mask(heldout.detector), pass_mask(heldout.folded)
    det_var, vtx_var = {}, {}
    for n in closure.observables:
        d = np.where(mask_d, observable(heldout.detector, n, heldout.names[1]), np.nan)
        f = np.where(mask_f, observable(heldout.folded, n, f"{heldout.names[0]} (surrogate)"), np.nan)
        det_var[n] = nonclosure_variance(f, d, closure.edges[n], REFERENCE_REPLICAS, rng)
        vtx_var[n] = unfolding_nonclosure_variance(observable(heldout.vertex, n, heldout.names[0]), f, d,
                                                   closure.edges[n], closure.data_counts(n), iterations, 10, rng)
    return det_var, vtx_var


def evaluate(s: EvaluationSettings, ctx: StageContext, replicas: list[Replica], data: EventBatch,
             truth: EventBatch | None, sim: Simulation | None, vertex_features: list[str],
             detector_features: list[str], heldout: HeldOut | None = None) -> tuple[dict[str, Any], EventBatch | None]:
    """The closure figures of the replicas against the measured ``data`` (and the ``truth``, when known).

    Returns:
        the figures (``observables``, ``binned``, ``summary``, ``pair``, ``surrogate_uncertainty``) and the
        OmniFold baseline's weighted simulation (None when not run).
    """
    rng = ctx.rng("evaluate")
    names = list(s.observables)
    data_obs = {n: observable(data, n, "data") for n in names}
    truth_obs = {n: observable(truth, n, "truth") for n in names} if truth is not None else None
    unf = [{n: observable(r.events, n, "unfolded") for n in names} for r in replicas]
    ref_masks = [pass_mask(r.refolded) for r in replicas]
    ref = [{n: np.where(m, observable(r.refolded, n, "refolded"), np.nan) for n in names}
           for r, m in zip(replicas, ref_masks, strict=True)]
    closure = Closure.build(names, data_obs, truth_obs, bins=s.bins, rng=rng)
    pooled_unf = {n: np.concatenate([u[n] for u in unf]) for n in names}
    pooled_ref = {n: np.concatenate([f[n] for f in ref]) for n in names}
    # response for the unrecoverable flags: the simulation's pairs, else the surrogate on the unfolded sample
    sim_v, sim_d = simulated_values(sim, names) if sim is not None else (pooled_unf, pooled_ref)
    closure.flag_unrecoverable(sim_v, sim_d, s.min_support, s.min_efficiency)
    syst_d, syst_v = _surrogate_variances(heldout, closure, s.ibu_iterations, rng) if heldout else ({}, {})
    info: dict[str, Any] = {}
    if heldout:
        info["surrogate_uncertainty"] = {"pairs": heldout.names}
    obs: dict[str, dict[str, Any]] = {n: {} for n in names}
    binned: dict[str, Any] = {}
    for n in names:
        binned[n], obs[n] = _gan_figures(n, closure, unf, ref, pooled_unf[n], pooled_ref[n], syst_d, syst_v)
    omni_batch = None
    if sim is not None and "ibu" in s.baselines:
        run_ibu(sim_v, sim_d, closure, iterations=s.ibu_iterations, replicas=max(s.replicas, 10), rng=rng,
                binned=binned, figures=obs)
    if sim is not None and "omnifold" in s.baselines:
        result = omnifold_weights(sim, data, vertex_features, detector_features, iterations=s.omnifold_iterations,
                                  epochs=s.omnifold_epochs, replicas=s.replicas, rng=rng,
                                  generator=ctx.torch_generator("omnifold"))
        record_omnifold(result, closure, binned, obs)
        omni_batch = result.unfolded()
    if len(s.pair) == 2 and set(s.pair) <= set(names) and truth_obs is not None:
        a, b = s.pair
        omni_xy = None
        if omni_batch is not None and sim is not None:
            omni_xy = (observable(omni_batch, a, sim.names[0]), observable(omni_batch, b, sim.names[0]),
                       omni_batch.weights)
        with_ibu = sim is not None and "ibu" in s.baselines
        info["pair"] = compare_2d((a, b), (truth_obs[a], truth_obs[b]), (data_obs[a], data_obs[b]),
                                  (pooled_unf[a], pooled_unf[b]),
                                  ((sim_v[a], sim_v[b]), (sim_d[a], sim_d[b])) if with_ibu else None, omni_xy,
                                  s.pair_bins, s.ibu_iterations)
    info["observables"] = obs
    info["binned"] = binned
    info["summary"] = pull_fractions(obs)
    return info, omni_batch


def _gan_figures(n: str, closure: Closure, unf: list[dict[str, np.ndarray]], ref: list[dict[str, np.ndarray]],
                 pooled_unf: np.ndarray, pooled_ref: np.ndarray, syst_d: dict[str, np.ndarray],
                 syst_v: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bands and pulls of the GAN replicas for observable ``n``: (its ``binned`` entry, its figures)."""
    edges, data_band = closure.edges[n], closure.data_band[n]
    gan_v = Band.from_replicas(np.array([density(u[n], edges) for u in unf]))
    gan_d = Band.from_replicas(np.array([density(f[n], edges) for f in ref]))
    # pulls with the surrogate's uncertainty (when measured) and statistical only (``_stat``)
    det_pulls = gan_d.pulls(data_band, syst_d.get(n))
    entry: dict[str, Any] = {"detector_pulls": pull_summary(det_pulls),
                             "detector_pulls_stat": pull_summary(gan_d.pulls(data_band)),
                             "detector": compare(pooled_ref, closure.data[n], edges)}
    binned = {**closure.binned(n), "gan": gan_v.to_dict(), "refolded": gan_d.to_dict()}
    figures: dict[str, Any] = {}
    if n in syst_d:
        binned["surrogate_std_detector"] = finite_list(np.sqrt(syst_d[n]), 6)
        binned["surrogate_std_vertex"] = finite_list(np.sqrt(syst_v[n]), 6)
    if closure.truth is not None and closure.truth_band is not None:
        truth_band, flags = closure.truth_band[n], closure.flags[n]
        vtx_pulls = gan_v.pulls(truth_band, syst_v.get(n))
        entry["vertex"] = compare(pooled_unf, closure.truth[n], edges)
        entry["vertex_pulls"] = pull_summary(vtx_pulls, exclude=flags)
        entry["vertex_pulls_stat"] = pull_summary(gan_v.pulls(truth_band), exclude=flags)
        binned["gan_pulls"] = finite_list(vtx_pulls)
        binned["gan_pulls_stat"] = finite_list(gan_v.pulls(truth_band))
        figures["data_uncorrected"] = compare(closure.data[n], closure.truth[n], edges)
    binned["refolded_pulls"] = finite_list(det_pulls)
    binned["refolded_pulls_stat"] = finite_list(gan_d.pulls(data_band))
    figures["gan"] = entry
    figures["unrecoverable_bins"] = np.flatnonzero(closure.flags[n]).tolist()
    return binned, figures
