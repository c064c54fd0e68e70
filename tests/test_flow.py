"""The ``flow`` generator: trains on DIS-like events, physical and reproducible samples, conditioning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mlegpipe.beams import Beams
from mlegpipe.checkpoint import load_generator, save_stage
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.registry import load_plugins
from mlegpipe_builtins.dis import LEPTON_FIELDS, kinematics

HERA = Beams.preset("hera")


def dis_like(n: int, seed: int, beams: Beams = HERA, q2_min: float = 4.0) -> EventBatch:
    """DIS-like leptons: Q^2 ~ Q^-3 above q2_min, y in (0.01, 0.9) ~ Y+/y, phi uniform."""
    rng = np.random.default_rng(seed)
    s_m2 = 2 * beams.lepton_energy * (beams.hadron_energy + beams.hadron_momentum)
    parts: list[tuple[np.ndarray, ...]] = []
    while sum(len(p[0]) for p in parts) < n:
        m = 2 * n
        q2 = q2_min * (1 - rng.uniform(size=m)) ** -0.5
        y = np.exp(rng.uniform(np.log(0.01), np.log(0.9), m))
        keep = (rng.uniform(size=m) < (1 + (1 - y) ** 2) / 2) & (q2 / (y * s_m2) < 1)
        x = q2[keep] / (y[keep] * s_m2)
        parts.append(kinematics.lepton_from_dis(x, q2[keep], rng.uniform(-np.pi, np.pi, keep.sum()), beams))
    cols = {f: np.concatenate([p[i] for p in parts])[:n] for i, f in enumerate(LEPTON_FIELDS)}
    return EventBatch.from_columns(cols, beams=beams)


def _flow(**overrides):  # noqa: ANN003, ANN202
    cls = load_plugins().get("generator", "flow").cls
    params = dataclasses.replace(cls.Params(), steps=300, transforms=2, hidden=[32, 32], batch_size=512,
                                 validate_every=100, validation_events=2000, checkpoint_every=0, sampler="fast")
    return cls(dataclasses.replace(params, **overrides), StageContext("generator", seed=3))


@pytest.fixture(scope="module")
def trained():  # noqa: ANN201
    gen = _flow()
    history = gen.fit(dis_like(4000, 1), dis_like(2000, 2))
    return gen, history


def test_flow_learns_dis_like_events(trained) -> None:  # noqa: ANN001
    gen, history = trained
    steps = history["steps"]
    # the flow models (ln Q2, ln y); the azimuth is drawn uniformly (azimuth = "uniform", the default)
    assert gen.learned == ["lnQ2", "lny"] and gen.noise_dim == 2
    # the NLL falls by 0.33 (0.4+ before the edge and logit maps made the start nearer a Gaussian)
    assert len(steps) == 300 and steps[-1]["nll"] < steps[0]["nll"] - 0.25
    assert history["replicas"][0]["best_step"] in (100, 200, 300)
    events = gen.sample(20_000, np.random.SeedSequence(7))
    truth = dis_like(20_000, 9)
    truth_q2 = kinematics.dis_from_lepton(*(truth.column(f) for f in LEPTON_FIELDS), HERA)["Q2"]
    # 300 steps on 4000 events: moments of ln Q^2 and ln y within 0.15 of the truth (their spreads are ~0.8, ~1.2)
    assert np.mean(np.log(events.column("Q2"))) == pytest.approx(np.mean(np.log(truth_q2)), abs=0.15)
    truth_y = kinematics.dis_from_lepton(*(truth.column(f) for f in LEPTON_FIELDS), HERA)["y"]
    assert np.mean(np.log(events.column("y"))) == pytest.approx(np.mean(np.log(truth_y)), abs=0.15)
    assert np.std(np.log(events.column("y"))) == pytest.approx(np.std(np.log(truth_y)), rel=0.15)
    # phi is drawn uniformly: the mean of cos(phi) vanishes (statistical sigma 0.005: 5 sigma)
    assert abs(np.mean(events.column("lepton_px") / np.hypot(events.column("lepton_px"),
                                                              events.column("lepton_py")))) < 0.025


def test_learned_azimuth_and_checkpoints_from_before_the_option(trained) -> None:  # noqa: ANN001
    gen, _ = trained
    learned = _flow(steps=20, azimuth="learned")
    assert learned.learned == ["lnQ2", "lny", "lepton_phi"] and learned.noise_dim == 3
    learned.fit(dis_like(1000, 4), dis_like(500, 5))
    old_style = {k: v for k, v in learned.state_dict().items() if k != "azimuth"}  # written before the option
    restored = _flow()  # configured with the default azimuth = "uniform": the checkpoint's choice wins
    restored.load_state_dict(old_style)
    assert restored.azimuth == "learned" and restored.noise_dim == 3
    a = learned.sample(300, np.random.SeedSequence(2))
    b = restored.sample(300, np.random.SeedSequence(2))
    np.testing.assert_array_equal(a.column("lepton_px"), b.column("lepton_px"))
    with pytest.raises(CheckpointError, match="azimuth"):
        _flow().load_state_dict({**gen.state_dict(), "azimuth": "sideways"})


def test_every_sampled_event_is_physical_and_rejections_are_counted(trained) -> None:  # noqa: ANN001
    gen, _ = trained
    events = gen.sample(5000, np.random.SeedSequence(1))
    assert len(events) == 5000 and set(LEPTON_FIELDS + ("x", "Q2", "y", "W2", "nu", "beam_energy")) <= set(events.fields)
    mask = kinematics.physical_mask(events.column("x"), events.column("Q2"), events.column("y"), events.column("W2"),
                                    HERA)
    assert mask.all()
    assert (HERA.lepton_direction * events.column("lepton_pz") < HERA.lepton_energy).all()
    info = gen.info()
    assert 0.0 <= info["rejected_fraction"] < 0.2
    assert info["events_drawn"] - info["events_rejected"] == info["events_sampled"]
    assert 0.0 <= events.meta["rejected_fraction"] < 0.2


def test_same_seed_same_events_other_seed_other_events(trained) -> None:  # noqa: ANN001
    gen, _ = trained
    a = gen.sample(3000, np.random.SeedSequence(42)).matrix(LEPTON_FIELDS)
    b = gen.sample(3000, np.random.SeedSequence(42)).matrix(LEPTON_FIELDS)
    c = gen.sample(3000, np.random.SeedSequence(43)).matrix(LEPTON_FIELDS)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_training_is_reproducible() -> None:
    train, valid = dis_like(1000, 1), dis_like(500, 2)
    a, b = (_flow(steps=30, validate_every=0, feature_map="lepton_t") for _ in range(2))
    a.fit(train, valid)
    b.fit(train, valid)
    for x, y in zip(a.flows[0].state_dict().values(), b.flows[0].state_dict().values(), strict=True):
        assert torch.equal(x, y)
    events = a.sample(2000, np.random.SeedSequence(0))  # FAT-GAN map: p_par < E_b by construction
    assert (-events.column("lepton_pz") < HERA.lepton_energy).all() and a.features[2] == "lepton_T"


def test_checkpoint_round_trip_gives_identical_events(trained, tmp_path) -> None:  # noqa: ANN001
    gen, _ = trained
    path = save_stage(tmp_path / "flow.pt", gen)
    again = load_generator(path, load_plugins(), expect_plugin="flow")
    np.testing.assert_array_equal(gen.sample(2000, np.random.SeedSequence(5)).matrix(LEPTON_FIELDS),
                                  again.sample(2000, np.random.SeedSequence(5)).matrix(LEPTON_FIELDS))
    other = _flow(feature_map="lepton_t")
    with pytest.raises(CheckpointError, match="lepton_T"):
        other.load_state_dict(gen.state_dict())


def test_conditional_flow_samples_an_unseen_beam_energy() -> None:
    """cFAT-GAN set-up: lepton beams of 10-50 GeV on a 50 GeV proton, sampled at 35 GeV (never trained)."""
    def sample_at(e: float, n: int, seed: int) -> EventBatch:
        batch = dis_like(n, seed, Beams.lepton_hadron(e, 50.0, lepton_direction=1), q2_min=2.0)
        return batch.with_columns(beam_energy=np.full(n, e))

    train = EventBatch.concat([sample_at(e, 1500, i) for i, e in enumerate((10.0, 20.0, 30.0, 40.0, 50.0))])
    valid = EventBatch.concat([sample_at(e, 400, 10 + i) for i, e in enumerate((10.0, 30.0, 50.0))])
    train.beams = valid.beams = Beams.lepton_hadron(50.0, 50.0, lepton_direction=1)
    gen = _flow(conditional=True, flow="maf", transforms=4, steps=600, hidden=[48, 48])
    gen.fit(train, valid)
    assert gen.conditions == ["beam_energy"]
    events = gen.sample(6000, np.random.SeedSequence(2), {"beam_energy": 35.0})
    assert (events.column("beam_energy") == 35.0).all()
    assert (events.column("lepton_pz") < 35.0).all()  # T(p_z) keeps p_par below the requested E_b
    assert (events.column("y") > 0).all() and (events.column("y") <= 1).all()
    truth = {e: np.median(sample_at(e, 6000, 50 + int(e)).column("lepton_E")) for e in (30.0, 35.0, 40.0)}
    median = float(np.median(events.column("lepton_E")))
    assert truth[30.0] < median < truth[40.0]
    assert median == pytest.approx(truth[35.0], rel=0.1)
    mixed = gen.sample(100, np.random.SeedSequence(3), {"beam_energy": np.linspace(15, 45, 100)})
    assert (mixed.column("lepton_pz") < mixed.column("beam_energy")).all()



SCAN = Beams.preset("sym50", lepton_energy="beam_energy", hadron_energy="beam_energy")


def _scan(energies: tuple[float, ...], n: int, seed: int) -> EventBatch:
    """dis_like events at E x E GeV for each energy, with the per-event beam energy (both beams follow it)."""
    parts = [dis_like(n, seed + i, Beams.lepton_hadron(e, e, lepton_direction=1), q2_min=2.0).with_columns(
        beam_energy=np.full(n, e)) for i, e in enumerate(energies)]
    batch = EventBatch.concat(parts)
    batch.beams = SCAN
    return batch


@pytest.fixture(scope="module")
def scan_flow():  # noqa: ANN201
    gen = _flow(conditional=True, steps=800, transforms=3, hidden=[48, 48], sampler="auto")
    gen.fit(_scan((10.0, 20.0, 30.0, 40.0, 50.0), 1500, 0), _scan((10.0, 30.0, 50.0), 500, 20))
    return gen


def test_a_beam_energy_scan_is_learned_in_fixed_limit_coordinates_and_ln_e(scan_flow) -> None:  # noqa: ANN001
    assert (scan_flow.p.feature_map, scan_flow.p.log_conditions, scan_flow.p.sampler) == ("dis_scaling", True, "fast")
    assert scan_flow.state_dict()["log_conditions"] is True


@pytest.mark.parametrize("energy", [15.0, 90.0])  # interpolated, extrapolated (trained at 10-50 GeV)
def test_a_scan_flow_samples_physical_events_at_an_unseen_energy(scan_flow, energy) -> None:  # noqa: ANN001
    events = scan_flow.sample(8000, np.random.SeedSequence(4), {"beam_energy": energy})
    truth = _scan((energy,), 8000, 77)
    labels = kinematics.dis_from_lepton(*truth.matrix(LEPTON_FIELDS).T, Beams.lepton_hadron(energy, energy,
                                                                                           lepton_direction=1))
    assert (events.column("beam_energy") == energy).all()
    assert (events.column("x") <= 1).all() and (events.column("y") <= 1).all() and (events.column("y") > 0).all()
    assert events.column("Q2").min() >= 2.0 * (1 - 1e-3)            # the Q2 cut holds at every energy
    assert (events.column("lepton_E") <= 2 * energy).all()
    for name in ("Q2", "y", "x"):  # ln of the medians, truth vs model (nu_scaled in ln E_b misses Q2 at 90 GeV by 0.14)
        model, want = np.log(np.median(events.column(name))), np.log(np.median(labels[name]))
        assert model == pytest.approx(want, abs=0.12), name
    # the events at x below the smallest x reachable at the highest trained energy (x < Q2 / 2P.k at 50 x 50 GeV):
    # 17 % of the truth at 90 GeV (nu_scaled in ln E_b: 23 %)
    unreachable = [np.mean(x < q2 / 1e4) for x, q2 in ((events.column("x"), events.column("Q2")),
                                                        (labels["x"], labels["Q2"]))]
    assert unreachable[0] == pytest.approx(unreachable[1], abs=0.03)


def test_a_scan_flow_checkpoint_keeps_the_log_conditions(scan_flow, tmp_path) -> None:  # noqa: ANN001
    path = save_stage(tmp_path / "flow.pt", scan_flow)
    again = load_generator(path, load_plugins(), expect_plugin="flow")
    at = {"beam_energy": np.linspace(12.0, 80.0, 500)}
    np.testing.assert_array_equal(scan_flow.sample(500, np.random.SeedSequence(6), at).matrix(LEPTON_FIELDS),
                                  again.sample(500, np.random.SeedSequence(6), at).matrix(LEPTON_FIELDS))


def test_log_conditions_refuse_values_that_are_not_positive() -> None:
    rng = np.random.default_rng(0)
    train = EventBatch.from_columns({"a": rng.normal(size=500), "b": rng.normal(size=500),
                                     "sqrt_s": np.where(np.arange(500) == 5, 0.0, 100.0 + np.arange(500))})
    gen = _flow(feature_map="columns", features=["a", "b"], conditions=["sqrt_s"], log_conditions=True, steps=5)
    with pytest.raises(DataError, match="log_conditions needs positive condition values; 'sqrt_s' has 1"):
        gen.fit(train, train)

def test_flow_configuration_errors(trained) -> None:  # noqa: ANN001
    gen, _ = trained
    with pytest.raises(ConfigError, match="beam_energy"):
        gen.sample(10, np.random.SeedSequence(0), {"beam_energy": 30.0})  # not conditional
    with pytest.raises(ConfigError, match="generator.features"):
        _flow(feature_map="columns")
    cond = _flow(conditional=True)
    cond.flows = gen.flows
    with pytest.raises(ConfigError, match="needs a value of 'beam_energy'"):
        cond.sample(10, np.random.SeedSequence(0))


def test_columns_map_learns_any_fields() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(2.0, 0.5, 3000)
    batch = EventBatch.from_columns({"a": a, "b": a + rng.normal(0, 0.1, 3000)})
    gen = _flow(feature_map="columns", features=["a", "b"], flow="maf", steps=300, validate_every=0)
    gen.fit(batch, batch)
    out = gen.sample(5000, np.random.SeedSequence(1))
    assert out.fields == ["a", "b"]
    assert np.corrcoef(out.column("a"), out.column("b"))[0, 1] == pytest.approx(0.98, abs=0.02)
    assert np.mean(out.column("a")) == pytest.approx(2.0, abs=0.05)


def test_bootstrap_replicas_train_different_flows(tmp_path) -> None:  # noqa: ANN001
    train, valid = dis_like(1500, 1), dis_like(500, 2)
    gen = _flow(replicas=2, steps=40, validate_every=20, flow="maf", checkpoint_every=20)
    gen.ctx = StageContext("generator", seed=3, run_dir=tmp_path)
    history = gen.fit(train, valid)
    assert len(gen.flows) == 2 and len(history["replicas"]) == 2 and len(history["replica_steps"]) == 1
    w0, w1 = (torch.cat([p.flatten() for p in f.parameters()]) for f in gen.flows)
    assert not torch.equal(w0, w1)
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} >= {"generator_replica0-last.pt",
                                                                       "generator_replica1-last.pt"}
    events = gen.sample(2000, np.random.SeedSequence(4))
    assert len(events) == 2000 and gen.info()["replicas"] == 2


# -- the fast sampler -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "context", "kwargs"), [
    ("nsf", 0, {}),
    ("nsf", 1, {}),
    ("nsf", 0, {"passes": 2}),
    ("maf", 0, {}),
    ("maf", 2, {"passes": 2}),
    ("maf", 0, {"passes": 2}),  # affine coupling: inverted block by block with dense products
    ("maf", 0, {"passes": 2, "features": 5, "hidden_features": (24,)}),  # blocks of 3 and 2, one hidden layer
])
def test_fast_sampler_is_zukos_inverse(kind, context, kwargs) -> None:  # noqa: ANN001
    import zuko

    from mlegpipe_builtins.generators._flow_fast import FastFlowSampler

    torch.manual_seed(0)
    cls = zuko.flows.NSF if kind == "nsf" else zuko.flows.MAF
    kwargs = {"hidden_features": (24, 24), **kwargs}
    features = kwargs.pop("features", 4)
    flow = cls(features, context, transforms=3, **kwargs)
    for p in flow.parameters():  # away from the identity at initialization
        p.data.add_(0.3 * torch.randn_like(p))
    noise = 1.5 * torch.randn(3000, features)
    c = torch.randn(3000, context) if context else None
    with torch.inference_mode():
        ref = flow(c).transform.inv(noise)
        fast = FastFlowSampler(flow, chunk=700)
        out = fast(noise, c)
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            out2 = fast(noise, c)
        finally:
            torch.set_num_threads(before)
    # float32 rounding of a differently grouped product; features are O(1)
    assert torch.allclose(out, ref, atol=2e-4, rtol=1e-4), float((out - ref).abs().max())
    assert torch.equal(out, out2)  # the thread count does not change a single bit


def test_fast_sampler_refuses_what_it_does_not_reproduce() -> None:
    import zuko

    from mlegpipe_builtins.generators._flow_fast import FastFlowSampler

    with pytest.raises(NotImplementedError):
        FastFlowSampler(zuko.flows.MAF(3, transforms=1, residual=True))
    with pytest.raises(NotImplementedError):
        FastFlowSampler(zuko.flows.NSF(3, transforms=1, activation=torch.nn.ELU))
    with pytest.raises(ValueError, match="conditional"):
        FastFlowSampler(zuko.flows.NSF(3, 1, transforms=1))(torch.zeros(2, 3))


def test_fast_and_zuko_samplers_give_the_same_events(trained) -> None:  # noqa: ANN001
    gen, _ = trained
    ref = _flow(sampler="zuko")
    ref.load_state_dict(gen.state_dict())
    a, b = gen.sample(5000, np.random.SeedSequence(11)), ref.sample(5000, np.random.SeedSequence(11))
    same = np.isclose(a.column("Q2"), b.column("Q2"), rtol=1e-4) & np.isclose(a.column("y"), b.column("y"), rtol=1e-4)
    # identical noise; only an event whose accept/reject flips on float rounding shifts the redraws
    assert same.mean() > 0.97
    assert gen.samplers()[0].__class__.__name__ == "FastFlowSampler"
    assert ref.samplers()[0].__class__.__name__ == "_ZukoSampler"


def test_events_do_not_depend_on_the_thread_count(trained) -> None:  # noqa: ANN001
    gen, _ = trained
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = gen.sample(40_000, np.random.SeedSequence(5))  # two chunks (32768 + 7232), one per thread
        torch.set_num_threads(2)
        two = gen.sample(40_000, np.random.SeedSequence(5))
        assert torch.get_num_threads() == 2  # restored after the single-threaded kernels
    finally:
        torch.set_num_threads(before)
    for field in ("lepton_E", "lepton_px", "Q2", "x"):
        np.testing.assert_array_equal(one.column(field), two.column(field))


def test_device_choice() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: see test_trains_on_the_gpu")
    with pytest.raises(ConfigError, match=r"generator\.device.*cuda"):
        _flow(steps=5, device="cuda").fit(dis_like(300, 1), dis_like(200, 2))
    gen = _flow(steps=5, device="auto")  # no GPU: trains on the CPU
    gen.fit(dis_like(300, 1), dis_like(200, 2))
    assert len(gen.sample(10, np.random.SeedSequence(0))) == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_the_gpu_and_samples_on_the_cpu() -> None:
    gpu = _flow(device="cuda", metric="chi2")
    history = gpu.fit(dis_like(4000, 1), dis_like(2000, 2))
    assert all(p.device.type == "cpu" for f in gpu.flows for p in f.parameters())
    assert history["steps"][-1]["nll"] < history["steps"][0]["nll"] - 0.4
    events = gpu.sample(20_000, np.random.SeedSequence(7))
    truth = dis_like(20_000, 9)
    q2 = kinematics.dis_from_lepton(*(truth.column(f) for f in LEPTON_FIELDS), HERA)["Q2"]
    assert np.mean(np.log(events.column("Q2"))) == pytest.approx(np.mean(np.log(q2)), abs=0.15)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_training_follows_eager_training(monkeypatch: pytest.MonkeyPatch) -> None:
    # device = "cuda" replays each step's forward and backward as one CUDA graph (~8x faster on an H100):
    # same batches, same kernels, so the same losses as the eager steps (MLEGPIPE_CUDA_GRAPHS=0)
    losses = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("MLEGPIPE_CUDA_GRAPHS", graphs)
        history = _flow(device="cuda", steps=120, validate_every=60).fit(dis_like(3000, 1), dis_like(1000, 2))
        losses[graphs] = [h["nll"] for h in history["steps"]]
    np.testing.assert_allclose(losses["1"], losses["0"], rtol=1e-4)
    assert losses["1"][-1] < losses["1"][0] - 0.2


# -- the distilled sampler --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distilled(trained):  # noqa: ANN001, ANN201
    """The trained flow's state loaded with sampler = "distilled": a state without one is distilled on first use."""
    gen, _ = trained
    out = _flow(sampler="distilled", distill_hidden=[48, 48], distill_steps=400, distill_batch=1024)
    out.load_state_dict(gen.state_dict())
    out.samplers()
    return out


def test_distilled_sampler_follows_the_flow(trained, distilled) -> None:  # noqa: ANN001
    gen, _ = trained
    assert type(distilled.samplers()[0]).__name__ == "DistilledSampler"
    report = distilled.info()["distill"][0]
    # 400 steps of a 48x48 MLP on the 2D inverse of a 2-transform flow: rms deviation (standardized units) < 0.08
    assert report["steps"] == 400 and report["rmse"] < 0.08
    exact = gen.sample(20_000, np.random.SeedSequence(8))
    approx = distilled.sample(20_000, np.random.SeedSequence(8))
    for field in ("Q2", "y"):  # statistical sigma of the mean log: ~0.008 (ln Q2), ~0.01 (ln y)
        a, b = np.log(exact.column(field)), np.log(approx.column(field))
        assert np.mean(b) == pytest.approx(np.mean(a), abs=0.04)
        assert np.std(b) == pytest.approx(np.std(a), rel=0.05)
        assert np.quantile(b, 0.99) == pytest.approx(np.quantile(a, 0.99), abs=0.15)
    mask = kinematics.physical_mask(approx.column("x"), approx.column("Q2"), approx.column("y"),
                                    approx.column("W2"), HERA)
    assert mask.all()  # the rejection step still applies


def test_distilled_sampler_is_reproducible_and_saved(distilled, tmp_path) -> None:  # noqa: ANN001
    again = _flow(sampler="distilled", distill_hidden=[48, 48], distill_steps=400, distill_batch=1024)
    again.load_state_dict({k: v for k, v in distilled.state_dict().items() if k not in ("distilled",
                                                                                       "distill_report")})
    for x, y in zip(distilled.samplers()[0].state_dict().values(), again.samplers()[0].state_dict().values(),
                    strict=True):
        assert torch.equal(x, y)  # distilled from the same seed: the same weights
    path = save_stage(tmp_path / "distilled.pt", distilled)
    loaded = load_generator(path, load_plugins())
    assert len(loaded.distilled) == 1  # saved: not distilled again
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = distilled.sample(30_000, np.random.SeedSequence(3))
        torch.set_num_threads(2)
        b = loaded.sample(30_000, np.random.SeedSequence(3))
    finally:
        torch.set_num_threads(before)
    for field in ("lepton_E", "lepton_pz", "Q2"):
        np.testing.assert_array_equal(a.column(field), b.column(field))
    broken = distilled.state_dict()
    broken["distilled"] = [{"config": {"features": 2, "context": 0, "hidden": [7]},
                            "weights": broken["distilled"][0]["weights"]}]
    with pytest.raises(CheckpointError, match="distilled"):
        _flow(sampler="distilled").load_state_dict(broken)


def test_distilling_a_conditional_map_covers_unseen_contexts() -> None:
    from mlegpipe_builtins.generators._flow_distill import distill

    def teacher(u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # a smooth, context-dependent 2D map
        return torch.stack((u[:, 0] * (1 + 0.5 * c[:, 0]) + c[:, 0], torch.tanh(u[:, 1]) + 0.3 * u[:, 0]), dim=1)

    box = (torch.tensor([-1.0]), torch.tensor([1.5]))  # e.g. the trained range and a margin beyond it
    net, report = distill(teacher, 2, 1, [32, 32], steps=600, batch_size=512, lr=1e-2, pool=100_000,
                          context_range=box, generator=torch.Generator().manual_seed(0))
    assert report["rmse"] < 0.1
    u = torch.randn(5000, 2, generator=torch.Generator().manual_seed(1))
    c = torch.full((5000, 1), 1.2)  # inside the box, not at a trained value
    with torch.inference_mode():
        err = (net(u, c) - teacher(u, c)).pow(2).mean().sqrt()
    assert err < 0.1
    with pytest.raises(ValueError, match="context"):
        distill(teacher, 2, 1, [8], steps=1)
    with pytest.raises(ValueError, match="conditional"):
        net(u)


def test_auto_sampler_is_distilled_for_lepton_maps_and_exact_for_columns() -> None:
    cls = load_plugins().get("generator", "flow").cls
    default = cls(cls.Params(), StageContext("generator", seed=1)).p
    assert default.sampler == "distilled" and default.distill_steps == 6000  # 2.4 x 2500 steps
    short = _flow(sampler="auto")  # 300 steps
    assert short.p.sampler == "distilled" and short.p.distill_steps == 720
    assert _flow(sampler="auto", distill_steps=50).p.distill_steps == 50
    columns = _flow(sampler="auto", feature_map="columns", features=["a"])
    assert columns.p.sampler == "fast"  # arbitrary data (amplification studies): the exact inverse


def test_conditional_flow_distils_over_the_trained_energies_and_beyond() -> None:
    beams = Beams.lepton_hadron(50.0, 50.0, lepton_direction=1)
    train = EventBatch.concat([dis_like(800, i, Beams.lepton_hadron(e, 50.0, lepton_direction=1), q2_min=2.0).with_columns(
        beam_energy=np.full(800, e)) for i, e in enumerate((10.0, 30.0, 50.0))])
    train.beams = beams
    gen = _flow(conditional=True, flow="maf", steps=30, validate_every=0, sampler="distilled", distill_steps=100,
                distill_batch=512, distill_hidden=[16], log_conditions=False)
    gen.fit(train, train)
    # standardized energies of 10-50 GeV; distilled at half the span beyond each end (0-70 GeV)
    low, high = gen.context_range
    assert low[0] == pytest.approx(-high[0]) and high[0] > 1.0
    events = gen.sample(3000, np.random.SeedSequence(1), {"beam_energy": 60.0})
    assert (events.column("beam_energy") == 60.0).all() and (events.column("y") <= 1).all()
    from mlegpipe_builtins.generators._flow_distill import DistilledSampler

    state = {**gen.state_dict(), "distilled": [DistilledSampler(2, 0, [16]).state()]}  # another conditioning
    with pytest.raises(CheckpointError, match="context"):
        _flow(conditional=True, flow="maf").load_state_dict(state)


# -- hard edges (edges = "auto"; the edge map itself: tests/test_scalers.py) -------------------------
def test_flow_generates_nothing_past_a_generation_cut_and_loads_states_without_edges(trained) -> None:  # noqa: ANN001
    gen, _ = trained  # dis_like: Q2 > 4 GeV2 and y > 0.01, steps in ln Q2 and ln y
    edges = gen.info()["edges"]
    assert edges["lnQ2"] == (True, False) and edges["lny"][0]
    assert gen.sample(20_000, np.random.SeedSequence(4)).column("y").min() > 0.01 * np.exp(-2e-3)
    q2 = gen.sample(20_000, np.random.SeedSequence(3)).column("Q2")
    train_min = 4.0  # dis_like's cut; the bound is 1e-3 standard deviations of ln Q2 below the lowest event
    assert q2.min() > train_min * np.exp(-2e-3)
    # without the edge map the same training leaks past the cut
    plain = _flow(edges="none")
    plain.fit(dis_like(4000, 1), dis_like(2000, 2))
    assert plain.info()["edges"] == {"lnQ2": (False, False), "lny": (False, False)}
    assert np.mean(plain.sample(20_000, np.random.SeedSequence(3)).column("Q2") < train_min) > 1e-3
    old = {k: v for k, v in gen.state_dict().items() if k != "edges"}  # written before edges: none
    restored = _flow()
    restored.load_state_dict(old)
    assert restored.info()["edges"] == {"lnQ2": (False, False), "lny": (False, False)}


def test_ln_y_is_learned_as_a_logit_and_old_states_keep_ln_y(trained) -> None:  # noqa: ANN001
    gen, _ = trained  # the logit map itself: tests/test_scalers.py
    assert gen.info()["y_transform"] == "logit"
    # the model-space features hold the logit of the training y
    events = dis_like(500, 11)
    y = kinematics.dis_from_lepton(*(events.column(f) for f in LEPTON_FIELDS), HERA)["y"]
    space = gen.space
    x = space.edge.inverse(space.pre.inverse(space.scaler.inverse(gen.interpretation_inputs(events).features.double())))
    np.testing.assert_allclose(x[:, 1].numpy(), np.log(y / (1 - y)), atol=1e-4)  # float32 network inputs
    old = {k: v for k, v in gen.state_dict().items() if k != "y_transform"}  # written before the option: ln y
    restored = _flow()
    restored.load_state_dict(old)
    assert restored.info()["y_transform"] == "log"
    with pytest.raises(CheckpointError, match="y_transform"):
        _flow().load_state_dict({**gen.state_dict(), "y_transform": "sqrt"})


def test_coupling_flows_sample_exactly_their_inverse() -> None:
    from mlegpipe_builtins.generators.flow import FlowGenerator

    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 5)) @ rng.normal(size=(5, 5))
    train = EventBatch.from_columns({f"f{i}": x[:, i] for i in range(5)})
    params = FlowGenerator.Params(features=[f"f{i}" for i in range(5)], passes=2, steps=20, hidden=[16],
                                  validate_every=0)
    gen = FlowGenerator(params, StageContext("generator", seed=3))
    gen.fit(train, train)
    flow = gen.flows[0]
    assert {int(v) for t in flow.transform.transforms for v in t.order.unique()} == {0, 1}  # two groups
    from mlegpipe_builtins.generators._flow_fast import FastFlowSampler

    noise = torch.randn(500, 5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(FastFlowSampler(flow)(noise), flow().transform.inv(noise), atol=1e-4)
    assert len(gen.sample(100, np.random.SeedSequence(1))) == 100


def test_quantile_preprocessing_learns_marginals_and_survives_a_checkpoint(tmp_path) -> None:  # noqa: ANN001
    from mlegpipe_builtins.generators.flow import FlowGenerator

    rng = np.random.default_rng(8)
    a = rng.exponential(2.0, 20000)
    train = EventBatch.from_columns({"a": a, "b": a + rng.normal(0.0, 0.1, 20000)})
    params = FlowGenerator.Params(features=["a", "b"], preprocess="quantile", flow="maf", passes=2, transforms=4,
                                  hidden=[16], steps=300, validate_every=0)
    gen = FlowGenerator(params, StageContext("generator", seed=5))
    gen.fit(train, train)
    out = gen.sample(20000, np.random.SeedSequence(2))
    x = out.column("a")
    assert x.min() >= a.min() and x.max() <= a.max()  # nothing beyond the training range
    assert np.median(x) == pytest.approx(2.0 * np.log(2.0), rel=0.05)  # the exponential's median
    assert np.corrcoef(x, out.column("b"))[0, 1] > 0.95  # the dependence is learned by the flow
    path = save_stage(tmp_path / "g.pt", gen)
    again = load_generator(path, load_plugins())
    assert np.array_equal(again.sample(100, np.random.SeedSequence(3)).column("a"),
                          gen.sample(100, np.random.SeedSequence(3)).column("a"))
