"""Completing the unfolded sample with the simulation where the detector does not see, and sampling it.

The detector measures only a fraction of the events (ε(v): the surrogate's
pass probability). ``G_v`` learns the full density wherever ε > 0, through the
thinned fakes; where the detector is blind the data say nothing, and the
simulation fills in (``complete``):

- :class:`UnseenCompletion` (``"unseen"``): ``G_v`` events where ε(v) ≥ ``threshold``,
  as many as make the data's measured fraction once folded, and simulation
  events where ε(v) < ``threshold``;
- :class:`SimulationCompletion` (``"simulation"``): ``G_v`` thinned by ε(v) gives the
  measured fraction, simulation events drawn ∝ 1 − ε(v) the rest (biased toward
  the prior where the data's truth differs from it and acceptance is partial).

:func:`completion_pool` prepares the simulation events and their
probabilities; :func:`sample_unfolded` draws one replica's unfolded events.

Example:
    >>> UnseenCompletion(0.05).pool_weights(np.array([0.0, 0.5])).tolist()
    [1.0, 0.0]
    >>> SimulationCompletion().pool_weights(np.array([0.0, 0.5])).tolist()
    [1.0, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.stages import DifferentiableSurrogate
from mlegpipe_builtins.unfolding._inputs import Simulation, feature_columns
from mlegpipe_builtins.unfolding._surrogate import efficiency, pass_probability
from mlegpipe_builtins.unfolding._vertex_model import VertexDecoder

__all__ = ["CompletionPool", "CompletionRule", "SimulationCompletion", "UnseenCompletion", "completion_pool",
           "completion_rule", "sample_unfolded"]


class CompletionRule:
    """Which generator events an unfolded sample keeps and which simulation events complete it."""

    mode: str = ""

    def pool_weights(self, eps: np.ndarray) -> np.ndarray:
        """Unnormalized probabilities of the simulation events (pass probabilities ``eps``) to complete with."""
        raise NotImplementedError

    def select(self, surrogate: DifferentiableSurrogate, v_std: torch.Tensor, generator: torch.Generator,
               rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        """Which generator events (standardized vertex features ``v_std``) to keep, and the expected number
        of them the detector passes (None: every kept event stands for a passed one)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The rule in the stage's figures."""
        return {"mode": self.mode}


@dataclass(frozen=True)
class UnseenCompletion(CompletionRule):
    """``G_v`` where ε(v) ≥ ``threshold``, the simulation where ε(v) < ``threshold`` (the detector is blind)."""

    threshold: float = 0.05
    mode = "unseen"

    def pool_weights(self, eps: np.ndarray) -> np.ndarray:
        return (eps < self.threshold).astype(np.float64)

    def select(self, surrogate: DifferentiableSurrogate, v_std: torch.Tensor, generator: torch.Generator,
               rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        eps = efficiency(surrogate, v_std, generator)
        keep = eps >= self.threshold
        return keep, float(eps[keep].sum())

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "threshold": self.threshold}


@dataclass(frozen=True)
class SimulationCompletion(CompletionRule):
    """ε(v)·G_v plus (1 − ε(v))·simulation: the prior fills in also where acceptance is partial."""

    mode = "simulation"

    def pool_weights(self, eps: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - eps, 0.0, 1.0)

    def select(self, surrogate: DifferentiableSurrogate, v_std: torch.Tensor, generator: torch.Generator,
               rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        return rng.random(len(v_std)) < efficiency(surrogate, v_std, generator, draws=1), None


def completion_rule(complete: str, threshold: float) -> CompletionRule | None:
    """The rule of ``complete`` (``unseen``, ``simulation``; None for ``none``).

    Example:
        >>> completion_rule("unseen", 0.1)
        UnseenCompletion(threshold=0.1)
    """
    return {"unseen": UnseenCompletion(threshold), "simulation": SimulationCompletion()}.get(complete)


@dataclass
class CompletionPool:
    """The simulation prior for what the detector does not see.

    Attributes:
        measured_fraction: the data's fraction of measured events (what the generator part folds to).
        events: the simulation's vertex events, as the decoder writes unfolded events.
        probabilities: of each event being drawn to complete (sum 1).
        rule: how generator and simulation events share the phase space.
    """

    measured_fraction: float
    events: EventBatch
    probabilities: np.ndarray
    rule: CompletionRule

    def describe(self) -> dict[str, Any]:
        """The completion in the stage's figures."""
        return {"measured_fraction": round(self.measured_fraction, 5), "prior": "simulation", **self.rule.describe()}


def completion_pool(rule: CompletionRule | None, surrogate: DifferentiableSurrogate, decoder: VertexDecoder,
                    sim: Simulation | None, fraction: float, no_flag: bool, ctx: StageContext) -> CompletionPool | None:
    """The simulation prior of ``rule`` (None, logged why, when the sample is not completed).

    Arguments:
        fraction: the data's measured fraction.
        no_flag: the data carry no unmeasured events (no pass flag).
    """
    why = ("complete = 'none'" if rule is None else
           "no simulation pairs" if sim is None else
           "the surrogate learned no acceptance" if pass_probability(surrogate) is None else
           "the data carry no unmeasured events (no pass flag)" if no_flag else "")
    if why:
        ctx.log.info("unfolded sample not completed with the simulation prior: %s", why)
        return None
    assert rule is not None and sim is not None
    matrix = feature_columns(sim.vertex, list(surrogate.vertex_features), sim.names[0], "surrogate")
    ok = np.isfinite(matrix).all(axis=1)
    with torch.no_grad():
        v_std = surrogate.vertex_scaler.transform(torch.as_tensor(matrix[ok], dtype=torch.float32))
        eps = efficiency(surrogate, v_std, ctx.torch_generator("completion"))
    weights = rule.pool_weights(eps)
    if weights.sum() <= 0:
        ctx.log.info("unfolded sample not completed: the simulation has no events the detector misses")
        return None
    return CompletionPool(fraction, decoder.from_events(sim.vertex.take(ok)), weights / weights.sum(), rule)


def sample_unfolded(net: nn.Module, noise_dim: int, decoder: VertexDecoder, n: int, replica: int,
                    surrogate: DifferentiableSurrogate, pool: CompletionPool | None,
                    rng: np.random.Generator) -> EventBatch:
    """``n`` unfolded events of one replica (field ``prior``: 1 for events of the simulation prior).

    Without a pool: ``n`` generator events. With one the generator events kept by its rule make the data's
    measured fraction f once folded: ``UnseenCompletion`` keeps those where ε(v) ≥ ε_min, n_G of them with
    n_G ⟨ε⟩_G = n f; ``SimulationCompletion`` thins them by ε(v) to n f. Simulation events drawn from the
    pool make the rest, p(v) = ε(v) p(v) + (1 − ε(v)) p(v), the second term (which the detector never sees
    in full) from the simulation.
    """
    n_gan = n if pool is None else int(round(pool.measured_fraction * n))
    kept: list[EventBatch] = []
    have = 0
    eps_sum = eps_count = 0.0
    for _ in range(50):
        m = n_gan if pool is None else max(2 * (n_gan - have), 1024)
        noise = torch.as_tensor(rng.standard_normal((m, noise_dim)), dtype=torch.float32)
        phi = rng.uniform(0.0, 2 * np.pi, size=m)
        with torch.no_grad():
            out_t = net(noise)
            keep = np.ones(m, bool)
            if pool is not None:
                v_std = decoder.to_surrogate(out_t, torch.as_tensor(phi, dtype=torch.float32))
                gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
                keep, passing = pool.rule.select(surrogate, v_std, gen, rng)
                if passing is not None:
                    eps_sum, eps_count = eps_sum + passing, eps_count + float(keep.sum())
        if pool is not None and eps_sum > 0:  # the kept part of G_v folds to n f events: n_G ⟨ε⟩ = n f
            n_gan = min(n, int(round(pool.measured_fraction * n * eps_count / eps_sum)))
        batch = decoder.to_events(out_t.double().numpy()[keep], phi[keep])
        kept.append(batch.take(slice(0, max(n_gan - have, 0))))
        have += len(kept[-1])
        if have >= n_gan:
            break
    events = EventBatch.concat(kept).with_columns(prior=np.zeros(have, dtype=np.int8))
    if pool is not None and n > have:
        idx = rng.choice(len(pool.events), size=n - have, p=pool.probabilities)
        prior = pool.events.take(idx)
        events = EventBatch.concat([events, prior.with_columns(prior=np.ones(len(prior), dtype=np.int8))])
    return events.with_columns(replica=np.full(len(events), replica, dtype=np.int32))
