"""How to GAN LHC Events (howtogan): the cartesian map, the MMD² on declared observables, jsgan, bad input, a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlegpipe.beams import Beams
from mlegpipe.config import parse_config
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.features import make_feature_map
from mlegpipe.observables import Observable, compile_observable, observable_set
from mlegpipe.pipeline import run_pipeline
from mlegpipe.registry import load_plugins
from mlegpipe.schema import build_params
from mlegpipe_builtins.discriminators.critics import JSGAN
from mlegpipe_builtins.generators._gan_observable_mmd import ObservableMMD
from mlegpipe_builtins.generators.howtogan import HowToGAN
from mlegpipe_builtins.lhc import TOP_WIDTH, W_WIDTH
from mlegpipe_builtins.lhc.chain import toy_ttbar

#: Small, fast settings (2 cores, seconds per fit).
TINY = {"layers": 2, "width": 32, "batch_size": 128, "validate_every": 0, "checkpoint_every": 0,
        "mmd_observable_events": 64}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


@pytest.fixture(scope="module")
def toy(registry) -> EventBatch:
    return EventBatch.from_columns({"quarks": toy_ttbar(2000, seed=7)}, beams=Beams.preset("lhc13"))


def make(ctx: StageContext | None = None, **raw) -> HowToGAN:
    return HowToGAN(build_params(HowToGAN.Params, {**TINY, **raw}, "generator"), ctx or StageContext("generator"))


def _quarks(parts: dict[str, np.ndarray]) -> EventBatch:
    return EventBatch.from_columns({"quarks": particle_lists(parts)})


# -- the cartesian feature map ----------------------------------------------------------------------------------
def test_cartesian_map_inverts_exactly_for_the_fitted_masses(toy: EventBatch) -> None:
    fmap = make_feature_map("cartesian", features=["quarks"]).fit(toy)
    assert fmap.names[:3] == ("quarks1_px", "quarks1_py", "quarks1_pz") and len(fmap.names) == 18
    assert fmap.masses["quarks"] == pytest.approx([4.8, 0.33, 0.33, 4.8, 0.33, 0.33], abs=1e-9)  # the medians
    z = fmap.encode(toy)
    back = EventBatch.from_columns(fmap.assemble(fmap.decode(z)))
    for c in ("px", "py", "pz", "E"):
        np.testing.assert_allclose(back.particles("quarks")[c], toy.particles("quarks")[c], rtol=1e-12, atol=1e-9)
    # rebuilt from its config (a checkpoint), the map decodes the same events
    again = make_feature_map(fmap.config())
    np.testing.assert_array_equal(again.inverse(torch.from_numpy(z)).numpy(), fmap.inverse(torch.from_numpy(z)).numpy())


def test_cartesian_map_rebuilds_the_energy_from_each_slots_mass(toy: EventBatch) -> None:
    fmap = make_feature_map({"name": "cartesian", "features": ["quarks"], "masses": {"quarks": [4.7, 0, 0, 4.7, 0, 0]}})
    fmap.fit(toy)
    z = torch.randn(500, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 50.0
    q = fmap.inverse(z).reshape(500, 6, 4)
    mass2 = q[..., 3] ** 2 - (q[..., :3] ** 2).sum(dim=-1)
    np.testing.assert_allclose(mass2.numpy(), np.tile([4.7**2, 0, 0, 4.7**2, 0, 0], (500, 1)), atol=1e-9)
    np.testing.assert_array_equal(q[..., :3].reshape(500, 18).numpy(), z.numpy())  # the momenta are the features


def test_cartesian_map_refuses_a_variable_multiplicity_and_wrong_masses(toy: EventBatch) -> None:
    jets = particle_lists({"pt": [[50.0, 20.0], [40.0]], "eta": [[0.5, -1.0], [0.0]], "phi": [[0.1, 2.0], [-1.0]],
                           "mass": [[5.0, 3.0], [4.0]]})
    with pytest.raises(DataError, match="fixed number of particles") as err:
        make_feature_map("cartesian", features=["jets"]).fit(EventBatch.from_columns({"jets": jets}))
    assert err.value.path == "features: jets"
    with pytest.raises(ConfigError, match="one mass per particle"):
        make_feature_map({"name": "cartesian", "features": ["quarks"], "masses": {"quarks": [4.7, 0.0]}}).fit(toy)
    with pytest.raises(ConfigError, match="one mass per particle") as err:
        make(masses=[4.7, 0.0, 0.0]).fit(toy, toy)
    assert err.value.path == "generator.masses"


# -- the MMD² on declared observables ----------------------------------------------------------------------------
def _bw_mmd2(x: np.ndarray, y: np.ndarray, width: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(1.0 / (1.0 + 4.0 * (a[:, None] - b[None, :]) ** 2 / width**2)))

    return k(x, x) + k(y, y) - 2.0 * k(x, y)


def test_observable_mmd_equals_a_hand_computation_and_has_gradients(registry) -> None:
    # two generated events: a W of back-to-back massless quarks of 40 and 41 GeV (m_W = 80, 82)
    px = torch.tensor([40.0, 41.0], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(2, dtype=torch.float64)
    columns = {"q1_px": px, "q1_py": zero, "q1_pz": zero, "q1_E": px.abs(),
               "q2_px": -px, "q2_py": zero, "q2_pz": zero, "q2_E": px.abs()}
    m_w = compile_observable("m_w", "mass(q[0] + q[1])")
    e_q = compile_observable("e_q", "E(q[0])")
    real = torch.tensor([[80.4, 40.0], [79.0, 45.0], [84.0, 38.0]], dtype=torch.float64)
    term = ObservableMMD([m_w, e_q], [2.1, 5.0], weight=0.5)
    out: dict[str, float] = {}
    loss = term(columns, real, out)
    want_w = _bw_mmd2(np.array([80.0, 82.0]), real[:, 0].numpy(), 2.1)
    want_e = _bw_mmd2(np.array([40.0, 41.0]), real[:, 1].numpy(), 5.0)
    assert out["mmd2_m_w"] == pytest.approx(want_w, rel=1e-5) and out["mmd2_e_q"] == pytest.approx(want_e, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(0.5 * (want_w + want_e), rel=1e-5)
    loss.backward()
    assert torch.isfinite(px.grad).all() and float(px.grad.abs().sum()) > 0
    # a multi-scale kernel is the sum of Breit–Wigner kernels of widths Γ·c
    wide = ObservableMMD([m_w], [2.1], scales=[1.0, 4.0])({k: v.detach() for k, v in columns.items()}, real[:, :1])
    assert float(wide) == pytest.approx(want_w + _bw_mmd2(np.array([80.0, 82.0]), real[:, 0].numpy(), 8.4), rel=1e-5)


def test_default_widths_are_the_declared_peak_widths(registry, toy: EventBatch) -> None:
    def term(**settings):
        return ObservableMMD.from_settings(settings, events=toy, observables=None, registry=registry,
                                           where="generator")

    assert term(mmd_observables=["m_W1", "m_t2"]).widths == [W_WIDTH, TOP_WIDTH]
    assert term(mmd_observables=["m_W1"], mmd_observable_widths=[1.49]).widths == [1.49]  # the paper card's
    assert term(mmd_observables=["m_W1"], mmd_observable_weight=0.0) is None  # the ablation
    assert term(mmd_observables=[]) is None
    with pytest.raises(ConfigError, match="declares no resonance peak") as err:
        term(mmd_observables=["m_W1", "pt_t1"])
    assert err.value.path == "generator.mmd_observable_widths"
    with pytest.raises(ConfigError, match="one kernel width per observable") as err:
        term(mmd_observables=["m_W1", "m_t1"], mmd_observable_widths=[2.0])
    assert err.value.path == "generator.mmd_observable_widths"


# -- bad input, at fit time -----------------------------------------------------------------------------------------
def test_an_unknown_observable_is_a_config_error_naming_the_toml_path(toy: EventBatch) -> None:
    with pytest.raises(ConfigError, match="unknown observable") as err:
        make(steps=1, mmd_observables=["m_W3"]).fit(toy, toy)
    assert err.value.path == "generator.mmd_observables" and err.value.value == "m_W3"


def test_an_observable_beyond_the_collection_is_a_data_error(toy: EventBatch) -> None:
    parts = {c: v[:, :4] for c, v in toy.particles("quarks").items()}
    four = _quarks(parts)
    with pytest.raises(DataError, match="training events: collection 'quarks' never has a particle at index 4") as err:
        make(steps=1, mmd_observables=["m_W2"]).fit(four, four)  # mass(quarks[4] + quarks[5])
    assert err.value.path == "generator.mmd_observables" and err.value.value == "m_W2"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # NumPy's on torch tensors, before the error
def test_a_numpy_only_observable_is_a_config_error_at_fit_time(toy: EventBatch) -> None:
    # parton1_phi is a NumPy function of event batches (not an expression): it has no gradients
    with pytest.raises(ConfigError, match="cannot be computed on tensors") as err:
        make(steps=1, mmd_observables=["parton1_phi"], mmd_observable_widths=[0.1]).fit(toy, toy)
    assert err.value.path == "generator.mmd_observables" and err.value.value == "parton1_phi"
    # a pipeline's own NumPy observable, declared through the stage context
    numpy_only = Observable("e_sum", lambda b: np.asarray(b.particles("quarks")["E"]).sum(axis=1), ("quarks",))
    declared = observable_set({})
    declared.declared["e_sum"] = numpy_only
    ctx = StageContext("generator", observables=declared)
    with pytest.raises(ConfigError, match="cannot be computed on tensors"):
        make(ctx, steps=1, mmd_observables=["e_sum"], mmd_observable_widths=[10.0]).fit(toy, toy)


# -- training --------------------------------------------------------------------------------------------------
def test_training_records_each_observables_mmd2_and_the_ablation_none(toy: EventBatch) -> None:
    gan = make(steps=4)
    history = gan.fit(toy, toy)["history"]
    assert {"mmd2_m_W1", "mmd2_m_W2", "mmd2_m_t1", "mmd2_m_t2"} <= set(history[-1])
    assert gan.discriminator.plugin_name == "jsgan"
    events = gan.sample(300, np.random.SeedSequence(2))
    q = np.stack([events.particles("quarks")[c] for c in ("px", "py", "pz", "E")], axis=-1)
    mass = np.sqrt(np.maximum(q[..., 3] ** 2 - (q[..., :3] ** 2).sum(axis=-1), 0.0))
    np.testing.assert_allclose(mass, np.tile(gan.feature_map.masses["quarks"], (300, 1)), atol=1e-6)
    ablation = make(steps=4, mmd_observable_weight=0.0).fit(toy, toy)["history"]
    assert not any(k.startswith("mmd2_") for k in ablation[-1])


def test_plain_standardized_momenta_of_tev_quarks_train_without_nan(toy: EventBatch) -> None:
    # preprocess = "none" (the published preset): momenta of ~1 TeV in GeV must not overflow an unused sinh
    boosted = _quarks({c: 10.0 * v for c, v in toy.particles("quarks").items()})
    history = make(steps=3, preprocess="none").fit(boosted, boosted)["history"]
    assert all(np.isfinite(list(h.values())).all() for h in history)


def test_a_saved_generator_samples_the_same_events(toy: EventBatch) -> None:
    gan = make(steps=3)
    gan.fit(toy, toy)
    again = make()
    again.load_state_dict(gan.state_dict())
    a, b = gan.sample(200, np.random.SeedSequence(4)), again.sample(200, np.random.SeedSequence(4))
    np.testing.assert_array_equal(a.particles("quarks")["pz"], b.particles("quarks")["pz"])


def test_jsgan_losses_and_the_published_sizes() -> None:
    d = JSGAN(JSGAN.Params(), StageContext("discriminator"))
    net = d.build(3)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    real, fake = torch.randn(8, 3), torch.randn(8, 3)
    # logit 0 everywhere: BCE = ln 2 per term, Roth penalty 0 (no gradient)
    assert float(d.discriminator_loss(net, real, fake).detach()) == pytest.approx(2 * np.log(2), rel=1e-6)
    assert float(d.generator_loss(net, fake).detach()) == pytest.approx(np.log(2), rel=1e-6)
    published = HowToGAN(HowToGAN.Params(preset="published"), StageContext("generator"))
    adversary = published.default_discriminator()
    assert adversary.widths == [512] * 10 and adversary.settings["gp_weight"] == 0.001
    s = published.settings
    assert (s["noise_dim"], s["lr"], s["beta1"], s["beta2"], s["batch_size"], s["mmd_observable_weight"]) == (
        18, 1e-3, 0.5, 0.9, 1024, 1.0)


# -- a TOML pipeline ---------------------------------------------------------------------------------------------
PIPELINE = """
[pipeline]
name = "howtogan-test"
seed = 5
split = [0.6, 0.2, 0.2]

[truth]
plugin = "root"
files = ["{sample}"]
events = 1500

[generator]
plugin = "howtogan"
steps = 6
layers = 2
width = 32
batch_size = 128
mmd_observable_events = 64
validate_every = 0
checkpoint_every = 0

[observables]
compare = ["m_W1", "m_t1", "quarks1_pt"]

[report]
plugin = "html"
classifier = false
"""


def test_a_toml_pipeline_trains_writes_root_and_a_report(registry, tmp_path: Path) -> None:
    sample = REPO / "sample_data" / "ttbar_allhad_small.root"
    if not sample.is_file():
        pytest.skip("sample_data/ttbar_allhad_small.root is not there")
    cfg = parse_config(PIPELINE.format(sample=sample), "howtogan.toml", registry=registry)
    run = run_pipeline(cfg, output=str(tmp_path / "run"), progress=False)
    assert list(run.glob("*.root")) and (run / "report.html").is_file()
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["stages"]["generator"]["discriminator"] == "jsgan"
    assert metrics["stages"]["generator"]["mmd_observables"] == ["m_W1", "m_W2", "m_t1", "m_t2"]
    history = json.loads((run / "histories.json").read_text(encoding="utf-8"))["generator"]["history"]
    assert len(history) == 6 and "mmd2_m_t2" in history[-1]
    generated = metrics["stages"]["report"]["comparisons"]["generated"]
    assert set(generated["features"]) == {"m_W1", "m_t1", "quarks1_pt"}
    assert "peak" in generated["features"]["m_W1"]
