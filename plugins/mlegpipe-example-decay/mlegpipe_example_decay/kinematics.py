"""Kinematics of the 1 → 2 decay toy: rest-frame momenta, boosts, and the quantities its observables show.

Everything here works on NumPy arrays, one entry per event; four-momenta are
``(px, py, pz, E)`` in GeV. The observables of :mod:`mlegpipe_example_decay.observables`
and the truth source :mod:`mlegpipe_example_decay.truth` share these functions,
so each formula is written once.

Example:
    >>> import numpy as np
    >>> round(rest_momentum(100.0, 0.0), 6), round(rest_momentum(10.0, 3.0), 6)
    (50.0, 4.0)
    >>> p = boost(np.array([[0.0, 0.0, 0.0, 1.0]]), np.array([[0.0, 0.0, 0.6]]))
    >>> np.round(p, 6).tolist()
    [[0.0, 0.0, 0.75, 1.25]]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "boost",
    "cos_theta_star",
    "four_momentum",
    "imbalance",
    "invariant_mass",
    "isotropic_directions",
    "on_shell_energy",
    "opening_angle",
    "rest_momentum",
]


def rest_momentum(mass: float, daughter_mass: float) -> float:
    """|p*| of each daughter of a parent of ``mass`` at rest decaying to two daughters of ``daughter_mass``.

    Raises:
        ValueError: the decay is closed (2 · daughter_mass > mass).

    Example:
        >>> rest_momentum(91.1876, 0.0) == 91.1876 / 2
        True
    """
    if 2.0 * daughter_mass > mass:
        raise ValueError(f"a parent of mass {mass} GeV cannot decay to two daughters of {daughter_mass} GeV")
    return float(np.sqrt(mass * mass / 4.0 - daughter_mass * daughter_mass))


def isotropic_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` unit vectors with cos θ uniform in [-1, 1] and φ uniform in [-π, π).

    Example:
        >>> u = isotropic_directions(4, np.random.default_rng(0))
        >>> u.shape, bool(np.allclose(np.linalg.norm(u, axis=1), 1.0))
        ((4, 3), True)
    """
    cos_theta = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def on_shell_energy(momentum: np.ndarray, mass: float | np.ndarray) -> np.ndarray:
    """E = sqrt(|p|² + m²) of ``(n, 3)`` momenta.

    Example:
        >>> on_shell_energy(np.array([[3.0, 0.0, 4.0]]), 0.0).tolist()
        [5.0]
    """
    return np.sqrt(np.sum(momentum**2, axis=-1) + np.asarray(mass) ** 2)


def four_momentum(momentum: np.ndarray, mass: float | np.ndarray) -> np.ndarray:
    """``(n, 4)`` four-momenta ``(px, py, pz, E)`` of ``(n, 3)`` momenta on the mass shell.

    Example:
        >>> four_momentum(np.array([[0.0, 0.0, 4.0]]), 3.0).tolist()
        [[0.0, 0.0, 4.0, 5.0]]
    """
    return np.concatenate([momentum, on_shell_energy(momentum, mass)[:, None]], axis=1)


def boost(p4: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Lorentz boost of ``(n, 4)`` four-momenta by velocities ``(n, 3)`` (|β| < 1): the frame moving with -β sees p.

    A particle at rest boosted by β moves with velocity β afterwards.

    Example:
        >>> np.round(boost(np.array([[0.0, 0.0, 0.75, 1.25]]), np.array([[0.0, 0.0, -0.6]])), 6).tolist()
        [[0.0, 0.0, 0.0, 1.0]]
    """
    beta = np.asarray(beta, dtype=np.float64)
    b2 = np.sum(beta**2, axis=1)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    p, energy = p4[:, :3], p4[:, 3]
    bp = np.sum(beta * p, axis=1)
    # (γ - 1)/β² written as γ²/(γ + 1): finite at β = 0
    coeff = gamma**2 / (gamma + 1.0) * bp + gamma * energy
    return np.concatenate([p + coeff[:, None] * beta, (gamma * (energy + bp))[:, None]], axis=1)


def invariant_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """m(a + b) of two ``(n, 4)`` four-momenta (0 where m² < 0 by rounding).

    Example:
        >>> invariant_mass(np.array([[3.0, 0.0, 4.0, 5.0]]), np.array([[-3.0, 0.0, -4.0, 5.0]])).tolist()
        [10.0]
    """
    s = a + b
    return np.sqrt(np.maximum(s[:, 3] ** 2 - np.sum(s[:, :3] ** 2, axis=1), 0.0))


def opening_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in [0, π] between the momenta of ``(n, 4)`` (or ``(n, 3)``) four-momenta a and b.

    Example:
        >>> round(float(opening_angle(np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 2.0, 0.0]]))[0]), 6)
        1.570796
    """
    pa, pb = a[:, :3], b[:, :3]
    # atan2(|a × b|, a · b): accurate near 0 and π, where arccos of the cosine is not
    return np.arctan2(np.linalg.norm(np.cross(pa, pb), axis=1), np.sum(pa * pb, axis=1))


def cos_theta_star(daughter: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """cos θ* of ``daughter`` (``(n, 4)``) w.r.t. the +z axis, in the rest frame of ``frame`` (``(n, 4)``).

    With ``frame`` the parent this is the decay angle the toy draws uniformly;
    with ``frame`` the pair of daughters it needs nothing but the daughters.

    Example:
        >>> parent = np.array([[0.0, 0.0, 0.0, 10.0]])
        >>> round(float(cos_theta_star(np.array([[3.0, 0.0, 4.0, 5.0]]), parent)[0]), 6)
        0.8
        >>> moving = boost(np.array([[3.0, 0.0, 4.0, 5.0]]), np.array([[0.0, 0.5, 0.0]]))   # the same, boosted
        >>> round(float(cos_theta_star(moving, boost(parent, np.array([[0.0, 0.5, 0.0]])))[0]), 6)
        0.8
    """
    beta = frame[:, :3] / frame[:, 3:4]
    rest = boost(daughter, -beta)
    norm = np.linalg.norm(rest[:, :3], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, rest[:, 2] / norm, np.nan)


def imbalance(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|p_parent - p_a - p_b|: how far the daughters' momenta miss the parent's (0 with exact conservation).

    Example:
        >>> imbalance(np.zeros((1, 4)), np.array([[3.0, 0.0, 4.0, 5.0]]), np.array([[-3.0, 0.0, -2.0, 4.0]])).tolist()
        [2.0]
    """
    return np.linalg.norm(parent[:, :3] - a[:, :3] - b[:, :3], axis=1)
