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
