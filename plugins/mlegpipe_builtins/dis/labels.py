"""DIS labels of scattered leptons given per event, each event at its own beam energy.

:func:`complete_lepton` is what the lepton feature maps do after decoding
generated features: it adds the beam energy and the DIS invariants x, Q², y,
W², ν, and narrows the mask of physical events to those inside the kinematic
limits of :func:`~mlegpipe_builtins.dis.kinematics.physical_mask` (0 < x ≤ 1,
0 < y ≤ 1, W² ≥ M², Q² below its edge, which also bounds E' by E_b at
symmetric colliders and fixed target).

Per-event beam energies come from the beams' declared fields: a symmetric
E × E scan (``sym_multienergy``) declares the same field for both beams, so
the hadron beam follows the lepton's (:func:`hadron_follows`).

Example:
    >>> import numpy as np
    >>> from mlegpipe_builtins.dis.maps import TransformedLepton
    >>> from mlegpipe.beams import Beams
    >>> from mlegpipe.features import decode_events
    >>> z = np.array([[3.0, 4.0, 2.0], [60.0, 0.0, 2.0]])  # (px, py, T); the 2nd has E' > E_b, y < 0
    >>> cols, ok = decode_events(TransformedLepton(1), z, np.full(2, 50.0), Beams.preset("sym50"))
    >>> ok.tolist(), sorted(cols)[:3]
    ([True, False], ['Q2', 'W2', 'beam_energy'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe_builtins.dis import BEAM_ENERGY, DIS_LABELS, LEPTON_FIELDS

__all__ = ["beams_at", "complete_lepton", "dis_labels", "hadron_follows"]


def hadron_follows(beams: Beams | None) -> bool:
    """True when the hadron beam's per-event energy is the lepton's (symmetric E × E scans).

    Example:
        >>> hadron_follows(Beams.preset("sym50", lepton_energy="beam_energy", hadron_energy="beam_energy"))
        True
    """
    if beams is None or not beams.is_lepton_hadron:
        return False
    field = beams.field_of("lepton")
    return field is not None and beams.field_of("hadron") == field


def beams_at(beams: Beams, beam_energy: float, follows: bool | None = None) -> Beams:
    """The beams of events at lepton beam energy ``beam_energy``.

    ``follows``: the hadron beam energy equals the lepton's too (default:
    :func:`hadron_follows` of ``beams``).

    Example:
        >>> sym = Beams.preset("sym50", lepton_energy="beam_energy", hadron_energy="beam_energy")
        >>> beams_at(sym, 20.0).hadron_energy, beams_at(Beams.preset("sym50"), 20.0).hadron_energy
        (20.0, 50.0)
    """
    follows = hadron_follows(beams) if follows is None else follows
    lepton_is_a = beams.lepton_direction == 1
    hadron_energy = float(beam_energy) if follows else None
    if lepton_is_a:
        return beams.with_energies(a=float(beam_energy), b=hadron_energy)
    return beams.with_energies(a=hadron_energy, b=float(beam_energy))


def dis_labels(columns: Mapping[str, np.ndarray], beam_energy: np.ndarray, beams: Beams,
               follows: bool | None = None) -> dict[str, np.ndarray]:
    """x, Q², y, W², ν of leptons given per event, each event at its own beam energy (see :func:`beams_at`).

    Example:
        >>> from mlegpipe_builtins.dis.kinematics import lepton_from_dis
        >>> hera = Beams.preset("hera")
        >>> e, px, py, pz = lepton_from_dis(np.array([0.01]), np.array([50.0]), np.array([0.0]), hera)
        >>> cols = dict(zip(LEPTON_FIELDS, (e, px, py, pz)))
        >>> round(float(dis_labels(cols, np.array([27.6]), hera)["Q2"][0]), 8)
        50.0
    """
    from mlegpipe_builtins.dis.kinematics import dis_from_lepton

    e, px, py, pz = (np.asarray(columns[f], dtype=np.float64) for f in LEPTON_FIELDS)
    out = {k: np.empty(len(e)) for k in DIS_LABELS}
    for eb in np.unique(beam_energy):
        sel = beam_energy == eb
        dis = dis_from_lepton(e[sel], px[sel], py[sel], pz[sel], beams_at(beams, eb, follows))
        for k in DIS_LABELS:
            out[k][sel] = dis[k]
    return out


def complete_lepton(columns: dict[str, np.ndarray], beam_energy: np.ndarray, beams: Beams | None,
                    ok: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Decoded lepton columns with the beam energy and DIS labels added, ``ok`` narrowed to physical events.

    Without beams the columns are returned as they are.
    """
    if beams is None:
        return columns, ok
    columns[BEAM_ENERGY] = np.asarray(beam_energy, dtype=np.float64).copy()
    if all(f in columns for f in LEPTON_FIELDS):
        from mlegpipe_builtins.dis.kinematics import physical_mask

        follows = hadron_follows(beams)
        labels = dis_labels(columns, beam_energy, beams, follows)
        columns.update(labels)
        for eb in np.unique(beam_energy):
            sel = beam_energy == eb
            ok[sel] &= physical_mask(labels["x"][sel], labels["Q2"][sel], labels["y"][sel], labels["W2"][sel],
                                     beams_at(beams, eb, follows))
    return columns, ok
