"""Tests of mlegpipe.toys and the toy truth sources: exact pdfs, exact quantile cells, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlegpipe.context import StageContext
from mlegpipe.registry import StageRegistry
from mlegpipe.schema import build_params
from mlegpipe.toys import CamelBack, GaussianShell, VertexGaussian, VertexUniform, make_toy

TOY_NAMES = ["camel", "ring", "shell5d", "vertex-gauss", "vertex-uniform"]


# -- exact densities ----------------------------------------------------------------------


def test_camel_pdf_normalized_and_quantiles_equal_probability() -> None:
    camel = CamelBack()
    total, _ = integrate.quad(lambda x: camel.pdf(np.array([x]))[0], -np.inf, np.inf)
    assert total == pytest.approx(1.0, abs=1e-10)
    for n_q in (10, 20, 50):
        edges = camel.quantile_edges(n_q)[0]
        probs = [integrate.quad(lambda x: camel.pdf(np.array([x]))[0], a, b, epsabs=1e-13)[0]
                 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        np.testing.assert_allclose(probs, 1.0 / n_q, atol=1e-9)
    # symmetric: the median is 0 and the edges are antisymmetric
    e10 = camel.quantile_edges(10)[0][1:-1]
    np.testing.assert_allclose(e10, -e10[::-1], atol=1e-10)
    assert camel.quantile_edges(2)[0][1] == pytest.approx(0.0, abs=1e-12)


def polar_cell_probability(ring: GaussianShell, r0: float, r1: float, p0: float, p1: float) -> float:
    """∫∫ pdf(x, y) r dr dφ over a polar cell, using the Cartesian pdf."""
    def f(r: float, phi: float) -> float:
        return r * ring.pdf(np.array([[r * math.cos(phi), r * math.sin(phi)]]))[0]
    return integrate.dblquad(f, p0, p1, r0, min(r1, 20.0), epsabs=1e-11)[0]


def test_ring_pdf_normalized_and_7x7_cells_equal_probability() -> None:
    ring = make_toy("ring")
    assert ring.features == ("x", "y")
    assert polar_cell_probability(ring, 0.0, np.inf, 0.0, 2 * math.pi) == pytest.approx(1.0, abs=1e-8)
    r_edges, phi_edges = ring.quantile_edges(7)
    for i in (0, 3, 6):
        for j in (0, 4):
            p = polar_cell_probability(ring, r_edges[i], r_edges[i + 1], phi_edges[j], phi_edges[j + 1])
            assert p == pytest.approx(1 / 49, abs=1e-8)


def test_shell5d_pdf_normalized() -> None:
    shell = make_toy("shell5d")
    rng = np.random.default_rng(3)
    # along any direction the radial integral with the 5D Jacobian is one
    for u in rng.normal(size=(3, 5)):
        u /= np.linalg.norm(u)
        val, _ = integrate.quad(lambda r, u=u: shell.pdf((r * u)[None, :])[0] * r**4 * shell.sphere_area, 0, 20)
        assert val == pytest.approx(1.0, abs=1e-9)
    # importance-sampling estimate of ∫ pdf d⁵x with a wide Gaussian proposal
    proposal = stats.multivariate_normal(np.zeros(5), 9.0 * np.eye(5))
    pts = proposal.rvs(400_000, random_state=rng)
    w = shell.pdf(pts) / proposal.pdf(pts)
    estimate, error = w.mean(), w.std() / math.sqrt(len(w))
    assert abs(estimate - 1.0) < 4 * error and error < 0.01


@pytest.mark.parametrize("m", [1, 2, 3])
def test_sin_power_angle_quantiles_exact(m: int) -> None:
    shell = GaussianShell(dim=m + 2)  # the first polar angle of a (m+2)-dim shell has density ∝ sin^m
    edges = shell.quantile_edges(6)[1]
    norm = integrate.quad(lambda t: math.sin(t) ** m, 0, math.pi)[0]
    probs = [integrate.quad(lambda t: math.sin(t) ** m, a, b)[0] / norm for a, b in zip(edges[:-1], edges[1:],
                                                                                         strict=True)]
    np.testing.assert_allclose(probs, 1 / 6, atol=1e-12)


def test_shell5d_cells_by_importance_weights_and_by_sampling() -> None:
    """Both routes check 3⁵ = 243 equal cells: weighting a foreign proposal by pdf, and sampling."""
    shell = make_toy("shell5d")
    n_cells = shell.n_cells(3)
    rng = np.random.default_rng(11)
    # 1) sample(): multinomial χ² over the 243 cells (ndf 242, σ ≈ 22)
    pts = shell.sample(243_000, rng)
    counts = np.bincount(shell.quantile_index(pts, 3), minlength=n_cells)
    chi2 = float(((counts - 1000) ** 2 / 1000).sum())
    assert chi2 < 242 + 5 * 22
    # 2) pdf(): proposal points weighted by pdf/q land with equal weight in every cell
    proposal = stats.multivariate_normal(np.zeros(5), 16.0 * np.eye(5))
    q = proposal.rvs(300_000, random_state=rng)
    frac = shell.quantile_fractions(q, 3, weights=shell.pdf(q) / proposal.pdf(q))
    assert np.abs(frac * n_cells - 1).mean() < 0.08


def test_hyperspherical_coordinates_invert() -> None:
    shell = make_toy("shell5d")
    pts = shell.sample(1000, np.random.default_rng(5))
    c = shell.coordinates(pts)
    r, p1, p2, p3, p4 = c.T
    rebuilt = np.stack([r * np.cos(p1), r * np.sin(p1) * np.cos(p2), r * np.sin(p1) * np.sin(p2) * np.cos(p3),
                        r * np.sin(p1) * np.sin(p2) * np.sin(p3) * np.cos(p4),
                        r * np.sin(p1) * np.sin(p2) * np.sin(p3) * np.sin(p4)], axis=1)
    np.testing.assert_allclose(rebuilt, pts, atol=1e-10)
    assert (p1 >= 0).all() and (p1 <= math.pi).all() and (p4 >= 0).all() and (p4 < 2 * math.pi).all()


@pytest.mark.parametrize("name", TOY_NAMES)
def test_samples_follow_exact_marginals(name: str) -> None:
    toy = make_toy(name)
    pts = toy.sample(20_000, np.random.default_rng(2))
    coords = toy.coordinates(pts)
    for k in range(toy.dim):
        p = stats.kstest(coords[:, k], lambda v, k=k: toy.marginal_cdf(k, v)).pvalue
        assert p > 1e-3, (name, toy.coordinate_names[k], p)
    # and the cells of 10 quantiles per coordinate are filled evenly (fractions within 5σ)
    frac = toy.quantile_fractions(pts, 10 if toy.dim <= 2 else 3)
    sigma = np.sqrt(frac.mean() * (1 - frac.mean()) / len(pts))
    assert np.abs(frac - frac.mean()).max() < 5 * sigma


def test_vertex_toys_exact() -> None:
    gauss, uni = VertexGaussian(dim=2), VertexUniform(dim=2, low=-1.0, high=3.0)
    np.testing.assert_allclose(gauss.quantile_edges(4)[0][1:-1], stats.norm.ppf([0.25, 0.5, 0.75]))
    np.testing.assert_allclose(uni.quantile_edges(4)[1], [-1, 0, 1, 2, 3])
    val = integrate.dblquad(lambda a, b: gauss.pdf(np.array([[a, b]]))[0], -9, 9, -9, 9)[0]
    assert val == pytest.approx(1.0, abs=1e-7)
    assert uni.pdf(np.array([[0.0, 0.0], [3.5, 0.0]])).tolist() == [1 / 16, 0.0]
    assert gauss.quantile_mse(gauss.sample(10, np.random.default_rng(0)), 2) > 0


def test_quantile_mse_matches_definition() -> None:
    camel = CamelBack()
    pts = camel.sample(100, np.random.default_rng(9))
    edges = camel.quantile_edges(10)[0]
    counts, _ = np.histogram(pts[:, 0], edges)
    assert camel.quantile_mse(pts, 10) == pytest.approx(np.mean((counts / 100 - 0.1) ** 2), rel=1e-12)


# -- truth-source plugins -----------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():  # noqa: ANN201
    """A registry filled by the ``toys`` entry point only (the other plugins are not needed here)."""
    import importlib.metadata as md

    registry = StageRegistry()
    md.entry_points(group="mlegpipe")["toys"].load().mlegpipe_register_stages(registry=registry)
    return registry


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_sources_registered_reproducible(registry, name: str) -> None:  # noqa: ANN001
    cls = registry.get("truth", name).cls
    params = build_params(cls.Params, {"events": 1200}, "truth")
    a = cls(params, StageContext("truth", seed=7)).read()
    b = cls(params, StageContext("truth", seed=7)).read()
    c = cls(params, StageContext("truth", seed=8)).read()
    assert len(a) == 1200
    feats = cls(params, StageContext("truth")).exact_density().features
    assert a.fields == list(feats)
    np.testing.assert_array_equal(a.matrix(feats), b.matrix(feats))
    assert not np.array_equal(a.matrix(feats), c.matrix(feats))
    assert cls(params, StageContext("truth")).exact_density().name == name


def test_toy_source_events_do_not_depend_on_count(registry, monkeypatch) -> None:  # noqa: ANN001
    """Blocks of fixed size: the first 100 events of a 250-event run are those of a 100-event run."""
    from mlegpipe_builtins.truth import toys as plugin

    monkeypatch.setattr(plugin, "BLOCK_EVENTS", 64)
    cls = registry.get("truth", "camel").cls
    small = cls(cls.Params(events=100), StageContext("truth", seed=3))
    big = cls(cls.Params(events=250), StageContext("truth", seed=3))
    assert [len(b) for b in big.iter_batches()] == [64, 64, 64, 58]
    np.testing.assert_array_equal(small.read().column("x"), big.read().column("x")[:100])


def test_bad_toy_params_named(registry) -> None:  # noqa: ANN001
    from mlegpipe.exceptions import ConfigError

    cls = registry.get("truth", "vertex-uniform").cls
    with pytest.raises(ConfigError, match="high"):
        build_params(cls.Params, {"low": 3.0, "high": 1.0}, "truth")
    with pytest.raises(ConfigError, match="truth.sigma"):
        build_params(registry.get("truth", "ring").cls.Params, {"sigma": 0.0}, "truth")
