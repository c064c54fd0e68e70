"""Metrics against known answers: χ², KL, W1, triangular, MMD², pulls, AUC, amplification, memorization, physicality."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.metrics import (
    amplification,
    asymptotic_mse,
    bootstrap_densities,
    chi2_ndf,
    classifier_auc,
    compare_samples,
    edges_for,
    equivalent_events,
    evaluate_targets,
    expected_sample_mse,
    histogram,
    kl_divergence,
    memorization_ratio,
    mmd2,
    pulls,
    quantile_mse,
    replica_stats,
    thesis_chi2,
    triangular_discriminator,
    wasserstein1,
)
from mlegpipe.physicality import physicality


def _hist(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = histogram(values, edges)
    return h.values(), h.variances()


# -- χ²/ndf ---------------------------------------------------------------------
def test_chi2_ndf_of_two_samples_of_one_distribution_is_one() -> None:
    rng = np.random.default_rng(1)
    edges = np.linspace(-3, 3, 41)
    values = [chi2_ndf(*_hist(rng.normal(size=20_000), edges), *_hist(rng.normal(size=30_000), edges))[0]
              for _ in range(30)]
    # mean of 30 χ²/39 values: standard error √(2/39)/√30 ≈ 0.04
    assert np.mean(values) == pytest.approx(1.0, abs=0.15)


def test_chi2_ndf_detects_a_shift() -> None:
    rng = np.random.default_rng(2)
    edges = np.linspace(-3, 3, 41)
    chi, ndf = chi2_ndf(*_hist(rng.normal(size=20_000), edges), *_hist(rng.normal(0.1, 1, size=20_000), edges))
    assert ndf == 39
    assert chi > 2.0  # expected ≈ 1 + (N/2) δ² / ndf ≈ 3.5 before binning losses


def test_chi2_ndf_identical_and_errors() -> None:
    c = np.array([10.0, 20.0, 0.0])
    assert chi2_ndf(c, c, c, c) == (0.0, 1)
    with pytest.raises(DataError, match="different numbers of bins"):
        chi2_ndf(c, c, c[:2], c[:2])
    with pytest.raises(DataError, match="empty"):
        chi2_ndf(np.zeros(3), np.zeros(3), c, c)


def test_thesis_chi2_of_poisson_counts_around_their_mean_is_one() -> None:
    rng = np.random.default_rng(3)
    expected = np.full(2401, 40.0)
    values = [thesis_chi2(rng.poisson(expected).astype(float), expected) for _ in range(5)]
    # E[(g - t)²/t] = Var(g)/t = 1 for Poisson g (the rescaling to equal totals costs O(1/n_bins))
    assert np.mean(values) == pytest.approx(1.0, abs=0.05)


# -- KL, triangular, W1, MMD² ------------------------------------------------------
def test_kl_of_binned_gaussians_matches_the_analytic_value() -> None:
    edges = np.linspace(-10, 10, 4001)
    mu = 0.5
    p = np.diff(norm.cdf(edges))
    q = np.diff(norm.cdf(edges, loc=mu))
    assert kl_divergence(p, q) == pytest.approx(mu**2 / 2, rel=1e-3)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_kl_of_large_samples_approaches_the_analytic_value() -> None:
    rng = np.random.default_rng(4)
    edges = np.linspace(-5, 5, 101)
    p = histogram(rng.normal(size=400_000), edges).values()
    q = histogram(rng.normal(0.2, 1, size=400_000), edges).values()
    # analytic μ²/2 = 0.02; finite samples add ≈ (bins - 1)/N ≈ 5e-4
    assert kl_divergence(p, q) == pytest.approx(0.02, abs=2e-3)


def test_triangular_discriminator_known_values() -> None:
    assert triangular_discriminator(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert triangular_discriminator(np.array([3.0, 1.0]), np.array([6.0, 2.0])) == pytest.approx(0.0)
    assert triangular_discriminator(np.array([2.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1 / 3)


def test_wasserstein_of_a_shift_is_the_shift() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=100_000)
    assert wasserstein1(a, a + 0.3) == pytest.approx(0.3, abs=1e-9)
    assert wasserstein1(a, rng.normal(0.3, 1, 100_000)) == pytest.approx(0.3, abs=0.015)


def test_weighted_wasserstein_equals_repeated_events() -> None:
    a, b = np.array([0.0, 1.0, 4.0]), np.array([2.0, 3.0])
    w = np.array([1.0, 2.0, 1.0])
    assert wasserstein1(a, b, w, None) == pytest.approx(wasserstein1(np.array([0.0, 1.0, 1.0, 4.0]), b))


def test_wasserstein_equals_scipy_on_weighted_samples() -> None:
    from scipy.stats import wasserstein_distance

    from mlegpipe.metrics import sorted_cdf

    rng = np.random.default_rng(17)
    a, b = rng.normal(size=3000), rng.exponential(size=2000)
    a[:100] = b[:100]  # ties across the samples
    wa, wb = rng.random(3000), rng.random(2000)
    exact = wasserstein_distance(a, b, wa, wb)
    assert wasserstein1(a, b, wa, wb) == pytest.approx(exact, rel=1e-10)
    assert wasserstein1(a, sorted_cdf(b, wb), wa) == pytest.approx(exact, rel=1e-10)


def test_mmd2_matches_the_gaussian_formula() -> None:
    rng = np.random.default_rng(6)
    mu, sigma = 1.0, 1.0
    exact = 2 * np.sqrt(sigma**2 / (sigma**2 + 2)) * (1 - np.exp(-mu**2 / (2 * (sigma**2 + 2))))
    got = mmd2(rng.normal(size=(2000, 1)), rng.normal(mu, 1, size=(2000, 1)), sigma=sigma)
    assert got == pytest.approx(exact, abs=0.02)
    assert abs(mmd2(rng.normal(size=(2000, 1)), rng.normal(size=(2000, 1)))) < 0.01


# -- pulls -----------------------------------------------------------------------
def test_pulls_from_synthetic_replicas() -> None:
    rng = np.random.default_rng(7)
    mu_m, mu_r = np.array([0.30, 0.20, 0.50]), np.array([0.30, 0.25, 0.40])
    sd_m, sd_r = np.array([0.01, 0.02, 0.03]), np.array([0.01, 0.02, 0.04])
    model = rng.normal(mu_m, sd_m, size=(4000, 3))
    ref = rng.normal(mu_r, sd_r, size=(4000, 3))
    got = pulls(*replica_stats(model), *replica_stats(ref))
    expected = (mu_m - mu_r) / np.sqrt(sd_m**2 + sd_r**2)
    assert got == pytest.approx(expected, abs=0.05)


def test_bootstrap_pulls_of_two_samples_of_one_distribution_are_standard_normal() -> None:
    rng = np.random.default_rng(8)
    edges = np.linspace(-2.5, 2.5, 51)
    a = bootstrap_densities(rng.normal(size=20_000), edges, 30, rng)
    b = bootstrap_densities(rng.normal(size=20_000), edges, 30, rng)
    p = pulls(*replica_stats(a), *replica_stats(b))
    assert abs(np.mean(p)) < 0.4
    assert 0.65 < np.std(p) < 1.4
    shifted = bootstrap_densities(rng.normal(0.3, 1, size=20_000), edges, 30, rng)
    assert np.max(np.abs(pulls(*replica_stats(shifted), *replica_stats(b)))) > 5


def test_pulls_nan_without_variance() -> None:
    assert np.isnan(pulls(np.array([0.1]), np.array([0.0]), np.array([0.2]), np.array([0.0]))[0])


# -- classifier ------------------------------------------------------------------------
def test_classifier_auc_half_for_one_distribution_and_detects_a_correlation() -> None:
    rng = np.random.default_rng(9)
    same = classifier_auc(rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3)), seed=1)
    assert same["auc"] == pytest.approx(0.5, abs=max(0.02, 5 * same["auc_null_std"]))
    # identical 1D marginals, different correlation: invisible to 1D histograms
    cov = [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]]
    corr = rng.multivariate_normal(np.zeros(3), cov, size=20_000)
    assert classifier_auc(corr, rng.normal(size=(20_000, 3)), seed=1)["auc"] > 0.6


# -- amplification --------------------------------------------------------------------------
def test_expected_quantile_mse_of_true_samples_matches_monte_carlo() -> None:
    rng = np.random.default_rng(10)
    edges = np.linspace(0, 1, 11)
    mse = np.mean([quantile_mse(rng.random(200), edges) for _ in range(3000)])
    assert mse == pytest.approx(expected_sample_mse(200, 10), rel=0.05)


def test_amplification_of_the_true_density_is_its_sample_ratio() -> None:
    rng = np.random.default_rng(11)
    edges = np.linspace(0, 1, 21)
    n_train, n_gen = 100, 5000
    # a perfect generator: n_gen true events are worth n_gen true events
    mse = np.mean([quantile_mse(rng.random(n_gen), edges) for _ in range(60)])
    assert equivalent_events(mse, 20) / n_train == pytest.approx(n_gen / n_train, rel=0.1)
    out = amplification(rng.random(n_gen), edges, n_train)
    assert out["amplification_at_size"] == pytest.approx(n_gen / n_train, rel=0.6)
    assert out["asymptotic_mse"] < expected_sample_mse(n_gen, 20)


def test_a_generator_resampling_its_training_set_is_worth_its_training_set() -> None:
    rng = np.random.default_rng(12)
    edges = np.linspace(0, 1, 11)
    n_train = 300
    asymptotic = []
    for _ in range(30):
        train = rng.random(n_train)
        generated = rng.choice(train, size=20_000)
        out = amplification(generated, edges, n_train)
        asymptotic.append(out["asymptotic_mse"])
    # the asymptotic MSE is the training sample's own MSE: amplification ≈ 1
    assert equivalent_events(float(np.mean(asymptotic)), 10) / n_train == pytest.approx(1.0, rel=0.2)


def test_pooled_amplification_of_copying_generators_is_one_and_of_the_truth_large() -> None:
    from mlegpipe.metrics.amplification import pooled_amplification

    rng = np.random.default_rng(15)
    edges = np.linspace(0, 1, 51)
    n_train = 100
    copy_a, truth_a = [], []
    for _ in range(40):
        train = rng.random(n_train)
        copy_a.append(amplification(rng.choice(train, size=50_000), edges, n_train)["asymptotic_mse"])
        truth_a.append(amplification(rng.random(50_000), edges, n_train)["asymptotic_mse"])
    # a generator that resamples its 100 training events is worth its 100 events (50 quantiles, seed 002)
    copied = pooled_amplification(copy_a, 50, n_train)
    assert copied["amplification"] == pytest.approx(1.0, rel=0.15)
    assert copied["amplification_low"] < copied["amplification"] < copied["amplification_high"]
    # sampling the true density: limited only by the generated statistics (50 000 events = 500 x)
    assert pooled_amplification(truth_a, 50, n_train)["amplification"] > 50
    # the mean MSE is converted once: one bad training weighs more than in the mean of the factors
    out = pooled_amplification([1e-5, 1e-4], 10, 100)
    assert out["amplification"] == pytest.approx(0.09 / 5.5e-5 / 100)
    assert out["amplification"] < np.mean([0.09 / 1e-5 / 100, 0.09 / 1e-4 / 100])
    with pytest.raises(DataError):
        pooled_amplification([], 10, 100)


def test_flow_noise_augmentation_learns_the_density_smoothed_by_its_kernel() -> None:
    """The camel flow's ``noise``: N(0, 1) events with noise σ = 1 (standardized units) are learned as N(0, 2)."""
    from mlegpipe.context import StageContext
    from mlegpipe.schema import build_params
    from mlegpipe_builtins.generators.flow import FlowGenerator

    rng = np.random.default_rng(8)
    train = EventBatch.from_columns({"x": rng.normal(size=4000)})
    valid = EventBatch.from_columns({"x": rng.normal(size=500)})
    stds = {}
    for noise in (0.0, 1.0):
        raw = {"feature_map": "columns", "features": ["x"], "transforms": 1, "hidden": [16], "steps": 400,
               "lr": 0.01, "batch_size": 500, "validate_every": 0, "checkpoint_every": 0, "noise": noise}
        gen = FlowGenerator(build_params(FlowGenerator.Params, raw, "generator"), StageContext("generator", seed=2))
        gen.fit(train, valid)
        stds[noise] = float(gen.sample(20_000, np.random.SeedSequence(1)).column("x").std())
    assert stds[0.0] == pytest.approx(1.0, abs=0.08)
    assert stds[1.0] == pytest.approx(np.sqrt(2.0), abs=0.1)


def test_asymptotic_mse_fit() -> None:
    n = np.array([100.0, 300.0, 1000.0, 3000.0])
    assert asymptotic_mse(n, 2e-4 + 0.09 / n, 10) == pytest.approx(2e-4, rel=1e-6)
    assert asymptotic_mse(np.array([1000.0]), np.array([0.09 / 1000]), 10) == pytest.approx(0.0, abs=1e-12)


# -- memorization ------------------------------------------------------------------------------
def test_memorization_ratio_of_copies_and_of_new_events() -> None:
    rng = np.random.default_rng(13)
    train = rng.normal(size=(5000, 3))
    copies = train[rng.integers(0, len(train), 5000)] + rng.normal(scale=1e-4, size=(5000, 3))
    fresh = memorization_ratio(rng.normal(size=(5000, 3)), rng.normal(size=(5000, 3)), train)
    copied = memorization_ratio(copies, rng.normal(size=(5000, 3)), train)
    assert fresh["ratio"] == pytest.approx(1.0, abs=0.1)
    assert copied["ratio"] < 0.01


# -- physicality ----------------------------------------------------------------------------------
def _dis_events(beams: Beams, n: int, rng: np.random.Generator) -> EventBatch:
    from mlegpipe_builtins.dis.kinematics import lepton_from_dis

    x = 10 ** rng.uniform(-2, -0.3, n)
    q2 = np.minimum(10 ** rng.uniform(0, 2, n), 0.9 * x * (beams.s - beams.hadron_mass**2))
    e, px, py, pz = lepton_from_dis(x, q2, rng.uniform(0, 2 * np.pi, n), beams)
    return EventBatch.from_columns({"lepton_E": e, "lepton_px": px, "lepton_py": py, "lepton_pz": pz}, beams)


def test_physicality_zero_for_physical_events_and_counts_energy_above_beam() -> None:
    rng = np.random.default_rng(14)
    beams = Beams.preset("sym50")
    good = _dis_events(beams, 2000, rng)
    assert physicality(good, cuts={"q2_min": 0.9})["unphysical"] == 0.0
    # push 10 % of the leptons beyond the beam energy through p_T (the FAT-GAN failure mode)
    px = good.column("lepton_px").copy()
    px[:200] += 60.0
    e = np.sqrt(px**2 + good.column("lepton_py") ** 2 + good.column("lepton_pz") ** 2)
    bad = good.with_columns(lepton_px=px, lepton_E=e)
    out = physicality(bad)
    assert out["energy_above_beam"] == pytest.approx(0.1)
    assert out["unphysical"] >= 0.1


def test_physicality_no_energy_limit_at_hera() -> None:
    rng = np.random.default_rng(15)
    out = physicality(_dis_events(Beams.preset("hera"), 1000, rng), cuts={"q2_min": 0.99})
    assert "energy_above_beam" not in out
    assert out["unphysical"] == 0.0


def test_physicality_from_labels_and_cuts() -> None:
    b = EventBatch.from_columns({"x": np.array([0.1, 0.2, -0.1, 0.5]), "y": np.array([0.5, 1.5, 0.5, 0.5]),
                                 "Q2": np.array([5.0, 5.0, 5.0, 0.5]), "W2": np.array([20.0, 20.0, 20.0, 20.0])})
    out = physicality(b, cuts={"q2_min": 1.0, "w2_min": 10.0})
    assert out["x_outside"] == 0.25 and out["y_outside"] == 0.25 and out["q2_below_cut"] == 0.25
    assert out["unphysical"] == 0.75
    with pytest.raises(DataError, match="no physicality check applies"):
        physicality(EventBatch.from_columns({"a": np.ones(3)}))


# -- the standard table and targets -----------------------------------------------------------------
def _sample(rng: np.random.Generator, n: int, shift: float = 0.0) -> EventBatch:
    beams = Beams.preset("eic10x100")
    from mlegpipe_builtins.dis.kinematics import lepton_from_dis

    x = 10 ** rng.normal(-1.7 + shift, 0.35, n).clip(-2.9, -0.05)
    q2 = 10 ** rng.uniform(0.1, 1.5, n)
    ok = q2 < 0.9 * x * (beams.s - beams.hadron_mass**2)
    x, q2 = x[ok], q2[ok]
    e, px, py, pz = lepton_from_dis(x, q2, rng.uniform(0, 2 * np.pi, x.size), beams)
    return EventBatch.from_columns({"lepton_E": e, "lepton_px": px, "lepton_py": py, "lepton_pz": pz,
                                    "x": x, "Q2": q2}, beams)


def test_compare_samples_same_distribution_passes_and_shift_fails() -> None:
    rng = np.random.default_rng(16)
    ref, ref2, same = _sample(rng, 20_000), _sample(rng, 20_000), _sample(rng, 20_000)
    train = _sample(rng, 20_000)
    table = compare_samples(same, ref, ref2, training=train, cuts={"q2_min": 1.0})
    for f, entry in table["features"].items():
        assert 0.6 < entry["chi2_ndf"] < 1.6, f
        assert 0.6 < entry["chi2_ndf_floor"] < 1.6, f
    assert 0.6 < table["joints"]["x:Q2"]["chi2_ndf"] < 1.6
    assert table["classifier"]["auc"] == pytest.approx(0.5, abs=0.025)
    assert table["physicality"]["unphysical"] == 0.0
    assert table["memorization"]["ratio"] == pytest.approx(1.0, abs=0.1)
    shifted = compare_samples(_sample(rng, 20_000, shift=0.1), ref, ref2, classifier=True)
    assert shifted["features"]["x"]["chi2_ndf"] > 2 * shifted["features"]["x"]["chi2_ndf_floor"]
    assert shifted["classifier"]["auc"] > 0.55
    rows = {r["metric"]: r["passed"] for r in evaluate_targets(shifted)}
    assert rows["χ²/ndf x"] is False and rows["classifier AUC"] is False
    good = {r["metric"]: r["passed"] for r in evaluate_targets(table)}
    assert good["classifier AUC"] and good["unphysical fraction"] and good["memorization ratio"]


def test_edges_for_is_robust_to_outliers() -> None:
    values = np.concatenate([np.linspace(0, 1, 10_000), [1e9]])
    edges = edges_for([values], bins=10)
    assert edges[-1] < 2.0
    with pytest.raises(DataError, match="no finite values"):
        edges_for([np.array([np.nan])])


def test_compare_samples_tolerates_and_counts_non_finite_values() -> None:
    rng = np.random.default_rng(18)

    def batch() -> EventBatch:
        a = rng.normal(size=4000)
        a[:40] = np.nan
        return EventBatch.from_columns({"a": a, "b": rng.normal(size=4000)})

    table = compare_samples(batch(), batch(), batch(), training=batch(), classifier=False)
    entry = table["features"]["a"]
    assert entry["nonfinite"] == pytest.approx(0.01)
    assert np.isfinite([entry["w1"], entry["w1_floor"], entry["chi2_ndf"], table["mmd2"]]).all()
    assert table["memorization"]["ratio"] == pytest.approx(1.0, abs=0.15)


def test_memorization_in_many_dimensions_finds_copies_directly() -> None:
    from mlegpipe.metrics.memorization import HIGH_DIMENSION_QUERIES, KD_TREE_MAX_DIMENSIONS, memorization_ratio

    rng = np.random.default_rng(3)
    d = KD_TREE_MAX_DIMENSIONS + 8
    train, independent = rng.normal(size=(8000, d)), rng.normal(size=(8000, d))
    fresh = memorization_ratio(rng.normal(size=(8000, d)), independent, train)
    assert fresh["ratio"] == pytest.approx(1.0, abs=0.05) and fresh["n_queries"] == HIGH_DIMENSION_QUERIES
    copies = memorization_ratio(train[rng.integers(0, 8000, 8000)], independent, train)
    assert copies["ratio"] == 0.0 and copies["exact_copies"] == 1.0
