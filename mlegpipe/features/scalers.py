"""Invertible per-feature scalers: one family with one interface, composable with :class:`Chain`.

Every model standardizes what it learns; some first compress tails
(:class:`AsinhScale`), take logarithms (:class:`LogStandardize`), map each
feature through its quantiles to N(0, 1) (:class:`QuantileGaussianize`) or move
hard edges away (:class:`~mlegpipe.features.edges.EdgeLog`). Each is a
:class:`Scaler`: ``fit`` on training values, then ``transform`` / ``inverse``
(torch, differentiable, exact inverses), with its state as tensors for
checkpoints (``torch.load(weights_only=True)``).

Example:
    >>> import torch
    >>> x = torch.tensor([[1.0], [3.0], [100.0]], dtype=torch.float64)
    >>> chain = Chain(AsinhScale(), Standardize()).fit(x)
    >>> bool(torch.allclose(chain.inverse(chain.transform(x)), x))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.exceptions import DataError

__all__ = ["AsinhScale", "Chain", "LogStandardize", "QuantileGaussianize", "Scaler", "Standardize"]


class Scaler:
    """Base of the invertible per-feature scalers.

    Subclasses implement :meth:`fit`, :meth:`transform`, :meth:`inverse`,
    :meth:`state_dict` and :meth:`load_state_dict`; NumPy float64 helpers come for free.
    """

    def fit(self, x: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None = None) -> Scaler:
        """Learn the scaler's parameters from ``(n, k)`` values; returns self."""
        raise NotImplementedError

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map (differentiable)."""
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform`."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The fitted parameters as tensors."""
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> Scaler:
        """Restore from :meth:`state_dict`; returns self."""
        raise NotImplementedError

    def transform_numpy(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`transform` of a NumPy array, in float64."""
        return self.transform(torch.as_tensor(matrix, dtype=torch.float64)).numpy()

    def inverse_numpy(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`inverse` of a NumPy array, in float64."""
        return self.inverse(torch.as_tensor(matrix, dtype=torch.float64)).numpy()


class Chain(Scaler):
    """Scalers applied one after the other (``fit`` fits each on the previous one's output).

    Example:
        >>> import torch
        >>> c = Chain(Standardize()).fit(torch.tensor([[0.0], [2.0]]))
        >>> c.transform(torch.tensor([[2.0]])).tolist()
        [[1.0]]
    """

    def __init__(self, *scalers: Scaler) -> None:
        self.scalers = list(scalers)

    def fit(self, x: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None = None) -> Chain:
        """Fit each scaler on the output of the ones before it; returns self."""
        x = torch.as_tensor(x, dtype=torch.float64)
        for scaler in self.scalers:
            x = scaler.fit(x, weights).transform(x)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Every scaler in order."""
        for scaler in self.scalers:
            x = scaler.transform(x)
        return x

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Every inverse in reverse order."""
        for scaler in reversed(self.scalers):
            z = scaler.inverse(z)
        return z

    def state_dict(self) -> dict[str, Any]:
        """``{"0": state of the first scaler, ...}``."""
        return {str(i): s.state_dict() for i, s in enumerate(self.scalers)}

    def load_state_dict(self, state: Mapping[str, Any]) -> Chain:
        """Restore each scaler from :meth:`state_dict`; returns self."""
        for i, scaler in enumerate(self.scalers):
            scaler.load_state_dict(state[str(i)])
        return self


class Standardize(Scaler):
    """Per-feature affine scaler ``(x - mean) / std`` with its state as tensors.

    Arguments:
        eps: floor on the standard deviation (constant features stay finite).

    Example:
        >>> import torch
        >>> s = Standardize().fit(torch.tensor([[1.0], [3.0]]))
        >>> s.transform(torch.tensor([[3.0]])).tolist(), s.inverse(torch.tensor([[0.0]])).tolist()
        ([[1.0]], [[2.0]])
    """

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = eps
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, x: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None = None) -> Standardize:
        """Learn mean and standard deviation of each column (optionally weighted); returns self."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"cannot standardize an array of shape {tuple(x.shape)}")
        w = torch.ones(len(x), dtype=x.dtype) if weights is None else torch.as_tensor(weights, dtype=x.dtype)
        w = w / w.sum()
        self.mean = (w[:, None] * x).sum(0)
        var = (w[:, None] * (x - self.mean) ** 2).sum(0)
        self.std = torch.sqrt(var).clamp_min(self.eps)
        return self

    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` or :meth:`load_state_dict` has run."""
        return self.mean is not None

    def _check(self) -> None:
        if self.mean is None:
            raise DataError("the scaler is used before it was fitted")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize ``x`` (differentiable; keeps the dtype of ``x``)."""
        self._check()
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform`."""
        self._check()
        return z * self.std.to(z.dtype) + self.mean.to(z.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"mean": ..., "std": ...}`` (float64 tensors)."""
        self._check()
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> Standardize:
        """Restore from :meth:`state_dict`; returns self."""
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).clone()
        self.std = torch.as_tensor(state["std"], dtype=torch.float64).clone()
        return self


class AsinhScale(Scaler):
    """Elementwise ``asinh((x - center) / scale)`` on chosen columns: log-like tails for models.

    Momentum components of DIS leptons have power-law tails (``p_T`` up to the
    kinematic limit, the bulk at a few GeV); after this map the tails are
    logarithmic, which flows and networks learn far more easily. The map is
    exactly invertible; ``center`` is the median and ``scale`` the median
    absolute deviation of each chosen column.

    Arguments:
        columns: boolean mask (or indices) of the columns to transform; the rest pass unchanged.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 1.0], [2.0, 5.0], [100.0, 9.0]], dtype=torch.float64)
        >>> a = AsinhScale([True, False]).fit(x)
        >>> bool(torch.allclose(a.inverse(a.transform(x)), x)), a.transform(x)[:, 1].tolist()
        (True, [1.0, 5.0, 9.0])
    """

    def __init__(self, columns: Sequence[bool] | Sequence[int] | None = None) -> None:
        self.columns = None if columns is None else list(columns)
        self.center: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None

    def fit(self, x: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None = None) -> AsinhScale:
        """Learn center and scale of the chosen columns (unweighted medians); returns self."""
        x = torch.as_tensor(x, dtype=torch.float64)
        k = x.shape[1]
        mask = torch.zeros(k, dtype=torch.bool)
        if self.columns is None:
            mask[:] = True
        elif all(isinstance(c, bool) for c in self.columns):
            mask = torch.tensor(self.columns, dtype=torch.bool)
        else:
            mask[list(self.columns)] = True
        center = x.median(dim=0).values
        scale = (x - center).abs().median(dim=0).values.clamp_min(1e-12)
        self.mask = mask
        self.center = torch.where(mask, center, torch.zeros_like(center))
        self.scale = torch.where(mask, scale, torch.ones_like(scale))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map (differentiable; keeps the dtype of ``x``)."""
        if self.mask is None:
            raise DataError("the asinh scaler is used before it was fitted")
        u = (x - self.center.to(x.dtype)) / self.scale.to(x.dtype)
        return torch.where(self.mask, torch.asinh(u), u)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform`."""
        if self.mask is None:
            raise DataError("the asinh scaler is used before it was fitted")
        u = torch.where(self.mask, torch.sinh(z), z)
        return u * self.scale.to(z.dtype) + self.center.to(z.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"center", "scale", "mask"}`` tensors."""
        if self.mask is None:
            raise DataError("the asinh scaler has no state before it was fitted")
        return {"center": self.center.clone(), "scale": self.scale.clone(), "mask": self.mask.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> AsinhScale:
        """Restore from :meth:`state_dict`; returns self."""
        self.center = torch.as_tensor(state["center"], dtype=torch.float64).clone()
        self.scale = torch.as_tensor(state["scale"], dtype=torch.float64).clone()
        self.mask = torch.as_tensor(state["mask"], dtype=torch.bool).clone()
        return self


class LogStandardize(Standardize):
    """:class:`Standardize` of ln x (x > 0, e.g. beam energies in GeV).

    ``transform`` takes the values themselves, so every user of the scaler
    (sampling, interpretation probes) feeds a network alike.

    Example:
        >>> s = LogStandardize().fit(np.array([[10.0], [40.0]]))
        >>> [round(v, 6) for v in s.transform(torch.tensor([[10.0], [20.0], [40.0]])).flatten().tolist()]
        [-1.0, 0.0, 1.0]
    """

    def fit(self, x: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None = None) -> LogStandardize:
        """Learn mean and standard deviation of ln x; returns self."""
        super().fit(torch.log(torch.as_tensor(x, dtype=torch.float64)), weights)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """(ln x - mean) / std."""
        return super().transform(torch.log(torch.as_tensor(x)))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """exp(z · std + mean)."""
        return torch.exp(super().inverse(z))


class QuantileGaussianize(Scaler):
    """Monotone per-feature map to N(0, 1) through the training quantiles (piecewise linear between knots).

    The knots are the quantiles (k + ½)/K of each column (K = min(events,
    ``max_knots``)), mapped to the N(0, 1) quantiles of the same levels.
    Inside the outer knots the map and its inverse undo each other up to
    rounding; values beyond them map to the outer levels (and back to the
    training range), so nothing is ever generated outside it.

    Arguments:
        max_knots: at most this many knots per feature.

    Example:
        >>> g = QuantileGaussianize().fit(np.random.default_rng(0).exponential(size=(5000, 1)))
        >>> u = g.transform_numpy(np.array([[0.6931]]))             # the median of Exp(1)
        >>> round(float(u[0, 0]), 1), round(float(g.inverse_numpy(u)[0, 0]), 2)
        (0.0, 0.69)
    """

    def __init__(self, max_knots: int = 4096) -> None:
        self.max_knots = max_knots
        self.knots: torch.Tensor | None = None
        self.levels: torch.Tensor | None = None

    def fit(self, x: torch.Tensor | np.ndarray,
            weights: torch.Tensor | np.ndarray | None = None) -> QuantileGaussianize:
        """Knots at the (unweighted) quantiles of each column; returns self."""
        from scipy.special import ndtri

        values = np.asarray(x, dtype=np.float64)
        if values.ndim != 2 or len(values) == 0:
            raise DataError(f"cannot gaussianize an array of shape {values.shape}")
        k = int(min(len(values), self.max_knots))
        probs = (np.arange(k) + 0.5) / k
        knots = np.quantile(values, probs, axis=0)
        # strictly increasing knots (ties, e.g. repeated values, would make the map flat)
        span = np.maximum(knots[-1] - knots[0], 1e-12)
        knots = np.maximum.accumulate(knots + 1e-9 * span * np.arange(k)[:, None] / k, axis=0)
        self.knots, self.levels = torch.from_numpy(knots), torch.from_numpy(ndtri(probs))
        return self

    def _check(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.knots is None or self.levels is None:
            raise DataError("the quantile map is used before it was fitted")
        return self.knots, self.levels

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Feature values → N(0, 1) levels, column by column (keeps the dtype of ``x``)."""
        knots, levels = self._check()
        return torch.stack([_interp(x[:, j], knots[:, j].to(x.dtype), levels.to(x.dtype))
                            for j in range(knots.shape[1])], dim=1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """N(0, 1) levels → feature values (the same values as interpolating with a search, found directly: the
        levels are normal quantiles of equally spaced probabilities, so Φ(z) gives the interval)."""
        levels, slopes, knots = self._inverse_tables(z.dtype)
        j = _level_interval(z, levels)
        # every column at once: a gather from (K, C) tables with the flat index j·C + c (slopes as np.interp's)
        n_cols = knots.shape[1]
        out = z - levels[j]
        flat = j.mul_(n_cols).add_(torch.arange(n_cols, dtype=j.dtype))
        out = out.mul_(slopes.view(-1)[flat]).add_(knots.view(-1)[flat])
        out = torch.where(z < levels[0], knots[0], out)
        return torch.where(z >= levels[-1], knots[-1], out)

    def _inverse_tables(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Levels, interval slopes (``np.interp``'s, last row 0) and knots in ``dtype``, computed once per fit."""
        knots, levels = self._check()
        cache = getattr(self, "_tables", None)
        if cache is None or cache[0] is not knots:
            cache = self._tables = (knots, {})
        if dtype not in cache[1]:
            lv, kn = levels.to(dtype), knots.to(dtype)
            slopes = torch.cat(((kn[1:] - kn[:-1]) / (lv[1:] - lv[:-1])[:, None], torch.zeros_like(kn[:1])))
            cache[1][dtype] = (lv, slopes.contiguous(), kn.contiguous())
        return cache[1][dtype]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"knots": (K, k), "levels": (K,)}`` (float64 tensors)."""
        knots, levels = self._check()
        return {"knots": knots.clone(), "levels": levels.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> QuantileGaussianize:
        """Restore from :meth:`state_dict`; returns self."""
        self.knots = torch.as_tensor(state["knots"], dtype=torch.float64).clone()
        self.levels = torch.as_tensor(state["levels"], dtype=torch.float64).clone()
        return self


def _level_interval(z: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """For each value, the index j of the interval [levels[j], levels[j+1]) holding it (clamped to the
    first and last interval), levels being the N(0, 1) quantiles of the probabilities (k + ½)/K.

    Φ(z)·K − ½ gives j to within one interval even in single precision (Φ's error there is below 10⁻⁷,
    far below an interval's 1/K), so it is computed in float32; the two comparisons with the levels, in
    the values' own precision, then make it exact.
    """
    k = len(levels)
    safe = torch.nan_to_num(z, nan=0.0, posinf=1e300, neginf=-1e300)
    j = torch.special.ndtr(safe.float()).mul_(k).sub_(0.5).floor_().clamp_(0, k - 2).long()
    j = j.sub_((levels[j] > safe).long()).clamp_(0, k - 2)  # Φ's rounding: at most one interval off
    return j.add_((levels[j + 1] <= safe).long()).clamp_(0, k - 2)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``numpy.interp(x, xp, fp)`` in torch (the same values, bit for bit; differentiable in ``x``)."""
    xp, fp = xp.contiguous(), fp.contiguous()
    j = (torch.searchsorted(xp, x.contiguous(), right=True) - 1).clamp(0, len(xp) - 2)
    x0, y0 = xp[j], fp[j]
    slope = (fp[j + 1] - y0) / (xp[j + 1] - x0)
    out = torch.where(x < xp[0], fp[0], slope * (x - x0) + y0)
    return torch.where(x >= xp[-1], fp[-1], out)
