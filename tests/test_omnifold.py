"""OmniFold-style reweighting: unit weights for identical samples, recovery of a shifted truth, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlegpipe.exceptions import DataError
from mlegpipe.unfold import classifier_weights, omnifold


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_identical_simulation_and_data_give_unit_weights() -> None:
    rng = np.random.default_rng(3)
    gen = rng.normal(size=(1500, 2))
    sim = gen + 0.3 * rng.normal(size=gen.shape)
    w = omnifold(gen, sim, sim.copy(), iterations=2, generator=_gen(0), epochs=3)
    # a classifier between identical samples learns f = 1/2 up to minibatch noise (measured: 95% of the
    # weights within 0.06 of 1, the largest 0.22 off); a real 0.5σ shift moves weights by a factor 1.3-2
    assert np.percentile(np.abs(w - 1), 95) < 0.12
    assert np.abs(w - 1).max() < 0.35
    assert abs(w.mean() - 1) < 1e-9


def test_classifier_ratio_of_two_gaussians() -> None:
    rng = np.random.default_rng(4)
    source = rng.normal(size=(3000, 1))
    target = rng.normal(0.5, 1.0, size=(3000, 1))
    ratio = classifier_weights(target, source, generator=_gen(1), epochs=5)
    exact = np.exp(0.5 * source[:, 0] - 0.125)
    inner = np.abs(source[:, 0]) < 1.5  # the bulk, where the classifier sees enough events
    assert np.median(np.abs(ratio[inner] / exact[inner] - 1)) < 0.1


def test_recovers_a_shifted_truth() -> None:
    rng = np.random.default_rng(5)
    gen = rng.normal(0.0, 1.0, size=(4000, 1))
    sim = gen + 0.5 * rng.normal(size=gen.shape)
    truth = rng.normal(0.5, 1.0, size=(4000, 1))
    data = truth + 0.5 * rng.normal(size=truth.shape)
    w = omnifold(gen, sim, data, iterations=2, generator=_gen(2), epochs=3)
    mean = float(np.average(gen[:, 0], weights=w))
    # prior mean 0, truth mean 0.5; two iterations at 50% resolution recover it within 0.1
    assert abs(mean - 0.5) < 0.1, mean


def test_unmeasured_simulated_events_keep_their_weight_in_the_pull_step() -> None:
    rng = np.random.default_rng(6)
    gen = rng.normal(size=(2000, 1))
    sim = gen + 0.2 * rng.normal(size=gen.shape)
    sim[gen[:, 0] > 1.5] = np.nan
    w = omnifold(gen, sim, sim[np.isfinite(sim[:, 0])], iterations=1, generator=_gen(3), epochs=3)
    assert np.isfinite(w).all() and w.shape == (2000,)


def test_bad_inputs() -> None:
    x = np.zeros((10, 2))
    with pytest.raises(DataError, match="no data events"):
        omnifold(x, x, np.zeros((0, 2)), generator=_gen(0))
    with pytest.raises(DataError, match="detector-level features"):
        omnifold(x, x, np.zeros((5, 3)), generator=_gen(0))
    with pytest.raises(DataError, match="differ in length"):
        omnifold(x, x[:5], x, generator=_gen(0))


# -- the ``omnifold`` plugin in a pipeline ------------------------------------------------------------------


def test_omnifold_plugin_unfolds_a_toy_pipeline_without_a_surrogate(toy_registry, tmp_path) -> None:  # noqa: ANN001
    import json

    from unfold_toy import run_toy, toy_config

    from mlegpipe.report.analysis import analyse_run

    torch.set_num_threads(1)
    config = toy_config(toy_registry, "omnifold", "replicas = 3\nepochs = 3")
    run, samples = run_toy(config, tmp_path / "run")
    info = json.loads((run / "metrics.json").read_text())["stages"]["unfolding"]
    assert info["simulation"] == ["sim_train", "sim_train_detector"] and info["truth"] == "truth_test"
    assert info["detector_features"] == info["vertex_features"] == ["a", "b"]
    unfolded, truth, sim = samples["unfolded"], samples["truth_test"], samples["sim_train"]
    assert len(unfolded) == info["simulation_events_used"] == len(sim)
    np.testing.assert_allclose(unfolded.weights, samples["refolded"].weights)
    for name in ("a", "b"):
        entry = info["observables"][name]
        assert entry["omnifold"]["vertex_pulls"]["bins"] >= 10
        assert entry["omnifold"]["triangular_e3"] < 0.6 * entry["data_uncorrected"]["triangular_e3"]
        assert len(info["binned"][name]["omnifold"]["std"]) == 12
        # the weights move the simulation's mean (0.5 away) most of the way to the truth's
        moved = np.average(unfolded.column(name), weights=unfolded.weights)
        offset = sim.column(name).mean() - truth.column(name).mean()
        assert abs(moved - truth.column(name).mean()) < 0.3 * abs(offset)
    analysis = analyse_run(samples, config.report_plan, classifier=False, plots=False)
    assert {"unfolded", "refolded"} <= set(analysis.metrics["comparisons"])
