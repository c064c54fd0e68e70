"""Hard edges of features mapped away: log-like in the distance to a generation cut.

A truth sample made with a cut (``Q² > 1 GeV²``) has a density that jumps from
its full height to zero at the cut: in ``ln Q²`` the most populated bin sits
right on the edge. A normalizing flow (smooth splines between Gaussian tails)
cannot draw a step: it rounds it off, generating events beyond the cut and too
few right above it, and the shortfall shows up wherever the edge maps to (the
lowest-x bins, the most backward lepton angles). :class:`EdgeLog` finds such
edges in the training sample and maps the distance ``d`` of each edged feature
from a bound just past the outermost training value to
``u = s ln(exp(d / s) - 1)`` (``s``: the feature's standard deviation), the
inverse of ``d = s softplus(u / s)``: ``s ln(d / s)`` near the edge, which moves
to infinity, and ``d`` itself far from it, so the far tail is not stretched
(an exponential there would turn small sampling errors into huge values). The
model then learns a smooth tail instead of a step, and no generated event
crosses the bound.

Detection: a feature has a hard lower (upper) edge when at least
:data:`EDGE_FRACTION` of the training events lie within :data:`EDGE_WIDTH`
standard deviations of its minimum (maximum); a density that falls smoothly
to its extreme (a Gaussian or exponential tail, the natural end of a spectrum)
puts a vanishing fraction there. The bound lies :data:`EDGE_MARGIN` standard
deviations beyond the extreme training value. Two edges on one feature give the
logit ``ln((x - lo) / (hi - x))`` (bounded both ways).

A feature learned as ``ln u`` with a known bound ``u ≤ 1`` (the DIS inelasticity
y) moves its edge away with :func:`logit_from_ln` instead.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> cut = torch.rand(5000, generator=g).mul(3).exp()          # ln of it is uniform: a step at 0
    >>> x = torch.stack([cut.log(), torch.randn(5000, generator=g)], dim=1).double()
    >>> edges = EdgeLog().fit(x)
    >>> edges.edged()                                              # the first feature, both ends
    [(True, True), (False, False)]
    >>> bool(torch.allclose(edges.inverse(edges.transform(x)), x, atol=1e-9))
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mlegpipe.exceptions import DataError
from mlegpipe.features.scalers import Scaler

__all__ = ["EDGE_FRACTION", "EDGE_MARGIN", "EDGE_WIDTH", "EdgeLog", "ln_from_logit", "logit_from_ln"]

#: Fraction of training events within :data:`EDGE_WIDTH` standard deviations of an extreme that marks a hard edge.
EDGE_FRACTION = 0.01
EDGE_WIDTH = 0.05
#: The bound lies this many standard deviations beyond the outermost training value.
EDGE_MARGIN = 1e-3
_MIN_EVENTS = 20  # at least this many events in the edge slice
_TINY = 1e-9  # smallest distance to a bound: values past it transform to a finite ln(_TINY)


class EdgeLog(Scaler):
    """Per-feature log-like distance to detected hard edges (identity on features without one).

    Arguments:
        enabled: detect edges in :meth:`fit` (False: the identity, e.g. for conditional maps whose
            edges move with the condition).

    Example:
        >>> import torch
        >>> x = torch.cat([torch.zeros(30), torch.linspace(0.5, 2.0, 30)])[:, None].double()
        >>> e = EdgeLog().fit(x)   # half the events sit on the minimum: a lower edge
        >>> e.edged(), round(float(e.transform(x)[0, 0]), 3)
        ([(True, False)], -4.88)
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None

    @classmethod
    def identity(cls, features: int) -> EdgeLog:
        """A fitted map without edges on ``features`` features (e.g. for states written before edge maps).

        Example:
            >>> EdgeLog.identity(2).edged()
            [(False, False), (False, False)]
        """
        return cls(enabled=False).fit(torch.zeros(0, features, dtype=torch.float64))

    def fit(self, x: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None = None) -> EdgeLog:
        """Find the hard edges of each column of ``x`` (``(N, F)``; unweighted); returns self."""
        x = torch.as_tensor(x, dtype=torch.float64)
        nan = torch.full((x.shape[1],), math.nan, dtype=torch.float64)
        self.lo, self.hi = nan.clone(), nan.clone()
        self.scale = torch.ones(x.shape[1], dtype=torch.float64)
        if not self.enabled or len(x) < _MIN_EVENTS:
            return self
        need = max(_MIN_EVENTS, EDGE_FRACTION * len(x))
        for j in range(x.shape[1]):
            v = x[:, j]
            sigma = float(v.std())
            if not math.isfinite(sigma) or sigma <= 0:
                continue
            low, high = float(v.min()), float(v.max())
            self.scale[j] = sigma
            if int((v <= low + EDGE_WIDTH * sigma).sum()) >= need:
                self.lo[j] = low - EDGE_MARGIN * sigma
            if int((v >= high - EDGE_WIDTH * sigma).sum()) >= need:
                self.hi[j] = high + EDGE_MARGIN * sigma
        return self

    def _check(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.lo is None or self.hi is None or self.scale is None:
            raise DataError("the edge map is used before it was fitted")
        return self.lo, self.hi, self.scale

    def edged(self) -> list[tuple[bool, bool]]:
        """``(lower, upper)`` edge found, per feature."""
        lo, hi, _ = self._check()
        return [(bool(torch.isfinite(a)), bool(torch.isfinite(b))) for a, b in zip(lo, hi, strict=True)]

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x - lo)``, ``-g(hi - x)`` (``g(d) = s ln(exp(d / s) - 1)``) or ``ln((x - lo) / (hi - x))`` on edged
        columns (keeps the dtype)."""
        lo, hi, s = (t.to(x.dtype) for t in self._check())
        has_lo, has_hi = torch.isfinite(lo), torch.isfinite(hi)
        if not bool((has_lo | has_hi).any()):
            return x
        # a value past a bound (an event beyond the training sample's extremes) is held just inside it
        d_lo = torch.where(has_lo, x - lo, torch.ones_like(x)).clamp_min(_TINY)
        d_hi = torch.where(has_hi, hi - x, torch.ones_like(x)).clamp_min(_TINY)
        logit = torch.log(d_lo) - torch.log(d_hi)
        one_sided = torch.where(has_lo, _inverse_softplus(d_lo, s), -_inverse_softplus(d_hi, s))
        return torch.where(has_lo & has_hi, logit, torch.where(has_lo | has_hi, one_sided, x))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform`: every value lands strictly inside the bounds."""
        lo, hi, s = (t.to(z.dtype) for t in self._check())
        has_lo, has_hi = torch.isfinite(lo), torch.isfinite(hi)
        if not bool((has_lo | has_hi).any()):
            return z
        zero = torch.zeros_like(lo)
        lo_, hi_ = torch.where(has_lo, lo, zero), torch.where(has_hi, hi, zero)
        both = lo_ + (hi_ - lo_) * torch.sigmoid(z)
        out = torch.where(has_lo & has_hi, both, z)
        out = torch.where(has_lo & ~has_hi, lo_ + s * torch.nn.functional.softplus(z / s), out)
        return torch.where(has_hi & ~has_lo, hi_ - s * torch.nn.functional.softplus(-z / s), out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"lo", "hi", "scale"}`` (NaN bound: no edge)."""
        lo, hi, scale = self._check()
        return {"lo": lo.clone(), "hi": hi.clone(), "scale": scale.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> EdgeLog:
        """Restore from :meth:`state_dict`; returns self.

        Raises:
            DataError: the state lacks a tensor, or its tensors differ in length.
        """
        try:
            lo, hi, scale = (torch.as_tensor(state[k], dtype=torch.float64).clone() for k in ("lo", "hi", "scale"))
        except (KeyError, TypeError) as err:
            raise DataError(f"the edge map's state lacks {err}") from None
        if not lo.shape == hi.shape == scale.shape or lo.ndim != 1:
            raise DataError(f"the edge map's state holds bounds of shapes {tuple(lo.shape)}, {tuple(hi.shape)} "
                            f"and scales of shape {tuple(scale.shape)}")
        self.lo, self.hi, self.scale = lo, hi, scale
        return self


def logit_from_ln(ln_u: torch.Tensor) -> torch.Tensor:
    """``ln(u / (1 - u))`` from ``ln u`` (``u ≤ 1``): ``ln u`` itself for ``u << 1``, the bound ``u -> 1`` at infinity.

    Example:
        >>> import torch
        >>> v = logit_from_ln(torch.log(torch.tensor([1e-4, 0.5, 0.99], dtype=torch.float64)))
        >>> [round(t, 4) for t in v.tolist()], [round(t, 4) for t in ln_from_logit(v).exp().tolist()]
        ([-9.2102, 0.0, 4.5951], [0.0001, 0.5, 0.99])
    """
    return ln_u - torch.log((-torch.expm1(ln_u)).clamp_min(_TINY))


def ln_from_logit(v: torch.Tensor) -> torch.Tensor:
    """Undo :func:`logit_from_ln`: ``ln u = ln sigmoid(v) < 0`` for every ``v``."""
    return torch.nn.functional.logsigmoid(v)


def _inverse_softplus(d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``s ln(exp(d / s) - 1)`` for ``d > 0``, stably: ``d + s ln(1 - exp(-d / s))``."""
    return d + s * torch.log(-torch.expm1(-d / s))
