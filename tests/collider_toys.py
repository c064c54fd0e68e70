"""Toy truth sources of particle collections, registered like a third-party plugin (``load_plugins(extra=...)``).

* ``toy-jets``: events of 1 to 3 "jets" (variable multiplicity, ordered by p_T),
  a flat field ``c`` the jets' p_T scale follows (a condition), and ``met``;
* ``toy-pair``: events of exactly two massless particles back to back in φ
  (a fixed-multiplicity collection ``p``).

The module also registers, through the extension hooks, a feature map
(``log_c``: learns ln c) and an observable (``c_squared``), as any third-party
plugin would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.features import FeatureMap
from mlegpipe.observables import Observable
from mlegpipe.schema import param
from mlegpipe.stages import TruthSource

#: Probabilities of 1, 2, 3 jets.
JET_MULTIPLICITY = (0.5, 0.3, 0.2)


class ToyJets(TruthSource):
    """1-3 jets with p_T ~ c·Exp, |η| < 2.5, uniform φ; a field c in [1, 3] scales the p_T; met."""

    plugin_name: ClassVar[str] = "toy-jets"

    @dataclass
    class Params:
        events: int = param(4000, min=1)

    def iter_batches(self) -> Iterator[EventBatch]:
        rng = self.ctx.rng("events")
        n = self.params.events
        mult = rng.choice([1, 2, 3], size=n, p=JET_MULTIPLICITY)
        c = rng.uniform(1.0, 3.0, n)
        pts = [np.sort(20.0 * c[i] * (1.0 + rng.exponential(1.0, mult[i])))[::-1] for i in range(n)]
        flat_pt = np.concatenate(pts)
        total = len(flat_pt)
        jets = particle_lists({
            "pt": np.split(flat_pt, np.cumsum(mult)[:-1]),
            "eta": np.split(rng.uniform(-2.5, 2.5, total), np.cumsum(mult)[:-1]),
            "phi": np.split(rng.uniform(-np.pi, np.pi, total), np.cumsum(mult)[:-1]),
            "mass": np.split(rng.uniform(2.0, 10.0, total), np.cumsum(mult)[:-1]),
        })
        yield EventBatch.from_columns({"jets": jets, "c": c, "met": rng.exponential(10.0, n)})


class ToyPair(TruthSource):
    """Two massless particles with p_T ~ 30 GeV·Gamma(4), back to back in φ, η_2 = -η_1 + N(0, 0.3)."""

    plugin_name: ClassVar[str] = "toy-pair"

    @dataclass
    class Params:
        events: int = param(4000, min=1)

    def iter_batches(self) -> Iterator[EventBatch]:
        rng = self.ctx.rng("events")
        n = self.params.events
        pt = 30.0 * rng.gamma(4.0, 0.25, n)
        eta1 = rng.normal(0.0, 1.0, n)
        phi1 = rng.uniform(-np.pi, np.pi, n)
        phi2 = np.mod(phi1 + 2 * np.pi, 2 * np.pi) - np.pi
        p = particle_lists({"pt": np.stack([pt, pt], 1), "eta": np.stack([eta1, -eta1 + rng.normal(0, 0.3, n)], 1),
                            "phi": np.stack([phi1, phi2], 1), "mass": np.zeros((n, 2))})
        yield EventBatch.from_columns({"p": p})


class LogC(FeatureMap):
    """A third-party feature map: the field c learned as ln c (so it stays positive)."""

    name = "log_c"
    fields = inputs = ("c",)
    names = ("ln_c",)

    def forward(self, x: torch.Tensor, context: Any = 0.0) -> torch.Tensor:
        return torch.log(x)

    def inverse(self, z: torch.Tensor, context: Any = 0.0) -> torch.Tensor:
        return torch.exp(z)


C_SQUARED = Observable("c_squared", lambda b: b.column("c") ** 2, ("c",), label="$c^2$", doc="c squared")


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    registry.add(ToyJets)
    registry.add(ToyPair)


@hookimpl
def mlegpipe_register_feature_maps(registry: Any) -> None:
    registry.add(LogC.name, LogC)


@hookimpl
def mlegpipe_register_observables(registry: Any) -> None:
    registry.add(C_SQUARED.name, C_SQUARED)
