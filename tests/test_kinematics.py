"""Tests of mlegpipe_builtins.dis.kinematics against the closed forms of physics.md §1."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlegpipe.beams import PROTON_MASS, Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe_builtins.dis.kinematics import (
    dis_from_batch,
    dis_from_lepton,
    kinematic_limits,
    lepton_from_dis,
    lepton_from_nu,
    nu_from_lepton,
    physical_mask,
    q2_max,
    q2_min_from_w2,
    t_pz,
    t_pz_inverse,
    y_from_x_q2,
    y_limit,
)

PRESETS = ["hera", "eic18x275", "eic10x100", "jlab", "clas", "sym50"]
BEAMS = [Beams.preset(name, lepton_direction=d) for name in PRESETS for d in (-1, 1)]
IDS = [f"{name}{'+' if d > 0 else '-'}" for name in PRESETS for d in (-1, 1)]


def lepton_at_angle(beams: Beams, energy: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> tuple:
    """Massless lepton with polar angle ``theta`` measured from the hadron direction."""
    hadron_dir = -beams.lepton_direction
    pt = energy * np.sin(theta)
    return energy, pt * np.cos(phi), pt * np.sin(phi), hadron_dir * energy * np.cos(theta)


def physical_points(beams: Beams, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, Q², φ) spread over the physical region y in (1e-4, 1), W² > M² + 0.1, Q² > 0.01."""
    rng = np.random.default_rng(seed)
    smm = beams.s - beams.hadron_mass**2
    log_x = rng.uniform(np.log(1e-5), np.log(0.95), 20 * n)
    y = np.exp(rng.uniform(np.log(1e-4), np.log(0.999), 20 * n)) * y_limit(np.exp(log_x), beams)
    x = np.exp(log_x)
    q2 = x * y * smm
    w2 = beams.hadron_mass**2 + q2 * (1 - x) / x
    keep = (q2 > 0.01) & (w2 > beams.hadron_mass**2 + 0.1)
    x, q2 = x[keep][:n], q2[keep][:n]
    assert len(x) == n
    return x, q2, rng.uniform(0, 2 * np.pi, n)


def test_hera_closed_forms() -> None:
    """Q² = 2E_eE'(1+cosθ), y = 1 - (E'/2E_e)(1 - cosθ) (θ from the proton, HERA frame)."""
    hera = Beams.preset("hera")
    energy = np.array([5.0, 20.0, 27.0, 40.0, 300.0])
    theta = np.array([2.9, 2.5, 3.1, 1.0, 0.2])
    d = dis_from_lepton(*lepton_at_angle(hera, energy, theta, np.zeros(5)), hera)
    ee = hera.lepton_energy
    q2 = 2 * ee * energy * (1 + np.cos(theta))
    y = 1 - energy / (2 * ee) * (1 - np.cos(theta))
    np.testing.assert_allclose(d["Q2"], q2, rtol=1e-12)
    # the closed form for y neglects terms of order E' M² / (E_e E_p²) ≈ 1e-5 for E' = 300 GeV
    np.testing.assert_allclose(d["y"], y, rtol=1e-5)
    np.testing.assert_allclose(d["x"], q2 / (y * (hera.s - PROTON_MASS**2)), rtol=1e-5)
    pk = ee * (hera.hadron_energy + hera.hadron_momentum)
    y_exact = 1 - energy * (hera.hadron_energy - hera.hadron_momentum * np.cos(theta)) / pk
    np.testing.assert_allclose(d["y"], y_exact, rtol=1e-10)
    np.testing.assert_allclose(d["W2"], PROTON_MASS**2 + d["Q2"] * (1 - d["x"]) / d["x"], rtol=1e-9)


def test_hera_inverse_closed_forms() -> None:
    """E' = E_e(1-y) + Q²/(4E_e) and cosθ = Q²/(2E_eE') - 1 (massless proton limit)."""
    hera = Beams.preset("hera")
    x = np.array([1e-4, 1e-3, 0.01, 0.3])
    q2 = np.array([2.0, 10.0, 300.0, 5000.0])
    E, px, py, pz = lepton_from_dis(x, q2, np.zeros(4), hera)  # noqa: N806
    y = q2 / (x * (hera.s - PROTON_MASS**2))
    e_expected = hera.lepton_energy * (1 - y) + q2 / (4 * hera.lepton_energy)
    np.testing.assert_allclose(E, e_expected, rtol=1e-6)
    cos_expected = q2 / (2 * hera.lepton_energy * e_expected) - 1
    np.testing.assert_allclose(pz / E, cos_expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(py, 0.0, atol=1e-12)
    assert np.all(px >= 0)


def test_fixed_target_closed_forms() -> None:
    """Proton at rest: ν = E - E', Q² = 4EE' sin²(θ/2), x = Q²/(2Mν), W² = M² + 2Mν - Q²."""
    jlab = Beams.preset("jlab")
    e_beam = jlab.lepton_energy
    energy = np.array([1.0, 3.0, 6.0, 9.5])
    theta_l = np.array([0.5, 0.3, 0.2, 0.05])  # from the beam direction (+z)
    pt = energy * np.sin(theta_l)
    d = dis_from_lepton(energy, pt, np.zeros(4), energy * np.cos(theta_l), jlab)
    nu = e_beam - energy
    q2 = 4 * e_beam * energy * np.sin(theta_l / 2) ** 2
    np.testing.assert_allclose(d["nu"], nu, rtol=1e-12)
    np.testing.assert_allclose(d["Q2"], q2, rtol=1e-10)
    np.testing.assert_allclose(d["x"], q2 / (2 * PROTON_MASS * nu), rtol=1e-10)
    np.testing.assert_allclose(d["y"], nu / e_beam, rtol=1e-12)
    np.testing.assert_allclose(d["W2"], PROTON_MASS**2 + 2 * PROTON_MASS * nu - q2, rtol=1e-10)


def test_fixed_target_inverse_energy() -> None:
    """At rest, E' = (1 - y) E exactly."""
    jlab = Beams.preset("jlab")
    x, q2 = np.array([0.2, 0.5]), np.array([2.0, 4.0])
    E, *_ = lepton_from_dis(x, q2, np.zeros(2), jlab)  # noqa: N806
    nu = q2 / (2 * PROTON_MASS * x)
    np.testing.assert_allclose(E, jlab.lepton_energy - nu, rtol=1e-12)


@pytest.mark.parametrize("beams", BEAMS, ids=IDS)
def test_round_trip(beams: Beams) -> None:
    """lepton_from_dis then dis_from_lepton returns (x, Q²) and a massless, physical lepton."""
    x, q2, phi = physical_points(beams, 500)
    E, px, py, pz = lepton_from_dis(x, q2, phi, beams)  # noqa: N806
    np.testing.assert_allclose(E**2, px**2 + py**2 + pz**2, rtol=1e-9)
    d = dis_from_lepton(E, px, py, pz, beams)
    np.testing.assert_allclose(d["x"], x, rtol=1e-6)
    np.testing.assert_allclose(d["Q2"], q2, rtol=1e-6)
    np.testing.assert_allclose(d["y"], y_from_x_q2(x, q2, beams), rtol=1e-6)
    np.testing.assert_allclose(np.arctan2(py, px) % (2 * np.pi), phi, atol=1e-9)
    assert physical_mask(d["x"], d["Q2"], d["y"], d["W2"], beams, rtol=1e-6).all()


@pytest.mark.parametrize("beams", BEAMS, ids=IDS)
def test_nu_features(beams: Beams) -> None:
    """ν₁ = ln(Q²/2E_e) exactly; ν₂ = ln(2E_e y) at colliders; the inverse returns the lepton."""
    x, q2, phi = physical_points(beams, 300, seed=2)
    E, px, py, pz = lepton_from_dis(x, q2, phi, beams)  # noqa: N806
    nu1, nu2 = nu_from_lepton(E, pz, beams)
    np.testing.assert_allclose(nu1, np.log(q2 / (2 * beams.lepton_energy)), atol=1e-6)
    y = y_from_x_q2(x, q2, beams)
    if beams.is_fixed_target:
        # at rest E' = (1-y)E_e, so 2E_e - E' - k'∥ ≥ 2 E_e y > 0
        assert np.all(np.exp(nu2) >= 2 * beams.lepton_energy * y * (1 - 1e-9))
    elif beams.hadron_energy > 100 * beams.hadron_mass:
        np.testing.assert_allclose(nu2, np.log(2 * beams.lepton_energy * y), atol=1e-3)
    back = lepton_from_nu(nu1, nu2, phi, beams)
    for got, want in zip(back, (E, px, py, pz), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * beams.lepton_energy)


def test_per_event_lepton_energy() -> None:
    """A per-event beam energy gives the same answer as a preset with that energy."""
    sym = Beams.preset("sym50")
    energies = np.array([10.0, 20.0, 50.0])
    x, q2 = np.array([0.1, 0.1, 0.1]), np.array([5.0, 5.0, 5.0])
    E, px, py, pz = lepton_from_dis(x, q2, np.zeros(3), sym, lepton_energy=energies)  # noqa: N806
    for i, e in enumerate(energies):
        single = lepton_from_dis(x[i], q2[i], 0.0, Beams.preset("sym50", lepton_energy=e))
        assert E[i] == pytest.approx(float(single[0]), rel=1e-12)
        assert pz[i] == pytest.approx(float(single[3]), rel=1e-12)
    d = dis_from_lepton(E, px, py, pz, sym, lepton_energy=energies)
    np.testing.assert_allclose(d["x"], x, rtol=1e-9)
    np.testing.assert_allclose(d["Q2"], q2, rtol=1e-9)


def test_t_pz_bounds_pz() -> None:
    """T(p_z) = ln(E_b - p_z) inverts exactly and any T gives p_z < E_b."""
    pz = np.array([-49.0, 0.0, 30.0, 49.999])
    for direction in (1, -1):
        t = t_pz(direction * pz, 50.0, direction)
        np.testing.assert_allclose(t_pz_inverse(t, 50.0, direction), direction * pz, rtol=1e-10, atol=1e-12)
    assert t_pz(49.0, 50.0) == pytest.approx(0.0, abs=1e-15)
    assert np.all(t_pz_inverse(np.linspace(-30, 5, 50), 50.0) < 50.0)


def test_limits() -> None:
    """y = 1 sits on q2_max; the W² cut gives the Q² lower edge; the mask rejects outside points."""
    hera = Beams.preset("hera")
    x = np.array([1e-3, 0.1, 0.5])
    np.testing.assert_allclose(y_from_x_q2(x, q2_max(x, hera), hera), 1.0, rtol=1e-5)
    for beams in (hera, Beams.preset("jlab"), Beams.preset("clas", lepton_direction=-1)):
        # on the edge the lepton goes straight back along the beam lepton: p_T = 0, Q² = 4 E_e E'
        x = np.array([0.05, 0.3, 0.8])
        E, px, _, pz = lepton_from_dis(x, q2_max(x, beams), np.zeros(3), beams)  # noqa: N806
        np.testing.assert_allclose(px, 0.0, atol=1e-6 * beams.lepton_energy)
        np.testing.assert_allclose(q2_max(x, beams), 4 * beams.lepton_energy * E, rtol=1e-9)
        np.testing.assert_allclose(-beams.lepton_direction * pz, E, rtol=1e-9)
    q2 = q2_min_from_w2(x, 3.0, hera)
    w2 = PROTON_MASS**2 + q2 * (1 - x) / x
    np.testing.assert_allclose(w2, 3.0, rtol=1e-12)
    assert math.isinf(float(q2_min_from_w2(1.0, 3.0, hera)))
    ones = np.ones(6)
    mask = physical_mask(
        np.array([0.1, 1.2, 0.1, 0.1, 0.1, np.nan]),
        np.array([10.0, 10.0, 0.5, 10.0, 1e6, 10.0]),
        np.array([0.5, 0.5, 0.5, 1.5, 0.5, 0.5]),
        100 * ones,
        hera,
        q2_min=1.0,
    )
    assert mask.tolist() == [True, False, False, False, False, False]
    assert not physical_mask(0.1, 10.0, 0.5, 2.0, hera, w2_min=3.0)
    assert not physical_mask(0.1, 10.0, 0.005, 100.0, hera, y_min=0.01)


def test_beyond_edge_is_nan() -> None:
    """(x, Q²) beyond the kinematic edge (y > y_limit) or non-positive gives NaN, not a wrong lepton."""
    jlab = Beams.preset("jlab")
    x = np.array([0.3, 0.3, 0.3, -0.1])
    q2 = np.array([0.5 * float(q2_max(0.3, jlab)), 1.01 * float(q2_max(0.3, jlab)), -1.0, 1.0])
    E, px, py, pz = lepton_from_dis(x, q2, np.zeros(4), jlab)  # noqa: N806
    assert np.isfinite(E[0]) and np.isfinite(pz[0])
    assert np.all(np.isnan(E[1:])) and np.all(np.isnan(px[1:])) and np.all(np.isnan(pz[1:]))


def test_kinematic_limits_curves() -> None:
    """The Q²-x boundary curves sit where y = y_max, y = y_min and W² = W²_min."""
    hera = Beams.preset("hera")
    lim = kinematic_limits(hera, x=np.array([1e-3, 1e-2, 0.1]), q2_min=2.0, w2_min=4.0, y_min=0.01, y_max=0.9)
    np.testing.assert_allclose(y_from_x_q2(lim["x"], lim["q2_max"], hera), 0.9, rtol=1e-12)
    np.testing.assert_allclose(y_from_x_q2(lim["x"], lim["q2_y_min"], hera), 0.01, rtol=1e-12)
    np.testing.assert_allclose(PROTON_MASS**2 + lim["q2_w2"] * (1 - lim["x"]) / lim["x"], 4.0, rtol=1e-12)
    assert np.all(lim["q2_min"] == 2.0)
    assert len(kinematic_limits(hera)["x"]) == 200


def test_dis_from_batch_uses_beam_energy_column() -> None:
    """dis_from_batch reads the lepton fields and the per-event beam energy."""
    sym = Beams.preset("sym50")
    energies = np.array([10.0, 30.0])
    lepton = lepton_from_dis(np.array([0.2, 0.2]), np.array([4.0, 4.0]), np.zeros(2), sym, lepton_energy=energies)
    cols = dict(zip(("lepton_E", "lepton_px", "lepton_py", "lepton_pz"), lepton, strict=True))
    batch = EventBatch.from_columns({**cols, "beam_energy": energies}, sym)
    np.testing.assert_allclose(dis_from_batch(batch)["x"], 0.2, rtol=1e-9)
    with pytest.raises(DataError):
        dis_from_batch(EventBatch.from_columns(cols))


@settings(max_examples=200, deadline=None)
@given(
    preset=st.sampled_from(PRESETS),
    direction=st.sampled_from([-1, 1]),
    log_x=st.floats(math.log(1e-5), math.log(0.9)),
    log_y=st.floats(math.log(1e-4), math.log(0.999)),
    phi=st.floats(0.0, 2 * math.pi, exclude_max=True),
)
def test_property_round_trip(preset: str, direction: int, log_x: float, log_y: float, phi: float) -> None:
    """inverse(transform(x)) == x on the physical domain, with x, y in (0, 1].

    y stops at 0.999 of the exact edge y_limit(x) (where the lepton goes back
    along the beam and θ is clipped).
    """
    beams = Beams.preset(preset, lepton_direction=direction)
    x = math.exp(log_x)
    y = math.exp(log_y) * float(y_limit(x, beams))
    q2 = x * y * (beams.s - beams.hadron_mass**2)
    if q2 < 1e-3 or q2 * (1 - x) / x < 0.05:
        return  # outside the domain of interest (quasi-elastic or real photons)
    lepton = lepton_from_dis(np.array([x]), np.array([q2]), np.array([phi]), beams)
    d = dis_from_lepton(*lepton, beams)
    assert 0 < d["x"][0] <= 1 + 1e-9 and 0 < d["y"][0] <= 1 + 1e-9
    assert d["x"][0] == pytest.approx(x, rel=1e-6)
    assert d["Q2"][0] == pytest.approx(q2, rel=1e-6)
    assert d["W2"][0] >= beams.hadron_mass**2
    nu1, nu2 = nu_from_lepton(lepton[0], lepton[3], beams)
    back = lepton_from_nu(nu1, nu2, lepton[1] * 0 + phi, beams)
    assert back[0][0] == pytest.approx(lepton[0][0], rel=1e-6, abs=1e-9)
    assert back[3][0] == pytest.approx(lepton[3][0], rel=1e-6, abs=1e-7 * beams.lepton_energy)
