"""The DIS domain's observables: the scattered lepton, the DIS labels, ν₁ and ν₂, and the (x, Q²) pair.

Registered through the ``mlegpipe_register_observables`` hook by
:mod:`mlegpipe_builtins.dis.domain`. The lepton's p_T, θ, φ, |p| and η are the
core's automatic observables of the multiplicity-one collection ``lepton``
(:func:`mlegpipe.observables.automatic`), here given DIS labels; the labels
x, Q², y, W², ν are the events' own fields; ν₁, ν₂ (thesis ch. 7) are computed
from the lepton and the beams. The lepton observables are the DIS domain's for lepton–hadron beams
(or events without beams): a lepton of pp events gets the core's automatic ones. The (x, Q²) pair is compared on the samples'
range and on the thesis's fixed 49 × 49 log bins, with the kinematic limit
y = 1 and the Q² cut drawn on its maps.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> b = EventBatch.from_columns({"lepton_E": [5.0], "lepton_px": [3.0], "lepton_py": [0.0], "lepton_pz": [4.0]})
    >>> [round(float(OBSERVABLES[n](b)[0]), 4) for n in ("lepton_pt", "lepton_theta")]
    [3.0, 0.6435]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.observables import Observable, Pair, automatic
from mlegpipe_builtins.dis import LEPTON_FIELDS

__all__ = ["OBSERVABLES", "Q2X_PAIR", "THESIS_Q2X_BINS"]

#: The thesis's joint Q²–x binning: 49 × 49 log bins, x in [1e-3, 1], Q² in [1, 1e3] GeV².
THESIS_Q2X_BINS: tuple[tuple[float, float, int], tuple[float, float, int]] = ((1e-3, 1.0, 49), (1.0, 1e3, 49))


def _has_lepton(batch: EventBatch) -> bool:
    return all(batch.has(f) for f in LEPTON_FIELDS)


def _dis_lepton(batch: EventBatch) -> bool:
    """A scattered lepton of lepton-hadron beams (or of events without beams): a lepton at the LHC is not DIS's."""
    return _has_lepton(batch) and (batch.beams is None or batch.beams.is_lepton_hadron)


def _field(name: str, label: str, unit: str = "", log: bool = False) -> Observable:
    return Observable(name, lambda b: b.column(name), (name,), label, unit, log=log, when=_dis_lepton,
                      doc=f"the event field {name}")


def _label(name: str, label: str, unit: str = "", log: bool = False) -> Observable:
    """A DIS label: the event field when there is one, else computed from the lepton and the beams."""
    def compute(batch: EventBatch) -> np.ndarray:
        if batch.has(name):
            return batch.column(name)
        from mlegpipe_builtins.dis.physicality import dis_variables

        return dis_variables(batch)[name]

    return Observable(name, compute, (name,), label, unit, log=log,
                      when=lambda b: b.has(name) or (_has_lepton(b) and b.beams is not None and b.beams.is_lepton_hadron),
                      doc=f"{name}: the event field, else from the scattered lepton (electron method)")


def _lepton(quantity: str, label: str, unit: str, periodic: bool = False, compare: bool = True) -> Observable:
    base = automatic(f"lepton_{quantity}")
    return dataclasses.replace(base, requires=LEPTON_FIELDS[1:], label=label, unit=unit, periodic=periodic,
                               compare=compare, when=_dis_lepton)


def _lepton_hadron(batch: EventBatch) -> bool:
    return _has_lepton(batch) and batch.beams is not None and batch.beams.is_lepton_hadron


def _nu(index: int) -> Any:
    def compute(batch: EventBatch) -> np.ndarray:
        from mlegpipe_builtins.dis.kinematics import nu_from_lepton

        if batch.beams is None:
            raise DataError("nu1/nu2 need the beam set-up, but these events carry none", path="beams")
        return nu_from_lepton(batch.column("lepton_E"), batch.column("lepton_pz"), batch.beams)[index]

    return compute


_LIST: list[Observable] = [
    _field("lepton_E", "$E'$", "GeV"),
    _field("lepton_px", "$k'_x$", "GeV"),
    _field("lepton_py", "$k'_y$", "GeV"),
    _field("lepton_pz", "$k'_z$", "GeV"),
    _lepton("pt", "$k'_T$", "GeV"),
    _lepton("theta", r"$\theta'$", "rad"),
    _lepton("phi", r"$\phi'$", "rad", periodic=True),
    _label("x", "$x_{bj}$", log=True),
    _label("Q2", "$Q^2$", "GeV$^2$", log=True),
    _label("y", "$y$"),
    _label("W2", "$W^2$", "GeV$^2$", log=True),
    _label("nu", r"$\nu$", "GeV", log=True),
    _lepton("P", "$|k'|$", "GeV", compare=False),
    _lepton("eta", r"$\eta'$", "", compare=False),
    Observable("nu1", _nu(0), LEPTON_FIELDS, r"$\nu_1 = \ln(E' - k'_\parallel)$", needs_beams=True, compare=False,
               when=_lepton_hadron, doc="thesis ch. 7: ln(Q^2 / 2E_b) at a collider"),
    Observable("nu2", _nu(1), LEPTON_FIELDS, r"$\nu_2 = \ln(2E_b - E' - k'_\parallel)$", needs_beams=True,
               compare=False, when=_lepton_hadron, doc="thesis ch. 7: ln(2 E_b y) at a collider"),
    Observable("beam_energy", lambda b: b.column("beam_energy"), ("beam_energy",), "$E_b$", "GeV", compare=False,
               doc="the per-event lepton beam energy (a condition of energy scans)"),
]
#: The DIS observables by name, in the order reports show them.
OBSERVABLES: dict[str, Observable] = {o.name: o for o in _LIST}


def _q2x_values(batch: EventBatch) -> tuple[np.ndarray, np.ndarray]:
    from mlegpipe_builtins.dis.physicality import dis_variables

    dis = dis_variables(batch)
    return dis["x"], dis["Q2"]


def _q2x_overlay(ax: Any, beams: Beams | None, cuts: dict[str, float] | None = None) -> None:
    """The kinematic limit Q² = x (s - M²) (y = 1) and the Q² cut on a Q²–x map."""
    x_low, x_high = ax.get_xlim()
    xs = np.geomspace(max(x_low, 1e-12), x_high, 200)
    drawn = False
    if beams is not None and beams.is_lepton_hadron:
        ax.plot(xs, xs * (beams.s - beams.hadron_mass**2), color="red", linewidth=1.5, label=r"$y = 1$")
        drawn = True
    q2_min = (cuts or {}).get("q2_min")
    if q2_min is not None:
        ax.axhline(q2_min, color="white", linestyle="--", linewidth=1.5, label=rf"$Q^2 = {q2_min:g}$")
        drawn = True
    ax.set_xlim(x_low, x_high)
    if drawn:
        ax.legend(loc="upper left", fontsize=10, frameon=True)


#: x and Q² compared jointly: computed from the lepton and the beams where possible (else the labels),
#: with the thesis's fixed binning and the kinematic limits drawn.
Q2X_PAIR = Pair("x", "Q2", bins=THESIS_Q2X_BINS, values=_q2x_values, overlay=_q2x_overlay)
