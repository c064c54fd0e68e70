"""Detector-level DIS kinematics: electron, Jacquet-Blondel and double-angle methods (vectorized).

All inputs are lab-frame arrays in the pipeline's convention (see
:class:`mlegpipe.beams.Beams`; either lepton direction). Internally the
light-cone variable "E - p_z" is taken along the HADRON beam direction z'
(the HERA/eic-smear convention), where the beam lepton has E - p_z' = 2 E_e and
the hadron beam E_p - p_p = M²/(E_p + p_p).

- electron method: the full invariants from the scattered lepton (exact).
- Jacquet-Blondel: from the hadronic final state (HFS) sums only,
  y = (delta_h - (E_p - p_p)) / (2 E_e) with delta_h = sum (E - p_z'), Q² = p_T,h² / (1 - y).
- double angle: from the lepton polar angle theta and the hadronic angle gamma,
  tan(gamma / 2) = (delta_h - (E_p - p_p)) / p_T,h.
- sigma method: y = q⁻_h / (q⁻_h + delta_e) with q⁻_h = delta_h - (E_p - p_p) and
  delta_e = E' - p'_z' of the lepton, Q² = p_T,e² / (1 - y): insensitive to
  initial-state radiation (the beam energy only enters through x).

JB and DA neglect the hadron mass in the relations between (y, Q²) and the
measured quantities (corrections of relative size ~ x² M² / Q²), as in the HERA
literature; use the electron method at fixed target. Undefined results
(no HFS, y >= 1) are NaN; callers mask them.

Example:
    >>> import numpy as np
    >>> from mlegpipe.beams import Beams
    >>> from mlegpipe_builtins.dis.kinematics import lepton_from_dis
    >>> hera = Beams.preset("hera")
    >>> E, px, py, pz = lepton_from_dis(np.array([0.01]), np.array([100.0]), np.array([0.3]), hera)
    >>> round(float(electron_method(E, px, py, pz, hera)["Q2"][0]), 6)
    100.0
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import ArrayLike

from mlegpipe.beams import Beams
from mlegpipe_builtins.dis.kinematics import dis_from_lepton

__all__ = ["dis_from_y_q2", "double_angle", "electron_method", "hadronic_sums", "jacquet_blondel", "sigma_method"]


def _beam_terms(beams: Beams, lepton_energy: ArrayLike | None) -> tuple[Any, float, Any]:
    """(E_e, E_p - p_p, 2 P·k) for the massless beam lepton."""
    e_beam = beams.lepton_energy if lepton_energy is None else np.asarray(lepton_energy, dtype=np.float64)
    p_minus = beams.hadron_mass**2 / (beams.hadron_energy + beams.hadron_momentum)
    return e_beam, p_minus, 2.0 * e_beam * (beams.hadron_energy + beams.hadron_momentum)


def dis_from_y_q2(y: ArrayLike, Q2: ArrayLike, beams: Beams,  # noqa: N803 - physics notation
                  lepton_energy: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """All invariants (x, Q², y, W², ν) from y and Q²: x = Q² / (y 2P·k), W² = M² + y 2P·k - Q².

    Example:
        >>> d = dis_from_y_q2(0.5, 100.0, Beams.preset("hera"))
        >>> round(float(d["x"]), 6)
        0.001969
    """
    _, _, two_pk = _beam_terms(beams, lepton_energy)
    y = np.asarray(y, dtype=np.float64)
    q2 = np.asarray(Q2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        two_pq = y * two_pk
        x = q2 / two_pq
    mass = beams.hadron_mass
    return {"x": x, "Q2": q2, "y": y, "W2": mass * mass + two_pq - q2, "nu": 0.5 * two_pq / mass}


def electron_method(E: ArrayLike, px: ArrayLike, py: ArrayLike, pz: ArrayLike, beams: Beams,  # noqa: N803
                    lepton_energy: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Invariants from the scattered lepton four-momentum (exact; see :func:`mlegpipe_builtins.dis.kinematics.dis_from_lepton`).

    Example:
        >>> d = electron_method([20.0], [5.0], [0.0], [-np.sqrt(375.0)], Beams.preset("hera"))
        >>> bool(d["Q2"][0] > 0)
        True
    """
    return dis_from_lepton(E, px, py, pz, beams, lepton_energy)


def hadronic_sums(particles: ak.Array, mask: ak.Array | None = None) -> dict[str, np.ndarray]:
    """Per-event sums E, px, py, pz of a jagged collection (only where ``mask`` is True).

    Example:
        >>> parts = ak.Array([[{"E": 2.0, "px": 1.0, "py": 0.0, "pz": 1.0}, {"E": 1.0, "px": -1.0, "py": 0.0, "pz": 0.0}]])
        >>> {k: float(v[0]) for k, v in hadronic_sums(parts).items()}
        {'E': 3.0, 'px': 0.0, 'py': 0.0, 'pz': 1.0}
    """
    out = {}
    for name in ("E", "px", "py", "pz"):
        values = particles[name] if mask is None else ak.where(mask, particles[name], 0.0)
        out[name] = np.asarray(ak.to_numpy(ak.sum(values, axis=1)), dtype=np.float64)
    return out


def _hfs_light_cone(hfs_E: ArrayLike, hfs_px: ArrayLike, hfs_py: ArrayLike, hfs_pz: ArrayLike,  # noqa: N803
                    beams: Beams, p_minus: float) -> tuple[np.ndarray, np.ndarray]:
    """(q⁻ = delta_h - (E_p - p_p), p_T,h) of the hadronic final state."""
    e, px, py, pz = (np.asarray(a, dtype=np.float64) for a in (hfs_E, hfs_px, hfs_py, hfs_pz))
    delta = e + beams.lepton_direction * pz  # E - p_z' with z' = -lepton_direction * z
    return delta - p_minus, np.hypot(px, py)


def jacquet_blondel(hfs_E: ArrayLike, hfs_px: ArrayLike, hfs_py: ArrayLike, hfs_pz: ArrayLike,  # noqa: N803
                    beams: Beams, lepton_energy: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Jacquet-Blondel invariants from the summed hadronic final state.

    Arguments:
        hfs_E, hfs_px, hfs_py, hfs_pz: per-event sums over the HFS (all measured
            particles but the scattered lepton), lab frame.
        beams: the beam set-up; ``lepton_energy`` overrides the lepton beam energy per event.

    Returns:
        ``{"x", "Q2", "y", "W2", "nu"}``; NaN where y <= 0 or y >= 1.

    Example:
        >>> hera = Beams.preset("hera")
        >>> d = jacquet_blondel([10.0], [3.0], [4.0], [8.0], hera)
        >>> round(float(d["y"][0]), 4), round(float(d["Q2"][0]), 3)
        (0.0362, 25.94)
    """
    e_beam, p_minus, _ = _beam_terms(beams, lepton_energy)
    q_minus, pt = _hfs_light_cone(hfs_E, hfs_px, hfs_py, hfs_pz, beams, p_minus)
    y = q_minus / (2.0 * e_beam)
    good = (y > 0) & (y < 1)
    y = np.where(good, y, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        q2 = pt * pt / (1.0 - y)
    return dis_from_y_q2(y, q2, beams, lepton_energy)


def double_angle(lepton_px: ArrayLike, lepton_py: ArrayLike, lepton_pz: ArrayLike,
                 hfs_E: ArrayLike, hfs_px: ArrayLike, hfs_py: ArrayLike, hfs_pz: ArrayLike,  # noqa: N803
                 beams: Beams, lepton_energy: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Double-angle invariants from the lepton direction and the hadronic angle.

    With theta the lepton polar angle and gamma the hadronic angle, both from the
    hadron beam direction, D = sin(gamma) + sin(theta) - sin(theta + gamma):
    y = sin(theta) (1 - cos(gamma)) / D, Q² = 4 E_e² sin(gamma) (1 + cos(theta)) / D.

    Only the lepton direction is used (its momentum scale drops out). NaN where
    the HFS has no transverse momentum or D <= 0.

    Example:
        >>> from mlegpipe_builtins.dis.kinematics import lepton_from_dis
        >>> b = Beams.preset("eic18x275")
        >>> E, px, py, pz = lepton_from_dis(np.array([0.01]), np.array([100.0]), np.array([0.0]), b)
        >>> k, P = b.lepton_four_momentum, b.hadron_four_momentum
        >>> X = k + P - np.array([E[0], px[0], py[0], pz[0]])
        >>> round(float(double_angle(px, py, pz, X[0], X[1], X[2], X[3], b)["Q2"][0]), 3)
        100.0
    """
    e_beam, p_minus, _ = _beam_terms(beams, lepton_energy)
    lx, ly, lz = (np.asarray(a, dtype=np.float64) for a in (lepton_px, lepton_py, lepton_pz))
    theta = np.arctan2(np.hypot(lx, ly), -beams.lepton_direction * lz)
    q_minus, pt = _hfs_light_cone(hfs_E, hfs_px, hfs_py, hfs_pz, beams, p_minus)
    gamma = 2.0 * np.arctan2(q_minus, pt)
    denom = np.sin(gamma) + np.sin(theta) - np.sin(theta + gamma)
    good = (pt > 0) & (denom > 0)
    denom = np.where(good, denom, np.nan)
    y = np.sin(theta) * (1.0 - np.cos(gamma)) / denom
    q2 = 4.0 * e_beam * e_beam * np.sin(gamma) * (1.0 + np.cos(theta)) / denom
    return dis_from_y_q2(y, q2, beams, lepton_energy)


def sigma_method(lepton_E: ArrayLike, lepton_px: ArrayLike, lepton_py: ArrayLike,  # noqa: N803
                 lepton_pz: ArrayLike, hfs_E: ArrayLike, hfs_px: ArrayLike, hfs_py: ArrayLike,  # noqa: N803
                 hfs_pz: ArrayLike, beams: Beams, lepton_energy: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Sigma-method invariants from the scattered lepton and the hadronic final state sums.

    y = q⁻_h / (q⁻_h + delta_e), Q² = p_T,e² / (1 - y), with delta_e = E' - p'_z'
    (z' along the hadron beam). NaN where y <= 0 or y >= 1.

    Example:
        >>> from mlegpipe_builtins.dis.kinematics import lepton_from_dis
        >>> b = Beams.preset("hera")
        >>> E, px, py, pz = lepton_from_dis(np.array([0.01]), np.array([100.0]), np.array([0.0]), b)
        >>> X = b.lepton_four_momentum + b.hadron_four_momentum - np.array([E[0], px[0], py[0], pz[0]])
        >>> round(float(sigma_method(E, px, py, pz, *X, b)["Q2"][0]), 6)
        100.0
    """
    _, p_minus, _ = _beam_terms(beams, lepton_energy)
    e, lx, ly, lz = (np.asarray(a, dtype=np.float64) for a in (lepton_E, lepton_px, lepton_py, lepton_pz))
    delta_e = e + beams.lepton_direction * lz
    q_minus, _ = _hfs_light_cone(hfs_E, hfs_px, hfs_py, hfs_pz, beams, p_minus)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = q_minus / (q_minus + delta_e)
        y = np.where((y > 0) & (y < 1), y, np.nan)
        q2 = (lx * lx + ly * ly) / (1.0 - y)
    return dis_from_y_q2(y, q2, beams, lepton_energy)
