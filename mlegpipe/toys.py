"""Toy densities with exact pdfs and exact equal-probability quantile cells.

The GANplifying toys (seed 002): the 1D camel back
P(x) = [N(x; -4, 1) + N(x; 4, 1)] / 2, the 2D Gaussian ring and the 5D
Gaussian spherical shell, both with the radial profile
P(r) = N(r; 4, 1) + N(r; -4, 1) on r ≥ 0 and a uniform angular density (the
shell is isotropic: uniform on the 4-sphere). Quantiles are defined as in the
paper: per coordinate (x for the camel; r and the polar angles for the ring and
shell) equal-probability intervals, and in 2D/5D their products, which hold
equal probability because the coordinates are independent. The thesis ch. 6.3
vertex toys: ``toy1`` X ~ N(0, 1) (training) and ``toy2`` X ~ U(a, b) (test),
per feature, two features by default.

Example:
    >>> import numpy as np
    >>> camel = CamelBack()
    >>> pts = camel.sample(1000, np.random.default_rng(1))
    >>> int(np.bincount(camel.quantile_index(pts, 10), minlength=10).sum())
    1000
    >>> camel.quantile_edges(2)[0].round(4).tolist()
    [-inf, 0.0, inf]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "TOYS",
    "CamelBack",
    "GaussianShell",
    "ToyDensity",
    "VertexGaussian",
    "VertexUniform",
    "make_toy",
]


def _invert(cdf: Callable[[float], float], u: float, lo: float, hi: float) -> float:
    """Solve cdf(t) = u on [lo, hi] to machine precision."""
    return float(optimize.brentq(lambda t: cdf(t) - u, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))


class ToyDensity:
    """A density in ``dim`` features with exact pdf and independent quantile coordinates.

    Subclasses define :meth:`sample`, :meth:`pdf`, :meth:`coordinates` (the
    coordinates quantiles are taken in), :meth:`marginal_cdf` and
    :meth:`marginal_ppf` for each such coordinate.

    Attributes:
        name: the plugin name.
        features: names of the event fields.
        coordinate_names: names of the quantile coordinates.
    """

    name: str = ""
    features: tuple[str, ...] = ()
    coordinate_names: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        """Number of features."""
        return len(self.features)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points, shape ``(n, dim)``."""
        raise NotImplementedError

    def pdf(self, points: np.ndarray) -> np.ndarray:
        """Exact density at ``points`` (shape ``(n, dim)``, or ``(n,)`` in 1D) in the feature space."""
        raise NotImplementedError

    def coordinates(self, points: np.ndarray) -> np.ndarray:
        """The quantile coordinates of ``points``, shape ``(n, dim)``."""
        return self._as_points(points)

    def marginal_cdf(self, k: int, values: np.ndarray) -> np.ndarray:
        """Exact CDF of quantile coordinate ``k``."""
        raise NotImplementedError

    def marginal_ppf(self, k: int, u: float) -> float:
        """Inverse of :meth:`marginal_cdf` for one probability ``u`` in (0, 1)."""
        raise NotImplementedError

    def coordinate_range(self, k: int) -> tuple[float, float]:
        """Support of quantile coordinate ``k``."""
        return (-math.inf, math.inf)

    # -- quantiles --------------------------------------------------------------------
    def quantile_edges(self, n_q: int) -> list[np.ndarray]:
        """Per quantile coordinate, the ``n_q + 1`` boundaries of equal-probability intervals.

        Example:
            >>> VertexUniform(dim=1, low=0.0, high=1.0).quantile_edges(4)[0].tolist()
            [0.0, 0.25, 0.5, 0.75, 1.0]
        """
        if n_q < 1:
            raise ValueError(f"n_q must be >= 1, got {n_q}")
        edges = []
        for k in range(self.dim):
            lo, hi = self.coordinate_range(k)
            inner = [self.marginal_ppf(k, j / n_q) for j in range(1, n_q)]
            edges.append(np.array([lo, *inner, hi], dtype=np.float64))
        return edges

    def n_cells(self, n_q: int) -> int:
        """Number of quantile cells, ``n_q ** dim``."""
        return n_q**self.dim

    def quantile_index(self, points: np.ndarray, n_q: int) -> np.ndarray:
        """Cell number in ``[0, n_q**dim)`` of each point; every cell has probability ``n_q**-dim``.

        Example:
            >>> VertexUniform(dim=2, low=0.0, high=1.0).quantile_index(np.array([[0.1, 0.9]]), 2).tolist()
            [1]
        """
        coords = self.coordinates(points)
        index = np.zeros(len(coords), dtype=np.int64)
        for k in range(self.dim):
            u = np.clip(self.marginal_cdf(k, coords[:, k]), 0.0, 1.0)
            index = index * n_q + np.minimum((u * n_q).astype(np.int64), n_q - 1)
        return index

    def quantile_fractions(self, points: np.ndarray, n_q: int, weights: np.ndarray | None = None) -> np.ndarray:
        """Fraction of the (weighted) points in each quantile cell."""
        counts = np.bincount(self.quantile_index(points, n_q), weights=weights, minlength=self.n_cells(n_q))
        return counts / counts.sum()

    def quantile_mse(self, points: np.ndarray, n_q: int, weights: np.ndarray | None = None) -> float:
        """The quantile error of seed 002 eq. (2): mean over cells of (fraction − 1/N_cells)²."""
        frac = self.quantile_fractions(points, n_q, weights)
        return float(np.mean((frac - 1.0 / len(frac)) ** 2))

    def describe(self) -> dict[str, Any]:
        """Parameters for run metadata (JSON-able)."""
        return {"toy": self.name, "features": list(self.features)}

    def _as_points(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim == 1 and self.dim == 1:
            pts = pts[:, None]
        if pts.ndim != 2 or pts.shape[1] != self.dim:
            raise ValueError(f"{self.name}: expected points of shape (n, {self.dim}), got {pts.shape}")
        return pts


class CamelBack(ToyDensity):
    """The 1D camel back: an equal mixture of N(-mu, sigma) and N(mu, sigma) (seed 002 eq. 1).

    Example:
        >>> round(float(CamelBack().pdf(np.array([4.0]))[0]), 4)
        0.1995
    """

    name = "camel"
    coordinate_names = ("x",)

    def __init__(self, mu: float = 4.0, sigma: float = 1.0, feature: str = "x") -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.mu, self.sigma = float(mu), float(sigma)
        self.features = (feature,)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        return (sign * self.mu + self.sigma * rng.standard_normal(n))[:, None]

    def pdf(self, points: np.ndarray) -> np.ndarray:
        x = self._as_points(points)[:, 0]
        return 0.5 * (stats.norm.pdf(x, -self.mu, self.sigma) + stats.norm.pdf(x, self.mu, self.sigma))

    def marginal_cdf(self, k: int, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        return 0.5 * (stats.norm.cdf(v, -self.mu, self.sigma) + stats.norm.cdf(v, self.mu, self.sigma))

    def marginal_ppf(self, k: int, u: float) -> float:
        span = abs(self.mu) + 40 * self.sigma
        return _invert(lambda t: float(self.marginal_cdf(0, np.array(t))), u, -span, span)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mu": self.mu, "sigma": self.sigma}


def _sin_power_cdf(m: int, phi: np.ndarray) -> np.ndarray:
    """CDF on [0, π] of the density ∝ sin^m(φ) (the polar angles of an isotropic direction)."""
    phi = np.asarray(phi, dtype=np.float64)
    half = 0.5 * special.betainc((m + 1) / 2, 0.5, np.sin(np.minimum(phi, np.pi - phi)) ** 2)
    return np.where(phi <= np.pi / 2, half, 1.0 - half)


def _sin_power_ppf(m: int, u: float) -> float:
    low = min(u, 1.0 - u)
    phi = float(np.arcsin(np.sqrt(special.betaincinv((m + 1) / 2, 0.5, 2 * low))))
    return phi if u <= 0.5 else math.pi - phi


class GaussianShell(ToyDensity):
    """An isotropic shell in ``dim`` dimensions with radial density N(r; mu, σ) + N(r; -mu, σ), r ≥ 0.

    ``dim = 2`` is the Gaussian ring, ``dim = 5`` the 5D spherical shell of
    seed 002. Quantile coordinates are hyperspherical: r, then polar angles
    φ₁ … φ_{d-2} in [0, π] with densities ∝ sin^{d-1-k}(φ_k), then the azimuth
    φ_{d-1} in [0, 2π), uniform.

    Example:
        >>> ring = GaussianShell(dim=2)
        >>> ring.coordinates(np.array([[0.0, 2.0]])).round(4).tolist()
        [[2.0, 1.5708]]
    """

    def __init__(self, dim: int = 5, mu: float = 4.0, sigma: float = 1.0, prefix: str | None = None) -> None:
        if dim < 2:
            raise ValueError(f"a shell needs dim >= 2, got {dim}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.mu, self.sigma = float(mu), float(sigma)
        self.name = "ring" if dim == 2 else f"shell{dim}d"
        if prefix is None and dim == 2:
            self.features = ("x", "y")
        else:
            self.features = tuple(f"{prefix or 'x'}{i + 1}" for i in range(dim))
        self.coordinate_names = ("r",) + tuple(f"phi{i + 1}" for i in range(dim - 1))
        # surface of the unit (d-1)-sphere: 2 π^{d/2} / Γ(d/2)
        self.sphere_area = 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        direction = rng.standard_normal((n, self.dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        r = np.abs(self.mu + self.sigma * rng.standard_normal(n))
        return direction * r[:, None]

    def radial_pdf(self, r: np.ndarray) -> np.ndarray:
        """P(r) on r ≥ 0 (integrates to one over r)."""
        r = np.asarray(r, dtype=np.float64)
        p = stats.norm.pdf(r, self.mu, self.sigma) + stats.norm.pdf(r, -self.mu, self.sigma)
        return np.where(r >= 0, p, 0.0)

    def pdf(self, points: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(self._as_points(points), axis=1)
        with np.errstate(divide="ignore"):
            return self.radial_pdf(r) / (self.sphere_area * r ** (self.dim - 1))

    def coordinates(self, points: np.ndarray) -> np.ndarray:
        pts = self._as_points(points)
        d = self.dim
        out = np.empty_like(pts)
        # tail norms: sqrt(x_k² + ... + x_d²)
        tails = np.sqrt(np.cumsum(pts[:, ::-1] ** 2, axis=1)[:, ::-1])
        out[:, 0] = tails[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            for k in range(d - 2):
                ratio = np.where(tails[:, k] > 0, pts[:, k] / tails[:, k], 1.0)
                out[:, k + 1] = np.arccos(np.clip(ratio, -1.0, 1.0))
        out[:, d - 1] = np.mod(np.arctan2(pts[:, d - 1], pts[:, d - 2]), 2 * np.pi)
        return out

    def coordinate_range(self, k: int) -> tuple[float, float]:
        if k == 0:
            return (0.0, math.inf)
        return (0.0, 2 * math.pi) if k == self.dim - 1 else (0.0, math.pi)

    def marginal_cdf(self, k: int, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if k == 0:
            cdf = stats.norm.cdf(v, self.mu, self.sigma) - stats.norm.cdf(-v, self.mu, self.sigma)
            return np.where(v > 0, cdf, 0.0)
        if k == self.dim - 1:
            return np.clip(v / (2 * np.pi), 0.0, 1.0)
        return _sin_power_cdf(self.dim - 1 - k, v)

    def marginal_ppf(self, k: int, u: float) -> float:
        if k == 0:
            return _invert(lambda t: float(self.marginal_cdf(0, np.array(t))), u, 0.0,
                           abs(self.mu) + 40 * self.sigma)
        if k == self.dim - 1:
            return 2 * math.pi * u
        return _sin_power_ppf(self.dim - 1 - k, u)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dim": self.dim, "mu": self.mu, "sigma": self.sigma}


class VertexGaussian(ToyDensity):
    """Thesis ch. 6.3 ``toy1``: Gaussian features N(mean, sigma²) (the folding training sample), independent or
    pairwise correlated with one coefficient ``correlation`` = ρ.

    With ρ ≠ 0 the covariance is σ²·((1 − ρ)·I + ρ·J) (J: all ones), positive definite for
    −1/(D − 1) < ρ < 1; the points are ``mean + σ·L z`` with L its Cholesky factor (per unit σ) and z
    standard normal, and the quantile coordinates are the decorrelated ``mean + L⁻¹(x − mean)``
    (independent N(mean, σ²), so the quantile cells keep equal probability). ρ = 0 draws exactly the
    events of the independent toy.

    Example:
        >>> VertexGaussian().features
        ('v1', 'v2')
        >>> pts = VertexGaussian(dim=2, correlation=0.5).sample(20000, np.random.default_rng(1))
        >>> round(float(np.corrcoef(pts.T)[0, 1]), 1)
        0.5
    """

    name = "vertex-gauss"

    def __init__(self, dim: int = 2, mean: float = 0.0, sigma: float = 1.0, correlation: float = 0.0) -> None:
        if dim < 1 or not sigma > 0:
            raise ValueError(f"need dim >= 1 and sigma > 0, got dim={dim}, sigma={sigma}")
        low = -1.0 / (dim - 1) if dim > 1 else 0.0
        if correlation != 0.0 and (dim == 1 or not low < correlation < 1.0):
            bound = f"{low:.6g} < correlation < 1" if dim > 1 else "correlation = 0 with a single feature"
            raise ValueError(f"the correlation of {dim} features must satisfy {bound} (positive-definite "
                             f"covariance), got {correlation}")
        self.mean, self.sigma, self.correlation = float(mean), float(sigma), float(correlation)
        self.features = tuple(f"v{i + 1}" for i in range(dim))
        self.coordinate_names = self.features
        #: Cholesky factor of the correlation matrix (None: independent features)
        self.cholesky: np.ndarray | None = None
        if self.correlation != 0.0:
            corr = (1.0 - self.correlation) * np.eye(dim) + self.correlation * np.ones((dim, dim))
            self.cholesky = np.linalg.cholesky(corr)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, self.dim))
        if self.cholesky is not None:
            z = z @ self.cholesky.T
        return self.mean + self.sigma * z

    def pdf(self, points: np.ndarray) -> np.ndarray:
        pts = self._as_points(points)
        if self.cholesky is None:
            return np.prod(stats.norm.pdf(pts, self.mean, self.sigma), axis=1)
        cov = self.sigma**2 * (self.cholesky @ self.cholesky.T)
        return np.atleast_1d(stats.multivariate_normal.pdf(pts, mean=np.full(self.dim, self.mean), cov=cov))

    def coordinates(self, points: np.ndarray) -> np.ndarray:
        pts = self._as_points(points)
        if self.cholesky is None:
            return pts
        from scipy.linalg import solve_triangular

        return self.mean + solve_triangular(self.cholesky, (pts - self.mean).T, lower=True).T

    def marginal_cdf(self, k: int, values: np.ndarray) -> np.ndarray:
        return stats.norm.cdf(np.asarray(values, dtype=np.float64), self.mean, self.sigma)

    def marginal_ppf(self, k: int, u: float) -> float:
        return float(stats.norm.ppf(u, self.mean, self.sigma))

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "mean": self.mean, "sigma": self.sigma}
        if self.correlation:
            out["correlation"] = self.correlation
        return out


class VertexUniform(ToyDensity):
    """Thesis ch. 6.3 ``toy2``: independent uniform features U(low, high) (the folding test sample).

    Example:
        >>> float(VertexUniform(dim=1, low=-2.0, high=2.0).pdf(np.array([0.0]))[0])
        0.25
    """

    name = "vertex-uniform"

    def __init__(self, dim: int = 2, low: float = -2.0, high: float = 2.0) -> None:
        if dim < 1 or not high > low:
            raise ValueError(f"need dim >= 1 and high > low, got dim={dim}, low={low}, high={high}")
        self.low, self.high = float(low), float(high)
        self.features = tuple(f"v{i + 1}" for i in range(dim))
        self.coordinate_names = self.features

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high, (n, self.dim))

    def pdf(self, points: np.ndarray) -> np.ndarray:
        pts = self._as_points(points)
        inside = np.all((pts >= self.low) & (pts <= self.high), axis=1)
        return np.where(inside, (self.high - self.low) ** -self.dim, 0.0)

    def coordinate_range(self, k: int) -> tuple[float, float]:
        return (self.low, self.high)

    def marginal_cdf(self, k: int, values: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(values, dtype=np.float64) - self.low) / (self.high - self.low), 0.0, 1.0)

    def marginal_ppf(self, k: int, u: float) -> float:
        return self.low + u * (self.high - self.low)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "low": self.low, "high": self.high}


#: Toy name → constructor.
TOYS: dict[str, Callable[..., ToyDensity]] = {
    "camel": CamelBack,
    "ring": lambda **kw: GaussianShell(dim=2, **kw),
    "shell5d": lambda **kw: GaussianShell(dim=5, **kw),
    "vertex-gauss": VertexGaussian,
    "vertex-uniform": VertexUniform,
}


def make_toy(name: str, **params: Any) -> ToyDensity:
    """Build a toy by name (see :data:`TOYS`).

    Example:
        >>> make_toy("shell5d").features
        ('x1', 'x2', 'x3', 'x4', 'x5')
    """
    if name not in TOYS:
        raise KeyError(f"unknown toy {name!r}; known: {', '.join(TOYS)}")
    return TOYS[name](**params)
