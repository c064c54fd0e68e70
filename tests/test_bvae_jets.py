"""The B-VAE on events with a variable number of jets: the multiplicity drawn or fixed, the buffer per multiplicity."""

from __future__ import annotations

import numpy as np
import pytest

from mlegpipe.checkpoint import load_generator, save_stage
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import ConfigError
from mlegpipe.observables import resolve
from mlegpipe.registry import load_plugins
from mlegpipe.schema import build_params
from mlegpipe_builtins.generators.bvae import BVAEGenerator

#: Probabilities of 1, 2, 3 jets in the toy.
MULTIPLICITY = (0.5, 0.3, 0.2)
TINY = {"layers": 2, "width": 64, "latent": 6, "batch_size": 256, "validate_every": 0, "steps": 150}


def toy_jets(n: int, seed: int) -> EventBatch:
    """1-3 jets (p_T-ordered, 20 GeV · (1 + Exp), |η| < 2.5, masses 2-10 GeV), a fixed one-particle ``lepton``, met."""
    rng = np.random.default_rng(seed)
    mult = rng.choice([1, 2, 3], size=n, p=MULTIPLICITY)
    total = int(mult.sum())
    split = np.cumsum(mult)[:-1]
    pt = np.concatenate([np.sort(20.0 * (1.0 + rng.exponential(1.0, k)))[::-1] for k in mult])
    jets = particle_lists({"pt": np.split(pt, split), "eta": np.split(rng.uniform(-2.5, 2.5, total), split),
                           "phi": np.split(rng.uniform(-np.pi, np.pi, total), split),
                           "mass": np.split(rng.uniform(2.0, 10.0, total), split)})
    lepton = particle_lists({"pt": (30.0 + rng.exponential(20.0, n))[:, None], "eta": rng.normal(0, 1, (n, 1)),
                             "phi": rng.uniform(-np.pi, np.pi, (n, 1)), "mass": np.full((n, 1), 0.105)})
    return EventBatch.from_columns({"jets": jets, "lepton": lepton, "met": rng.exponential(30.0, n)})


def make(seed: int = 1, **raw) -> BVAEGenerator:
    params = build_params(BVAEGenerator.Params, {**TINY, "features": ["jets", "lepton", "met"], **raw}, "generator")
    return BVAEGenerator(params, StageContext("generator", seed=seed))


@pytest.fixture(scope="module")
def train() -> EventBatch:
    return toy_jets(3000, 0)


@pytest.fixture(scope="module")
def trained(train: EventBatch) -> BVAEGenerator:
    gen = make(conditions=["n_jets"])
    gen.fit(train, toy_jets(500, 1))
    return gen


def test_the_multiplicity_distribution_is_reproduced(train: EventBatch) -> None:
    """Drawn from the training frequencies: a χ² test against them, and the toy's known probabilities."""
    gen = make()  # the multiplicity is not a condition the user gives: it is drawn
    gen.fit(train, train)
    n = 20_000
    events = gen.sample(n, np.random.SeedSequence(3))
    counts = np.bincount(events.multiplicity("jets"), minlength=4)[1:]
    trained_freq = np.bincount(train.multiplicity("jets"), minlength=4)[1:] / len(train)
    chi2 = float(((counts - n * trained_freq) ** 2 / (n * trained_freq)).sum())
    assert chi2 < 13.8  # χ² with 2 degrees of freedom: p = 0.001
    np.testing.assert_allclose(counts / n, MULTIPLICITY, atol=0.03)  # 3000 training events: σ ≈ 0.009
    assert gen.multiplicity is not None and gen.multiplicity.values == [1, 2, 3]
    # the buffer keeps each training event's multiplicity
    np.testing.assert_array_equal(np.sort(gen.buffer.groups), np.sort(train.multiplicity("jets")))


def test_a_fixed_multiplicity_gives_exactly_that_many_jets(trained: BVAEGenerator) -> None:
    events = trained.sample(400, np.random.SeedSequence(4), {"n_jets": 2})
    assert (events.multiplicity("jets") == 2).all()
    wanted = np.tile([3, 1, 2, 2], 100)  # one value per event, kept in order
    events = trained.sample(400, np.random.SeedSequence(5), {"n_jets": wanted})
    np.testing.assert_array_equal(events.multiplicity("jets"), wanted)
    assert (events.multiplicity("lepton") == 1).all()  # the fixed collection stays fixed


def test_absent_slots_never_leak_into_events(trained: BVAEGenerator, train: EventBatch) -> None:
    events = trained.sample(3000, np.random.SeedSequence(6))
    mult = events.multiplicity("jets")
    parts = events.particles("jets", 3)
    present = np.arange(3)[None, :] < mult[:, None]
    for c in ("px", "py", "pz", "E"):
        assert np.isfinite(parts[c][present]).all()
        assert np.isnan(parts[c][~present]).all()  # nothing beyond each event's multiplicity
    pt = np.hypot(parts["px"], parts["py"])
    assert (pt[present] > 0).all()
    assert np.all(np.nan_to_num(np.diff(pt, axis=1), nan=-1.0) <= 1e-9)  # ordered by p_T as in training
    assert np.isfinite(events.column("met")).all()
    # the leading jet's p_T follows the toy's, roughly (a tiny VAE after 150 steps)
    truth = float(np.median(resolve("jets1_pt")(train)))
    assert abs(float(np.median(resolve("jets1_pt")(events))) / truth - 1.0) < 0.15


def test_state_round_trip_gives_the_same_events(trained: BVAEGenerator, tmp_path) -> None:
    seed = np.random.SeedSequence(7)
    first = trained.sample(300, seed)
    copy = make(conditions=["n_jets"])
    copy.load_state_dict(trained.state_dict())
    again = copy.sample(300, seed)
    np.testing.assert_array_equal(again.multiplicity("jets"), first.multiplicity("jets"))
    np.testing.assert_array_equal(resolve("jets1_pt")(again), resolve("jets1_pt")(first))
    loaded = load_generator(save_stage(tmp_path / "bvae.pt", trained), load_plugins(), expect_plugin="bvae")
    np.testing.assert_array_equal(resolve("jets2_eta")(loaded.sample(300, seed)), resolve("jets2_eta")(first))
    fixed = loaded.sample(50, np.random.SeedSequence(8), {"n_jets": 3})
    assert (fixed.multiplicity("jets") == 3).all()


def test_standardized_multiplicity_encoding(train: EventBatch) -> None:
    gen = make(multiplicity_encoding="standardized", steps=50, conditions=["n_jets"])
    gen.fit(train, train)
    assert gen.vae.conditions == 1
    events = gen.sample(200, np.random.SeedSequence(9), {"n_jets": 3})
    assert (events.multiplicity("jets") == 3).all()


def test_bad_multiplicity_conditions_name_the_toml_path(trained: BVAEGenerator, train: EventBatch) -> None:
    with pytest.raises(ConfigError, match=r"generator\.conditions\.n_jets = 7: no training event has n_jets = 7"):
        trained.sample(10, np.random.SeedSequence(0), {"n_jets": 7})  # never seen: the buffer has no latent for it
    with pytest.raises(ConfigError, match="whole numbers"):
        trained.sample(10, np.random.SeedSequence(0), {"n_jets": 2.5})
    with pytest.raises(ConfigError, match=r"generator\.conditions = 'n_jet'"):
        trained.sample(10, np.random.SeedSequence(0), {"n_jet": 2})
    with pytest.raises(ConfigError, match=r"generator\.conditions = 'met'.*only the multiplicity 'n_jets'"):
        make(conditions=["met"], steps=1).fit(train, train)
    fixed = toy_jets(200, 3)
    with pytest.raises(ConfigError, match="no collection among the features has a variable multiplicity"):
        make(features=["lepton", "met"], conditions=["n_jets"], steps=1).fit(fixed, fixed)
    with pytest.raises(ConfigError, match="generator.multiplicity_encoding"):
        build_params(BVAEGenerator.Params, {"multiplicity_encoding": "binary"}, "generator")


def test_rotated_azimuths_learn_differences_and_draw_the_rotation(train: EventBatch, tmp_path) -> None:
    gen = make(azimuth="rotated", draws="stratified", steps=100)
    gen.fit(train, train)
    assert gen.azimuth.reference == "jets1_phi"  # the first azimuth every training event has
    assert "cos(lepton1_phi - jets1_phi)" in gen.azimuth.names and "jets1_phi" not in gen.azimuth.names
    events = gen.sample(2 * len(train), np.random.SeedSequence(10))
    phi = resolve("jets1_phi")(events)
    assert abs(float(np.mean(phi))) < 0.15 and float(np.std(phi)) > 1.7  # uniform in [-π, π): σ = 1.81
    # stratified draws: two passes over the buffer, so exactly twice the training multiplicities
    np.testing.assert_array_equal(np.bincount(events.multiplicity("jets")), 2 * np.bincount(train.multiplicity("jets")))
    loaded = load_generator(save_stage(tmp_path / "rot.pt", gen), load_plugins(), expect_plugin="bvae")
    seed = np.random.SeedSequence(11)
    np.testing.assert_array_equal(resolve("lepton_phi")(loaded.sample(100, seed)),
                                  resolve("lepton_phi")(gen.sample(100, seed)))
    no_angles = EventBatch.from_columns({"a": np.ones(10), "b": np.arange(10.0)})
    with pytest.raises(ConfigError, match=r"generator\.azimuth = 'rotated'.*no"):
        make(features=["a", "b"], feature_map="columns", azimuth="rotated", steps=1).fit(no_angles, no_angles)


def test_the_network_probe_feeds_the_decoder_latent_and_multiplicity(trained: BVAEGenerator,
                                                                     train: EventBatch) -> None:
    import torch

    probe = trained.network_probe()
    assert probe.conditions == ["n_jets"] and probe.label == "vae.decoder"
    tensors = probe.inputs(50, {"n_jets": 3}, torch.Generator().manual_seed(0))
    assert tensors[0].shape == (50, trained.settings["latent"] + trained.multiplicity.width)
    events = probe.decode(tensors, np.random.SeedSequence(0))
    assert (events.multiplicity("jets") == 3).all()
    inputs = trained.interpretation_inputs(train.take(slice(0, 20)))
    assert inputs.condition.shape == (20, 3) and np.array_equal(inputs.context, train.multiplicity("jets")[:20])
    loss_fn, _ = probe.loss(train.take(slice(0, 200)), 1)
    assert float(loss_fn().detach()) > 0
