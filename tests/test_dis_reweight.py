"""Tests of the ``dis`` source's closure-test spectrum reweighting (``x_power``, ``q2_power``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import build_params
from mlegpipe.stages import StageContext
from mlegpipe_builtins.truth.dis import DISTruth


def make_source(seed: int = 7, name: str = "truth", **raw: object) -> DISTruth:
    """A ``dis`` source built the way the pipeline builds it: TOML table → Params."""
    return DISTruth(build_params(DISTruth.Params, dict(raw), name), StageContext(name, seed=seed))


@pytest.fixture(scope="module")
def physics() -> tuple[DISTruth, dict[str, np.ndarray]]:
    """30 000 unreweighted HERA events (Q² > 2) and their source."""
    src = make_source(seed=3, events=30_000, q2_min=2.0)
    batch = src.read()
    return src, {"x": batch.column("x"), "Q2": batch.column("Q2")}


@pytest.mark.parametrize(("key", "power"), [("x", 0.5), ("Q2", -0.5)])
def test_spectrum_ratio_follows_power_law(physics: tuple, key: str, power: float) -> None:
    """Reweighted / physics spectrum in ln x (ln Q²) follows the power law.

    (1) The reweighted histogram agrees with the physics events weighted by (v/v_ref)^power: Pearson χ²
    with both samples' statistical variances below its 99.9 % quantile (false-alarm rate 1e-3). (2) A weighted straight-line fit of ln(ratio of
    the normalized histograms) against the bin's ln v has slope = power within 4σ and 0.08.
    """
    src0, cols = physics
    n = 20_000
    raw = {"x_power": power} if key == "x" else {"q2_power": power}
    src = make_source(seed=4, events=n, q2_min=2.0, **raw)
    values = src.read().column(key)
    ref = cols[key]
    w = src.spectrum_weight(cols["x"], cols["Q2"])
    edges = np.quantile(np.log(ref), np.linspace(0.0, 1.0, 11))
    edges[0], edges[-1] = edges[0] - 1e-9, edges[-1] + 1e-9
    counts, _ = np.histogram(np.log(values), edges)
    sw, _ = np.histogram(np.log(ref), edges, weights=w)
    sw2, _ = np.histogram(np.log(ref), edges, weights=w * w)
    expected = n * sw / w.sum()
    var = counts + (n / w.sum()) ** 2 * sw2
    chi2 = float(((counts - expected) ** 2 / var).sum())
    ndf = len(counts) - 1
    assert chi2 < stats.chi2.ppf(0.999, ndf), (chi2, ndf)
    # slope of ln(reweighted density / physics density) against the mean ln v of each bin
    plain, _ = np.histogram(np.log(ref), edges)
    centre = np.array([np.log(ref)[(np.log(ref) >= a) & (np.log(ref) < b)].mean()
                       for a, b in zip(edges[:-1], edges[1:], strict=True)])
    y = np.log(counts / n) - np.log(plain / len(ref))
    sigma2 = 1.0 / counts + 1.0 / plain
    design = np.stack([np.ones_like(centre), centre], axis=1) / np.sqrt(sigma2)[:, None]
    coef, *_ = np.linalg.lstsq(design, y / np.sqrt(sigma2), rcond=None)
    slope_err = float(np.sqrt(np.linalg.inv(design.T @ design)[1, 1]))
    assert abs(coef[1] - power) < 4 * slope_err and abs(coef[1] - power) < 0.08, (coef[1], slope_err)


def test_cross_section_is_reweighted_integral(physics: tuple) -> None:
    """σ of the reweighted density = σ_physics · E_physics[w] (within 4σ of both MC errors); info flags it."""
    src0, cols = physics
    src = make_source(seed=4, events=5_000, q2_min=2.0, q2_power=-0.5, x_power=0.3)
    src.read()
    info, info0 = src.info(), src0.info()
    w = src.spectrum_weight(cols["x"], cols["Q2"])
    predicted = info0["cross_section_pb"] * w.mean()
    err = np.hypot(info["cross_section_error_pb"], predicted * w.std() / np.sqrt(len(w)))
    assert abs(info["cross_section_pb"] - predicted) < 4 * err
    assert info["reweighted"] and not info0["reweighted"]
    assert info["settings"]["reweight"] == {"x_power": 0.3, "q2_power": -0.5, "x_ref": 0.01, "q2_ref": 10.0}
    assert "reweight" not in info0["settings"]


def test_reproducible_and_zero_power_is_physics() -> None:
    """Same seed → identical reweighted events; other seed → other events; power 0 = the physics events."""
    a = make_source(seed=9, events=3000, q2_power=-0.5).read().column("Q2")
    b = make_source(seed=9, events=3000, q2_power=-0.5, chunk_size=700).read().column("Q2")
    np.testing.assert_array_equal(a, b)
    c = make_source(seed=10, events=3000, q2_power=-0.5).read().column("Q2")
    assert not np.array_equal(a, c)
    plain = make_source(seed=9, events=3000).read().column("Q2")
    zero = make_source(seed=9, events=3000, q2_power=0.0, x_power=0.0, q2_ref=4.0).read().column("Q2")
    np.testing.assert_array_equal(plain, zero)
    assert not np.array_equal(a, plain)
    assert np.median(a) < np.median(plain)  # a falling weight in Q² moves the events down


@pytest.mark.parametrize(
    ("raw", "path"),
    [({"x_power": 5.0}, "truth.x_power"), ({"q2_power": -3.5}, "truth.q2_power"),
     ({"x_ref": 0.0}, "truth.x_ref"), ({"q2_ref": -1.0}, "truth.q2_ref"), ({"q2_power": "half"}, "truth.q2_power")],
)
def test_bad_reweight_params(raw: dict, path: str) -> None:
    """Out-of-range or mistyped reweighting parameters raise ConfigError naming the TOML path."""
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        make_source(**raw)
