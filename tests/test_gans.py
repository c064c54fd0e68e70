"""Tests of the GAN generators: fatgan, cfatgan, dsgan, lsgan (and their shared training code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dis_leptons import dis_events

from mlegpipe.beams import Beams
from mlegpipe.checkpoint import load_generator, save_stage
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.losses import mmd2
from mlegpipe.metrics import sliced_wasserstein1
from mlegpipe.registry import load_plugins
from mlegpipe.schema import build_params
from mlegpipe_builtins.dis.kinematics import dis_from_lepton
from mlegpipe_builtins.discriminators.critics import WGANGP, DeepSetsDiscriminator
from mlegpipe_builtins.generators._gan_critic_features import soft_clip
from mlegpipe_builtins.generators.gans import CFATGAN, DSGAN, FATGAN, LSGANGenerator

#: Small, fast settings for tests (2 cores, a few seconds per fit).
TINY = {"layers": 2, "width": 48, "noise_dim": 8, "batch_size": 256, "critic_steps": 2, "validate_every": 0}


def make(cls, seed: int = 1, **raw):
    return cls(build_params(cls.Params, {**TINY, **raw}, "generator"), StageContext("generator", seed=seed))


@pytest.fixture(scope="module")
def sym50():
    beams = Beams.preset("sym50")
    return dis_events(6000, beams, 0), dis_events(2000, beams, 1)


@pytest.fixture(scope="module")
def trained_fatgan(sym50):
    gan = make(FATGAN, steps=150, validate_every=50, valid_events=1000)
    untrained = make(FATGAN).prepare(sym50[0]).sample(2000, np.random.SeedSequence(8))
    history = gan.fit(*sym50)
    return gan, {**history, "untrained_events": untrained}


# -- loss helpers --------------------------------------------------------------------------------------
def test_mmd2_known_values():
    x = torch.randn(50, 2)
    assert float(mmd2(x, x.clone(), [0.5, 1.0])) == pytest.approx(0.0, abs=1e-6)
    # two single points at distance 1: 2 - 2 exp(-1/2)
    assert float(mmd2(torch.zeros(1, 1), torch.ones(1, 1), [1.0])) == pytest.approx(2 - 2 * math.exp(-0.5))
    # gradient flows to the generated sample
    y = torch.randn(20, 2, requires_grad=True)
    mmd2(y, x[:20], [1.0]).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_sliced_wasserstein_of_a_shift():
    a = np.random.default_rng(0).normal(size=(2000, 3))
    # along each axis the shift is 1; along a random unit direction u it is |u·(1,1,1)|, so use axes only
    assert sliced_wasserstein1(a, a + 1.0, n_random=0) == pytest.approx(1.0)
    assert sliced_wasserstein1(a, a) == 0.0


def test_soft_clip_is_identity_near_zero_and_bounded():
    x = torch.tensor([0.0, 0.5, -1.0, 1e9])
    out = soft_clip(x)
    assert torch.allclose(out[:3], x[:3], rtol=1e-2)
    assert float(out[3]) == pytest.approx(10.0)


# -- toy training ----------------------------------------------------------------------------------------
def test_dsgan_moves_toward_a_1d_exponential():
    rng = np.random.default_rng(0)
    train = EventBatch.from_columns({"v": rng.exponential(1.0, 4000)})
    valid = EventBatch.from_columns({"v": rng.exponential(1.0, 1000)})
    truth = rng.exponential(1.0, 4000)
    # a 1D critic is touchy: a gentle, constant learning rate (the cpu preset's 1e-3 suits the lepton models)
    gan = make(DSGAN, features=["v"], steps=150, validate_every=50, valid_events=1000, lr=2e-4,
               lr_schedule="constant")
    gan.prepare(train)
    # untrained, the calibrated network emits a symmetric blob with the data's mean and width
    before = gan.sample(4000, np.random.SeedSequence(2)).column("v")
    history = gan.fit(train, valid)
    after = gan.sample(4000, np.random.SeedSequence(2)).column("v")
    w_before = sliced_wasserstein1(before[:, None], truth[:, None])
    w_after = sliced_wasserstein1(after[:, None], truth[:, None])
    assert w_after < 0.5 * w_before  # W₁ in units of v (the exponential has mean and σ 1)
    # the skew of the exponential (2) is learned: the median lies below the mean
    assert np.median(after) < after.mean() - 0.1
    metrics = [h["metric"] for h in history["history"] if "metric" in h]
    assert len(metrics) == 3 and history["best_metric"] == min(metrics)


def test_fatgan_training_moves_toward_the_data(trained_fatgan, sym50):
    gan, history = trained_fatgan
    valid = gan.encode(sym50[1].take(slice(0, 1500))).numpy()
    before = sliced_wasserstein1(gan.encode(history["untrained_events"]).numpy()[:1500], valid)
    after = sliced_wasserstein1(gan.encode(gan.sample(1500, np.random.SeedSequence(8))).numpy(), valid)
    assert after < 0.9 * before  # standardized (p_x, p_y, T); a tiny network after 150 steps
    metrics = [h["metric"] for h in history["history"] if "metric" in h]
    assert history["best_metric"] == min(metrics)
    assert history["discriminator"] == "wgan-gp"
    # the generator loss had the MMD² term (thesis eq. 14)
    assert all("mmd2" in h for h in history["history"])


# -- physicality -----------------------------------------------------------------------------------------
def test_fatgan_never_puts_p_parallel_above_the_beam_energy(sym50):
    gan = make(FATGAN, reject_unphysical=False)
    gan.prepare(sym50[0])  # untrained: the worst case
    # push the network far from the data: T can take any value, p∥ = E_b - e^T stays below E_b
    z = 5.0 * torch.randn(5000, 3)
    events = gan.decode(z)
    assert (events.column("lepton_pz") < 50.0).all()  # sym50: electron along +z


def _far_from_data(gan):
    """Scale the output layer of a prepared generator: its events spread far beyond the data."""
    with torch.no_grad():
        gan.network[-1].weight.mul_(4.0)
    return gan


def test_fatgan_rejection_returns_only_physical_events_and_counts(sym50):
    gan = _far_from_data(make(FATGAN).prepare(sym50[0]))
    events = gan.sample(3000, np.random.SeedSequence(4))
    assert len(events) == 3000
    assert gan.physical_mask(events).all()
    assert (events.column("x") <= 1).all() and (events.column("y") <= 1).all()
    info = gan.info()
    # p∥ < E_b holds, but E' > E_b through p_T happens: the events were counted and redrawn
    assert info["unphysical_fraction"] > 0
    assert info["rejected_fraction"] == pytest.approx(info["unphysical_fraction"])


def test_dsgan_reports_its_unphysical_fraction(sym50):
    gan = _far_from_data(make(DSGAN).prepare(sym50[0]))
    events = gan.sample(2000, np.random.SeedSequence(5))
    assert len(events) == 2000
    bad = ~gan.physical_mask(events)
    info = gan.info()
    assert bad.any()
    assert info["unphysical_fraction"] == pytest.approx(bad.mean())
    assert info["rejected_fraction"] == 0.0
    # E' > E_b at the symmetric collider shows up as x > 1 or y < 0
    above = events.column("lepton_E") > 50.0
    assert above.any()
    assert bad[above].all()


# -- reproducibility and state --------------------------------------------------------------------------
def test_same_seed_gives_identical_events(sym50):
    a = make(FATGAN, seed=7, steps=15)
    b = make(FATGAN, seed=7, steps=15)
    a.fit(*sym50)
    b.fit(*sym50)
    ea = a.sample(500, np.random.SeedSequence(11))
    eb = b.sample(500, np.random.SeedSequence(11))
    for f in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz", "x", "Q2"):
        np.testing.assert_array_equal(ea.column(f), eb.column(f))
    ec = a.sample(500, np.random.SeedSequence(12))
    assert not np.array_equal(ea.column("lepton_px"), ec.column("lepton_px"))


def test_sampling_does_not_change_the_seed_sequence(trained_fatgan):
    gan, _ = trained_fatgan
    seed = np.random.SeedSequence(3)
    first = gan.sample(200, seed).column("lepton_px")
    again = gan.sample(200, seed).column("lepton_px")
    np.testing.assert_array_equal(first, again)


def test_state_dict_round_trip_and_checkpoint_file(trained_fatgan, tmp_path):
    gan, _ = trained_fatgan
    copy = make(FATGAN)
    copy.load_state_dict(gan.state_dict())
    seed = np.random.SeedSequence(21)
    np.testing.assert_array_equal(gan.sample(300, seed).column("lepton_E"), copy.sample(300, seed).column("lepton_E"))
    # through a weights_only checkpoint file and the registry
    path = save_stage(tmp_path / "fatgan.pt", gan)
    loaded = load_generator(path, load_plugins(), expect_plugin="fatgan")
    assert loaded.features == ["lepton_E", "lepton_px", "lepton_py", "lepton_pz"]
    np.testing.assert_array_equal(gan.sample(300, seed).column("lepton_pz"),
                                  loaded.sample(300, seed).column("lepton_pz"))


# -- conditional -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_cfatgan():
    beams = Beams.preset("sym50")
    train = EventBatch.concat([dis_events(2500, beams, s, e) for s, e in ((0, 10.0), (1, 20.0), (2, 30.0))])
    valid = EventBatch.concat([dis_events(400, beams, s, e) for s, e in ((3, 10.0), (4, 20.0), (5, 30.0))])
    gan = make(CFATGAN, steps=250, lr=5e-4)
    gan.fit(train, valid)
    return gan, train


def test_cfatgan_samples_at_an_unseen_energy(trained_cfatgan):
    gan, _ = trained_cfatgan
    events = gan.sample(2000, np.random.SeedSequence(1), {"beam_energy": 60.0})
    assert len(events) == 2000
    assert events.beams.lepton_energy == 60.0
    assert (events.column("beam_energy") == 60.0).all()
    # p∥ < E_b and the kinematic limits hold at the requested energy
    assert (events.column("lepton_pz") < 60.0).all()
    assert gan.physical_mask(events).all()


def test_cfatgan_follows_the_beam_energy(trained_cfatgan):
    gan, train = trained_cfatgan
    means = []
    for energy in (10.0, 20.0, 30.0):
        ev = gan.sample(3000, np.random.SeedSequence(2), {"beam_energy": energy})
        truth = train.take(train.column("beam_energy") == energy).column("lepton_E")
        gen_mean = ev.column("lepton_E").mean()
        means.append(gen_mean)
        assert gen_mean == pytest.approx(truth.mean(), rel=0.25)
    assert means[0] < means[1] < means[2]
    # per-event energies: each event decoded at its own E_b
    mixed = gan.sample(100, np.random.SeedSequence(3), {"beam_energy": np.repeat([15.0, 25.0], 50)})
    assert (mixed.column("lepton_pz")[:50] < 15.0).all() and (mixed.column("lepton_pz")[50:] < 25.0).all()


def test_cfatgan_needs_several_energies(sym50):
    with pytest.raises(DataError, match="several beam energies"):
        make(CFATGAN).prepare(sym50[0])


def test_conditions_are_checked(trained_cfatgan, trained_fatgan):
    cgan, _ = trained_cfatgan
    with pytest.raises(ConfigError, match="beam_energy"):
        cgan.sample(10, np.random.SeedSequence(0))
    gan, _ = trained_fatgan
    with pytest.raises(ConfigError, match="no such condition"):
        gan.sample(10, np.random.SeedSequence(0), {"beam_energy": 10.0})


# -- lsgan: the unfolding interface ------------------------------------------------------------------------
def test_lsgan_features_are_the_thesis_nu_variables():
    hera = Beams.preset("hera")
    events = dis_events(500, hera, 2)
    gan = make(LSGANGenerator).prepare(events)
    assert gan.representation.generated_names == ["nu1", "nu2"]
    nu = gan.to_physical(gan.encode(events).double()).numpy()
    dis = dis_from_lepton(*(events.column(f) for f in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz")), hera)
    # ν₁ = ln(Q²/2E_e), ν₂ ≈ ln(2E_e y) at HERA (float32 round trip)
    np.testing.assert_allclose(nu[:, 0], np.log(dis["Q2"] / (2 * hera.lepton_energy)), atol=1e-4)
    np.testing.assert_allclose(nu[:, 1], np.log(2 * hera.lepton_energy * dis["y"]), atol=2e-3)
    # decode(encode(events)) gives back the same kinematics (φ is redrawn uniformly)
    back = gan.decode(gan.encode(events).double(), seed=np.random.SeedSequence(0))
    np.testing.assert_allclose(back.column("Q2"), dis["Q2"], rtol=1e-4)
    np.testing.assert_allclose(back.column("lepton_E"), events.column("lepton_E"), rtol=1e-4)


def test_lsgan_network_is_differentiable_for_unfolding():
    hera = Beams.preset("hera")
    gan = make(LSGANGenerator).prepare(dis_events(500, hera, 3))
    assert isinstance(gan.network, torch.nn.Module)
    noise = gan.noise(64, torch.Generator().manual_seed(0))
    z = gan.generate_tensor(noise)
    assert z.shape == (64, 2)
    gan.to_physical(z).sum().backward()
    assert all(p.grad is not None for p in gan.network.parameters())


def test_lsgan_trains_with_its_default_discriminator():
    hera = Beams.preset("hera")
    gan = make(LSGANGenerator, steps=60, validate_every=30, valid_events=500)
    history = gan.fit(dis_events(3000, hera, 4), dis_events(800, hera, 5))
    assert history["discriminator"] == "lsgan"
    events = gan.sample(1000, np.random.SeedSequence(6))
    assert gan.physical_mask(events).all()
    phi = np.arctan2(events.column("lepton_py"), events.column("lepton_px"))
    assert np.histogram(phi, bins=4, range=(-np.pi, np.pi))[0].min() > 180  # φ uniform


def test_a_deepsets_discriminator_from_toml_is_used(sym50):
    disc = DeepSetsDiscriminator(build_params(DeepSetsDiscriminator.Params, {"layers": 2, "width": 32}, "d"),
                                 StageContext("discriminator", seed=2))
    disc.plugin_name = "deepsets"
    gan = make(DSGAN, steps=10)
    history = gan.fit(*sym50, discriminator=disc)
    assert history["discriminator"] == "deepsets"
    assert len(history["history"]) == 10


# -- contract --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fatgan", "cfatgan", "dsgan", "lsgan"])
def test_registered_with_presets(name):
    info = load_plugins().get("generator", name)
    gan = info.cls(build_params(info.cls.Params, {"preset": "published"}, "generator"), StageContext("g"))
    assert gan.settings["width"] == 512 and gan.settings["noise_dim"] == 100
    assert gan.settings["layers"] == (8 if name == "cfatgan" else 5)
    small = info.cls(build_params(info.cls.Params, {}, "generator"), StageContext("g"))
    assert small.settings["width"] < 512
    with pytest.raises(ConfigError, match="generator.stpes"):
        build_params(info.cls.Params, {"stpes": 3}, "generator")


def test_errors_name_the_problem(sym50):
    with pytest.raises(ConfigError, match="before it was trained"):
        make(FATGAN).sample(10, np.random.SeedSequence(0))
    no_beams = EventBatch(sym50[0].arrays, None)
    with pytest.raises(DataError, match="beam"):
        make(FATGAN).prepare(no_beams)
    with pytest.raises(DataError, match="no such field"):
        make(DSGAN, features=["nope"]).prepare(sym50[0])
    with pytest.raises(ConfigError, match="augment"):
        make(DSGAN, features=["x"], augment=["E"]).prepare(EventBatch.from_columns({"x": np.arange(5.0)}))


def test_wgan_critic_with_published_dropout_trains(sym50):
    disc = WGANGP(build_params(WGANGP.Params, {"layers": 2, "width": 32, "dropout": 0.1}, "d"),
                  StageContext("discriminator", seed=1))
    gan = make(FATGAN, steps=5)
    history = gan.fit(*sym50, discriminator=disc)
    assert all(math.isfinite(h["loss_d"]) and math.isfinite(h["loss_g"]) for h in history["history"])


# -- pipeline --------------------------------------------------------------------------------------------
PIPELINE = """
[pipeline]
name = "gan-toy"
seed = 3
split = [0.6, 0.2, 0.2]

[truth]
plugin = "camel"
events = 2000

[generator]
plugin = "dsgan"
features = ["x"]
steps = 20
layers = 2
width = 32
noise_dim = 8
batch_size = 64
validate_every = 10
valid_events = 200

[discriminator]
plugin = "deepsets"
layers = 2
width = 32
embed_widths = [8, 8]
"""


def test_pipeline_trains_against_the_toml_discriminator(tmp_path):
    import json

    from mlegpipe.config import parse_config
    from mlegpipe.pipeline import run_pipeline

    registry = load_plugins()
    run = run_pipeline(parse_config(PIPELINE, "gan.toml", registry=registry), output=str(tmp_path / "run"),
                       progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stages"]["generator"]["discriminator"] == "deepsets"
    generator = load_generator(run / "checkpoints" / "generator.pt", registry, expect_plugin="dsgan")
    assert len(generator.sample(50, np.random.SeedSequence(0))) == 50


# -- cFAT-GAN levers: energy scaling, random azimuth, MMD per energy, EMA, training selection --------------
def test_cpu_defaults_and_the_published_representation():
    c = make(CFATGAN)
    assert (c.settings["energy_scaling"], c.settings["random_azimuth"], c.settings["mmd_condition"]) == (True, True, 3.0)
    assert (c.settings["log_condition"], c.settings["linear_augment"], c.settings["steps"]) == (True, [], 6000)
    assert make(CFATGAN, preset="published").settings["log_condition"] is False
    f = make(FATGAN)
    assert (f.settings["energy_scaling"], f.settings["random_azimuth"], f.settings["mmd_condition"]) == (False, True, 0.0)
    published = make(FATGAN, preset="published")
    assert published.settings["random_azimuth"] is False
    assert make(CFATGAN, preset="published").settings["energy_scaling"] is False
    assert f.settings["ema"] == 0.0 and f.settings["reject_outside_training"] is False


def test_energy_scaling_generates_ln_y_like_t_and_inverts_exactly():
    beams = Beams.preset("sym50")
    events = EventBatch.concat([dis_events(800, beams, s, e) for s, e in ((0, 10.0), (1, 40.0))])
    gan = make(CFATGAN).prepare(events)
    eb = events.column("beam_energy")
    z = gan.encode(events).double()
    # the network's third feature is T - ln E_b = ln(1 - p_z/E_b) (electron along +z): before standardization
    # and asinh (T is not asinh-scaled) it is an affine function of that variable
    t_scaled = gan.scaler.inverse(z)[:, 2].numpy()
    np.testing.assert_allclose(t_scaled, np.log(1.0 - events.column("lepton_pz") / eb), atol=1e-5)
    raw = gan.to_physical(z, torch.from_numpy(eb)).numpy()  # (p_x, p_y, T) in GeV, float32 round trip
    np.testing.assert_allclose(raw[:, 2], np.log(eb - events.column("lepton_pz")), atol=1e-5)
    columns, ok = gan.representation.decode_columns(gan.encode(events), eb, np.random.SeedSequence(0))
    np.testing.assert_allclose(columns["lepton_E"], events.column("lepton_E"), rtol=1e-4)
    assert ok.mean() > 0.99
    with pytest.raises(ConfigError, match="energy_scaling"):
        gan.to_physical(z)
    with pytest.raises(ConfigError, match="lepton_t"):
        make(DSGAN, energy_scaling=True).prepare(events)


def test_rotate_azimuth_keeps_pt_pz_and_rotates():
    beams = Beams.preset("sym50")
    events = EventBatch.concat([dis_events(500, beams, s, e) for s, e in ((0, 10.0), (1, 30.0))])
    gan = make(CFATGAN).prepare(events)
    eb = torch.from_numpy(events.column("beam_energy"))
    z = gan.encode(events).double()
    rotate = gan.representation.rotate_azimuth
    half_turn = gan.to_physical(rotate(z, torch.full((len(z),), math.pi)), eb).numpy()
    np.testing.assert_allclose(half_turn[:, :2], -np.stack([events.column("lepton_px"), events.column("lepton_py")],
                                                           axis=1), atol=1e-6)
    phi = torch.from_numpy(np.random.default_rng(0).uniform(-np.pi, np.pi, len(z)))
    back = rotate(rotate(z, phi), -phi)
    np.testing.assert_allclose(back.numpy(), z.numpy(), atol=1e-9)
    with pytest.raises(ConfigError, match="random_azimuth"):
        make(LSGANGenerator, random_azimuth=True).prepare(dis_events(300, Beams.preset("hera"), 2))


def test_cfatgan_azimuth_is_uniform_and_selection_kept(trained_cfatgan):
    gan, train = trained_cfatgan
    ev = gan.sample(8000, np.random.SeedSequence(4), {"beam_energy": 20.0})
    counts = np.histogram(np.arctan2(ev.column("lepton_py"), ev.column("lepton_px")), 8, (-np.pi, np.pi))[0]
    chi2 = float(((counts - 1000.0) ** 2 / 1000.0).sum())
    assert chi2 < 24.3  # χ² with 7 dof, p = 0.001: uniform by construction
    assert ev.meta["drawn"] >= 8000 and 0 <= ev.meta["unphysical_drawn"] <= ev.meta["drawn"] - 8000
    assert gan.physical_mask(ev).all()


def test_reject_outside_training_keeps_the_q2_cut_and_is_counted():
    beams = Beams.preset("sym50")
    train = EventBatch.concat([dis_events(1500, beams, s, e) for s, e in ((0, 10.0), (1, 30.0))])
    gan = make(CFATGAN, steps=30, reject_outside_training=True)
    gan.fit(train, train)
    q2_min = float(np.exp(0.0))  # dis_events: Q² = e^u, u ≥ 0
    assert gan.ranges["Q2"][0] == pytest.approx(q2_min, abs=0.05) and gan.ranges["Q2"][1] == math.inf
    ev = gan.sample(3000, np.random.SeedSequence(5), {"beam_energy": 20.0})
    assert (ev.column("Q2") >= gan.ranges["Q2"][0]).all()
    info = gan.info()
    assert info["outside_training_fraction"] > 0  # 30 steps: plenty below the cut, all redrawn
    assert info["rejected_fraction"] >= info["outside_training_fraction"]
    state = gan.state_dict()
    loaded = make(CFATGAN, steps=30, reject_outside_training=True)
    loaded.load_state_dict(state)
    assert loaded.ranges == gan.ranges
    from mlegpipe.exceptions import CheckpointError

    with pytest.raises(CheckpointError, match="energy_scaling"):
        make(CFATGAN, energy_scaling=False).load_state_dict(state)
    unconditional = make(FATGAN, reject_outside_training=True).prepare(dis_events(1000, beams, 3))
    assert set(unconditional.ranges) == {"Q2", "W2", "y"}


def test_ema_samples_with_the_averaged_weights_reproducibly():
    beams = Beams.preset("sym50")
    train = EventBatch.concat([dis_events(1000, beams, s, e) for s, e in ((0, 10.0), (1, 30.0))])
    runs = []
    for _ in range(2):
        gan = make(CFATGAN, steps=20, ema=0.9, seed=3)
        gan.fit(train, train)
        assert not any(p.requires_grad for p in gan.network.parameters())  # the average, not the trained net
        runs.append(gan.sample(200, np.random.SeedSequence(1), {"beam_energy": 20.0}).column("lepton_E"))
    np.testing.assert_array_equal(*runs)


def test_log_condition_centres_the_geometric_mean_and_is_checked_on_load():
    from mlegpipe.exceptions import CheckpointError

    beams = Beams.preset("sym50")
    events = EventBatch.concat([dis_events(400, beams, s, e) for s, e in ((0, 10.0), (1, 40.0))])
    for log_condition, fraction in ((True, 0.5), (False, 1.0 / 3.0)):
        gan = make(CFATGAN, log_condition=log_condition).prepare(events)
        # 20 GeV, the geometric mean of 10 and 40, lies halfway between them only on the ln E_b scale
        low, mid, high = gan.condition_tensor(np.array([10.0, 20.0, 40.0]))[:, 0].numpy()
        assert (mid - low) / (high - low) == pytest.approx(fraction, abs=1e-5)
        assert abs(low + high) < 0.1 and high - low == pytest.approx(2.0, abs=0.05)  # standardized: ≈ ±1
    state = make(CFATGAN, log_condition=True).prepare(events).state_dict()
    with pytest.raises(CheckpointError, match="log_condition"):
        make(CFATGAN, log_condition=False).load_state_dict(state)
    make(CFATGAN, log_condition=True).load_state_dict(state)


def test_linear_augment_adds_linear_copies_that_resolve_the_low_energy_tail():
    beams = Beams.preset("sym50")
    events = EventBatch.concat([dis_events(800, beams, s, e) for s, e in ((0, 10.0), (1, 40.0))])
    ratio = events.column("lepton_E") / events.column("beam_energy")
    gan = make(CFATGAN, linear_augment=["E", "pz"]).prepare(events)
    n_aug = len(gan.settings["augment"])
    assert gan.representation.critic.pre.mask.tolist() == [True] * n_aug + [False, False]
    inputs = gan.interpretation_inputs(events)
    feats = gan.discriminator_features(inputs.features, torch.from_numpy(inputs.context)).detach().numpy()
    n_generated = inputs.features.shape[1]
    assert feats.shape[1] == n_generated + n_aug + 2
    asinh_e = feats[:, n_generated + gan.settings["augment"].index("E")]
    linear_e = feats[:, -2]
    # the copy is affine in E'/E_b (up to the soft clip c·tanh(x/c) in the far tail), the asinh column is not ...
    assert np.corrcoef(linear_e, ratio)[0, 1] == pytest.approx(1.0, abs=1e-4)
    assert np.corrcoef(asinh_e, ratio)[0, 1] < 0.99
    # ... so the lowest 2 % of E'/E_b span more of it than under asinh((x - median)/MAD)
    tail = ratio < np.quantile(ratio, 0.02)

    def tail_share(col: np.ndarray) -> float:
        return float(np.ptp(col[tail]) / np.ptp(col))

    assert tail_share(linear_e) > 1.5 * tail_share(asinh_e)  # 1.9x on these toy events
    with pytest.raises(ConfigError, match="linear_augment"):
        make(CFATGAN, linear_augment=["W2"]).prepare(events)
