"""The unfolding generator ``G_v``: its kind (flow or MLP), and how each is started at the simulation.

Below the detector's resolution the unfolded result is whatever ``G_v``
starts with, so before the adversarial training it is fitted to the
simulation (``pretrain_steps``):

- :class:`FlowKind` (``generator = "flow"``): a neural spline flow
  (:class:`~mlegpipe_builtins.unfolding._flow_generator.FlowGenerator`) fitted by
  maximum likelihood; it reproduces the simulation's structure closely;
- :class:`MlpKind` (``generator = "mlp"``): noise → MLP as in the thesis, fitted by a
  sample distance (:class:`SlicedWasserstein` or :class:`Mmd`, ``pretrain_loss``).

Either is fitted in the generator's own coordinates where the decoder has the
simulation's ν quantile maps (``pretrain_space = "latent"``, see
:meth:`~mlegpipe_builtins.unfolding._vertex_model.VertexDecoder.latent`), in the
surrogate's standardized vertex features (``"features"``), or both (MLP only).

Data-parallel (``dp``, :class:`~mlegpipe.data_parallel.DataParallel`):
the flow's maximum likelihood is a mean over events, each rank takes its rows
of the global minibatch and the gradients are averaged by events; the MLP's
distance to the simulation is a statistic of the whole batch, so each rank
runs the MLP on its rows of the global noise, the outputs are gathered and
the distance is computed alike on every rank, the gradients summed. Both
reproduce one process up to floating-point reduction order.

Example:
    >>> kind = MlpKind(noise=4, hidden=8, layers=1, steps=0, distance=Mmd([0.5]))
    >>> net = kind.build(2)
    >>> net(torch.zeros(3, kind.noise_dim(2))).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mlegpipe.data_parallel import DataParallel, StepLoss
from mlegpipe.exceptions import ConfigError
from mlegpipe.losses import mmd2, sliced_wasserstein2
from mlegpipe.nets import mlp
from mlegpipe.training import cosine_schedule
from mlegpipe_builtins.unfolding._flow_generator import FlowGenerator
from mlegpipe_builtins.unfolding._vertex_model import NU_BOUND, VertexDecoder

__all__ = ["FlowKind", "GeneratorKind", "Mmd", "MlpKind", "SampleDistance", "SlicedWasserstein", "adam_steps",
           "latent_target"]

#: events per side of the sliced-Wasserstein pretraining
_PRETRAIN_EVENTS = 4096
#: random directions of every sliced-Wasserstein distance
SLICED_PROJECTIONS = 64
#: batch and learning rate of the maximum-likelihood pretraining of a flow G_v
_FLOW_PRETRAIN_BATCH = 1024
_FLOW_PRETRAIN_LR = 3e-3


class SampleDistance:
    """A differentiable distance between two samples of events (``pretrain_loss``, ``match_loss``)."""

    name: str = ""

    def __call__(self, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The distance between the samples ``a`` and ``b`` (random directions, if any, from ``generator``)."""
        raise NotImplementedError

    def pretrain_events(self) -> int:
        """Events per side when the pretraining minimizes it."""
        raise NotImplementedError

    def match(self, fake: torch.Tensor, real: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The match term of the generator loss between folded ``fake`` and ``real`` batches."""
        raise NotImplementedError


@dataclass(frozen=True)
class SlicedWasserstein(SampleDistance):
    """Sliced Wasserstein-2 along :data:`SLICED_PROJECTIONS` random directions (every quantile matched).

    Example:
        >>> x = torch.randn(50, 2)
        >>> float(SlicedWasserstein()(x, x, torch.Generator().manual_seed(0)))
        0.0
    """

    name = "sliced"

    def __call__(self, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return sliced_wasserstein2(a, b, SLICED_PROJECTIONS, generator)

    def pretrain_events(self) -> int:
        return _PRETRAIN_EVENTS

    def match(self, fake: torch.Tensor, real: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        m = min(len(fake), len(real))
        return self(fake[:m], real[:m], generator)


@dataclass(frozen=True)
class Mmd(SampleDistance):
    """MMD² with Gaussian kernels of ``widths`` on ``events`` events per side (match term; twice that in pretraining).

    Example:
        >>> x = torch.randn(50, 2)
        >>> float(Mmd([0.5])(x, x, torch.Generator()))
        0.0
    """

    widths: Sequence[float]
    events: int = 256
    name = "mmd"

    def __call__(self, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return mmd2(a, b, list(self.widths))

    def pretrain_events(self) -> int:
        return 2 * self.events

    def match(self, fake: torch.Tensor, real: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        m = min(self.events, len(fake))
        return self(fake[:m], real[:m], generator)


def adam_steps(net: nn.Module, loss_fn: Callable[[], torch.Tensor | StepLoss], steps: int, lr: float, decay: bool,
               betas: tuple[float, float] = (0.9, 0.999), dp: DataParallel | None = None) -> float:
    """``steps`` Adam updates of ``net`` on ``loss_fn()`` (learning rate cosine-decayed to 0 with ``decay``);
    returns the last loss.

    ``loss_fn`` returns the loss, or with ``dp`` this rank's :class:`StepLoss`, whose gradients are
    combined over the ranks before every step.

    Example:
        >>> net = nn.Linear(1, 1)
        >>> adam_steps(net, lambda: net(torch.ones(1, 1)).pow(2).sum(), 0, 1e-2, decay=False)
        0.0
    """
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, cosine_schedule(steps)) if decay else None
    last = 0.0
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        if isinstance(loss, StepLoss):
            (dp or DataParallel(False)).backward(loss, net.parameters())
            last = loss.value
        else:
            loss.backward()
            last = loss
        opt.step()
        if schedule is not None:
            schedule.step()
    return float(last.item()) if isinstance(last, torch.Tensor) else float(last)


def latent_target(decoder: VertexDecoder, prior: torch.Tensor, space: str) -> torch.Tensor | None:
    """The simulation's (ν₁, ν₂) in the generator's bounded latent coordinates, when the fit is made there.

    ``prior`` holds the simulation's standardized vertex features and, when the decoder has the
    simulation's quantile maps, its (ν₁, ν₂) in two more columns; None when ``space`` is
    ``"features"`` or those are missing.
    """
    n_vtx = len(decoder.vertex_features)
    if space == "features" or decoder.nu_quantiles is None or prior.shape[1] != n_vtx + 2:
        return None
    nus = prior[:, n_vtx:].double().numpy()
    return torch.as_tensor(decoder.latent(nus[:, 0], nus[:, 1]), dtype=torch.float32)


class GeneratorKind:
    """How ``G_v`` is built and fitted to the simulation before the adversarial training.

    Attributes:
        steps: pretraining steps (0: start from scratch).
        space: ``pretrain_space``: ``latent``, ``features`` or ``both``.
        loss_name: the pretraining loss in the logs.
    """

    steps: int
    space: str
    loss_name: str = ""

    def build(self, n_out: int) -> nn.Module:
        """A fresh generator with ``n_out`` outputs (initialized from torch's global stream)."""
        raise NotImplementedError

    def noise_dim(self, n_out: int) -> int:
        """Noise dimensions the generator takes."""
        raise NotImplementedError

    def pretrain(self, net: nn.Module, decoder: VertexDecoder, prior: torch.Tensor, columns: list[int],
                 generator: torch.Generator, section: str = "unfolding", dp: DataParallel | None = None) -> float:
        """Fit ``net`` to the simulation's events ``prior`` (see :func:`latent_target`); returns the last loss.

        ``columns``: the standardized vertex features compared in the ``features`` space. ``dp``: split
        every step's global batch over the ranks (None: this process alone).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class FlowKind(GeneratorKind):
    """A neural spline flow, pretrained by maximum likelihood (its noise is its base: as many as outputs).

    Example:
        >>> FlowKind(hidden=8, transforms=1, bins=4, steps=0).noise_dim(2)
        2
    """

    hidden: int = 64
    transforms: int = 3
    bins: int = 8
    steps: int = 2000
    space: str = "latent"
    loss_name = "-log p"

    def build(self, n_out: int) -> nn.Module:
        return FlowGenerator(n_out, self.hidden, self.transforms, self.bins)

    def noise_dim(self, n_out: int) -> int:
        return n_out

    def pretrain(self, net: nn.Module, decoder: VertexDecoder, prior: torch.Tensor, columns: list[int],
                 generator: torch.Generator, section: str = "unfolding", dp: DataParallel | None = None) -> float:
        """Maximum likelihood of the simulation's latent points (``nu``), else of its standardized features.

        Data-parallel: each rank's rows of the global minibatch, gradients averaged by events.

        Raises:
            ConfigError: a ``nu`` generator without latent coordinates (``nu_map``, ``pretrain_space``).
        """
        assert isinstance(net, FlowGenerator)
        latent = latent_target(decoder, prior, self.space)
        if latent is None and decoder.mode == "nu":
            raise ConfigError("a flow G_v generating nu is fitted in its latent coordinates: it needs "
                              "nu_map = 'simulation' and pretrain_space 'latent' or 'both'",
                              path=f"{section}.pretrain_space", value=self.space)
        # outputs whose bounded image (NU_BOUND tanh) is the simulation's latent point, else its features
        target = NU_BOUND * torch.atanh(latent / NU_BOUND) if latent is not None else prior[:, :decoder.n_out]
        batch = min(_FLOW_PRETRAIN_BATCH, len(target))
        dp = dp or DataParallel(False)

        def neg_log_likelihood() -> torch.Tensor | StepLoss:
            (rows,) = dp.take(torch.randint(len(target), (batch,), generator=generator))
            loss = -net.log_prob(target[rows]).mean()
            return dp.step_loss(loss, len(rows), batch) if dp.enabled else loss

        return adam_steps(net, neg_log_likelihood, self.steps, _FLOW_PRETRAIN_LR, decay=True, dp=dp)


@dataclass(frozen=True)
class MlpKind(GeneratorKind):
    """Noise → MLP (leaky ReLU), pretrained by minimizing ``distance`` to the simulation.

    Arguments:
        noise, hidden, layers: noise dimensions and hidden layers of the MLP.
        steps, space: see :class:`GeneratorKind`.
        distance: the pretraining loss (``pretrain_loss``).
        lr, decay: Adam learning rate of the pretraining, cosine decay to 0.
    """

    noise: int = 8
    hidden: int = 64
    layers: int = 3
    steps: int = 500
    distance: SampleDistance = SlicedWasserstein()
    space: str = "latent"
    lr: float = 1e-3
    decay: bool = True

    @property
    def loss_name(self) -> str:  # type: ignore[override]
        """The pretraining distance's name."""
        return self.distance.name

    def build(self, n_out: int) -> nn.Module:
        return mlp(self.noise, n_out, [self.hidden] * self.layers, activation="leaky_relu")

    def noise_dim(self, n_out: int) -> int:
        return self.noise

    def pretrain(self, net: nn.Module, decoder: VertexDecoder, prior: torch.Tensor, columns: list[int],
                 generator: torch.Generator, section: str = "unfolding", dp: DataParallel | None = None) -> float:
        """Minimize the distance to the simulation in the latent coordinates, the features, or both summed.

        Batches of ``distance.pretrain_events()`` per side; with ``decay`` the learning rate falls to 0
        on a cosine (a constant rate leaves the last iterate as noisy as one batch's loss).
        Data-parallel: the MLP runs on this rank's rows of the global noise; the distance, a
        statistic of the whole batch, on the gathered outputs (alike on every rank), gradients summed.
        """
        latent = latent_target(decoder, prior, self.space)
        m = min(self.distance.pretrain_events(), len(prior))
        dp = dp or DataParallel(False)

        def to_simulation() -> torch.Tensor | StepLoss:
            (noise,) = dp.take(torch.randn(m, self.noise, generator=generator))
            out = dp.gather(net(noise), dp.prefix_counts(m, m))
            idx = torch.randint(len(prior), (m,), generator=generator)
            loss = torch.zeros(())
            if latent is not None:
                loss = self.distance(NU_BOUND * torch.tanh(out / NU_BOUND), latent[idx], generator)
            if latent is None or self.space == "both":
                phi = 2 * np.pi * torch.rand(m, generator=generator) if decoder.needs_phi else None
                loss = loss + self.distance(decoder.to_surrogate(out, phi)[:, columns], prior[idx][:, columns],
                                            generator)
            return dp.step_loss(None, 0, 0, loss) if dp.enabled else loss

        return adam_steps(net, to_simulation, self.steps, self.lr, decay=self.decay, betas=(0.5, 0.9), dp=dp)
