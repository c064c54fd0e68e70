"""Tests of the ALLM97 F₂ and the Born cross section (physics.md §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlegpipe.beams import PROTON_MASS, Beams
from mlegpipe.exceptions import PhysicsError
from mlegpipe_builtins.dis.allm97 import f2_allm97
from mlegpipe_builtins.dis.cross_section import BornCrossSection, DISRegion, born_d2sigma_dx_dq2, f_l_from_r

# Pinned once the independent derivation below agreed (values of f2_allm97, relative tolerance 1e-9).
PINNED = [
    (0.1, 10.0, 0.38941324402206173),
    (1e-4, 10.0, 1.6097373274109397),
    (1e-3, 2.0, 0.49885059022719924),
    (0.3, 100.0, 0.2424653640709468),
    (0.01, 1000.0, 0.9372805330711865),
    (0.5, 0.5, 0.20387035640745066),
    (1e-5, 1.0, 0.7947954783033802),
]


def f2_by_hand(x: float, q2: float) -> float:
    """ALLM97 written out step by step with scalars, from the original (square-root) Fortran constants."""
    lam2 = 0.06526
    q02 = 0.46017 + lam2
    m02, mp2, mr2 = 0.31985, 49.457, 0.15052
    w2_minus_m2 = q2 * (1.0 / x - 1.0)
    t = math.log(math.log((q2 + q02) / lam2) / math.log(q02 / lam2))
    # Pomeron
    xp = 1.0 / (1.0 + w2_minus_m2 / (q2 + mp2))
    ap = -0.0808 + (-0.0808 + 0.44812) * (1.0 / (1.0 + t**1.1709) - 1.0)
    bp = 0.60243**2 + 1.3754**2 * t**1.8439
    cp = 0.28067 + (0.28067 - 0.22291) * (1.0 / (1.0 + t**2.1979) - 1.0)
    f2p = cp * xp**ap * (1.0 - x) ** bp
    # Reggeon
    xr = 1.0 / (1.0 + w2_minus_m2 / (q2 + mr2))
    ar = 0.58400 + 0.37888 * t**2.6063
    br = 0.10711**2 + 1.9386**2 * t**0.49338
    cr = 0.80107 + 0.97307 * t**3.4942
    f2r = cr * xr**ar * (1.0 - x) ** br
    return q2 / (q2 + m02) * (f2p + f2r)


@pytest.mark.parametrize(("x", "q2", "value"), PINNED)
def test_f2_pinned_and_independent(x: float, q2: float, value: float) -> None:
    """Pinned values; the hand derivation differs only by the rounding of b = (√b)² (< 1e-4 relative)."""
    assert float(f2_allm97(x, q2)) == pytest.approx(value, rel=1e-9)
    assert float(f2_allm97(x, q2)) == pytest.approx(f2_by_hand(x, q2), rel=1e-4)


def test_f2_sanity() -> None:
    """F₂ ≈ 0.3-0.4 at x = 0.1, Q² = 10 GeV²; rises steeply towards small x; vanishes at Q² = 0."""
    assert 0.3 < float(f2_allm97(0.1, 10.0)) < 0.4
    x = np.logspace(-5, -2, 7)
    for q2 in (2.0, 10.0, 100.0):
        f2 = f2_allm97(x, q2)
        assert np.all(np.diff(f2) < 0)
    assert float(f2_allm97(1e-4, 10.0)) / float(f2_allm97(1e-2, 10.0)) > 2.5
    assert float(f2_allm97(0.01, 0.0)) == 0.0
    # scaling violations: F₂ grows with Q² at small x and falls at large x
    assert f2_allm97(1e-3, 100.0) > f2_allm97(1e-3, 10.0)
    assert f2_allm97(0.5, 100.0) < f2_allm97(0.5, 10.0)


def test_born_formula() -> None:
    """d²σ/dxdQ² = 2πα²/(xQ⁴) [Y₊F₂ - y²F_L] · 0.3893794e9 pb GeV², re-derived with scalars."""
    x, q2, y = 0.1, 10.0, 0.5
    alpha = 1 / 137.036
    f2 = f2_by_hand(x, q2)
    expected = 2 * math.pi * alpha**2 / (x * q2**2) * (1 + (1 - y) ** 2) * f2 * 0.3893794e9
    assert float(born_d2sigma_dx_dq2(x, q2, y)) == pytest.approx(expected, rel=1e-4)
    assert float(born_d2sigma_dx_dq2(x, q2, y)) == pytest.approx(6341.678544242137, rel=1e-9)
    r = 0.2
    fl = f2 * (1 + 4 * PROTON_MASS**2 * x**2 / q2) * r / (1 + r)
    assert float(f_l_from_r(f2, x, q2, r)) == pytest.approx(fl, rel=1e-12)
    with_fl = 2 * math.pi * alpha**2 / (x * q2**2) * ((1 + (1 - y) ** 2) * f2 - y**2 * fl) * 0.3893794e9
    assert float(born_d2sigma_dx_dq2(x, q2, y, r_longitudinal=r)) == pytest.approx(with_fl, rel=1e-4)


def test_region_and_density() -> None:
    """The density is x Q² d²σ/dxdQ² inside the cuts and 0 outside."""
    hera = Beams.preset("hera")
    region = DISRegion(hera, q2_min=5.0, q2_max=500.0, y_min=0.01, y_max=0.9)
    xs = BornCrossSection(region)
    smm = 2 * hera.lepton_energy * (hera.hadron_energy + hera.hadron_momentum)  # s - M² for a massless lepton
    x = np.array([0.001, 0.01, 0.01, 1e-5, 0.9, 0.001])
    q2 = np.array([10.0, 4.0, 600.0, 10.0, 50.0, 0.005 * 0.001 * smm])  # in, Q² low, Q² high, y>1, x>0.85, y<0.01
    inside = region.contains(x, q2)
    assert inside.tolist() == [True, False, False, False, False, False]
    dens = xs.density_log(np.stack([np.log(x), np.log(q2)], axis=1))
    y = q2[0] / (x[0] * smm)
    assert dens[0] == pytest.approx(x[0] * q2[0] * float(born_d2sigma_dx_dq2(x[0], q2[0], y)), rel=1e-12)
    assert np.all(dens[1:] == 0)
    lo, hi = region.box()
    assert np.exp(lo[1]) == pytest.approx(5.0) and np.exp(hi[1]) <= 500.0 + 1e-9


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"q2_min": 2e5}, "q2_min"),
        ({"q2_min": -1.0}, "q2_min"),
        ({"y_min": 0.5, "y_max": 0.4}, "y_min"),
        ({"y_max": 1.5}, "y_max"),
        ({"q2_min": 10.0, "q2_max": 5.0}, "q2_max"),
        ({"w2_min": 0.1}, "w2_min"),
    ],
)
def test_region_rejects_impossible_cuts(kwargs: dict, key: str) -> None:
    """Impossible cuts raise PhysicsError naming the TOML path."""
    with pytest.raises(PhysicsError) as err:
        DISRegion(Beams.preset("hera"), path="truth", **kwargs)
    assert err.value.path == f"truth.{key}"


def test_region_without_phase_space() -> None:
    """A W² cut above what the beams reach (W² ≤ M² + s - M² - Q²_min ≈ 10.2 GeV² at CLAS) leaves nothing."""
    with pytest.raises(PhysicsError, match="no phase space"):
        DISRegion(Beams.preset("clas"), q2_min=1.0, w2_min=11.0, path="truth")
