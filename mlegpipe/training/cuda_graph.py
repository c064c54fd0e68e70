"""A training step's forward and backward pass replayed as one captured CUDA graph.

Small networks train launch-bound on a GPU: one step of the ``flow`` generator's default
network (4 spline transforms, 64x64 MADEs, 1024 events) launches ~1200 CUDA kernels, and an
H100 spent 25 ms per step of which 2.5 ms was kernel time (no faster than 16 CPU threads).
:class:`GraphedLoss` captures ``loss_fn(*inputs)`` and its ``backward()`` once and then replays
them: the per-kernel launch and dispatch costs are paid once at capture.

Only on CUDA devices (``MLEGPIPE_CUDA_GRAPHS=0`` turns it off); the CPU path is untouched. The
captured pass must have static shapes and no host synchronisation (zuko's flows qualify:
their distributions skip argument validation), and no autograd graph through the parameters
may be alive when a capture happens (the first call, or a call with new shapes): its
gradient accumulators would sync with another stream. Should capture fail, the helper logs
why and runs the same pass eagerly from then on; torch does not unwind a failed capture, so
the process's CUDA random generator is then unusable (the flow draws no CUDA random numbers).

Example:
    >>> net = torch.nn.Linear(3, 1)
    >>> GraphedLoss.maybe(lambda x: net(x).square().mean(), list(net.parameters()), "cpu") is None
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence

import torch

__all__ = ["GraphedLoss"]

_LOG = logging.getLogger(__name__)
_ENV = "MLEGPIPE_CUDA_GRAPHS"


class GraphedLoss:
    """Computes ``loss_fn(*inputs)`` and writes fresh gradients of ``params``: a graph replay on CUDA.

    One call replaces ``zero_grad(set_to_none=True); loss = loss_fn(*inputs); loss.backward()``.
    The gradients live in ``.grad`` tensors owned by the graph: the replay overwrites them in
    place (clipping or an all-reduce in place between calls is fine; a ``.grad`` set to ``None``
    or replaced is pointed back at them after the replay). The returned loss is a static tensor, overwritten by the next call:
    read it (``.item()``) before then. Inputs are copied into static buffers; a call with other
    shapes or dtypes recaptures. Parameters must keep their storage (``load_state_dict``
    copies in place, so checkpoint restores are fine).

    Arguments:
        loss_fn: the scalar loss of the inputs (``None`` inputs are passed through as ``None``).
        params: the parameters whose gradients the step needs.
        warmup: eager passes on a side stream before the capture (cuBLAS and allocator warm-up).
        log: where a failed capture is reported.

    Example:
        >>> net = torch.nn.Linear(3, 1)
        >>> graphed = GraphedLoss(lambda x: net(x).square().mean(), list(net.parameters()))
        >>> loss = graphed(torch.ones(4, 3))  # CPU tensors: computed eagerly, same contract
        >>> net.weight.grad.shape
        torch.Size([1, 3])
    """

    def __init__(self, loss_fn: Callable[..., torch.Tensor], params: Sequence[torch.nn.Parameter], warmup: int = 3,
                 log: logging.Logger | logging.LoggerAdapter | None = None) -> None:
        self.loss_fn = loss_fn
        self.params = [p for p in params if p.requires_grad]
        self.warmup = int(warmup)
        self.log = log or _LOG
        self.failed: str | None = None  # why the capture failed (then every call runs eagerly)
        self.captures = 0
        self._key: tuple | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: list[torch.Tensor | None] = []
        self._grads: list[torch.Tensor | None] = []
        self._loss: torch.Tensor | None = None

    @classmethod
    def maybe(cls, loss_fn: Callable[..., torch.Tensor], params: Sequence[torch.nn.Parameter],
              device: torch.device | str, log: logging.Logger | logging.LoggerAdapter | None = None
              ) -> GraphedLoss | None:
        """A :class:`GraphedLoss` on a CUDA device (unless ``$MLEGPIPE_CUDA_GRAPHS`` is ``0``), else ``None``."""
        if torch.device(device).type != "cuda" or os.environ.get(_ENV, "1").strip() == "0":
            return None
        return cls(loss_fn, params, log=log)

    def _eager(self, inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        for p in self.params:
            p.grad = None
        loss = self.loss_fn(*inputs)
        loss.backward()
        return loss

    def _capture(self, inputs: Sequence[torch.Tensor | None], key: tuple) -> None:
        self._graph, self._loss = None, None
        self._static = [None if t is None else t.detach().clone() for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self._eager(self._static)
        torch.cuda.current_stream().wait_stream(side)
        for p in self.params:
            p.grad = None  # the captured backward allocates them from the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = self.loss_fn(*self._static)
            loss.backward()
        # the replay rewrites these very tensors: keep them (and no autograd graph: the loss is detached)
        self._grads = [p.grad for p in self.params]
        self._graph, self._loss, self._key = graph, loss.detach(), key
        self.captures += 1

    def __call__(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """The loss of ``inputs``; the parameters' ``.grad`` hold its gradients afterwards."""
        cuda = all(t is None or t.is_cuda for t in inputs) and any(t is not None for t in inputs)
        if self.failed is not None or not cuda:
            return self._eager(inputs)
        key = tuple(None if t is None else (tuple(t.shape), t.dtype, t.device) for t in inputs)
        if key != self._key:
            try:
                self._capture(inputs, key)
            except Exception as err:  # noqa: BLE001 - any capture failure falls back to the eager pass
                self.failed = f"{type(err).__name__}: {err}"
                self._graph, self._loss, self._key = None, None, None
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize()
                self.log.warning("CUDA graph capture failed (%s); training eagerly instead", self.failed)
                return self._eager(inputs)
        for buf, t in zip(self._static, inputs, strict=True):
            if buf is not None:
                buf.copy_(t)
        self._graph.replay()
        for p, g in zip(self.params, self._grads, strict=True):
            if p.grad is not g:  # someone set or replaced .grad since: point it back at the replayed gradients
                p.grad = g
        return self._loss
