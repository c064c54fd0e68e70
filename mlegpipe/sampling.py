"""Unweighted events from a vectorized density on a box: adaptive grid, then accept-reject.

The sampler builds its proposal in two steps:

1. VEGAS-style adaptation (Lepage 1978) of the bin edges along each axis, so
   that bins are narrow where the density is large;
2. on that grid, a table of cell envelopes m_c (the largest density seen at the
   cell corners and at random probes inside, times a safety factor; cells
   without a hit take their neighbours' envelope, every cell keeps a small
   floor so no part of the box is ever left out); then a check pass raises the
   envelope of any cell where the density was found above it.

A trial picks cell c with probability ∝ m_c · volume_c and a point uniform in
it; it is accepted with probability f/m_c. Every trial also has an importance
weight w = f/q (q the proposal density), so the same trials give the integral
∫ f with its Monte Carlo error. Events above the envelope (f > m_c) are kept
with probability 1; they are counted and the share of the integral they carry
above the envelope is reported (the unweighting bias).

Example:
    >>> import numpy as np
    >>> f = lambda z: np.exp(-0.5 * (z ** 2).sum(axis=1))   # unnormalized Gaussian, ∫ = 2π
    >>> s = UnweightedSampler(f, [-6, -6], [6, 6], GridSettings(bins=32), np.random.SeedSequence(1))
    >>> z = s.unweighted(1000, np.random.default_rng(2))
    >>> z.shape, abs(s.integral()[0] / (2 * np.pi) - 1) < 0.02
    ((1000, 2), True)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["GridSettings", "SamplerStats", "UnweightedSampler"]

Density = Callable[[np.ndarray], np.ndarray]

#: Largest number of points passed to the density at once.
_EVAL_CHUNK = 200_000


@dataclass(frozen=True)
class GridSettings:
    """How the importance grid is built.

    Arguments:
        bins: bins per axis (the table has bins**dim cells).
        adapt_iterations: VEGAS edge-refinement iterations.
        adapt_points: density evaluations per refinement iteration.
        probes: random probe points per cell for the envelope (corners are always used).
        safety: factor on the largest density seen in a cell.
        check_points: trial points of the pass that raises envelopes found too low.
        floor: smallest envelope of any cell, relative to the largest one.
        alpha: VEGAS damping exponent (0: no adaptation, 1.5 usual).
    """

    bins: int = 64
    adapt_iterations: int = 6
    adapt_points: int = 20_000
    probes: int = 4
    safety: float = 1.25
    check_points: int = 100_000
    floor: float = 1e-7
    alpha: float = 1.5


@dataclass
class SamplerStats:
    """Running totals over all accept-reject trials.

    Attributes:
        trials: density evaluations made by accept-reject.
        accepted: events kept.
        sum_w, sum_w2: sums of importance weights and their squares.
        overweight: trials whose density exceeded the cell envelope.
        excess: Σ max(w - W, 0), the weight above the envelope (W = envelope integral).
        max_ratio: largest f/m_c seen.
    """

    trials: int = 0
    accepted: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    overweight: int = 0
    excess: float = 0.0
    max_ratio: float = 0.0

    def add(self, other: SamplerStats) -> None:
        """Accumulate ``other`` into this."""
        self.trials += other.trials
        self.accepted += other.accepted
        self.sum_w += other.sum_w
        self.sum_w2 += other.sum_w2
        self.overweight += other.overweight
        self.excess += other.excess
        self.max_ratio = max(self.max_ratio, other.max_ratio)

    def integral(self) -> tuple[float, float]:
        """(estimate, Monte Carlo standard error) of ∫ f from the trials."""
        if self.trials == 0:
            return math.nan, math.nan
        mean = self.sum_w / self.trials
        var = max(self.sum_w2 / self.trials - mean * mean, 0.0)
        return mean, math.sqrt(var / max(self.trials - 1, 1))


def _evaluate(density: Density, z: np.ndarray) -> np.ndarray:
    """The density at points ``z`` (n, dim), in bounded slices; negative or NaN values are errors."""
    out = np.empty(len(z))
    for start in range(0, len(z), _EVAL_CHUNK):
        out[start:start + _EVAL_CHUNK] = density(z[start:start + _EVAL_CHUNK])
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        bad = int(np.argmax(~np.isfinite(out) | (out < 0)))
        raise ValueError(f"density returned {out[bad]!r} at {z[bad].tolist()}: must be finite and >= 0")
    return out


def _refine_edges(edges: np.ndarray, importance: np.ndarray, alpha: float) -> np.ndarray:
    """New VEGAS bin edges with equal shares of the damped, smoothed ``importance``."""
    n = len(importance)
    if importance.sum() <= 0 or alpha <= 0:
        return edges
    smooth = importance.copy()
    if n > 2:
        smooth[0] = (importance[0] + importance[1]) / 2
        smooth[-1] = (importance[-2] + importance[-1]) / 2
        smooth[1:-1] = (importance[:-2] + importance[1:-1] + importance[2:]) / 3
    d = smooth / smooth.sum()
    r = np.zeros(n)
    pos = (d > 0) & (d < 1)
    r[pos] = ((1 - d[pos]) / np.log(1 / d[pos])) ** alpha
    r[d >= 1] = 1.0
    if r.sum() <= 0:
        return edges
    cum = np.concatenate([[0.0], np.cumsum(r)])
    targets = np.linspace(0.0, cum[-1], n + 1)
    new = np.interp(targets, cum, edges)
    new[0], new[-1] = edges[0], edges[-1]
    return np.maximum.accumulate(new)


class UnweightedSampler:
    """Adaptive importance grid plus accept-reject for a density on a box.

    Arguments:
        density: vectorized f(z) ≥ 0 for z of shape (n, dim), returning shape (n,).
        lower, upper: corners of the box (f is 0 outside).
        settings: grid settings.
        seed: the stream used to build the grid (reproducible).

    Attributes:
        stats: totals over every trial of :meth:`unweighted` (for the integral).
        envelope_integral: W = Σ m_c volume_c, the largest possible weight.
    """

    def __init__(
        self,
        density: Density,
        lower: ArrayLike,
        upper: ArrayLike,
        settings: GridSettings | None = None,
        seed: np.random.SeedSequence | None = None,
    ) -> None:
        self.density = density
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        if self.lower.shape != self.upper.shape or self.lower.ndim != 1:
            raise ValueError("lower and upper must be 1D of the same length")
        if not np.all(self.upper > self.lower):
            raise ValueError(f"empty box: lower {self.lower.tolist()}, upper {self.upper.tolist()}")
        self.dim = len(self.lower)
        self.settings = settings or GridSettings()
        if self.settings.bins ** self.dim > 5_000_000:
            raise ValueError(f"{self.settings.bins}^{self.dim} cells is too many")
        rng = np.random.default_rng(seed if seed is not None else np.random.SeedSequence(0))
        self.edges = [np.linspace(lo, hi, self.settings.bins + 1) for lo, hi in zip(self.lower, self.upper, strict=True)]
        self.stats = SamplerStats()
        self._adapt_edges(rng)
        self._build_table(rng)
        self._check_envelope(rng)

    # -- construction -----------------------------------------------------------
    def _separable_sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points from the separable VEGAS map: (z, jacobian, bin indices (n, dim))."""
        bins = self.settings.bins
        idx = rng.integers(0, bins, size=(n, self.dim))
        u = rng.random((n, self.dim))
        z = np.empty((n, self.dim))
        jac = np.ones(n)
        for d, e in enumerate(self.edges):
            width = e[idx[:, d] + 1] - e[idx[:, d]]
            z[:, d] = e[idx[:, d]] + u[:, d] * width
            jac *= bins * width
        return z, jac, idx

    def _adapt_edges(self, rng: np.random.Generator) -> None:
        """VEGAS refinement of the edges along each axis."""
        s = self.settings
        for _ in range(s.adapt_iterations):
            z, jac, idx = self._separable_sample(s.adapt_points, rng)
            w2 = (_evaluate(self.density, z) * jac) ** 2
            for d in range(self.dim):
                importance = np.bincount(idx[:, d], weights=w2, minlength=s.bins)
                self.edges[d] = _refine_edges(self.edges[d], importance, s.alpha)

    def _build_table(self, rng: np.random.Generator) -> None:
        """Cell envelopes from corners and interior probes; cell probabilities ∝ m_c · volume_c."""
        s, dim, bins = self.settings, self.dim, self.settings.bins
        shape = (bins,) * dim
        # corners: f on the grid nodes
        nodes = np.stack(np.meshgrid(*self.edges, indexing="ij"), axis=-1).reshape(-1, dim)
        node_f = _evaluate(self.density, nodes).reshape((bins + 1,) * dim)
        env = np.zeros(shape)
        for offset in itertools.product((0, 1), repeat=dim):
            env = np.maximum(env, node_f[tuple(slice(o, o + bins) for o in offset)])
        # interior probes
        if s.probes > 0:
            cells = np.repeat(np.arange(bins**dim), s.probes)
            z = self._points_in_cells(cells, rng.random((len(cells), dim)))
            probe_f = _evaluate(self.density, z)
            np.maximum.at(env.reshape(-1), cells, probe_f)
        # cells without a hit inherit the largest neighbour (they may hold a sliver of the support)
        empty = env == 0
        if empty.any():
            padded = np.pad(env, 1)
            neighbour = np.zeros(shape)
            for offset in itertools.product((0, 1, 2), repeat=dim):
                neighbour = np.maximum(neighbour, padded[tuple(slice(o, o + bins) for o in offset)])
            env[empty] = neighbour[empty]
        if env.max() <= 0:
            raise ValueError("the density is zero everywhere the grid looked: no phase space")
        self.envelope = np.maximum(env * s.safety, env.max() * s.floor)
        self._update_probabilities()

    def _update_probabilities(self) -> None:
        widths = np.meshgrid(*[np.diff(e) for e in self.edges], indexing="ij")
        self.volume = np.prod(np.stack(widths), axis=0)
        mass = (self.envelope * self.volume).reshape(-1)
        self.envelope_integral = float(mass.sum())
        self._cdf = np.cumsum(mass) / mass.sum()
        self._cdf[-1] = 1.0

    def _check_envelope(self, rng: np.random.Generator) -> None:
        """Raise envelopes of cells where trials found the density above them (up to three passes)."""
        for _ in range(3):
            cells, z = self._propose(self.settings.check_points, rng)
            ratio = _evaluate(self.density, z) / self.envelope.reshape(-1)[cells]
            self._check_eff = float(np.minimum(ratio, 1.0).mean())
            over = ratio > 1
            if not over.any():
                break
            flat = self.envelope.reshape(-1)
            worst = np.zeros(flat.size)
            np.maximum.at(worst, cells[over], ratio[over])
            raise_cells = worst > 1
            flat[raise_cells] *= worst[raise_cells] * self.settings.safety
            self._update_probabilities()

    # -- sampling ------------------------------------------------------------------
    def _points_in_cells(self, cells: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Points at relative positions ``u`` in [0, 1)^dim inside flat cell indices ``cells``."""
        multi = np.unravel_index(cells, (self.settings.bins,) * self.dim)
        z = np.empty((len(cells), self.dim))
        for d, e in enumerate(self.edges):
            i = multi[d]
            z[:, d] = e[i] + u[:, d] * (e[i + 1] - e[i])
        return z

    def _propose(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n proposal points: (flat cell indices, points)."""
        cells = np.searchsorted(self._cdf, rng.random(n), side="right")
        cells = np.minimum(cells, len(self._cdf) - 1)
        return cells, self._points_in_cells(cells, rng.random((n, self.dim)))

    def vegas_weighted(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points from the adapted separable VEGAS map alone (no cell table), with weights f/q.

        A baseline: accept-reject against the largest of these weights is what
        plain VEGAS unweighting achieves.
        """
        z, jac, _ = self._separable_sample(n, rng)
        return z, _evaluate(self.density, z) * jac

    def weighted(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n importance-sampled points and their weights f/q (mean weight = ∫ f).

        Example:
            >>> f = lambda z: np.ones(len(z))
            >>> s = UnweightedSampler(f, [0.0], [2.0], GridSettings(bins=8), np.random.SeedSequence(0))
            >>> z, w = s.weighted(100, np.random.default_rng(0))
            >>> bool(np.allclose(w, 2.0))
            True
        """
        cells, z = self._propose(n, rng)
        f = _evaluate(self.density, z)
        flat = self.envelope.reshape(-1)
        return z, f / flat[cells] * self.envelope_integral

    def integrate(self, n: int, rng: np.random.Generator) -> tuple[float, float]:
        """∫ f over the box from ``n`` fresh weighted points: (estimate, standard error)."""
        _, w = self.weighted(n, rng)
        return float(w.mean()), float(w.std(ddof=1) / math.sqrt(n))

    @property
    def expected_efficiency(self) -> float:
        """Acceptance rate: from the trials so far, else from the last check pass."""
        if self.stats.trials:
            return self.stats.accepted / self.stats.trials
        return self._check_eff

    def trial_batch(self, n: int) -> int:
        """Trials per accept-reject round for a request of ``n`` events (fixed once the grid is built)."""
        return int(min(max(64, math.ceil(1.1 * n / max(self._check_eff, 1e-3))), 2_000_000))

    def unweighted(self, n: int, rng: np.random.Generator, batch_for: int | None = None) -> np.ndarray:
        """n unweighted points (n, dim) by accept-reject; the trials add to :attr:`stats`.

        Trials come in rounds of :meth:`trial_batch` ``(batch_for or n)`` points
        and whole rounds count towards the integral, so asking for fewer events
        with the same ``batch_for`` and stream gives the first ones of the
        longer request.
        """
        s = SamplerStats()
        batch = self.trial_batch(batch_for or n)
        flat = self.envelope.reshape(-1)
        kept: list[np.ndarray] = []
        count = 0
        while count < n:
            cells, z = self._propose(batch, rng)
            u = rng.random(batch)
            f = _evaluate(self.density, z)
            ratio = f / flat[cells]
            accept = u < ratio
            w = ratio * self.envelope_integral
            s.trials += batch
            s.accepted += int(accept.sum())
            s.sum_w += float(w.sum())
            s.sum_w2 += float((w * w).sum())
            over = ratio > 1
            s.overweight += int(over.sum())
            s.excess += float((w[over] - self.envelope_integral).sum())
            s.max_ratio = max(s.max_ratio, float(ratio.max()))
            kept.append(z[accept])
            count += int(accept.sum())
        self.stats.add(s)
        return np.concatenate(kept)[:n] if kept else np.empty((0, self.dim))

    def integral(self) -> tuple[float, float]:
        """(∫ f, standard error) from all accept-reject trials so far."""
        return self.stats.integral()

    def report(self) -> dict[str, float]:
        """Integral, its error, unweighting efficiency and overweight figures, JSON-able."""
        value, error = self.integral()
        st = self.stats
        return {
            "integral": value,
            "integral_error": error,
            "trials": st.trials,
            "accepted": st.accepted,
            "unweighting_efficiency": st.accepted / st.trials if st.trials else math.nan,
            "overweight_fraction": st.overweight / st.trials if st.trials else math.nan,
            "overweight_bias": st.excess / st.sum_w if st.sum_w else 0.0,
            "max_weight_ratio": st.max_ratio,
            "cells": int(self.envelope.size),
        }
