"""The decay toy's own observables and its 2D pair, registered through ``mlegpipe_register_observables``.

* ``decay_mass``: the invariant mass m₁₂ of the two daughters (peaks at the parent mass);
* ``decay_opening``: the opening angle between the daughters (π for a parent at rest
  without smearing);
* ``decay_cos_theta``: cos θ* of daughter 1 w.r.t. +z in the rest frame of the
  pair d₁ + d₂, which needs nothing but the daughters (uniform in [-1, 1]: the
  toy is isotropic);
* ``decay_imbalance``: |p_parent - p₁ - p₂|, the toy's missing momentum
  conservation (needs the parent, so it exists for truth events, not for
  events of a generator that learns only the daughters);
* the pair (``decay_mass``, ``decay_opening``), drawn as a 2D map.

Names start with ``decay_`` so they cannot clash with another domain's (the DIS
domain registers x, Q2, y, W2, nu, lepton_*) nor with the core's automatic
observables of the collection ``d`` (``d1_pt``, ``d2_eta``, ``n_d``).

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch, particle_lists
    >>> d = particle_lists({"px": [[3.0, -3.0]], "py": [[0.0, 0.0]], "pz": [[4.0, -4.0]], "E": [[5.0, 5.0]]})
    >>> batch = EventBatch.from_columns({"d": d})
    >>> [round(float(OBSERVABLES[n](batch)[0]), 4) for n in ("decay_mass", "decay_opening", "decay_cos_theta")]
    [10.0, 3.1416, 0.8]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlegpipe.events import FOUR_MOMENTUM, EventBatch
from mlegpipe.observables import Observable, Pair
from mlegpipe_example_decay.kinematics import cos_theta_star, imbalance, invariant_mass, opening_angle
from mlegpipe_example_decay.truth import DAUGHTERS, PARENT

__all__ = ["MASS_OPENING_PAIR", "OBSERVABLES", "daughters", "parent"]


def daughters(batch: EventBatch) -> tuple[np.ndarray, np.ndarray]:
    """The two daughters as ``(n, 4)`` arrays ``(px, py, pz, E)`` (NaN where an event has fewer)."""
    parts = batch.particles(DAUGHTERS, 2)
    stacked = np.stack([parts[c] for c in FOUR_MOMENTUM], axis=2)  # (n, 2, 4)
    return stacked[:, 0], stacked[:, 1]


def parent(batch: EventBatch) -> np.ndarray:
    """The parent as an ``(n, 4)`` array ``(px, py, pz, E)``."""
    return np.stack([batch.column(f"{PARENT}_{c}") for c in FOUR_MOMENTUM], axis=1)


def _mass(batch: EventBatch) -> np.ndarray:
    return invariant_mass(*daughters(batch))


def _opening(batch: EventBatch) -> np.ndarray:
    return opening_angle(*daughters(batch))


def _cos_theta(batch: EventBatch) -> np.ndarray:
    d1, d2 = daughters(batch)
    return cos_theta_star(d1, d1 + d2)


def _imbalance(batch: EventBatch) -> np.ndarray:
    return imbalance(parent(batch), *daughters(batch))


def _collections(*names: str) -> Callable[[EventBatch], bool]:
    """Availability: the events have these particle collections (a flat field of the same name is not one)."""
    return lambda batch: all(batch.has_collection(n) for n in names)


_LIST: list[Observable] = [
    Observable("decay_mass", _mass, (DAUGHTERS,), r"$m_{12}$", "GeV", when=_collections(DAUGHTERS),
               doc="invariant mass of the two daughters"),
    Observable("decay_opening", _opening, (DAUGHTERS,), r"$\alpha_{12}$", "rad", when=_collections(DAUGHTERS),
               doc="opening angle between the daughters"),
    Observable("decay_cos_theta", _cos_theta, (DAUGHTERS,), r"$\cos\theta^*_1$", when=_collections(DAUGHTERS),
               doc="cos theta* of daughter 1 (w.r.t. +z) in the rest frame of the pair d1 + d2"),
    Observable("decay_imbalance", _imbalance, (PARENT, DAUGHTERS), r"$|\vec p - \vec p_1 - \vec p_2|$", "GeV",
               when=_collections(PARENT, DAUGHTERS),
               doc="momentum imbalance |p_parent - p_1 - p_2| (0 with exact momentum conservation)"),
]
#: The decay toy's observables by name, in the order reports show them.
OBSERVABLES: dict[str, Observable] = {o.name: o for o in _LIST}

#: The pair mass against the opening angle: the smearing moves both together.
MASS_OPENING_PAIR = Pair("decay_mass", "decay_opening")
