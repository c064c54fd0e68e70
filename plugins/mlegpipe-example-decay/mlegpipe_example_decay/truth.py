"""The truth source ``decay-toy``: the B-VAE slides' toy model, a 1 → 2 decay without exact momentum conservation.

The slides (seed 001, "Toy Model") state only "1 → 2 decay with uniform angles
and no exact momentum conservation"; the numbers here are this package's
choices, all of them parameters. Each event:

1. a parent of mass ``mass`` (100 GeV) with momentum components drawn from
   N(0, ``parent_momentum``) (default 0: at rest in the lab);
2. decays in its rest frame into two daughters of mass ``daughter_mass``
   (default 0) back to back, along a direction with cos θ* uniform in
   [-1, 1] and φ* uniform in [-π, π); daughter 1 takes the drawn direction;
3. the daughters are boosted to the lab;
4. each daughter's momentum is smeared by independent Gaussians
   N(0, ``smear``) per component and its energy set back on its mass shell:
   this is the "no exact momentum conservation". The imbalance
   p_parent - p_1 - p_2 is then a Gaussian vector of width ``smear`` · √2 per
   component, its length a Maxwell distribution of scale ``smear`` · √2, and
   the pair's mass peaks at ``mass`` with a width ≈ ``smear`` · √2.

The events carry the daughters as the collection ``d`` (two particles,
``px, py, pz, E``) and the parent as the flat fields ``parent_px, parent_py,
parent_pz, parent_E`` (a collection of multiplicity one). An optional
generation cut ``pt_min`` keeps only events whose daughters both have
p_T ≥ ``pt_min``; :meth:`DecayToy.cuts` hands it to the physicality check.

Events are drawn in fixed blocks of :data:`BLOCK_EVENTS` candidates, block
``i`` from ``ctx.rng("decay", i)``: the sample depends only on the pipeline
seed, and asking for more events only appends to it.

Example:
    >>> from mlegpipe.stages import StageContext
    >>> src = DecayToy(DecayToy.Params(events=3), StageContext("truth", seed=1))
    >>> batch = src.read()
    >>> len(batch), batch.collections, batch.multiplicity("d").tolist()
    (3, ['d', 'parent'], [2, 2, 2])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import param
from mlegpipe.stages import TruthSource
from mlegpipe_example_decay.kinematics import boost, four_momentum, isotropic_directions, rest_momentum

__all__ = ["BLOCK_EVENTS", "DAUGHTERS", "PARENT", "PT_MIN_CUT", "DecayToy", "decay_events"]

#: Candidate events per random-stream block (fixed, so the sample never depends on chunking).
BLOCK_EVENTS = 50_000
#: The collection of the two daughters.
DAUGHTERS = "d"
#: The parent's flat fields ``parent_px, parent_py, parent_pz, parent_E``: a collection of multiplicity one.
PARENT = "parent"
#: The name of the daughters' p_T cut among the generation cuts (:meth:`DecayToy.cuts`).
PT_MIN_CUT = "daughter_pt_min"


def decay_events(
    n: int,
    rng: np.random.Generator,
    *,
    mass: float = 100.0,
    daughter_mass: float = 0.0,
    smear: float = 2.0,
    parent_momentum: float = 0.0,
) -> dict[str, np.ndarray]:
    """``n`` decays: ``{"parent": (n, 4), "d1": (n, 4), "d2": (n, 4)}`` four-momenta ``(px, py, pz, E)``.

    Example:
        >>> ev = decay_events(2, np.random.default_rng(0), smear=0.0)
        >>> bool(np.allclose(ev["d1"] + ev["d2"], ev["parent"]))   # no smearing: momentum and energy conserved
        True
    """
    p_star = rest_momentum(mass, daughter_mass)
    p_parent = rng.normal(0.0, 1.0, (n, 3)) * parent_momentum
    parent = four_momentum(p_parent, mass)
    direction = isotropic_directions(n, rng)
    beta = p_parent / parent[:, 3:4]
    d1 = boost(four_momentum(p_star * direction, daughter_mass), beta)
    d2 = boost(four_momentum(-p_star * direction, daughter_mass), beta)
    # the toy's missing momentum conservation: each daughter's momentum smeared on its own
    d1 = four_momentum(d1[:, :3] + rng.normal(0.0, 1.0, (n, 3)) * smear, daughter_mass)
    d2 = four_momentum(d2[:, :3] + rng.normal(0.0, 1.0, (n, 3)) * smear, daughter_mass)
    return {"parent": parent, "d1": d1, "d2": d2}


class DecayToy(TruthSource):
    """1 → 2 decay with uniform angles and no exact momentum conservation (the B-VAE slides' toy model)."""

    plugin_name: ClassVar[str] = "decay-toy"

    @dataclass
    class Params:
        events: int = param(20_000, min=1, doc="number of events")
        mass: float = param(100.0, min=0.0, exclusive_min=True, doc="parent mass M in GeV")
        daughter_mass: float = param(0.0, min=0.0, doc="mass of each daughter in GeV (< M / 2)")
        smear: float = param(2.0, min=0.0, doc="Gaussian smearing of each daughter momentum component in GeV: the "
                                               "imbalance |p_parent - p_1 - p_2| is Maxwell-distributed, scale "
                                               "smear * sqrt(2)")
        parent_momentum: float = param(0.0, min=0.0, doc="width in GeV of each parent momentum component "
                                                         "(0: the parent decays at rest)")
        pt_min: float = param(0.0, min=0.0, doc="generation cut: both daughters have p_T >= pt_min GeV (0: none)")

        def __post_init__(self) -> None:
            if not 2.0 * self.daughter_mass < self.mass:
                raise ValueError(f"daughter_mass = {self.daughter_mass} GeV: two daughters must be lighter than the "
                                 f"parent (mass = {self.mass} GeV)")

    def iter_batches(self) -> Iterator[EventBatch]:
        p = self.params
        meta = {"generator": f"mlegpipe-example-decay {self.plugin_name}", "seed": self.ctx.seed,
                "params": asdict(p)}
        wanted, block = p.events, 0
        while wanted > 0:
            ev = decay_events(BLOCK_EVENTS, self.ctx.rng("decay", block), mass=p.mass,
                              daughter_mass=p.daughter_mass, smear=p.smear, parent_momentum=p.parent_momentum)
            keep = np.ones(BLOCK_EVENTS, dtype=bool)
            for daughter in (ev["d1"], ev["d2"]):
                keep &= np.hypot(daughter[:, 0], daughter[:, 1]) >= p.pt_min
            index = np.flatnonzero(keep)[:wanted]
            if len(index) == 0:
                raise ConfigError(f"no event of {BLOCK_EVENTS} passes the daughters' p_T cut",
                                  path=f"{self.ctx.name}.pt_min", value=p.pt_min)
            block += 1
            wanted -= len(index)
            yield self._batch({k: v[index] for k, v in ev.items()}, meta)

    @staticmethod
    def _batch(ev: dict[str, np.ndarray], meta: dict[str, Any]) -> EventBatch:
        parts = np.stack([ev["d1"], ev["d2"]], axis=1)  # (n, 2, 4)
        daughters = particle_lists({c: parts[:, :, j] for j, c in enumerate(("px", "py", "pz", "E"))})
        parent = {f"{PARENT}_{c}": ev["parent"][:, j] for j, c in enumerate(("px", "py", "pz", "E"))}
        return EventBatch.from_columns({DAUGHTERS: daughters, **parent}, meta=meta)

    def cuts(self) -> dict[str, float]:
        """The daughters' p_T cut (``daughter_pt_min``) when one is set."""
        return {PT_MIN_CUT: self.params.pt_min} if self.params.pt_min > 0 else {}

    def info(self) -> dict[str, Any]:
        """The rest-frame momentum p* and the scale of the designed imbalance."""
        p = self.params
        return {"rest_momentum": rest_momentum(p.mass, p.daughter_mass),
                "imbalance_scale": float(p.smear * np.sqrt(2.0))}
