"""A trained flow's sampling map distilled into a plain MLP (the ``flow`` generator's ``sampler = "distilled"``).

After maximum-likelihood training, a flow samples with a deterministic, smooth
map ``x = f⁻¹(u, c)`` of base noise ``u ~ N(0, I)`` (and the context ``c``).
:func:`distill` regresses a small ReLU MLP ``g(u, c) ≈ f⁻¹(u, c)`` on pairs
drawn from the flow's exact inverse (mean squared error in the flow's
standardized feature space; no adversary, no likelihood). Sampling is then one
matmul-dominated pass with no spline work: :class:`DistilledSampler` runs it in
cache-sized chunks on data-parallel threads like the exact sampler.

The MLP is an approximation of the flow, not the flow: its quality must be
judged on held-out truth like any generator (README, benchmarks/bench_generators.py),
and :func:`distill` reports its root-mean-square deviation from the flow on
fresh noise. Noise for the regression is drawn with a slightly wider spread
than the base distribution (``widen``) so the tails the sampler reaches are
covered.

Example:
    >>> import zuko
    >>> flow = zuko.flows.MAF(2, transforms=1, hidden_features=(8,))
    >>> teacher = lambda u, c: flow().transform.inv(u)
    >>> net, report = distill(teacher, 2, 0, [16], steps=20, batch_size=256, pool=4096,
    ...                       generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(3, 2)).shape, report["steps"]
    (torch.Size([3, 2]), 20)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mlegpipe.exceptions import CheckpointError
from mlegpipe.generation import map_in_chunks

__all__ = ["DistilledSampler", "distill"]

#: ``teacher(noise, context) -> features``: the exact sampling map being distilled.
Teacher = Callable[[Tensor, Tensor | None], Tensor]


class DistilledSampler(nn.Module):
    """``(noise, context) -> features``: a ReLU MLP standing in for a flow's inverse.

    Arguments:
        features: dimensions of the noise and of the output (the flow's learned features).
        context: dimensions of the context (0: unconditional).
        hidden: hidden layer widths.
        chunk: events per pass (small enough for the activations to stay in cache).

    Example:
        >>> net = DistilledSampler(2, 0, [8, 8])
        >>> net(torch.zeros(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(self, features: int, context: int = 0, hidden: Sequence[int] = (96, 96, 96),
                 chunk: int = 2048) -> None:
        super().__init__()
        self.n_features, self.n_context, self.hidden, self.chunk = int(features), int(context), list(hidden), chunk
        layers: list[nn.Module] = []
        width = self.n_features + self.n_context
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, self.n_features))
        self.net = nn.Sequential(*layers)

    def config(self) -> dict[str, Any]:
        """The architecture, for checkpoints."""
        return {"features": self.n_features, "context": self.n_context, "hidden": list(self.hidden)}

    @classmethod
    def from_state(cls, state: dict[str, Any], path: str = "generator") -> DistilledSampler:
        """Rebuild from ``{"config": ..., "weights": ...}`` (what :meth:`state` writes)."""
        try:
            cfg = dict(state["config"])
            net = cls(int(cfg["features"]), int(cfg["context"]), [int(h) for h in cfg["hidden"]])
            net.load_state_dict(state["weights"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"the distilled sampler in the checkpoint does not load: "
                                  f"{str(err).splitlines()[0] if str(err) else type(err).__name__}",
                                  path=f"{path}.distilled") from None
        return net.eval()

    def state(self) -> dict[str, Any]:
        """Architecture and weights (see :meth:`from_state`)."""
        return {"config": self.config(), "weights": self.state_dict()}

    def _map(self, noise: Tensor, context: Tensor | None) -> Tensor:
        return self.net(noise if context is None else torch.cat((noise, context), dim=1))

    def forward(self, noise: Tensor, context: Tensor | None = None, workers: int | None = None) -> Tensor:
        """Features of ``(N, D)`` noise (``context``: ``(N, C)`` or None), in chunks on ``workers`` threads.

        The chunks are fixed (``chunk`` events), so the result does not depend on the thread count.
        """
        if self.n_context and context is None:
            raise ValueError("this distilled sampler is conditional: give the context")
        if len(noise) <= self.chunk:
            return self._map(noise, context)
        return map_in_chunks(self._map, noise, context, self.n_features, self.chunk, workers)


def distill(teacher: Teacher, features: int, context: int, hidden: Sequence[int], *, steps: int = 3000,
            batch_size: int = 4096, lr: float = 3e-3, pool: int = 1 << 20, widen: float = 1.25,
            context_range: tuple[Tensor, Tensor] | None = None, generator: torch.Generator | None = None,
            validation: int = 65_536) -> tuple[DistilledSampler, dict[str, Any]]:
    """Regress a :class:`DistilledSampler` on ``pool`` (noise, teacher(noise)) pairs; return it and a report.

    Arguments:
        teacher: the exact map, called under ``torch.inference_mode`` on ``(n, features)`` noise.
        features, context: noise/output and context dimensions.
        hidden: the MLP's hidden widths.
        steps, batch_size, lr: Adam steps (linear warm-up, cosine decay to 1 %), events per step, peak rate.
        pool: training pairs, drawn once (a smooth map of a few inputs needs no fresh pairs per step).
        widen: the regression noise is ``widen`` × N(0, I), to cover the tails sampling reaches.
        context_range: ``(low, high)``, each ``(context,)``: contexts are drawn uniformly in this box
            (so values between and beyond the trained ones are covered); needed when ``context > 0``.
        generator: the source of all randomness (initial weights, noise, minibatches).
        validation: fresh base-noise pairs (``widen = 1``) for the reported deviation.

    Returns:
        The sampler (eval mode) and ``{"steps", "seconds", "rmse", "rmse_by_feature", "p999"}``: the
        deviation from the teacher on fresh N(0, I) noise, in the teacher's (standardized) units.
    """
    if context and context_range is None:
        raise ValueError("a conditional teacher needs the range of contexts to distill at")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    start = time.perf_counter()

    def pairs(n: int, spread: float) -> tuple[Tensor, Tensor | None, Tensor]:
        u = spread * torch.randn(n, features, generator=gen)
        c = None if not context else torch.lerp(context_range[0].float(), context_range[1].float(),
                                                 torch.rand(n, context, generator=gen))
        with torch.inference_mode():
            x = teacher(u, c)
        return u, c, x.clone()

    u, c, x = pairs(pool, widen)
    inputs = u if c is None else torch.cat((u, c), dim=1)
    net = DistilledSampler(features, context, hidden)
    with torch.no_grad():  # initial weights from the generator too (reproducible without the global seed)
        for layer in net.net:
            if isinstance(layer, nn.Linear):  # torch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                bound = 1.0 / math.sqrt(layer.in_features)
                for p in (layer.weight, layer.bias):
                    p.copy_(torch.rand(p.shape, generator=gen).mul_(2 * bound).sub_(bound))
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    warm = max(1, min(100, steps // 10))
    for i in range(steps):
        scale = min(1.0, (i + 1) / warm) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / steps)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        idx = torch.randint(0, pool, (batch_size,), generator=gen)
        loss = nn.functional.mse_loss(net.net(inputs[idx]), x[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    u_v, c_v, x_v = pairs(validation, 1.0)
    with torch.inference_mode():
        err = net(u_v, c_v, workers=1) - x_v
    report = {"steps": steps, "seconds": time.perf_counter() - start,
              "rmse": float(err.pow(2).sum(1).mean().sqrt()),
              "rmse_by_feature": [float(v) for v in err.pow(2).mean(0).sqrt()],
              "p999": float(err.norm(dim=1).quantile(0.999))}
    return net, report
