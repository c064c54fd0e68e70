"""From generated features to physical events: decoding, DIS labels and counted rejection.

A generator produces features; :func:`decode_events` turns them into event
columns (the scattered lepton, its DIS invariants x, Q², y, W², ν and the beam
energy) and says which events are physical: finite, inside the feature map's
domain, and inside the kinematic limits of :func:`mlegpipe.kinematics.physical_mask`
(0 < x ≤ 1, 0 < y ≤ 1, W² ≥ M², Q² below its edge, which also bounds E' by
E_b at symmetric colliders and fixed target), optionally also inside given
ranges (the training sample's cuts). :func:`sample_with_rejection` redraws the
unphysical ones and counts them, so a generator can report its rejected fraction.

Example:
    >>> import numpy as np
    >>> from mlegpipe.features.maps import TransformedLepton
    >>> from mlegpipe.beams import Beams
    >>> z = np.array([[3.0, 4.0, 2.0], [60.0, 0.0, 2.0]])  # (px, py, T); the 2nd has E' > E_b, y < 0
    >>> cols, ok = decode_events(TransformedLepton(1), z, np.full(2, 50.0), Beams.preset("sym50"))
    >>> ok.tolist(), sorted(cols)[:3]
    ([True, False], ['Q2', 'W2', 'beam_energy'])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import BEAM_ENERGY, DIS_LABELS, LEPTON_FIELDS
from mlegpipe.exceptions import PhysicsError
from mlegpipe.features.maps import FeatureMap

__all__ = ["beams_at", "decode_events", "dis_labels", "sample_with_rejection"]


def beams_at(beams: Beams, beam_energy: float, hadron_follows: bool = False) -> Beams:
    """The beams of events at lepton beam energy ``beam_energy``.

    ``hadron_follows``: the hadron beam energy equals the lepton's too (symmetric
    E × E samples such as ``sym_multienergy``, whose metadata says
    ``beam_setup.hadron_energy = "beam_energy"``).

    Example:
        >>> beams_at(Beams.preset("sym50"), 20.0, hadron_follows=True).hadron_energy
        20.0
    """
    if hadron_follows:
        return dataclasses.replace(beams, lepton_energy=float(beam_energy), hadron_energy=float(beam_energy))
    return dataclasses.replace(beams, lepton_energy=float(beam_energy))


def dis_labels(columns: Mapping[str, np.ndarray], beam_energy: np.ndarray, beams: Beams,
               hadron_follows: bool = False) -> dict[str, np.ndarray]:
    """x, Q², y, W², ν of leptons given per event, each event at its own beam energy (see :func:`beams_at`).

    Example:
        >>> from mlegpipe.kinematics import lepton_from_dis
        >>> hera = Beams.preset("hera")
        >>> e, px, py, pz = lepton_from_dis(np.array([0.01]), np.array([50.0]), np.array([0.0]), hera)
        >>> cols = dict(zip(LEPTON_FIELDS, (e, px, py, pz)))
        >>> round(float(dis_labels(cols, np.array([27.6]), hera)["Q2"][0]), 8)
        50.0
    """
    from mlegpipe.kinematics import dis_from_lepton

    e, px, py, pz = (np.asarray(columns[f], dtype=np.float64) for f in LEPTON_FIELDS)
    out = {k: np.empty(len(e)) for k in DIS_LABELS}
    for eb in np.unique(beam_energy):
        sel = beam_energy == eb
        dis = dis_from_lepton(e[sel], px[sel], py[sel], pz[sel], beams_at(beams, eb, hadron_follows))
        for k in DIS_LABELS:
            out[k][sel] = dis[k]
    return out


def decode_events(
    fmap: FeatureMap,
    z: np.ndarray,
    beam_energy: np.ndarray,
    beams: Beams | None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    hadron_follows: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Event columns from features ``z`` and the mask of physical events.

    Arguments:
        fmap: the feature map the model learned.
        z: ``(n, len(fmap.names))`` features.
        beam_energy: per-event lepton beam energy (also written as ``beam_energy``
            when ``beams`` is known).
        beams: the beam set-up; when known and the map yields the lepton, the DIS
            labels are added and the kinematic limits are enforced.
        ranges: optional ``{field: (low, high)}`` cuts, checked on any produced column.
        hadron_follows: the hadron beam energy equals the per-event lepton beam energy.

    Returns:
        ``(columns, physical)``: the columns by name and a boolean mask.
    """
    z = np.asarray(z, dtype=np.float64)
    beam_energy = np.asarray(beam_energy, dtype=np.float64)
    zt, ebt = torch.from_numpy(z), torch.from_numpy(beam_energy)
    with torch.no_grad():
        ok = fmap.valid(zt, ebt).numpy() & np.isfinite(z).all(axis=1)
        out = fmap.inverse(zt, ebt).numpy()
    columns = {f: out[:, i] for i, f in enumerate(fmap.fields)}
    ok &= np.isfinite(out).all(axis=1)
    if beams is not None:
        columns[BEAM_ENERGY] = beam_energy.copy()
        if all(f in columns for f in LEPTON_FIELDS):
            from mlegpipe.kinematics import physical_mask

            labels = dis_labels(columns, beam_energy, beams, hadron_follows)
            columns.update(labels)
            for eb in np.unique(beam_energy):
                sel = beam_energy == eb
                ok[sel] &= physical_mask(labels["x"][sel], labels["Q2"][sel], labels["y"][sel], labels["W2"][sel],
                                         beams_at(beams, eb, hadron_follows))
    for name, (low, high) in (ranges or {}).items():
        if name in columns:
            with np.errstate(invalid="ignore"):
                ok &= (columns[name] >= low) & (columns[name] <= high)
    return columns, ok


def sample_with_rejection(
    draw: Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]],
    n: int,
    max_rounds: int = 200,
) -> tuple[dict[str, np.ndarray], int, int]:
    """Draw ``n`` physical events, redrawing the rejected ones; count what was drawn.

    Arguments:
        draw: ``draw(indices)`` returns ``(columns, physical)`` for new events in
            the slots ``indices`` (so per-event conditions stay with their slot).
        n: number of events wanted.
        max_rounds: give up after this many redraws.

    Returns:
        ``(columns, drawn, rejected)``.

    Raises:
        PhysicsError: events are still unphysical after ``max_rounds`` redraws.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> def draw(idx):
        ...     v = rng.normal(size=len(idx))
        ...     return {"v": v}, v > 0
        >>> cols, drawn, rejected = sample_with_rejection(draw, 1000)
        >>> bool((cols["v"] > 0).all()), 0.4 < rejected / drawn < 0.6
        (True, True)
    """
    pending = np.arange(n)
    if n == 0:  # no events, but the same columns (empty) as any other call
        cols, _ = draw(pending)
        return {name: np.asarray(values)[:0] for name, values in cols.items()}, 0, 0
    result: dict[str, np.ndarray] = {}
    drawn = rejected = 0
    for _ in range(max_rounds):
        if len(pending) == 0:
            return result, drawn, rejected
        cols, ok = draw(pending)
        first = not result
        for name, values in cols.items():
            if first:  # the first round fills every slot (a plain copy); the rejected ones are redrawn below
                result[name] = np.array(values)
            else:
                result[name][pending[ok]] = values[ok]
        drawn += len(pending)
        rejected += int((~ok).sum())
        pending = pending[~ok]
    if len(pending) == 0:
        return result, drawn, rejected
    raise PhysicsError(f"{len(pending)} of {n} events are still unphysical after {max_rounds} redraws "
                       f"({rejected} of {drawn} drawn were rejected): the model puts almost all its events "
                       "outside the kinematic limits", path="generator.sample")
