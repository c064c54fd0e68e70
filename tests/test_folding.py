"""Tests of the learned detector surrogates cfold, dfold and flowfold (thesis ch. 6).

The toy of thesis ch. 6.3: vertex features v1, v2 ~ N(0, 1) for training and
U(-2, 2) for testing, detector = vertex × (1 + 0.05 ε) (5 % relative Gaussian
smearing). Tiny models are trained for a few hundred steps: the tests check the
mechanics and coarse quality; benchmarks/bench_folding.py measures the full figures.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.metrics import sample_chi2_ndf as chi2_ndf
from mlegpipe.registry import load_plugins
from mlegpipe.schema import build_params
from mlegpipe_builtins.detectors._fold_features import feature_matrix
from mlegpipe_builtins.detectors._fold_metrics import resolution_deviation, resolution_profile
from mlegpipe_builtins.detectors.folding import ConditionalFolding, DirectFolding, FlowFolding

NAMES = ["v1", "v2"]
REL_NOISE = 0.05
EDGES = np.linspace(-2.4, 2.4, 25)  # 0.2-wide bins: the 5 % smearing of the uniform edges is visible


def smear(vertex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The toy detector: 5 % relative Gaussian smearing."""
    return vertex * (1.0 + REL_NOISE * rng.standard_normal(vertex.shape))


def toy_pairs(n: int, seed: int, kind: str = "gauss") -> tuple[EventBatch, EventBatch]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 2)) if kind == "gauss" else rng.uniform(-2.0, 2.0, (n, 2))
    return EventBatch.from_matrix(v, NAMES), EventBatch.from_matrix(smear(v, rng), NAMES)


def mean_chi2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([chi2_ndf(a[:, j], b[:, j], EDGES) for j in range(a.shape[1])]))


TINY = {"vertex_features": NAMES, "steps": 400, "hidden": 32, "layers": 2, "batch_size": 256, "validate_every": 100}
PLUGINS = {"cfold": (ConditionalFolding, {"critic_steps": 2}), "dfold": (DirectFolding, {}),
           "flowfold": (FlowFolding, {"transforms": 2})}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny networks: extra torch threads only spin on a shared CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    vertex, detector = toy_pairs(8000, 1)
    models = {}
    for name, (cls, extra) in PLUGINS.items():
        det = cls(cls.Params(**TINY, **extra), StageContext("detector", seed=7))
        det.fit(vertex, detector)
        models[name] = det
    return models


@pytest.fixture(scope="module")
def uniform_test() -> dict[str, np.ndarray]:
    v, d = toy_pairs(40000, 11, "uniform")
    _, d2 = toy_pairs(40000, 12, "uniform")
    return {"vertex": v.matrix(NAMES), "detector": d.matrix(NAMES), "detector2": d2.matrix(NAMES)}


def test_plugins_registered() -> None:
    reg = load_plugins()
    for name, (cls, _) in PLUGINS.items():
        assert reg.get("detector", name).cls is cls
        assert cls.trainable


@pytest.mark.parametrize("name", ["cfold", "flowfold"])
def test_folds_a_vertex_sample_unlike_training(trained: dict, uniform_test: dict, name: str) -> None:
    """Trained on Gaussian vertex events, the noisy surrogates fold uniform ones (thesis ch. 6.5.2).

    Full-size target (benchmark): χ²/ndf ≤ 1.5 × floor. Tiny models here: ≤ 3 × floor
    and a per-bin resolution within 35 % where the reference width is well measured.
    """
    det = trained[name]
    folded = det.fold(EventBatch.from_matrix(uniform_test["vertex"], NAMES), np.random.SeedSequence(3)).matrix(NAMES)
    floor = mean_chi2(uniform_test["detector2"], uniform_test["detector"])
    assert 0.5 < floor < 2.0
    assert mean_chi2(folded, uniform_test["detector"]) < 3.0 * floor
    bins = np.array([-2.0, -1.0, 1.0, 2.0])
    ratio = (resolution_profile(uniform_test["vertex"][:, 0], folded[:, 0], bins)
             / resolution_profile(uniform_test["vertex"][:, 0], uniform_test["detector"][:, 0], bins))
    assert np.all(np.abs(ratio[[0, 2]] - 1.0) < 0.35), ratio


def test_direct_folding_fails_unlike_training(trained: dict, uniform_test: dict) -> None:
    """The deterministic baseline cannot smear: its χ²/ndf on the uniform sample is far above the floor."""
    folded = trained["dfold"].fold(EventBatch.from_matrix(uniform_test["vertex"], NAMES),
                                   np.random.SeedSequence(3)).matrix(NAMES)
    floor = mean_chi2(uniform_test["detector2"], uniform_test["detector"])
    assert mean_chi2(folded, uniform_test["detector"]) > 5.0 * floor
    # no noise: another fold seed gives the same events, and the spread around the vertex is only
    # the regression's error (the tiny model's, at most half the true width ≈ 0.05 × 1.5 at v ≈ 1.5)
    again = trained["dfold"].fold(EventBatch.from_matrix(uniform_test["vertex"], NAMES),
                                  np.random.SeedSequence(4)).matrix(NAMES)
    assert np.array_equal(folded, again)
    width = resolution_profile(uniform_test["vertex"][:, 0], folded[:, 0], np.array([1.0, 2.0]))
    assert width[0] < 0.5 * REL_NOISE * 1.5


@pytest.mark.parametrize("name", list(PLUGINS))
def test_fold_is_reproducible(trained: dict, name: str) -> None:
    vertex, _ = toy_pairs(3000, 5)
    a = trained[name].fold(vertex, np.random.SeedSequence(9)).matrix(NAMES)
    b = trained[name].fold(vertex, np.random.SeedSequence(9)).matrix(NAMES)
    c = trained[name].fold(vertex, np.random.SeedSequence(10)).matrix(NAMES)
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a))
    assert np.array_equal(a, c) == (name == "dfold")


def test_paired_branches_of_one_sample() -> None:
    """Truth and reco branches of one sample (e.g. a ROOT file): v1_true → v1_reco, paired by position."""
    rng = np.random.default_rng(8)
    v = rng.standard_normal((3000, 1))
    batch = EventBatch.from_columns({"v1_true": v[:, 0], "v1_reco": smear(v, rng)[:, 0]})
    det = DirectFolding(DirectFolding.Params(vertex_features=["v1_true"], detector_features=["v1_reco"], residual=True,
                                             steps=20, hidden=8, layers=1), StageContext("detector"))
    assert det.residual_index == [0]
    det.fit(batch, batch)
    folded = det.fold(batch, np.random.SeedSequence(0))
    assert np.allclose(folded.column("v1_reco"), batch.column("v1_true"), atol=0.1)  # near the vertex value


def test_info_reports_training(trained: dict) -> None:
    info = trained["flowfold"].info()
    assert info["vertex_features"] == NAMES and info["detector_features"] == NAMES
    assert 1 <= info["best_step"] <= TINY["steps"] and np.isfinite(info["best_metric"])
    assert info["train_pairs"] + info["valid_pairs"] == 8000 and not info["acceptance_learned"]


@pytest.mark.parametrize("name", ["cfold", "flowfold"])
def test_training_is_reproducible(name: str) -> None:
    """Same seed → same surrogate, whatever the global torch stream was (the critic's dropout uses it)."""
    vertex, detector = toy_pairs(2000, 2)
    cls, extra = PLUGINS[name]
    out = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        det = cls(cls.Params(**{**TINY, "steps": 20}, **extra), StageContext("detector", seed=4))
        det.fit(vertex, detector)
        out.append(det.fold(vertex, np.random.SeedSequence(1)).matrix(NAMES))
    assert np.array_equal(out[0], out[1])


@pytest.mark.parametrize("name", ["cfold", "flowfold"])
def test_fold_tensor_is_differentiable(trained: dict, name: str) -> None:
    """Gradients flow from the folded features back to the standardized vertex features."""
    det = trained[name]
    v = torch.as_tensor(det.vertex_scaler.transform_numpy(np.array([[0.5, -1.0], [1.5, 0.2]])),
                        dtype=torch.float32).requires_grad_(True)
    out = det.fold_tensor(v, torch.Generator().manual_seed(0))
    assert out.shape == (2, 2)
    out.sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in det.model.parameters())  # the surrogate is frozen after fit
    # physical units round trip: the response of a 5 % smearing keeps values near their vertex value
    physical = det.detector_scaler.inverse(out.detach().double()).numpy()
    assert np.allclose(physical, [[0.5, -1.0], [1.5, 0.2]], atol=0.4)


@pytest.mark.parametrize("name", list(PLUGINS))
def test_state_round_trip(trained: dict, name: str) -> None:
    det = trained[name]
    buffer = io.BytesIO()
    torch.save(det.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    cls, extra = PLUGINS[name]
    fresh = cls(cls.Params(**TINY, **extra), StageContext("detector", seed=99))
    fresh.load_state_dict(state)
    vertex, _ = toy_pairs(500, 3)
    assert np.array_equal(fresh.fold(vertex, np.random.SeedSequence(2)).matrix(NAMES),
                          det.fold(vertex, np.random.SeedSequence(2)).matrix(NAMES))


def test_load_refuses_other_features(trained: dict) -> None:
    other = FlowFolding(FlowFolding.Params(vertex_features=["v1"]), StageContext("detector"))
    with pytest.raises(CheckpointError, match="v1"):
        other.load_state_dict(trained["flowfold"].state_dict())


def test_learned_acceptance() -> None:
    """p(pass | v) = sigmoid(3 v1) is learned; fold flags or drops events by sampling it."""
    rng = np.random.default_rng(4)
    v = rng.standard_normal((8000, 2))
    passed = rng.random(8000) < 1.0 / (1.0 + np.exp(-3.0 * v[:, 0]))
    d = np.where(passed[:, None], smear(v, rng), 0.0)
    vertex = EventBatch.from_matrix(v, NAMES)
    detector = EventBatch.from_matrix(d, NAMES).with_columns(measured=passed)
    params = FlowFolding.Params(**{**TINY, "steps": 60}, transforms=1, acceptance_steps=300)
    det = FlowFolding(params, StageContext("detector", seed=1))
    history = det.fit(vertex, detector)
    assert "acceptance" in history
    grid = torch.as_tensor(det.vertex_scaler.transform_numpy(np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])),
                           dtype=torch.float32)
    with torch.no_grad():
        prob = det.acceptance_tensor(grid).numpy()
    assert np.allclose(prob, 1.0 / (1.0 + np.exp(-3.0 * np.array([-1.0, 0.0, 1.0]))), atol=0.08), prob
    test_v = EventBatch.from_matrix(rng.standard_normal((20000, 2)), NAMES)
    flagged = det.fold(test_v, np.random.SeedSequence(0))
    assert abs(flagged.column("measured").mean() - passed.mean()) < 0.03
    det.params.acceptance = "drop"
    dropped = det.fold(test_v, np.random.SeedSequence(0))
    assert len(dropped) == int(flagged.column("measured").sum())


def test_config_and_data_errors(trained: dict) -> None:
    with pytest.raises(ConfigError, match="residual"):
        ConditionalFolding(ConditionalFolding.Params(vertex_features=["a", "b"], detector_features=["c"]),
                           StageContext("detector"))
    with pytest.raises(ConfigError, match="detector.loss"):
        build_params(ConditionalFolding.Params, {"loss": "hinge"}, "detector")
    det = FlowFolding(FlowFolding.Params(vertex_features=NAMES), StageContext("detector"))
    vertex, detector = toy_pairs(100, 1)
    with pytest.raises(DataError, match="trained"):
        det.fold(vertex, np.random.SeedSequence(0))
    with pytest.raises(DataError, match="index-aligned"):
        det.fit(vertex, detector.take(slice(0, 50)))
    with pytest.raises(DataError, match="v3"):
        trained["flowfold"].fold(EventBatch.from_matrix(np.zeros((3, 2)), ["v1", "v3"]), np.random.SeedSequence(0))


def test_dis_lepton_folding_mechanics() -> None:
    """HERA DIS through `smear`: (E, P | E, P, θ, φ) folding keeps the lepton direction and relabels x, Q²."""
    reg = load_plugins(strict=True)
    dis, smear_cls = reg.get("truth", "dis").cls, reg.get("detector", "smear").cls
    events = dis(dis.Params(events=3000), StageContext("truth", seed=1)).read()
    detector = smear_cls(smear_cls.Params(), StageContext("smear", seed=1)).fold(events, np.random.SeedSequence(2))
    params = FlowFolding.Params(vertex_features=["lepton_E", "lepton_P", "lepton_theta", "lepton_phi"],
                                detector_features=["lepton_E", "lepton_P"], steps=40, transforms=1, hidden=32,
                                acceptance_steps=80)
    det = FlowFolding(params, StageContext("detector", seed=3))
    det.fit(events, detector)
    assert det.flag_name == "measured"  # the event pass flag of `smear`
    # kinematic pass model: the response is learned on measured leptons, y, x, Q² > 0 cut on the folded lepton
    assert det.info()["pass_model"] == "kinematic" and det.lepton_flag == "lepton_measured_P"
    folded = det.fold(events, np.random.SeedSequence(5))
    theta_in = np.arctan2(np.hypot(events.column("lepton_px"), events.column("lepton_py")), events.column("lepton_pz"))
    theta_out = np.arctan2(np.hypot(folded.column("lepton_px"), folded.column("lepton_py")), folded.column("lepton_pz"))
    p = np.sqrt(sum(folded.column(f"lepton_p{c}") ** 2 for c in "xyz"))
    assert np.all(p >= 0) and np.mean(p > 0) > 0.99  # negative momenta are set to 0, as eic-smear does
    assert np.allclose(theta_in[p > 0], theta_out[p > 0], atol=1e-9)
    measured = (folded.column("measured") > 0.5) & (p > 0)
    assert 0.2 < measured.mean() < 0.6
    assert np.allclose(measured.mean(), detector.column("measured").mean(), atol=0.05)
    q2 = folded.column("Q2")[measured]
    assert np.allclose(q2, 2 * 27.6 * p[measured] * (1 + np.cos(theta_out[measured])), rtol=1e-3)  # electron method, proton +z
    for label in ("Q2", "y", "x"):  # as smear: no measured event with a non-physical electron-method label
        assert np.all(folded.column(label)[measured] > 0)
    # acceptance_tensor keeps its meaning p(measured | vertex) (the unfolding completes with 1 - p)
    v_std = torch.as_tensor(det.vertex_scaler.transform_numpy(det_vertex(events, det)), dtype=torch.float32)
    with torch.no_grad():
        assert abs(det.acceptance_tensor(v_std).mean().item() - detector.column("measured").mean()) < 0.05
        # pass_tensor thins fold_tensor output as fold() does: lepton acceptance × the y, x, Q² > 0 cut
        d_std = det.fold_tensor(v_std, torch.Generator().manual_seed(0))
        assert abs(det.pass_tensor(v_std, d_std).mean().item() - detector.column("measured").mean()) < 0.05
    buffer = io.BytesIO()  # the kinematic pass (lepton acceptance, beams) survives a weights-only round trip
    torch.save(det.state_dict(), buffer)
    buffer.seek(0)
    fresh = FlowFolding(params, StageContext("detector", seed=9))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    again = fresh.fold(events, np.random.SeedSequence(5))
    assert np.array_equal(again.column("measured"), folded.column("measured"))
    learned = FlowFolding(dataclasses.replace(params, pass_model="learned"), StageContext("detector", seed=3))
    learned.fit(events, detector)
    assert learned.info()["pass_model"] == "learned" and learned.lepton_flag is None
    assert abs(learned.fold(events, np.random.SeedSequence(5)).column("measured").mean()
               - detector.column("measured").mean()) < 0.05


def det_vertex(events: EventBatch, det: FlowFolding) -> np.ndarray:
    """The surrogate's vertex feature matrix of ``events`` (physical units)."""
    return feature_matrix(events, det.vertex_features, "test")


def test_kinematic_pass_model_needs_dis_events() -> None:
    """pass_model = 'kinematic' on a sample without beams or lepton flags names the reason."""
    vertex, detector = toy_pairs(500, 1)
    det = FlowFolding(FlowFolding.Params(**{**TINY, "steps": 5}, pass_model="kinematic"), StageContext("detector"))
    with pytest.raises(ConfigError, match="pass_model"):
        det.fit(vertex, detector.with_columns(measured=np.ones(500, bool)))


def test_affine_flow_follows_narrow_widths(trained: dict, uniform_test: dict) -> None:
    """The response width 0.05 |v| shrinks towards v = 0: the affine flow follows it (the plain NSF did not).

    Tiny model: the width near |v| ≈ 0.4 within 35 % of the true one.
    """
    det = trained["flowfold"]
    folded = det.fold(EventBatch.from_matrix(uniform_test["vertex"], NAMES), np.random.SeedSequence(3)).matrix(NAMES)
    bins = np.array([-0.5, -0.3, 0.3, 0.5])
    ratio = (resolution_profile(uniform_test["vertex"][:, 0], folded[:, 0], bins)
             / resolution_profile(uniform_test["vertex"][:, 0], uniform_test["detector"][:, 0], bins))
    assert np.all(np.abs(ratio[[0, 2]] - 1.0) < 0.35), ratio


def test_load_refuses_other_architecture(trained: dict) -> None:
    plain = FlowFolding(FlowFolding.Params(**TINY, transforms=2, affine=False), StageContext("detector"))
    with pytest.raises(CheckpointError, match="affine"):
        plain.load_state_dict(trained["flowfold"].state_dict())
    unencoded = FlowFolding(FlowFolding.Params(**TINY, transforms=2, context_bins=0), StageContext("detector"))
    with pytest.raises(CheckpointError, match="context_bins"):
        unencoded.load_state_dict(trained["flowfold"].state_dict())


def test_lepton_eta_feature() -> None:
    """lepton_eta = -ln tan(θ/2), the coordinate the detector zones are bounded in."""
    pz = np.array([0.0, np.sinh(2.0), -np.sinh(3.5)])
    b = EventBatch.from_columns({"lepton_px": np.ones(3), "lepton_py": np.zeros(3), "lepton_pz": pz})
    eta = feature_matrix(b, ["lepton_eta"], "vertex")[:, 0]
    theta = feature_matrix(b, ["lepton_theta"], "vertex")[:, 0]
    assert np.allclose(eta, [0.0, 2.0, -3.5]) and np.allclose(eta, -np.log(np.tan(theta / 2)))


def test_resolution_deviation_known_answers() -> None:
    """Per-bin width ratios of two detectors folding the same vertex events K times.

    A response 20 % wider gives a median deviation 0.20 ± 0.02; an identical one
    a deviation within 3 bootstrap errors of its floor (< 0.03 with 4 × 20000 folds);
    unmeasured entries (NaN) are left out; K folds shrink the noise.
    """
    rng = np.random.default_rng(4)
    v = rng.uniform(0.0, 1.0, 20000)
    edges = np.linspace(0.0, 1.0, 11)
    smear4 = v + 0.1 * rng.standard_normal((4, v.size))
    wide = resolution_deviation(v, v + 0.12 * rng.standard_normal((4, v.size)), smear4, edges)
    assert abs(wide["median_deviation"] - 0.2) < 0.02 and np.all(np.abs(wide["ratio"] - 1.2) < 0.05)
    same4 = v + 0.1 * rng.standard_normal((4, v.size))
    same4[rng.random(same4.shape) < 0.3] = np.nan  # not measured
    same = resolution_deviation(v, same4, smear4, edges, bootstrap=30)
    assert same["median_deviation"] < 0.03 and 0.0 < same["median_deviation_error"] < 0.02
    assert 0.6 * 4 * 2000 < same["events_per_bin"] < 0.8 * 4 * 2000
    one = [resolution_deviation(v, v + 0.1 * rng.standard_normal(v.size), v + 0.1 * rng.standard_normal(v.size),
                                edges)["median_deviation"] for _ in range(4)]
    four = [resolution_deviation(v, v + 0.1 * rng.standard_normal((4, v.size)),
                                 v + 0.1 * rng.standard_normal((4, v.size)), edges)["median_deviation"]
            for _ in range(4)]
    assert np.mean(four) < np.mean(one)


def test_resolution_deviation_binned_by_another_quantity() -> None:
    """``by``: widths of model - vertex per bin of another vertex quantity (E' resolution across η zones).

    The reference width jumps from 0.01 to 0.04 at eta = 0; a model with the same step scores ≈ 1 on both
    sides, one that smooths it into the mean 0.025 scores ≈ 2.5 and ≈ 0.6.
    """
    rng = np.random.default_rng(5)
    v, eta = rng.uniform(1.0, 2.0, 40000), rng.uniform(-1.0, 1.0, 40000)
    step = np.where(eta < 0.0, 0.01, 0.04)
    ref = v + step * rng.standard_normal((4, v.size))
    same = resolution_deviation(v, v + step * rng.standard_normal((4, v.size)), ref, np.array([-1.0, 0.0, 1.0]), by=eta)
    smooth = resolution_deviation(v, v + 0.025 * rng.standard_normal((4, v.size)), ref, np.array([-1.0, 0.0, 1.0]),
                                  by=eta)
    assert np.allclose(same["ratio"], 1.0, atol=0.03), same["ratio"]
    assert np.allclose(smooth["ratio"], [2.5, 0.625], rtol=0.03), smooth["ratio"]


def test_context_encoding_learns_the_resolution_step_at_a_zone_edge() -> None:
    """Matrix 0.2's calorimeter resolution changes at η = −2: flowfold with ``context_bins`` follows the step.

    3 × 10⁴ HERA DIS pairs, 1000 steps, 4 folds of 4 × 10⁴ test events. E' width over smear's in
    η ∈ [−2, −1.75] (just past the edge; seeds 7-9): 0.73-0.74 with 16 intervals, 0.58-0.61 with the raw
    features only (the step learned as a ramp). bench_folding (10⁵ pairs, 2000 steps): 0.83-0.91 / 0.65-0.74.
    """
    reg = load_plugins()
    dis, smear_cls = reg.get("truth", "dis").cls, reg.get("detector", "smear").cls
    truth = dis(dis.Params(events=70000), StageContext("truth", seed=3)).read()
    smear = smear_cls(smear_cls.Params(preset="matrix-0.2"), StageContext("smear", seed=5))
    train, test = truth.take(slice(0, 30000)), truth.take(slice(30000, None))
    pairs = (train, smear.fold(train, np.random.SeedSequence(1)))
    eta = feature_matrix(test, ["lepton_eta"], "test")[:, 0]

    def energies(folds: list[EventBatch]) -> np.ndarray:
        return np.array([np.where(b.column("measured") > 0.5, b.column("lepton_E"), np.nan) for b in folds])

    reference = energies([smear.fold(test, np.random.SeedSequence(10 + k)) for k in range(4)])
    ratio = {}
    for bins in (0, 16):
        det = FlowFolding(FlowFolding.Params(vertex_features=["lepton_E", "lepton_P", "lepton_eta", "lepton_phi"],
                                             detector_features=["lepton_E", "lepton_P"], steps=1000,
                                             acceptance_steps=300, context_bins=bins), StageContext("detector", seed=7))
        det.fit(*pairs)
        folded = energies([det.fold(test, np.random.SeedSequence(20 + k)) for k in range(4)])
        ratio[bins] = resolution_deviation(test.column("lepton_E"), folded, reference, np.array([-2.0, -1.75]),
                                           by=eta)["ratio"][0]
    assert ratio[16] > 0.68 and ratio[16] - ratio[0] > 0.07, ratio


def test_cosine_learning_rate() -> None:
    """lr_schedule = 'cosine' (default) decays the surrogate's learning rate to 5 % of lr; 'constant' keeps it."""
    vertex, detector = toy_pairs(2000, 3)
    rates = {}
    for schedule in ("cosine", "constant"):
        det = DirectFolding(DirectFolding.Params(**{**TINY, "steps": 50}, lr_schedule=schedule),
                            StageContext("detector", seed=1))
        history = det.fit(vertex, detector)["model"]
        rates[schedule] = (history[0]["lr"], history[-1]["lr"])
    assert rates["cosine"][0] == pytest.approx(1e-3) and rates["cosine"][1] == pytest.approx(5e-5, rel=0.05)
    assert rates["constant"] == pytest.approx((1e-3, 1e-3))


def test_cfold_head_learns_the_width() -> None:
    """head_weight > 0: cfold's affine head learns the conditional width of the response by likelihood.

    Toy: width 0.05 |v|; the head's width at |v| ≈ 1.5 is 2-5 × its width at |v| ≈ 0.4 (true: 3.75).
    """
    vertex, detector = toy_pairs(8000, 1)
    det = ConditionalFolding(ConditionalFolding.Params(**TINY, critic_steps=2, head_weight=1.0),
                             StageContext("detector", seed=7))
    det.fit(vertex, detector)
    v = np.array([[1.5, 1.5], [-1.5, -1.5], [0.4, 0.4], [-0.4, -0.4]])
    with torch.no_grad():
        _, log_scale = det.model.head(torch.as_tensor(det.vertex_scaler.transform_numpy(v), dtype=torch.float32))
    width = torch.exp(log_scale).mean(1).numpy()
    assert 2.0 < width[:2].mean() / width[2:].mean() < 5.0, width
