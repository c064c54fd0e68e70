"""Tests of the `smear-pp` detector: resolutions per zone against their formulas, efficiencies and tag rates within
binomial errors, thresholds, the missing pT, reproducibility, bad input, and a TOML pipeline on a ROOT file.

Statistical tolerances: a width measured on N smeared copies has the relative standard error 1/sqrt(2N) (0.5 % at
N = 20000) and must match its formula within 4 of them (2 %); a mean response within 4 sigma/sqrt(N); an efficiency or
tag rate within 4 binomial standard deviations sqrt(p (1 - p) / N). Seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from mlegpipe.config import parse_config
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import ConfigError, DataError, FormulaError
from mlegpipe.pipeline import run_pipeline
from mlegpipe.rootio import write_events
from mlegpipe.schema import build_params
from mlegpipe_builtins.detectors.smear import CHUNK_EVENTS, SmearDetector, SmearParams
from mlegpipe_builtins.lhc import detector as detector_module
from mlegpipe_builtins.lhc.detector import DIS_ONLY_OPTIONS, SmearPPDetector, SmearPPParams
from mlegpipe_builtins.lhc.detector_presets import PP_PRESETS, preset_card

EXACT_ZONES = [{"abs_eta": [0.0, 10.0]}]  # a zone without resolution terms: measured exactly
EXACT = {"resolution": EXACT_ZONES, "efficiency": "1", "pt_min": 0.0}  # no smearing, losses or thresholds


def detector(where: str = "detector", **raw: object) -> SmearPPDetector:
    return SmearPPDetector(build_params(SmearPPParams, dict(raw), where), StageContext(where, seed=1))


def objects(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray | None = None, mass: float = 0.0,
            **extra: np.ndarray) -> ak.Array:
    """A collection of fixed multiplicity from (n, k) arrays of pt, eta (phi 0.3 by default)."""
    pt, eta = np.atleast_2d(pt), np.atleast_2d(eta)
    phi = np.full_like(pt, 0.3) if phi is None else np.atleast_2d(phi)
    return particle_lists({"pt": pt, "eta": eta, "phi": phi, "mass": np.full_like(pt, mass), **extra})


def copies(n: int, energy: float, eta: float, mass: float = 0.0, **extra: int) -> ak.Array:
    """n events of one jet of the given energy and pseudorapidity."""
    pt = math.sqrt(energy**2 - mass**2) / math.cosh(eta)
    return objects(np.full((n, 1), pt), np.full((n, 1), eta), mass=mass,
                   **{k: np.full((n, 1), v) for k, v in extra.items()})


def flat(batch: EventBatch, collection: str, field: str) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(batch.arrays[collection][field])), dtype=np.float64)


# --- jet energy resolution: sigma_E/E = a/sqrt(E) (+) b (+) c/E per |eta| zone ------------------------------------

# The Delphes 3.5.0 HCal numbers (a, b, c) per zone, transcribed independently of the presets.
_JER = {
    "atlas-like": [((0.0, 1.7), (0.5205, 0.0302, 1.59)), ((1.7, 3.2), (0.706, 0.05, 0.0)),
                   ((3.2, 4.9), (1.00, 0.0942, 0.0))],
    "cms-like": [((0.0, 3.0), (1.50, 0.05, 0.0)), ((3.0, 5.0), (2.70, 0.13, 0.0))],
}
N_WIDTH = 20000  # relative standard error of a fitted width 1/sqrt(2N) = 0.5 %; the 2 % tolerance is 4 of them


def _expected_jer(a: float, b: float, c: float, energy: float) -> float:
    return math.sqrt(a**2 / energy + b**2 + (c / energy) ** 2)


@pytest.mark.parametrize(("preset", "zone", "energy"), [
    ("atlas-like", 0, 30.0), ("atlas-like", 0, 300.0), ("atlas-like", 1, 100.0), ("atlas-like", 2, 500.0),
    ("cms-like", 0, 50.0), ("cms-like", 0, 500.0), ("cms-like", 1, 400.0),
])
def test_jet_energy_resolution_per_zone_equals_the_formula(preset: str, zone: int, energy: float) -> None:
    (lo, hi), terms = _JER[preset][zone]
    eta = 0.5 * (lo + hi)
    det = detector(preset=preset, btag=False, jet={"pt_min": 0.0, "efficiency": "1"})
    events = EventBatch.from_columns({"jets": copies(N_WIDTH, energy, eta, mass=5.0)})
    out = det.fold(events, np.random.SeedSequence(zone))
    response = flat(out, "jets", "E") / energy
    assert len(response) == N_WIDTH
    expected = _expected_jer(*terms, energy)
    assert np.std(response) == pytest.approx(expected, rel=4 / math.sqrt(2 * N_WIDTH))
    assert abs(np.mean(response) - 1.0) < 4 * expected / math.sqrt(N_WIDTH)
    # a scale of the four-momentum: direction and E/p kept
    out_jets = out.collection("jets")
    assert np.allclose(ak.to_numpy(ak.flatten(out_jets.eta)), eta, atol=1e-9)
    assert np.allclose(ak.to_numpy(ak.flatten(out_jets.phi)), 0.3, atol=1e-12)
    assert np.allclose(ak.to_numpy(ak.flatten(out_jets.mass)) / response, 5.0, rtol=1e-6)


def test_presets_transcribe_the_delphes_numbers() -> None:
    for preset, zones in _JER.items():
        table = preset_card(preset)["jet"]["resolution"]
        assert [(tuple(z["abs_eta"]), (z["stochastic"], z["constant"], z["noise"])) for z in table] == zones


def test_zone_edge_belongs_to_the_lower_zone_and_linear_sums() -> None:
    """|eta| = 1.7 is in the first ATLAS zone (Delphes: abs(eta) <= 1.7); terms may add linearly when declared."""
    zones = [{"abs_eta": [0.0, 1.0], "stochastic": 0.5, "constant": 0.05, "noise": 2.0, "combine": "linear"},
             {"abs_eta": [1.0, 5.0], "stochastic": 1.0}]
    det = detector(btag=False, jet={"resolution": zones, "pt_min": 0.0, "efficiency": "1"})
    energy = 100.0
    out = det.fold(EventBatch.from_columns({"jets": copies(N_WIDTH, energy, 1.0)}), np.random.SeedSequence(4))
    assert np.std(flat(out, "jets", "E") / energy) == pytest.approx(0.5 / 10 + 0.05 + 2.0 / 100,
                                                                   rel=4 / math.sqrt(2 * N_WIDTH))


@pytest.mark.parametrize(("preset", "pid", "eta", "momentum", "expected"), [
    ("atlas-like", 11, 0.5, 80.0, math.hypot(0.101 / math.sqrt(80.0), 0.0017)),  # ECal, calorimeter form of E
    ("cms-like", 11, 0.2, 50.0, math.sqrt(0.1159**2 / 50 + 0.00843**2 + (0.4213 / 50) ** 2)),
    ("atlas-like", 13, 1.0, 300.0, math.hypot(1.5e-4 * 300.0 / math.cosh(1.0), 0.015)),  # tracking form of pT
    ("cms-like", 13, 2.0, 100.0, math.hypot(3.5e-4 * 100.0 / math.cosh(2.0), 0.025)),
])
def test_lepton_resolution_equals_the_formula(preset: str, pid: int, eta: float, momentum: float,
                                              expected: float) -> None:
    lepton = {"efficiency": "1", "pt_min": 0.0}
    det = detector(preset=preset, btag=False, electron=lepton, muon=lepton)
    n = N_WIDTH
    events = EventBatch.from_columns({"jets": objects(np.full((n, 1), 50.0), np.zeros((n, 1))),
                                      "lepton": copies(n, momentum, eta, pid=pid)})
    out = det.fold(events, np.random.SeedSequence(pid))
    assert out.arrays["lepton_measured"].to_numpy().all()
    response = flat(out, "lepton", "E") / momentum
    assert np.std(response) == pytest.approx(expected, rel=4 / math.sqrt(2 * n))


def test_angle_resolution_smears_eta_and_phi_only() -> None:
    det = detector(btag=False, jet={**EXACT, "angle_resolution": 0.05})
    out = det.fold(EventBatch.from_columns({"jets": copies(N_WIDTH, 100.0, 1.0)}), np.random.SeedSequence(5))
    jets = out.collection("jets")
    pt = 100.0 / math.cosh(1.0)
    assert np.allclose(ak.to_numpy(ak.flatten(jets.pt)), pt)
    for values, truth in ((jets.eta, 1.0), (jets.phi, 0.3)):
        assert np.std(ak.to_numpy(ak.flatten(values)) - truth) == pytest.approx(0.05, rel=4 / math.sqrt(2 * N_WIDTH))


# --- efficiencies and b-tagging within binomial errors -------------------------------------------------------------

def _within_binomial(kept: np.ndarray, p: float) -> None:
    """The fraction of True in ``kept`` equals p within 4 binomial standard deviations."""
    n = len(kept)
    assert abs(kept.mean() - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-12, (kept.mean(), p)


def test_jet_efficiency_within_binomial_errors() -> None:
    det = detector(btag=False, jet={**EXACT, "efficiency": "0.7 * (abs(eta) < 1) + 0.4 * (abs(eta) >= 1)"})
    n = 10000
    jets = objects(np.full((n, 2), 50.0), np.tile([0.5, -2.0], (n, 1)))
    out = det.fold(EventBatch.from_columns({"jets": jets}), np.random.SeedSequence(6))
    eta = np.asarray(ak.to_numpy(ak.flatten(out.collection("jets").eta)))
    for sign, p in ((1, 0.7), (-1, 0.4)):
        kept = int((sign * eta > 0).sum())
        _within_binomial(np.arange(n) < kept, p)


@pytest.mark.parametrize(("preset", "pid", "eta", "pt", "expected"), [
    ("atlas-like", 11, 0.5, 50.0, 0.95 * 0.95),  # ElectronEfficiency x ElectronTrackingEfficiency
    ("atlas-like", -11, 2.0, 150.0, 0.85 * 0.90),
    ("atlas-like", 13, 2.0, 50.0, 0.85 * 0.98),
    ("cms-like", -13, 0.3, 50.0, 0.95 * 0.99),
    ("cms-like", 13, 0.3, 2000.0, 0.95 * 0.99 * math.exp(0.5 - 1.0)),
])
def test_lepton_efficiency_within_binomial_errors(preset: str, pid: int, eta: float, pt: float,
                                                  expected: float) -> None:
    exact = {"resolution": EXACT_ZONES}
    det = detector(preset=preset, btag=False, electron=exact, muon=exact)
    n = 20000
    lepton = objects(np.full((n, 1), pt), np.full((n, 1), eta), pid=np.full((n, 1), pid))
    events = EventBatch.from_columns({"jets": objects(np.full((n, 1), 50.0), np.zeros((n, 1))), "lepton": lepton})
    out = det.fold(events, np.random.SeedSequence(abs(pid)))
    measured = out.arrays["lepton_measured"].to_numpy()
    _within_binomial(measured, expected)
    assert (out.arrays["measured"].to_numpy() == measured).all()
    assert (flat(out, "lepton", "E")[~measured] == 0).all()  # index-aligned, zero when not measured


_TAG_RATES = {
    "atlas-like": {5: lambda pt: 0.80 * math.tanh(0.003 * pt) * (30 / (1 + 0.086 * pt)),
                   4: lambda pt: 0.20 * math.tanh(0.02 * pt) * (1 / (1 + 0.0034 * pt)),
                   0: lambda pt: 0.002 + 7.3e-06 * pt},
    "cms-like": {5: lambda pt: 0.85 * math.tanh(0.0025 * pt) * (25.0 / (1 + 0.063 * pt)),
                 4: lambda pt: 0.25 * math.tanh(0.018 * pt) * (1 / (1 + 0.0013 * pt)),
                 0: lambda pt: 0.01 + 0.000038 * pt},
}


@pytest.mark.parametrize("preset", list(PP_PRESETS))
@pytest.mark.parametrize("pt", [30.0, 120.0])
def test_btag_rates_within_binomial_errors(preset: str, pt: float) -> None:
    n = 20000
    flavours = [5, 4, 0, 21, 5]  # 21: a gluon label tags at the light rate; the last b jet is beyond the tracker
    etas = [0.5, -1.0, 2.0, 0.0, 3.0]
    det = detector(preset=preset, jet=EXACT)
    jets = objects(np.full((n, 5), pt), np.tile(etas, (n, 1)), flavour=np.tile(flavours, (n, 1)))
    out = det.fold(EventBatch.from_columns({"jets": jets}), np.random.SeedSequence(int(pt)))
    assert (out.multiplicity("jets") == 5).all()
    eta = np.asarray(ak.to_numpy(ak.flatten(out.collection("jets").eta)))
    tag = np.asarray(ak.to_numpy(ak.flatten(out.arrays["jets"]["btag"])))
    rates = _TAG_RATES[preset]
    for flavour, where in zip(flavours, etas, strict=True):
        expected = rates[0](pt) if flavour not in (4, 5) or abs(where) > 2.5 else rates[flavour](pt)
        _within_binomial(tag[np.isclose(eta, where)], expected)


def test_parton_jets_take_their_flavour_from_pid() -> None:
    n = 20000
    det = detector(jet=EXACT, btagging={"b": "0.6", "c": "0.2", "light": "0.05"})
    jets = objects(np.full((n, 3), 60.0), np.tile([0.0, 1.0, -1.0], (n, 1)), pid=np.tile([-5, 4, 2], (n, 1)))
    out = det.fold(EventBatch.from_columns({"jets": jets}), np.random.SeedSequence(8))
    pid = np.asarray(ak.to_numpy(ak.flatten(out.arrays["jets"]["pid"])))
    tag = np.asarray(ak.to_numpy(ak.flatten(out.arrays["jets"]["btag"])))
    for code, rate in ((-5, 0.6), (4, 0.2), (2, 0.05)):
        _within_binomial(tag[pid == code], rate)


# --- thresholds and ordering -------------------------------------------------------------------------------------

def test_thresholds_on_measured_values_and_pt_order() -> None:
    # exact, with the ATLAS thresholds: 20 GeV, |eta| <= 4.9
    exact = detector(btag=False, jet={"resolution": EXACT_ZONES, "efficiency": "1"})
    jets = objects(np.array([[19.99, 20.01, 50.0, 30.0]]), np.array([[0.0, 0.0, 4.91, 4.89]]))
    out = exact.fold(EventBatch.from_columns({"jets": jets}), np.random.SeedSequence(0))
    assert np.allclose(flat(out, "jets", "E") / np.cosh([4.89, 0.0]), [30.0, 20.01])

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 8, 3000)
    total = int(counts.sum())
    jets = particle_lists({"pt": ak.unflatten(rng.uniform(10.0, 80.0, total), counts),
                           "eta": ak.unflatten(rng.uniform(-5.2, 5.2, total), counts),
                           "phi": ak.unflatten(rng.uniform(-3.0, 3.0, total), counts),
                           "mass": ak.unflatten(rng.uniform(0.0, 8.0, total), counts)})
    out = detector(btag=False).fold(EventBatch.from_columns({"jets": jets}), np.random.SeedSequence(1))
    smeared = out.collection("jets")
    assert ak.all(smeared.pt >= 20.0) and ak.all(abs(smeared.eta) <= 4.9)
    assert ak.all(smeared.pt[:, :-1] >= smeared.pt[:, 1:])
    assert (out.multiplicity("jets") <= counts).all()
    assert 0 < ak.sum(ak.num(smeared)) < total


# --- missing transverse momentum -----------------------------------------------------------------------------------

def test_met_of_a_hand_made_event_is_exact() -> None:
    """Measured exactly, a 50 GeV jet and the lepton change nothing; the 15 GeV jet below threshold is lost and
    its pT joins the missing pT."""
    det = detector(btag=False, jet={"resolution": EXACT_ZONES, "efficiency": "1"}, electron=EXACT)
    jets = objects(np.array([[50.0, 15.0]]), np.array([[0.5, -1.0]]), phi=np.array([[0.0, 2.0]]), mass=4.0)
    lepton = objects(np.array([[40.0]]), np.array([[0.1]]), phi=np.array([[-2.0]]), pid=np.array([[11]]))
    met, met_phi = 30.0, 1.0
    events = EventBatch.from_columns({"jets": jets, "lepton": lepton, "met": [met], "met_phi": [met_phi]})
    out = det.fold(events, np.random.SeedSequence(0))
    mx, my = met * math.cos(met_phi) + 15.0 * math.cos(2.0), met * math.sin(met_phi) + 15.0 * math.sin(2.0)
    assert out.multiplicity("jets").tolist() == [1]
    assert out.arrays["met"][0] == pytest.approx(math.hypot(mx, my), abs=1e-9)
    assert out.arrays["met_phi"][0] == pytest.approx(math.atan2(my, mx), abs=1e-12)


def _vector_sum(batch: EventBatch, name: str) -> np.ndarray:
    parts = batch.arrays[name]
    return np.stack([np.asarray(ak.to_numpy(ak.sum(parts[k], axis=1))) for k in ("px", "py")])


def test_met_balances_every_smeared_and_lost_object() -> None:
    """MET_reco = MET_truth − Σ measured + Σ true, over jets and the lepton (a lost object measured as 0)."""
    rng = np.random.default_rng(9)
    n = 2000
    counts = rng.integers(1, 7, n)
    total = int(counts.sum())
    jets = particle_lists({"pt": ak.unflatten(rng.uniform(10.0, 120.0, total), counts),
                           "eta": ak.unflatten(rng.uniform(-4.5, 4.5, total), counts),
                           "phi": ak.unflatten(rng.uniform(-3.0, 3.0, total), counts),
                           "mass": ak.unflatten(rng.uniform(1.0, 9.0, total), counts),
                           "flavour": ak.unflatten(rng.choice([0, 4, 5], total), counts)})
    lepton = objects(rng.uniform(5.0, 90.0, (n, 1)), rng.uniform(-2.8, 2.8, (n, 1)), rng.uniform(-3, 3, (n, 1)),
                     pid=rng.choice([11, -11, 13, -13], (n, 1)))
    met, met_phi = rng.uniform(0.0, 150.0, n), rng.uniform(-np.pi, np.pi, n)
    events = EventBatch.from_columns({"jets": jets, "lepton": lepton, "met": met, "met_phi": met_phi})
    out = detector(preset="cms-like").fold(events, np.random.SeedSequence(2))
    truth = np.stack([met * np.cos(met_phi), met * np.sin(met_phi)])
    expected = truth - (_vector_sum(out, "jets") - _vector_sum(events, "jets")) \
        - (_vector_sum(out, "lepton") - _vector_sum(events, "lepton"))
    got = out.arrays["met"].to_numpy() * np.stack([np.cos(out.arrays["met_phi"]), np.sin(out.arrays["met_phi"])])
    assert np.allclose(got, expected, atol=1e-9)
    assert 0.5 < out.arrays["lepton_measured"].to_numpy().mean() < 1.0


def test_met_soft_term_resolution() -> None:
    n = N_WIDTH
    det = detector(btag=False, jet=EXACT, met_soft_resolution=10.0)
    events = EventBatch.from_columns({"jets": objects(np.full((n, 1), 50.0), np.zeros((n, 1))),
                                      "met": np.full(n, 100.0), "met_phi": np.zeros(n)})
    out = det.fold(events, np.random.SeedSequence(3))
    mx = out.arrays["met"].to_numpy() * np.cos(out.arrays["met_phi"].to_numpy())
    my = out.arrays["met"].to_numpy() * np.sin(out.arrays["met_phi"].to_numpy())
    for component, truth in ((mx, 100.0), (my, 0.0)):
        assert np.std(component - truth) == pytest.approx(10.0, rel=4 / math.sqrt(2 * n))


# --- layouts, reproducibility, the card ------------------------------------------------------------------------------

def _mixed_events(n: int, seed: int = 0) -> EventBatch:
    rng = np.random.default_rng(seed)
    jets = objects(rng.uniform(15.0, 100.0, (n, 4)), rng.uniform(-3.0, 3.0, (n, 4)), rng.uniform(-3.0, 3.0, (n, 4)),
                   mass=3.0, flavour=rng.choice([0, 4, 5], (n, 4)))
    lepton = objects(rng.uniform(5.0, 90.0, (n, 1)), rng.uniform(-2.8, 2.8, (n, 1)), pid=rng.choice([11, -13], (n, 1)))
    return EventBatch.from_columns({"jets": jets, "lepton": lepton, "met": rng.uniform(0, 100, n),
                                    "met_phi": rng.uniform(-3, 3, n)})


def _same(a: EventBatch, b: EventBatch) -> bool:
    return a.fields == b.fields and all(ak.array_equal(a.arrays[f], b.arrays[f]) for f in a.fields)


def test_same_seed_same_events_across_chunks() -> None:
    events = _mixed_events(CHUNK_EVENTS + 500)
    det = detector()
    ctx = StageContext("detector", seed=5)
    a = det.fold(events, ctx.seed_sequence("fold", "truth_test"))
    b = detector().fold(events, StageContext("detector", seed=5).seed_sequence("fold", "truth_test"))
    assert _same(a, b)
    assert not _same(a, det.fold(events, StageContext("detector", seed=6).seed_sequence("fold", "truth_test")))
    head = det.fold(events.take(slice(0, CHUNK_EVENTS)), ctx.seed_sequence("fold", "truth_test"))
    assert _same(head, a.take(slice(0, CHUNK_EVENTS)))  # fixed chunks: the first chunk does not see the rest


def test_flat_and_jagged_lepton_give_the_same_measurement() -> None:
    events = _mixed_events(300, seed=4)
    lepton = events.arrays["lepton"]
    flat_fields = {f"lepton_{k}": ak.flatten(lepton[k]) for k in ("px", "py", "pz", "E", "pid")}
    as_flat = EventBatch.from_columns({"jets": events.arrays["jets"], **flat_fields})
    a = detector().fold(events, np.random.SeedSequence(1))
    b = detector().fold(as_flat, np.random.SeedSequence(1))
    for k in ("px", "E"):
        assert np.array_equal(flat(a, "lepton", k), b.arrays[f"lepton_{k}"].to_numpy())
    assert np.array_equal(a.arrays["lepton_measured"].to_numpy(), b.arrays["lepton_measured"].to_numpy())


def test_events_without_a_lepton_are_not_measured() -> None:
    jets = objects(np.full((3, 1), 50.0), np.zeros((3, 1)), flavour=np.zeros((3, 1), dtype=int))
    lepton = particle_lists({"pt": [[40.0], [], [30.0]], "eta": [[0.0], [], [0.1]], "phi": [[0.0], [], [1.0]],
                             "mass": [[0.0], [], [0.0]], "pid": [[11], [], [-13]]})
    det = detector(electron=EXACT, muon=EXACT)
    out = det.fold(EventBatch.from_columns({"jets": jets, "lepton": lepton}), np.random.SeedSequence(0))
    assert out.multiplicity("lepton").tolist() == [1, 0, 1]
    assert out.arrays["lepton_measured"].tolist() == [True, False, True]


def test_jets_given_as_pt_eta_phi_mass() -> None:
    cartesian = _mixed_events(50, seed=2)
    jets = cartesian.collection("jets")
    polar = ak.zip({"pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "mass": jets.mass,
                    "flavour": jets.flavour}, with_name="Momentum4D")
    a = detector().fold(cartesian, np.random.SeedSequence(3))
    b = detector().fold(cartesian.with_columns(jets=polar), np.random.SeedSequence(3))
    assert a.multiplicity("jets").tolist() == b.multiplicity("jets").tolist()
    for k in ("px", "E", "btag", "flavour"):
        assert np.allclose(flat(a, "jets", k), flat(b, "jets", k))


def test_docstring_toml_examples_build() -> None:
    text = detector_module.__doc__.split("Example (TOML)")[1].split("Example:")[0]
    blocks = ["[detector]" + b for b in text.split("[detector]")[1:]]
    assert len(blocks) == 2
    for block in blocks:
        table = tomllib.loads(block.replace("\n    ", "\n"))["detector"]
        table.pop("plugin")
        det = detector(**table)
    assert det.card["jet"]["pt_min"] == 25.0 and len(det.card["jet"]["resolution"]) == 2
    assert det.met_soft_resolution == 8.0 and det.card["btagging"]["b"] == "0.7"


def test_card_records_preset_and_overrides() -> None:
    det = detector(preset="cms-like", jet={"pt_min": 30.0}, btagging={"light": "0.02"})
    assert det.card["jet"]["pt_min"] == 30.0 and det.card["jet"]["eta_max"] == 5.0
    assert det.card["btagging"]["light"] == "0.02" and "tanh" in det.card["btagging"]["b"]
    assert det.info()["preset"] == "cms-like"
    json.dumps(det.info())
    out = det.fold(_mixed_events(10), np.random.SeedSequence(0))
    assert out.meta["detector"] == {"plugin": "smear-pp", "preset": "cms-like"}


# --- bad input -----------------------------------------------------------------------------------------------------

def test_btag_without_flavour_names_the_collection_and_the_way_out() -> None:
    events = EventBatch.from_columns({"jets": objects(np.full((4, 2), 50.0), np.zeros((4, 2)))})
    with pytest.raises(DataError) as info:
        detector().fold(events, np.random.SeedSequence(0))
    for word in ("detector.jets", "'jets'", "flavour", "btag = false"):
        assert word in str(info.value)
    out = detector(btag=False).fold(events, np.random.SeedSequence(0))
    assert "btag" not in out.arrays["jets"].fields


@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        ({"methods": ["jb"]}, ConfigError, ["detector.methods", 'plugin = "smear"', "DIS"]),
        ({"preset": "cms-like", "angle_resolution": 0.001}, ConfigError,
         ["detector.angle_resolution", "[detector.jet]"]),
        ({"threshold_pT": 0.3}, ConfigError, ["detector.threshold_pT", "pt_min"]),
        ({"preset": "atlas-lik"}, ConfigError, ["detector.preset", "did you mean 'atlas-like'"]),
        ({"preset": "matrix-0.2"}, ConfigError, ["detector.preset", 'plugin = "smear"']),
        ({"jet": {"eta_max": 6.0}}, ConfigError, ["detector.jet.eta_max", "4.9"]),
        ({"jet": {"resolution": [{"abs_eta": [0.5, 5.0], "stochastic": 0.5}]}}, ConfigError,
         ["detector.jet.resolution[0].abs_eta", "contiguous"]),
        ({"jet": {"resolution": [{"abs_eta": [0.0, 5.0], "stochastik": 0.5}]}}, ConfigError,
         ["detector.jet.resolution[0].stochastik", "did you mean 'stochastic'"]),
        ({"jet": {"resolution": [{"stochastic": 0.5}]}}, ConfigError, ["detector.jet.resolution[0].abs_eta",
                                                                        "required"]),
        ({"muon": {"efficiency": "pT > 3"}}, FormulaError, ["detector.muon.efficiency", "did you mean 'pt'"]),
        ({"btagging": {"b": "import os"}}, FormulaError, ["detector.btagging.b"]),
    ],
)
def test_bad_configurations_are_clear_errors(raw: dict, error: type, words: list[str]) -> None:
    with pytest.raises(error) as info:
        detector(**raw)
    for word in words:
        assert word in str(info.value)


def test_dis_smear_with_a_pp_preset_points_to_smear_pp() -> None:
    params = build_params(SmearParams, {"preset": "atlas-like", "methods": ["jb"]}, "detector")
    with pytest.raises(ConfigError) as info:
        SmearDetector(params, StageContext("detector"))
    assert "detector.preset" in str(info.value) and 'plugin = "smear-pp"' in str(info.value)


def test_every_dis_only_option_is_rejected_by_name() -> None:
    pp = {f.name for f in dataclasses.fields(SmearPPParams)}
    dis = {f.name for f in dataclasses.fields(SmearParams)}
    assert dis - {"preset"} == set(DIS_ONLY_OPTIONS) and not set(DIS_ONLY_OPTIONS) & pp


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        ({"partons": objects(np.full((2, 1), 50.0), np.zeros((2, 1)))}, ["detector.jets", "partons"]),
        ({"jets": objects(np.full((2, 1), 50.0), np.zeros((2, 1)), flavour=np.zeros((2, 1))),
          "lepton": objects(np.full((2, 1), 50.0), np.zeros((2, 1)), pid=np.full((2, 1), 15))},
         ["detector.lepton", "15"]),
        ({"jets": objects(np.full((2, 1), 50.0), np.zeros((2, 1)), flavour=np.zeros((2, 1))),
          "lepton": objects(np.full((2, 1), 50.0), np.zeros((2, 1)))}, ["detector.lepton", "no pid"]),
        ({"jets": objects(np.full((2, 1), 50.0), np.zeros((2, 1)), flavour=np.zeros((2, 1))),
          "lepton": objects(np.full((2, 2), 50.0), np.zeros((2, 2)), pid=np.full((2, 2), 11))},
         ["detector.lepton", "more than one"]),
    ],
)
def test_bad_events_are_clear_errors(columns: dict, words: list[str]) -> None:
    with pytest.raises(DataError) as info:
        detector().fold(EventBatch.from_columns(columns), np.random.SeedSequence(0))
    for word in words:
        assert word in str(info.value)


def test_a_rate_outside_zero_one_names_its_formula() -> None:
    det = detector(jet=EXACT, btagging={"b": "0.01 * pt"})
    events = EventBatch.from_columns({"jets": objects(np.full((2, 1), 150.0), np.zeros((2, 1)),
                                                      flavour=np.full((2, 1), 5))})
    with pytest.raises(DataError) as info:
        det.fold(events, np.random.SeedSequence(0))
    assert "detector.btagging.b" in str(info.value) and "[0, 1]" in str(info.value)


# --- a TOML pipeline: root truth -> smear-pp -----------------------------------------------------------------------

def test_toml_pipeline_folds_a_root_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 400
    counts = rng.integers(2, 7, n)
    total = int(counts.sum())
    jets = particle_lists({"pt": ak.unflatten(rng.uniform(20.0, 150.0, total), counts),
                           "eta": ak.unflatten(rng.uniform(-4.0, 4.0, total), counts),
                           "phi": ak.unflatten(rng.uniform(-np.pi, np.pi, total), counts),
                           "mass": ak.unflatten(rng.uniform(2.0, 10.0, total), counts),
                           "flavour": ak.unflatten(rng.choice([0, 4, 5], total), counts)})
    lepton = objects(rng.uniform(20.0, 100.0, (n, 1)), rng.uniform(-2.4, 2.4, (n, 1)),
                     pid=rng.choice([11, -13], (n, 1)))
    events = EventBatch.from_columns({"jets": jets, "lepton": lepton, "met": rng.uniform(0.0, 100.0, n),
                                      "met_phi": rng.uniform(-np.pi, np.pi, n)})
    write_events(tmp_path / "ttbar.root", events)
    text = f"""
[pipeline]
name = "pp-detector"
seed = 5

[truth]
plugin = "root"
files = ["{tmp_path / 'ttbar.root'}"]

[detector]
plugin = "smear-pp"
preset = "cms-like"
[detector.jet]
pt_min = 25.0
"""
    run = run_pipeline(parse_config(text, "pp.toml", []), output=str(tmp_path / "run"), progress=False)
    truth = uproot.open(run / "truth_test.root")["events"].arrays()
    folded = uproot.open(run / "truth_test_detector.root")["events"].arrays()
    assert {"jets_btag", "lepton_measured", "measured", "jets_flavour", "lepton_pid"} <= set(folded.fields)
    assert len(folded) == len(truth)
    assert ak.all(np.hypot(folded.jets_px, folded.jets_py) >= 25.0)
    assert (ak.num(folded.jets_px) <= ak.num(truth.jets_px)).to_numpy().all()
    assert not np.allclose(folded.met.to_numpy(), truth.met.to_numpy())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stages"]["detector"]["card"]["jet"]["pt_min"] == 25.0
