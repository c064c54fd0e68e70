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

Data-parallel training (``data_parallel``, every rank trains the same replica
with the same seeds; see :mod:`~mlegpipe.data_parallel`): each
step draws its global batches and every per-event random number (G_v's
noise and azimuth, the surrogate's noise through
``DifferentiableSurrogate.fold_noise``, the pass draws) as one process does,
and each rank folds its contiguous rows. Fakes the pass model or a
non-finite surrogate output drop keep their order, so the ranks' survivors,
concatenated, are one process's; their counts are all-gathered each step.
The critic compares the first m = min(real, fake) events as one process does:
each rank takes the real rows at the positions of its fakes, so the pairs (and
a penalty on interpolates of pairs) are one process's, and the critic's
gradients are averaged weighted by those pairs. The generator's adversarial
loss is a mean over its fakes; the match term (MMD², sliced Wasserstein) is a
statistic of the whole batch, computed alike on every rank from the gathered
fakes, and the generator's gradients are summed over ranks. 2 gloo ranks
reproduce one process's G_v up to floating-point reduction order
(``tests/test_ddp_detectors_unfolding.py``) for adversaries whose losses are
means over events (dropout layers of the critic get the global batch's masks;
the adversary's own per-event draws, a gradient penalty's interpolation
weights or instance noise, are made for the global batch through
``Discriminator.global_batch``). Not reproduced: ``deepsets`` scores each event
against its local batch, so it trains a statistically equivalent, not an
identical, critic. Validation runs whole on every rank.

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
from mlegpipe.data_parallel import DataParallel
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
              ctx: StageContext, data_parallel: bool = False) -> TrainedGenerator:
        """Train replica ``replica`` on the critic inputs ``real_view`` of its data resample.

        Arguments:
            prior: the simulation's standardized vertex features (and ν), for the pretraining (None: none).
            ctx: the stage's context: seeds (per replica), logs, progress.
            data_parallel: split every step over the ranks of the process group (every rank trains this
                replica; see the module docstring). False: this process alone.
        """
        s = self.settings
        dp = DataParallel(data_parallel)
        log_ctx = ctx.child(f"replica{replica}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.torch_seed("init", replica))
            net = self.kind.build(decoder.n_out)
        noise_dim = self.kind.noise_dim(decoder.n_out)
        if prior is not None and self.kind.steps:
            columns = s.critic_columns(list(surrogate.vertex_features))
            last = self.kind.pretrain(net, decoder, prior, columns, ctx.torch_generator("pretrain", replica), ctx.name,
                                      dp)
            log_ctx.log.info("replica %d: started at the simulation (%d steps, %s %.3g)", replica, self.kind.steps,
                             self.kind.loss_name, last)
        adversary = self.adversary[0](self.adversary[1], ctx.child(f"replica{replica}/critic"))
        critic = dp.prepare(adversary.build(real_view.shape[1]))  # dropout: the global batch's masks
        opt_c = _critic_optimizer(adversary, critic)
        opt_g = torch.optim.Adam(net.parameters(), lr=s.lr, betas=(0.5, 0.9))
        gens = {n: ctx.torch_generator(n, replica) for n in ("batches", "noise", "accept", "projections")}
        batches = MinibatchSampler(real_view, batch_size=s.batch_size, generator=gens["batches"])
        accept = pass_probability(surrogate)

        def fold(v_std: torch.Tensor, n: int, rows: slice, noise: torch.Generator) -> torch.Tensor:
            """The surrogate's folding of this rank's rows of a global batch of n, with one process's noise."""
            drawn = surrogate.fold_noise(n, noise)  # the global batch's noise, as one process draws it
            return surrogate.fold_tensor(v_std, noise=None if drawn is None else drawn[rows])

        def fake(n: int, noise: torch.Generator, accept_gen: torch.Generator | None,
                 split: bool = True) -> torch.Tensor:
            """Critic inputs of the folded fakes of this rank's rows of a global batch of n (all: ``split`` off)."""
            part = dp if split else DataParallel(False)
            rows = part.rows(n)
            z = torch.randn(n, noise_dim, generator=noise)
            out = net(z[rows] if part.enabled else z)
            phi = 2 * np.pi * torch.rand(n, generator=noise) if decoder.needs_phi else None
            v_std = decoder.to_surrogate(out, phi[rows] if phi is not None and part.enabled else phi)
            d_std = fold(v_std, n, rows, noise) if part.enabled else surrogate.fold_tensor(v_std, noise)
            if accept is not None and accept_gen is not None:
                probability = accept(v_std, d_std).detach().clamp(0, 1)
                keep = part.bernoulli(probability, rows.start, n, accept_gen) > 0
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
                # one process compares the first m = min(real, fake) pairs: this rank's fakes among them,
                # each with the real event of its position
                counts = dp.counts(len(fb))
                m = min(len(rb), sum(counts))
                start = min(sum(counts[:dp.rank]), m)
                stop = min(start + len(fb), m)
                opt_c.zero_grad()
                loss_c = None
                if stop > start or not dp.enabled:  # (one process: as before, even without fakes)
                    rows = (m, slice(start, stop)) if dp.enabled else None
                    with dp.dropout_rows(critic, m, slice(start, stop)), adversary.global_batch(rows):
                        loss_c = adversary.discriminator_loss(critic, rb[start:stop], fb[:stop - start])
                    loss_c.backward()
                dp.sync(critic.parameters(), stop - start)
                opt_c.step()
            fb = fake(s.batch_size, gens["noise"], gens["accept"])
            counts = dp.counts(len(fb))
            start = sum(counts[:dp.rank])
            loss_g = None
            if len(fb) or not dp.enabled:  # (one process: as before, even without fakes)
                with dp.dropout_rows(critic, sum(counts), slice(start, start + len(fb))):
                    loss_g = adversary.generator_loss(critic, fb)
            match = None
            if s.match_weight > 0:
                (rb,) = batches()
                match = self.match.match(dp.gather(fb, counts), rb, gens["projections"])
            total = dp.step_loss(loss_g, len(fb), sum(counts), match, s.match_weight)
            opt_g.zero_grad()
            dp.backward(total, net.parameters())
            if all(bool(torch.isfinite(q.grad).all()) for q in net.parameters() if q.grad is not None):
                opt_g.step()
            else:  # never let one non-finite gradient (surrogate off its range) poison the generator
                skipped[0] += 1
            critic_value = dp.mean(loss_c.item() if loss_c is not None else 0.0, stop - start)
            return {"critic": critic_value, "generator": total.value}

        valid_real = real_view[:_VALID_EVENTS].detach().numpy()

        def validate(_: int) -> dict[str, float]:
            net.eval()
            with torch.no_grad():  # every rank validates the whole sample: the same metric everywhere
                fv = fake(_VALID_EVENTS, torch.Generator().manual_seed(12345),
                          torch.Generator().manual_seed(54321), split=False).numpy()
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
