"""Fast exact sampling for zuko masked autoregressive flows (MAF / NSF).

zuko inverts a masked autoregressive transform with ``passes`` full passes of
its MADE network over all features (``passes = features`` by default) and
evaluates every feature's spline in every pass. Sampling only needs, for each
autoregressive group of features (in increasing order), the outputs of *that*
group, computed from the features already inverted. :class:`FastFlowSampler`
does exactly that with the same weights:

- for each group it keeps only the rows and hidden units of the masked network
  that the group's outputs depend on (read off the masks, so the pruned
  network is the same function, not an approximation);
- a group that depends on nothing (the first feature of an unconditional
  transform) has constant parameters, computed once;
- the spline (or affine) inverse runs on that group's columns only, on
  contiguous tensors (zuko's softmax over strided views is the slowest op of
  its sampling path).

The result equals ``flow(c).transform.inv(noise)`` up to float rounding
(summation order of the smaller products). Flows with other layers (a
residual MADE, activations other than ReLU, other univariate transforms) are
refused with :class:`NotImplementedError`; the caller then uses zuko's path.

Example:
    >>> import zuko
    >>> flow = zuko.flows.NSF(3, transforms=2, hidden_features=(16, 16))
    >>> fast = FastFlowSampler(flow)
    >>> noise = torch.randn(100, 3)
    >>> with torch.inference_mode():
    ...     bool(torch.allclose(fast(noise), flow().transform.inv(noise), atol=1e-4))
    True
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
import zuko
from torch import Tensor, nn
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.nn import MaskedLinear, MaskedMLP
from zuko.transforms import MonotonicAffineTransform, MonotonicRQSTransform

from mlegpipe.generation import map_in_chunks

__all__ = ["FastFlowSampler", "rqs_invert", "rqs_inverse", "rqs_knots"]


def rqs_knots(widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float = 5.0,
              slope: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Knots of zuko's monotonic rational-quadratic spline from its unconstrained parameters.

    Arguments:
        widths, heights: ``(..., K)`` unconstrained bin widths and heights.
        derivatives: ``(..., K - 1)`` unconstrained knot derivatives.
        bound: the spline's domain ``[-bound, bound]``.
        slope: the minimum slope.

    Returns:
        ``(xy, d)``: ``(..., 2, K + 1)`` horizontal and vertical knot positions, ``(..., K + 1)`` slopes.

    Example:
        >>> xy, d = rqs_knots(torch.zeros(4), torch.zeros(4), torch.zeros(3))
        >>> xy[0].tolist(), d.tolist()
        ([-5.0, -2.5, 0.0, 2.5, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    c = 1 / abs(math.log(slope))
    wh = torch.stack((widths, heights), dim=-2)
    wh = wh / wh.abs().mul_(2 * c).add_(1)
    # softmax then cumsum, as one cumsum of exp normalized by its last element (|wh| < -log(slope) / 2,
    # so exp cannot overflow); torch's softmax over a short last axis is the slowest op otherwise
    cum = F.pad(wh.exp_(), (1, 0)).cumsum_(-1)
    xy = cum.mul_((2 * bound) / cum[..., -1:]).sub_(bound)
    derivatives = derivatives / derivatives.abs().mul_(c).add_(1)
    return xy, F.pad(derivatives, (1, 1)).exp_()


def rqs_invert(y: Tensor, xy: Tensor, d: Tensor) -> Tensor:
    """Invert the spline of knots :func:`rqs_knots` at ``y`` (identity outside the domain).

    Arguments:
        y: ``(N, F)`` values.
        xy: ``(N, F, 2, K + 1)`` knots, or ``(F, 2, K + 1)`` shared by all events.
        d: ``(N, F, K + 1)`` slopes, or ``(F, K + 1)``.

    Example:
        >>> xy, d = rqs_knots(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4), torch.zeros(1, 1, 3))
        >>> rqs_invert(torch.tensor([[0.5]]), xy, d)  # uniform bins, unit slopes: the identity
        tensor([[0.5000]])
    """
    bins = xy.shape[-1] - 1
    above = torch.sum(xy[..., 1, :] < y[..., None], dim=-1)  # knots below y: bin k = above - 1
    inside = (above > 0) & (above <= bins)
    k = (above - 1).clamp_(0, bins - 1)  # any valid bin outside: those events keep y
    if xy.dim() == 3:  # knots shared by all events
        f = torch.arange(xy.shape[0])
        x0, x1, y0, y1 = xy[f, 0, k], xy[f, 0, k + 1], xy[f, 1, k], xy[f, 1, k + 1]
        d0, d1 = d[f, k], d[f, k + 1]
    else:
        kk = torch.stack((k, k + 1), dim=-1)
        lo_hi = xy.gather(-1, kk[..., None, :].expand(*kk.shape[:-1], 2, 2))
        x0, x1, y0, y1 = lo_hi[..., 0, 0], lo_hi[..., 0, 1], lo_hi[..., 1, 0], lo_hi[..., 1, 1]
        dd = d.gather(-1, kk)
        d0, d1 = dd[..., 0], dd[..., 1]
    # zuko's root of a z^2 + b z + c = 0 in the bin, written with in-place ops
    dx = x1 - x0
    dy = y1 - y0
    s = dy / dx
    y_ = (y - y0).masked_fill_(~inside, 0.0)
    curve = (d0 + d1).sub_(s, alpha=2).mul_(y_)  # y_ (d0 + d1 - 2 s)
    a = (s - d0).mul_(dy).add_(curve)
    b = (dy * d0).sub_(curve)
    minus_c = s.mul_(y_)
    disc = (b * b).addcmul_(a, minus_c, value=4)  # b^2 - 4 a c
    z = minus_c.mul_(-2).div_(disc.sqrt_().add_(b).neg_())  # 2 c / (-b - sqrt(disc))
    return torch.where(inside, z.mul_(dx).add_(x0), y)


def rqs_inverse(y: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float = 5.0,
                slope: float = 1e-3) -> Tensor:
    """Inverse of zuko's monotonic rational-quadratic spline, with the same parametrization.

    Arguments:
        y: ``(N, F)`` values to invert.
        widths, heights: ``(N, F, K)`` unconstrained bin widths and heights.
        derivatives: ``(N, F, K - 1)`` unconstrained knot derivatives.
        bound: the spline's domain ``[-bound, bound]`` (identity outside).
        slope: the minimum slope.

    Example:
        >>> w, h, d = torch.zeros(1, 1, 4), torch.zeros(1, 1, 4), torch.zeros(1, 1, 3)
        >>> rqs_inverse(torch.tensor([[0.5]]), w, h, d)  # uniform bins, unit slopes: the identity
        tensor([[0.5000]])
    """
    return rqs_invert(y, *rqs_knots(widths, heights, derivatives, bound, slope))


class _Group(nn.Module):
    """The pruned network of one autoregressive group of one transform, and its univariate inverse."""

    def __init__(self, hyper: MaskedMLP, feats: Tensor, n_features: int, n_context: int, total: int,
                 invert: _Inverse) -> None:
        super().__init__()
        layers = [m for m in hyper if isinstance(m, MaskedLinear)]
        rows = (feats[:, None] * total + torch.arange(total)).reshape(-1)
        needed = [rows]
        for layer in reversed(layers):
            needed.append(layer.mask[needed[-1]].any(dim=0).nonzero().squeeze(-1))
        needed.reverse()  # needed[0]: inputs, needed[i]: outputs of layer i - 1
        self.register_buffer("features", feats)
        self.register_buffer("inputs", needed[0])
        self.total, self.invert = total, invert
        self.layers = nn.ModuleList()
        self.shared: tuple[Tensor, ...] | None = None
        with torch.no_grad():
            if len(needed[0]) == 0:  # depends on no input: the same parameters for every event
                probe = torch.zeros(1, n_features + n_context, dtype=layers[0].weight.dtype)
                self.shared = invert.prepare(hyper(probe)[:, rows].view(len(feats), total))
                return
            for layer, rows_out, cols_in in zip(layers, needed[1:], needed[:-1], strict=True):
                sub = nn.Linear(len(cols_in), len(rows_out), dtype=layer.weight.dtype)
                sub.weight.copy_((layer.mask * layer.weight)[rows_out][:, cols_in])
                sub.bias.copy_(layer.bias[rows_out])
                self.layers.append(sub)

    def forward(self, y: Tensor, xc: Tensor) -> Tensor:
        """Invert this group's columns of ``y`` given the features (and context) so far in ``xc``."""
        yg = y[:, self.features]
        if self.shared is not None:
            return self.invert(yg, *self.shared)
        h = xc[:, self.inputs]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                h = h.relu_()
        return self.invert(yg, *self.invert.prepare(h.view(len(h), len(self.features), self.total)))


class _Inverse:
    """The univariate inverse of a transform: parameters to knots (``prepare``), then invert."""

    def __init__(self, kind: str, shapes: list[int], bound: float, slope: float) -> None:
        self.kind, self.shapes, self.bound, self.slope = kind, shapes, bound, slope

    def prepare(self, params: Tensor) -> tuple[Tensor, ...]:
        """``(..., total)`` network outputs to the inverse's arguments."""
        parts = params.split(self.shapes, dim=-1)
        if self.kind == "rqs":
            return rqs_knots(*parts, bound=self.bound, slope=self.slope)
        scale = parts[1][..., 0]
        return parts[0][..., 0], (scale / (1 + (scale / math.log(self.slope)).abs())).exp()

    def __call__(self, y: Tensor, *args: Tensor) -> Tensor:
        if self.kind == "rqs":
            return rqs_invert(y, *args)
        shift, scale = args
        return (y - shift) / scale


class _Transform(nn.Module):
    """One masked autoregressive transform, inverted group by group."""

    def __init__(self, t: MaskedAutoregressiveTransform, n_context: int) -> None:
        super().__init__()
        hyper = t.hyper
        if not isinstance(hyper, MaskedMLP) or any(
                not isinstance(m, MaskedLinear | nn.ReLU) for m in hyper):
            raise NotImplementedError("only a plain masked MLP with ReLU activations is supported")
        if t.order is None:
            raise NotImplementedError("only order-defined (not adjacency-defined) transforms are supported")
        univariate = t.univariate
        base = univariate.func if isinstance(univariate, functools.partial) else univariate
        kwargs = dict(univariate.keywords) if isinstance(univariate, functools.partial) else {}
        if base is MonotonicRQSTransform and set(kwargs) <= {"slope", "bound"}:
            kind = "rqs"
        elif base is MonotonicAffineTransform and set(kwargs) <= {"slope"}:
            kind = "affine"
        else:
            raise NotImplementedError(f"univariate transform {base!r} is not supported")
        invert = _Inverse(kind, [math.prod(s) for s in t.shapes], float(kwargs.get("bound", 5.0)),
                          float(kwargs.get("slope", 1e-3)))
        self.n_features = len(t.order)
        # increasing order: each group needs only the groups before it
        self.groups = nn.ModuleList(_Group(hyper, (t.order == g).nonzero().squeeze(-1), self.n_features, n_context,
                                           t.total, invert) for g in torch.unique(t.order).tolist())

    def forward(self, y: Tensor, context: Tensor | None) -> Tensor:
        xc = y.new_zeros(len(y), self.n_features) if context is None else \
            torch.cat((y.new_zeros(len(y), self.n_features), context), dim=1)
        for group in self.groups:
            xc[:, group.features] = group(y, xc)
        return xc[:, :self.n_features]


class _AffineCoupling(nn.Module):
    """An unconditional affine coupling transform (two autoregressive groups, each a contiguous block of
    features, the first with constant parameters) inverted with dense slices: the same function as
    :class:`_Transform`, with no gathers or scatters.

    The first block is ``x₀ = (y₀ − shift₀) / scale₀`` with constant parameters; the network of the second
    reads ``x₀``, and its last layer's rows are reordered so that the shifts and the raw scales are two
    contiguous blocks; ``x₁ = (y₁ − shift) · exp(−s / (1 + |s| / |ln slope|))`` is zuko's
    ``(y₁ − shift) / scale``, written with one exponential. The weights are plain tensors (no parameter
    containers to index on every call).
    """

    def __init__(self, first: _Group, second: _Group, slope: float) -> None:
        super().__init__()
        if first.shared is None:
            raise ValueError("the first block of an affine coupling has constant parameters")
        a, b = first.features, second.features
        self.first = slice(int(a[0]), int(a[-1]) + 1)
        self.second = slice(int(b[0]), int(b[-1]) + 1)
        shift, scale = first.shared
        self.shift0, self.inv_scale0 = shift.reshape(1, -1).clone(), 1.0 / scale.reshape(1, -1)
        self.clip = 1.0 / abs(math.log(slope))
        linear = [(layer.weight.detach(), layer.bias.detach()) for layer in second.layers]
        w_first = linear[0][0].new_zeros(linear[0][0].shape[0], len(a))
        w_first[:, second.inputs - int(a[0])] = linear[0][0]  # the network reads the first block's columns
        linear[0] = (w_first, linear[0][1])
        # the last layer's rows: the shifts from row 0 and the raw scales from row `half`, zero rows padding the
        # output to a multiple of 16 (MKL's small matrix products are about twice as fast at such widths)
        self.m, self.half = len(b), -(-len(b) // 8) * 8
        w, bias = linear[-1]
        padded_w, padded_b = w.new_zeros(2 * self.half, w.shape[1]), bias.new_zeros(2 * self.half)
        padded_w[:self.m], padded_b[:self.m] = w[0::2], bias[0::2]  # zuko's rows: (shift, raw scale) per feature
        padded_w[self.half:self.half + self.m], padded_b[self.half:self.half + self.m] = w[1::2], bias[1::2]
        linear[-1] = (padded_w, padded_b)
        self.linear = [(w.t().contiguous(), bias.clone()) for w, bias in linear]

    @classmethod
    def of(cls, transform: _Transform, n_context: int) -> _AffineCoupling | None:
        """The dense form of ``transform`` when it is an unconditional affine coupling of two contiguous blocks
        with a hidden layer, else None."""
        groups = list(transform.groups)
        if n_context or len(groups) != 2 or groups[0].invert.kind != "affine" or groups[0].shared is None \
                or groups[1].shared is not None or len(groups[1].layers) < 2:
            return None
        for g in groups:  # two contiguous blocks (the groups partition the features: one of them starts at 0)
            f = g.features
            if not bool((f == torch.arange(int(f[0]), int(f[0]) + len(f))).all()):
                return None
        return cls(groups[0], groups[1], groups[0].invert.slope)

    def forward(self, y: Tensor, context: Tensor | None) -> Tensor:
        x0 = (y[:, self.first] - self.shift0).mul_(self.inv_scale0)
        (w, b), *rest = self.linear
        h = torch.addmm(b, x0, w)
        for w, b in rest:
            h = torch.addmm(b, h.relu_(), w)
        shift, s = h[:, :self.m], h[:, self.half:self.half + self.m]
        x1 = (y[:, self.second] - shift).mul_(s.div(s.abs().mul_(self.clip).add_(1.0)).neg_().exp_())
        return torch.cat((x0, x1) if self.first.start == 0 else (x1, x0), dim=1)


class FastFlowSampler(nn.Module):
    """``noise -> flow(context).transform.inv(noise)`` for a zuko MAF/NSF, with only the work sampling needs.

    Arguments:
        flow: a zuko :class:`~zuko.flows.autoregressive.MAF` or NSF (its weights are copied: rebuild
            the sampler after changing them).
        chunk: events per pass (small enough for the intermediates to stay in cache).

    Raises:
        NotImplementedError: the flow has a layer this sampler does not reproduce.

    Example:
        >>> flow = zuko.flows.MAF(2, transforms=2, hidden_features=(8,))
        >>> FastFlowSampler(flow)(torch.zeros(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(self, flow: zuko.flows.Flow, chunk: int = 8192) -> None:
        super().__init__()
        transforms = getattr(flow.transform, "transforms", None)
        if transforms is None or not all(isinstance(t, MaskedAutoregressiveTransform) for t in transforms):
            raise NotImplementedError("only flows made of masked autoregressive transforms are supported")
        self.n_context = transforms[0].hyper[0].in_features - len(transforms[0].order)
        self.chunk = chunk
        exact = [_Transform(t, self.n_context) for t in transforms]
        self.transforms = nn.ModuleList(_AffineCoupling.of(t, self.n_context) or t for t in exact)

    def _invert(self, x: Tensor, c: Tensor | None) -> Tensor:
        for t in reversed(self.transforms):
            x = t(x, c)
        return x

    def forward(self, noise: Tensor, context: Tensor | None = None, workers: int | None = None) -> Tensor:
        """Invert every transform, last to first, on ``(N, D)`` noise (``context``: ``(N, C)`` or None).

        The chunks run on ``workers`` Python threads (default: torch's thread count), each with
        single-threaded kernels: the ops are too small for intra-op threads to pay off, and
        independent chunks need no barrier, so an oversubscribed machine slows them down less. The
        result does not depend on the number of threads.
        """
        if self.n_context and context is None:
            raise ValueError("this flow is conditional: give the context")
        return map_in_chunks(self._invert, noise, context, noise.shape[1], self.chunk, workers)
