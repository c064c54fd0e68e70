"""Training one replica's generator ``G_v`` through the frozen surrogate: pretraining, then the adversarial loop.

:class:`AdversarialTraining` builds ``G_v`` (its :class:`~._vertex_generator.GeneratorKind`),
starts it at the simulation, and trains it against a fresh adversary (any
discriminator plugin) so that its events, folded by the frozen surrogate
(``fold_tensor``, differentiable) and thinned by the surrogate's pass model,
cannot be told from the measured data by the critic (which sees the
:class:`~._critic_view.CriticView` of the events). A sample distance between
folded fakes and data (``match_loss``, weight ``match_weight``) is added to
the generator loss. The generator with the best validation metric (the mean
detector-level W1 per critic input) is kept.

Example:
    >>> AdversarialSettings(steps=10).critic_columns(["a", "phi"], ["phi"])
    [0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from mlegpipe.context import StageContext
from mlegpipe.metrics.distances import wasserstein1
from mlegpipe.stages import DifferentiableSurrogate, Discriminator
from mlegpipe.training import MinibatchSampler, TrainLoop, cosine_schedule
from mlegpipe_builtins.unfolding._critic_view import CriticView
from mlegpipe_builtins.unfolding._surrogate import pass_probability
from mlegpipe_builtins.unfolding._vertex_generator import GeneratorKind, SampleDistance
from mlegpipe_builtins.unfolding._vertex_model import VertexDecoder

__all__ = ["AdversarialSettings", "AdversarialTraining", "AdversarySpec", "TrainedGenerator"]

#: events of the fixed validation batch
_VALID_EVENTS = 8192

#: The adversary's plugin class and parameters: each replica builds its own from them (picklable).
AdversarySpec = tuple[type[Discriminator], Any]


@dataclass(frozen=True)
class AdversarialSettings:
    """The adversarial training's parameters (the ``gan-unfold`` parameters of the same names)."""

    steps: int = 1500
    batch_size: int = 512
    lr: float = 1e-3
    critic_steps: int = 1
    lr_decay: bool = True
    validate_every: int = 250
    match_weight: float = 10.0
    critic_exclude: list[str] = field(default_factory=lambda: ["lepton_phi"])

    def critic_columns(self, names: list[str], exclude: list[str] | None = None) -> list[int]:
        """Columns of the vertex features ``names`` the critic sees (all when it would see none)."""
        exclude = self.critic_exclude if exclude is None else exclude
        return [j for j, n in enumerate(names) if n not in exclude] or list(range(len(names)))


@dataclass
class TrainedGenerator:
    """One replica's trained ``G_v``, its noise dimensions and its training's outcome."""

    net: nn.Module
    noise_dim: int
    best_step: int | None
    best_metric: float | None
    skipped_steps: int


def _critic_optimizer(adversary: Discriminator, critic: nn.Module) -> torch.optim.Optimizer:
    """The adversary's own optimizer (:meth:`~mlegpipe.stages.Discriminator.make_optimizer`), else Adam."""
    return adversary.make_optimizer(critic.parameters()) or \
        torch.optim.Adam(critic.parameters(), lr=2e-4, betas=(0.5, 0.9))


@dataclass(frozen=True)
class AdversarialTraining:
    """Trains one replica's ``G_v``: its kind, the adversary, the match distance, the settings."""

    settings: AdversarialSettings
    kind: GeneratorKind
    adversary: AdversarySpec
    match: SampleDistance

    def train(self, replica: int, real_view: torch.Tensor, surrogate: DifferentiableSurrogate,
              decoder: VertexDecoder, view: CriticView, prior: torch.Tensor | None,
              ctx: StageContext) -> TrainedGenerator:
        """Train replica ``replica`` on the critic inputs ``real_view`` of its data resample.

        Arguments:
            prior: the simulation's standardized vertex features (and ν), for the pretraining (None: none).
            ctx: the stage's context: seeds (per replica), logs, progress.
        """
        s = self.settings
        log_ctx = ctx.child(f"replica{replica}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.torch_seed("init", replica))
            net = self.kind.build(decoder.n_out)
        noise_dim = self.kind.noise_dim(decoder.n_out)
        if prior is not None and self.kind.steps:
            columns = s.critic_columns(list(surrogate.vertex_features))
            last = self.kind.pretrain(net, decoder, prior, columns, ctx.torch_generator("pretrain", replica), ctx.name)
            log_ctx.log.info("replica %d: started at the simulation (%d steps, %s %.3g)", replica, self.kind.steps,
                             self.kind.loss_name, last)
        adversary = self.adversary[0](self.adversary[1], ctx.child(f"replica{replica}/critic"))
        critic = adversary.build(real_view.shape[1])
        opt_c = _critic_optimizer(adversary, critic)
        opt_g = torch.optim.Adam(net.parameters(), lr=s.lr, betas=(0.5, 0.9))
        gens = {n: ctx.torch_generator(n, replica) for n in ("batches", "noise", "accept", "projections")}
        batches = MinibatchSampler(real_view, batch_size=s.batch_size, generator=gens["batches"])
        accept = pass_probability(surrogate)

        def fake(n: int, noise: torch.Generator, accept_gen: torch.Generator | None) -> torch.Tensor:
            out = net(torch.randn(n, noise_dim, generator=noise))
            phi = 2 * np.pi * torch.rand(n, generator=noise) if decoder.needs_phi else None
            v_std = decoder.to_surrogate(out, phi)
            d_std = surrogate.fold_tensor(v_std, noise)
            if accept is not None and accept_gen is not None:
                keep = torch.bernoulli(accept(v_std, d_std).detach().clamp(0, 1), generator=accept_gen) > 0
                d_std, v_std = d_std[keep], v_std[keep]
            seen = view(d_std, v_std)
            return seen[torch.isfinite(seen).all(dim=1)]  # a surrogate pushed off its range may return NaN

        skipped = [0]

        def step(_: int) -> dict[str, float]:
            net.train()
            critic.train()
            for _k in range(s.critic_steps):
                (rb,) = batches()
                with torch.no_grad():
                    fb = fake(len(rb), gens["noise"], gens["accept"])
                m = min(len(rb), len(fb))
                loss_c = adversary.discriminator_loss(critic, rb[:m], fb[:m])
                opt_c.zero_grad()
                loss_c.backward()
                opt_c.step()
            fb = fake(s.batch_size, gens["noise"], gens["accept"])
            loss_g = adversary.generator_loss(critic, fb)
            if s.match_weight > 0:
                (rb,) = batches()
                loss_g = loss_g + s.match_weight * self.match.match(fb, rb, gens["projections"])
            opt_g.zero_grad()
            loss_g.backward()
            if all(bool(torch.isfinite(q.grad).all()) for q in net.parameters() if q.grad is not None):
                opt_g.step()
            else:  # never let one non-finite gradient (surrogate off its range) poison the generator
                skipped[0] += 1
            return {"critic": loss_c.item(), "generator": loss_g.item()}

        valid_real = real_view[:_VALID_EVENTS].detach().numpy()

        def validate(_: int) -> dict[str, float]:
            net.eval()
            with torch.no_grad():
                fv = fake(_VALID_EVENTS, torch.Generator().manual_seed(12345),
                          torch.Generator().manual_seed(54321)).numpy()
            w1 = [wasserstein1(fv[:, j], valid_real[:, j]) for j in range(valid_real.shape[1])]
            return {"metric": float(np.mean(w1))}

        loop = TrainLoop(log_ctx, step, s.steps, modules={"generator": net, "critic": critic},
                         optimizers={"generator": opt_g, "critic": opt_c}, validate_fn=validate,
                         validate_every=s.validate_every, generators=gens,
                         lr_schedule=cosine_schedule(s.steps) if s.lr_decay else None,
                         desc=f"{ctx.name} replica {replica}")
        loop.run()
        net.eval()
        return TrainedGenerator(net, noise_dim, loop.best_step, loop.best_metric, skipped[0])
