"""Physical DIS leptons for generator tests (imported by test modules, like ``toy_stages``).

Example:
    >>> from mlegpipe.beams import Beams
    >>> len(dis_events(100, Beams.preset("sym50"), seed=0)) > 0
    True
"""

from __future__ import annotations

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe_builtins.dis.kinematics import lepton_from_dis

__all__ = ["dis_events"]


def dis_events(n: int, beams: Beams, seed: int, lepton_energy: float | None = None) -> EventBatch:
    """Physical DIS leptons: ln Q² exponential above 1 GeV², y from a beta density, φ uniform."""
    rng = np.random.default_rng(seed)
    e_beam = beams.lepton_energy if lepton_energy is None else lepton_energy
    two_pk = 2.0 * e_beam * (beams.hadron_energy + beams.hadron_momentum)
    q2 = np.exp(rng.exponential(1.0, n))
    y = 0.02 + 0.9 * rng.beta(1.5, 3.0, n)
    x = q2 / (y * two_pk)
    keep = x < 0.9
    e, px, py, pz = lepton_from_dis(x[keep], q2[keep], rng.uniform(-np.pi, np.pi, keep.sum()), beams,
                                    None if lepton_energy is None else np.full(keep.sum(), lepton_energy))
    cols = {"lepton_E": e, "lepton_px": px, "lepton_py": py, "lepton_pz": pz}
    if lepton_energy is not None:
        cols["beam_energy"] = np.full(len(e), float(lepton_energy))
    return EventBatch.from_columns(cols, beams)
