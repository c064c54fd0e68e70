"""Physicality: the fraction of events beyond the kinematic limits of inclusive DIS.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> b = EventBatch.from_columns({"x": np.array([0.1, 1.2]), "y": np.array([0.5, 0.5]),
    ...                              "Q2": np.array([5.0, 5.0]), "W2": np.array([20.0, 20.0])})
    >>> physicality(b)["unphysical"]
    0.5
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import BEAM_ENERGY, LEPTON_FIELDS, EventBatch
from mlegpipe.exceptions import DataError

__all__ = ["dis_variables", "energy_limit_applies", "physicality"]


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
    return batch.column(BEAM_ENERGY) if batch.has(BEAM_ENERGY) else np.full(len(batch), beams.lepton_energy)


def dis_variables(batch: EventBatch, beams: Beams | None = None) -> dict[str, np.ndarray]:
    """x, Q², y, W², ν of every event.

    From the scattered lepton with ``mlegpipe.kinematics.dis_from_lepton`` when
    the batch has the lepton fields and beams are known (per-event
    ``beam_energy`` honoured); otherwise the DIS label fields of the batch.

    Raises:
        DataError: neither the lepton with beams nor the labels x, Q2 are there.
    """
    beams = beams or batch.beams
    if beams is not None and all(batch.has(f) for f in LEPTON_FIELDS):
        from mlegpipe.kinematics import dis_from_lepton

        e, px, py, pz = (batch.column(f) for f in LEPTON_FIELDS)
        energies = _beam_energies(batch, beams)
        out = {k: np.empty(len(batch)) for k in ("x", "Q2", "y", "W2", "nu")}
        for eb in np.unique(energies):
            sel = energies == eb
            dis = dis_from_lepton(e[sel], px[sel], py[sel], pz[sel], dataclasses.replace(beams, lepton_energy=float(eb)))
            for k in out:
                out[k][sel] = np.asarray(dis[k], dtype=np.float64)
        return out
    if batch.has("x") and batch.has("Q2"):
        return {k: batch.column(k) for k in ("x", "Q2", "y", "W2", "nu") if batch.has(k)}
    raise DataError("cannot compute x and Q2: the events have neither the scattered lepton "
                    f"({', '.join(LEPTON_FIELDS)}) with known beams nor the labels x, Q2; have: "
                    + ", ".join(batch.fields))


def physicality(
    batch: EventBatch,
    beams: Beams | None = None,
    q2_min: float | None = None,
    w2_min: float | None = None,
) -> dict[str, Any]:
    r"""Fractions of events beyond each kinematic limit, and beyond any of them.

    Limits: x ∉ (0, 1], y ∉ (0, 1], Q² < ``q2_min``, W² < ``w2_min`` (cuts
    checked only when given), and E' > E_b where that is a limit (fixed target,
    symmetric beams; see :func:`energy_limit_applies`), E_b the per-event
    ``beam_energy`` or the beams' lepton energy. Non-finite x, y, Q², W² or E'
    count as beyond the limit.

    Returns:
        dict with ``unphysical`` (fraction beyond any limit), one fraction per
        checked limit (``x_outside``, ``y_outside``, ``q2_below_cut``,
        ``w2_below_cut``, ``energy_above_beam``) and ``n_events``.
    """
    n = len(batch)
    if n == 0:
        raise DataError("physicality of an empty sample is undefined")
    beams = beams or batch.beams
    dis = dis_variables(batch, beams)
    checks: dict[str, np.ndarray] = {}
    x = dis["x"]
    checks["x_outside"] = ~((x > 0) & (x <= 1))
    if "y" in dis:
        y = dis["y"]
        checks["y_outside"] = ~((y > 0) & (y <= 1))
    if q2_min is not None:
        checks["q2_below_cut"] = ~(dis["Q2"] >= q2_min)
    if w2_min is not None and "W2" in dis:
        checks["w2_below_cut"] = ~(dis["W2"] >= w2_min)
    if beams is not None and batch.has("lepton_E") and energy_limit_applies(beams):
        checks["energy_above_beam"] = ~(batch.column("lepton_E") <= _beam_energies(batch, beams) * (1 + 1e-9))
    any_bad = np.zeros(n, dtype=bool)
    for bad in checks.values():
        any_bad |= bad
    out: dict[str, Any] = {"unphysical": float(any_bad.mean()), "n_events": n}
    out.update({k: float(v.mean()) for k, v in checks.items()})
    return out
