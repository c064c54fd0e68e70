"""Roofline of a network: FLOPs per event counted from its layers, beside the measured matmul GFLOP/s.

:func:`count_flops` runs a callable once with forward hooks on every linear
layer (``nn.Linear`` and subclasses such as zuko's ``MaskedLinear``,
``nn.Conv1d/2d``, ``nn.Bilinear``) and adds up the multiply-adds actually
executed: an autoregressive flow's inverse that calls its network once per
feature is counted once per call. :func:`matmul_gflops` measures what this
machine's BLAS reaches on a dense matrix product (best of several repeats, in
the same process and thread setting as the workload), and :func:`roofline`
sets the two side by side: the events/s a network could reach if every FLOP ran
at the matmul rate, and the fraction of it a measured rate reaches.
Element-wise work (activations, spline searches) is not counted: it is the
part of a flow that keeps it below the roofline.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    >>> count_flops(lambda: net(torch.zeros(10, 3)), net, events=10).flops_per_event  # 2·3·64 + 64 + 2·64 + 1
    577.0
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = [
    "FlopCount",
    "Roofline",
    "count_flops",
    "flow_sampling_flops",
    "matmul_gflops",
    "roofline",
    "threads",
]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one run of a workload.

    Attributes:
        flops: floating-point operations of the linear layers (a multiply-add is 2).
        events: events the workload processed.
        calls: linear-layer calls.
        by_layer: FLOPs per layer type name.
    """

    flops: float
    events: int
    calls: int
    by_layer: dict[str, float]

    @property
    def flops_per_event(self) -> float:
        """FLOPs per event."""
        return self.flops / max(self.events, 1)


@dataclass(frozen=True)
class Roofline:
    """A measured rate beside the rate the matmul speed allows.

    Attributes:
        flops_per_event: from :func:`count_flops`.
        gflops: the matmul GFLOP/s measured in the same run.
        roofline_events_per_s: ``gflops * 1e9 / flops_per_event``.
        events_per_s: the measured rate of the workload (None if not given).
        fraction: ``events_per_s / roofline_events_per_s``.
    """

    flops_per_event: float
    gflops: float
    roofline_events_per_s: float
    events_per_s: float | None = None
    fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures."""
        return asdict(self)


def _linear_flops(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> float:
    if isinstance(module, torch.nn.Linear):
        rows = inputs[0].numel() // module.in_features
        return 2.0 * rows * module.in_features * module.out_features + (rows * module.out_features
                                                                         if module.bias is not None else 0)
    if isinstance(module, torch.nn.Bilinear):
        rows = inputs[0].numel() // module.in1_features
        return 2.0 * rows * module.in1_features * module.in2_features * module.out_features
    if isinstance(module, torch.nn.Conv1d | torch.nn.Conv2d):
        per_output = 2.0 * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return per_output * output.numel()
    return 0.0


_COUNTED = (torch.nn.Linear, torch.nn.Bilinear, torch.nn.Conv1d, torch.nn.Conv2d)


def count_flops(fn: Callable[[], Any], module: torch.nn.Module, events: int) -> FlopCount:
    """Run ``fn()`` once and count the FLOPs of the linear layers inside ``module`` it calls.

    Arguments:
        fn: the workload (e.g. ``lambda: flow().sample((n,))``); run without autograd.
        module: the network whose layers are hooked.
        events: how many events one run of ``fn`` processes (for :attr:`FlopCount.flops_per_event`).

    Example:
        >>> lin = torch.nn.Linear(4, 8, bias=False)
        >>> count_flops(lambda: lin(torch.zeros(5, 4)), lin, events=5).flops
        320.0
    """
    total: dict[str, float] = {}
    calls = 0

    def hook(mod: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal calls
        calls += 1
        name = type(mod).__name__
        total[name] = total.get(name, 0.0) + _linear_flops(mod, inputs, output)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, _COUNTED)]
    try:
        with torch.inference_mode():
            fn()
    finally:
        for h in handles:
            h.remove()
    return FlopCount(sum(total.values()), int(events), calls, total)


def flow_sampling_flops(flow: torch.nn.Module, features: int, events: int = 4096,
                        context: torch.Tensor | None = None) -> FlopCount:
    """FLOPs per event of sampling a zuko flow: ``flow(context).transform.inv(noise)``.

    Example:
        >>> import zuko
        >>> maf = zuko.flows.MAF(2, transforms=1, hidden_features=(8,))
        >>> flow_sampling_flops(maf, 2, events=16).calls  # one MLP pass per feature: 2 x 2 layers
        4
    """
    noise = torch.zeros(events, features)
    return count_flops(lambda: flow(context).transform.inv(noise), flow, events)


def threads() -> int:
    """The number of threads torch uses for intra-op work."""
    return torch.get_num_threads()


def matmul_gflops(size: int = 1024, rows: int | None = None, dtype: torch.dtype = torch.float32,
                  repeats: int = 5, min_seconds: float = 0.05, workers: int = 1) -> float:
    """Measured GFLOP/s of ``(rows × size) @ (size × size)`` (best of ``repeats``).

    ``rows = None`` gives a square product (the machine's practical peak);
    ``rows`` and ``size`` of a network's layers give the rate its own shapes reach.
    ``workers = 1`` runs one product at a time in torch's thread setting (intra-op
    threads); ``workers > 1`` runs that many products at once on Python threads
    with single-threaded kernels (how the generators run their chunks), and
    reports their total rate.

    Example:
        >>> matmul_gflops(64, repeats=1, min_seconds=0.0) > 0
        True
        >>> matmul_gflops(64, repeats=1, min_seconds=0.0, workers=2) > 0
        True
    """
    rows = size if rows is None else rows
    gen = torch.Generator().manual_seed(0)
    operands = [(torch.randn(rows, size, generator=gen, dtype=dtype), torch.randn(size, size, generator=gen, dtype=dtype),
                 torch.empty(rows, size, dtype=dtype)) for _ in range(max(workers, 1))]
    flops = 2.0 * rows * size * size

    def run(ops: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
        a, b, out = ops
        torch.mm(a, b, out=out)  # warm-up: thread pool and BLAS dispatch
        best = float("inf")
        for _ in range(max(repeats, 1)):
            n, start = 0, time.perf_counter()
            while True:
                torch.mm(a, b, out=out)
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            best = min(best, elapsed / n)
        return flops / best / 1e9

    if workers <= 1:
        return run(operands[0])
    from mlegpipe.generation import single_threaded_kernels

    with single_threaded_kernels(), ThreadPoolExecutor(workers) as pool:
        return float(sum(pool.map(run, operands)))


def roofline(flops_per_event: float, gflops: float, events_per_s: float | None = None) -> Roofline:
    """Set a measured rate beside the roofline ``gflops / flops_per_event``.

    Example:
        >>> r = roofline(1000.0, 10.0, events_per_s=5e6)
        >>> r.roofline_events_per_s, r.fraction
        (10000000.0, 0.5)
    """
    limit = gflops * 1e9 / flops_per_event if flops_per_event > 0 else float("inf")
    fraction = None if events_per_s is None or limit == float("inf") else events_per_s / limit
    return Roofline(flops_per_event, gflops, limit, events_per_s, fraction)
