"""The ALLM97 parametrization of the proton structure function F₂(x, Q²).

Abramowicz and Levy, hep-ph/9712415: a Regge-motivated fit (Pomeron plus
Reggeon) to the world's proton F₂ and photoproduction data, valid for
W² > 3 GeV², 3·10⁻⁶ < x < 0.85 and all Q² ≥ 0. The constants below already
carry the squared b parameters and Q₀² = 0.46017 + Λ² (physics.md §2).

Example:
    >>> round(float(f2_allm97(0.1, 10.0)), 4)
    0.3894
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlegpipe.beams import PROTON_MASS

__all__ = ["ALLM97", "ALLM97_VALIDITY", "allm97_t", "f2_allm97"]

#: Fit parameters (GeV² where dimensionful); Pomeron/Reggeon (a, b, c) triples are (p1, p2, p3).
ALLM97: dict[str, float | tuple[float, float, float]] = {
    "pomeron_a": (-0.0808, -0.44812, 1.1709),
    "pomeron_b": (0.36292, 1.8917, 1.8439),
    "pomeron_c": (0.28067, 0.22291, 2.1979),
    "reggeon_a": (0.58400, 0.37888, 2.6063),
    "reggeon_b": (0.01147, 3.7582, 0.49338),
    "reggeon_c": (0.80107, 0.97307, 3.4942),
    "m0_sq": 0.31985,
    "mp_sq": 49.457,
    "mr_sq": 0.15052,
    "q0_sq": 0.52544,
    "lambda_sq": 0.06526,
}

#: Where the fit holds: (x_min, x_max, W²_min in GeV²).
ALLM97_VALIDITY: tuple[float, float, float] = (3e-6, 0.85, 3.0)


def allm97_t(q2: ArrayLike) -> np.ndarray:
    """The evolution variable t = ln( ln((Q² + Q₀²)/Λ²) / ln(Q₀²/Λ²) ) (0 at Q² = 0).

    Example:
        >>> float(allm97_t(0.0))
        0.0
    """
    q0, lam = ALLM97["q0_sq"], ALLM97["lambda_sq"]
    q2 = np.asarray(q2, dtype=np.float64)
    return np.log(np.log((q2 + q0) / lam) / np.log(q0 / lam))


def _rising(p: tuple[float, float, float], t: np.ndarray) -> np.ndarray:
    """Reggeon-type and b-type dependence p1 + p2 t^p3."""
    return p[0] + p[1] * t ** p[2]


def _falling(p: tuple[float, float, float], t: np.ndarray) -> np.ndarray:
    """Pomeron a and c dependence p1 + (p1 - p2) (1/(1 + t^p3) - 1)."""
    return p[0] + (p[0] - p[1]) * (1.0 / (1.0 + t ** p[2]) - 1.0)


def f2_allm97(x: ArrayLike, q2: ArrayLike, hadron_mass: float = PROTON_MASS) -> np.ndarray:
    """Proton F₂(x, Q²) from ALLM97 (vectorized; no validity cut is applied here).

    Arguments:
        x: Bjorken x in (0, 1).
        q2: Q² in GeV² (≥ 0).
        hadron_mass: target mass M entering W² - M² = Q²(1 - x)/x.

    Returns:
        F₂ with the broadcast shape of ``x`` and ``q2``.

    Example:
        >>> f2 = f2_allm97([1e-4, 1e-3, 1e-2], 10.0)
        >>> bool(f2[0] > f2[1] > f2[2])  # rises towards small x
        True
    """
    del hadron_mass  # F₂ depends on M only through W² - M², which is Q²(1 - x)/x
    x = np.asarray(x, dtype=np.float64)
    q2 = np.asarray(q2, dtype=np.float64)
    p = ALLM97
    w2_minus_m2 = q2 * (1.0 - x) / x
    x_p = (q2 + p["mp_sq"]) / (q2 + w2_minus_m2 + p["mp_sq"])
    x_r = (q2 + p["mr_sq"]) / (q2 + w2_minus_m2 + p["mr_sq"])
    t = allm97_t(q2)
    c_p = _falling(p["pomeron_c"], t)
    a_p = _falling(p["pomeron_a"], t)
    b_p = _rising(p["pomeron_b"], t)
    c_r = _rising(p["reggeon_c"], t)
    a_r = _rising(p["reggeon_a"], t)
    b_r = _rising(p["reggeon_b"], t)
    one_minus_x = 1.0 - x
    pomeron = c_p * x_p**a_p * one_minus_x**b_p
    reggeon = c_r * x_r**a_r * one_minus_x**b_r
    return q2 / (q2 + p["m0_sq"]) * (pomeron + reggeon)
