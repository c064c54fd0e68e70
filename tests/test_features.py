"""Feature maps: exact inverses on the physical domain, physics identities, scaler, augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlegpipe.beams import ELECTRON_MASS, Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, PhysicsError
from mlegpipe.features import (
    AsinhScale,
    Columns,
    Standardize,
    augment,
    decode_events,
    make_feature_map,
    sample_with_rejection,
)
from mlegpipe_builtins.dis import LEPTON_FIELDS, kinematics
from mlegpipe_builtins.dis.augment import CFATGAN_AUGMENT
from mlegpipe_builtins.dis.labels import beams_at, dis_labels
from mlegpipe_builtins.dis.maps import CartesianLepton, NuMap, ScaledNuMap, TransformedLepton, t_pz, t_pz_inverse

HERA = Beams.preset("hera")
SYM50 = Beams.preset("sym50")
F64 = torch.float64
finite = {"allow_nan": False, "allow_infinity": False}


def _hera_leptons(n: int, seed: int = 0, mass: float = 0.0) -> torch.Tensor:
    """Physical HERA leptons (px, py, pz) from random (x, Q^2, phi) inside y in (0.01, 0.95)."""
    rng = np.random.default_rng(seed)
    s_m2 = 2 * HERA.lepton_energy * (HERA.hadron_energy + HERA.hadron_momentum)
    q2 = np.exp(rng.uniform(np.log(1.0), np.log(2e4), n))
    y = rng.uniform(0.01, 0.95, n)
    x = q2 / (y * s_m2)
    keep = x < 0.9
    e, px, py, pz = kinematics.lepton_from_dis(x[keep], q2[keep], rng.uniform(-np.pi, np.pi, keep.sum()), HERA)
    p = torch.tensor(np.stack([px, py, pz], axis=1), dtype=F64)
    return p


# -- T(p_z) ---------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(px=st.floats(-200, 200, **finite), py=st.floats(-200, 200, **finite),
       ppar_frac=st.floats(-20.0, 0.9999, **finite), eb=st.floats(1.0, 100.0, **finite),
       direction=st.sampled_from([1, -1]))
def test_transformed_lepton_round_trip(px: float, py: float, ppar_frac: float, eb: float, direction: int) -> None:
    m = TransformedLepton(direction=direction, lepton_mass=ELECTRON_MASS)
    pz = direction * ppar_frac * eb
    x = torch.tensor([[px, py, pz]], dtype=F64)
    back = m.inverse(m.forward(x, eb), eb)
    np.testing.assert_allclose(back[:, 1:].numpy(), x.numpy(), rtol=1e-10, atol=1e-9 * eb)
    energy = np.sqrt(px**2 + py**2 + pz**2 + ELECTRON_MASS**2)
    # E' comes back through ln(E_b - p_par): its absolute precision is ~eps * E_b, not eps * E'
    np.testing.assert_allclose(back[0, 0].item(), energy, rtol=1e-12, atol=1e-12 * eb)


@settings(max_examples=200, deadline=None)
@given(px=st.floats(-100, 100, **finite), py=st.floats(-100, 100, **finite), t=st.floats(-8.0, 8.0, **finite),
       eb=st.floats(1.0, 100.0, **finite), direction=st.sampled_from([1, -1]))
def test_any_generated_t_gives_p_parallel_below_beam(px: float, py: float, t: float, eb: float,
                                                       direction: int) -> None:
    m = TransformedLepton(direction=direction)
    z = torch.tensor([[px, py, t]], dtype=F64)
    lep = m.inverse(z, eb)
    assert direction * lep[0, 3].item() < eb
    np.testing.assert_allclose(m.forward(lep[:, 1:], eb).numpy(), z.numpy(), rtol=1e-9, atol=1e-9)


def test_t_pz_matches_numpy_kinematics() -> None:
    pz = np.array([-30.0, -1.0, 0.0, 20.0, 49.9])
    for direction in (1, -1):
        ours = t_pz(torch.tensor(pz, dtype=F64), 50.0, direction).numpy()
        np.testing.assert_allclose(ours, kinematics.t_pz(pz, 50.0, direction), rtol=1e-14)
        back = t_pz_inverse(torch.tensor(ours), 50.0, direction).numpy()
        np.testing.assert_allclose(back, pz, atol=1e-12)


# -- (nu1, nu2) -----------------------------------------------------------------------------
def test_nu_map_is_q2_and_y_at_hera() -> None:
    """Thesis ch. 7: nu1 = ln(Q^2 / 2E_e), nu2 = ln(2 E_e y) for a massless lepton at a collider."""
    p = _hera_leptons(2000)
    z = NuMap(direction=HERA.lepton_direction, lepton_mass=0.0).forward(p, HERA.lepton_energy).numpy()
    e = np.sqrt((p**2).sum(1).numpy())
    dis = kinematics.dis_from_lepton(e, p[:, 0].numpy(), p[:, 1].numpy(), p[:, 2].numpy(), HERA)
    np.testing.assert_allclose(z[:, 0], np.log(dis["Q2"] / (2 * HERA.lepton_energy)), atol=1e-9)
    # y carries M^2/(4 E_p^2) ~ 3e-7 corrections
    np.testing.assert_allclose(z[:, 1], np.log(2 * HERA.lepton_energy * dis["y"]), atol=1e-5)
    np.testing.assert_allclose(z[:, 2], np.arctan2(p[:, 1].numpy(), p[:, 0].numpy()), atol=1e-12)


def test_scaled_nu_map_is_ln_q2_and_ln_y_at_any_beam_energy() -> None:
    p = _hera_leptons(1000, seed=4)
    e = np.sqrt((p**2).sum(1).numpy())
    dis = kinematics.dis_from_lepton(e, *p.numpy().T, HERA)
    m = ScaledNuMap(direction=-1, lepton_mass=0.0)
    z = m.forward(p, HERA.lepton_energy)
    np.testing.assert_allclose(z[:, 0].numpy(), np.log(dis["Q2"]), atol=1e-9)
    np.testing.assert_allclose(z[:, 1].numpy(), np.log(dis["y"]), atol=1e-5)
    np.testing.assert_allclose(m.inverse(z, HERA.lepton_energy)[:, 1:].numpy(), p.numpy(), atol=1e-9)
    assert m.valid(z, HERA.lepton_energy).all()
    assert not m.valid(torch.tensor([[1.0, 0.1, 0.0]], dtype=F64), 27.6).any()  # ln y > 0: beyond the limit



# -- dis_scaling: (ln Q², ln a, phi), a = ln y / ln(x y) -----------------------------------------------
SCAN = Beams.preset("sym50", lepton_energy="beam_energy", hadron_energy="beam_energy")


def _sym_leptons(energy: float, x: np.ndarray, q2: np.ndarray, seed: int = 0) -> torch.Tensor:
    phi = np.random.default_rng(seed).uniform(-np.pi, np.pi, x.size)
    _, px, py, pz = kinematics.lepton_from_dis(x, q2, phi, beams_at(SYM50, energy, follows=True))
    return torch.tensor(np.stack([px, py, pz], axis=1), dtype=F64)


def test_dis_scaling_map_is_ln_q2_and_the_share_of_ln_y_in_ln_xy_at_every_energy() -> None:
    rng = np.random.default_rng(5)
    m = make_feature_map("dis_scaling", SCAN)
    assert m.config()["hadron_energy"] is None  # the proton follows the per-event beam energy
    for energy in (10.0, 50.0, 90.0):
        s = 4 * energy**2
        q2 = np.exp(rng.uniform(0.0, np.log(0.5 * s), 2000))
        y = np.exp(rng.uniform(np.log(q2 / s), 0.0)) * rng.uniform(0.05, 0.999, q2.size) ** 0.01
        x = np.clip(q2 / (y * s), 1e-9, 0.999)
        p = _sym_leptons(energy, x, q2)
        z = m.forward(p, energy).numpy()
        cols = dict(zip(("lepton_E", "lepton_px", "lepton_py", "lepton_pz"),
                        (np.sqrt((p**2).sum(1).numpy()), *p.numpy().T), strict=True))
        dis = dis_labels(cols, np.full(x.size, energy), SCAN)
        # the map's Q2 and y neglect the electron mass: ~1e-5 relative at Q2 ~ 1 GeV2
        np.testing.assert_allclose(z[:, 0], np.log(dis["Q2"]), atol=2e-5)
        np.testing.assert_allclose(np.exp(z[:, 1]), np.log(dis["y"]) / np.log(dis["x"] * dis["y"]), atol=2e-5)


def test_dis_scaling_limits_sit_at_the_same_place_at_every_beam_energy() -> None:
    """y -> 1 gives a -> 0 and x -> 1 gives a -> 1 at 10, 50 and 90 GeV alike (a = 0 and 1 exactly at the limits)."""
    m = make_feature_map("dis_scaling", SCAN)
    for energy in (10.0, 50.0, 90.0):
        s = 2 * energy * (energy + np.sqrt(energy**2 - SYM50.hadron.mass**2))  # 2P.k
        q2 = np.array([1.0, 1.0, 0.1 * s, 0.1 * s])
        x = np.array([1.0 / s / (1 - 1e-3), 1 - 1e-4, 0.1 / (1 - 1e-3), 1 - 1e-4])   # y = 1 - 1e-3 or x ~ 1
        a = m.forward(_sym_leptons(energy, x, q2), energy)[:, 1].exp().numpy()
        np.testing.assert_allclose(a, [0.0, 1.0, 0.0, 1.0], atol=1e-3)


def test_dis_scaling_inverse_is_exact_and_flags_events_beyond_the_limits() -> None:
    rng = np.random.default_rng(6)
    m = make_feature_map("dis_scaling", SCAN)
    energies = rng.choice([10.0, 15.0, 35.0, 90.0], 3000)
    q2 = np.exp(rng.uniform(0.0, np.log(energies**2), energies.size))
    x = np.exp(rng.uniform(np.log(q2 / (4 * energies**2)) + 0.01, 0.0)) * 0.999  # y < 0.99, x < 0.999
    p = torch.cat([_sym_leptons(e, x[energies == e], q2[energies == e], seed=int(e)) for e in np.unique(energies)])
    eb = torch.from_numpy(np.sort(energies))
    z = m.forward(p, eb)
    back = m.inverse(z, eb)
    np.testing.assert_allclose(back[:, 1:].numpy(), p.numpy(), rtol=1e-10, atol=1e-9)
    mass = m.config()["lepton_mass"]
    np.testing.assert_allclose(back[:, 0].numpy(), np.sqrt((p**2).sum(1).numpy() + mass**2), rtol=1e-10)
    assert m.valid(z, eb).all()
    beyond = torch.tensor([[2.0, 0.1, 0.0],                    # a > 1: x > 1
                           [np.log(4 * 20.0**2) + 0.1, -1.0, 0.0]], dtype=F64)  # Q2 above 2P.k
    assert not m.valid(beyond, 20.0).any()


def test_dis_scaling_with_a_fixed_hadron_beam_and_without_beams() -> None:
    m = make_feature_map("dis_scaling", HERA)
    assert m.config()["hadron_energy"] == HERA.hadron_energy
    p = _hera_leptons(500, seed=7)
    e = np.sqrt((p**2).sum(1).numpy())
    dis = kinematics.dis_from_lepton(e, *p.numpy().T, HERA)
    a = m.forward(p, HERA.lepton_energy)[:, 1].exp().numpy()
    np.testing.assert_allclose(a, np.log(dis["y"]) / np.log(dis["x"] * dis["y"]), atol=1e-5)
    with pytest.raises(ConfigError, match="dis_scaling"):
        make_feature_map("dis_scaling", None)

def test_nu_map_matches_numpy_kinematics() -> None:
    p = _hera_leptons(500, seed=3)
    e = np.sqrt((p**2).sum(1).numpy())
    nu1, nu2 = kinematics.nu_from_lepton(e, p[:, 2].numpy(), HERA)
    z = NuMap(direction=-1, lepton_mass=0.0).forward(p, HERA.lepton_energy).numpy()
    np.testing.assert_allclose(z[:, 0], nu1, rtol=1e-12)
    np.testing.assert_allclose(z[:, 1], nu2, rtol=1e-12)
    lep = kinematics.lepton_from_nu(z[:, 0], z[:, 1], z[:, 2], HERA)
    np.testing.assert_allclose(np.stack(lep, 1)[:, 1:], p.numpy(), atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(nu1=st.floats(-6, 6, **finite), frac=st.floats(1e-6, 1 - 1e-9, **finite),
       phi=st.floats(-np.pi, np.pi, **finite), eb=st.floats(2.0, 60.0, **finite),
       direction=st.sampled_from([1, -1]), mass=st.sampled_from([0.0, ELECTRON_MASS]))
def test_nu_map_round_trip_on_valid_features(nu1: float, frac: float, phi: float, eb: float, direction: int,
                                             mass: float) -> None:
    m = NuMap(direction=direction, lepton_mass=mass)
    nu2 = float(np.log(frac * 2 * eb))  # any nu2 < ln(2 E_b)
    z = torch.tensor([[nu1, nu2, phi]], dtype=F64)
    if not bool(m.valid(z, eb)):
        assert np.exp(nu1) * (2 * eb - np.exp(nu2)) < mass**2  # only the p_T^2 >= m^2 condition may fail
        return
    lep = m.inverse(z, eb)
    e, ppar = lep[0, 0].item(), direction * lep[0, 3].item()
    assert e + ppar < 2 * eb and e - ppar > 0 and e >= mass
    back = m.forward(lep[:, 1:], eb)
    np.testing.assert_allclose(back[0, :2].numpy(), z[0, :2].numpy(), atol=1e-7)
    if np.hypot(lep[0, 1].item(), lep[0, 2].item()) > 1e-6:
        np.testing.assert_allclose(back[0, 2].item(), phi, atol=1e-9)


def test_nu_map_flags_features_beyond_the_limit() -> None:
    m = NuMap(direction=-1, lepton_mass=0.0)
    eb = HERA.lepton_energy
    z = torch.tensor([[1.0, np.log(2 * eb) - 0.1, 0.0], [1.0, np.log(2 * eb) + 0.1, 0.0]], dtype=F64)
    assert m.valid(z, eb).tolist() == [True, False]


def test_inverses_are_differentiable() -> None:
    z = torch.tensor([[1.0, 2.0, 1.5], [-3.0, 0.5, 2.5]], dtype=F64, requires_grad=True)
    eb = torch.tensor([27.6, 27.6], dtype=F64)
    assert torch.autograd.gradcheck(lambda v: TransformedLepton(-1).inverse(v, eb), (z,))
    znu = torch.tensor([[1.0, 2.0, 0.3], [2.0, 3.0, -1.0]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: NuMap(-1).inverse(v, eb), (znu,))


# -- batches, factory, other maps -----------------------------------------------------------------
def test_encode_decode_event_batch_round_trip() -> None:
    p = _hera_leptons(300, seed=5).numpy()
    e = np.sqrt((p**2).sum(1) + ELECTRON_MASS**2)
    batch = EventBatch.from_columns({"lepton_E": e, "lepton_px": p[:, 0], "lepton_py": p[:, 1],
                                     "lepton_pz": p[:, 2]}, beams=HERA)
    for name in ("lepton_t", "nu", "nu_scaled", "lepton_cartesian"):
        m = make_feature_map(name, HERA)
        cols = m.decode(m.encode(batch), HERA.lepton_energy)
        for f in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz"):
            np.testing.assert_allclose(cols[f], batch.column(f), rtol=1e-9, atol=1e-9, err_msg=f"{name}: {f}")


def test_encode_names_events_outside_the_domain() -> None:
    batch = EventBatch.from_columns({"lepton_px": [0.0], "lepton_py": [0.0], "lepton_pz": [60.0]}, beams=SYM50)
    with pytest.raises(DataError, match="lepton_t"):
        make_feature_map("lepton_t", SYM50).encode(batch)


def test_make_feature_map_from_config_and_errors() -> None:
    m = make_feature_map("lepton_t", SYM50)
    assert m.direction == 1 and m.lepton_mass == pytest.approx(ELECTRON_MASS)
    again = make_feature_map(m.config())
    assert again.config() == m.config()
    assert make_feature_map({"name": "columns"}, features=["x", "Q2"]).names == ("x", "Q2")
    with pytest.raises(ConfigError, match="lepton_tt") as err:
        make_feature_map("lepton_tt")
    assert "did you mean 'lepton_t'" in str(err.value)
    with pytest.raises(ConfigError):
        Columns([])


def test_cartesian_has_no_protection() -> None:
    lep = CartesianLepton(lepton_mass=0.0).inverse(torch.tensor([[0.0, 0.0, 80.0]], dtype=F64))
    assert lep[0, 0].item() == pytest.approx(80.0)  # beyond a 50 GeV beam: nothing stops it


# -- scaler -------------------------------------------------------------------------------------
def test_standardize_fit_transform_inverse_and_state() -> None:
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal([3.0, -2.0], [5.0, 0.1], size=(5000, 2)))
    s = Standardize().fit(x)
    z = s.transform(x)
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(0, unbiased=False).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(s.inverse(z).numpy(), x.numpy(), atol=1e-12)
    s2 = Standardize().load_state_dict(s.state_dict())
    assert torch.equal(s2.transform(x), z)
    assert s.transform(x.float()).dtype == torch.float32


def test_standardize_weighted_and_unfitted() -> None:
    s = Standardize().fit(np.array([[0.0], [10.0]]), weights=np.array([3.0, 1.0]))
    assert s.mean.item() == pytest.approx(2.5)
    assert s.std.item() == pytest.approx(np.sqrt(0.75 * 2.5**2 + 0.25 * 7.5**2))
    with pytest.raises(DataError):
        Standardize().transform(torch.zeros(1, 1))


# -- augmentations ----------------------------------------------------------------------------------
def test_augment_values_and_gradients() -> None:
    p = _hera_leptons(50, seed=2)
    lep = TransformedLepton(-1, 0.0).inverse(TransformedLepton(-1, 0.0).forward(p, 27.6), 27.6)
    lep.requires_grad_(True)
    out = augment(lep, LEPTON_FIELDS, CFATGAN_AUGMENT)
    e, px, py, pz = lep.detach().unbind(1)
    pt = torch.hypot(px, py)
    expected = torch.stack([e, pt, pz / pt, px * py, px * pz, py * pz], 1)
    np.testing.assert_allclose(out.detach().numpy(), expected.numpy(), rtol=1e-9)
    out.sum().backward()
    assert torch.isfinite(lep.grad).all() and lep.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="pt"):
        augment(lep, LEPTON_FIELDS, ["pt"])


# -- asinh preprocessing, decoding to physical events ------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(-1e4, 1e4, **finite), min_size=3, max_size=50))
def test_asinh_scale_inverts_exactly(values: list[float]) -> None:
    x = torch.tensor(values, dtype=F64)[:, None].repeat(1, 2)
    a = AsinhScale([True, False]).fit(x)
    z = a.transform(x)
    np.testing.assert_allclose(a.inverse(z).numpy(), x.numpy(), rtol=1e-9, atol=1e-9 * (1 + float(x.abs().max())))
    assert torch.equal(z[:, 1], x[:, 1])  # unchosen columns pass unchanged
    b = AsinhScale().load_state_dict(a.state_dict())
    assert torch.equal(b.transform(x), z)


def test_asinh_scale_makes_power_law_tails_logarithmic() -> None:
    rng = np.random.default_rng(0)
    pt = torch.tensor((1 - rng.uniform(size=20000)) ** -1.0)[:, None]  # Pareto tail, p_T ~ 1/p_T^2
    z = AsinhScale().fit(pt).transform(pt)
    assert float(pt.max() / pt.median()) > 1000 and float((z.max() - z.median()) / z.std()) < 15


def test_decode_events_adds_dis_labels_and_flags_unphysical_events() -> None:
    p = _hera_leptons(200, seed=8)
    n = len(p)
    m = NuMap(direction=-1, lepton_mass=0.0)
    z = m.forward(p, 27.6).numpy()
    z_bad = z[:3].copy()
    z_bad[:, 1] = np.log(2 * 27.6) + 0.5  # beyond E' + p_par = 2 E_b
    cols, ok = decode_events(m, np.concatenate([z, z_bad]), np.full(n + 3, 27.6), HERA)
    assert ok[:n].all() and not ok[n:].any()
    e = np.sqrt((p**2).sum(1).numpy())
    truth = kinematics.dis_from_lepton(e, *p.numpy().T, HERA)
    np.testing.assert_allclose(cols["Q2"][:n], truth["Q2"], rtol=1e-9)
    np.testing.assert_allclose(cols["x"][:n], truth["x"], rtol=1e-9)
    assert (cols["beam_energy"] == 27.6).all()
    _, ok_cut = decode_events(m, z, np.full(n, 27.6), HERA, ranges={"Q2": (10.0, np.inf)})
    np.testing.assert_array_equal(ok_cut, truth["Q2"] >= 10.0)


def test_symmetric_samples_scale_the_hadron_beam_too() -> None:
    """sym_multienergy: E x E beams. Read with a 50 GeV proton, a 10 x 10 GeV event gets x five times too small."""
    sym10 = Beams.lepton_hadron(10.0, 10.0, lepton_direction=1)
    e, px, py, pz = kinematics.lepton_from_dis(np.array([0.6]), np.array([200.0]), np.array([0.0]), sym10)
    cols = dict(zip(("lepton_E", "lepton_px", "lepton_py", "lepton_pz"), (e, px, py, pz), strict=True))
    at10 = beams_at(SYM50, 10.0, follows=True)
    assert (at10.lepton_energy, at10.hadron_energy, at10.lepton_direction) == (10.0, 10.0, 1)
    np.testing.assert_allclose(dis_labels(cols, np.array([10.0]), SYM50, follows=True)["x"], 0.6, rtol=1e-9)
    scan = Beams.preset("sym50", lepton_energy="beam_energy", hadron_energy="beam_energy")  # declared per event
    np.testing.assert_allclose(dis_labels(cols, np.array([10.0]), scan)["x"], 0.6, rtol=1e-9)
    assert dis_labels(cols, np.array([10.0]), SYM50)["x"][0] == pytest.approx(0.6 * 10 / 50, rel=0.01)


def test_sample_with_rejection_keeps_slots_and_counts() -> None:
    rng = np.random.default_rng(0)
    condition = np.arange(1000.0)

    def draw(slots: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        v = rng.uniform(size=len(slots))
        return {"v": v, "c": condition[slots]}, v < 0.25

    cols, drawn, rejected = sample_with_rejection(draw, 1000)
    assert (cols["v"] < 0.25).all() and np.array_equal(cols["c"], condition)
    assert drawn - rejected == 1000 and rejected / drawn == pytest.approx(0.75, abs=0.02)
    with pytest.raises(PhysicsError, match="still unphysical"):
        sample_with_rejection(lambda s: ({"v": np.zeros(len(s))}, np.zeros(len(s), bool)), 10, max_rounds=3)
