"""Born-level inclusive DIS cross section d²σ/dx dQ² and its phase-space region.

One-photon exchange (physics.md §2):

    d²σ/dx dQ² = 2πα² / (x Q⁴) · [ Y₊ F₂(x, Q²) - y² F_L(x, Q²) ],  Y₊ = 1 + (1 - y)²,

in pb/GeV², with F₂ from ALLM97 and F_L from a fixed R = σ_L/σ_T:
F_L = F₂ (1 + 4M²x²/Q²) R/(1 + R) (R = 0, the default, means F_L = 0). Z
exchange, xF₃ and radiative corrections are left out (they matter at
Q² ≳ 1000 GeV²), as are the target-mass terms beyond the one in F_L.

:class:`DISRegion` holds the cuts (Q² range, W² > W²_min, y_min < y < y_max,
the x range of ALLM97) and the exact kinematic edge; :class:`BornCrossSection`
is the density in (ln x, ln Q²) that the sampler draws from.

Example:
    >>> from mlegpipe.beams import Beams
    >>> xs = BornCrossSection(DISRegion(Beams.preset("hera"), q2_min=1.0))
    >>> bool(xs.d2sigma_dx_dq2(0.01, 10.0) > 0)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from mlegpipe.beams import Beams
from mlegpipe.exceptions import PhysicsError
from mlegpipe_builtins.dis.allm97 import ALLM97_VALIDITY, f2_allm97

__all__ = [
    "ALPHA_EM",
    "GEV2_TO_PB",
    "BornCrossSection",
    "DISRegion",
    "born_d2sigma_dx_dq2",
    "f_l_from_r",
]

#: Fine-structure constant at Q² = 0.
ALPHA_EM = 1.0 / 137.036
#: (ħc)² in GeV² pb: 0.3893794 GeV² mb.
GEV2_TO_PB = 0.3893794e9


def f_l_from_r(f2: ArrayLike, x: ArrayLike, q2: ArrayLike, r: float, hadron_mass: float = 0.938272) -> np.ndarray:
    """Longitudinal structure function from a fixed R = σ_L/σ_T.

    F_L = F₂ (1 + 4M²x²/Q²) · R/(1 + R), from 2xF₁ = F₂ (1 + 4M²x²/Q²)/(1 + R).

    Example:
        >>> float(f_l_from_r(0.4, 0.1, 10.0, 0.0))
        0.0
    """
    f2, x, q2 = (np.asarray(a, dtype=np.float64) for a in (f2, x, q2))
    return f2 * (1.0 + 4.0 * hadron_mass**2 * x * x / q2) * (r / (1.0 + r))


def born_d2sigma_dx_dq2(
    x: ArrayLike,
    q2: ArrayLike,
    y: ArrayLike,
    r_longitudinal: float = 0.0,
    f2: Callable[[np.ndarray, np.ndarray], np.ndarray] = f2_allm97,
    hadron_mass: float = 0.938272,
) -> np.ndarray:
    """d²σ/dx dQ² in pb/GeV² at (x, Q², y), no cuts applied.

    Arguments:
        x, q2, y: Bjorken x, Q² (GeV²) and inelasticity (broadcastable).
        r_longitudinal: R = σ_L/σ_T (0 means F_L = 0).
        f2: structure function F₂(x, Q²) (ALLM97 by default).
        hadron_mass: M in GeV.

    Example:
        >>> round(float(born_d2sigma_dx_dq2(0.1, 10.0, 0.5)), 1)
        6341.7
    """
    x, q2, y = (np.asarray(a, dtype=np.float64) for a in (x, q2, y))
    f2_values = f2(x, q2)
    y_plus = 1.0 + (1.0 - y) ** 2
    bracket = y_plus * f2_values
    if r_longitudinal:
        bracket = bracket - y * y * f_l_from_r(f2_values, x, q2, r_longitudinal, hadron_mass)
    return 2.0 * math.pi * ALPHA_EM**2 / (x * q2 * q2) * bracket * GEV2_TO_PB


@dataclass(frozen=True)
class DISRegion:
    """The sampled phase space: cuts plus the exact kinematic edge.

    An event at (x, Q²) is inside when q2_min < Q² < q2_max, W² > w2_min,
    y_min < y < y_max (y = Q²/(x(s - M²))), x_min < x < x_max and
    y ≤ (s - M²)/(s - M² + xM²) (the lepton cannot scatter beyond 180°).

    Arguments:
        beams: the beam set-up.
        q2_min, q2_max: Q² cuts in GeV² (q2_max None: only kinematics limit it).
        w2_min: W² cut in GeV² (3.0: where ALLM97 holds).
        y_min, y_max: inelasticity cuts.
        x_min, x_max: x range (ALLM97's by default).
        path: TOML path prefix used in error messages (``truth``).

    Example:
        >>> reg = DISRegion(Beams.preset("hera"), q2_min=1.0)
        >>> reg.contains([0.01, 1e-7], [10.0, 10.0]).tolist()
        [True, False]
    """

    beams: Beams
    q2_min: float = 1.0
    q2_max: float | None = None
    w2_min: float = ALLM97_VALIDITY[2]
    y_min: float = 0.0
    y_max: float = 1.0
    x_min: float = ALLM97_VALIDITY[0]
    x_max: float = ALLM97_VALIDITY[1]
    path: str = field(default="truth", compare=False)

    def __post_init__(self) -> None:
        p = self.path
        smm = self.s_minus_m2
        if not self.q2_min > 0:
            raise PhysicsError("Q² cut must be positive (GeV²)", path=f"{p}.q2_min", value=self.q2_min)
        if self.q2_min >= smm * self.y_max:
            raise PhysicsError(f"Q² cut lies above the kinematic limit y_max·(s - M²) = {smm * self.y_max:.6g} GeV² "
                               f"for these beams (√s = {self.beams.sqrt_s:.4g} GeV)",
                               path=f"{p}.q2_min", value=self.q2_min)
        if self.q2_max is not None and self.q2_max <= self.q2_min:
            raise PhysicsError(f"q2_max must exceed q2_min = {self.q2_min}", path=f"{p}.q2_max", value=self.q2_max)
        if not 0.0 <= self.y_min < 1.0:
            raise PhysicsError("y_min must lie in [0, 1)", path=f"{p}.y_min", value=self.y_min)
        if not 0.0 < self.y_max <= 1.0:
            raise PhysicsError("y_max must lie in (0, 1]", path=f"{p}.y_max", value=self.y_max)
        if self.y_min >= self.y_max:
            raise PhysicsError(f"y_min must be below y_max = {self.y_max}", path=f"{p}.y_min", value=self.y_min)
        if self.w2_min < self.beams.hadron_mass**2:
            raise PhysicsError(f"W² cut below the proton mass squared {self.beams.hadron_mass**2:.4f} GeV²",
                               path=f"{p}.w2_min", value=self.w2_min)
        if not 0.0 < self.x_min < self.x_max <= 1.0:
            raise PhysicsError("need 0 < x_min < x_max <= 1", path=f"{p}.x_min", value=(self.x_min, self.x_max))
        lo, hi = self.box()
        if not (lo[0] < hi[0] and lo[1] < hi[1]):
            raise PhysicsError(
                f"the cuts leave no phase space at √s = {self.beams.sqrt_s:.4g} GeV (Q² > {self.q2_min}, "
                f"W² > {self.w2_min}, {self.y_min} < y < {self.y_max}, {self.x_min} < x < {self.x_max})",
                path=p, hint="lower q2_min or w2_min, or widen the y range")

    @property
    def s_minus_m2(self) -> float:
        """s - M² = 2 P·k for the massless beam lepton (GeV²)."""
        return 2.0 * self.beams.lepton_energy * (self.beams.hadron_energy + self.beams.hadron_momentum)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners of a (ln x, ln Q²) box holding the region."""
        smm = self.s_minus_m2
        w_excess = self.w2_min - self.beams.hadron_mass**2
        q2_hi = min(self.x_max * self.y_max * smm, self.y_max * smm - w_excess)
        if self.q2_max is not None:
            q2_hi = min(q2_hi, self.q2_max)
        x_lo = max(self.x_min, self.q2_min / (self.y_max * smm))
        x_hi = self.x_max
        if q2_hi > 0:
            x_hi = min(x_hi, q2_hi / (q2_hi + w_excess))
            if self.y_min > 0:
                x_hi = min(x_hi, q2_hi / (self.y_min * smm))
        lo = np.array([math.log(x_lo), math.log(self.q2_min)])
        hi = np.array([math.log(x_hi) if x_hi > 0 else -np.inf, math.log(q2_hi) if q2_hi > 0 else -np.inf])
        return lo, hi

    def x_range(self, q2: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The allowed x interval (lo, hi) at each Q² (empty where lo ≥ hi)."""
        q2 = np.asarray(q2, dtype=np.float64)
        smm = self.s_minus_m2
        m2 = self.beams.hadron_mass**2
        lo = np.maximum(self.x_min, q2 / (self.y_max * smm))
        lo = np.maximum(lo, q2 * smm / (smm * smm - q2 * m2))  # y ≤ y_limit(x)
        hi = np.minimum(self.x_max, q2 / (q2 + self.w2_min - m2))
        if self.y_min > 0:
            hi = np.minimum(hi, q2 / (self.y_min * smm))
        return lo, hi

    def contains(self, x: ArrayLike, q2: ArrayLike) -> np.ndarray:
        """True where (x, Q²) lies inside the cuts."""
        x = np.asarray(x, dtype=np.float64)
        q2 = np.asarray(q2, dtype=np.float64)
        lo, hi = self.x_range(q2)
        inside = (q2 > self.q2_min) & (x > lo) & (x < hi)
        if self.q2_max is not None:
            inside &= q2 < self.q2_max
        return inside

    def settings(self) -> dict[str, float | None]:
        """The cuts as a JSON-able dict."""
        return {"q2_min": self.q2_min, "q2_max": self.q2_max, "w2_min": self.w2_min, "y_min": self.y_min,
                "y_max": self.y_max, "x_min": self.x_min, "x_max": self.x_max}


@dataclass(frozen=True)
class BornCrossSection:
    """The Born cross section restricted to a :class:`DISRegion`.

    Arguments:
        region: the phase space and beams.
        r_longitudinal: R = σ_L/σ_T (0: F_L = 0).

    Example:
        >>> xs = BornCrossSection(DISRegion(Beams.preset("eic10x100"), q2_min=1.0))
        >>> float(xs.density_log(np.array([[np.log(0.5), np.log(1.5)]]))[0])  # outside: y > 1
        0.0
    """

    region: DISRegion
    r_longitudinal: float = 0.0

    def d2sigma_dx_dq2(self, x: ArrayLike, q2: ArrayLike) -> np.ndarray:
        """d²σ/dx dQ² in pb/GeV² inside the region, 0 outside."""
        x = np.asarray(x, dtype=np.float64)
        q2 = np.asarray(q2, dtype=np.float64)
        inside = self.region.contains(x, q2)
        out = np.zeros(np.broadcast(x, q2).shape)
        xb, qb = np.broadcast_arrays(x, q2)
        xi, qi = xb[inside], qb[inside]
        y = qi / (xi * self.region.s_minus_m2)
        out[inside] = born_d2sigma_dx_dq2(xi, qi, y, self.r_longitudinal,
                                          hadron_mass=self.region.beams.hadron_mass)
        return out

    def density_log(self, z: np.ndarray) -> np.ndarray:
        """d²σ/d(ln x) d(ln Q²) = x Q² d²σ/dx dQ² (pb) at points ``z`` of shape (n, 2) = (ln x, ln Q²)."""
        z = np.asarray(z, dtype=np.float64)
        x, q2 = np.exp(z[:, 0]), np.exp(z[:, 1])
        return x * q2 * self.d2sigma_dx_dq2(x, q2)
