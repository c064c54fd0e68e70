"""Coverage of unfolding bands (mlegpipe.unfold.Coverage) on cases whose answer is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from mlegpipe.exceptions import DataError
from mlegpipe.metrics.pulls import bootstrap_densities
from mlegpipe.unfold import NORMAL_COVERAGE, Band, Coverage, CoverageTarget, pooled_pulls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_standard_normal_pulls_have_unit_std_and_68_percent_coverage(seed: int) -> None:
    n = 40_000
    c = Coverage.of(np.random.default_rng(seed).normal(size=n))
    # within 4 standard errors of the N(0, 1) values
    assert abs(c.mean) < 4 / np.sqrt(n)
    assert abs(c.std - 1.0) < 4 / np.sqrt(2 * n)
    assert abs(c.covered - NORMAL_COVERAGE) < 4 * np.sqrt(NORMAL_COVERAGE * (1 - NORMAL_COVERAGE) / n)
    assert abs(c.within_2 - 0.9545) < 4 * np.sqrt(0.9545 * 0.0455 / n)
    assert c.meets(CoverageTarget())


def _bands(rng: np.random.Generator, bins: int, band_scale: float = 1.0, bias: float = 0.0) -> tuple[Band, Band]:
    """A band whose mean scatters about the true density by its stated std (times ``band_scale``), and a
    reference scattering by its own; ``bias`` shifts the band by that many of its stds."""
    truth = rng.uniform(0.01, 0.05, bins)
    s_band, s_ref = 0.1 * truth, 0.05 * truth
    band = Band(truth + s_band * (band_scale * rng.normal(size=bins) + bias), s_band**2, np.zeros((0, bins)))
    reference = Band(truth + s_ref * rng.normal(size=bins), s_ref**2, np.zeros((0, bins)))
    return band, reference


def test_bands_that_mean_what_they_say_are_calibrated_and_others_are_not() -> None:
    rng = np.random.default_rng(5)
    calibrated = Coverage.of(np.concatenate([a.pulls(b) for a, b in (_bands(rng, 100) for _ in range(100))]))
    assert calibrated.meets(CoverageTarget()), calibrated
    # a band claiming half its real spread: pulls std sqrt((4 + 0.25) / (1 + 0.25)) = 1.84
    narrow = Coverage.of(np.concatenate([a.pulls(b) for a, b in (_bands(rng, 100, 2.0) for _ in range(100))]))
    assert narrow.std == pytest.approx(np.sqrt(4.25 / 1.25), rel=0.05)
    assert not narrow.meets(CoverageTarget())
    # a band twice as wide as its real spread: std 0.59, coverage above 0.76
    wide = Coverage.of(np.concatenate([a.pulls(b, extra_variance=3 * a.var)
                                       for a, b in (_bands(rng, 100) for _ in range(100))]))
    assert wide.std == pytest.approx(np.sqrt(1.25 / 4.25), rel=0.05)
    assert wide.covered > 0.76 and not wide.meets(CoverageTarget())
    # a bias of 0.5 of the band's std: pull mean 0.5 / sqrt(1.25) = 0.45
    biased = Coverage.of(np.concatenate([a.pulls(b) for a, b in (_bands(rng, 100, bias=0.5) for _ in range(100))]))
    assert biased.mean == pytest.approx(0.5 / np.sqrt(1.25), abs=0.05)
    assert not biased.meets(CoverageTarget())


def test_bootstrap_band_width_is_the_multinomial_error() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    values = rng.uniform(0.0, 1.0, n)
    edges = np.array([0.0, 0.02, 0.1, 0.5, 1.0])
    band = Band.from_replicas(bootstrap_densities(values, edges, 400, rng))
    p = np.diff(edges)
    assert band.relative_width() == pytest.approx(np.sqrt((1 - p) / (n * p)), rel=0.12)


def test_pooled_pulls_leave_out_flagged_and_undefined_bins() -> None:
    pulls = pooled_pulls([[0.5, None, 3.0], [np.nan, -0.2]], [[False, False, True], [False, False]])
    assert pulls.tolist() == [0.5, -0.2]
    with pytest.raises(DataError, match="2 pull lists but 1 flag"):
        pooled_pulls([[0.1], [0.2]], [[False]])
    with pytest.raises(DataError, match="at least two finite pulls"):
        Coverage.of([None, 1.0])
