"""The decay toy's kinematic limits, registered through ``mlegpipe_register_physicality``.

:data:`DECAY_CHECK` applies to events with the daughters' collection ``d``
and flags an event as unphysical when

* ``daughter_not_physical``: a daughter has E < |p| (a negative mass squared)
  or a non-finite component;
* ``daughters_missing``: it does not hold exactly two daughters;
* ``daughter_pt_below_cut``: with the truth's generation cut ``daughter_pt_min``
  (:meth:`~mlegpipe_example_decay.truth.DecayToy.cuts`), a daughter's p_T is below it.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch, particle_lists
    >>> from mlegpipe.physicality import physicality
    >>> d = particle_lists({"px": [[3.0, -3.0], [3.0, -3.0]], "py": [[0.0, 0.0], [0.0, 0.0]],
    ...                     "pz": [[4.0, -4.0], [4.0, -4.0]], "E": [[5.0, 5.0], [4.0, 5.0]]})
    >>> out = physicality(EventBatch.from_columns({"d": d}), checks=[DECAY_CHECK])
    >>> out["unphysical"], out["daughter_not_physical"]
    (0.5, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.physicality import PhysicalityCheck
from mlegpipe_example_decay.truth import DAUGHTERS, PT_MIN_CUT

__all__ = ["DECAY_CHECK", "decay_limits"]

_ROUNDING = 1e-9  # relative: E = |p| of a massless daughter may round either way


def decay_limits(batch: EventBatch, beams: Beams | None, cuts: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Events beyond each limit of the decay toy: True where broken (see the module docstring)."""
    multiplicity = batch.multiplicity(DAUGHTERS)
    slots = max(2, int(multiplicity.max(initial=0)))
    parts = batch.particles(DAUGHTERS, slots)
    absent = np.arange(slots)[None, :] >= multiplicity[:, None]  # padded slots are judged by daughters_missing
    p = np.sqrt(parts["px"] ** 2 + parts["py"] ** 2 + parts["pz"] ** 2)
    with np.errstate(invalid="ignore"):
        physical = np.isfinite(parts["E"]) & np.isfinite(p) & (parts["E"] >= p * (1.0 - _ROUNDING))
    out = {"daughter_not_physical": ~(physical | absent).all(axis=1), "daughters_missing": multiplicity != 2}
    if cuts.get(PT_MIN_CUT) is not None:
        with np.errstate(invalid="ignore"):
            above = np.hypot(parts["px"], parts["py"]) >= cuts[PT_MIN_CUT]
        out["daughter_pt_below_cut"] = ~(above | absent).all(axis=1)
    return out


def _applies(batch: EventBatch) -> bool:
    return batch.has_collection(DAUGHTERS)


#: The decay toy's physicality check: events with the daughters ``d``.
DECAY_CHECK = PhysicalityCheck("decay", _applies, decay_limits,
                               doc="two daughters with E >= |p|, above the truth's daughter p_T cut")
