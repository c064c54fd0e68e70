"""Networks and losses of the learned detector surrogates (thesis ch. 6).

All networks work in standardized units (see ``_fold_features.FeatureScaler``).

- :class:`NoisyFolder`: conditional folding generator ``G(vertex, noise) → detector``
  (optionally residual: ``detector = vertex + G`` for features present at both levels).
- :class:`DirectFolder`: the direct-folding baseline ``G(vertex) → detector``, no noise.
- :class:`FlowFolder`: a zuko neural spline flow of ``detector | vertex``.
- :class:`PairCritic`: discriminator on ``(detector, vertex)`` pairs.
- :class:`LSGANLoss`, :class:`WGANGPLoss`: adversarial losses (the kernel two-sample MMD² the
  surrogates add is :func:`mlegpipe.losses.mmd2`); :func:`energy_score`: a proper scoring rule.

Example:
    >>> g = NoisyFolder(2, 2, noise_dim=4, hidden=16, layers=2, residual=True)
    >>> g(torch.zeros(5, 2), torch.zeros(5, 4)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import zuko
from torch import nn

from mlegpipe.encodings import PiecewiseLinearEncoding
from mlegpipe.nets import mlp
from mlegpipe_builtins.discriminators.critics import gradient_penalty

__all__ = [
    "DirectFolder",
    "FlowFolder",
    "NoisyFolder",
    "LSGANLoss",
    "PairCritic",
    "WGANGPLoss",
    "energy_score",
]


Residual = bool | Sequence[int]


class _ScaledTarget(nn.Module):
    """Networks predict the target (detector, or detector - vertex when residual) in units of its own spread.

    ``residual`` is False (no shift), True (detector feature j is the shift of
    vertex feature j) or a list giving for each detector feature the index of
    the vertex feature it shifts from (-1: none). ``target_mean``/``target_std``
    are buffers set from the training pairs by :meth:`set_target_scale`, so a
    5 % smearing is an O(1) output for the network.
    """

    def __init__(self, n_detector: int, residual: Residual) -> None:
        super().__init__()
        if isinstance(residual, bool):
            residual = list(range(n_detector)) if residual else [-1] * n_detector
        index = torch.as_tensor(list(residual), dtype=torch.long)
        self.register_buffer("shift_index", index.clamp_min(0))
        self.register_buffer("shift_mask", (index >= 0).to(torch.float32))
        self.register_buffer("target_mean", torch.zeros(n_detector))
        self.register_buffer("target_std", torch.ones(n_detector))

    def _base(self, vertex: torch.Tensor) -> torch.Tensor:
        return vertex[:, self.shift_index] * self.shift_mask.to(vertex.dtype)

    def set_target_scale(self, vertex: torch.Tensor, detector: torch.Tensor) -> None:
        """Fit the target scale on training pairs (standardized units)."""
        target = detector - self._base(vertex)
        self.target_mean.copy_(target.mean(0))
        self.target_std.copy_(target.std(0).clamp_min(1e-6))

    def _to_detector(self, vertex: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self._base(vertex) + out * self.target_std.to(out.dtype) + self.target_mean.to(out.dtype)

    def to_target(self, vertex: torch.Tensor, detector: torch.Tensor) -> torch.Tensor:
        """The scaled target of detector features given the vertex features."""
        return (detector - self._base(vertex) - self.target_mean.to(detector.dtype)) / self.target_std.to(detector.dtype)


class NoisyFolder(_ScaledTarget):
    """Conditional folding generator: ``(vertex_std, noise) → detector_std``.

    With ``residual=True`` the network predicts the shift ``detector - vertex``
    (standardized with the vertex scaler), so a detector that changes events a
    little starts near the identity and extrapolates beyond the training range
    instead of falling back to training-like events.

    Example:
        >>> NoisyFolder(1, 1, 2, 8, 1, residual=False)(torch.ones(3, 1), torch.ones(3, 2)).shape
        torch.Size([3, 1])
    """

    def __init__(self, n_vertex: int, n_detector: int, noise_dim: int, hidden: int, layers: int,
                 residual: Residual, affine: bool = False) -> None:
        super().__init__(n_detector, residual)
        self.noise_dim = noise_dim
        # inputs: vertex, noise and their products, so vertex-dependent widths are easy to express
        self.net = mlp(n_vertex + noise_dim + n_vertex * noise_dim, n_detector, [hidden] * layers)
        # affine: target = shift(v) + exp(log_scale(v)) · net(v, noise), widths that vary 10× with the vertex
        self.affine = mlp(n_vertex, 2 * n_detector, [hidden] * 2) if affine else None

    def forward(self, vertex: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self._to_detector(vertex, self.target(vertex, noise))

    def target(self, vertex: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The scaled target ((detector [- vertex]) - mean) / std the network produces."""
        products = (vertex[:, :, None] * noise[:, None, :]).flatten(1)
        out = self.net(torch.cat([vertex, noise, products], dim=1))
        if self.affine is None:
            return out
        shift, log_scale = self.head(vertex)
        return shift + torch.exp(log_scale) * out

    def head(self, vertex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The affine head's shift and log width per event and feature (scaled-target units).

        Example:
            >>> g = NoisyFolder(1, 2, 2, 8, 1, residual=False, affine=True)
            >>> [t.shape for t in g.head(torch.zeros(3, 1))]
            [torch.Size([3, 2]), torch.Size([3, 2])]
        """
        if self.affine is None:
            raise ValueError("this generator has no affine head (affine=False)")
        shift, log_scale = self.affine(vertex).chunk(2, dim=1)
        return shift, log_scale.clamp(-7.0, 3.0)

    def head_score(self, vertex: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean Dawid-Sebastiani score Σ_j [log s_j + ½((t_j - m_j)/s_j)²] of the head (m, s) against true targets.

        The Gaussian negative log-likelihood up to a constant, but proper for the
        conditional mean and width of ANY response shape: minimal when m(v) and s(v)
        are the mean and standard deviation of the target given v. Its gradient in
        log s is 1 - z², whatever the width, so narrow responses in sparse regions
        are learned as well as wide ones (the energy score's pull on a width scales
        with the width).

        Example:
            >>> g = NoisyFolder(1, 1, 2, 8, 1, residual=False, affine=True)
            >>> bool(torch.isfinite(g.head_score(torch.zeros(4, 1), torch.ones(4, 1))))
            True
        """
        shift, log_scale = self.head(vertex)
        z = (target - shift) * torch.exp(-log_scale)
        return (log_scale + 0.5 * z * z).sum(1).mean()


class DirectFolder(_ScaledTarget):
    """Direct folding baseline: a deterministic regression ``vertex_std → detector_std``.

    Example:
        >>> DirectFolder(2, 2, 8, 1, residual=True)(torch.zeros(3, 2)).shape
        torch.Size([3, 2])
    """

    def __init__(self, n_vertex: int, n_detector: int, hidden: int, layers: int, residual: Residual) -> None:
        super().__init__(n_detector, residual)
        self.net = mlp(n_vertex, n_detector, [hidden] * layers)

    def forward(self, vertex: torch.Tensor) -> torch.Tensor:
        return self._to_detector(vertex, self.net(vertex))

    def loss(self, vertex: torch.Tensor, detector: torch.Tensor) -> torch.Tensor:
        """Mean squared error in target units."""
        return ((self.net(vertex) - self.to_target(vertex, detector)) ** 2).mean()


class FlowFolder(_ScaledTarget):
    """Conditional neural spline flow ``p(detector_std | vertex_std)`` (zuko NSF).

    With ``residual=True`` the flow models ``detector - vertex``. With
    ``affine=True`` a conditional affine autoregressive transform precedes the
    splines, so the width of the response can follow the vertex over orders of
    magnitude. With ``context_bins`` > 0 the flow is conditioned on the vertex
    features and their :class:`~mlegpipe.encodings.PiecewiseLinearEncoding` on that
    many intervals over ±4 standard deviations. Sampling maps Gaussian noise
    through the inverse transform, so it is reparametrized and differentiable in
    the vertex features.

    Example:
        >>> f = FlowFolder(1, 1, transforms=2, hidden=8, bins=4, residual=True)
        >>> f.sample(torch.zeros(3, 1), torch.zeros(3, 1)).shape
        torch.Size([3, 1])
    """

    def __init__(self, n_vertex: int, n_detector: int, transforms: int, hidden: int, bins: int,
                 residual: Residual, affine: bool = False, context_bins: int = 0) -> None:
        super().__init__(n_detector, residual)
        # the conditioners see the vertex through a piecewise-linear encoding: sharp changes of the
        # response with the vertex (resolution steps at detector zone edges) in one weight each
        self.encode: nn.Module = nn.Identity()
        n_context = n_vertex
        if context_bins:
            encoding = PiecewiseLinearEncoding(n_vertex, context_bins)
            self.encode, n_context = encoding, encoding.n_out
        nsf = zuko.flows.NSF(features=n_detector, context=n_context, transforms=transforms,
                             hidden_features=(hidden, hidden), bins=bins)
        if affine:
            # a conditional shift and scale per event first: the splines (bounded to ±5) then see an
            # O(1) residual even where the response width varies by 10× with the vertex (detector zones)
            first = zuko.flows.MaskedAutoregressiveTransform(features=n_detector, context=n_context,
                                                             hidden_features=(hidden, hidden))
            nsf = zuko.flows.Flow([first, *nsf.transform.transforms], nsf.base)
        self.flow = nsf

    def log_prob(self, detector: torch.Tensor, vertex: torch.Tensor) -> torch.Tensor:
        """Log density of the scaled target given ``vertex`` (standardized units; up to a constant)."""
        return self.flow(self.encode(vertex)).log_prob(self.to_target(vertex, detector))

    def sample(self, vertex: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Detector features from standard-normal ``noise`` of shape ``(n, n_detector)``."""
        return self._to_detector(vertex, self.flow(self.encode(vertex)).transform.inv(noise))


class PairCritic(nn.Module):
    """Discriminator on the concatenated ``(detector, vertex)`` pair (thesis eq. 22).

    The folding GAN shows it the detector features as the scaled target (see
    :class:`NoisyFolder`), an invertible function of the pair that makes a
    few-percent smearing an O(1) input.

    Example:
        >>> PairCritic(2, 2, 8, 2, 0.1)(torch.zeros(3, 2), torch.zeros(3, 2)).shape
        torch.Size([3, 1])
    """

    def __init__(self, n_detector: int, n_vertex: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.net = mlp(n_detector + n_vertex, 1, [hidden] * layers, dropout=dropout)

    def forward(self, detector: torch.Tensor, vertex: torch.Tensor | None) -> torch.Tensor:
        return self.net(detector if vertex is None else torch.cat([detector, vertex], dim=1))


class LSGANLoss:
    """Least-squares GAN losses with the thesis targets a = -1, b = 1, c = 0 (b - a = 2, b - c = 1).

    critic: ½⟨(D(real) - b)²⟩ + ½⟨(D(fake) - a)²⟩; generator: ½⟨(D(fake) - c)²⟩.

    Example:
        >>> class Const(nn.Module):
        ...     def forward(self, d, v): return torch.ones(len(d), 1)
        >>> loss = LSGANLoss()
        >>> float(loss.critic_loss(Const(), torch.zeros(2, 1), torch.zeros(2, 1), None))
        2.0
        >>> float(loss.generator_loss(Const(), torch.zeros(2, 1), None))
        0.5
    """

    a, b, c = -1.0, 1.0, 0.0

    def critic_loss(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                    vertex: torch.Tensor | None, rows: tuple[int, slice] | None = None) -> torch.Tensor:
        """Loss minimized by the critic (``rows``: see :meth:`WGANGPLoss.critic_loss`; no draws here)."""
        return 0.5 * ((critic(real, vertex) - self.b) ** 2).mean() + 0.5 * ((critic(fake, vertex) - self.a) ** 2).mean()

    def generator_loss(self, critic: nn.Module, fake: torch.Tensor, vertex: torch.Tensor | None) -> torch.Tensor:
        """Loss minimized by the generator."""
        return 0.5 * ((critic(fake, vertex) - self.c) ** 2).mean()


class WGANGPLoss:
    """Wasserstein losses with gradient penalty.

    critic: ⟨D(fake)⟩ - ⟨D(real)⟩ + λ⟨(‖∇ₓD(x̂)‖ - 1)²⟩ on random interpolates x̂ of
    the detector features (the vertex condition held fixed: the discriminators'
    :func:`~mlegpipe_builtins.discriminators.critics.gradient_penalty` of the
    :class:`PairCritic` network); generator: -⟨D(fake)⟩.

    Arguments:
        gp_lambda: penalty weight λ (10 in the thesis).
        generator: torch generator for the interpolation weights.

    Example:
        >>> critic = PairCritic(1, 0, 4, 0, 0.0)
        >>> with torch.no_grad():
        ...     _ = critic.net[0].weight.fill_(1.0)
        >>> loss = WGANGPLoss(10.0, torch.Generator().manual_seed(0))
        >>> abs(loss.critic_loss(critic, torch.ones(4, 1), torch.zeros(4, 1), None).item() + 1.0) < 1e-6
        True
    """

    def __init__(self, gp_lambda: float, generator: torch.Generator) -> None:
        self.gp_lambda = gp_lambda
        self.generator = generator

    def critic_loss(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                    vertex: torch.Tensor | None, rows: tuple[int, slice] | None = None) -> torch.Tensor:
        """Loss minimized by the critic (including the gradient penalty, computed first).

        ``rows``: data-parallel training, the events are rows ``rows[1]`` of a global batch of
        ``rows[0]``: the interpolation weights are drawn for the global batch (as one process draws
        them) and cut to these rows, so the penalty's mean over the global batch is reproduced.
        """
        penalty = gradient_penalty(critic.net, real, fake, vertex, self.generator, rows=rows)
        return critic(fake, vertex).mean() - critic(real, vertex).mean() + self.gp_lambda * penalty

    def generator_loss(self, critic: nn.Module, fake: torch.Tensor, vertex: torch.Tensor | None) -> torch.Tensor:
        """Loss minimized by the generator."""
        return -critic(fake, vertex).mean()


def energy_score(fake: torch.Tensor, fake2: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean energy score of two generated responses per event against the true one (lower is better).

    ES = ½(‖f₁ - r‖ + ‖f₂ - r‖) - ½‖f₁ - f₂‖ per event, ``f₁, f₂`` two draws of the
    generator for the vertex of the pair ``r``: a strictly proper scoring rule, so
    it is minimal when the generator reproduces p(detector | vertex) for every
    vertex, however rare (Gneiting & Raftery 2007); no critic is needed.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> r = torch.randn(20000, 1, generator=g)
        >>> right = energy_score(torch.randn(20000, 1, generator=g), torch.randn(20000, 1, generator=g), r)
        >>> narrow = energy_score(0.3 * torch.randn(20000, 1, generator=g), 0.3 * torch.randn(20000, 1, generator=g), r)
        >>> bool(right < narrow)
        True
    """
    return (0.5 * ((fake - real).norm(dim=1) + (fake2 - real).norm(dim=1)) - 0.5 * (fake - fake2).norm(dim=1)).mean()
