"""Tests of the `smear` detector: Matrix 0.2 widths per zone, acceptance, flags, reproducibility, configs."""

from __future__ import annotations

import math
import tomllib

import awkward as ak
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlegpipe.beams import Beams
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, FormulaError
from mlegpipe.schema import build_params
from mlegpipe_builtins.detectors.presets import MATRIX_ETA_EDGES, preset_devices
from mlegpipe_builtins.detectors.smear import PION_MASS, SmearDetector, SmearParams
from mlegpipe_builtins.dis.kinematics import lepton_from_dis

EIC = Beams.preset("eic18x275")  # hadron along +z: lab frame = eic-smear frame
LEPTON_FORWARD = Beams.preset("sym50")  # lepton along +z: the frame is mirrored


def detector(where: str = "detector", **raw: object) -> SmearDetector:
    params = build_params(SmearParams, dict(raw), where)
    return SmearDetector(params, StageContext(where, seed=1))


def particles(pid: list[int], charge: list[float], eta: list[float], p: list[float],
              phi: list[float] | None = None, mass: float = 0.0) -> dict[str, np.ndarray]:
    """Flat particle arrays at given pseudorapidity and momentum."""
    eta_, p_ = np.asarray(eta, dtype=float), np.asarray(p, dtype=float)
    phi_ = np.zeros_like(eta_) + 0.3 if phi is None else np.asarray(phi, dtype=float)
    pt = p_ / np.cosh(eta_)
    return {"px": pt * np.cos(phi_), "py": pt * np.sin(phi_), "pz": pt * np.sinh(eta_),
            "E": np.sqrt(p_**2 + mass**2), "pid": np.asarray(pid), "charge": np.asarray(charge, dtype=float)}


def one_per_event(flat: dict[str, np.ndarray], beams: Beams | None = EIC) -> EventBatch:
    counts = np.ones(len(flat["E"]), dtype=np.int64)
    return EventBatch.from_columns({"particles": ak.unflatten(ak.zip(flat), counts)}, beams=beams)


def flat_out(batch: EventBatch, name: str) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(batch.arrays["particles"][name])))


# --- Matrix 0.2: the fitted width in every zone equals the table ----------------------------------------------

_TRACK = [(0.001, 0.02), (0.0002, 0.01), (0.0002, 0.01), (0.0002, 0.005), (0.0002, 0.01), (0.001, 0.02)]
_EM = [(0.01, 0.025, 0.01), (0.01, 0.025, 0.01), (0.02, 0.08, 0.02), (0.02, 0.14, 0.03), (0.02, 0.12, 0.02),
       (0.02, 0.12, 0.02)]
_HAD = [(0.5, 0.1), (0.5, 0.1), (0.5, 0.1), (1.0, 0.1), (0.5, 0.1), (0.5, 0.1)]
N_WIDTH = 20000  # std of the width estimate: 1/sqrt(2N) = 0.5%, the 2% target is 4 standard deviations


def _zone_sample(zone: int, pid: int, charge: float, p: float, beams: Beams, sign: float = 1.0) -> EventBatch:
    lo, hi = MATRIX_ETA_EDGES[zone], MATRIX_ETA_EDGES[zone + 1]
    rng = np.random.default_rng(zone)
    eta = sign * rng.uniform(lo + 1e-3, hi - 1e-3, N_WIDTH)
    return one_per_event(particles([pid] * N_WIDTH, [charge] * N_WIDTH, list(eta), [p] * N_WIDTH), beams)


@pytest.fixture(scope="module")
def matrix() -> SmearDetector:
    return detector(preset="matrix-0.2")


@pytest.mark.parametrize("zone", range(6))
def test_matrix_tracking_width_per_zone(matrix: SmearDetector, zone: int) -> None:
    p = 20.0
    a, b = _TRACK[zone]
    events = _zone_sample(zone, 211, 1.0, p, EIC)
    out = matrix.fold(events, np.random.SeedSequence(10 + zone))
    reco = np.sqrt(flat_out(out, "px") ** 2 + flat_out(out, "py") ** 2 + flat_out(out, "pz") ** 2)
    assert flat_out(out, "measured_P").all()
    width = np.std((reco - p) / p)
    assert width == pytest.approx(math.hypot(a * p, b), rel=0.02)


@pytest.mark.parametrize("zone", range(6))
def test_matrix_em_width_per_zone(matrix: SmearDetector, zone: int) -> None:
    e = 10.0
    a, b, c = _EM[zone]
    out = matrix.fold(_zone_sample(zone, 22, 0.0, e, EIC), np.random.SeedSequence(20 + zone))
    width = np.std((flat_out(out, "E") - e) / e)
    assert width == pytest.approx(math.sqrt(a**2 + b**2 * e + (c * e) ** 2) / e, rel=0.02)
    assert not flat_out(out, "measured_P").any()  # photons leave no track
    assert flat_out(out, "measured_angles").all()


@pytest.mark.parametrize("zone", range(6))
def test_matrix_hadronic_width_per_zone(matrix: SmearDetector, zone: int) -> None:
    e = 100.0  # no clipping at E = 0 (the width is at most 14%)
    b, c = _HAD[zone]
    out = matrix.fold(_zone_sample(zone, 2112, 0.0, e, EIC), np.random.SeedSequence(30 + zone))
    width = np.std((flat_out(out, "E") - e) / e)
    assert width == pytest.approx(math.sqrt(b**2 * e + (c * e) ** 2) / e, rel=0.02)


@pytest.mark.parametrize(
    ("preset", "zone", "expected"),
    [
        ("matrix-0.2-1.5T", 0, math.hypot(0.002 * 20.0, 0.05)),
        ("matrix-0.2-1.5T", 3, math.hypot(0.0004 * 20.0, 0.01)),
        ("handbook-1.2", 3, math.hypot(0.0005 * 20.0, 0.005)),
        ("handbook-1.2", 5, math.hypot(0.001 * 20.0, 0.02)),
    ],
)
def test_other_presets_tracking_width(preset: str, zone: int, expected: float) -> None:
    p = 20.0
    out = detector(preset=preset).fold(_zone_sample(zone, 211, 1.0, p, EIC), np.random.SeedSequence(zone))
    reco = np.sqrt(flat_out(out, "px") ** 2 + flat_out(out, "py") ** 2 + flat_out(out, "pz") ** 2)
    assert np.std(reco / p - 1) == pytest.approx(expected, rel=0.03)  # 1 mrad angles do not change |p|


def test_zeus_adds_tracking_terms_linearly() -> None:
    """sigma_p = 0.0085 p + 0.0025 p² (linear sum, 3.35% at 10 GeV; in quadrature it would be 2.64%)."""
    p = 10.0
    out = detector(preset="zeus").fold(_zone_sample(3, 211, 1.0, p, Beams.preset("hera")), np.random.SeedSequence(8))
    reco = np.sqrt(flat_out(out, "px") ** 2 + flat_out(out, "py") ** 2 + flat_out(out, "pz") ** 2)
    assert np.std(reco / p - 1) == pytest.approx(0.0085 + 0.0025 * p, rel=0.02)


def test_eta_zones_follow_the_hadron_beam(matrix: SmearDetector) -> None:
    """With the lepton along +z, lab eta = +1.5 is eic-smear eta = -1.5 (EM 8%, not 12%)."""
    e = 10.0
    sample = _zone_sample(2, 22, 0.0, e, LEPTON_FORWARD, sign=-1.0)  # lab eta in [1, 2]
    out = matrix.fold(sample, np.random.SeedSequence(5))
    a, b, c = _EM[2]  # the -2.0 ... -1.0 zone
    width = np.std((flat_out(out, "E") - e) / e)
    assert width == pytest.approx(math.sqrt(a**2 + b**2 * e + (c * e) ** 2) / e, rel=0.02)
    # and the measured angles are given back in the lab frame
    theta = flat_out(out, "theta")
    assert np.all(theta < np.pi / 2)


def test_1mrad_angle_option() -> None:
    det = detector(preset="matrix-0.2", angle_resolution=0.001)
    out = det.fold(_zone_sample(3, 211, 1.0, 5.0, EIC), np.random.SeedSequence(4))
    truth = _zone_sample(3, 211, 1.0, 5.0, EIC).arrays.particles
    true_theta = np.arctan2(np.hypot(flat_out_arr(truth, "px"), flat_out_arr(truth, "py")), flat_out_arr(truth, "pz"))
    assert np.std(flat_out(out, "theta") - true_theta) == pytest.approx(0.001, rel=0.03)


def flat_out_arr(parts: ak.Array, name: str) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(parts[name])))


# --- acceptance, flags, derived quantities -----------------------------------------------------------------------

def test_acceptance_edges_are_exact(matrix: SmearDetector) -> None:
    eps = 1e-9
    etas = [3.5 - eps, 3.5 + eps, -3.5 + eps, -3.5 - eps, 1.0, -1.0]
    n = len(etas)
    out = matrix.fold(one_per_event(particles([211] * n, [1] * n, etas, [5.0] * n)), np.random.SeedSequence(1))
    assert flat_out(out, "measured_P").tolist() == [True, False, True, False, True, True]
    assert flat_out(out, "measured_E").tolist() == [True, False, True, False, True, True]


def test_zeus_tracking_edges_in_theta_are_exact() -> None:
    zeus = detector(preset="zeus")
    eps = 1e-9
    lo, hi = np.radians(15.0), np.radians(164.0)
    thetas = np.array([lo + eps, hi - eps, lo + 1e-6, hi - 1e-6, lo - eps, hi + eps, lo - 1e-6, hi + 1e-6])
    etas = -np.log(np.tan(thetas / 2))
    out = zeus.fold(one_per_event(particles([211] * 8, [1] * 8, list(etas), [5.0] * 8), Beams.preset("hera")),
                    np.random.SeedSequence(1))
    assert flat_out(out, "measured_P").tolist() == [True, True, True, True, False, False, False, False]
    assert flat_out(out, "measured_angles").all()  # the calorimeter measures the angles outside the tracker


def test_handbook_covers_eta_4_5_for_em_only() -> None:
    flat = particles([22, 22, 2112, 211], [0, 0, 0, 1], [4.2, 4.6, 4.2, -4.2], [5.0] * 4)
    out = detector(preset="handbook-1.2").fold(one_per_event(flat), np.random.SeedSequence(1))
    assert flat_out(out, "measured_E").tolist() == [True, False, False, False]
    assert not flat_out(out, "measured_P").any()


def test_shared_zone_edge_is_smeared_once_by_the_first_device() -> None:
    det = detector(devices=[
        {"variable": "E", "formula": "0.0", "zones": [{"eta": [-1.0, 1.0]}]},
        {"variable": "E", "formula": "1000.0", "zones": [{"eta": [1.0, 2.0]}]},
    ])
    out = det.fold(one_per_event(particles([22], [0], [1.0], [10.0])), np.random.SeedSequence(1))
    assert flat_out(out, "E")[0] == pytest.approx(10.0, abs=1e-12)


def test_not_measured_entries_are_kept_index_aligned(matrix: SmearDetector) -> None:
    # pi+, neutrino, neutron, muon, photon outside, electron
    flat = particles([211, 12, 2112, 13, 22, 11], [1, 0, 0, -1, 0, -1], [0.5, 0.0, 0.2, -1.0, 4.2, -2.0],
                     [5.0, 3.0, 20.0, 4.0, 2.0, 8.0])
    events = EventBatch.from_columns({"particles": ak.unflatten(ak.zip(flat), [4, 2])}, beams=EIC)
    out = matrix.fold(events, np.random.SeedSequence(2))
    assert ak.num(out.arrays.particles).tolist() == [4, 2]
    assert flat_out(out, "pid").tolist() == [211, 12, 2112, 13, 22, 11]
    assert flat_out(out, "measured_P").tolist() == [True, False, False, True, False, True]
    assert flat_out(out, "measured_E").tolist() == [True, False, True, False, False, True]
    assert flat_out(out, "measured_angles").tolist() == [True, False, True, True, False, True]
    for name in ("px", "py", "pz", "E", "theta", "phi"):
        assert flat_out(out, name)[1] == 0.0 and flat_out(out, name)[4] == 0.0  # neutrino, photon at eta 4.2
    assert flat_out(out, "px")[2] == 0.0 and flat_out(out, "E")[3] == 0.0  # E never from P, nor P from E


def test_beam_particles_are_not_smeared() -> None:
    flat = particles([2212, 211], [1, 1], [0.0, 0.0], [5.0, 5.0])
    flat["status"] = np.array([4, 1])
    events = EventBatch.from_columns({"particles": ak.unflatten(ak.zip(flat), [2])}, beams=EIC)
    out = detector().fold(events, np.random.SeedSequence(1))
    assert flat_out(out, "measured_P").tolist() == [False, True]


def test_derived_quantities_recomputed_from_three_smeared() -> None:
    det = detector(devices=[
        {"variable": "pT", "formula": "0.1 * pT"},
        {"variable": "pz", "formula": "0.1 * abs(pz) + 0.01"},
        {"variable": "phi", "formula": "0.01"},
    ])
    flat = particles([211] * 500, [1] * 500, list(np.linspace(-2, 2, 500)), [10.0] * 500)
    out = det.fold(one_per_event(flat), np.random.SeedSequence(3))
    px, py, pz = flat_out(out, "px"), flat_out(out, "py"), flat_out(out, "pz")
    theta = flat_out(out, "theta")
    assert flat_out(out, "measured_P").all()
    np.testing.assert_allclose(np.arctan2(np.hypot(px, py), pz), theta, atol=1e-12)
    assert not np.allclose(np.hypot(px, py), np.hypot(flat["px"], flat["py"]))
    assert not flat_out(out, "measured_E").any()


def test_reflection_and_wrapping_keep_angles_in_range() -> None:
    det = detector(devices=[
        {"variable": "P", "formula": "0.0"},
        {"variable": "theta", "formula": "2.0"},
        {"variable": "phi", "formula": "5.0"},
        {"variable": "E", "formula": "3.0 * E"},  # often negative before clipping
    ])
    flat = particles([211] * 3000, [1] * 3000, list(np.linspace(-4, 4, 3000)), [1.0] * 3000)
    out = det.fold(one_per_event(flat), np.random.SeedSequence(7))
    theta, phi, e = flat_out(out, "theta"), flat_out(out, "phi"), flat_out(out, "E")
    assert theta.min() >= 0 and theta.max() <= np.pi
    assert phi.min() >= 0 and phi.max() < 2 * np.pi
    assert e.min() == 0.0 and (e == 0).mean() > 0.2
    np.testing.assert_allclose(np.sqrt(flat_out(out, "px") ** 2 + flat_out(out, "py") ** 2 + flat_out(out, "pz") ** 2),
                               1.0, rtol=1e-12)


def test_no_nan_for_degenerate_particles(matrix: SmearDetector) -> None:
    flat = {  # at rest, along +z and -z (pT = 0), massless with E = 0, very hard
        "px": np.array([0.0, 0.0, 0.0, 0.0, 1e4, 1e-12]), "py": np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        "pz": np.array([0.0, 50.0, -50.0, 0.0, 1e4, 0.0]), "E": np.array([0.938, 50.0, 50.0, 0.0, 1.5e4, 1e-12]),
        "pid": np.array([2212, 211, 11, 22, 211, 22]), "charge": np.array([1.0, 1.0, -1.0, 0.0, 1.0, 0.0]),
    }
    for beams in (EIC, LEPTON_FORWARD, None):
        out = matrix.fold(one_per_event(flat, beams), np.random.SeedSequence(1))
        out.check_finite(["particles"])
        for name in ("px", "py", "pz", "E", "theta", "phi"):
            assert np.isfinite(flat_out(out, name)).all()


def test_unphysical_inputs_are_not_measured_and_never_nan(matrix: SmearDetector) -> None:
    """Generated events may hold E < 0 or NaN: such particles are left as not measured."""
    events = EventBatch.from_columns({"lepton_E": [-1.0, np.nan, 10.0], "lepton_px": [1.0, 1.0, 3.0],
                                      "lepton_py": [0.0, 0.0, 0.0], "lepton_pz": [-3.0, -3.0, -np.sqrt(91.0)]},
                                     beams=EIC)
    out = matrix.fold(events, np.random.SeedSequence(1))
    assert np.asarray(out.arrays.lepton_measured_P).tolist() == [False, False, True]
    assert np.asarray(out.arrays.measured_electron).tolist() == [False, False, True]
    assert np.asarray(out.arrays.measured).tolist() == [False, False, True]
    out.check_finite()
    no_beams = matrix.fold(EventBatch(events.arrays, None), np.random.SeedSequence(1))
    assert np.asarray(no_beams.arrays.measured).tolist() == [False, False, True]
    assert "x" not in no_beams.fields


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False)] * 3, st.floats(0, 2e4),
                          st.sampled_from([11, -11, 22, 211, -211, 2112, 13, 12, 130]), st.booleans()),
                min_size=1, max_size=12))
def test_never_nan_for_any_kinematics(rows: list[tuple[float, float, float, float, int, bool]]) -> None:
    px, py, pz, e, pid, lepton_first = zip(*rows, strict=True)
    flat = {"px": np.array(px), "py": np.array(py), "pz": np.array(pz), "E": np.array(e), "pid": np.array(pid),
            "charge": np.array([0.0 if abs(p) in (22, 2112, 12, 130) else 1.0 for p in pid])}
    columns = {"particles": ak.unflatten(ak.zip(flat), [len(rows)])}
    if lepton_first[0]:
        columns.update({"lepton_E": [e[0]], "lepton_px": [px[0]], "lepton_py": [py[0]], "lepton_pz": [pz[0]]})
    for preset in ("matrix-0.2", "zeus"):
        out = _PRESETS[preset].fold(EventBatch.from_columns(columns, beams=EIC), np.random.SeedSequence(1))
        out.check_finite()
        assert ak.num(out.arrays.particles).tolist() == [len(rows)]


_PRESETS = {name: detector(preset=name) for name in ("matrix-0.2", "zeus")}


def test_lognormal_option_keeps_values_positive_and_the_mean() -> None:
    det = detector(devices=[{"variable": "E", "formula": "0.5 * E", "lognormal": True}])
    out = det.fold(one_per_event(particles([22] * 20000, [0] * 20000, [0.0] * 20000, [4.0] * 20000)),
                   np.random.SeedSequence(9))
    e = flat_out(out, "E")
    assert e.min() > 0
    assert e.mean() == pytest.approx(4.0, rel=0.02)
    assert e.std() == pytest.approx(2.0, rel=0.03)


def test_efficiency_and_thresholds() -> None:
    det = detector(preset="matrix-0.2", efficiency="0.25 + 0.5 * (abs(eta) < 1)", threshold_pT=0.3,
                   threshold_E_em=0.05)
    n = 20000
    central = det.fold(one_per_event(particles([211] * n, [1] * n, [0.1] * n, [5.0] * n)), np.random.SeedSequence(1))
    forward = det.fold(one_per_event(particles([211] * n, [1] * n, [2.0] * n, [5.0] * n)), np.random.SeedSequence(1))
    for out, eff in ((central, 0.75), (forward, 0.25)):
        frac = flat_out(out, "measured_P").mean()
        assert abs(frac - eff) < 5 * math.sqrt(eff * (1 - eff) / n)
        assert (flat_out(out, "measured_P") == flat_out(out, "measured_E")).all()  # efficiency drops the candidate
    soft = det.fold(one_per_event(particles([211, 22], [1, 0], [0.0, 0.0], [0.2, 0.01])), np.random.SeedSequence(1))
    assert not flat_out(soft, "measured_P")[0] and not flat_out(soft, "measured_E")[1]


# --- reproducibility ---------------------------------------------------------------------------------------------

def _mixed_events(n: int = 3000, seed: int = 0) -> EventBatch:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 8, n)
    m = int(counts.sum())
    pid = rng.choice([211, -211, 22, 2112, 11, 13, 130], m)
    charge = np.select([pid == 211, pid == -211, pid == 11, pid == 13], [1.0, -1.0, -1.0, -1.0], 0.0)
    flat = particles(list(pid), list(charge), list(rng.uniform(-4.5, 4.5, m)), list(rng.exponential(5.0, m) + 0.05),
                     phi=list(rng.uniform(0, 2 * np.pi, m)), mass=0.14)
    return EventBatch.from_columns({"particles": ak.unflatten(ak.zip(flat), counts)}, beams=EIC)


def test_same_seed_same_events_and_different_seed_differs() -> None:
    events = _mixed_events()
    det = detector(preset="handbook-1.2")
    seed = StageContext("detector", seed=5).seed_sequence("fold")
    a = det.fold(events, seed)
    b = detector(preset="handbook-1.2").fold(events, StageContext("detector", seed=5).seed_sequence("fold"))
    c = det.fold(events, StageContext("detector", seed=6).seed_sequence("fold"))
    assert ak.to_list(a.arrays) == ak.to_list(b.arrays)
    assert ak.to_list(det.fold(events, seed).arrays) == ak.to_list(a.arrays)  # fold does not consume the seed
    assert not np.array_equal(flat_out(a, "E"), flat_out(c, "E"))


def test_chunks_draw_independent_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlegpipe_builtins.detectors.smear as smear_module

    events = _mixed_events(400)
    twice = EventBatch.concat([events, events])
    monkeypatch.setattr(smear_module, "CHUNK_EVENTS", 400)
    out = detector().fold(twice, np.random.SeedSequence(3))
    first, second = out.take(slice(0, 400)), out.take(slice(400, 800))
    assert ak.to_list(first.arrays) == ak.to_list(detector().fold(events, np.random.SeedSequence(3)).arrays)
    assert not np.array_equal(flat_out(first, "E"), flat_out(second, "E"))


# --- declared in TOML -------------------------------------------------------------------------------------------

def _matrix_toml() -> str:
    rows = []
    edges = MATRIX_ETA_EDGES
    for i, (a, b) in enumerate(_TRACK):
        rows.append(f'[[detector.devices]]\nvariable = "P"\ncharge = "charged"\n'
                    f'formula = "P * sqrt(({a} * P)**2 + {b}**2)"\nzones = [{{eta = [{edges[i]}, {edges[i + 1]}]}}]\n')
    for i, (a, b, c) in enumerate(_EM):
        rows.append(f'[[detector.devices]]\nvariable = "E"\ngenre = "em"\nform = "calorimeter"\nterms = [{a}, {b}, {c}]\n'
                    f'zones = [{{eta = [{edges[i]}, {edges[i + 1]}]}}]\n')
    for i, (b, c) in enumerate(_HAD):
        rows.append(f'[[detector.devices]]\nvariable = "E"\ngenre = "hadronic"\ncombine = "quadrature"\n'
                    f'formula = "sqrt({b}**2 * E + ({c} * E)**2)"\nzones = [{{eta = [{edges[i]}, {edges[i + 1]}]}}]\n')
    for genre in ("em", "hadronic", "muon"):
        for v in ("theta", "phi"):
            rows.append(f'[[detector.devices]]\nvariable = "{v}"\ngenre = "{genre}"\nformula = "0"\n'
                        'zones = [{eta = [-3.5, 3.5]}]\n')
    return '[detector]\nplugin = "smear"\n\n' + "\n".join(rows)


def test_toml_declared_detector_equals_preset(matrix: SmearDetector) -> None:
    table = tomllib.loads(_matrix_toml())["detector"]
    table.pop("plugin")
    declared = detector(**table)
    assert len(declared.devices) == len(preset_devices("matrix-0.2")) == 24
    events = _mixed_events()
    a = matrix.fold(events, np.random.SeedSequence(11))
    b = declared.fold(events, np.random.SeedSequence(11))
    for name in ("px", "py", "pz", "E", "theta", "phi"):
        np.testing.assert_allclose(flat_out(b, name), flat_out(a, name), rtol=1e-12, atol=1e-12)
    for name in ("measured_E", "measured_P", "measured_angles"):
        assert (flat_out(b, name) == flat_out(a, name)).all()


@pytest.mark.parametrize("preset", ["matrix-0.2", "matrix-0.2-1.5T", "handbook-1.2", "zeus"])
def test_every_preset_builds_and_folds(preset: str) -> None:
    out = detector(preset=preset).fold(_mixed_events(300), np.random.SeedSequence(1))
    assert flat_out(out, "measured_P").any() and flat_out(out, "measured_E").any()
    out.check_finite(["particles"])


# --- configuration errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        ({"devices": [{"variable": "E", "formula": "__import__('os').system('x')"}]}, FormulaError,
         ["detector.devices[0].formula", "__import__"]),
        ({"devices": [{"variable": "E", "formula": "0.1 * thta"}]}, FormulaError,
         ["detector.devices[0].formula", "'thta'", "did you mean 'theta'"]),
        ({"devices": [{"variable": "Pt", "formula": "0.1"}]}, ConfigError, ["detector.devices[0].variable", "'Pt'"]),
        ({"devices": [{"variable": "E", "formula": "0.1", "zones": [{"etaa": [0.0, 1.0]}]}]}, ConfigError,
         ["detector.devices[0].zones[0].etaa", "did you mean 'eta'"]),
        ({"devices": [{"variable": "E", "formula": "0.1", "zones": [{"eta": [1.0, -1.0]}]}]}, ConfigError,
         ["detector.devices[0].zones[0].eta"]),
        ({"devices": [{"variable": "E", "formula": "0.1", "zones": [{"eta": [0.0, 1.0], "theta": [0.1, 0.2]}]}]},
         ConfigError, ["eta or in theta"]),
        ({"devices": [{"variable": "E", "formula": "0.1", "zones": [{"eta": [-1.0, 1.0]}]},
                      {"variable": "E", "formula": "0.2", "zones": [{"eta": [0.5, 2.0]}]}]}, ConfigError,
         ["detector.devices[1]", "overlapping", "'E'"]),
        ({"devices": [{"variable": "P", "formula": "0.1", "charge": "charged", "zones": [{"theta": [0.5, 1.0]}]},
                      {"variable": "P", "formula": "0.2", "zones": [{"eta": [0.0, 1.0]}]}]}, ConfigError,
         ["overlapping"]),
        ({"devices": [{"variable": "E"}]}, ConfigError, ["needs a resolution"]),
        ({"devices": [{"variable": "E", "form": "calorimeter", "terms": [0.1, 0.2]}]}, ConfigError,
         ["detector.devices[0].terms", "3 terms"]),
        ({"preset": "matrix-0.2", "devices": [{"variable": "E", "formula": "0.1"}]}, ConfigError, ["not both"]),
        ({"preset": "matrx-0.2"}, ConfigError, ["detector.preset", "did you mean 'matrix-0.2'"]),
        ({"preset": "zeus", "angle_resolution": 0.001}, ConfigError, ["detector.angle_resolution"]),
        ({"efficiency": "0.9 if pT > 1 else 0"}, FormulaError, ["detector.efficiency"]),
        ({"methods": ["jb", "sigmaa"]}, ConfigError, ["detector.methods[1]", "did you mean 'sigma'"]),
    ],
)
def test_bad_configurations_are_clear_errors(raw: dict, error: type, words: list[str]) -> None:
    with pytest.raises(error) as info:
        detector(**raw)
    for word in words:
        assert word in str(info.value)


def test_disjoint_classes_may_share_zones() -> None:
    det = detector(devices=[
        {"variable": "E", "formula": "0.1", "genre": "em", "zones": [{"eta": [-1.0, 1.0]}]},
        {"variable": "E", "formula": "0.2", "genre": "hadronic", "zones": [{"eta": [-1.0, 1.0]}]},
        {"variable": "P", "formula": "0.1", "charge": "charged", "zones": [{"eta": [-1.0, 1.0]}]},
        {"variable": "P", "formula": "0.1", "charge": "neutral", "zones": [{"eta": [-1.0, 1.0]}]},
    ])
    assert len(det.devices) == 4


def test_negative_width_at_run_time_names_the_formula() -> None:
    det = detector(devices=[{"variable": "E", "formula": "0.1 * E - 1"}])
    with pytest.raises(DataError, match=r"detector.devices\[0\].formula"):
        det.fold(one_per_event(particles([22], [0], [0.0], [2.0])), np.random.SeedSequence(1))


def test_missing_inputs_are_data_errors() -> None:
    with pytest.raises(DataError, match="particle collection or the scattered lepton"):
        detector().fold(EventBatch.from_columns({"x": [0.1]}), np.random.SeedSequence(1))
    bad = EventBatch.from_columns({"particles": ak.Array([[{"px": 1.0, "py": 0.0, "pz": 0.0, "E": 1.0}]])})
    with pytest.raises(DataError, match="pid, charge"):
        detector().fold(bad, np.random.SeedSequence(1))


# --- the scattered lepton and detector-level DIS ----------------------------------------------------------------

PERFECT = [
    {"variable": "P", "formula": "0"}, {"variable": "theta", "formula": "0"}, {"variable": "phi", "formula": "0"},
    {"variable": "E", "formula": "0"},
]


def _dis_events(beams: Beams, n: int = 200, with_particles: bool = True, photons: bool = False) -> EventBatch:
    """Lepton from (x, Q2) and a pi+ pi- pair (or two photons) balancing the event."""
    import vector

    rng = np.random.default_rng(4)
    two_pk = 2.0 * beams.lepton_energy * (beams.hadron_energy + beams.hadron_momentum)
    y = rng.uniform(0.05, 0.9, n)
    q2 = np.exp(rng.uniform(np.log(5.0), np.log(0.4 * y * two_pk)))
    x = q2 / (y * two_pk)
    E, px, py, pz = lepton_from_dis(x, q2, rng.uniform(0, 2 * np.pi, n), beams)  # noqa: N806
    total = beams.lepton_four_momentum + beams.hadron_four_momentum
    system = vector.array({"E": total[0] - E, "px": total[1] - px, "py": total[2] - py, "pz": total[3] - pz})
    cos, phi = rng.uniform(-1, 1, n), rng.uniform(0, 2 * np.pi, n)
    half = 0.5 * system.mass
    p = half if photons else np.sqrt(half**2 - PION_MASS**2)  # tracks take the pion mass
    sin = np.sqrt(1 - cos**2)
    d1 = vector.array({"E": half, "px": p * sin * np.cos(phi), "py": p * sin * np.sin(phi), "pz": p * cos})
    d2 = vector.array({"E": half, "px": -d1.px, "py": -d1.py, "pz": -d1.pz})
    h1, h2 = d1.boost_p4(system), d2.boost_p4(system)
    columns = {"lepton_E": E, "lepton_px": px, "lepton_py": py, "lepton_pz": pz, "x": x, "Q2": q2, "y": y}
    if with_particles:
        rows = {
            "px": np.stack([px, h1.px, h2.px], 1), "py": np.stack([py, h1.py, h2.py], 1),
            "pz": np.stack([pz, h1.pz, h2.pz], 1), "E": np.stack([E, h1.E, h2.E], 1),
            "pid": np.tile([beams.lepton_pdg, 22, 22] if photons else [beams.lepton_pdg, 211, -211], (n, 1)),
            "charge": np.tile([-1.0, 0.0, 0.0] if photons else [-1.0, 1.0, -1.0], (n, 1)),
        }
        columns["particles"] = ak.zip({k: ak.Array(v) for k, v in rows.items()})
    return EventBatch.from_columns(columns, beams=beams)


@pytest.mark.parametrize("beams", [EIC, Beams.preset("hera"), LEPTON_FORWARD])
def test_perfect_detector_reconstructs_true_kinematics(beams: Beams) -> None:
    events = _dis_events(beams)
    out = detector(devices=PERFECT, methods=["jb", "da", "sigma"]).fold(events, np.random.SeedSequence(1))
    a = out.arrays
    x, q2 = events.column("x"), events.column("Q2")
    for flag in ("measured_electron", "measured_jb", "measured_da", "measured_sigma"):
        assert np.asarray(a[flag]).all()
    np.testing.assert_allclose(out.column("x"), x, rtol=1e-6)
    np.testing.assert_allclose(out.column("Q2"), q2, rtol=1e-6)
    tol = 4 * x * x * beams.hadron_mass**2 / q2 + 1e-6  # JB and DA neglect the proton mass
    for tag in ("jb", "da", "sigma"):
        assert np.all(np.abs(out.column(f"x_{tag}") / x - 1) <= tol)
        assert np.all(np.abs(out.column(f"Q2_{tag}") / q2 - 1) <= tol)


@pytest.mark.parametrize("beams", [EIC, LEPTON_FORWARD])
def test_calorimeter_only_hadronic_final_state(beams: Beams) -> None:
    """Neutral particles enter JB and DA through their energy and measured angles."""
    events = _dis_events(beams, photons=True)
    devices = [dict(d, charge="charged") if d["variable"] == "P" else d for d in PERFECT]
    out = detector(devices=devices).fold(events, np.random.SeedSequence(1))
    assert not ak.any(out.arrays.particles.measured_P[:, 1:])
    x, q2 = events.column("x"), events.column("Q2")
    tol = 4 * x * x * beams.hadron_mass**2 / q2 + 1e-6
    for tag in ("jb", "da"):
        assert np.all(np.abs(out.column(f"Q2_{tag}") / q2 - 1) <= tol)


def test_lepton_in_the_particle_list_is_smeared_once() -> None:
    events = _dis_events(EIC, n=300)
    out = detector(preset="matrix-0.2").fold(events, np.random.SeedSequence(2))
    lepton_in_list = out.arrays.particles[:, 0]
    measured = np.asarray(out.arrays.lepton_measured_P)
    assert measured.mean() > 0.5
    np.testing.assert_array_equal(out.column("lepton_px")[measured], np.asarray(lepton_in_list.px)[measured])
    np.testing.assert_array_equal(out.column("lepton_E"), np.asarray(lepton_in_list.E))


def test_lepton_only_events_get_detector_level_dis() -> None:
    events = _dis_events(EIC, n=4000, with_particles=False)
    out = detector(preset="matrix-0.2").fold(events, np.random.SeedSequence(3))
    ok = np.asarray(out.arrays.measured_electron)
    assert ok.mean() > 0.9 and "x_jb" not in out.fields
    rel = out.column("Q2")[ok] / events.column("Q2")[ok] - 1
    assert 0 < np.std(rel) < 0.05  # smeared, at the percent level for Matrix tracking
    assert np.all(out.column("x")[~ok] == 0)
    for name in ("x", "Q2", "y", "W2", "nu", "lepton_E", "lepton_px"):
        assert np.isfinite(out.column(name)).all()


def test_lepton_found_without_lepton_fields() -> None:
    events = _dis_events(EIC, n=50)
    only_particles = EventBatch(events.arrays[["particles"]], EIC)
    out = detector(devices=PERFECT).fold(only_particles, np.random.SeedSequence(1))
    np.testing.assert_allclose(out.column("lepton_px"), events.column("lepton_px"), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.column("Q2"), events.column("Q2"), rtol=1e-6)


def test_registered_as_smear_plugin() -> None:
    from importlib.metadata import entry_points

    module = next(ep for ep in entry_points(group="mlegpipe") if ep.name == "smear").load()
    added: list[tuple[type, str]] = []

    class Registry:
        def add(self, cls: type) -> None:
            added.append((cls, cls.plugin_name))

    module.mlegpipe_register_stages(Registry())
    assert added == [(SmearDetector, "smear")]
    assert SmearDetector.kind == "detector"
