"""Input encodings that let small networks represent sharp changes in their inputs.

A multilayer perceptron on a standardized feature learns smooth functions of
it first: a detector whose resolution jumps at a zone boundary (Matrix 0.2's
electromagnetic calorimeter changes at η = −2) is learned as a ramp several
tenths of a standard deviation wide. :class:`PiecewiseLinearEncoding` appends,
for every feature, its position inside each of ``bins`` equal intervals over
``[low, high]`` (Gorishniy, Rubachev & Babenko 2022, "On embeddings for
numerical features in tabular deep learning"): the next layer then switches
at an interval edge with a single weight. The encoding is continuous and
piecewise linear, so gradients still reach the inputs (a GAN trained through a
frozen surrogate needs them).

Example:
    >>> import torch
    >>> enc = PiecewiseLinearEncoding(1, bins=4, low=-2.0, high=2.0)
    >>> enc(torch.tensor([[0.5]])).tolist()
    [[0.5, 1.0, 1.0, 0.5, 0.0]]
"""

from __future__ import annotations

import torch
from torch import nn

from mlegpipe.exceptions import ConfigError

__all__ = ["PiecewiseLinearEncoding"]


class PiecewiseLinearEncoding(nn.Module):
    """Each feature followed by its clamped position in ``bins`` equal intervals of ``[low, high]``.

    Output width ``n_features * (bins + 1)``: ``[x, e_1(x_1), ..., e_bins(x_1), e_1(x_2), ...]``
    with ``e_k(x) = clamp((x - b_{k-1}) / (b_k - b_{k-1}), 0, 1)``, so ``e_k`` is 0 below its
    interval, 1 above it and linear inside. The raw features are kept, so values outside
    ``[low, high]`` still reach the network.

    Arguments:
        n_features: input width.
        bins: intervals per feature (≥ 1).
        low, high: range covered, in the units of the input (standardized: ±4).

    Example:
        >>> enc = PiecewiseLinearEncoding(2, bins=3)
        >>> enc.n_out, enc(torch.zeros(5, 2)).shape
        (8, torch.Size([5, 8]))
    """

    def __init__(self, n_features: int, bins: int, low: float = -4.0, high: float = 4.0) -> None:
        super().__init__()
        if bins < 1 or n_features < 1:
            raise ConfigError("a piecewise-linear encoding needs at least one feature and one bin",
                              value=(n_features, bins))
        if not high > low:
            raise ConfigError("the encoding's range must have high > low", value=(low, high))
        self.n_out = n_features * (bins + 1)
        edges = torch.linspace(low, high, bins + 1)
        self.register_buffer("lower", edges[:-1].clone())
        self.register_buffer("width", edges[1:] - edges[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = (x[:, :, None] - self.lower.to(x.dtype)) / self.width.to(x.dtype)
        return torch.cat([x, position.clamp(0.0, 1.0).flatten(1)], dim=1)
