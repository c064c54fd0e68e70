"""Tests of detector-level DIS reconstruction: electron, Jacquet-Blondel and double-angle methods."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from mlegpipe.beams import Beams
from mlegpipe_builtins.dis.kinematics import lepton_from_dis
from mlegpipe_builtins.dis.reconstruction import (
    dis_from_y_q2,
    double_angle,
    electron_method,
    hadronic_sums,
    jacquet_blondel,
    sigma_method,
)

COLLIDERS = ["hera", "eic18x275", "eic10x100", "sym50"]


def _sample(beams: Beams, n: int = 400, seed: int = 3) -> tuple[np.ndarray, ...]:
    """Physical (x, Q2) points with y in (0.01, 0.95), and the scattered lepton and HFS sums."""
    rng = np.random.default_rng(seed)
    two_pk = 2.0 * beams.lepton_energy * (beams.hadron_energy + beams.hadron_momentum)
    y = rng.uniform(0.01, 0.95, n)
    q2_max = 0.5 * y * two_pk  # keeps x <= 0.5
    q2 = np.exp(rng.uniform(np.log(np.minimum(2.0, 0.05 * q2_max)), np.log(q2_max)))
    x = q2 / (y * two_pk)
    phi = rng.uniform(0, 2 * np.pi, n)
    E, px, py, pz = lepton_from_dis(x, q2, phi, beams)  # noqa: N806
    total = beams.lepton_four_momentum + beams.hadron_four_momentum
    hfs = [total[i] - v for i, v in enumerate((E, px, py, pz))]  # momentum conservation
    return x, q2, y, (E, px, py, pz), hfs


@pytest.mark.parametrize("preset", [*COLLIDERS, "jlab", "clas"])
def test_electron_method_is_exact(preset: str) -> None:
    beams = Beams.preset(preset)
    x, q2, y, lep, _ = _sample(beams)
    d = electron_method(*lep, beams)
    np.testing.assert_allclose(d["x"], x, rtol=1e-9)
    np.testing.assert_allclose(d["Q2"], q2, rtol=1e-9)
    np.testing.assert_allclose(d["y"], y, rtol=1e-9)


def _mass_tolerance(x: np.ndarray, q2: np.ndarray, beams: Beams) -> np.ndarray:
    """JB and DA neglect the hadron mass: relative error bounded by a few x² M² / Q² (plus rounding)."""
    return 4.0 * x * x * beams.hadron_mass**2 / q2 + 1e-8


@pytest.mark.parametrize("preset", COLLIDERS)
def test_jacquet_blondel_recovers_truth_from_full_final_state(preset: str) -> None:
    beams = Beams.preset(preset)
    x, q2, y, _, hfs = _sample(beams)
    d = jacquet_blondel(*hfs, beams)
    tol = _mass_tolerance(x, q2, beams)
    assert np.all(np.abs(d["x"] / x - 1) <= tol)
    assert np.all(np.abs(d["Q2"] / q2 - 1) <= tol)
    assert np.all(np.abs(d["y"] / y - 1) <= tol)


@pytest.mark.parametrize("preset", COLLIDERS)
def test_double_angle_recovers_truth(preset: str) -> None:
    beams = Beams.preset(preset)
    x, q2, y, lep, hfs = _sample(beams)
    d = double_angle(lep[1], lep[2], lep[3], *hfs, beams)
    tol = _mass_tolerance(x, q2, beams)
    assert np.all(np.abs(d["x"] / x - 1) <= tol)
    assert np.all(np.abs(d["Q2"] / q2 - 1) <= tol)


@pytest.mark.parametrize("preset", COLLIDERS)
def test_sigma_method_recovers_truth(preset: str) -> None:
    beams = Beams.preset(preset)
    x, q2, y, lep, hfs = _sample(beams)
    d = sigma_method(*lep, *hfs, beams)
    tol = _mass_tolerance(x, q2, beams)
    assert np.all(np.abs(d["x"] / x - 1) <= tol)
    assert np.all(np.abs(d["Q2"] / q2 - 1) <= tol)


def test_sigma_method_is_insensitive_to_initial_state_radiation() -> None:
    """A collinear ISR photon lowers the effective beam energy; the sigma method sees the reduced one."""
    beams = Beams.preset("hera")
    frac = 0.8  # the photon carries 20% of the lepton beam energy, lost down the lepton beam pipe
    reduced = Beams.preset("hera", lepton_energy=frac * beams.lepton_energy)
    x, q2, _, lep, hfs = _sample(reduced, n=100)
    sig = sigma_method(*lep, *hfs, beams)
    np.testing.assert_allclose(sig["Q2"], q2, rtol=_mass_tolerance(x, q2, beams).max() + 1e-6)
    ele = electron_method(*lep, beams)  # the electron method is biased by the radiated energy
    assert np.median(np.abs(ele["Q2"] / q2 - 1)) > 0.05


def test_double_angle_ignores_the_lepton_energy_scale() -> None:
    beams = Beams.preset("hera")
    x, q2, _, lep, hfs = _sample(beams, n=50)
    scaled = double_angle(1.37 * lep[1], 1.37 * lep[2], 1.37 * lep[3], *hfs, beams)
    np.testing.assert_allclose(scaled["Q2"], q2, rtol=1e-6)


def test_jacquet_blondel_ignores_losses_along_the_hadron_beam() -> None:
    """Particles lost down the hadron beam pipe carry E - p_z' = 0: JB is unchanged."""
    beams = Beams.preset("hera")  # hadron along +z
    x, q2, _, _, hfs = _sample(beams, n=50)
    lost = 300.0
    d = jacquet_blondel(hfs[0] - lost, hfs[1], hfs[2], hfs[3] - lost, beams)
    np.testing.assert_allclose(d["Q2"], q2, rtol=1e-6)


def test_per_event_lepton_energy() -> None:
    beams = Beams.preset("eic10x100")
    other = Beams.preset("eic10x100", lepton_energy=5.0)
    x, q2, _, lep, hfs = _sample(other, n=50)
    energies = np.full(50, 5.0)
    np.testing.assert_allclose(electron_method(*lep, beams, lepton_energy=energies)["x"], x, rtol=1e-9)
    jb = jacquet_blondel(*hfs, beams, lepton_energy=energies)
    assert np.all(np.abs(jb["Q2"] / q2 - 1) <= _mass_tolerance(x, q2, beams))


def test_undefined_results_are_nan() -> None:
    beams = Beams.preset("hera")
    d = jacquet_blondel([0.0, 100.0], [0.0, 1.0], [0.0, 0.0], [0.0, -100.0], beams)  # no HFS; y >= 1
    assert np.isnan(d["x"]).all()
    d = double_angle([1.0], [0.0], [-5.0], [0.0], [0.0], [0.0], [0.0], beams)
    assert np.isnan(d["Q2"]).all()


def test_dis_from_y_q2_closes() -> None:
    beams = Beams.preset("eic18x275")
    d = dis_from_y_q2(0.3, 50.0, beams)
    two_pk = 2 * 18.0 * (275.0 + beams.hadron_momentum)
    assert d["x"] == pytest.approx(50.0 / (0.3 * two_pk), rel=1e-12)
    assert d["W2"] == pytest.approx(beams.hadron_mass**2 + 0.3 * two_pk - 50.0, rel=1e-12)


def test_hadronic_sums_with_mask() -> None:
    parts = ak.Array([[{"E": 2.0, "px": 1.0, "py": 0.5, "pz": 1.0}, {"E": 1.0, "px": -1.0, "py": 0.0, "pz": 0.0}], []])
    mask = ak.Array([[True, False], []])
    sums = hadronic_sums(parts, mask)
    assert sums["E"].tolist() == [2.0, 0.0]
    assert sums["py"].tolist() == [0.5, 0.0]
