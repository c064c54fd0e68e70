"""Loss landscapes with filter-normalized random directions (Li et al. 2018; thesis §8.3).

Around trained weights θ*, draw two random directions γ and ν (Gaussian, one
entry per weight), rescale each filter of each (the rows of a dense layer's
weight matrix: one output neuron's incoming weights) to the Frobenius norm of
the same filter in θ*, and evaluate f(α, β) = L(θ* + αγ + βν) on a grid.
Biases and other 1D parameters get a zero direction (Li et al.'s default), so
the surfaces of networks of different sizes and weight scales compare.

Example:
    >>> import torch
    >>> from mlegpipe.nets import mlp
    >>> torch.manual_seed(0) and None
    >>> net = mlp(2, 1, [8])
    >>> x, y = torch.randn(64, 2), torch.randn(64, 1)
    >>> loss = lambda: torch.nn.functional.mse_loss(net(x), y)
    >>> land = loss_landscape(net, loss, steps=5, seed=1)
    >>> abs(land.center - float(loss().detach())) < 1e-6, land.values.shape
    (True, (5, 5))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mlegpipe.exceptions import ConfigError

__all__ = ["NORMALIZATIONS", "Landscape", "filter_normalized_direction", "loss_landscape", "loss_slice"]

#: How :func:`filter_normalized_direction` rescales: per filter (row), per layer (tensor), or not at all.
NORMALIZATIONS: tuple[str, ...] = ("filter", "layer", "none")


def _parameters(model: nn.Module | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    params = list(model.parameters()) if isinstance(model, nn.Module) else list(model)
    if not params:
        raise ConfigError("the model has no parameters to perturb", path="model")
    return params


def filter_normalized_direction(
    model: nn.Module | Sequence[torch.Tensor],
    generator: torch.Generator | None = None,
    normalization: str = "filter",
    ignore_1d: bool = True,
) -> list[torch.Tensor]:
    """A random direction in weight space, one tensor per parameter, rescaled to the weights' norms.

    Arguments:
        model: the network (or its parameter tensors).
        generator: seeded torch generator for the Gaussian entries.
        normalization: ``filter``: each filter ``d[i]`` (a row of a dense
            weight, an output channel of a convolution) gets the norm of
            ``w[i]``; ``layer``: each tensor gets the norm of its weights;
            ``none``: raw Gaussian.
        ignore_1d: biases and other 1D parameters get a zero direction (else
            they are filter-normalized element-wise, i.e. ``|d_i| = |w_i|``).

    Returns:
        Tensors shaped like the parameters (detached, same dtype).

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(3, 2)
        >>> d = filter_normalized_direction(lin, torch.Generator().manual_seed(0))
        >>> torch.allclose(d[0].norm(dim=1), lin.weight.detach().norm(dim=1)), float(d[1].abs().sum())
        (True, 0.0)
    """
    if normalization not in NORMALIZATIONS:
        raise ConfigError("unknown normalization; known: " + ", ".join(NORMALIZATIONS), path="normalization",
                          value=normalization)
    out = []
    for w in _parameters(model):
        w = w.detach()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64).to(w.dtype)
        if w.dim() <= 1:
            if ignore_1d:
                d.zero_()
            elif normalization != "none":
                d = d.sign() * w.abs()
        elif normalization == "filter":
            d_rows, w_rows = d.reshape(len(d), -1), w.reshape(len(w), -1)
            scale = w_rows.norm(dim=1) / (d_rows.norm(dim=1) + 1e-10)
            d = (d_rows * scale[:, None]).reshape(w.shape)
        elif normalization == "layer":
            d = d * (w.norm() / (d.norm() + 1e-10))
        out.append(d)
    return out


@dataclass
class Landscape:
    """A loss surface f(α, β) = L(θ* + αγ + βν).

    Attributes:
        alphas, betas: grid coordinates (in units of the filter norms).
        values: ``(len(betas), len(alphas))`` losses (``values[j, i]`` at ``(alphas[i], betas[j])``).
        center: L(θ*), the loss of the trained model.
        label: what the loss is (for plots).
        info: settings, timings.
    """

    alphas: np.ndarray
    betas: np.ndarray
    values: np.ndarray
    center: float
    label: str = "loss"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def slice_alpha(self) -> np.ndarray:
        """f(α, β≈0): the row of the grid closest to β = 0."""
        return self.values[int(np.argmin(np.abs(self.betas)))]

    def roughness(self) -> float:
        """RMS deviation of the surface from its best-fitting quadratic, over the surface's value range.

        0 for a plane or a smooth bowl; larger for surfaces with bumps, ridges
        and several minima. A scale-free number to compare two surfaces on
        the same grid: the thesis (Fig. 45) contrasts smooth residual with
        chaotic feed-forward surfaces. Non-finite grid values are left out.
        """
        a, b = np.meshgrid(self.alphas, self.betas)
        v = self.values
        ok = np.isfinite(v)
        if ok.sum() < 6:
            return float("nan")
        design = np.stack([np.ones_like(a), a, b, a * a, a * b, b * b], axis=-1)[ok]
        coef, *_ = np.linalg.lstsq(design, v[ok], rcond=None)
        spread = float(v[ok].max() - v[ok].min())
        if spread == 0.0:
            return 0.0
        return float(np.sqrt(np.mean((design @ coef - v[ok]) ** 2)) / spread)

    def sharpness(self) -> float:
        """Mean rise of the loss on the 8 grid points around the trained weights: ⟨f(ring)⟩ - f(0), in loss units.

        Large for a sharp, narrow minimum, small for a wide, flat basin (Li et
        al. relate flat minima to easier training and better generalization);
        compare models with the same loss on the same grid. Uses the grid
        point nearest α = β = 0 and its neighbours; non-finite neighbours are
        left out.
        """
        i, j = int(np.argmin(np.abs(self.alphas))), int(np.argmin(np.abs(self.betas)))
        ring = self.values[max(j - 1, 0):j + 2, max(i - 1, 0):i + 2].ravel()
        centre = self.values[j, i]
        ring = ring[np.isfinite(ring)]
        if ring.size <= 1 or not np.isfinite(centre):
            return float("nan")
        return float((ring.sum() - centre) / (ring.size - 1) - centre)

    @property
    def finite_fraction(self) -> float:
        """Fraction of grid points with a finite loss (a diverging network gives NaN or inf)."""
        return float(np.isfinite(self.values).mean())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (non-finite grid values become None)."""
        values = [[float(v) if np.isfinite(v) else None for v in row] for row in self.values]
        return {"alphas": self.alphas.tolist(), "betas": self.betas.tolist(), "values": values,
                "center": self.center, "label": self.label, "finite_fraction": self.finite_fraction,
                "info": self.info}


def _evaluate(loss_fn: Callable[[], torch.Tensor | float], grad: bool = False) -> float:
    with torch.set_grad_enabled(grad):
        value = loss_fn()
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def loss_landscape(
    model: nn.Module,
    loss_fn: Callable[[], torch.Tensor | float],
    steps: int = 21,
    span: float = 1.0,
    directions: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    seed: int | torch.Generator = 0,
    normalization: str = "filter",
    progress: bool = False,
    label: str = "loss",
    grad: bool = False,
) -> Landscape:
    """Evaluate ``loss_fn`` on a ``steps × steps`` grid of α, β ∈ [-span, span] around the model's weights.

    Arguments:
        model: the trained network; its weights are moved and restored
            exactly afterwards (also on errors). It is put in eval mode.
        loss_fn: computes the loss of ``model`` as it stands (no arguments);
            keep its data and noise fixed, or the surface shows that noise.
        steps: grid points per axis (odd numbers put a point at 0).
        span: the grid half-width.
        directions: the two directions (default: filter-normalized Gaussian
            directions drawn from ``seed``).
        seed: an integer or a torch generator for the directions.
        normalization: see :func:`filter_normalized_direction`.
        progress: show a progress bar on stderr.
        label: name of the loss (for plots).
        grad: evaluate with autograd on (losses with gradient penalties need it).
    """
    if steps < 2:
        raise ConfigError("a landscape needs at least 2 grid points per axis", path="steps", value=steps)
    params = _parameters(model)
    if directions is None:
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        directions = (filter_normalized_direction(params, gen, normalization),
                      filter_normalized_direction(params, gen, normalization))
    gamma, nu = (list(d) for d in directions)
    if len(gamma) != len(params) or len(nu) != len(params):
        raise ConfigError(f"directions have {len(gamma)} and {len(nu)} tensors, the model {len(params)} parameters",
                          path="directions")
    alphas = np.linspace(-span, span, steps)
    betas = np.linspace(-span, span, steps)
    original = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()
    values = np.empty((steps, steps))
    try:
        center = _evaluate(loss_fn, grad)
        bar = tqdm(total=steps * steps, desc=f"landscape ({label})", disable=not progress, leave=False)
        with torch.no_grad():
            for j, b in enumerate(betas):
                for i, a in enumerate(alphas):
                    for p, w, g, n in zip(params, original, gamma, nu, strict=True):
                        p.copy_(w + float(a) * g + float(b) * n)
                    values[j, i] = _evaluate(loss_fn, grad)
                    bar.update(1)
        bar.close()
    finally:
        with torch.no_grad():
            for p, w in zip(params, original, strict=True):
                p.copy_(w)
        model.train(was_training)
    return Landscape(alphas, betas, values, center, label, {"steps": steps, "span": span,
                                                            "normalization": normalization})


def loss_slice(
    model: nn.Module,
    loss_fn: Callable[[], torch.Tensor | float],
    direction: Sequence[torch.Tensor],
    alphas: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """The 1D curve L(θ* + α d) at ``alphas`` (weights restored afterwards).

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(1, 1, bias=False)
        >>> x = torch.ones(4, 1)
        >>> d = [torch.ones(1, 1)]
        >>> curve = loss_slice(lin, lambda: (lin(x) ** 2).mean(), d, [-lin.weight.item()])
        >>> round(float(curve[0]), 6)
        0.0
    """
    params = _parameters(model)
    original = [p.detach().clone() for p in params]
    out = np.empty(len(alphas))
    try:
        with torch.no_grad():
            for i, a in enumerate(alphas):
                for p, w, d in zip(params, original, direction, strict=True):
                    p.copy_(w + float(a) * d)
                out[i] = _evaluate(loss_fn)
    finally:
        with torch.no_grad():
            for p, w in zip(params, original, strict=True):
                p.copy_(w)
    return out
