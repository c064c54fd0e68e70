"""The LHC domain's decay-chain coordinates, resonance observables and the MMD² on masses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import DataError
from mlegpipe.features import make_feature_map
from mlegpipe.losses import breit_wigner_kernel, mmd2
from mlegpipe.observables import observable_set, resolve
from mlegpipe.physicality import physicality
from mlegpipe.registry import load_plugins
from mlegpipe_builtins.lhc.chain import CHAIN_FEATURES, toy_ttbar


@pytest.fixture(scope="module")
def toy() -> EventBatch:
    load_plugins()
    return EventBatch.from_columns({"quarks": toy_ttbar(3000, seed=11)}, beams=Beams.preset("lhc13"))


def _mass(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p[..., 3] ** 2 - (p[..., :3] ** 2).sum(axis=-1), 0.0))


def test_decay_chain_coordinates_invert_exactly(toy: EventBatch) -> None:
    fmap = make_feature_map("ttbar_chain", features=["quarks"]).fit(toy)
    assert fmap.names == CHAIN_FEATURES
    z = fmap.encode(toy)
    back = EventBatch.from_columns(fmap.assemble(fmap.decode(z)))
    for c in ("px", "py", "pz", "E"):
        np.testing.assert_allclose(back.particles("quarks")[c], toy.particles("quarks")[c], atol=1e-7, rtol=1e-9)
    # the fitted quark masses: the toy's b (4.8) and light-quark (0.33) masses
    assert fmap.masses == pytest.approx([4.8, 0.33, 0.33, 4.8, 0.33, 0.33], abs=1e-9)


def test_any_features_decode_to_exact_masses_and_balanced_momenta(toy: EventBatch) -> None:
    fmap = make_feature_map("ttbar_chain", features=["quarks"]).fit(toy)
    z = torch.randn(20000, len(CHAIN_FEATURES), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z[:, 1] = 4.5 + 0.8 * z[:, 1]  # top p_T around 90 GeV
    x = fmap.inverse(z)
    q = x.numpy().reshape(-1, 6, 4)
    assert np.isfinite(q).all()
    # ΣpT = 0 by construction, to rounding of momenta of O(100 GeV)
    assert np.abs(q[:, :, :2].sum(axis=1)).max() < 1e-9 * np.abs(q[:, :, :2]).max()
    # the decoded masses are the mass features, through the exact inverse of the feature transform
    back = fmap.forward(x)
    for col in ("t1_bwmass", "t2_bwmass", "W1_bwmass", "W2_bwmass", "W1_costheta", "q2_phi"):
        i = CHAIN_FEATURES.index(col)
        np.testing.assert_allclose(back[:, i].numpy(), z[:, i].numpy(), atol=1e-6)
    assert (_mass(q[:, 0] + q[:, 1] + q[:, 2]) > _mass(q[:, 1] + q[:, 2]) + 4.8 - 1e-9).all()  # above threshold
    # a median top-mass feature is the pole mass: the Breit–Wigner CDF truncated at m_W + m_b
    mid = torch.zeros(1, len(CHAIN_FEATURES), dtype=torch.float64)
    mid[0, 1] = 4.0
    q0 = fmap.inverse(mid).numpy().reshape(6, 4)
    assert _mass(q0[1] + q0[2]) == pytest.approx(80.385, abs=0.01)
    assert _mass(q0[0] + q0[1] + q0[2]) == pytest.approx(172.5, abs=0.01)


def test_the_chain_map_refuses_unbalanced_or_wrong_multiplicity_events(toy: EventBatch) -> None:
    parts = toy.particles("quarks")
    shifted = {c: v.copy() for c, v in parts.items()}
    shifted["px"][:, 0] += 5.0  # a 5 GeV recoil (initial-state radiation)
    unbalanced = EventBatch.from_columns({"quarks": particle_lists({c: v.tolist() for c, v in shifted.items()})})
    with pytest.raises(DataError, match="ΣpT = 0"):
        make_feature_map("ttbar_chain", features=["quarks"]).fit(unbalanced)
    four = EventBatch.from_columns({"quarks": particle_lists({c: v[:, :4].tolist() for c, v in parts.items()})})
    with pytest.raises(DataError, match="exactly 6 quarks"):
        make_feature_map("ttbar_chain", features=["quarks"]).fit(four)


def test_resonance_observables_against_hand_computed_values() -> None:
    load_plugins()
    # W+ -> two back-to-back massless quarks of 40 GeV at rest: m_W = 80; b at rest adds its mass: m_t = 80 + 5
    b = {"px": 0.0, "py": 0.0, "pz": 0.0, "E": 5.0}
    q1 = {"px": 40.0, "py": 0.0, "pz": 0.0, "E": 40.0}
    q2 = {"px": -40.0, "py": 0.0, "pz": 0.0, "E": 40.0}
    six = [b, q1, q2, b, {"px": 0.0, "py": 30.0, "pz": 0.0, "E": 30.0}, {"px": 0.0, "py": -30.0, "pz": 0.0, "E": 30.0}]
    quarks = particle_lists({c: [[p[c] for p in six]] for c in ("px", "py", "pz", "E")})
    batch = EventBatch.from_columns({"quarks": quarks})
    assert resolve("m_W1")(batch)[0] == pytest.approx(80.0)
    assert resolve("m_t1")(batch)[0] == pytest.approx(85.0)
    assert resolve("m_W2")(batch)[0] == pytest.approx(60.0)
    assert resolve("m_tt")(batch)[0] == pytest.approx(150.0)
    assert resolve("pt_tt")(batch)[0] == pytest.approx(0.0)
    assert abs(resolve("parton1_phi")(batch)[0]) == pytest.approx(0.0) or abs(
        resolve("parton1_phi")(batch)[0]) == pytest.approx(math.pi)


def test_a_declared_mass_needing_more_particles_than_the_collection_has_is_a_clear_error() -> None:
    load_plugins()
    four = particle_lists({"pt": [[50.0, 40.0, 30.0, 20.0]], "eta": [[0.0] * 4], "phi": [[0.0, 1.0, 2.0, 3.0]],
                           "mass": [[0.0] * 4]})
    obs = observable_set({"m_t2": "mass(quarks[3] + quarks[4] + quarks[5])", "compare": ["m_t2"]})
    with pytest.raises(DataError, match=r"never has a particle at index 4") as err:
        obs.check(EventBatch.from_columns({"quarks": four}))
    assert "observables.m_t2" in str(err.value)


def test_mmd2_on_masses_with_a_breit_wigner_kernel_against_a_hand_computed_value() -> None:
    load_plugins()
    gamma = 2.0
    x = torch.tensor([[80.0], [81.0]], dtype=torch.float64)
    y = torch.tensor([[80.0], [83.0]], dtype=torch.float64)

    def k(a: float, b: float) -> float:
        return 1.0 / (1.0 + 4.0 * (a - b) ** 2 / gamma**2)

    xs, ys = [80.0, 81.0], [80.0, 83.0]
    expected = (sum(k(a, b) for a in xs for b in xs) / 4 + sum(k(a, b) for a in ys for b in ys) / 4
                - 2 * sum(k(a, b) for a in xs for b in ys) / 4)
    assert float(mmd2(x, y, kernel=breit_wigner_kernel([gamma]))) == pytest.approx(expected, rel=1e-12)
    # on the declared observable of decoded tensors: the same number, and a gradient
    fmap_events = EventBatch.from_columns({"quarks": toy_ttbar(64, seed=2)})
    parts = fmap_events.particles("quarks")
    tensors = {f"quarks{i + 1}_{c}": torch.tensor(parts[c][:, i], requires_grad=True)
               for c in ("px", "py", "pz", "E") for i in range(6)}
    m_w = resolve("m_W1").tensor(tensors)
    target = torch.as_tensor(resolve("m_W1")(fmap_events))
    loss = mmd2(m_w[:, None], target[:, None] + 1.0, kernel=breit_wigner_kernel([2.09]))
    loss.backward()
    assert float(loss.detach()) > 0 and tensors["quarks2_px"].grad.abs().sum() > 0


def test_physicality_of_quarks(toy: EventBatch) -> None:
    out = physicality(toy)
    assert out["spacelike_quark"] == 0.0 and out["above_sqrt_s"] == 0.0
    parts = toy.particles("quarks")
    bad = {c: v.copy() for c, v in parts.items()}
    bad["E"][:10, 2] = 0.5 * np.abs(bad["pz"][:10, 2]) - 1.0  # E < |p|
    batch = EventBatch.from_columns({"quarks": particle_lists({c: v.tolist() for c, v in bad.items()})})
    assert physicality(batch)["spacelike_quark"] == pytest.approx(10 / len(toy))


def test_peak_figures_of_a_breit_wigner_against_known_values() -> None:
    from mlegpipe.metrics.peaks import FIT_WIDTHS, peak_figures
    from mlegpipe.observables import Peak

    gamma_full, n = 2.092, 400_000
    half = gamma_full / 2
    m = 80.385 + half * np.random.default_rng(7).standard_cauchy(n)
    f = peak_figures(m, Peak(80.385, gamma_full, 5.0))
    expected_window = 2 / math.pi * math.atan(5.0 / half)  # 0.87
    assert f["window_fraction"] == pytest.approx(expected_window, abs=4 * math.sqrt(expected_window / n))
    assert f["width_fit"] == pytest.approx(gamma_full, rel=0.02)
    assert f["pole_fit"] == pytest.approx(80.385, abs=0.01)
    assert f["fwhm"] == pytest.approx(gamma_full, rel=0.05)
    # the interquartile range of the Cauchy truncated to the fit window
    q3 = half * math.tan(0.5 * math.atan(FIT_WIDTHS * gamma_full / half))
    assert f["iqr"] == pytest.approx(2 * q3, rel=0.02)
    # undefined masses (NaN) count as outside the window
    assert peak_figures(np.r_[m[:1000], np.full(1000, np.nan)], Peak(80.385, gamma_full))["window_fraction"] < 0.5


def test_generated_quark_systems_above_sqrt_s_are_unphysical(toy: EventBatch) -> None:
    from mlegpipe.features import decode_events

    fmap = make_feature_map("ttbar_chain", features=["quarks"]).fit(toy)
    z = np.zeros((2, len(CHAIN_FEATURES)))
    z[:, 1] = [math.log(100.0), math.log(8000.0)]  # top p_T 100 GeV, and 8 TeV: m_tt > 13 TeV
    _, ok = decode_events(fmap, z, np.zeros(2), Beams.preset("lhc13"))
    assert ok.tolist() == [True, False]


def test_a_pp_lepton_is_not_a_dis_lepton_and_jets_are_compared_by_default() -> None:
    from mlegpipe.observables import ObservableSet

    load_plugins()
    lepton = {"lepton_E": [50.0, 40.0], "lepton_px": [30.0, 0.0], "lepton_py": [40.0, 24.0],
              "lepton_pz": [0.0, 32.0]}
    jets = particle_lists({"pt": [[60.0, 30.0], [45.0]], "eta": [[0.1, 1.0], [-0.5]], "phi": [[0.0, 2.0], [1.0]],
                           "mass": [[8.0, 5.0], [6.0]]})
    pp = EventBatch.from_columns({**lepton, "met": [20.0, 35.0], "jets": jets}, beams=Beams.preset("lhc13"))
    names = ObservableSet().default_names(pp, pp)
    assert {"n_jets", "jets1_pt", "met", "lepton_pt"} <= set(names) and "nu1" not in names
    chosen = observable_set({"compare": ["lepton_pt", "lepton_theta"]})
    assert all(chosen.available(pp, n) for n in chosen.compare)
    assert chosen.values(pp, "lepton_pt").tolist() == pytest.approx([50.0, 24.0])
    dis = EventBatch.from_columns(lepton, beams=Beams.preset("hera"))
    assert ObservableSet().default_names(dis, dis)[:4] == ["lepton_E", "lepton_px", "lepton_py", "lepton_pz"]
