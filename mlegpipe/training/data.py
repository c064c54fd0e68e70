"""Minibatches drawn from in-memory tensors with a seeded torch generator.

Batches are drawn independently (with replacement across batches, without
replacement inside a batch when it fits) from a ``torch.Generator`` the
caller owns, so the sampler's whole state is that generator's state:
:class:`~mlegpipe.training.loop.TrainLoop` saves and restores it for exact
resume. Event weights, when given, make the draw proportional to them.

Example:
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> sampler = MinibatchSampler(torch.arange(10.0)[:, None], batch_size=4, generator=gen)
    >>> (x,) = sampler()
    >>> x.shape
    torch.Size([4, 1])
"""

from __future__ import annotations

import torch

from mlegpipe.exceptions import DataError

__all__ = ["MinibatchSampler"]


class MinibatchSampler:
    """Draws aligned minibatches from one or more tensors of equal length.

    Arguments:
        tensors: tensors sharing their first dimension (features, conditions, ...).
        batch_size: events per batch (capped at the number of events).
        generator: the seeded torch generator to draw indices from.
        weights: optional non-negative per-event weights (draws proportional to them).
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, generator: torch.Generator,
                 weights: torch.Tensor | None = None) -> None:
        if not tensors:
            raise DataError("the minibatch sampler needs at least one tensor")
        n = len(tensors[0])
        if n == 0:
            raise DataError("cannot draw minibatches from an empty training sample")
        if any(len(t) != n for t in tensors):
            raise DataError(f"tensors have different lengths: {[len(t) for t in tensors]}")
        if batch_size < 1:
            raise DataError("batch size must be >= 1", value=batch_size)
        self.tensors = tensors
        self.n = n
        self.batch_size = min(int(batch_size), n)
        self.generator = generator
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64)
            if len(w) != n or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise DataError("event weights must be finite, non-negative, not all zero, one per event")
            self.weights = w

    def indices(self) -> torch.Tensor:
        """The indices of the next batch."""
        if self.weights is not None:
            return torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator)
        if self.batch_size * 4 <= self.n:
            return torch.randint(0, self.n, (self.batch_size,), generator=self.generator)
        return torch.randperm(self.n, generator=self.generator)[: self.batch_size]

    def __call__(self) -> tuple[torch.Tensor, ...]:
        """The next batch: one slice per tensor."""
        idx = self.indices()
        return tuple(t[idx] for t in self.tensors)
