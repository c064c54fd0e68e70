"""Kinematic limits of top-pair events: real quark masses and a tt̄ system that fits in √s.

Example:
    >>> from mlegpipe.beams import Beams
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe_builtins.lhc.chain import toy_ttbar
    >>> batch = EventBatch.from_columns({"quarks": toy_ttbar(50, seed=4)}, beams=Beams.preset("lhc13"))
    >>> sorted(TTBAR_CHECK.limits(batch, batch.beams, {}))
    ['above_sqrt_s', 'spacelike_quark']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch, invariant_mass, mass_squared
from mlegpipe.physicality import PhysicalityCheck
from mlegpipe_builtins.lhc import QUARKS

__all__ = ["TTBAR_CHECK"]

_MASS2_TOLERANCE = 1e-6  # relative to E²: rounding of massless partons


def _limits(batch: EventBatch, beams: Beams | None, cuts: Mapping[str, float]) -> dict[str, np.ndarray]:
    parts = batch.particles(QUARKS)
    with np.errstate(invalid="ignore"):
        m2 = mass_squared(parts)
        spacelike = np.nan_to_num(m2 < -_MASS2_TOLERANCE * parts["E"] ** 2, nan=False).any(axis=1)
        total = {c: np.nansum(v, axis=1) for c, v in parts.items()}
        mass = invariant_mass(total)
    beams = beams or batch.beams
    above = mass > beams.sqrt_s if beams is not None else np.zeros(len(batch), dtype=bool)
    return {"spacelike_quark": spacelike, "above_sqrt_s": above}


#: Quarks with E ≥ |p|; the quark system's mass below √s (with beams).
TTBAR_CHECK = PhysicalityCheck("ttbar", lambda b: b.has_collection(QUARKS), _limits,
                               doc="quarks with E ≥ |p| and a quark system below √s")
