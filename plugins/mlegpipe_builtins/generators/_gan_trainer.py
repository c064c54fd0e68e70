"""The adversarial training loop of the GAN generators: critic steps, generator step, EMA, validation.

One training step is ``critic_steps`` discriminator updates, then one
generator update::

    noise ─► network ─► z ─┬──────────────────────────────────────────► [z, aug] ─► discriminator
                           └─► representation⁻¹ ─► lepton (E, p) ─► augmented features ─┘

Every step of the generated branch is differentiable, so the discriminator's
judgement of the augmented features (E, p_T, p_z/p_T, ...) trains the network
(thesis ch. 4, Table 4). The generator loss adds η·MMD² (``mmd_weight``,
thesis eq. 14) between generated and real critic features, optionally joined
by the scaled condition (``mmd_condition``: the kernel then compares events of
like beam energies only), and with ``mmd_observables`` the How-to-GAN term: a
Breit–Wigner MMD² per declared observable of the decoded events
(:class:`~mlegpipe_builtins.generators._gan_observable_mmd.ObservableMMD`), its
training values drawn in the same minibatch as the critic's real features.
With ``ema`` validation and sampling use an exponential moving average of the
generator weights. The tracked metric is the
sliced Wasserstein distance between generated and validation events in the
critic's feature space (:func:`mlegpipe.metrics.sliced_wasserstein1`).

Under torchrun (:mod:`mlegpipe.distributed`) every rank draws the same global
minibatch, noise and azimuths as one process and keeps its shard
(:class:`~mlegpipe.data_parallel.MinibatchShard`); the
gradients of both networks are averaged over the ranks, weighted by events,
before every critic and generator step. The η·MMD² and the How-to-GAN terms
compare the batch's first m events, so they are computed on the gathered global
batch (gradients through each rank's own events), not per shard. The
adversary's own per-event random numbers (the gradient penalty's interpolation
weights, instance noise) are drawn for the global batch and cut to the shard
(:meth:`~mlegpipe.stages.Discriminator.global_batch`). N ranks then reproduce
the one-process training to floating-point reduction order, with two
exceptions: dropout masks (``dropout`` > 0) come from each rank's global torch
generator, so they differ from the one-process draws (as statistically valid,
not the same numbers); and a batch-statistics adversary (``deepsets``) sees
each rank's shard as its batch.

Example:
    >>> import numpy as np
    >>> from mlegpipe.context import StageContext
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe_builtins.generators.gans import DSGAN
    >>> train = EventBatch.from_columns({"x": np.random.default_rng(0).normal(2.0, 0.5, 500)})
    >>> gan = DSGAN(DSGAN.Params(features=["x"], steps=3, validate_every=0), StageContext("generator"))
    >>> len(gan.fit(train, train)["history"])
    3
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from mlegpipe import distributed as ddp
from mlegpipe.data_parallel import MinibatchShard, check_batch_size, sharded_draw
from mlegpipe.events import EventBatch
from mlegpipe.losses import mmd2
from mlegpipe.metrics import sliced_wasserstein1
from mlegpipe.nets import count_parameters
from mlegpipe.stages import Discriminator, StageContext
from mlegpipe.training import MinibatchSampler, TrainLoop, cosine_schedule
from mlegpipe_builtins.generators._gan_observable_mmd import ObservableMMD
from mlegpipe_builtins.generators._gan_representation import GANRepresentation

__all__ = ["AdversarialTrainer", "AdversarialTraining", "uniform_angles"]


def uniform_angles(n: int, generator: torch.Generator) -> Callable[[], torch.Tensor]:
    """A function drawing ``n`` uniform angles in [-π, π) (float64) from ``generator`` at each call.

    Example:
        >>> draw = uniform_angles(4, torch.Generator().manual_seed(0))
        >>> bool((draw().abs() <= np.pi).all())
        True
    """
    return lambda: (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * np.pi


@dataclass
class AdversarialTraining:
    """What :meth:`AdversarialTrainer.train` returns.

    Attributes:
        history: the per-step figures (``loss_d``, ``loss_g``, ``mmd2``, validation ``metric``, ...).
        network: the generator weights validation and sampling use (the moving average with ``ema``).
        discriminator_net: the trained discriminator network.
        figures: ``best_step``, ``best_metric``, ``steps`` and the parameter counts.
    """

    history: list[dict[str, float]]
    network: nn.Module
    discriminator_net: nn.Module
    figures: dict[str, Any] = field(default_factory=dict)


class AdversarialTrainer:
    """Trains a generator network against a discriminator on a fitted :class:`GANRepresentation`.

    Arguments:
        representation: the fitted representation (critic features, conditions, decoding).
        settings: the resolved :class:`~mlegpipe_builtins.generators._gan_params.GANParams` values.
        ctx: the generator's stage context (seeds, run folder, checkpoints, resume).
        desc: progress-bar label.
    """

    def __init__(self, representation: GANRepresentation, settings: Mapping[str, Any], ctx: StageContext,
                 desc: str = "generator") -> None:
        self.rep = representation
        self.s = dict(settings)
        self.ctx = ctx
        self.desc = desc

    def _noise(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, self.s["noise_dim"], generator=generator)

    @staticmethod
    def _forward(net: nn.Module, noise: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return net(noise if cond is None else torch.cat([noise, cond], dim=1))

    def train(self, network: nn.Module, discriminator: Discriminator, train: EventBatch,
              valid: EventBatch | None) -> AdversarialTraining:
        """Train ``network`` (in place) against ``discriminator``; returns the history and the networks.

        Raises:
            ConfigError: an ``mmd_observables`` entry is unknown, has no kernel width, or cannot be computed on
                tensors (checked before the first step).
            DataError: an ``mmd_observables`` entry cannot be computed for the training events.
        """
        s, rep = self.s, self.rep
        observable_mmd, observed = self._observable_mmd(train)
        real, eb_real = rep.real_discriminator_features(train)
        cond_real = rep.condition_tensor(eb_real.numpy())
        d_net = discriminator.build(real.shape[1], 1 if rep.conditional else 0)
        opt_d = discriminator.make_optimizer(d_net.parameters()) or torch.optim.Adam(
            d_net.parameters(), lr=s["lr"], betas=(s["beta1"], s["beta2"]))
        opt_g = torch.optim.Adam(network.parameters(), lr=s["lr"], betas=(s["beta1"], s["beta2"]))
        ema = float(s["ema"])
        # validation and sampling use the moving average of the trained weights
        sampling = copy.deepcopy(network).requires_grad_(False) if ema > 0 else network
        batch_gen = self.ctx.torch_generator("batches")
        noise_gen = self.ctx.torch_generator("noise")
        tensors = [real, eb_real] + ([cond_real] if cond_real is not None else [])
        if observed is not None:  # the training events' observables, drawn with their critic features
            tensors.append(observed)
        weights = torch.from_numpy(train.weights) if train.has("weight") else None
        batches = MinibatchSampler(*tensors, batch_size=s["batch_size"], generator=batch_gen, weights=weights)
        check_batch_size(batches.batch_size, self.ctx.name)
        self._warn_batch_statistics(d_net)

        def fake_features(eb: torch.Tensor, cond: torch.Tensor | None, shard: MinibatchShard
                          ) -> tuple[torch.Tensor, torch.Tensor]:
            """(generated z, the critic's features of z) of this rank's events; the noise and azimuths are
            drawn for the whole batch (the one-process stream) and sharded."""
            angles = sharded_draw(uniform_angles(shard.events, noise_gen), shard)
            noise = shard.take(self._noise(shard.events, noise_gen))
            z = rep.randomize_azimuth(self._forward(network, noise, cond), angles)
            return z, rep.generated_features(z, eb, angles)

        def step(i: int) -> dict[str, float]:
            network.train()
            d_net.train()
            loss_d = torch.zeros(())
            for _ in range(s["critic_steps"]):
                batch = batches()
                shard = MinibatchShard.of(len(batch[0]))
                x_real, eb, cond = self._unpack(shard.take_all(batch), cond_real is not None)
                with torch.no_grad():
                    _, x_fake = fake_features(eb, cond, shard)
                opt_d.zero_grad(set_to_none=True)
                with discriminator.global_batch((shard.events, shard.part) if shard.distributed else None):
                    loss_d = discriminator.discriminator_loss(d_net, x_real, x_fake, cond)
                loss_d.backward()
                ddp.sync_gradients(d_net.parameters(), shard.local_events)
                opt_d.step()
            batch = batches()
            shard = MinibatchShard.of(len(batch[0]))
            x_real, eb, cond = self._unpack(shard.take_all(batch), cond_real is not None)
            d_net.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            z, x_fake = fake_features(eb, cond, shard)
            loss_adv = discriminator.generator_loss(d_net, x_fake, cond)
            out = {"loss_d": shard.mean(float(loss_d.detach())), "loss_g": shard.mean(float(loss_adv.detach()))}
            # the MMD² terms compare the batch's first m events: on the global batch, not per shard
            all_real, _, all_cond = self._unpack(batch, cond_real is not None)
            mmd = self._mmd_term(x_fake, all_real, all_cond, out, shard)
            loss_g = loss_adv if mmd is None else loss_adv + shard.global_term(mmd)
            if observable_mmd is not None:
                phi = sharded_draw(uniform_angles(shard.events, noise_gen), shard)() if rep.uniform_phi else None
                term = observable_mmd(rep.event_tensors(z, eb, phi), batch[-1], out, shard=shard)
                loss_g = loss_g + shard.global_term(term).to(loss_g.dtype)
            loss_g.backward()
            ddp.sync_gradients(network.parameters(), shard.local_events)
            opt_g.step()
            if ema > 0:
                self._average(sampling, network, ema, i)
            d_net.requires_grad_(True)
            return out

        validate = self._validation(sampling, valid)
        generators = {"batches": batch_gen, "noise": noise_gen}
        penalty_gen = discriminator.random_generator()
        if penalty_gen is not None:
            generators["discriminator"] = penalty_gen
        loop = TrainLoop(
            self.ctx, step, s["steps"],
            modules={"generator": sampling, "discriminator": d_net,
                     **({"generator_trained": network} if ema > 0 else {})},
            optimizers={"generator": opt_g, "discriminator": opt_d},
            validate_fn=validate, validate_every=s["validate_every"] if validate is not None else 0,
            lr_schedule=cosine_schedule(s["steps"]) if s["lr_schedule"] == "cosine" else None,
            checkpoint_every=s["checkpoint_every"] if self.ctx.run_dir is not None else 0,
            generators=generators, desc=self.desc,
        )
        history = loop.run(resume=True if s["resume"] or getattr(self.ctx, "resume", False) else None)
        sampling.eval()
        network.eval()
        d_net.eval()
        figures = {"best_step": loop.best_step, "best_metric": loop.best_metric, "steps": s["steps"],
                   "generator_parameters": count_parameters(sampling),
                   "discriminator_parameters": count_parameters(d_net)}
        return AdversarialTraining(history, sampling, d_net, figures)

    def _observable_mmd(self, train: EventBatch) -> tuple[ObservableMMD | None, torch.Tensor | None]:
        """The ``mmd_observables`` term and the training events' values (None, None without), checked on the
        training events and on a few of them decoded as tensors."""
        term = ObservableMMD.from_settings(self.s, events=train, observables=self.ctx.observables,
                                           registry=self.ctx.lookup(), where=self.ctx.name)
        if term is None:
            return None, None
        observed = term.real_values(train)
        head = train.take(slice(0, min(len(train), 64)))
        with torch.no_grad():
            context = torch.from_numpy(self.rep.context(head))
            term.generated_values(self.rep.event_tensors(self.rep.encode(head), context))
        return term, observed

    def _warn_batch_statistics(self, d_net: nn.Module) -> None:
        """Under torchrun, say that a batch-statistics adversary sees each rank's shard as its batch."""
        from mlegpipe_builtins.discriminators.critics import SetStatisticsNet

        if ddp.is_distributed() and any(isinstance(m, SetStatisticsNet) for m in d_net.modules()):
            self.ctx.log.warning("the batch-statistics discriminator sees each rank's shard of the batch as its "
                                 "set: %d ranks do not reproduce the one-process training", ddp.world_size())

    @staticmethod
    def _unpack(batch: list[torch.Tensor], conditional: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                        torch.Tensor | None]:
        """(critic features, beam energy, condition or None) of a minibatch."""
        return batch[0], batch[1], batch[2] if conditional else None

    def _mmd_term(self, fake: torch.Tensor, real: torch.Tensor, cond: torch.Tensor | None,
                  out: dict[str, float], shard: MinibatchShard | None = None) -> torch.Tensor | None:
        """η·MMD² between the first ``mmd_events`` generated and real critic features (None without
        ``mmd_weight``); records the MMD² in ``out``.

        ``real`` and ``cond`` are the global batch's; ``fake`` is this rank's ``shard`` of the generated
        features (all of them in one process), gathered into the global batch first.
        """
        weight, m, factor = float(self.s["mmd_weight"]), self.s["mmd_events"], float(self.s["mmd_condition"])
        if weight <= 0:
            return None
        if shard is not None:
            fake = shard.gather(fake)
        sigmas = list(self.s["mmd_sigmas"])
        if cond is not None and factor > 0:  # (features, c·condition): compare like energies
            term = mmd2(torch.cat([fake[:m], factor * cond[:m]], dim=1),
                        torch.cat([real[:m], factor * cond[:m]], dim=1), sigmas)
        else:
            term = mmd2(fake[:m], real[:m], sigmas)
        out["mmd2"] = float(term.detach())
        return weight * term

    @staticmethod
    def _average(average: nn.Module, network: nn.Module, ema: float, i: int) -> None:
        """One step of the moving average; its warm-up forgets the early weights quickly."""
        with torch.no_grad():
            decay = min(ema, (1.0 + i) / (10.0 + i))
            for p_avg, p in zip(average.parameters(), network.parameters(), strict=True):
                p_avg.lerp_(p, 1.0 - decay)

    def _validation(self, network: nn.Module, valid: EventBatch | None) -> Callable[[int], dict[str, float]] | None:
        """The validation function: sliced W₁ in the critic's feature space (+ the unphysical fraction)."""
        if valid is None or len(valid) < 2 or self.s["validate_every"] == 0:
            return None
        rep = self.rep
        n = min(len(valid), self.s["valid_events"])
        real, eb = rep.real_discriminator_features(valid.take(slice(0, n)))
        real_np = real.numpy()
        cond = rep.condition_tensor(eb.numpy())
        seed = self.ctx.torch_seed("validate")

        def validate(i: int) -> dict[str, float]:
            gen = torch.Generator().manual_seed(seed)
            network.eval()
            angles = uniform_angles(n, gen)
            with torch.no_grad():
                z = rep.randomize_azimuth(self._forward(network, self._noise(n, gen), cond), angles)
                fake = rep.generated_features(z, eb, angles).numpy()
            out = {"metric": sliced_wasserstein1(real_np, np.nan_to_num(fake, nan=1e6, posinf=1e6, neginf=-1e6))}
            if rep.has_physical_limits:
                _, ok = rep.decode_columns(z, eb.numpy(), np.random.SeedSequence(seed))
                out["unphysical"] = float(1.0 - ok.mean())
            return out

        return validate
