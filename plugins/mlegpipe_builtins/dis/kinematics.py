"""Inclusive DIS kinematics: (x, Q², y, W², ν) from the scattered lepton, and back.

Vectorized NumPy functions for head-on lepton-hadron beams (collider or fixed
target, either lepton direction, see :class:`mlegpipe.beams.Beams`). The beam
lepton is massless; the invariants are computed from the four-vectors
k (beam lepton), P (beam hadron) and k' (scattered lepton):

    Q² = -(k - k')², ν = P·q / M, x = Q² / (2 P·q), y = P·q / P·k, W² = M² + 2 P·q - Q².

Besides the inverse (x, Q², φ) → k' (exact for a massless scattered lepton),
the module holds the feature transforms that keep generated events physical:
the thesis ch. 7 pair (ν₁, ν₂) and the FAT-GAN transform T(p_z) = ln(E_b - p_z).

Each function also takes an optional per-event ``lepton_energy`` overriding the
beam preset's, for samples that mix beam energies (cFAT-GAN).

Example:
    >>> import numpy as np
    >>> from mlegpipe.beams import Beams
    >>> hera = Beams.preset("hera")
    >>> E, px, py, pz = lepton_from_dis(np.array([0.01]), np.array([100.0]), np.array([0.3]), hera)
    >>> dis = dis_from_lepton(E, px, py, pz, hera)
    >>> round(float(dis["x"][0]), 10), round(float(dis["Q2"][0]), 8)
    (0.01, 100.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from mlegpipe.beams import Beams

if TYPE_CHECKING:
    from mlegpipe.events import EventBatch

__all__ = [
    "dis_from_batch",
    "dis_from_lepton",
    "kinematic_limits",
    "lepton_from_dis",
    "lepton_from_nu",
    "nu_from_lepton",
    "physical_mask",
    "q2_max",
    "q2_min_from_w2",
    "t_pz",
    "t_pz_inverse",
    "y_from_x_q2",
    "y_limit",
]


def _lepton_energy(beams: Beams, lepton_energy: ArrayLike | None) -> np.ndarray | float:
    """The beam lepton energy: the preset's, or the per-event override."""
    if lepton_energy is None:
        return beams.lepton_energy
    return np.asarray(lepton_energy, dtype=np.float64)


def _two_p_dot_k(beams: Beams, e_lepton: np.ndarray | float) -> np.ndarray | float:
    """2 P·k = s - M² for a massless beam lepton of energy ``e_lepton``."""
    return 2.0 * e_lepton * (beams.hadron_energy + beams.hadron_momentum)


def y_from_x_q2(x: ArrayLike, q2: ArrayLike, beams: Beams, lepton_energy: ArrayLike | None = None) -> np.ndarray:
    """Inelasticity y = Q² / (x (s - M²)), exact for a massless beam lepton.

    Example:
        >>> round(float(y_from_x_q2(0.01, 100.0, Beams.preset("hera"))), 5)
        0.09846
    """
    e = _lepton_energy(beams, lepton_energy)
    return np.asarray(q2, dtype=np.float64) / (np.asarray(x, dtype=np.float64) * _two_p_dot_k(beams, e))


def dis_from_lepton(
    E: ArrayLike,  # noqa: N803 - physics notation
    px: ArrayLike,
    py: ArrayLike,
    pz: ArrayLike,
    beams: Beams,
    lepton_energy: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """DIS invariants of scattered leptons ``(E, px, py, pz)`` in the lab frame.

    Arguments:
        E, px, py, pz: scattered-lepton four-momentum components in GeV.
        beams: the beam set-up (lepton direction, hadron energy and mass).
        lepton_energy: per-event beam-lepton energy overriding ``beams.lepton_energy``.

    Returns:
        ``{"x", "Q2", "y", "W2", "nu"}``, each a float64 array (ν is the energy
        transfer in the hadron rest frame, P·q/M).

    Example:
        >>> b = Beams.preset("jlab")  # electron at 10.6 GeV on a proton at rest
        >>> d = dis_from_lepton([5.0], [2.0], [0.0], [np.sqrt(21.0)], b)
        >>> round(float(d["nu"][0]), 6)
        5.6
    """
    E = np.asarray(E, dtype=np.float64)  # noqa: N806
    px, py, pz = (np.asarray(a, dtype=np.float64) for a in (px, py, pz))
    e_beam = _lepton_energy(beams, lepton_energy)
    d = beams.lepton_direction
    mass = beams.hadron_mass
    p_energy, p_z = beams.hadron_energy, -d * beams.hadron_momentum
    # q = k - k'
    q0 = e_beam - E
    qz = d * e_beam - pz
    q2 = px * px + py * py + qz * qz - q0 * q0
    p_dot_q = p_energy * q0 - p_z * qz
    p_dot_k = 0.5 * _two_p_dot_k(beams, e_beam)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = q2 / (2.0 * p_dot_q)
    y = p_dot_q / p_dot_k
    w2 = mass * mass + 2.0 * p_dot_q - q2
    nu = p_dot_q / mass
    return {"x": x, "Q2": q2, "y": np.broadcast_to(y, q2.shape).copy(), "W2": w2, "nu": nu}


def lepton_from_dis(
    x: ArrayLike,
    Q2: ArrayLike,  # noqa: N803 - physics notation
    phi: ArrayLike,
    beams: Beams,
    lepton_energy: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The massless scattered lepton ``(E, px, py, pz)`` for given (x, Q², φ).

    Exact inverse of :func:`dis_from_lepton` for a massless lepton. With θ the
    polar angle from the hadron direction, k·k' = Q²/2 and P·k' = (1 - y) P·k
    give E' = (1 - y) E_e + p_p Q² / (2 E_e (E_p + p_p)) and
    1 + cos θ = Q² / (2 E_e E').

    Arguments:
        x, Q2: Bjorken x and Q² (GeV²), broadcastable.
        phi: azimuth of the scattered lepton in radians.
        beams: the beam set-up.
        lepton_energy: per-event beam-lepton energy overriding ``beams.lepton_energy``.

    Returns:
        Four float64 arrays; NaN where (x, Q²) lies beyond the kinematic edge
        (Q² > :func:`q2_max`), so no lepton exists.

    Example:
        >>> E, px, py, pz = lepton_from_dis(0.1, 10.0, 0.0, Beams.preset("hera"))
        >>> bool(E > 0 and pz < 0)  # HERA: the electron goes on backwards (-z)
        True
    """
    x = np.asarray(x, dtype=np.float64)
    q2 = np.asarray(Q2, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    e_beam = _lepton_energy(beams, lepton_energy)
    two_pk = _two_p_dot_k(beams, e_beam)
    y = q2 / (x * two_pk)
    energy = (1.0 - y) * e_beam + beams.hadron_momentum * q2 / two_pk
    # a = 1 + cos(theta), theta measured from the hadron direction
    with np.errstate(divide="ignore", invalid="ignore"):
        a = q2 / (2.0 * e_beam * energy)
        sin2 = a * (2.0 - a)
    # beyond the kinematic edge (cos θ < -1, E' ≤ 0, x or Q² ≤ 0) there is no lepton: NaN
    unphysical = ~(sin2 > -1e-9) | ~(energy > 0) | ~(x > 0) | ~(q2 > 0)
    pt = energy * np.sqrt(np.clip(sin2, 0.0, None))
    p_along_hadron = q2 / (2.0 * e_beam) - energy  # = E' cos(theta)
    pz = -beams.lepton_direction * p_along_hadron
    out = [np.broadcast_to(c, unphysical.shape).copy() for c in (energy, pt * np.cos(phi), pt * np.sin(phi), pz)]
    for c in out:
        c[unphysical] = np.nan
    return out[0], out[1], out[2], out[3]


def nu_from_lepton(
    E: ArrayLike,  # noqa: N803 - physics notation
    pz: ArrayLike,
    beams: Beams,
    lepton_energy: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The thesis ch. 7 features ν₁ = ln(k'₀ - k'∥), ν₂ = ln(2E_e - k'₀ - k'∥).

    k'∥ = lepton_direction · p_z is the momentum along the beam lepton. For a
    massless lepton at a high-energy collider ν₁ = ln(Q²/2E_e) exactly and
    ν₂ ≈ ln(2E_e y) (up to M²/E_p² corrections). Where 2E_e - k'₀ - k'∥ ≤ 0
    (smeared events) ν₂ is NaN: pass a larger ``lepton_energy`` there, as the
    thesis does with the largest detector-level energy.

    Example:
        >>> nu1, nu2 = nu_from_lepton([10.0], [8.0], Beams.preset("hera"))
        >>> round(float(nu1[0]), 6) == round(float(np.log(18.0)), 6)
        True
    """
    E = np.asarray(E, dtype=np.float64)  # noqa: N806
    p_par = beams.lepton_direction * np.asarray(pz, dtype=np.float64)
    e_beam = _lepton_energy(beams, lepton_energy)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu1 = np.log(E - p_par)
        nu2 = np.log(2.0 * e_beam - E - p_par)
    return nu1, nu2


def lepton_from_nu(
    nu1: ArrayLike,
    nu2: ArrayLike,
    phi: ArrayLike,
    beams: Beams,
    lepton_energy: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`nu_from_lepton` for a massless lepton: ``(E, px, py, pz)``.

    With A = e^ν₁ = E' - k'∥ and B = 2E_e - e^ν₂ = E' + k'∥: E' = (A + B)/2,
    k'∥ = (B - A)/2, p_T = √(A B). Any (ν₁, ν₂) with B > 0 gives a physical
    massless lepton with k'₀ + k'∥ < 2 E_e.

    Example:
        >>> E, px, py, pz = lepton_from_nu([np.log(18.0)], [np.log(53.2)], [0.0], Beams.preset("hera"))
        >>> round(float(E[0]), 6), round(float(pz[0]), 6)
        (10.0, 8.0)
    """
    a = np.exp(np.asarray(nu1, dtype=np.float64))
    e_beam = _lepton_energy(beams, lepton_energy)
    b = 2.0 * e_beam - np.exp(np.asarray(nu2, dtype=np.float64))
    phi = np.asarray(phi, dtype=np.float64)
    energy = 0.5 * (a + b)
    p_par = 0.5 * (b - a)
    pt = np.sqrt(np.clip(a * b, 0.0, None))
    return energy, pt * np.cos(phi), pt * np.sin(phi), beams.lepton_direction * p_par


def t_pz(pz: ArrayLike, beam_energy: ArrayLike, direction: int = 1) -> np.ndarray:
    """FAT-GAN transform T = ln(E_b - p∥) with p∥ = direction · p_z (GeV).

    Example:
        >>> round(float(t_pz(49.0, 50.0)), 6)
        0.0
    """
    p_par = direction * np.asarray(pz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(beam_energy, dtype=np.float64) - p_par)


def t_pz_inverse(t: ArrayLike, beam_energy: ArrayLike, direction: int = 1) -> np.ndarray:
    """Inverse of :func:`t_pz`: p_z = direction · (E_b - e^T); p∥ never exceeds E_b.

    Example:
        >>> float(t_pz_inverse(0.0, 50.0, direction=-1))
        -49.0
    """
    return direction * (np.asarray(beam_energy, dtype=np.float64) - np.exp(np.asarray(t, dtype=np.float64)))


def y_limit(x: ArrayLike, beams: Beams, lepton_energy: ArrayLike | None = None) -> np.ndarray:
    """Kinematic edge of y at Bjorken x: y ≤ (s - M²) / (s - M² + x M²).

    It is where the scattered lepton goes straight back along the beam lepton
    (cos θ = -1 from the hadron): Q² = 4 E_e E'. It is 1 for a massless hadron
    and matters at fixed target (JLab, x ≈ 0.5: y ≤ 0.98).

    Example:
        >>> round(float(y_limit(0.5, Beams.preset("jlab"))), 4)
        0.9784
    """
    e = _lepton_energy(beams, lepton_energy)
    smm = _two_p_dot_k(beams, e)
    return smm / (smm + np.asarray(x, dtype=np.float64) * beams.hadron_mass**2)


def q2_max(x: ArrayLike, beams: Beams, y_max: float = 1.0, lepton_energy: ArrayLike | None = None) -> np.ndarray:
    """Largest Q² at Bjorken x: Q² ≤ x · min(y_max, y_limit(x)) · (s - M²) (massless lepton).

    With y_max = 1 this is the exact kinematic edge (see :func:`y_limit`),
    a hair below the massless-proton line Q² = x (s - M²) at colliders.

    Example:
        >>> round(float(q2_max(1.0, Beams.preset("hera"))))
        101567
    """
    e = _lepton_energy(beams, lepton_energy)
    x = np.asarray(x, dtype=np.float64)
    return x * np.minimum(y_max, y_limit(x, beams, lepton_energy)) * _two_p_dot_k(beams, e)


def q2_min_from_w2(x: ArrayLike, w2_min: float, beams: Beams) -> np.ndarray:
    """Smallest Q² at Bjorken x allowed by W² ≥ w2_min: Q² ≥ x (W²_min - M²)/(1 - x).

    Example:
        >>> round(float(q2_min_from_w2(0.5, 3.0, Beams.preset("hera"))), 6)
        2.119646
    """
    x = np.asarray(x, dtype=np.float64)
    m2 = beams.hadron_mass**2
    with np.errstate(divide="ignore"):
        return np.where(x < 1.0, x * max(w2_min - m2, 0.0) / (1.0 - x), np.inf)


def kinematic_limits(
    beams: Beams,
    x: ArrayLike | None = None,
    q2_min: float = 1.0,
    w2_min: float | None = None,
    y_min: float = 0.0,
    y_max: float = 1.0,
) -> dict[str, np.ndarray]:
    """Boundary curves Q²(x) to draw on a Q²-x plot.

    Returns ``x`` (default: 200 log-spaced points from 1e-6 to 1) and the
    curves ``q2_max`` (y = y_max, or the exact edge), ``q2_y_min`` (y = y_min,
    absent when y_min = 0), ``q2_w2`` (W² = w2_min, absent when None) and
    ``q2_min`` (the flat cut).

    Example:
        >>> lim = kinematic_limits(Beams.preset("hera"), x=[0.01, 0.1], w2_min=3.0)
        >>> sorted(lim)
        ['q2_max', 'q2_min', 'q2_w2', 'x']
    """
    xs = np.logspace(-6, 0, 200) if x is None else np.asarray(x, dtype=np.float64)
    out = {"x": xs, "q2_max": q2_max(xs, beams, y_max=y_max), "q2_min": np.full(xs.shape, float(q2_min))}
    if y_min > 0:
        out["q2_y_min"] = xs * y_min * _two_p_dot_k(beams, beams.lepton_energy)
    if w2_min is not None:
        out["q2_w2"] = q2_min_from_w2(xs, w2_min, beams)
    return out


def dis_from_batch(batch: EventBatch, beams: Beams | None = None) -> dict[str, np.ndarray]:
    """DIS invariants of an :class:`~mlegpipe.events.EventBatch` from its lepton fields.

    Uses the per-event ``beam_energy`` column when present (conditional
    samples), else the beams' lepton energy.

    Arguments:
        batch: events with ``lepton_E, lepton_px, lepton_py, lepton_pz``.
        beams: the beam set-up (default ``batch.beams``).

    Raises:
        DataError: no beams given and the batch carries none.

    Example:
        >>> from mlegpipe.events import EventBatch
        >>> b = Beams.preset("hera")
        >>> E, px, py, pz = lepton_from_dis([0.01], [100.0], [0.0], b)
        >>> ev = EventBatch.from_columns({"lepton_E": E, "lepton_px": px, "lepton_py": py, "lepton_pz": pz}, b)
        >>> round(float(dis_from_batch(ev)["Q2"][0]), 6)
        100.0
    """
    from mlegpipe.exceptions import DataError

    beams = beams or batch.beams
    if beams is None:
        raise DataError("the events carry no beam set-up; pass beams= to compute x, Q², y", path="beams")
    energy = batch.column("beam_energy") if batch.has("beam_energy") else None
    E, px, py, pz = (batch.column(n) for n in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz"))  # noqa: N806
    return dis_from_lepton(E, px, py, pz, beams, lepton_energy=energy)


def physical_mask(
    x: ArrayLike,
    Q2: ArrayLike,  # noqa: N803 - physics notation
    y: ArrayLike,
    W2: ArrayLike,  # noqa: N803
    beams: Beams,
    q2_min: float = 0.0,
    w2_min: float | None = None,
    y_min: float = 0.0,
    y_max: float = 1.0,
    rtol: float = 1e-9,
) -> np.ndarray:
    """True where an event is physical and inside the cuts.

    Checks 0 < x ≤ 1, y_min < y ≤ y_max (y > 0), Q² ≥ q2_min (and > 0),
    W² ≥ w2_min (default M²), Q² ≤ :func:`q2_max` (the exact edge, y ≤ 1 at
    colliders), all finite. ``rtol``
    allows for rounding in quantities recomputed from four-momenta.

    Example:
        >>> b = Beams.preset("hera")
        >>> physical_mask([0.1, 1.5], [10.0, 10.0], [0.001, 0.001], [100.0, 100.0], b).tolist()
        [True, False]
    """
    x, q2, y, w2 = (np.asarray(a, dtype=np.float64) for a in (x, Q2, y, W2))
    m2 = beams.hadron_mass**2
    w2_cut = m2 if w2_min is None else w2_min
    slack = 1.0 + rtol
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(q2) & np.isfinite(y) & np.isfinite(w2)
        ok &= (x > 0) & (x <= slack) & (y > 0) & (y > y_min * (1 - rtol)) & (y <= y_max * slack)
        ok &= (q2 > 0) & (q2 >= q2_min * (1 - rtol)) & (w2 >= w2_cut - rtol * max(abs(w2_cut), 1.0))
        ok &= q2 <= q2_max(x, beams) * slack
    return ok
