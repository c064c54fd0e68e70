"""Tests of the top-pair presets of ``pythia8`` (``ttbar-allhad``, ``ttbar-semilep``): σ, decay chain, jets,
prompt lepton, missing p_T, reproducibility, the ROOT round trip and bad input."""

from __future__ import annotations

import gc
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import build_params

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from mlegpipe_builtins.lhc import QUARK_ORDER, TOP_MASS, TOP_WIDTH, W_MASS, W_WIDTH  # noqa: E402
from mlegpipe_builtins.lhc.jets import cluster_jets, flavour_labels, heavy_flavour  # noqa: E402
from mlegpipe_builtins.lhc.ttbar import TOP_SETTINGS, prompt_lepton_index, semileptonic_columns  # noqa: E402
from mlegpipe_builtins.truth.pythia import PythiaRun, PythiaSource, import_pythia  # noqa: E402
from mlegpipe_builtins.truth.rootfile import RootSource  # noqa: E402

#: Reference σ (pb), Pythia 8.317, 13 TeV, m_t = 172.5: all-hadronic from 2 × 10⁵ events
#: (scripts/make_ttbar_samples.py allhad --events 200000 --block-events 100000 --seed 1), semileptonic from two
#: independent samples of 10⁵ events (make_ttbar_samples.py semilep --events 100000 --seed 1001 / 2002:
#: 150.84 ± 0.41 and 150.69 ± 0.41) combined.
SIGMA_ALLHAD = (234.74, 0.27)
SIGMA_SEMILEP = (150.77, 0.29)
#: Jet multiplicity mean of the same two samples (4.885, 4.891; lhc.md, 3000 events: 4.9).
MEAN_JETS = 4.89


def source(seed: int = 1, **raw) -> PythiaSource:  # noqa: ANN003
    return PythiaSource(build_params(PythiaSource.Params, raw, "truth"), StageContext("truth", seed=seed))


@pytest.fixture(scope="module")
def allhad() -> tuple[PythiaSource, EventBatch]:
    src = source(events=600, process="ttbar-allhad")
    return src, src.read()


@pytest.fixture(scope="module")
def semilep() -> tuple[PythiaSource, EventBatch]:
    src = source(events=300, process="ttbar-semilep")
    return src, src.read()


def within_statistics(measured: float, error: float, reference: tuple[float, float], pulls: float = 4.0) -> bool:
    """|σ − σ_ref| below ``pulls`` combined standard errors (Pythia's sigmaErr and the reference's)."""
    return abs(measured - reference[0]) < pulls * np.hypot(error, reference[1])


# -- all-hadronic: the six quarks -------------------------------------------------------------------
def test_allhad_cross_section_and_metadata(allhad) -> None:  # noqa: ANN001
    src, events = allhad
    info = src.info()
    assert info["events_accepted"] == 600 and info["level"] == "hard" and info["process"] == "ttbar-allhad"
    assert 0 < info["cross_section_error_pb"] < 0.05 * info["cross_section_pb"]
    assert within_statistics(info["cross_section_pb"], info["cross_section_error_pb"], SIGMA_ALLHAD), info
    assert src.beams.name == "lhc13" and info["sqrt_s"] == pytest.approx(13000.0)
    assert "6:m0 = 172.5" in info["settings"] and "PartonLevel:all = off" in info["settings"]
    assert events.collections == ["quarks"] and (events.multiplicity("quarks") == 6).all()


def charge(pid: np.ndarray) -> np.ndarray:
    """Quark charges from PDG ids (up-type +2/3, down-type −1/3; antiquarks opposite)."""
    return np.sign(pid) * np.where(np.isin(np.abs(pid), (2, 4)), 2 / 3, -1 / 3)


def test_allhad_decay_chain_assignment(allhad) -> None:  # noqa: ANN001
    _, events = allhad
    quarks = events.particles("quarks")
    pid = quarks["pid"].astype(int)
    b1, q1, qbar1, b2, q2, qbar2 = (pid[:, k] for k in range(len(QUARK_ORDER)))
    assert (b1 == 5).all() and (b2 == -5).all()
    assert (q1 > 0).all() and (qbar1 < 0).all() and (q2 > 0).all() and (qbar2 < 0).all()  # quark first
    np.testing.assert_allclose(charge(q1) + charge(qbar1), 1.0)  # W⁺
    np.testing.assert_allclose(charge(q2) + charge(qbar2), -1.0)  # W⁻
    q = events.collection("quarks")
    for first in (0, 3):
        m_w = ak.to_numpy((q[:, first + 1] + q[:, first + 2]).mass)
        m_t = ak.to_numpy((q[:, first] + q[:, first + 1] + q[:, first + 2]).mass)
        assert abs(np.median(m_w) - W_MASS) < 0.5 and abs(np.median(m_t) - TOP_MASS) < 0.3
        # Breit-Wigner: (2/π) atan(6) = 0.89 of the events within ±3Γ; PDFs and the mass range add tails
        assert np.mean(abs(m_w - W_MASS) < 3 * W_WIDTH) > 0.8
        assert np.mean(abs(m_t - TOP_MASS) < 3 * TOP_WIDTH) > 0.8
        assert (m_t > m_w).all()


def test_allhad_momentum_balance(allhad) -> None:  # noqa: ANN001
    """No initial-state radiation at the hard process: the six quarks balance in p_T to rounding."""
    _, events = allhad
    quarks = events.particles("quarks")
    assert np.abs(quarks["px"].sum(axis=1)).max() < 1e-6 and np.abs(quarks["py"].sum(axis=1)).max() < 1e-6
    masses = np.sqrt(np.maximum(quarks["E"] ** 2 - quarks["px"] ** 2 - quarks["py"] ** 2 - quarks["pz"] ** 2, 0))
    np.testing.assert_allclose(masses[:, 0], 4.8, atol=1e-3)  # Pythia's b mass


def test_custom_hard_level_keeps_the_same_quarks(allhad) -> None:  # noqa: ANN001
    """The same settings as ``process = "custom"`` with ``level = "hard"`` store the same six quarks
    (the hard process's outgoing particles, in record order)."""
    _, events = allhad
    settings = [*TOP_SETTINGS, "24:onIfAny = 1 2 3 4 5"]
    custom = source(events=50, beams="lhc13", process="custom", level="hard", settings=settings).read()
    assert (custom.multiplicity("particles") == 6).all()
    for k in range(50):
        a = np.sort(custom.particles("particles")["px"][k])
        b = np.sort(events.particles("quarks")["px"][k])
        np.testing.assert_array_equal(a, b)


# -- semileptonic: jets, the prompt lepton, the missing p_T -----------------------------------------
def test_semilep_cross_section_and_fields(semilep) -> None:  # noqa: ANN001
    src, events = semilep
    info = src.info()
    assert info["level"] == "full" and info["process"] == "ttbar-semilep"
    assert within_statistics(info["cross_section_pb"], info["cross_section_error_pb"], SIGMA_SEMILEP), info
    assert sorted(events.collections) == ["jets", "lepton"]
    assert {"met", "met_phi", "lepton_pid"} <= set(events.fields)


def test_semilep_jets_pass_the_cuts_and_carry_a_flavour(semilep) -> None:  # noqa: ANN001
    _, events = semilep
    jets = events.collection("jets")
    pt = ak.to_numpy(ak.flatten(jets.pt))
    assert (pt > 20.0).all() and (abs(ak.to_numpy(ak.flatten(jets.eta))) < 4.5).all()
    assert ak.all(jets.pt[:, 1:] <= jets.pt[:, :-1])  # p_T-ordered
    flavour = ak.to_numpy(ak.flatten(jets.flavour))
    assert set(np.unique(flavour)) <= {0, 4, 5}
    b_jets = ak.to_numpy(ak.sum(jets.flavour == 5, axis=1))
    assert 1.3 < b_jets.mean() < 2.0 and b_jets.max() <= 4  # two b quarks, not always inside the acceptance
    multiplicity = events.multiplicity("jets")
    # mean 4.9 with a spread of 1.4: the mean of 300 events within ±0.35 (about 4 standard errors)
    assert abs(multiplicity.mean() - MEAN_JETS) < 0.35, np.bincount(multiplicity)
    assert len(np.unique(multiplicity)) >= 5  # a variable multiplicity


def test_semilep_exactly_one_prompt_lepton(semilep) -> None:  # noqa: ANN001
    _, events = semilep
    pid = events.column("lepton_pid")
    assert set(np.unique(np.abs(pid))) == {11, 13}
    lepton = events.collection("lepton")
    assert (events.multiplicity("lepton") == 1).all()
    assert np.median(ak.to_numpy(ak.flatten(lepton.pt))) > 20.0  # a W decay product, not a soft one
    # the lepton is not clustered: (almost) no jet coincides with it in direction and p_T
    pairs = ak.cartesian({"jet": events.collection("jets"), "lepton": lepton}, nested=True)
    same = (pairs.jet.deltaR(pairs.lepton) < 0.1) & (abs(pairs.jet.pt / pairs.lepton.pt - 1) < 0.1)
    assert ak.mean(ak.any(ak.flatten(same, axis=2), axis=1)) < 0.02
    assert 0.0 <= events.column("met").min() and np.median(events.column("met")) > 20.0
    assert (np.abs(events.column("met_phi")) <= np.pi).all()


@pytest.fixture(scope="module")
def records() -> ak.Array:
    """Full-event records of ``ttbar-semilep`` straight from nextBatch, the veto hook attached, after a gc pass."""
    src = source(events=40, process="ttbar-semilep")
    pythia = import_pythia().Pythia("", False)
    for setting, _ in src.settings(17):
        assert pythia.readString(setting)
    src.process.attach(pythia)
    gc.collect()  # the veto must survive: the process object keeps its hook alive
    assert pythia.init()
    return PythiaRun(pythia, "truth").batch(40).prt


def test_met_is_the_neutrinos_and_balances_the_visible_final_state(records: ak.Array) -> None:
    columns = semileptonic_columns(records)
    final = records[records.status > 0]
    neutrino = np.isin(np.abs(ak.to_numpy(ak.flatten(final.id))), (12, 14, 16))
    counts = ak.num(final)
    nu = ak.unflatten(neutrino, counts)
    met_x = columns["met"] * np.cos(columns["met_phi"])
    met_y = columns["met"] * np.sin(columns["met_phi"])
    np.testing.assert_allclose(met_x, ak.to_numpy(ak.sum(final.p.px[nu], axis=1)), atol=1e-9)
    # pp beams carry no p_T: the neutrinos balance everything visible (Pythia conserves momentum to ~1e-10)
    visible_x = ak.to_numpy(ak.sum(final.p.px[~nu], axis=1))
    visible_y = ak.to_numpy(ak.sum(final.p.py[~nu], axis=1))
    np.testing.assert_allclose(met_x, -visible_x, atol=1e-6)
    np.testing.assert_allclose(met_y, -visible_y, atol=1e-6)


def test_prompt_lepton_is_the_final_copy_of_the_w_lepton(records: ak.Array) -> None:
    index = prompt_lepton_index(records)
    assert (index >= 0).all()
    for e, i in enumerate(index):  # exactly one hard W lepton (the veto), followed to a final-state copy
        event = records[e]
        ids, status = event.id.to_numpy(), event.status.to_numpy()
        hard = np.flatnonzero((np.abs(status) == 23) & np.isin(np.abs(ids), (11, 13))
                              & (np.abs(ids[event.mother1.to_numpy()]) == 24))
        assert len(hard) == 1 and ids[i] == ids[hard[0]] and status[i] > 0


def test_jets_are_clustered_without_lepton_and_neutrinos(records: ak.Array) -> None:
    columns = semileptonic_columns(records, jet_radius=0.4, jet_pt_min=20.0, jet_eta_max=4.5)
    index = prompt_lepton_index(records)
    local = ak.local_index(records.id)
    neutrino = (abs(records.id) == 12) | (abs(records.id) == 14) | (abs(records.id) == 16)
    keep = (records.status > 0) & ~neutrino & (local != index)
    p = records.p
    particles = ak.zip({"px": p.px, "py": p.py, "pz": p.pz, "E": p.e})[keep]
    expected = cluster_jets(particles)
    assert ak.to_list(ak.num(columns["jets"])) == ak.to_list(ak.num(expected))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(columns["jets"].px)), ak.to_numpy(ak.flatten(expected.px)))
    wide = semileptonic_columns(records, jet_radius=0.6, jet_pt_min=30.0, jet_eta_max=2.5)["jets"]
    assert ak.all((wide.pt > 30.0) & (abs(wide.eta) < 2.5))


def test_flavour_labels_take_the_nearest_jet_only() -> None:
    jets = ak.zip({"px": [[50.0, 50.0 * np.cos(0.5)]], "py": [[0.0, 50.0 * np.sin(0.5)]], "pz": [[0.0, 0.0]],
                   "E": [[50.0, 50.0]]}, with_name="Momentum4D")
    # a B meson at φ = 0.2 is within R = 0.4 of both jets, nearer the first; a D meson at φ = 0.45 is nearer the second
    hadrons = ak.Array([[{"px": 20 * np.cos(0.2), "py": 20 * np.sin(0.2), "pz": 0.0, "E": 21.0, "pid": 521},
                         {"px": 20 * np.cos(0.45), "py": 20 * np.sin(0.45), "pz": 0.0, "E": 21.0, "pid": -411}]])
    assert flavour_labels(jets, hadrons, radius=0.4).tolist() == [[5, 4]]
    assert heavy_flavour(np.array([5, 22, 2212, 4122, 531])).tolist() == [0, 0, 0, 4, 5]


# -- both: reproducibility, ROOT, bad input ----------------------------------------------------------
@pytest.mark.parametrize(("process", "events", "blocks"), [("ttbar-allhad", 200, 2), ("ttbar-semilep", 30, 1)])
def test_same_seed_same_events(process: str, events: int, blocks: int) -> None:
    a, b, c = (source(seed=seed, events=events, process=process, block_events=events // blocks).read()
               for seed in (9, 9, 10))
    assert ak.to_list(a.arrays) == ak.to_list(b.arrays)
    name = "quarks" if process == "ttbar-allhad" else "jets"
    assert ak.to_list(a.arrays[name][:5]) != ak.to_list(c.arrays[name][:5])


def test_chunks_do_not_change_the_events(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlegpipe_builtins.lhc.ttbar import Semileptonic

    a = source(seed=2, events=60, process="ttbar-semilep").read()
    monkeypatch.setattr(Semileptonic, "chunk_events", 25)
    b = source(seed=2, events=60, process="ttbar-semilep").read()
    assert ak.to_list(a.arrays) == ak.to_list(b.arrays)


def test_the_small_sample_reads_back() -> None:
    path = Path(__file__).parent.parent / "sample_data" / "ttbar_semilep_small.root"
    events = RootSource(build_params(RootSource.Params, {"files": [str(path)], "events": 500}, "t"),
                        StageContext("t")).read()
    assert sorted(events.collections) == ["jets", "lepton"] and len(events) == 500
    assert events.meta["process"] == "ttbar-semilep" and events.beams.name == "lhc13"
    assert within_statistics(events.meta["cross_section_pb"], events.meta["cross_section_error_pb"], SIGMA_SEMILEP)


PIPELINE = """
[pipeline]
name = "ttbar_round_trip"
seed = 3

[truth]
plugin = "pythia8"
process = "ttbar-allhad"
events = 300

[semilep]
kind = "truth"
plugin = "pythia8"
process = "ttbar-semilep"
events = 60

[report]
plugin = "html"
plots = false
classifier = false
"""


def test_pipeline_writes_root_that_the_root_source_reads(tmp_path: Path) -> None:
    from mlegpipe.cli import main

    (tmp_path / "p.toml").write_text(PIPELINE)
    assert main(["run", str(tmp_path / "p.toml"), "-o", str(tmp_path / "run"), "--no-progress"]) == 0
    for section, raw, collections in (("truth", {"process": "ttbar-allhad", "events": 300}, ["quarks"]),
                                      ("semilep", {"process": "ttbar-semilep", "events": 60}, ["jets", "lepton"])):
        direct = PythiaSource(build_params(PythiaSource.Params, raw, section), StageContext(section, seed=3)).read()
        parts = []
        for split in ("train", "valid", "test"):
            files = [str(tmp_path / "run" / f"{section}_{split}.root")]
            read = RootSource(build_params(RootSource.Params, {"files": files}, "t"), StageContext("t")).read()
            assert sorted(read.collections) == collections and read.beams.name == "lhc13"
            parts.append(read)
        back = EventBatch.concat(parts)
        assert len(back) == len(direct)
        name = collections[0]
        # the splits shuffle the events: compare them as sets
        assert sorted(ak.to_list(back.arrays[name].px)) == sorted(ak.to_list(direct.arrays[name].px))
        if name == "jets":
            flavour = ak.to_numpy(ak.flatten(back.arrays["jets"].flavour))
            assert flavour.dtype.kind == "i"
            np.testing.assert_array_equal(np.sort(flavour), np.sort(ak.to_numpy(ak.flatten(direct.arrays["jets"].flavour))))
            np.testing.assert_array_equal(np.sort(back.column("lepton_pid")), np.sort(direct.column("lepton_pid")))


@pytest.mark.parametrize(("raw", "path", "message"), [
    ({"process": "ttbar-allhad", "q2_min": 4.0}, "truth.q2_min", "option of process = 'dis'"),
    ({"process": "ttbar-semilep", "beams": "hera"}, "truth.beams", "proton or antiproton beams"),
    ({"process": "ttbar-allhad", "beams": {"preset": "lhc13", "a": {"pdg": 11}}}, "truth.beams", "proton"),
    ({"process": "ttbar-allhad", "level": "full"}, "truth.level", "runs at level 'hard' only"),
    ({"process": "ttbar-semilep", "level": "hard"}, "truth.level", "runs at level 'full' only"),
    ({"process": "ttbar-allhad", "jet_radius": 0.6}, "truth.jet_radius", "option of process = 'ttbar-semilep'"),
    ({"process": "ttbar-semilep", "particles": True}, "truth.particles", "option of process"),
    ({"process": "ttbar-semilep", "lepton": True}, "truth.lepton", "DIS option"),
    ({"process": "dis", "jet_pt_min": 30.0}, "truth.jet_pt_min", "option of process = 'ttbar-semilep'"),
    ({"process": "ttbar-semilep", "jet_radius": 0.0}, "truth.jet_radius", "must be > 0"),
])
def test_bad_input_names_the_toml_path(raw: dict, path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        source(events=10, **raw)
    assert err.value.path == path


def test_cli_exit_code_2_for_a_dis_option_with_a_ttbar_preset(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from mlegpipe.cli import main

    path = tmp_path / "bad.toml"
    path.write_text('[truth]\nplugin = "pythia8"\nprocess = "ttbar-semilep"\nq2_min = 4.0\n')
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().err
    assert "truth.q2_min = 4.0" in out and str(path) in out and "Traceback" not in out
