"""The bootstrap replicas of GAN unfolding: each one a generator trained on a resample, here or in workers.

The training is repeated on bootstrap resamples of the data (``replicas``);
the spread of the replicas gives the uncertainty band. With
``bootstrap_simulation`` each replica also resamples the simulation
(:class:`SimulationResample`): the ν quantile maps, the pretraining target and
the completion pool come from a finite simulation sample whose fluctuations
below the detector's resolution the data cannot correct; resampling it puts
that uncertainty into the bands. A :class:`ReplicaTask` is everything one
replica needs, picklable, so :func:`train_replicas` can run the replicas on
worker processes (:func:`mlegpipe.processes.process_map`); the events do not
depend on the number of workers.

Example:
    >>> Replica(None, None, 100, 0.1, 2.5).skipped_steps
    0
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.processes import process_map, usable_cores
from mlegpipe.stages import DifferentiableSurrogate
from mlegpipe_builtins.unfolding._adversarial import AdversarialTraining
from mlegpipe_builtins.unfolding._completion import CompletionPool, sample_unfolded
from mlegpipe_builtins.unfolding._critic_view import CriticView
from mlegpipe_builtins.unfolding._vertex_model import VertexDecoder, VertexParametrization

__all__ = ["Replica", "ReplicaTask", "SimulationResample", "train_replicas"]


@dataclass
class Replica:
    """One trained generator's events, refolded by the surrogate, and its training's outcome."""

    events: EventBatch
    refolded: EventBatch
    best_step: int | None
    best_metric: float | None
    seconds: float
    skipped_steps: int = 0


@dataclass
class SimulationResample:
    """Per-replica bootstrap of the simulation the replicas' priors come from (``bootstrap_simulation``).

    Attributes:
        vertex: the simulation's vertex events.
        rows: its events with finite vertex features (the rows of the pretraining target and the pool).
        measured: the measured data (the decoder's beams and scale).
        parametrization: builds the decoder with the resample's ν quantile maps.
    """

    vertex: EventBatch
    rows: np.ndarray
    measured: EventBatch
    parametrization: VertexParametrization

    def apply(self, replica: int, ctx: StageContext, decoder: VertexDecoder, prior: torch.Tensor | None,
              pool: CompletionPool | None) -> tuple[VertexDecoder, torch.Tensor | None, CompletionPool | None]:
        """The simulation-derived inputs of replica ``replica``, from a Poisson(1) resample of the simulation.

        Every simulation event gets a multiplicity k (``ctx.rng("sim-bootstrap", replica)``): the ν
        quantile maps are those of the resample, the pretraining target repeats each event k times and
        the completion pool weighs it by k.
        """
        k = ctx.rng("sim-bootstrap", replica).poisson(1.0, len(self.vertex))
        if decoder.nu_quantiles is not None:
            decoder = self.parametrization.decoder(decoder.scaler, self.measured, decoder.vertex_features,
                                                   self.vertex.take(np.repeat(np.arange(len(self.vertex)), k)),
                                                   ctx.name)
        if prior is not None:
            prior = prior[torch.as_tensor(np.repeat(np.arange(len(self.rows)), k[self.rows]))]
        if pool is not None:
            weights = pool.probabilities * k[self.rows]
            if weights.sum() > 0:
                pool = replace(pool, probabilities=weights / weights.sum())
        return decoder, prior, pool


@dataclass
class ReplicaTask:
    """Everything a replica needs, picklable: ``task(r)`` is replica ``r``, here or in a worker process.

    Attributes:
        training: trains the replica's generator.
        boot: per replica, the rows of ``real_view`` in its data resample.
        real_view: the critic inputs of the measured data.
        surrogate: the frozen surrogate.
        decoder: generator outputs → surrogate inputs and events.
        view: what the critic sees of an event.
        prior: the simulation's standardized vertex features (pretraining), or None.
        n_events: unfolded events per replica.
        pool: the simulation prior completing the unfolded sample, or None.
        resample: the per-replica bootstrap of the simulation, or None.
        ctx: the stage's context.
        quiet: no progress bars (in worker processes, interleaved with the other workers').
    """

    training: AdversarialTraining
    boot: list[np.ndarray]
    real_view: torch.Tensor
    surrogate: DifferentiableSurrogate
    decoder: VertexDecoder
    view: CriticView
    prior: torch.Tensor | None
    n_events: int
    pool: CompletionPool | None
    resample: SimulationResample | None
    ctx: StageContext
    quiet: bool = False

    def __call__(self, r: int) -> Replica:
        """Replica ``r``: its simulation prior, its generator trained on ``boot[r]``, its events refolded."""
        ctx = replace(self.ctx, progress=False) if self.quiet else self.ctx
        t0 = time.perf_counter()
        decoder, prior, pool = self.decoder, self.prior, self.pool
        if self.resample is not None:
            decoder, prior, pool = self.resample.apply(r, ctx, decoder, prior, pool)
        trained = self.training.train(r, self.real_view[torch.as_tensor(self.boot[r])], self.surrogate, decoder,
                                      self.view, prior, ctx)
        events = sample_unfolded(trained.net, trained.noise_dim, decoder, self.n_events, r, self.surrogate, pool,
                                 ctx.rng("sample", r))
        refolded = self.surrogate.fold(events, ctx.seed_sequence("refold", r))
        return Replica(events, refolded, trained.best_step, trained.best_metric, round(time.perf_counter() - t0, 2),
                       trained.skipped_steps)


def train_replicas(task: ReplicaTask, replicas: int, workers: int) -> list[Replica]:
    """Run ``task`` for every replica on ``workers`` processes (0: one per usable core, at most one per replica).

    With several workers one progress bar counts the replicas here; the workers show none.
    """
    ctx = task.ctx
    workers = min(workers or usable_cores(), replicas)
    if workers > 1:
        ctx.log.info("training %d replicas on %d worker processes", replicas, workers)
    task = replace(task, quiet=workers > 1)
    bar = tqdm(total=replicas, desc=f"{ctx.name} replicas", unit="replica", file=sys.stderr,
               disable=not (ctx.progress and workers > 1))

    def done(r: int, rep: Replica) -> None:  # in this process, as the replicas finish
        ctx.log.info("replica %d/%d: best step %s, detector-level W1 %.4g (%.1f s)", r + 1, replicas,
                     rep.best_step, rep.best_metric or float("nan"), rep.seconds)
        if rep.skipped_steps:
            ctx.log.warning("replica %d: %d generator steps skipped (non-finite gradients)", r, rep.skipped_steps)
        bar.update()

    with bar:
        return process_map(task, range(replicas), workers, on_result=done)
