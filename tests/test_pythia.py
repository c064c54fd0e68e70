"""Tests of the ``pythia8`` truth source: reproducibility, scattered lepton, momentum balance, limits."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from mlegpipe.beams import Beams
from mlegpipe.context import StageContext
from mlegpipe.exceptions import ConfigError, FormulaError
from mlegpipe.schema import build_params

pytest.importorskip("pythia8mc")

from mlegpipe_builtins.truth.pythia import PythiaSource, beam_settings, pythia_seed  # noqa: E402

ELECTRON_MASS = 0.000510999


def run(seed: int = 1, **raw):  # noqa: ANN003, ANN201
    src = PythiaSource(build_params(PythiaSource.Params, raw, "truth"), StageContext("truth", seed=seed))
    return src, src.read()


@pytest.fixture(scope="module")
def hera_full():  # noqa: ANN201
    return run(events=150, level="full", beams="hera")


def test_registered() -> None:
    """The entry point names this module and its hook registers the class (without loading every plugin)."""
    import importlib.metadata as md

    from mlegpipe.registry import StageRegistry

    module = md.entry_points(group="mlegpipe")["pythia8"].load()
    registry = StageRegistry()
    module.mlegpipe_register_stages(registry=registry)
    assert registry.get("truth", "pythia8").cls is PythiaSource


def test_reproducible_for_a_fixed_seed() -> None:
    _, a = run(seed=5, events=300, level="hard")
    _, b = run(seed=5, events=300, level="hard")
    _, c = run(seed=6, events=300, level="hard")
    names = ["lepton_E", "lepton_px", "lepton_py", "lepton_pz"]
    np.testing.assert_array_equal(a.matrix(names), b.matrix(names))
    assert not np.allclose(a.matrix(names)[:10], c.matrix(names)[:10])


def test_blocks_make_event_count_extend_the_sample() -> None:
    _, small = run(seed=2, events=100, level="hard", block_events=100)
    _, big = run(seed=2, events=230, level="hard", block_events=100)
    np.testing.assert_array_equal(small.column("lepton_E"), big.column("lepton_E")[:100])
    assert pythia_seed(np.random.SeedSequence(3)) != pythia_seed(np.random.SeedSequence(4))


def test_hard_process_kinematics_within_limits() -> None:
    src, ev = run(events=400, level="hard", beams="hera", q2_min=4.0)
    beams = Beams.preset("hera")
    x, q2, y, w2 = (ev.column(k) for k in ("x", "Q2", "y", "W2"))
    assert (q2 >= 4.0 * (1 - 1e-9)).all()
    assert ((x > 0) & (x <= 1)).all() and ((y > 0) & (y <= 1)).all()
    assert (q2 <= x * (beams.s - beams.hadron_mass**2) * (1 + 1e-6)).all()  # y <= 1
    assert (w2 >= beams.hadron_mass**2 * (1 - 1e-9)).all()
    np.testing.assert_allclose(q2, x * y * (beams.s - beams.hadron_mass**2), rtol=1e-5)
    # the scattered positron: massless-ish and travelling mostly along -z at HERA (proton along +z)
    mass2 = ev.column("lepton_E") ** 2 - sum(ev.column(k) ** 2 for k in ("lepton_px", "lepton_py", "lepton_pz"))
    assert np.abs(mass2).max() < 1e-4
    assert np.median(ev.column("lepton_pz")) < -20
    assert (ev.column("beam_energy") == 27.6).all()
    info = src.info()
    assert info["events_accepted"] == 400 and info["cross_section_pb"] > 0 and info["cross_section_error_pb"] < 0.2 * info["cross_section_pb"]


def test_lepton_direction_convention_symmetric_beams() -> None:
    _, ev = run(events=200, level="hard", beams="sym50")
    assert np.median(ev.column("lepton_pz")) > 30  # electron beam along +z
    assert beam_settings(Beams.preset("sym50"))[:2] == ["Beams:idA = 11", "Beams:idB = 2212"]
    assert (ev.column("lepton_E") <= 50.0 * (1 + 1e-9)).all()  # symmetric beams: E' <= E_b


def beam_total(beams: Beams) -> np.ndarray:
    """(E, px, py, pz) of both beams as Pythia sets them up (massive lepton and proton)."""
    p_lepton = np.sqrt(beams.lepton_energy**2 - ELECTRON_MASS**2)
    return np.array([beams.lepton_energy + beams.hadron_energy, 0.0, 0.0,
                     beams.lepton_direction * (p_lepton - beams.hadron_momentum)])


def relative_imbalance(ev, beams: Beams) -> np.ndarray:  # noqa: ANN001
    """Per event: |Σ final-state p − beams| summed over E, px, py, pz, relative to the total energy."""
    total = beam_total(beams)
    parts = ev.arrays["particles"]
    sums = np.stack([ak.to_numpy(ak.sum(parts[f], axis=1)) for f in ("E", "px", "py", "pz")], axis=1)
    return np.abs(sums - total).sum(axis=1) / total[0]


def test_fixed_target_hard_process() -> None:
    """JLab 10.6 GeV on a proton at rest: beams given as momenta (frameType 3), electron along +z."""
    assert "Beams:frameType = 3" in beam_settings(Beams.preset("jlab"))
    _, ev = run(events=150, level="hard", beams="jlab")
    assert (ev.column("Q2") >= 1.0 * (1 - 1e-9)).all() and (ev.column("x") <= 1).all()
    assert (ev.column("lepton_E") <= 10.6 * (1 + 1e-9)).all() and np.median(ev.column("lepton_pz")) > 0
    # fixed target: nu = E - E'
    np.testing.assert_allclose(ev.column("nu"), 10.6 - ev.column("lepton_E"), rtol=1e-6, atol=1e-6)


def test_full_event_energy_momentum_balance_exact_without_lepton_fsr() -> None:
    """Without QED radiation off the scattered lepton Pythia conserves E and p to ~1e-10 (checked at 1e-6)."""
    _, ev = run(events=100, level="full", beams="hera", settings=["TimeShower:QEDshowerByL = off"])
    assert relative_imbalance(ev, Beams.preset("hera")).max() < 1e-6
    # charge: e+ (+1) and proton (+1)
    np.testing.assert_allclose(ak.to_numpy(ak.sum(ev.arrays["particles"].charge, axis=1)), 2.0, atol=1e-9)


def test_full_event_energy_momentum_balance_default(hera_full) -> None:  # noqa: ANN001
    """Default physics: Pythia 8.317's lepton QED FSR (dipole recoil) leaves up to a few 1e-6 in a few
    percent of events, inside Pythia's own error tolerance Check:epTolErr = 1e-4 (its warning level is 1e-6)."""
    _, ev = hera_full
    dev = relative_imbalance(ev, Beams.preset("hera"))
    assert dev.max() < 1e-4
    assert (dev > 1e-6).mean() < 0.15 and np.median(dev) < 1e-9


def test_scattered_lepton_found_in_every_event(hera_full) -> None:  # noqa: ANN001
    _, ev = hera_full
    parts = ev.arrays["particles"]
    is_lepton = (parts.pid == -11) & (np.abs(parts.E - ev.arrays["lepton_E"]) < 1e-9) \
        & (np.abs(parts.pz - ev.arrays["lepton_pz"]) < 1e-9)
    assert ak.all(ak.sum(is_lepton, axis=1) == 1)
    assert ev.fields[:4] == ["lepton_E", "lepton_px", "lepton_py", "lepton_pz"]
    assert ak.all(ak.num(parts) >= 3)  # lepton + at least two hadrons (baryon number and charge)


def test_cut_selects_and_counts_selected_events() -> None:
    src, ev = run(events=200, level="hard", q2_min=1.0, cut="Q2 > 10 and y < 0.5")
    assert len(ev) == 200
    assert (ev.column("Q2") > 10).all() and (ev.column("y") < 0.5).all()
    assert 0 < src.info()["cut_efficiency"] < 0.5


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match=r"truth.settings\[1\]"):
        run(events=10, settings=["Print:quiet = on", "NoSuch:thing = 3"])
    with pytest.raises(ConfigError, match=r"truth.settings\[0\]"):
        run(events=10, settings=["HardQCD:all"])
    with pytest.raises(FormulaError, match="truth.cut"):
        run(events=10, cut="Q2 > 1; import os")
    with pytest.raises(ConfigError, match="truth.level"):
        build_params(PythiaSource.Params, {"level": "partonic"}, "truth")


def test_top_pairs_at_the_lhc_keep_the_hard_process_particles() -> None:
    """pp at 13 TeV: the metadata says so, and level = "hard" stores the six quarks of tt̄ -> bW bW -> 6 quarks."""
    src, events = run(events=100, beams="lhc13", process="custom", level="hard",
                      settings=["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 1 2 3 4"])
    assert src.beams == Beams.preset("lhc13") and src.info()["sqrt_s"] == pytest.approx(13000.0)
    assert "beam_energy" not in events.fields and src.cuts() == {}
    assert (events.multiplicity("particles") == 6).all()
    ids = np.abs(events.particles("particles")["pid"])
    assert ((ids >= 1) & (ids <= 5)).all() and ((ids == 5).sum(axis=1) == 2).all()  # two b and four light quarks
    # the six quarks carry the tt̄ pair's transverse momentum: zero at the hard process (no initial-state shower)
    parts = events.particles("particles")
    np.testing.assert_allclose(parts["px"].sum(axis=1), 0.0, atol=1e-6)
    # Pythia's LO σ(pp -> tt̄) at 13 TeV, about 490 pb, times the forced BR(W -> qq')² ≈ 0.676² (Pythia's σ counts it)
    assert 150.0 < src.info()["cross_section_pb"] < 350.0


def test_dis_options_need_lepton_hadron_beams() -> None:
    with pytest.raises(ConfigError, match="truth.process = 'dis'.*lepton-hadron"):
        run(events=10, beams="lhc13")
    with pytest.raises(ConfigError, match="truth.lepton"):
        run(events=10, beams="lhc13", process="custom", lepton=True, settings=["HardQCD:all = on"])
