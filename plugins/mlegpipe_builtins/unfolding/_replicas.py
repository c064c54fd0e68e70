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

Under torchrun (a process group of N ranks, ``distribute``):

- ``"replicas"``: rank r trains replicas r, r + N, ... alone (on its own
  ``workers``) and the replicas are all-gathered, so every rank continues with
  all of them. The replicas are independent and seeded per replica, so the
  events are exactly one process's; no communication per step.
- ``"batches"``: every rank trains every replica, each step's global batch
  split over the ranks (:mod:`._adversarial`), in this process (``workers``
  ignored: worker processes are not in the process group).
- ``"auto"``: ``"replicas"`` when there are at least as many replicas as
  ranks (no step waits for another rank), else ``"batches"``.

Example:
    >>> Replica(None, None, 100, 0.1, 2.5).skipped_steps
    0
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import torch
from tqdm.auto import tqdm

from mlegpipe import distributed as ddp
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.processes import dask_map, process_map, usable_cores
from mlegpipe.stages import DifferentiableSurrogate
from mlegpipe_builtins.unfolding._adversarial import AdversarialTraining
from mlegpipe_builtins.unfolding._completion import CompletionPool, sample_unfolded
from mlegpipe_builtins.unfolding._critic_view import CriticView
from mlegpipe_builtins.unfolding._vertex_model import VertexDecoder, VertexParametrization

__all__ = ["DISTRIBUTE", "Replica", "ReplicaTask", "SimulationResample", "distribution", "train_replicas"]

#: How the replicas are spread over the ranks of a torchrun job (``distribute``).
DISTRIBUTE = ("auto", "replicas", "batches")
#: How long the ranks wait for each other's replicas when they are spread over the ranks (a day).
_GATHER_TIMEOUT_S = 86400.0


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
        data_parallel: every rank trains this replica, each step split over the ranks.
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
    data_parallel: bool = False

    def __call__(self, r: int) -> Replica:
        """Replica ``r``: its simulation prior, its generator trained on ``boot[r]``, its events refolded."""
        ctx = replace(self.ctx, progress=False) if self.quiet else self.ctx
        t0 = time.perf_counter()
        decoder, prior, pool = self.decoder, self.prior, self.pool
        if self.resample is not None:
            decoder, prior, pool = self.resample.apply(r, ctx, decoder, prior, pool)
        trained = self.training.train(r, self.real_view[torch.as_tensor(self.boot[r])], self.surrogate, decoder,
                                      self.view, prior, ctx, self.data_parallel)
        events = sample_unfolded(trained.net, trained.noise_dim, decoder, self.n_events, r, self.surrogate, pool,
                                 ctx.rng("sample", r))
        refolded = self.surrogate.fold(events, ctx.seed_sequence("refold", r))
        return Replica(events, refolded, trained.best_step, trained.best_metric, round(time.perf_counter() - t0, 2),
                       trained.skipped_steps)


def distribution(distribute: str, replicas: int, world: int) -> str:
    """How ``replicas`` replicas are trained on ``world`` ranks: ``alone`` (one process), ``replicas`` or ``batches``.

    Example:
        >>> distribution("auto", 3, 1), distribution("auto", 3, 2), distribution("auto", 3, 4)
        ('alone', 'replicas', 'batches')
    """
    if distribute not in DISTRIBUTE:
        raise ConfigError("unknown way to distribute the replicas; known: " + ", ".join(DISTRIBUTE),
                          path="distribute", value=distribute)
    if world <= 1:
        return "alone"
    if distribute == "auto":
        return "replicas" if replicas >= world else "batches"
    return distribute


def train_replicas(task: ReplicaTask, replicas: int, workers: int, distribute: str = "auto",
                   dask: str = "") -> list[Replica]:
    """Run ``task`` for every replica on ``workers`` processes (0: one per usable core, at most one per replica),
    or as Dask tasks on ``dask`` (``"local"``: a LocalCluster of ``workers`` processes, or a scheduler address).

    With several workers one progress bar counts the replicas here; the workers show none. Under
    torchrun ``distribute`` spreads them over the ranks (see the module docstring); every rank
    returns all replicas, in order.
    """
    ctx = task.ctx
    mode = distribution(distribute, replicas, ddp.world_size() if ddp.is_distributed() else 1)
    mine = list(range(replicas))
    if mode == "replicas":
        mine = mine[ddp.rank()::ddp.world_size()]
        ctx.log.info("rank %d trains replicas %s of %d (%d ranks)", ddp.rank(), mine, replicas, ddp.world_size())
    elif mode == "batches":
        if workers != 1:
            ctx.log.info("replicas trained data-parallel over %d ranks, in this process (workers = %d unused)",
                         ddp.world_size(), workers)
        workers = 1
        task = replace(task, data_parallel=True)
    workers = min(workers or usable_cores(), max(len(mine), 1))
    if workers > 1:
        ctx.log.info("training %d replicas on %d worker processes", len(mine), workers)
    task = replace(task, quiet=workers > 1)
    bar = tqdm(total=len(mine), desc=f"{ctx.name} replicas", unit="replica", file=sys.stderr,
               disable=not (ctx.progress and workers > 1))

    def done(i: int, rep: Replica) -> None:  # in this process, as the replicas finish
        r = mine[i]
        ctx.log.info("replica %d/%d: best step %s, detector-level W1 %.4g (%.1f s)", r + 1, replicas,
                     rep.best_step, rep.best_metric or float("nan"), rep.seconds)
        if rep.skipped_steps:
            ctx.log.warning("replica %d: %d generator steps skipped (non-finite gradients)", r, rep.skipped_steps)
        bar.update()

    with bar:
        if dask and mode != "batches":
            results = dask_map(task, mine, dask, workers, on_result=done, where=f"{ctx.name}.dask")
        else:
            results = process_map(task, mine, workers, on_result=done)
    if mode != "replicas":
        return results
    import torch.distributed as dist

    gathered: list[list[Replica] | None] = [None] * ddp.world_size()
    # a rank with fewer (or faster) replicas waits here for the others' training: far longer than the
    # process group's timeout may allow, so the gather runs on a gloo group of its own with a day's patience
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=_GATHER_TIMEOUT_S))
    try:
        dist.all_gather_object(gathered, results, group=group)  # rank k trained replicas k, k + N, ...
    finally:
        dist.destroy_process_group(group)
    out: list[Replica] = [None] * replicas  # type: ignore[list-item]
    for k, part in enumerate(gathered):
        for j, replica in enumerate(part or []):
            out[k + j * ddp.world_size()] = replica
    return out
