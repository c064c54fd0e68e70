"""This rank's part of a data-parallel training step: shards of global minibatches, gathered rows, batch terms.

:mod:`mlegpipe.distributed` covers losses that are means over events: every
rank draws the same *global* minibatch from the same seeded generator, keeps
its contiguous rows (:func:`~mlegpipe.distributed.shard_minibatch`) and
:func:`~mlegpipe.distributed.sync_gradients` averages the gradients weighted by
the local events. The trainers (GANs, B-VAE, learned surrogates, gan-unfold)
need more, so that N ranks reproduce one process with the same global batch
up to floating-point reduction order:

- random draws per event are made for the *global* batch from the seeded
  generator, exactly as one process draws them, and cut to this rank's rows
  (:meth:`DataParallel.take`, :func:`sharded_draw`; :meth:`DataParallel.bernoulli`
  pads the probabilities to the global length; :class:`RowDropout` draws the
  dropout mask of the global batch), so every random stream stays the same on
  every rank and equal to one process's;
- a statistic of the whole batch (an MMD² over the batch, a sliced
  Wasserstein distance, a normalization by the batch's count of present
  particles) is not a mean over events: it is computed on every rank from the
  global rows (:meth:`DataParallel.gather`, :meth:`MinibatchShard.gather`: the
  other ranks' rows as constants, this rank's differentiable), and its
  gradients are *summed* over ranks (:meth:`DataParallel.step_loss` and
  :meth:`DataParallel.backward`), or, equivalently, the term is scaled by
  N / n_local before the event-weighted average (:meth:`MinibatchShard.global_term`).

:class:`DataParallel` is a trainer's view (it may be disabled: outside a
process group, or for a replica one rank trains alone); :class:`MinibatchShard`
is one minibatch's. Every method is the identity (and draws what one process
draws) when not distributed, so one-process training stays bit-identical.

Example:
    >>> dp = DataParallel()
    >>> dp.enabled, dp.rows(5)
    (False, slice(0, 5, None))
    >>> shard = MinibatchShard.of(5)
    >>> shard.part, shard.local_events, shard.distributed
    (slice(0, 5, None), 5, False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mlegpipe import distributed as ddp
from mlegpipe.exceptions import ConfigError

__all__ = ["DataParallel", "MinibatchShard", "RowDropout", "StepLoss", "check_batch_size", "global_rows",
           "sharded_draw"]


def global_rows(draw: Callable[[tuple[int, ...]], torch.Tensor], shape: Sequence[int],
                rows: tuple[int, slice] | None) -> torch.Tensor:
    """Per-event random numbers of ``shape`` for this rank's rows of a global batch, drawn as one process draws them.

    ``rows`` = (N, this rank's slice) of a global batch of N events, whose local part has ``shape[0]`` rows:
    ``draw((N, *shape[1:]))`` cut to the slice, so the stream advances as in one process and the rows get its
    numbers. ``draw(shape)`` itself when ``rows`` is None (one process) or does not describe ``shape[0]`` rows.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> whole = torch.rand((4, 2), generator=g)
        >>> g = torch.Generator().manual_seed(0)
        >>> bool(torch.equal(global_rows(lambda s: torch.rand(s, generator=g), (2, 2), (4, slice(2, 4))), whole[2:]))
        True
    """
    shape = tuple(int(n) for n in shape)
    if rows is None or shape[0] != rows[1].stop - rows[1].start:
        return draw(shape)
    return draw((int(rows[0]), *shape[1:]))[rows[1]]


class RowDropout(nn.Dropout):
    """Dropout whose mask is the global batch's, cut to this rank's rows (set by :meth:`DataParallel.dropout_rows`).

    Outside that context (or for inputs of another length) it is ``nn.Dropout``.
    Inside, the mask is drawn as ``F.dropout`` draws it on the CPU (Bernoulli(1 - p) of
    the global batch's shape from torch's global generator, divided by 1 - p), so
    the global stream advances as in one process and the kept rows get one
    process's mask.

    Example:
        >>> d = RowDropout(0.5)
        >>> d.rows = (4, slice(2, 4))
        >>> d(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """

    rows: tuple[int, slice] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.rows
        if not self.training or rows is None or not 0.0 < self.p < 1.0 or x.shape[0] != rows[1].stop - rows[1].start:
            return super().forward(x)
        mask = global_rows(lambda shape: torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p),
                           x.shape, rows)
        return x * mask.div_(1.0 - self.p)


@dataclass
class StepLoss:
    """One rank's loss of a training step and how its gradients are combined over ranks.

    Attributes:
        tensor: what this rank back-propagates (None: nothing of the loss lies on this rank).
        value: the loss of the global batch (the same on every rank), for the logs.
        local_events: events of the mean term on this rank (the weight of :func:`~mlegpipe.distributed.sync_gradients`).
        summed: the gradients are summed over ranks (a batch statistic is part of the loss) instead of
            averaged by events.
    """

    tensor: torch.Tensor | None
    value: float
    local_events: int
    summed: bool = False


class DataParallel:
    """This rank's part of a data-parallel training step (everything is the identity when disabled).

    Arguments:
        enabled: split the steps over the ranks of the process group (None: when there is one of
            more than one rank; False: train alone, e.g. a replica this rank trains by itself).
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = ddp.is_distributed() if enabled is None else bool(enabled) and ddp.is_distributed()
        self.rank = ddp.rank() if self.enabled else 0
        self.world = ddp.world_size() if self.enabled else 1

    # -- rows ---------------------------------------------------------------------------------------
    def rows(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of ``n`` events (all of them when disabled)."""
        return ddp.shard_slice(n, self.rank, self.world) if self.enabled else slice(0, n)

    def take(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's rows of global per-event tensors of equal length (unchanged when disabled)."""
        if not self.enabled:
            return tuple(tensors)
        part = self.rows(len(tensors[0]))
        return tuple(t[part] for t in tensors)

    def counts(self, n_local: int) -> list[int]:
        """Every rank's ``n_local`` (``[n_local]`` when disabled), for rows whose counts only the ranks know."""
        if not self.enabled:
            return [int(n_local)]
        buf = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(buf, torch.tensor([int(n_local)], dtype=torch.int64))
        return [int(b) for b in buf]

    def prefix_counts(self, n: int, m: int) -> list[int]:
        """How many of the first ``m`` rows of a global batch of ``n`` each rank holds (:meth:`rows`).

        Rank r's are its first ``counts[r]`` rows; known without communication.

        Example:
            >>> DataParallel().prefix_counts(7, 5)
            [5]
        """
        if not self.enabled:
            return [min(int(n), int(m))]
        parts = [ddp.shard_slice(n, r, self.world) for r in range(self.world)]
        return [max(0, min(s.stop, m) - s.start) for s in parts]

    def gather(self, local: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """The global rows: every rank's ``local`` rows (``counts[r]`` of them) in rank order.

        Only this rank's rows carry gradient (the others are constants), so the gradient of a statistic
        of the result is this rank's rows' contribution: combine such gradients with :meth:`backward`
        of a :class:`StepLoss` with ``summed``. ``local`` itself when disabled.
        """
        if not self.enabled:
            return local
        width = max(max(counts), 1)
        padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=local.device)
        padded[:len(local)] = local.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        rows = [local if r == self.rank else parts[r][:counts[r]] for r in range(self.world)]
        return torch.cat(rows)

    def bernoulli(self, p: torch.Tensor, offset: int, total: int, generator: torch.Generator) -> torch.Tensor:
        """Bernoulli draws for this rank's rows ``[offset, offset + len(p))`` of a global batch of ``total``.

        ``torch.bernoulli`` of a probability tensor takes one uniform per element in order, so the
        probabilities padded with zeros to the global length give one process's draws on these rows
        and advance ``generator`` as one process does.
        """
        if not self.enabled:
            return torch.bernoulli(p, generator=generator)
        padded = torch.zeros(total, dtype=p.dtype, device=p.device)
        padded[offset:offset + len(p)] = p
        return torch.bernoulli(padded, generator=generator)[offset:offset + len(p)]

    # -- dropout ------------------------------------------------------------------------------------
    def prepare(self, net: nn.Module) -> nn.Module:
        """Replace the ``nn.Dropout`` layers of ``net`` by :class:`RowDropout` (in place; no-op when disabled)."""
        if self.enabled:
            for module in list(net.modules()):
                for name, child in list(module.named_children()):
                    if type(child) is nn.Dropout:
                        setattr(module, name, RowDropout(child.p, child.inplace))
        return net

    @contextmanager
    def dropout_rows(self, net: nn.Module, total: int, rows: slice | None = None) -> Iterator[None]:
        """Inside: ``net``'s :class:`RowDropout` layers draw the masks of a global batch of ``total`` events and keep
        ``rows`` (default: :meth:`rows`). A no-op when disabled."""
        layers = [m for m in net.modules() if isinstance(m, RowDropout)] if self.enabled else []
        for m in layers:
            m.rows = (int(total), self.rows(total) if rows is None else rows)
        try:
            yield
        finally:
            for m in layers:
                m.rows = None

    # -- losses and gradients -----------------------------------------------------------------------
    def mean(self, value: float, weight: float) -> float:
        """The ``weight``-weighted mean of a logged number over ranks (the number when disabled)."""
        return ddp.all_reduce_mean(value, weight) if self.enabled else float(value)

    def step_loss(self, mean_term: torch.Tensor | None, local_events: int, global_events: int,
                  batch_term: torch.Tensor | None = None, weight: float = 1.0) -> StepLoss:
        """The loss ``mean_term + weight × batch_term`` of one step, split over the ranks.

        Arguments:
            mean_term: a mean over this rank's ``local_events`` events (None when it has none).
            global_events: the events of that mean over all ranks.
            batch_term: a statistic of the global batch computed alike on every rank from
                :meth:`gather` ed rows (or None).

        When disabled the tensor is ``mean_term + weight * batch_term`` as one process computes it.
        """
        if not self.enabled:
            assert mean_term is not None
            total = mean_term if batch_term is None else mean_term + weight * batch_term
            return StepLoss(total, total.item(), local_events)
        here = mean_term is not None and local_events > 0
        # the same on every rank: whether a mean term exists anywhere (a collective is called or not)
        value = self.mean(mean_term.item() if here else 0.0, local_events) if global_events > 0 else 0.0
        if batch_term is None:
            return StepLoss(mean_term if here else None, value, local_events)
        share = batch_term * weight
        if here:
            share = mean_term * (local_events / global_events) + share
        return StepLoss(share, value + weight * batch_term.item(), local_events, summed=True)

    def backward(self, loss: StepLoss, parameters: Iterable[nn.Parameter]) -> None:
        """Back-propagate ``loss`` and combine the gradients over ranks (before the optimizer step)."""
        params = list(parameters)
        if loss.tensor is not None and loss.tensor.requires_grad:
            loss.tensor.backward()
        if not self.enabled:
            return
        if loss.summed:
            self.sum_gradients(params)
        else:
            ddp.sync_gradients(params, loss.local_events)

    def sync(self, parameters: Iterable[nn.Parameter], local_events: int) -> None:
        """:func:`~mlegpipe.distributed.sync_gradients` after a mean over ``local_events`` (no-op when disabled)."""
        if self.enabled:
            ddp.sync_gradients(parameters, local_events)

    def sum_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace each gradient by its sum over ranks (missing gradients count as zeros; no-op when disabled)."""
        if self.enabled:
            ddp.reduce_gradients(parameters, None)


@dataclass(frozen=True)
class MinibatchShard:
    """This rank's contiguous share of a global minibatch of ``events`` events.

    Attributes:
        events: N, the events of the global minibatch.
        part: this rank's rows of it (all of them in one process).
        distributed: running in a process group of more than one rank.
    """

    events: int
    part: slice
    distributed: bool

    @classmethod
    def of(cls, events: int) -> MinibatchShard:
        """The shard of a global batch of ``events`` events for this process."""
        if not ddp.is_distributed():
            return cls(int(events), slice(0, int(events)), False)
        return cls(int(events), ddp.shard_slice(events), True)

    @property
    def local_events(self) -> int:
        """n_local, the events of this rank's shard."""
        return self.part.stop - self.part.start

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a per-event tensor of the global batch (the tensor itself in one process)."""
        return tensor[self.part] if self.distributed else tensor

    def take_all(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`take` of each tensor."""
        return [self.take(t) for t in tensors]

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The global batch's rows of a per-event tensor that each rank computed on its shard, in batch order.

        Differentiable with respect to ``local`` (this rank's rows); the other ranks' rows enter as
        constants (:meth:`DataParallel.gather`).
        """
        if not self.distributed:
            return local
        dp = DataParallel()
        return dp.gather(local, dp.prefix_counts(self.events, self.events))

    def global_term(self, term: torch.Tensor) -> torch.Tensor:
        """A loss term computed on the gathered global batch, scaled by N / n_local for the event-weighted gradient
        average (see the module docstring); unchanged in one process, 0 on a rank without events."""
        if not self.distributed:
            return term
        return term * (self.events / self.local_events if self.local_events else 0.0)

    def mean(self, value: float) -> float:
        """The mean over the global batch of a figure that is a mean over this rank's events."""
        return ddp.all_reduce_mean(value, self.local_events) if self.distributed else float(value)

    def any(self, flags: torch.Tensor) -> torch.Tensor:
        """Element-wise logical or of boolean ``flags`` over the ranks (``flags`` itself in one process)."""
        if not self.distributed:
            return flags
        buf = flags.to(torch.int32).clone()
        dist.all_reduce(buf, op=dist.ReduceOp.MAX)
        return buf.to(torch.bool)


def sharded_draw(draw: Callable[[], torch.Tensor], shard: MinibatchShard) -> Callable[[], torch.Tensor]:
    """A function drawing the global batch's per-event random numbers with ``draw`` and keeping this rank's rows.

    Every rank draws all N values from its (identically seeded) generator, so the random streams stay those
    of one process, on every rank.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sharded_draw(lambda: torch.rand(4, generator=g), MinibatchShard.of(4))().shape
        torch.Size([4])
    """
    if not shard.distributed:
        return draw
    return lambda: shard.take(draw())


def check_batch_size(batch_size: int, where: str) -> None:
    """Every rank needs at least one event of each minibatch.

    Raises:
        ConfigError: the (capped) batch size is below the number of ranks.
    """
    if ddp.is_distributed() and batch_size < ddp.world_size():
        raise ConfigError(f"data-parallel training on {ddp.world_size()} ranks needs at least one event per rank in "
                          "each minibatch", path=f"{where}.batch_size", value=batch_size)
