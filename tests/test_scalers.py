"""The invertible scalers (mlegpipe.features.scalers, mlegpipe.features.edges): one contract for every class."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch

import mlegpipe.features as features
from mlegpipe.exceptions import DataError
from mlegpipe.features import (
    AsinhScale,
    Chain,
    EdgeLog,
    LogStandardize,
    QuantileGaussianize,
    Scaler,
    Standardize,
)
from mlegpipe.features.edges import ln_from_logit, logit_from_ln
from mlegpipe_builtins.detectors._fold_features import FeatureScaler

#: a fresh, unfitted instance of every scaler class (Chain: of two others)
FACTORIES: dict[str, Callable[[], Scaler]] = {
    "Standardize": Standardize,
    "LogStandardize": LogStandardize,
    "AsinhScale": lambda: AsinhScale([True, False, True]),
    "QuantileGaussianize": lambda: QuantileGaussianize(max_knots=512),
    "EdgeLog": EdgeLog,
    "Chain": lambda: Chain(AsinhScale(), Standardize()),
    "FeatureScaler": lambda: FeatureScaler(["a", "b", "c"]),
}


def _subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in {sub, *_subclasses(sub)}}


def test_every_scaler_class_is_tested() -> None:
    """A new scaler in mlegpipe.features (or one of the built-in plugins) joins the contract tests below."""
    tested = {type(make()) for make in FACTORIES.values()}
    known = {c for c in _subclasses(Scaler) if c.__module__.startswith(("mlegpipe.", "mlegpipe_builtins."))}
    assert known <= tested, sorted(c.__name__ for c in known - tested)
    assert {name for name in features.__all__ if isinstance(getattr(features, name), type)
            and issubclass(getattr(features, name), Scaler) and name != "Scaler"} <= set(FACTORIES)


def _training(n: int = 3000, seed: int = 0) -> torch.Tensor:
    """Positive values with a hard lower edge, a power-law tail and a smooth bulk (every scaler applies)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.column_stack([0.5 + rng.exponential(size=n), (1 - rng.uniform(size=n)) ** -1.0,
                                             5.0 + rng.normal(size=n)]))


def _interior(x: torch.Tensor) -> torch.Tensor:
    """Training rows inside the central 98 % of every feature (where a quantile map is invertible)."""
    lo, hi = torch.quantile(x, 0.01, dim=0), torch.quantile(x, 0.99, dim=0)
    return x[((x > lo) & (x < hi)).all(dim=1)]


@pytest.fixture(params=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest) -> tuple[str, Scaler, torch.Tensor]:
    x = _training()
    scaler = FACTORIES[request.param]()
    assert scaler.fit(x) is scaler
    return request.param, scaler, x


def test_transform_keeps_shape_and_dtype(fitted: tuple[str, Scaler, torch.Tensor]) -> None:
    _, scaler, x = fitted
    for dtype in (torch.float64, torch.float32):
        z = scaler.transform(x.to(dtype))
        assert z.shape == x.shape and z.dtype == dtype and torch.isfinite(z).all()


def test_inverse_undoes_transform(fitted: tuple[str, Scaler, torch.Tensor]) -> None:
    _, scaler, x = fitted
    inside = _interior(x)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(inside)).numpy(), inside.numpy(), rtol=1e-9,
                               atol=1e-9)
    z = scaler.transform(inside)
    np.testing.assert_allclose(scaler.transform(scaler.inverse(z)).numpy(), z.numpy(), rtol=1e-9, atol=1e-9)


def test_numpy_helpers_match_torch(fitted: tuple[str, Scaler, torch.Tensor]) -> None:
    _, scaler, x = fitted
    z = scaler.transform_numpy(x.numpy())
    assert isinstance(z, np.ndarray) and np.array_equal(z, scaler.transform(x).numpy())
    assert np.array_equal(scaler.inverse_numpy(z), scaler.inverse(torch.from_numpy(z)).numpy())


def test_state_round_trip_through_a_weights_only_file(fitted: tuple[str, Scaler, torch.Tensor]) -> None:
    name, scaler, x = fitted
    buffer = io.BytesIO()
    torch.save(scaler.state_dict(), buffer)
    buffer.seek(0)
    restored = FACTORIES[name]()
    assert restored.load_state_dict(torch.load(buffer, weights_only=True)) is restored
    z = scaler.transform(x)
    assert torch.equal(restored.transform(x), z) and torch.equal(restored.inverse(z), scaler.inverse(z))


def test_transform_is_differentiable(fitted: tuple[str, Scaler, torch.Tensor]) -> None:
    _, scaler, x = fitted
    inside = _interior(x).clone().requires_grad_(True)
    scaler.transform(inside).sum().backward()
    assert torch.isfinite(inside.grad).all() and (inside.grad != 0).any()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_use_before_fit_is_a_data_error(name: str) -> None:
    with pytest.raises(DataError):
        FACTORIES[name]().transform(torch.ones(2, 3, dtype=torch.float64))


# -- the quantile map ----------------------------------------------------------------------------------
def test_gaussianize_maps_a_skewed_marginal_to_a_unit_gaussian_and_back() -> None:
    """The quantile map sends Exp(1) to N(0, 1) (known moments) and inverts it within the knot spacing."""
    rng = np.random.default_rng(3)
    values = np.column_stack([rng.exponential(size=20_000), rng.normal(5.0, 2.0, 20_000)])
    g = QuantileGaussianize().fit(values)
    u = g.transform_numpy(rng.permutation(values))
    np.testing.assert_allclose(u.mean(0), 0.0, atol=0.01)
    np.testing.assert_allclose(u.std(0), 1.0, atol=0.02)
    inner = ((values > np.quantile(values, 0.01, axis=0)) & (values < np.quantile(values, 0.99, axis=0))).all(1)
    back = g.inverse_numpy(g.transform_numpy(values))
    np.testing.assert_allclose(back[inner], values[inner], atol=0.01)  # exact at the knots, linear between
    assert np.all(np.diff(g.transform_numpy(np.linspace([-1.0, -5.0], [8.0, 15.0], 200)), axis=0) >= 0)  # monotone
    assert g.inverse_numpy(np.array([[9.0, -9.0]]))[0, 0] <= values[:, 0].max()  # never beyond the training range


def test_gaussianize_is_numpy_interp_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    values = np.column_stack([rng.exponential(size=5000), np.round(rng.normal(size=5000), 1)])  # ties in column 2
    g = QuantileGaussianize().fit(values)
    knots, levels = (t.numpy() for t in (g.knots, g.levels))
    probe = np.concatenate([values, rng.normal(0.0, 5.0, (500, 2)), knots])
    u = np.stack([np.interp(probe[:, j], knots[:, j], levels) for j in range(2)], axis=1)
    assert np.array_equal(g.transform_numpy(probe), u)
    assert np.array_equal(g.inverse_numpy(u), np.stack([np.interp(u[:, j], levels, knots[:, j]) for j in range(2)],
                                                        axis=1))


# -- the edge map --------------------------------------------------------------------------------------
def test_edge_map_finds_cuts_not_smooth_tails_and_inverts() -> None:
    g = torch.Generator().manual_seed(1)
    ln_q2 = -torch.log1p(-torch.rand(20_000, generator=g, dtype=torch.float64)) / 1.2  # Q^-2.4 above a cut: step at 0
    both = torch.rand(20_000, generator=g, dtype=torch.float64)  # uniform: a step at each end
    smooth = torch.randn(20_000, generator=g, dtype=torch.float64)  # Gaussian: no edge
    x = torch.stack([ln_q2, both, smooth], dim=1)
    edges = EdgeLog().fit(x)
    assert edges.edged() == [(True, False), (True, True), (False, False)]
    assert float(edges.lo[0]) < 0.0 < float(x[:, 0].min()) + 1e-3  # just below the lowest training value
    np.testing.assert_allclose(edges.inverse(edges.transform(x)).numpy(), x.numpy(), atol=1e-9)
    far = edges.inverse(torch.tensor([[-60.0, -60.0, -60.0], [60.0, 60.0, 60.0]], dtype=torch.float64))
    assert (far[:, 0] >= edges.lo[0]).all() and (far[:, 1] >= edges.lo[1]).all() and (far[:, 1] <= edges.hi[1]).all()
    assert torch.isfinite(edges.transform(x - 1.0)).all()  # values past a bound stay finite (held inside)
    assert EdgeLog(enabled=False).fit(x).edged() == [(False, False)] * 3
    assert torch.equal(EdgeLog.identity(3).transform(x), x)


def test_edge_map_state_is_checked() -> None:
    state = EdgeLog().fit(_training()).state_dict()
    with pytest.raises(DataError, match="lacks"):
        EdgeLog().load_state_dict({k: v for k, v in state.items() if k != "hi"})
    with pytest.raises(DataError, match="shapes"):
        EdgeLog().load_state_dict({**state, "hi": state["hi"][:2]})


def test_logit_of_a_bounded_log_feature() -> None:
    ln_u = torch.log(torch.tensor([1e-5, 1e-2, 0.5, 0.9, 0.999], dtype=torch.float64))
    v = logit_from_ln(ln_u)
    assert float(v[0]) == pytest.approx(float(ln_u[0]), abs=1e-4) and float(v[-1]) == pytest.approx(np.log(999.0))
    np.testing.assert_allclose(ln_from_logit(v).numpy(), ln_u.numpy(), rtol=1e-12)
    # never u > 1 (u = 1 only where ln sigmoid rounds to 0)
    assert float(ln_from_logit(torch.tensor(30.0, dtype=torch.float64))) < 0
    assert (ln_from_logit(torch.tensor([1e3, 1e300], dtype=torch.float64)) <= 0).all()
