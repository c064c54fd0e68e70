"""The kinematic limits of inclusive DIS, as a physicality check of the DIS domain.

:data:`DIS_CHECK` is registered through the ``mlegpipe_register_physicality``
hook; :func:`mlegpipe.physicality.physicality` runs it on any events that carry
the scattered lepton (with beams) or the labels x and Q².

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.physicality import physicality
    >>> b = EventBatch.from_columns({"x": np.array([0.1, 1.2]), "y": np.array([0.5, 0.5]),
    ...                              "Q2": np.array([5.0, 5.0]), "W2": np.array([20.0, 20.0])})
    >>> physicality(b, checks=[DIS_CHECK])["unphysical"]
    0.5
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.physicality import PhysicalityCheck
from mlegpipe_builtins.dis import LEPTON_FIELDS
from mlegpipe_builtins.dis.labels import beams_at
from mlegpipe_builtins.dis.maps import beam_energy_of

__all__ = ["DIS_CHECK", "dis_limits", "dis_variables", "energy_limit_applies"]


def energy_limit_applies(beams: Beams) -> bool:
    """True where E' ≤ E_b is a kinematic limit: fixed target, or symmetric beams (lab = CM frame).

    At asymmetric colliders (HERA) the scattered lepton can carry more than the beam energy.

    Example:
        >>> energy_limit_applies(Beams.preset("sym50")), energy_limit_applies(Beams.preset("hera"))
        (True, False)
    """
    if beams.is_fixed_target:
        return True
    return abs(beams.hadron_momentum - beams.lepton_energy) <= 1e-3 * beams.lepton_energy


def _beam_energies(batch: EventBatch, beams: Beams) -> np.ndarray:
    return beam_energy_of(EventBatch(batch.arrays, beams, batch.meta))


def dis_variables(batch: EventBatch, beams: Beams | None = None) -> dict[str, np.ndarray]:
    """x, Q², y, W², ν of every event.

    From the scattered lepton with :func:`~mlegpipe_builtins.dis.kinematics.dis_from_lepton` when
    the batch has the lepton fields and beams are known (per-event beam
    energies honoured, the hadron's too where it follows the lepton's); otherwise the DIS label fields of the batch.

    Raises:
        DataError: neither the lepton with beams nor the labels x, Q2 are there.
    """
    beams = beams or batch.beams
    if beams is not None and all(batch.has(f) for f in LEPTON_FIELDS):
        from mlegpipe_builtins.dis.kinematics import dis_from_lepton

        e, px, py, pz = (batch.column(f) for f in LEPTON_FIELDS)
        energies = _beam_energies(batch, beams)
        out = {k: np.empty(len(batch)) for k in ("x", "Q2", "y", "W2", "nu")}
        for eb in np.unique(energies):
            sel = energies == eb
            dis = dis_from_lepton(e[sel], px[sel], py[sel], pz[sel], beams_at(beams, float(eb)))
            for k in out:
                out[k][sel] = np.asarray(dis[k], dtype=np.float64)
        return out
    if batch.has("x") and batch.has("Q2"):
        return {k: batch.column(k) for k in ("x", "Q2", "y", "W2", "nu") if batch.has(k)}
    raise DataError("cannot compute x and Q2: the events have neither the scattered lepton "
                    f"({', '.join(LEPTON_FIELDS)}) with known beams nor the labels x, Q2; have: "
                    + ", ".join(batch.fields))


def dis_limits(batch: EventBatch, beams: Beams | None, cuts: Mapping[str, float]) -> dict[str, np.ndarray]:
    r"""Events beyond each limit of inclusive DIS: True where broken.

    Limits: x ∉ (0, 1], y ∉ (0, 1], Q² < ``cuts["q2_min"]``, W² < ``cuts["w2_min"]``
    (cuts checked only when given), and E' > E_b where that is a limit (fixed
    target, symmetric beams; see :func:`energy_limit_applies`), E_b the per-event
    beam energy or the beams' lepton energy. Non-finite x, y, Q², W² or E'
    count as beyond the limit.

    Returns:
        ``x_outside``, ``y_outside``, ``q2_below_cut``, ``w2_below_cut``,
        ``energy_above_beam`` (those that apply), each a boolean array.
    """
    beams = beams or batch.beams
    dis = dis_variables(batch, beams)
    checks: dict[str, np.ndarray] = {}
    x = dis["x"]
    checks["x_outside"] = ~((x > 0) & (x <= 1))
    if "y" in dis:
        y = dis["y"]
        checks["y_outside"] = ~((y > 0) & (y <= 1))
    if cuts.get("q2_min") is not None:
        checks["q2_below_cut"] = ~(dis["Q2"] >= cuts["q2_min"])
    if cuts.get("w2_min") is not None and "W2" in dis:
        checks["w2_below_cut"] = ~(dis["W2"] >= cuts["w2_min"])
    if beams is not None and batch.has("lepton_E") and beams.is_lepton_hadron and energy_limit_applies(beams):
        checks["energy_above_beam"] = ~(batch.column("lepton_E") <= _beam_energies(batch, beams) * (1 + 1e-9))
    return checks


def _applies(batch: EventBatch) -> bool:
    return all(batch.has(f) for f in LEPTON_FIELDS) or (batch.has("x") and batch.has("Q2"))


#: The DIS physicality check: events with the scattered lepton (and beams) or the labels x, Q².
DIS_CHECK = PhysicalityCheck("dis", _applies, dis_limits,
                             doc="0 < x <= 1, 0 < y <= 1, the Q2 and W2 cuts, E' <= E_b where that is a limit")
